"""Server interceptors: authorization from one table of every RPC, and one JSON log line per call.

Both wrap the handler's behaviour (they need the call's context: peer certificate,
status), and both stop a refused call before the handler runs. The logging interceptor
is outermost, so refused calls are logged too.
"""

from __future__ import annotations

import contextvars
import enum
import time
from collections.abc import Callable
from typing import Any, Protocol

import grpc

from paykit.core import eventlog
from paykit.core.errors import NotAuthenticated, PermissionDenied
from paykit.rpc.pki import BANK_CN_PREFIX, CLIENT_CN, GATEWAY_CN
from paykit.rpc.status import abort


class User(Protocol):
    """Whoever a valid token belongs to (the gateway's users.User); rpc/ needs only the name."""

    username: str


class Access(enum.Enum):
    OPEN = "open"  # any peer the TLS layer let in (health, reflection)
    CLIENT = "client"  # a client certificate, no token (register, sign in)
    USER = "user"  # a client certificate and a valid token
    GATEWAY = "gateway"  # the gateway's certificate only (bank-internal)
    BANK = "bank"  # a bank's certificate only (the coordinator's decision query)


# Every RPC any paykit server serves. A test walks the service descriptors so a new RPC
# cannot be added without an entry here; a method missing from it is refused.
ACCESS: dict[str, Access] = {
    "/paykit.v1.Gateway/Register": Access.CLIENT,
    "/paykit.v1.Gateway/Authenticate": Access.CLIENT,
    "/paykit.v1.Gateway/Logout": Access.USER,
    "/paykit.v1.Gateway/GetBalance": Access.USER,
    "/paykit.v1.Gateway/Pay": Access.USER,
    "/paykit.v1.Gateway/GetPayment": Access.USER,
    "/paykit.v1.Gateway/SearchPayments": Access.USER,
    "/paykit.v1.Bank/OpenAccount": Access.GATEWAY,
    "/paykit.v1.Bank/GetBalance": Access.GATEWAY,
    "/paykit.v1.Bank/Prepare": Access.GATEWAY,
    "/paykit.v1.Bank/Commit": Access.GATEWAY,
    "/paykit.v1.Bank/Abort": Access.GATEWAY,
    "/paykit.v1.Bank/Exchange": Access.GATEWAY,
    "/paykit.v1.Coordinator/GetDecision": Access.BANK,
    "/grpc.health.v1.Health/Check": Access.OPEN,
    "/grpc.health.v1.Health/Watch": Access.OPEN,
    "/grpc.health.v1.Health/List": Access.OPEN,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": Access.OPEN,
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": Access.OPEN,
}

# What the current call has learned so far (user, txn id, ...); the log line reads it.
_call: contextvars.ContextVar[dict] = contextvars.ContextVar("paykit_call")
_user: contextvars.ContextVar[User | None] = contextvars.ContextVar("paykit_user", default=None)


def note(**fields) -> None:
    """Adds fields (txn_id, amount_minor, ...) to the current call's log line."""
    record = _call.get(None)
    if record is not None:
        record.update(fields)


def request_id() -> str | None:
    """The x-request-id of the call being served, if any (for events that join its log line)."""
    record = _call.get(None)
    return record.get("request_id") if record else None


def outgoing_metadata() -> tuple[tuple[str, str], ...]:
    """Metadata for a call made while serving one (gateway -> bank): the same x-request-id,
    so every process's log line of one client request shares it. Empty outside a call."""
    record = _call.get(None)
    request_id = record.get("request_id") if record else None
    return (("x-request-id", request_id),) if request_id else ()


def current_user() -> User:
    user = _user.get()
    if user is None:  # the table says USER for every method that calls this
        raise NotAuthenticated("not signed in")
    return user


def bearer_token(context: grpc.ServicerContext) -> str:
    for key, value in context.invocation_metadata():
        if key == "authorization" and value.startswith("Bearer "):
            return value[len("Bearer ") :].strip()
    return ""


