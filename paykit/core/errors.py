"""paykit's one error hierarchy, and its one mapping to and from gRPC status codes.

    PaykitError
    ├── InvalidInput              INVALID_ARGUMENT     the request itself is wrong
    │   └── InvalidAmount         INVALID_ARGUMENT
    ├── NotAuthenticated          UNAUTHENTICATED      no, bad, expired or revoked token
    ├── PermissionDenied          PERMISSION_DENIED    someone else's account, or the wrong cert
    ├── AccountLocked             RESOURCE_EXHAUSTED   too many failed sign-ins for a name; wait
    ├── RateLimited               RESOURCE_EXHAUSTED   a limit per address and time; wait
    ├── NotFound                  NOT_FOUND
    │   ├── UnknownBank           NOT_FOUND
    │   ├── UnknownAccount        NOT_FOUND
    │   └── UnknownPayment        NOT_FOUND
    ├── AlreadyExists             ALREADY_EXISTS       user or account already there
    ├── IdempotencyKeyReused      FAILED_PRECONDITION  same key, other parameters
    ├── IdempotencyKeyExpired     FAILED_PRECONDITION  answer pruned; names the payment kept
    ├── ProtocolViolation         FAILED_PRECONDITION  a 2PC message out of order (a bug)
    ├── InProgress                ABORTED              same key still running: retry
    ├── Unavailable               UNAVAILABLE          a server cannot be reached: retry
    │   ├── ConnectFailed         (client only)        no connection: the request never left
    │   └── TLSFailure            (client only)        the handshake failed: not "down"
    ├── OutboxFull                (client only)        the offline queue is at its limit
    ├── OutboxBusy                (client only)        another process has this outbox open
    └── Internal                  INTERNAL

The client-only classes never cross the wire: paykit.rpc.status makes ConnectFailed and
TLSFailure from a failed call's status, the outbox raises the other two. They are not in
the reason -> class table below, so no server can make a client believe them.

The codes are grpc.StatusCode names kept as text, so domain modules that raise these
never import grpc. Servers raise these from plain code; paykit.rpc.status turns them into a
gRPC status with a google.rpc.ErrorInfo whose `reason` names the class, and clients turn that
back into the same class with `from_reason`. Expected outcomes (a declined payment, a NO vote) are
values, not errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

ERROR_DOMAIN = "paykit.dev"


class PaykitError(Exception):
    """Base of every error paykit raises on purpose."""

    code: str = "UNKNOWN"  # a grpc.StatusCode name; paykit.rpc converts it
    reason: str = "PAYKIT_ERROR"
    hint: str = ""

    def __init__(self, message: str, *, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.metadata = dict(metadata or {})

    def __str__(self) -> str:
        return self.message

    @property
    def field(self) -> str:
        """The request field the error is about ("amount_minor", ...), or ""."""
        return self.metadata.get("field", "")


class InvalidInput(PaykitError):
    code = "INVALID_ARGUMENT"
    reason = "INVALID_INPUT"


class InvalidAmount(InvalidInput):
    reason = "INVALID_AMOUNT"


class NotAuthenticated(PaykitError):
    code = "UNAUTHENTICATED"
    reason = "NOT_AUTHENTICATED"
    hint = "sign in with: auth USER PASSWORD"


class PermissionDenied(PaykitError):
    code = "PERMISSION_DENIED"
    reason = "PERMISSION_DENIED"


class AccountLocked(PaykitError):
    code = "RESOURCE_EXHAUSTED"
    reason = "ACCOUNT_LOCKED"


class RateLimited(PaykitError):
    """A limit per address and time (failed sign-ins, registrations, opening balances)."""

    code = "RESOURCE_EXHAUSTED"
    reason = "RATE_LIMITED"
    hint = "wait and try again"


class NotFound(PaykitError):
    code = "NOT_FOUND"
    reason = "NOT_FOUND"


class UnknownBank(NotFound):
    reason = "UNKNOWN_BANK"


class UnknownAccount(NotFound):
    reason = "UNKNOWN_ACCOUNT"


class UnknownPayment(NotFound):
    reason = "UNKNOWN_PAYMENT"


class AlreadyExists(PaykitError):
    code = "ALREADY_EXISTS"
    reason = "ALREADY_EXISTS"


class IdempotencyKeyReused(PaykitError):
    code = "FAILED_PRECONDITION"
    reason = "IDEMPOTENCY_KEY_REUSED"


class IdempotencyKeyExpired(PaykitError):
    """The key's stored answer was pruned after the retention, but its payment is kept: the
    payment is never run again. metadata["payment_id"] names it, for GetPayment."""

    code = "FAILED_PRECONDITION"
    reason = "IDEMPOTENCY_KEY_EXPIRED"
    hint = "look the payment up by its id"


class ProtocolViolation(PaykitError):
    code = "FAILED_PRECONDITION"
    reason = "PROTOCOL_VIOLATION"


class InProgress(PaykitError):
    code = "ABORTED"
    reason = "IN_PROGRESS"
    hint = "retry with the same idempotency key"


class Unavailable(PaykitError):
    code = "UNAVAILABLE"
    reason = "UNAVAILABLE"


class ConnectFailed(Unavailable):
    """Client-side only: no connection to the server, so the request certainly never left."""

    reason = "CONNECT_FAILED"


class TLSFailure(Unavailable):
    """Client-side only: the TLS handshake with the gateway failed; retrying will not help."""

    reason = "TLS_FAILURE"
    hint = "check the client's certificates (--pki-dir): they must come from the gateway's CA"


class OutboxFull(PaykitError):
    """Client-side only: the offline queue holds as many payments as it may."""

    code = "RESOURCE_EXHAUSTED"
    reason = "OUTBOX_FULL"
    hint = "wait for queued payments to be sent, or cancel some (queue, cancel ID)"


class OutboxBusy(PaykitError):
    """Client-side only: another client process has this user's outbox open."""

    code = "FAILED_PRECONDITION"
    reason = "OUTBOX_BUSY"


