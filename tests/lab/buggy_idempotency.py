"""Classic mistakes in an idempotency store, one per class, for tests/lab/test_lab_idempotency.py.

Each is the reference (SqlKeys) with one rule broken. A module of its own, not a test file: the
whole-cluster checks start a gateway that imports these classes by name.
"""

from __future__ import annotations

from paykit.core.errors import InProgress
from paykit.gateway.idempotency import Claim
from paykit.gateway.keystore import KeyRecord, KeyTable, PayRequest, SqlKeys
from paykit.gateway.payments import SUCCEEDED, PaymentRecord

WINDOW_MS = 10 * 60 * 1000


def _new(table: KeyTable, r: PayRequest, username: str | None = None) -> Claim:
    table.put(
        KeyRecord(
            r.username if username is None else username,
            r.key,
            r.fingerprint,
            r.new_payment_id,
            None,
            table.now_ms(),
        )
    )
    return Claim(r.new_payment_id, None)


class DedupWindow(SqlKeys):
    """Deduplicates by timestamp: a key counts as a duplicate only within ten minutes."""

    def claim(self, table, request):
        row = table.get(request.username, request.key)
        if row is not None and table.now_ms() - row.created_unix_ms > WINDOW_MS:
            return _new(table, request)
        return super().claim(table, request)


class DedupByParameters(SqlKeys):
    """Deduplicates by parameters and time: the same payment within a minute is a duplicate."""

    def claim(self, table, request):
        recent = table.older_than(table.now_ms() + 1, 10_000)
        for row in recent:
            same = row.username == request.username and row.fingerprint == request.fingerprint
            if same and table.now_ms() - row.created_unix_ms < 60_000 and row.finished:
                return Claim(row.payment_id, row.response)
            if same and table.now_ms() - row.created_unix_ms < 60_000:
                raise InProgress("that payment is in progress")
        return super().claim(table, request)


class StoresNoErrors(SqlKeys):
    """Stores only successful responses: a failed payment's retry finds no answer."""

    def finish(self, table, payment: PaymentRecord, response):
        if payment.status == SUCCEEDED:
            super().finish(table, payment, response)


class RunsDuplicatesTwice(SqlKeys):
    """Takes a key whose payment has no response yet as free: a concurrent duplicate runs again."""

    def claim(self, table, request):
        row = table.get(request.username, request.key)
        if row is not None and not row.finished and row.fingerprint == request.fingerprint:
            return _new(table, request)
        return super().claim(table, request)


class ReplaysLastResponse(SqlKeys):
    """Replays from an in-memory cache of the last response: a different payment's answer."""

    def __init__(self) -> None:
        self.last: bytes | None = None

    def claim(self, table, request):
        got = super().claim(table, request)
        if got.response is not None and self.last is not None:
            return Claim(got.payment_id, self.last)
        return got

    def finish(self, table, payment, response):
        super().finish(table, payment, response)
        self.last = response


class IgnoresParameters(SqlKeys):
    """Never compares fingerprints: a key reused for another payment replays the first one."""

    def claim(self, table, request):
        row = table.get(request.username, request.key)
        if row is not None and row.fingerprint != request.fingerprint:
            request = PayRequest(request.username, request.key, row.fingerprint, "")
        return super().claim(table, request)


class NeverExpires(SqlKeys):
    """Never prunes: the table grows forever."""

    def prune(self, table, cutoff_ms, limit):
        return 0


class RerunsExpired(SqlKeys):
    """Prunes, but a pruned key runs again instead of IDEMPOTENCY_KEY_EXPIRED: a second payment."""

    def claim(self, table, request):
        if table.get(request.username, request.key) is None:
            return _new(table, request)
        return super().claim(table, request)


class PrunesInProgress(SqlKeys):
    """Prunes every old key, in progress or not: a duplicate of a slow payment runs again."""

    def prune(self, table, cutoff_ms, limit):
        rows = table.older_than(cutoff_ms, limit)
        for r in rows:
            table.delete(r.username, r.key)
        return len(rows)


class PrunesEverything(SqlKeys):
    """Prunes finished keys whatever their age: a retry a minute later is refused as expired."""

    def prune(self, table, cutoff_ms, limit):
        return super().prune(table, table.now_ms() + 1, limit)


class GlobalKeys(SqlKeys):
    """Keys are global, not per user: another user's same key gets the first user's answer."""

    def claim(self, table, request):
        return super().claim(
            table, PayRequest("", request.key, request.fingerprint, request.new_payment_id)
        )

    def finish(self, table, payment, response):
        table.set_response("", payment.idempotency_key, response)


class EmptyWhileInProgress(SqlKeys):
    """Answers a duplicate of a running payment with an empty response instead of IN_PROGRESS."""

    def claim(self, table, request):
        row = table.get(request.username, request.key)
        if row is not None and not row.finished and row.fingerprint == request.fingerprint:
            return Claim(row.payment_id, b"")
        return super().claim(table, request)


_ANSWERS: dict[tuple[str, str], bytes] = {}


class AnswersInMemory(SqlKeys):
    """Keeps the responses in this process's memory: a restart forgets every answer."""

    def claim(self, table, request):
        row = table.get(request.username, request.key)
        if row is not None and row.fingerprint == request.fingerprint:
            answer = _ANSWERS.get((request.username, request.key))
            if answer is not None:
                return Claim(row.payment_id, answer)
            raise InProgress("in progress")
        return super().claim(table, request)

    def finish(self, table, payment, response):
        _ANSWERS[(payment.username, payment.idempotency_key)] = response
