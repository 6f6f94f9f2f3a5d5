"""The idempotency store's rules behind an interface (Lab C), over a key table the kit provides.

The gateway asks an `IdempotencyStoreBase` three things, always inside a durable write
transaction of its own (so a claim and its payment row, or a response and its decision, are
written together or not at all):

    claim(table, request)             a new payment to run, or the stored response to replay;
                                      refusals are raised (KEY_REUSED, IN_PROGRESS, KEY_EXPIRED)
    finish(table, payment, response)  store the client's response once the payment is decided
    prune(table, cutoff_ms, limit)    forget old finished keys (retention); how many were pruned

`KeyTable` is the durable store: rows of (username, key) -> fingerprint, payment id, response,
creation time, plus a look-up of the payment a key was used for, which is kept after its key is
pruned. So a store is written as rules, not SQL. `SqlKeys` is the gateway's own store (the
reference solution of Lab C); paykit/lab/labs/idempotency.py grades any other.
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from paykit.core.clock import now_ms
from paykit.core.errors import InProgress
from paykit.gateway import idempotency, payments
from paykit.gateway.payments import PaymentRecord


@dataclass(frozen=True)
class KeyRecord:
    username: str
    key: str
    fingerprint: str  # of the request's parameters (idempotency.fingerprint)
    payment_id: str
    response: bytes | None  # None while the payment is in progress
    created_unix_ms: int

    @property
    def finished(self) -> bool:
        return self.response is not None


@dataclass(frozen=True)
class PayRequest:
    """What a claim is asked: who, which key, the request's fingerprint, and the id the payment
    will have if this claim is new."""

    username: str
    key: str
    fingerprint: str
    new_payment_id: str


@dataclass(frozen=True)
class EarlierPayment:
    """A payment made with a key, however long ago (payments are kept after keys are pruned)."""

    payment_id: str
    fingerprint: str


class KeyTable:
    """The key rows, bound to one write transaction of the gateway's database."""

    def __init__(self, conn: sqlite3.Connection, clock: Callable[[], int] = now_ms) -> None:
        self.conn = conn
        self._clock = clock

    def now_ms(self) -> int:
        """The store's clock (milliseconds since the epoch); the grader may move it."""
        return self._clock()

    def get(self, username: str, key: str) -> KeyRecord | None:
        row = self.conn.execute(
            "SELECT * FROM idempotency_keys WHERE username = ? AND idem_key = ?", (username, key)
        ).fetchone()
        return _record(row) if row else None

    def insert(self, record: KeyRecord) -> None:
        """Adds a row; raises sqlite3.IntegrityError if (username, key) already has one."""
        self.conn.execute(
            "INSERT INTO idempotency_keys VALUES (?, ?, ?, ?, ?, ?)",
            (*_values(record),),
        )

    def put(self, record: KeyRecord) -> None:
        """Adds the row, or replaces the one (username, key) has."""
        self.conn.execute(
            "INSERT OR REPLACE INTO idempotency_keys VALUES (?, ?, ?, ?, ?, ?)", (*_values(record),)
        )

    def set_response(self, username: str, key: str, response: bytes) -> bool:
        """Stores the response of (username, key); False if it has no row."""
        return (
            self.conn.execute(
                "UPDATE idempotency_keys SET response = ? WHERE username = ? AND idem_key = ?",
                (bytes(response), username, key),
            ).rowcount
            == 1
        )

    def delete(self, username: str, key: str) -> None:
        self.conn.execute(
            "DELETE FROM idempotency_keys WHERE username = ? AND idem_key = ?", (username, key)
        )

    def delete_all(self, keys: list[tuple[str, str]]) -> None:
        """Deletes the rows of these (username, key) pairs, in one statement's worth of work."""
        self.conn.executemany(
            "DELETE FROM idempotency_keys WHERE username = ? AND idem_key = ?", keys
        )

    def older_than(self, cutoff_ms: int, limit: int) -> list[KeyRecord]:
        """Up to `limit` rows created before `cutoff_ms`, oldest first (finished or not)."""
        rows = self.conn.execute(
            "SELECT * FROM idempotency_keys WHERE created_unix_ms < ? ORDER BY created_unix_ms "
            "LIMIT ?",
            (cutoff_ms, limit),
        )
        return [_record(r) for r in rows]

    def earlier_payment(self, username: str, key: str) -> EarlierPayment | None:
        """The payment this user made with this key, if any, even after its key was pruned."""
        p = payments.by_key(self.conn, username, key)
        if p is None:
            return None
        fp = idempotency.fingerprint(
            p.from_bank, p.from_account, p.to_bank, p.to_account, p.amount_minor
        )
        return EarlierPayment(p.payment_id, fp)


