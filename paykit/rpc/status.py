"""The one place where paykit errors become gRPC statuses (with google.rpc.ErrorInfo) and back."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from paykit.core.errors import (
    ERROR_DOMAIN,
    ConnectFailed,
    Internal,
    InvalidInput,
    PaykitError,
    TLSFailure,
    Unavailable,
    from_reason,
)

log = logging.getLogger("paykit")


# -- errors -> status ---------------------------------------------------------


MESSAGE_MAX_CHARS = 500  # a status message travels in a reply trailer: keep it small


def to_status(err: PaykitError) -> grpc.Status:
    if len(err.message) > MESSAGE_MAX_CHARS:  # messages echo at most a prefix; this is a backstop
        err.message = err.message[:MESSAGE_MAX_CHARS] + "..."
    info = error_details_pb2.ErrorInfo(
        reason=err.reason, domain=ERROR_DOMAIN, metadata=err.metadata
    )
    details = [_pack(info)]
    if isinstance(err, InvalidInput) and err.metadata.get("field"):
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=err.metadata["field"], description=err.message
        )
        details.append(_pack(error_details_pb2.BadRequest(field_violations=[violation])))
    code = grpc.StatusCode[err.code]
    return rpc_status.to_status(
        status_pb2.Status(code=code.value[0], message=err.message, details=details)
    )


def _pack(msg) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(msg)
    return packed


def abort(context: grpc.ServicerContext, err: PaykitError):
    context.abort_with_status(to_status(err))


def servicer_method(fn: Callable) -> Callable:
    """Wraps a servicer method: paykit errors become statuses; surprises become INTERNAL."""

    @functools.wraps(fn)
    def wrapper(self, request, context):
        try:
            return fn(self, request, context)
        except PaykitError as err:
            abort(context, err)
        except Exception as exc:  # a bug: say so without leaking internals
            log.exception("unexpected error in %s", fn.__name__)
            abort(context, Internal(f"internal error in {fn.__name__}: {type(exc).__name__}"))

    return wrapper


# -- status -> errors ---------------------------------------------------------


# What grpc core says, in a failed call's details, when no connection could be made at all,
# and when the TLS handshake failed. gRPC gives no structured cause for either, so this is the
# one place that reads its text.
_CONNECT_FAILED = "failed to connect to all addresses"
_TLS_MARKERS = (
    "handshake failed",
    "ssl_error",
    "certificate_verify_failed",
    "tsi_protocol_failure",
    "certificate verify failed",
)
SOCKET_CLOSED = (
    "socket_closed"  # ConnectFailed.metadata["cause"]: the peer closed it while connecting
)


def from_rpc_error(exc: grpc.RpcError) -> PaykitError:
    """The paykit error a failed call stands for: by ErrorInfo reason, else by status code.

    A status without paykit details that says the call never got a connection becomes
    ConnectFailed (the request certainly never left), or TLSFailure when the handshake failed."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    message = (exc.details() if hasattr(exc, "details") else "") or str(code)
    reason, metadata = _error_info(exc)
    if reason:
        return from_reason(reason, code.name if code else None)(message, metadata=metadata)
    if code == grpc.StatusCode.UNAVAILABLE:
        return _unavailable(message)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return Unavailable("the server did not answer in time")
    return from_reason("", code.name if code else None)(message)


def _error_info(exc: grpc.RpcError) -> tuple[str, dict[str, str]]:
    try:
        status = rpc_status.from_call(exc)
    except ValueError:
        status = None
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason, dict(info.metadata)
    return "", {}


def _unavailable(details: str) -> Unavailable:
    text = details.lower()
    if any(marker in text for marker in _TLS_MARKERS):
        return TLSFailure(f"the TLS handshake failed ({details})")
    if _CONNECT_FAILED in text:
        cause = {"cause": SOCKET_CLOSED} if "socket closed" in text else {}
        return ConnectFailed(f"cannot reach the server ({details})", metadata=cause)
    return Unavailable(f"cannot reach the server ({details})")
