"""The participant's rules behind a small interface, over a durable store the kit provides.

A bank server (paykit.bank.server) is the kit's: the gRPC shell, accounts, the event log, the
failpoints and the thread that asks the coordinator about transactions in doubt. What it asks
of a 2PC participant is five rules, the methods of `Participant`:

    prepare(leg)          place a hold (debit) or note the expected credit, durably, then vote
    commit(txn_id)        capture the hold / apply the credit; a second Commit changes nothing
    abort(txn_id)         release the hold; before any Prepare, leave a tombstone
    resolve(ask, age_ms)  for each leg prepared longer than age_ms, ask the coordinator and
                          apply COMMIT or ABORT; on PENDING or no answer keep the hold
    apply_batch(...)      many legs of one Exchange call (default: one by one, through the above)

A participant writes through a `LegStore`: the bank's SQLite file, in the schema the kit's
checks read (paykit.lab.check). `with store.transaction() as tx:` is one atomic transaction,
on disk (fsync) when the block returns; inside it `tx` reads and writes legs and accounts
(hold, release, debit, credit). So a student writes rules, not SQL.

The production participant is `LedgerParticipant`, a thin adapter over paykit.bank.ledger.Ledger;
it is the reference solution of the participant lab (paykit.lab.labs.participant).
No grpc here: the server gives `resolve` its way of asking (`ask`).
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from paykit.bank.ledger import (
    ABORTED,
    COMMITTED,
    PREPARED,
    Balance,
    Ledger,
    PrepareLeg,
    _between_legs,
    check_batch,
)
from paykit.core import failpoints, plugins
from paykit.core.clock import now_ms
from paykit.core.errors import (
    InvalidInput,
    PaykitError,
    ProtocolViolation,
    UnknownPayment,
)
from paykit.core.twopc import CREDIT, DEBIT, Decision, Vote

__all__ = [
    "ABORTED",
    "COMMITTED",
    "CREDIT",
    "DEBIT",
    "PREPARED",
    "Ask",
    "Balance",
    "Decision",
    "LedgerParticipant",
    "LegRecord",
    "LegStore",
    "Participant",
    "PrepareLeg",
    "ProtocolViolation",
    "StoreRefused",
    "UnknownPayment",
    "Vote",
    "load_participant_class",
]

# ask(txn_id, coordinator) -> the coordinator's answer, or None when it did not answer
# (unreachable, timed out). The coordinator named by the Prepare; the server may override it.
Ask = Callable[[str, str], Decision | None]


class StoreRefused(ProtocolViolation):
    """A write the store cannot make: it would break the books (a hold above the balance, a
    release of more than is held, a negative balance, a leg recorded twice)."""

    reason = "STORE_REFUSED"


@dataclass(frozen=True)
class LegRecord:
    """One participant transaction as the store keeps it. A tombstone has leg '' and amount 0."""

    txn_id: str
    leg: str  # "debit", "credit", or "" for a tombstone
    account_id: str
    amount_minor: int
    state: str  # "prepared" | "committed" | "aborted"
    reason: str
    coordinator: str
    updated_unix_ms: int


def _record(row: sqlite3.Row | None) -> LegRecord | None:
    if row is None:
        return None
    return LegRecord(
        row["txn_id"],
        row["leg"],
        row["account_id"],
        row["amount_minor"],
        row["state"],
        row["reason"],
        row["coordinator"],
        row["updated_unix_ms"],
    )


class StoreTxn:
    """The reads and writes of one store transaction (see LegStore.transaction)."""

    def __init__(self, conn: sqlite3.Connection, bank: str, *, durable: bool = True) -> None:
        self._conn = conn
        self.bank = bank
        self.durable = durable
        self.held_something = False

    def _promise(self, what: str) -> None:
        """A YES is a promise the bank must keep after any crash: never in an unsynced write."""
        if not self.durable:
            raise StoreRefused(
                f"{what} in a transaction(durable=False): a YES vote and its hold must be on "
                "disk before the vote is sent (use store.transaction())"
            )

    # -- reads ------------------------------------------------------------------

    def leg(self, txn_id: str) -> LegRecord | None:
        return _record(
            self._conn.execute("SELECT * FROM txns WHERE txn_id = ?", (txn_id,)).fetchone()
        )

    def account(self, account_id: str) -> Balance | None:
        row = self._conn.execute(
            "SELECT balance_minor, held_minor FROM accounts WHERE account_id = ?", (account_id,)
        ).fetchone()
        return None if row is None else Balance(account_id, row[0], row[1])

    # -- legs -------------------------------------------------------------------

    def record_leg(
        self,
        txn_id: str,
        leg: str,
        account_id: str,
        amount_minor: int,
        state: str,
        reason: str = "",
        coordinator: str = "",
    ) -> None:
        """Writes a new leg row (leg "" and amount 0 for a tombstone)."""
        if state not in (PREPARED, COMMITTED, ABORTED):
            raise InvalidInput(f"a leg's state is prepared, committed or aborted, not {state!r}")
        if state == PREPARED:
            self._promise("a prepared leg recorded")
        ts = now_ms()
        try:
            self._conn.execute(
                "INSERT INTO txns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (txn_id, leg, account_id, amount_minor, state, reason, coordinator, ts, ts),
            )
        except sqlite3.IntegrityError:
            raise StoreRefused(f"{self.bank} already has a leg {txn_id[:60]}") from None

    def set_state(self, txn_id: str, state: str, reason: str | None = None) -> None:
        if state not in (PREPARED, COMMITTED, ABORTED):
            raise InvalidInput(f"a leg's state is prepared, committed or aborted, not {state!r}")
        self._conn.execute(
            "UPDATE txns SET state = ?, reason = COALESCE(?, reason), updated_unix_ms = ? "
            "WHERE txn_id = ?",
            (state, reason, now_ms(), txn_id),
        )

    # -- money ------------------------------------------------------------------

    def _acct(self, account_id: str) -> Balance:
        acct = self.account(account_id)
        if acct is None:
            raise StoreRefused(f"no account {account_id[:40]} at {self.bank}")
        return acct

    def hold(self, account_id: str, amount_minor: int) -> None:
        """Holds `amount_minor` of the account's balance (it is no longer available)."""
        self._promise("a hold placed")
        acct = self._acct(account_id)
        if amount_minor <= 0 or acct.held_minor + amount_minor > acct.balance_minor:
            raise StoreRefused(
                f"a hold of {amount_minor} on {account_id[:40]} would exceed its balance "
                f"({acct.balance_minor}, {acct.held_minor} already held)"
            )
        self._conn.execute(
            "UPDATE accounts SET held_minor = held_minor + ? WHERE account_id = ?",
            (amount_minor, account_id),
        )
        self.held_something = True

    def release(self, account_id: str, amount_minor: int) -> None:
        """Gives back `amount_minor` of the account's holds."""
        acct = self._acct(account_id)
        if amount_minor <= 0 or amount_minor > acct.held_minor:
            raise StoreRefused(
                f"cannot release {amount_minor} of {account_id[:40]}: {acct.held_minor} is held"
            )
        self._conn.execute(
            "UPDATE accounts SET held_minor = held_minor - ? WHERE account_id = ?",
            (amount_minor, account_id),
        )

    def debit(self, account_id: str, amount_minor: int, txn_id: str) -> None:
        """Takes `amount_minor` off the balance, with its ledger entry (release the hold first)."""
        acct = self._acct(account_id)
        if amount_minor <= 0 or acct.balance_minor - amount_minor < acct.held_minor:
            raise StoreRefused(
                f"a debit of {amount_minor} from {account_id[:40]} would leave less than its "
                f"holds ({acct.balance_minor} balance, {acct.held_minor} held)"
            )
        self._entry(account_id, txn_id, "capture", -amount_minor)

    def credit(self, account_id: str, amount_minor: int, txn_id: str) -> None:
        """Adds `amount_minor` to the balance, with its ledger entry."""
        self._acct(account_id)
        if amount_minor <= 0:
            raise StoreRefused(f"a credit must be positive, not {amount_minor}")
        self._entry(account_id, txn_id, "credit", amount_minor)

    def _entry(self, account_id: str, txn_id: str, kind: str, delta: int) -> None:
        self._conn.execute(
            "UPDATE accounts SET balance_minor = balance_minor + ? WHERE account_id = ?",
            (delta, account_id),
        )
        self._conn.execute(
            "INSERT INTO entries (account_id, txn_id, kind, delta_minor, created_unix_ms) "
            "VALUES (?, ?, ?, ?, ?)",
            (account_id, txn_id, kind, delta, now_ms()),
        )


