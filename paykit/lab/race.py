"""The racing-payments lesson: many payments from one account at the same instant, against the
bank's holds, and against a naive check-then-debit that lives here (never in the bank).

    race_payments(cluster, n, opening, amount)   n devices of one new user pay at once
    naive_debit(conn, account_id, amount_minor)  reads the balance, then debits: two statements
    race_debits(debit, n=10)                     n threads call `debit` at once on a toy account
    check_debit(debit)                           the exercise's check: races it, and explains

The toy account is one SQLite table with no CHECK constraint, so nothing but the debit
function guards it. Each statement on it takes THINK_S longer, as a query over a network or
a fraud check between the read and the write would: the gap a race needs, made wide enough
to see every time.
"""

from __future__ import annotations

import sqlite3
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from paykit.client.models import Balance, Payment, html_view, to_minor
from paykit.core.errors import PaykitError
from paykit.core.money import format_minor

THINK_S = 0.01  # added after each statement on the toy account
TOY_ACCOUNT = "ada-acct"
BUSY_TIMEOUT_S = 30.0  # how long a statement waits for another thread's write lock
_racers = iter(range(1, 1_000_000))

Debit = Callable[..., bool]


@dataclass
class RaceResult:
    """What n concurrent payments from one account ended as."""

    username: str
    opening_minor: int
    amount_minor: int
    answers: list[Payment | PaykitError]
    balance: Balance

    @property
    def succeeded(self) -> int:
        return sum(isinstance(a, Payment) and a.succeeded for a in self.answers)

    @property
    def declined(self) -> Counter:
        return Counter(
            a.failure_reason if isinstance(a, Payment) else a.reason
            for a in self.answers
            if not (isinstance(a, Payment) and a.succeeded)
        )

    def as_row(self) -> dict[str, object]:
        return {
            "payments sent at once": len(self.answers),
            "amount each": format_minor(self.amount_minor),
            "opening balance": format_minor(self.opening_minor),
            "succeeded": self.succeeded,
            "declined": ", ".join(f"{r} ×{n}" for r, n in self.declined.items()) or "-",
            "balance after": format_minor(self.balance.balance_minor),
            "held after": format_minor(self.balance.held_minor),
        }

    def _repr_html_(self) -> str:
        return html_view(f"Race of {self.username}'s payments", self.as_row())


def race_payments(
    cluster,
    n: int,
    opening: str,
    amount: str,
    *,
    to_bank: str = "BankB",
    to_account: str = "recipient123",
) -> RaceResult:
    """A new user opens `opening` at BankA; n devices (sessions) signed in as them send n
    different payments of `amount` at the same instant, each once. Returns what each was told."""
    username, password = f"racer{next(_racers)}", "password123"
    first = cluster.session()
    first.register(username, password, f"{username}-acct", to_minor(opening, None, opening=True))
    sessions = [first, *(cluster.session() for _ in range(n - 1))]
    for session in sessions:
        session.authenticate(username, password)
    start, amount_minor = threading.Barrier(n), to_minor(amount, None)

    def one(session) -> Payment | PaykitError:
        start.wait()
        try:
            reply = session.pay(to_bank, to_account, amount_minor, str(uuid.uuid4()))
            return Payment.from_pb(reply)
        except PaykitError as err:
            return err

    try:
        with ThreadPoolExecutor(max_workers=n) as pool:
            answers = list(pool.map(one, sessions))
        b = first.balance()
        balance = Balance(b.bank, b.account_id, b.balance_minor, b.held_minor, b.available_minor)
    finally:
        for session in sessions:
            session.close()
    return RaceResult(
        username, to_minor(opening, None, opening=True), amount_minor, answers, balance
    )


# -- the toy account ---------------------------------------------------------------


def naive_debit(conn, account_id: str, amount_minor: int) -> bool:
    """Check, then debit: correct alone, wrong when many run at once (the race of the lesson)."""
    (balance,) = conn.execute(
        "SELECT balance_minor FROM accounts WHERE account_id = ?", (account_id,)
    ).fetchone()
    if balance < amount_minor:
        return False
    conn.execute(
        "UPDATE accounts SET balance_minor = balance_minor - ? WHERE account_id = ?",
        (amount_minor, account_id),
    )
    return True


class SlowConnection:
    """A sqlite3 connection whose every statement takes THINK_S longer (see the module doc)."""

    def __init__(self, conn: sqlite3.Connection, think_s: float) -> None:
        self._conn, self._think_s = conn, think_s

    def execute(self, sql: str, params=()) -> sqlite3.Cursor:
        cursor = self._conn.execute(sql, params)
        time.sleep(self._think_s)
        return cursor


