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
The rules themselves live behind an interface in paykit.gateway.keystore (Lab C grades them).
"""

from __future__ import annotations

import hashlib
import sqlite3
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from paykit.core.errors import IdempotencyKeyExpired, IdempotencyKeyReused, InvalidInput

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


def reused(key: str) -> IdempotencyKeyReused:
    return IdempotencyKeyReused(
        f"idempotency key {key} was used for a different payment; make a new key for a new payment"
    )


def expired(key: str, earlier, fp: str) -> IdempotencyKeyExpired | IdempotencyKeyReused:
    """The refusal for a key that is no longer stored but whose payment is (`earlier`, a
    keystore.EarlierPayment): it names the payment (so a client can look its outcome up), or
    says the key was used for different parameters."""
    if earlier.fingerprint != fp:
        return reused(key)
    return IdempotencyKeyExpired(
        f"idempotency key {key} was used for payment {earlier.payment_id}, whose stored answer "
        "has been pruned; it will not run again: look its outcome up with GetPayment",
        metadata={"payment_id": earlier.payment_id},
    )


def insert_answered(conn: sqlite3.Connection, rows: Iterable[tuple]) -> None:
    """A bulk load of answered keys (the benchmark's history): rows of (username, key,
    fingerprint, payment_id, response bytes, created_unix_ms)."""
    conn.executemany(
        "INSERT INTO idempotency_keys (username, idem_key, fingerprint, payment_id, response, "
        "created_unix_ms) VALUES (?,?,?,?,?,?)",
        rows,
    )