class LegStore:
    """The bank's durable store: accounts, legs and ledger entries in one SQLite file.

    `with store.transaction() as tx:` runs its block as ONE transaction: all of it is on disk
    (synchronous=FULL, fsync) when the block returns, or none of it if the block raised or the
    process died before. `transaction(durable=False)` skips the fsync: a process crash loses
    nothing, a power cut may (use it only for a write that can be done again, such as a Commit:
    the leg stays prepared and the coordinator's COMMIT is applied again). A hold or a prepared
    leg is refused there: it backs a YES, which must survive any crash."""

    def __init__(self, path: Path, *, bank: str) -> None:
        self.bank = bank
        self.ledger = Ledger(path, bank=bank)  # accounts, and the production participant's books

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[StoreTxn]:
        with self.ledger.db.write(durable=durable) as conn:
            tx = StoreTxn(conn, self.bank, durable=durable)
            yield tx
            if tx.held_something:  # a crash here: the hold is written, not yet committed
                failpoints.hit("bank.after_hold_before_commit")

    # -- reads outside a transaction (each one a snapshot) ------------------------

    def leg(self, txn_id: str) -> LegRecord | None:
        conn = self.ledger.db.read()
        return _record(conn.execute("SELECT * FROM txns WHERE txn_id = ?", (txn_id,)).fetchone())

    def account(self, account_id: str) -> Balance | None:
        return StoreTxn(self.ledger.db.read(), self.bank).account(account_id)

    def prepared_legs(self, older_than_ms: int = 0, limit: int = 100) -> list[LegRecord]:
        """Legs in state prepared whose last change is at least `older_than_ms` old, oldest
        first: the ones a participant is in doubt about."""
        rows = (
            self.ledger.db.read()
            .execute(
                "SELECT * FROM txns WHERE state = 'prepared' AND updated_unix_ms <= ? "
                "ORDER BY updated_unix_ms LIMIT ?",
                (now_ms() - older_than_ms, limit),
            )
            .fetchall()
        )
        return [_record(r) for r in rows]

    def close(self) -> None:
        self.ledger.close()


