"""A bank's books: accounts, holds and an append-only ledger in SQLite; the 2PC participant.

Protocol words (prepare / commit / abort) map to ledger words (hold / capture / release):
a debit leg's Prepare places a hold, its Commit captures it, its Abort releases it. A
credit leg's Prepare only records the expected credit (not spendable), its Commit
applies it. Every write is one BEGIN IMMEDIATE transaction with synchronous=FULL, so a
vote YES is on disk before it is sent; only Commit skips its own fsync (see `commit`).
Expected outcomes (a NO vote) are values.
"""

from __future__ import annotations

import csv
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from paykit.core import failpoints
from paykit.core.clock import now_ms
from paykit.core.db import Database
from paykit.core.errors import (
    AlreadyExists,
    InvalidInput,
    PaykitError,
    ProtocolViolation,
    UnknownAccount,
    UnknownPayment,
)
from paykit.core.ids import check_account_id
from paykit.core.money import (
    OPENING_BALANCE_MAX_MINOR,
    check_amount_minor,
    format_minor,
    parse_amount,
)
from paykit.core.twopc import BATCH_LEGS_MAX, CREDIT, DEBIT, TxnState, Vote

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    account_id      TEXT PRIMARY KEY,
    balance_minor   INTEGER NOT NULL CHECK (balance_minor >= 0),
    held_minor INTEGER NOT NULL DEFAULT 0 CHECK (held_minor >= 0 AND held_minor <= balance_minor),
    opening_minor   INTEGER NOT NULL,
    created_unix_ms INTEGER NOT NULL
);
-- One row per (payment, this bank). state: prepared | committed | aborted.
-- A tombstone is an aborted row with leg '' (Abort came before Prepare).
CREATE TABLE IF NOT EXISTS txns (
    txn_id          TEXT PRIMARY KEY,
    leg             TEXT NOT NULL,
    account_id      TEXT NOT NULL,
    amount_minor    INTEGER NOT NULL,
    state           TEXT NOT NULL,
    reason          TEXT NOT NULL DEFAULT '',
    coordinator     TEXT NOT NULL DEFAULT '',
    created_unix_ms INTEGER NOT NULL,
    updated_unix_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS txns_prepared ON txns (state, updated_unix_ms) WHERE state = 'prepared';
-- Who an account was opened for (the gateway's registering user), so that a registration the
-- gateway could not finish (it crashed, or the reply was lost) can be completed by a retry.
CREATE TABLE IF NOT EXISTS openings (
    account_id      TEXT PRIMARY KEY REFERENCES accounts (account_id),
    opened_for      TEXT NOT NULL
);
-- Append-only: balance_minor always equals the sum of an account's entries.
CREATE TABLE IF NOT EXISTS entries (
    entry_id        INTEGER PRIMARY KEY,
    account_id      TEXT NOT NULL,
    txn_id          TEXT,
    kind            TEXT NOT NULL,
    delta_minor     INTEGER NOT NULL,
    created_unix_ms INTEGER NOT NULL
);
"""

PREPARED, COMMITTED, ABORTED = TxnState.PREPARED, TxnState.COMMITTED, TxnState.ABORTED


def check_batch(n: int) -> None:
    if not 1 <= n <= BATCH_LEGS_MAX:
        raise InvalidInput(f"a batch holds 1 to {BATCH_LEGS_MAX} legs, not {n}")


def _between_legs(done: int, total: int) -> None:
    """The failpoint inside a batch: its first leg written, the others not, nothing committed."""
    if done == 1 and total > 1:
        failpoints.hit("bank.batch_between_legs")


@dataclass(frozen=True)
class PrepareLeg:
    """One leg of a Prepare: its transaction, which side, whose account, how much."""

    txn_id: str
    leg: str
    account_id: str
    amount_minor: int
    coordinator: str = ""

    def check(self) -> None:
        if self.leg not in (DEBIT, CREDIT):
            raise InvalidInput(f"leg must be {DEBIT!r} or {CREDIT!r}, got {self.leg[:16]!r}")
        check_amount_minor(self.amount_minor)


@dataclass(frozen=True)
class Balance:
    account_id: str
    balance_minor: int
    held_minor: int

    @property
    def available_minor(self) -> int:
        return self.balance_minor - self.held_minor


class Ledger:
    def __init__(self, path: Path, *, bank: str) -> None:
        self.bank = bank
        self.db = Database(path, SCHEMA)

    # -- accounts -------------------------------------------------------------

    def open_account(self, account_id: str, opening_minor: int, opened_for: str = "") -> bool:
        """Opens the account; True if opened now. Opening it again for the same `opened_for` (not
        empty) with the same opening balance changes nothing and returns False: that is a retry
        of one registration. Anything else that finds the account is AlreadyExists."""
        check_account_id(account_id)
        check_amount_minor(opening_minor, allow_zero=True, max_minor=OPENING_BALANCE_MAX_MINOR)
        ts = now_ms()
        with self.db.write() as conn:
            row = conn.execute(
                "SELECT a.opening_minor, o.opened_for FROM accounts a LEFT JOIN openings o USING "
                "(account_id) "
                "WHERE a.account_id = ?",
                (account_id,),
            ).fetchone()
            if row is not None:
                if (
                    opened_for
                    and row["opened_for"] == opened_for
                    and row["opening_minor"] == opening_minor
                ):
                    return False
                raise AlreadyExists(f"account {account_id} already exists at {self.bank}")
            conn.execute(
                "INSERT INTO accounts VALUES (?, ?, 0, ?, ?)",
                (account_id, opening_minor, opening_minor, ts),
            )
            if opened_for:
                conn.execute("INSERT INTO openings VALUES (?, ?)", (account_id, opened_for))
            conn.execute(
                "INSERT INTO entries (account_id, txn_id, kind, delta_minor, created_unix_ms) "
                "VALUES (?, NULL, 'open', ?, ?)",
                (account_id, opening_minor, ts),
            )
        return True

    def accounts(self, *, after: str = "", limit: int) -> list[Balance]:
        """At most `limit` accounts whose id sorts after `after`, by id (a keyset page)."""
        rows = self.db.read().execute(
            "SELECT account_id, balance_minor, held_minor FROM accounts WHERE account_id > ? "
            "ORDER BY account_id LIMIT ?",
            (after, limit),
        )
        return [Balance(r["account_id"], r["balance_minor"], r["held_minor"]) for r in rows]

    def balance(self, account_id: str) -> Balance:
        row = (
            self.db.read()
            .execute(
                "SELECT balance_minor, held_minor FROM accounts WHERE account_id = ?", (account_id,)
            )
            .fetchone()
        )
        if row is None:
            raise UnknownAccount(f"no account {account_id} at {self.bank}")
        return Balance(account_id, row["balance_minor"], row["held_minor"])

    def seed_from_csv(self, csv_path: Path) -> int:
        """Opens this bank's rows of a `bank,account_id,opening_balance` file; skips existing
        ones."""
        opened = 0
        with open(csv_path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if row["bank"].strip() != self.bank:
                    continue
                try:
                    self.open_account(
                        row["account_id"].strip(),
                        parse_amount(
                            row["opening_balance"],
                            allow_zero=True,
                            max_minor=OPENING_BALANCE_MAX_MINOR,
                        ),
                    )
                    opened += 1
                except AlreadyExists:
                    pass
        return opened

    # -- two-phase commit participant -----------------------------------------

    def prepare(
        self, txn_id: str, leg: str, account_id: str, amount_minor: int, coordinator: str = ""
    ) -> Vote:
        """Places a hold (debit) or records the expected credit, durably, then votes."""
        item = PrepareLeg(txn_id, leg, account_id, amount_minor, coordinator)
        item.check()
        with self.db.write() as conn:
            vote = self._prepare(conn, item)
            failpoints.hit("bank.after_hold_before_commit")
        return vote

    def prepare_many(self, legs: Sequence[PrepareLeg]) -> list[Vote]:
        """Prepares every leg in ONE durable transaction (see apply_batch)."""
        return self.apply_batch([], legs)[1]

    def apply_batch(
        self, decisions: Sequence[tuple[str, bool]], prepares: Sequence[PrepareLeg]
    ) -> tuple[list[str | PaykitError], list[Vote]]:
        """Applies (txn_id, commit) decisions, then Prepares, in ONE transaction (one fsync):
        after a crash each leg is applied or none is. Each leg is answered as its unary call
        would answer it: a decision with its new state or the error that kept it from applying
        (the others still apply), a Prepare with its vote (NO with the reason when it is not
        valid). Decisions go first, so a hold they release is spendable by the Prepares.
        Durable (fsync) unless it holds only Commits (see commit() for why those may skip it)."""
        check_batch(len(decisions) + len(prepares))
        durable = bool(prepares) or not all(commit for _, commit in decisions)
        acks: list[str | PaykitError] = []
        votes: list[Vote] = []
        total = len(decisions) + len(prepares)
        with self.db.write(durable=durable) as conn:
            for txn_id, commit in decisions:
                acks.append(self._decide_one(conn, txn_id, commit))
                _between_legs(len(acks), total)
            for item in prepares:
                votes.append(self._prepare_checked(conn, item))
                _between_legs(len(acks) + len(votes), total)
            if prepares:
                failpoints.hit("bank.after_hold_before_commit")
        return acks, votes

    def _prepare_checked(self, conn: sqlite3.Connection, item: PrepareLeg) -> Vote:
        try:
            item.check()
        except InvalidInput as err:
            return Vote(False, err.reason, err.message)
        return self._prepare(conn, item)

    def _decide_one(self, conn: sqlite3.Connection, txn_id: str, commit: bool) -> str | PaykitError:
        """One decision inside a batch: its new state, or the error (its writes, if any, undone)."""
        conn.execute("SAVEPOINT leg")
        try:
            return (self._commit if commit else self._abort)(conn, txn_id)
        except PaykitError as err:
            conn.execute("ROLLBACK TO leg")
            return err
        finally:
            conn.execute("RELEASE leg")

    def _prepare(self, conn: sqlite3.Connection, item: PrepareLeg) -> Vote:
        row = conn.execute(
            "SELECT state, reason FROM txns WHERE txn_id = ?", (item.txn_id,)
        ).fetchone()
        if row is not None:  # a retried Prepare, or one that came after its Abort
            if row["state"] == ABORTED:
                return Vote(False, row["reason"] or "ABORTED", "this payment was already aborted")
            return Vote(True)
        vote = self._vote(conn, item.leg, item.account_id, item.amount_minor)
        state, ts = (PREPARED if vote.yes else ABORTED), now_ms()
        conn.execute(
            "INSERT INTO txns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                item.txn_id,
                item.leg,
                item.account_id,
                item.amount_minor,
                state,
                vote.reason,
                item.coordinator,
                ts,
                ts,
            ),
        )
        if vote.yes and item.leg == DEBIT:
            conn.execute(
                "UPDATE accounts SET held_minor = held_minor + ? WHERE account_id = ?",
                (item.amount_minor, item.account_id),
            )
        return vote

    def _vote(self, conn, leg: str, account_id: str, amount_minor: int) -> Vote:
        acct = conn.execute(
            "SELECT balance_minor, held_minor FROM accounts WHERE account_id = ?", (account_id,)
        ).fetchone()
        if acct is None:
            return Vote(False, "UNKNOWN_ACCOUNT", f"no account {account_id} at {self.bank}")
        available = acct["balance_minor"] - acct["held_minor"]
        if leg == DEBIT and available < amount_minor:
            return Vote(
                False,
                "INSUFFICIENT_FUNDS",
                f"insufficient funds in {account_id} at {self.bank}: available "
                f"{format_minor(available)}, needed {format_minor(amount_minor)}",
            )
        return Vote(True)

    def commit(self, txn_id: str) -> str:
        """Captures the hold / applies the credit. A second Commit is a no-op.

        Not fsynced (synchronous=NORMAL): the vote to commit is on disk (Prepare is durable) and
        so is the coordinator's decision, so if a machine crash loses this commit, the
        transaction is prepared again after the restart and the in-doubt resolver, which asks
        the coordinator about every prepared transaction, applies it again. A process crash
        (kill -9) loses nothing either way: the write is in the operating system's cache."""
        with self.db.write(durable=False) as conn:
            return self._commit(conn, txn_id)

    def abort(self, txn_id: str) -> str:
        """Releases the hold. Before any Prepare it leaves a tombstone. Idempotent."""
        with self.db.write() as conn:
            return self._abort(conn, txn_id)

    def decide_many(self, decisions: Sequence[tuple[str, bool]]) -> list[str | PaykitError]:
        """Applies (txn_id, commit) decisions in one transaction (see apply_batch)."""
        return self.apply_batch(decisions, [])[0]

    def _commit(self, conn: sqlite3.Connection, txn_id: str) -> str:
        row = conn.execute("SELECT * FROM txns WHERE txn_id = ?", (txn_id,)).fetchone()
        if row is None:
            raise UnknownPayment(f"{self.bank} has no prepared transaction {txn_id}")
        if row["state"] == COMMITTED:
            return COMMITTED
        if row["state"] == ABORTED:
            raise ProtocolViolation(f"{self.bank} cannot commit {txn_id}: it was aborted")
        amount, account = row["amount_minor"], row["account_id"]
        if row["leg"] == DEBIT:
            conn.execute(
                "UPDATE accounts SET balance_minor = balance_minor - ?, "
                "held_minor = held_minor - ? WHERE account_id = ?",
                (amount, amount, account),
            )
            kind, delta = "capture", -amount
        else:
            conn.execute(
                "UPDATE accounts SET balance_minor = balance_minor + ? WHERE account_id = ?",
                (amount, account),
            )
            kind, delta = "credit", amount
        ts = now_ms()
        conn.execute(
            "INSERT INTO entries (account_id, txn_id, kind, delta_minor, created_unix_ms) "
            "VALUES (?, ?, ?, ?, ?)",
            (account, txn_id, kind, delta, ts),
        )
        conn.execute(
            "UPDATE txns SET state = ?, updated_unix_ms = ? WHERE txn_id = ?",
            (COMMITTED, ts, txn_id),
        )
        return COMMITTED

    def _abort(self, conn: sqlite3.Connection, txn_id: str) -> str:
        ts = now_ms()
        row = conn.execute("SELECT * FROM txns WHERE txn_id = ?", (txn_id,)).fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO txns VALUES (?, '', '', 0, ?, 'ABORTED_BEFORE_PREPARE', '', ?, ?)",
                (txn_id, ABORTED, ts, ts),
            )
            return ABORTED
        if row["state"] == ABORTED:
            return ABORTED
        if row["state"] == COMMITTED:
            raise ProtocolViolation(f"{self.bank} cannot abort {txn_id}: it was committed")
        if row["leg"] == DEBIT:
            conn.execute(
                "UPDATE accounts SET held_minor = held_minor - ? WHERE account_id = ?",
                (row["amount_minor"], row["account_id"]),
            )
        conn.execute(
            "UPDATE txns SET state = ?, reason = 'COORDINATOR_ABORTED', updated_unix_ms = ? "
            "WHERE txn_id = ?",
            (ABORTED, ts, txn_id),
        )
        return ABORTED

    def txn_state(self, txn_id: str) -> str | None:
        row = (
            self.db.read().execute("SELECT state FROM txns WHERE txn_id = ?", (txn_id,)).fetchone()
        )
        return row["state"] if row else None

    def in_doubt(self, older_than_ms: int, limit: int = 100) -> list[tuple[str, str]]:
        """Prepared transactions older than `older_than_ms`: (txn_id, coordinator address)."""
        rows = (
            self.db.read()
            .execute(
                "SELECT txn_id, coordinator FROM txns WHERE state = 'prepared' AND updated_unix_ms "
                "<= ? "
                "ORDER BY updated_unix_ms LIMIT ?",
                (now_ms() - older_than_ms, limit),
            )
            .fetchall()
        )
        return [(r["txn_id"], r["coordinator"]) for r in rows]

    def close(self) -> None:
        self.db.close()


def insert_history(
    conn: sqlite3.Connection,
    legs: Iterable[tuple[str, str, str, int, int]],
    deltas: Mapping[str, int],
) -> None:
    """A bulk load of old committed legs into a stopped bank's file (the benchmark's history):
    legs of (txn_id, leg, account_id, amount_minor, unix_ms), each with its ledger entry, and
    each account's balance moved by its net delta, so every invariant of paykit.lab.check holds."""
    legs = list(legs)
    conn.executemany(
        "INSERT INTO txns (txn_id, leg, account_id, amount_minor, state, created_unix_ms, "
        "updated_unix_ms) VALUES (?,?,?,?,'committed',?,?)",
        ((txn, leg, acct, amount, ts, ts) for txn, leg, acct, amount, ts in legs),
    )
    conn.executemany(
        "INSERT INTO entries (account_id, txn_id, kind, delta_minor, created_unix_ms) VALUES "
        "(?,?,?,?,?)",
        (
            (
                acct,
                txn,
                "capture" if leg == DEBIT else "credit",
                -amount if leg == DEBIT else amount,
                ts,
            )
            for txn, leg, acct, amount, ts in legs
        ),
    )
    conn.executemany(
        "UPDATE accounts SET balance_minor = balance_minor + ? WHERE account_id = ?",
        ((delta, acct) for acct, delta in deltas.items()),
    )
