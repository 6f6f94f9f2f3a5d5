"""Lab C starter: the idempotency store. Copy this file (cp idempotency_starter.py mystore.py),
fill in the three methods, and grade it:

    paykit lab grade idempotency mystore:MyIdempotencyStore

Every method runs inside the gateway's durable write transaction: what you write in `table`
commits together with the payment row (claim) or the logged decision (finish), or not at all.
You write rules, not SQL; `table` (paykit.gateway.keystore.KeyTable) gives you:

    table.get(username, key) -> KeyRecord | None       the key's row
    table.insert(KeyRecord(...))                       add a row (IntegrityError if one exists)
    table.put(KeyRecord(...))                          add or replace a row
    table.set_response(username, key, response_bytes)  store a response (False: no such row)
    table.delete(username, key)                        (delete_all([(username, key), ...]))
    table.older_than(cutoff_ms, limit) -> [KeyRecord]  oldest rows first, finished or not
    table.earlier_payment(username, key)               the payment made with this key, kept
        -> EarlierPayment(payment_id, fingerprint) | None   after the key row is pruned
    table.now_ms()                                     the store's clock: use it, not time.time()

A KeyRecord is (username, key, fingerprint, payment_id, response, created_unix_ms); its
response is None while the payment is in progress (`record.finished` says whether it has one).
"""

from __future__ import annotations

from paykit.core.errors import IdempotencyKeyExpired, IdempotencyKeyReused, InProgress
from paykit.gateway.idempotency import Claim
from paykit.gateway.keystore import IdempotencyStoreBase, KeyRecord, KeyTable, PayRequest
from paykit.gateway.payments import PaymentRecord

__all__ = [
    "Claim",
    "IdempotencyKeyExpired",
    "IdempotencyKeyReused",
    "InProgress",
    "KeyRecord",
    "MyIdempotencyStore",
]


class MyIdempotencyStore(IdempotencyStoreBase):
    def claim(self, table: KeyTable, request: PayRequest) -> Claim:
        """Claim the key for a payment, replay its answer, or refuse.

        request: username, key, fingerprint (of the payment's parameters), new_payment_id.

        1. Deduplicate by (username, key) only: never by time, never by parameters. Two keys
           are two payments even with the same parameters at the same moment; keys are per
           user (another user's same key is another payment).
        2. A key never seen: remember it (its fingerprint, request.new_payment_id, no response
           yet, created now) and return Claim(request.new_payment_id, None): the gateway runs
           the payment.
        3. A key seen with another fingerprint: raise IdempotencyKeyReused (change nothing).
        4. A key seen, its payment still in progress (no response yet): raise InProgress. Never
           a second payment, however many duplicates arrive at once.
        5. A key seen, finished: return Claim(its payment_id, its stored response), the bytes
           exactly as stored, succeeded or failed alike.
        6. Retention: a key no longer stored whose payment is kept (table.earlier_payment) must
           never run again: raise IdempotencyKeyExpired naming the payment,
           metadata={"payment_id": ...} (or IdempotencyKeyReused if the fingerprint differs).
        """
        raise NotImplementedError("claim: see the rules in its docstring")

    def finish(self, table: KeyTable, payment: PaymentRecord, response: bytes) -> None:
        """Store the client's response of a decided payment, under (payment.username,
        payment.idempotency_key), for replay byte for byte. Failed payments too: an error is an
        answer, and its retry must get the same one."""
        raise NotImplementedError("finish: see the rule in its docstring")

    def prune(self, table: KeyTable, cutoff_ms: int, limit: int) -> int:
        """Forget up to `limit` finished keys created before `cutoff_ms`; return how many.

        Keys must expire (the table would grow forever), but a key still in progress is never
        pruned: its duplicates must keep getting InProgress until its payment is decided."""
        raise NotImplementedError("prune: see the rule in its docstring")