class Participant(ABC):
    """A bank's 2PC participant: the rules. The kit's bank server calls these, from many threads
    at once (each call's store transaction is serialised by the store)."""

    def __init__(self, store: LegStore) -> None:
        self.store = store
        self.bank = store.bank

    @abstractmethod
    def prepare(self, leg: PrepareLeg) -> Vote:
        """Votes on one leg (already checked by the kit: a known leg kind, a valid amount)."""

    @abstractmethod
    def commit(self, txn_id: str) -> str:
        """Applies the COMMIT decision; returns "committed"."""

    @abstractmethod
    def abort(self, txn_id: str) -> str:
        """Applies the ABORT decision; returns "aborted"."""

    @abstractmethod
    def resolve(self, ask: Ask, older_than_ms: int) -> int:
        """One round of in-doubt resolution; returns how many legs it decided."""

    def apply_batch(
        self, decisions: Sequence[tuple[str, bool]], prepares: Sequence[PrepareLeg]
    ) -> tuple[list[str | PaykitError], list[Vote]]:
        """The legs of one Exchange call: the (txn_id, commit) decisions, then the Prepares, each
        answered as its unary call would be. By default one by one through the rules above:
        each leg is its own participant transaction, so that is correct; the production
        participant applies a batch in one transaction, to share one fsync."""
        total = len(decisions) + len(prepares)
        check_batch(total)
        acks: list[str | PaykitError] = []
        votes: list[Vote] = []
        for txn_id, commit in decisions:
            try:
                acks.append(self.commit(txn_id) if commit else self.abort(txn_id))
            except PaykitError as err:
                acks.append(err)
            _between_legs(len(acks), total)
        for item in prepares:
            try:
                item.check()
            except InvalidInput as err:
                votes.append(Vote(False, err.reason, err.message))
            else:
                votes.append(self.prepare(item))
            _between_legs(len(acks) + len(votes), total)
        return acks, votes

    def close(self) -> None:
        self.store.close()


class LedgerParticipant(Participant):
    """The production participant: paykit.bank.ledger.Ledger, whose writes already follow every
    rule (see its docstrings), and the resolver's round. The participant lab's reference."""

    def __init__(self, store: LegStore) -> None:
        super().__init__(store)
        self.ledger = store.ledger

    def prepare(self, leg: PrepareLeg) -> Vote:
        return self.ledger.prepare(
            leg.txn_id, leg.leg, leg.account_id, leg.amount_minor, leg.coordinator
        )

    def commit(self, txn_id: str) -> str:
        return self.ledger.commit(txn_id)

    def abort(self, txn_id: str) -> str:
        return self.ledger.abort(txn_id)

    def resolve(self, ask: Ask, older_than_ms: int) -> int:
        resolved = 0
        for txn_id, coordinator in self.ledger.in_doubt(older_than_ms):
            answer = ask(txn_id, coordinator)
            if answer == Decision.COMMIT:
                self.ledger.commit(txn_id)
            elif answer == Decision.ABORT:
                self.ledger.abort(txn_id)
            else:  # PENDING, or no answer: keep the hold and ask again next round
                continue
            resolved += 1
        return resolved

    def apply_batch(
        self, decisions: Sequence[tuple[str, bool]], prepares: Sequence[PrepareLeg]
    ) -> tuple[list[str | PaykitError], list[Vote]]:
        return self.ledger.apply_batch(decisions, prepares)


def load_participant_class(dotted: str) -> type[Participant]:
    """The Participant subclass named "package.module:Class" (the module on sys.path)."""
    return plugins.load_class(dotted, Participant)