def _record(row: sqlite3.Row) -> KeyRecord:
    response = row["response"]
    return KeyRecord(
        row["username"],
        row["idem_key"],
        row["fingerprint"],
        row["payment_id"],
        None if response is None else bytes(response),
        row["created_unix_ms"],
    )


def _values(r: KeyRecord) -> tuple:
    return (r.username, r.key, r.fingerprint, r.payment_id, r.response, r.created_unix_ms)


class IdempotencyStoreBase(ABC):
    """The rules of an idempotency store (Lab C). Every method runs inside the gateway's durable
    write transaction: whatever it writes in `table` commits together with the payment row (claim)
    or the decision (finish), or not at all. Refusals are raised as paykit errors:
    IdempotencyKeyReused, InProgress, IdempotencyKeyExpired (paykit.core.errors)."""

    @abstractmethod
    def claim(self, table: KeyTable, request: PayRequest) -> idempotency.Claim:
        """Claim(request.new_payment_id, None) when the key is new (the caller runs the
        payment); Claim(earlier payment id, stored bytes) to replay; otherwise raise."""

    @abstractmethod
    def finish(self, table: KeyTable, payment: PaymentRecord, response: bytes) -> None:
        """Stores the response of a decided payment (succeeded or failed: `payment.status`),
        under the payment's (username, idempotency_key), for replay byte for byte."""

    @abstractmethod
    def prune(self, table: KeyTable, cutoff_ms: int, limit: int) -> int:
        """Forgets up to `limit` finished keys created before `cutoff_ms`; returns how many."""


class SqlKeys(IdempotencyStoreBase):
    """The gateway's own store (and the Lab C reference): each rule of the module docstring."""

    def claim(self, table: KeyTable, request: PayRequest) -> idempotency.Claim:
        row = table.get(request.username, request.key)
        if row is None:
            earlier = table.earlier_payment(request.username, request.key)
            if earlier is not None:  # its key was pruned, the payment was not: never run it twice
                raise idempotency.expired(request.key, earlier, request.fingerprint)
            table.insert(
                KeyRecord(
                    request.username,
                    request.key,
                    request.fingerprint,
                    request.new_payment_id,
                    None,
                    table.now_ms(),
                )
            )
            return idempotency.Claim(request.new_payment_id, None)
        if row.fingerprint != request.fingerprint:
            raise idempotency.reused(request.key)
        if row.response is None:
            raise InProgress(
                f"payment with key {request.key} is still in progress; retry with the same key"
            )
        return idempotency.Claim(row.payment_id, row.response)

    def finish(self, table: KeyTable, payment: PaymentRecord, response: bytes) -> None:
        table.set_response(payment.username, payment.idempotency_key, response)

    def prune(self, table: KeyTable, cutoff_ms: int, limit: int) -> int:
        # Only finished keys: an in-progress key must keep answering IN_PROGRESS until decided.
        done = [(r.username, r.key) for r in table.older_than(cutoff_ms, limit) if r.finished]
        table.delete_all(done)
        return len(done)


def prune_all(
    db_write, store: IdempotencyStoreBase, retention_s: float, clock=now_ms, batch: int = 10_000
) -> int:
    """Prunes in batches of `batch` keys, one transaction each, so pruning never holds the lock
    long; returns how many keys were forgotten."""
    cutoff = clock() - int(retention_s * 1000)
    total = 0
    while True:
        with db_write() as conn:
            n = store.prune(KeyTable(conn, clock), cutoff, batch)
        total += n
        if n < batch:
            return total
