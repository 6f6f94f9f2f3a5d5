"""Stripe-style idempotency keys: (user, key) -> request fingerprint, payment, stored response.

The key row and its payment are created in one transaction before any bank is asked;
the response is stored in the same transaction that logs the decision. So at every
moment a key is either unknown (nothing happened), in progress (exactly one payment
exists, and recovery will decide it), or done (its response is final and replayed
byte for byte). Deduplication never looks at time; time only prunes old keys.

Pruning forgets a key's stored answer, never its payment: payments are kept, and the
coordinator looks a new key up among them too. So a resend that comes after the
retention (an outbox that was offline for days) is refused with IdempotencyKeyExpired,
naming the payment, instead of paying twice (docs/correctness.md, "Keys after retention").
"""

from __future__ import annotations

import hashlib
import sqlite3
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from paykit.core.clock import now_ms
from paykit.core.errors import IdempotencyKeyExpired, IdempotencyKeyReused, InProgress, InvalidInput

if TYPE_CHECKING:
    from paykit.gateway.payments import PaymentRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency_keys (
    username        TEXT NOT NULL,
    idem_key        TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,   -- SHA-256 of the request's parameters
    payment_id      TEXT NOT NULL,
    response        BLOB,            -- NULL while in progress; the PayResponse bytes once decided
    created_unix_ms INTEGER NOT NULL,
    PRIMARY KEY (username, idem_key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_age ON idempotency_keys (created_unix_ms);
"""

KEY_MAX_LEN = 64
PRUNE_BATCH = 10_000  # rows deleted per transaction, so pruning never holds the lock long


def check_key(key: str) -> str:
    """A key must be a UUID (the client makes one per intended payment)."""
    try:
        return str(uuid.UUID(key))
    except (ValueError, AttributeError, TypeError):
        raise InvalidInput(
            f"idempotency key {key[:KEY_MAX_LEN]!r} is not a UUID; make one per payment and reuse "
            "it on retries"
        ) from None


def fingerprint(*params: object) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in params).encode()).hexdigest()


@dataclass(frozen=True)
class Claim:
    """The result of claiming a key: a new payment to run, or a stored response to replay."""

    payment_id: str
    response: bytes | None  # None: the caller owns the new payment and must decide it


def claim(conn: sqlite3.Connection, username: str, key: str, fp: str, new_payment_id: str) -> Claim:
    """Inside the caller's write transaction: replay, refuse, or insert the key."""
    row = conn.execute(
        "SELECT fingerprint, payment_id, response FROM idempotency_keys WHERE username = ? AND "
        "idem_key = ?",
        (username, key),
    ).fetchone()
    if row is None:
        conn.execute(
            "INSERT INTO idempotency_keys VALUES (?, ?, ?, ?, NULL, ?)",
            (username, key, fp, new_payment_id, now_ms()),
        )
        return Claim(new_payment_id, None)
    if row["fingerprint"] != fp:
        raise IdempotencyKeyReused(
            f"idempotency key {key} was used for a different payment; make a new key for a new "
            "payment"
        )
    if row["response"] is None:
        raise InProgress(f"payment with key {key} is still in progress; retry with the same key")
    return Claim(row["payment_id"], bytes(row["response"]))


def expired(earlier: PaymentRecord, fp: str) -> IdempotencyKeyExpired | IdempotencyKeyReused:
    """The refusal for a key that is no longer stored but whose payment is: it names the payment
    (so a client can look its outcome up), or says the key was used for different parameters."""
    if (
        fingerprint(
            earlier.from_bank,
            earlier.from_account,
            earlier.to_bank,
            earlier.to_account,
            earlier.amount_minor,
        )
        != fp
    ):
        return IdempotencyKeyReused(
            f"idempotency key {earlier.idempotency_key} was used for a different payment; "
            "make a new key for a new payment"
        )
    return IdempotencyKeyExpired(
        f"idempotency key {earlier.idempotency_key} was used for payment {earlier.payment_id}, "
        "whose stored answer "
        f"has been pruned; it will not run again: look its outcome up with GetPayment",
        metadata={"payment_id": earlier.payment_id},
    )


def store_response(conn: sqlite3.Connection, payment_id: str, response: bytes) -> None:
    # Found by its primary key through the payment's row: a lookup by payment_id alone would scan
    # every key kept (a day of payments), once per payment.
    conn.execute(
        "UPDATE idempotency_keys SET response = ? WHERE (username, idem_key) = "
        "(SELECT username, idempotency_key FROM payments WHERE payment_id = ?)",
        (response, payment_id),
    )


def insert_answered(conn: sqlite3.Connection, rows: Iterable[tuple]) -> None:
    """A bulk load of answered keys (the benchmark's history): rows of (username, key,
    fingerprint, payment_id, response bytes, created_unix_ms)."""
    conn.executemany(
        "INSERT INTO idempotency_keys (username, idem_key, fingerprint, payment_id, response, "
        "created_unix_ms) VALUES (?,?,?,?,?,?)",
        rows,
    )


def prune(conn_factory, retention_s: float) -> int:
    """Deletes finished keys older than the retention, in batches; returns how many."""
    cutoff = now_ms() - int(retention_s * 1000)
    total = 0
    while True:
        with conn_factory() as conn:
            n = conn.execute(
                "DELETE FROM idempotency_keys WHERE rowid IN (SELECT rowid FROM idempotency_keys "
                "WHERE created_unix_ms < ? AND response IS NOT NULL LIMIT ?)",
                (cutoff, PRUNE_BATCH),
            ).rowcount
        total += n
        if n < PRUNE_BATCH:
            return total