class Internal(PaykitError):
    code = "INTERNAL"
    reason = "INTERNAL"


CLIENT_ONLY: tuple[type[PaykitError], ...] = (ConnectFailed, TLSFailure, OutboxFull, OutboxBusy)


@contextmanager
def field_of(name: str) -> Iterator[None]:
    """Names the request field (its proto name) that an error raised inside is about. It goes
    into the ErrorInfo metadata, and for InvalidInput also a google.rpc.BadRequest violation."""
    try:
        yield
    except PaykitError as err:
        err.metadata["field"] = name
        raise


def _all_classes() -> list[type[PaykitError]]:
    found, todo = [], [PaykitError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


ERROR_CLASSES: tuple[type[PaykitError], ...] = tuple(_all_classes())
# What may cross the wire: a reason from a server never turns into a client-only class.
WIRE_CLASSES = tuple(cls for cls in ERROR_CLASSES if cls not in CLIENT_ONLY)
_BY_REASON = {cls.reason: cls for cls in WIRE_CLASSES}
# Without details (a proxy stripped them, or another server) the code alone picks the
# most general class with that code.
_BY_CODE: dict[str, type[PaykitError]] = {}
for _cls in reversed(WIRE_CLASSES):
    _BY_CODE[_cls.code] = _cls
_BY_CODE["DEADLINE_EXCEEDED"] = Unavailable
_BY_CODE["RESOURCE_EXHAUSTED"] = AccountLocked  # as before RateLimited: a wait, not a verdict


def from_reason(reason: str, code: str | None = None) -> type[PaykitError]:
    """The paykit class for an ErrorInfo reason, else for a status code."""
    if reason in _BY_REASON:
        return _BY_REASON[reason]
    if code is not None and code in _BY_CODE:
        return _BY_CODE[code]
    return PaykitError