def _metadata(context: grpc.ServicerContext) -> dict[str, str]:
    return {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}


def peer_common_name(context: grpc.ServicerContext) -> str:
    names = context.auth_context().get("x509_common_name") or [b""]
    return names[0].decode()


def _wrap(
    handler: grpc.RpcMethodHandler, wrapper: Callable[[Callable], Callable]
) -> grpc.RpcMethodHandler:
    """The same handler with its behaviour wrapped, whatever its streaming kind."""
    if handler is None:
        return None
    for kind, factory in (
        ("unary_unary", grpc.unary_unary_rpc_method_handler),
        ("unary_stream", grpc.unary_stream_rpc_method_handler),
        ("stream_unary", grpc.stream_unary_rpc_method_handler),
        ("stream_stream", grpc.stream_stream_rpc_method_handler),
    ):
        behaviour = getattr(handler, kind)
        if behaviour is not None:
            return factory(
                wrapper(behaviour), handler.request_deserializer, handler.response_serializer
            )
    return handler


class AuthorizationInterceptor(grpc.ServerInterceptor):
    """Checks the caller's certificate and token against ACCESS before the handler runs."""

    def __init__(self, user_for_token: Callable[[str], Any] | None = None) -> None:
        self.user_for_token = user_for_token

    def intercept_service(self, continuation, details):
        access = ACCESS.get(details.method)
        handler = continuation(details)

        def wrapper(behaviour):
            def checked(request, context):
                self._check(access, details.method, context)
                return behaviour(request, context)

            return checked

        return _wrap(handler, wrapper)

    def _check(self, access: Access | None, method: str, context: grpc.ServicerContext) -> None:
        _user.set(None)
        cn = peer_common_name(context)
        if access is None:
            abort(context, PermissionDenied(f"{method} is not in the access table"))
        allowed = {
            Access.OPEN: True,
            Access.CLIENT: cn == CLIENT_CN,
            Access.USER: cn == CLIENT_CN,
            Access.GATEWAY: cn == GATEWAY_CN,
            Access.BANK: cn.startswith(BANK_CN_PREFIX),
        }[access]
        if not allowed:
            abort(
                context,
                PermissionDenied(f"a {cn or 'anonymous'} certificate may not call {method}"),
            )
        if access is Access.USER:
            try:
                user = self.user_for_token(bearer_token(context))
            except NotAuthenticated as err:
                abort(context, err)
            _user.set(user)
            note(user=user.username)


class LoggingInterceptor(grpc.ServerInterceptor):
    """One `rpc` event per call: who, what, which attempt, outcome, latency. No secrets."""

    def intercept_service(self, continuation, details):
        handler = continuation(details)

        def wrapper(behaviour):
            def logged(request, context):
                started = time.perf_counter()
                md = _metadata(context)
                record = {
                    "method": details.method,
                    "peer": context.peer()
                    .rsplit(":", 1)[0]
                    .removeprefix("ipv4:")
                    .removeprefix("ipv6:"),
                    "request_id": md.get("x-request-id"),
                    "idempotency_key": md.get("idempotency-key"),
                    "attempt": int(md["x-attempt"]) if md.get("x-attempt", "").isdigit() else None,
                }
                token = _call.set(record)
                try:
                    return behaviour(request, context)
                finally:
                    code = context.code() or grpc.StatusCode.OK
                    record["code"] = code.name
                    if code != grpc.StatusCode.OK:
                        # grpc keeps the details as bytes once abort() ran; log them as text.
                        # (`text`, not `details`: that name is the call details of the enclosing
                        # scope)
                        text = context.details() or b""
                        record["error"] = (
                            text.decode(errors="replace") if isinstance(text, bytes) else text
                        ) or None
                    record["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
                    eventlog.event("rpc", **record)
                    _call.reset(token)

            return logged

        return _wrap(handler, wrapper)