@dataclass
class DebitRace:
    """n threads debiting `amount_minor` at once from a toy account that opened with
    `opening_minor`."""

    n: int
    opening_minor: int
    amount_minor: int
    succeeded: int
    balance_minor: int
    errors: list[str] = field(default_factory=list)
    returned_none: int = 0  # calls that returned None: a function with no body yet

    @property
    def expected_successes(self) -> int:
        return min(self.n, self.opening_minor // self.amount_minor)

    @property
    def overdrawn(self) -> bool:
        return self.balance_minor < 0

    @property
    def lost_updates(self) -> bool:
        """The balance does not match the debits that said they happened."""
        return self.balance_minor != self.opening_minor - self.succeeded * self.amount_minor

    @property
    def correct(self) -> bool:
        ok = not self.errors and not self.overdrawn and not self.lost_updates
        return ok and self.succeeded == self.expected_successes

    def as_row(self) -> dict[str, object]:
        return {
            "threads at once": self.n,
            "amount each": format_minor(self.amount_minor),
            "opening balance": format_minor(self.opening_minor),
            "debits that said yes": self.succeeded,
            "balance after": format_minor(self.balance_minor),
            "overdrawn": self.overdrawn,
            "errors": "; ".join(self.errors[:2]) or "-",
        }

    def _repr_html_(self) -> str:
        return html_view("Race on the toy account", self.as_row())


def _toy_account(folder: Path, opening_minor: int) -> Path:
    path = folder / "toy.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE accounts (account_id TEXT PRIMARY KEY, balance_minor INTEGER)")
        conn.execute("INSERT INTO accounts VALUES (?, ?)", (TOY_ACCOUNT, opening_minor))
    return path


def race_debits(
    debit: Debit,
    n: int = 10,
    *,
    opening_minor: int = 10_000,
    amount_minor: int = 3_000,
    think_s: float = THINK_S,
) -> DebitRace:
    """n threads, each with its own connection to a new toy account, call
    debit(conn, account_id, amount_minor) at the same instant."""
    with tempfile.TemporaryDirectory(prefix="paykit-race-") as folder:
        path = _toy_account(Path(folder), opening_minor)
        start, errors, nones = threading.Barrier(n), [], []

        def one(_: int) -> bool:
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            try:
                start.wait()
                said = debit(SlowConnection(conn, think_s), TOY_ACCOUNT, amount_minor)
                if said is None:
                    nones.append(1)
                return bool(said)
            except Exception as exc:  # the student's code: reported, not raised in a thread
                errors.append(f"{type(exc).__name__}: {exc}")
                return False
            finally:
                conn.close()

        with ThreadPoolExecutor(max_workers=n) as pool:
            succeeded = sum(pool.map(one, range(n)))
        with sqlite3.connect(path) as conn:
            (balance,) = conn.execute("SELECT balance_minor FROM accounts").fetchone()
    return DebitRace(n, opening_minor, amount_minor, succeeded, balance, errors, len(nones))


def _debit_hint(race: DebitRace) -> str:
    if race.returned_none == race.n:
        return "your function returns None: write its body, and return True or False."
    if race.errors:
        return f"your debit raised {race.errors[0]}; run it once by hand to see why."
    if race.overdrawn or race.succeeded > race.expected_successes:
        return (
            f"{race.succeeded} debits passed the check before any of them wrote, so the balance "
            f"went to {format_minor(race.balance_minor)}. The check and the debit must be one "
            'step: take the write lock first (conn.execute("BEGIN IMMEDIATE") ... COMMIT), or '
            "make them one statement (UPDATE ... WHERE balance_minor >= ?)."
        )
    if race.lost_updates:
        return (
            "the balance does not match the debits that said yes: a thread wrote a balance it "
            "computed from an old read (a lost update). Let SQLite subtract: balance_minor = "
            "balance_minor - ?."
        )
    return (
        f"{race.succeeded} debits said yes, and {race.expected_successes} fit in the balance: "
        "return True exactly when you debited."
    )


def check_debit(debit: Debit | None, n: int = 10) -> DebitRace | None:
    """The exercise's check: races `debit` with n threads; prints ✓, or ✗ with a hint that says
    what went wrong, and raises AssertionError."""
    name = "a debit that is safe under a race"
    race = race_debits(debit, n) if callable(debit) else None
    if race is not None and race.correct:
        print(
            f"✓ {name}: {race.succeeded} of {n} debits said yes, balance "
            f"{format_minor(race.balance_minor)}, never below zero"
        )
        return race
    hint = "write the function in the cell above." if race is None else _debit_hint(race)
    print(f"✗ {name}: not yet.\n  Hint: {hint}")
    raise AssertionError(f"{name}: {race.as_row() if race else 'no function'}")


def race_table(*races) -> pd.DataFrame:
    """Several races side by side, one row each."""
    return pd.DataFrame([r.as_row() for r in races])
