"""The gateway's payment records and durable decision log, and history search.

A payment row is written (decision NULL: collecting votes) before any Prepare is sent;
its `decision` column is the coordinator's log: once 'commit' or 'abort' is written it
never changes. `debit_acked`/`credit_acked` record which bank has applied it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from paykit.core.clock import now_ms
from paykit.core.errors import InvalidInput
from paykit.core.twopc import STATUS_OF_DECISION, Decision, PaymentStatus

SCHEMA = """
CREATE TABLE IF NOT EXISTS payments (
    payment_id       TEXT PRIMARY KEY,
    username         TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    from_bank        TEXT NOT NULL,
    from_account     TEXT NOT NULL,
    to_bank          TEXT NOT NULL,
    to_account       TEXT NOT NULL,
    amount_minor     INTEGER NOT NULL CHECK (amount_minor > 0),
    decision         TEXT CHECK (decision IN ('commit', 'abort')),   -- NULL: collecting votes
    failure_reason   TEXT NOT NULL DEFAULT '',
    failure_message  TEXT NOT NULL DEFAULT '',
    debit_acked      INTEGER NOT NULL DEFAULT 0,
    credit_acked     INTEGER NOT NULL DEFAULT 0,
    created_unix_ms  INTEGER NOT NULL,
    decided_unix_ms  INTEGER,
    settled_unix_ms  INTEGER
);
CREATE INDEX IF NOT EXISTS payments_by_user ON payments (username, created_unix_ms);
CREATE INDEX IF NOT EXISTS payments_by_payee ON payments (to_bank, to_account, created_unix_ms);
CREATE INDEX IF NOT EXISTS payments_unsettled ON payments (decided_unix_ms) WHERE settled_unix_ms IS
NULL;
-- Recovery at start reads the undecided ones: a small index, not a scan of the whole history.
CREATE INDEX IF NOT EXISTS payments_undecided ON payments (created_unix_ms) WHERE decision IS NULL;
-- Payments are kept after their idempotency key is pruned: a late resend of an old key finds its
-- payment here and is refused, so it can never run twice (see idempotency.py).
CREATE INDEX IF NOT EXISTS payments_by_key ON payments (username, idempotency_key);
"""

PENDING, SUCCEEDED, FAILED = PaymentStatus.PENDING, PaymentStatus.SUCCEEDED, PaymentStatus.FAILED
STATUSES = tuple(PaymentStatus)
SEARCH_PAGE_DEFAULT = 50  # a search's page_size 0
SEARCH_PAGE_MAX = 1000  # a larger page_size is read as this (AIP-158)


@dataclass(frozen=True)
class PaymentRecord:
    payment_id: str
    username: str
    idempotency_key: str
    from_bank: str
    from_account: str
    to_bank: str
    to_account: str
    amount_minor: int
    decision: Decision | None = None
    failure_reason: str = ""
    failure_message: str = ""
    debit_acked: bool = False
    credit_acked: bool = False
    created_unix_ms: int = 0

    @property
    def status(self) -> PaymentStatus:
        return STATUS_OF_DECISION[self.decision]

    @property
    def settled(self) -> bool:
        return self.debit_acked and self.credit_acked

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> PaymentRecord:
        return cls(
            row["payment_id"],
            row["username"],
            row["idempotency_key"],
            row["from_bank"],
            row["from_account"],
            row["to_bank"],
            row["to_account"],
            row["amount_minor"],
            Decision(row["decision"]) if row["decision"] else None,
            row["failure_reason"],
            row["failure_message"],
            bool(row["debit_acked"]),
            bool(row["credit_acked"]),
            row["created_unix_ms"],
        )


def insert(conn: sqlite3.Connection, p: PaymentRecord) -> None:
    conn.execute(
        "INSERT INTO payments (payment_id, username, idempotency_key, from_bank, from_account, "
        "to_bank, "
        "to_account, amount_minor, created_unix_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            p.payment_id,
            p.username,
            p.idempotency_key,
            p.from_bank,
            p.from_account,
            p.to_bank,
            p.to_account,
            p.amount_minor,
            p.created_unix_ms,
        ),
    )


def log_decision(
    conn: sqlite3.Connection, payment_id: str, decision: str, reason: str = "", message: str = ""
) -> bool:
    """Writes the decision once; returns False if one was already logged (it never changes)."""
    cur = conn.execute(
        "UPDATE payments SET decision = ?, failure_reason = ?, failure_message = ?, "
        "decided_unix_ms = ? "
        "WHERE payment_id = ? AND decision IS NULL",
        (decision, reason, message, now_ms(), payment_id),
    )
    return cur.rowcount == 1


def record_acks(conn: sqlite3.Connection, payment_id: str, *, debit: bool, credit: bool) -> None:
    conn.execute(
        "UPDATE payments SET debit_acked = debit_acked OR ?, credit_acked = credit_acked OR ? "
        "WHERE payment_id = ?",
        (int(debit), int(credit), payment_id),
    )
    conn.execute(
        "UPDATE payments SET settled_unix_ms = ? WHERE payment_id = ? AND debit_acked AND "
        "credit_acked "
        "AND settled_unix_ms IS NULL",
        (now_ms(), payment_id),
    )


def get(conn: sqlite3.Connection, payment_id: str) -> PaymentRecord | None:
    row = conn.execute("SELECT * FROM payments WHERE payment_id = ?", (payment_id,)).fetchone()
    return PaymentRecord.from_row(row) if row else None


def insert_history(conn: sqlite3.Connection, rows: Iterable[tuple]) -> None:
    """A bulk load of old payments, committed and settled, into a stopped gateway's file (the
    benchmark's history): rows of (payment_id, username, key, from_bank, from_account, to_bank,
    to_account, amount_minor, created_unix_ms)."""
    conn.executemany(
        "INSERT INTO payments (payment_id, username, idempotency_key, from_bank, from_account, "
        "to_bank, "
        "to_account, amount_minor, decision, debit_acked, credit_acked, created_unix_ms, "
        "decided_unix_ms, "
        "settled_unix_ms) VALUES (?,?,?,?,?,?,?,?,'commit',1,1,?,?,?)",
        ((*r, r[-1], r[-1]) for r in rows),
    )


def by_key(conn: sqlite3.Connection, username: str, key: str) -> PaymentRecord | None:
    """The payment a user made with an idempotency key, however long ago (payments are kept)."""
    row = conn.execute(
        "SELECT * FROM payments WHERE username = ? AND idempotency_key = ?", (username, key)
    ).fetchone()
    return PaymentRecord.from_row(row) if row else None


def undecided(conn: sqlite3.Connection) -> list[PaymentRecord]:
    return [
        PaymentRecord.from_row(r)
        for r in conn.execute("SELECT * FROM payments WHERE decision IS NULL")
    ]


def unsettled(
    conn: sqlite3.Connection,
    decided_before_ms: int,
    limit: int = 100,
    skip_banks: frozenset[str] = frozenset(),
) -> list[PaymentRecord]:
    """The oldest decided payments some bank has not acknowledged, except those waiting only
    on a bank in `skip_banks` (down this round), so a dead bank cannot starve the others."""
    skip = ",".join("?" * len(skip_banks))
    rows = conn.execute(
        "SELECT * FROM payments WHERE settled_unix_ms IS NULL AND decided_unix_ms IS NOT NULL "
        f"AND decided_unix_ms <= ? AND NOT ((debit_acked OR from_bank IN ({skip})) "
        f"AND (credit_acked OR to_bank IN ({skip}))) ORDER BY decided_unix_ms LIMIT ?",
        (decided_before_ms, *skip_banks, *skip_banks, limit),
    )
    return [PaymentRecord.from_row(r) for r in rows]


def in_flight(
    conn: sqlite3.Connection, *, limit: int, after: tuple[int, str] | None = None
) -> list[PaymentRecord]:
    """At most `limit` payments not settled yet (undecided, or decided and not applied by both
    banks), oldest first, starting after the (created_unix_ms, payment_id) keyset `after`."""
    keyset, args = "", {"limit": limit}
    if after is not None:
        keyset = (
            " AND created_unix_ms >= :after_ms AND NOT (created_unix_ms = :after_ms "
            "AND payment_id <= :after_id)"
        )
        args.update(after_ms=after[0], after_id=after[1])
    rows = conn.execute(
        f"SELECT * FROM payments WHERE settled_unix_ms IS NULL{keyset} "
        "ORDER BY created_unix_ms, payment_id LIMIT :limit",
        args,
    )
    return [PaymentRecord.from_row(r) for r in rows]


@dataclass(frozen=True, kw_only=True)
class SearchFilter:
    status: str = ""
    counterparty: str = ""  # "BANK/ACCOUNT" or "ACCOUNT"
    min_amount_minor: int = 0
    max_amount_minor: int = 0
    since_unix_ms: int = 0
    until_unix_ms: int = 0

    def check(self) -> SearchFilter:
        if self.status and self.status not in STATUSES:
            raise InvalidInput(
                f"status {self.status!r} is not one of {', '.join(STATUSES)}",
                metadata={"field": "status"},
            )
        if self.min_amount_minor < 0 or self.max_amount_minor < 0:
            field = "min_amount_minor" if self.min_amount_minor < 0 else "max_amount_minor"
            raise InvalidInput("amount bounds must not be negative", metadata={"field": field})
        if self.max_amount_minor and self.min_amount_minor > self.max_amount_minor:
            raise InvalidInput(
                "min amount is larger than max amount", metadata={"field": "min_amount_minor"}
            )
        return self


def search(
    conn: sqlite3.Connection,
    username: str,
    bank: str,
    account: str,
    f: SearchFilter,
    *,
    page_size: int,
    after: tuple[int, str] | None = None,
) -> tuple[list[PaymentRecord], bool]:
    """One page of the user's own history (payments they made, and payments made to their
    account), newest first, and whether more follow. `after` is the (created_unix_ms,
    payment_id) of the previous page's last payment: the page starts strictly after it."""
    where, args = [], []
    if f.status:
        where.append(
            {
                PENDING: "decision IS NULL",
                SUCCEEDED: "decision = 'commit'",
                FAILED: "decision = 'abort'",
            }[f.status]
        )
    if f.counterparty:
        cp_bank, _, cp_account = f.counterparty.rpartition("/")
        clause = (
            "((username = :me AND to_account = :cpa{b1}) "
            "OR (username != :me AND from_account = :cpa{b2}))"
        )
        b1 = " AND to_bank = :cpb" if cp_bank else ""
        b2 = " AND from_bank = :cpb" if cp_bank else ""
        where.append(clause.format(b1=b1, b2=b2))
        args += [("cpa", cp_account), ("cpb", cp_bank)]
    for column, op, value in (
        ("amount_minor", ">=", f.min_amount_minor),
        ("amount_minor", "<=", f.max_amount_minor),
        ("created_unix_ms", ">=", f.since_unix_ms),
        ("created_unix_ms", "<=", f.until_unix_ms),
    ):
        if value:
            where.append(f"{column} {op} {int(value)}")
    if after is not None:  # a keyset: the rows past the last one of the previous page
        where.append(
            "created_unix_ms <= :after_ms AND NOT (created_unix_ms = :after_ms "
            "AND payment_id <= :after_id)"
        )
        args += [("after_ms", after[0]), ("after_id", after[1])]
    # One row more than the page: it says whether another page follows.
    params = dict(args, me=username, bank=bank, account=account, limit=page_size + 1)
    extra = "".join(f" AND {w}" for w in where)
    # Two index range scans (mine, and to my account), each newest first and stopped after
    # `limit` rows, then merged: the cost follows the page asked for, not the size of the history.
    newest = "ORDER BY created_unix_ms DESC, payment_id LIMIT :limit"
    sql = (
        f"SELECT * FROM (SELECT * FROM payments WHERE username = :me{extra} {newest}) "
        "UNION SELECT * FROM (SELECT * FROM payments WHERE to_bank = :bank AND to_account = "
        f":account{extra} "
        f"{newest}) {newest}"
    )
    found = [PaymentRecord.from_row(r) for r in conn.execute(sql, params)]
    return found[:page_size], len(found) > page_size
