"""Server interceptors (asyncio): authorization from one table of every RPC, and one JSON log
line per call.

Both wrap the handler's behaviour (they need the call's context: peer certificate, status),
and both stop a refused call before the handler runs. The logging interceptor is outermost,
so refused calls are logged too. The certificate check runs on the event loop, so a refused
call never takes a thread; paykit's synchronous servicers (and the token check, which may read
SQLite) then run on a worker thread of the pool POOLS names (paykit.rpc.dispatch).
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import inspect
import time
from collections.abc import Callable
from typing import Any, Protocol

import grpc

from paykit.core import eventlog
from paykit.core.errors import InvalidInput, NotAuthenticated, PaykitError, PermissionDenied
from paykit.core.ids import too_long
from paykit.rpc.dispatch import Pool, end_with
from paykit.rpc.pki import BANK_CN_PREFIX, CLIENT_CN, GATEWAY_CN, OPERATOR_CN
from paykit.rpc.status import abort, to_status


class User(Protocol):
    """Whoever a valid token belongs to (the gateway's users.User); rpc/ needs only the name."""

    username: str


class Access(enum.Enum):
    OPEN = "open"  # any peer the TLS layer let in (health, reflection)
    CLIENT = "client"  # a client certificate, no token (register, sign in)
    USER = "user"  # a client certificate and a valid token
    GATEWAY = "gateway"  # the gateway's certificate only (bank-internal)
    BANK = "bank"  # a bank's certificate only (the coordinator's decision query)
    OPERATOR = "operator"  # the operator's certificate only (the read-only OperatorService)
    BOOKS = "books"  # the gateway's or the operator's certificate (a bank's read-only list)


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
    "/paykit.v1.Bank/ListAccounts": Access.BOOKS,
    "/paykit.v1.Coordinator/GetDecision": Access.BANK,
    "/paykit.v1.OperatorService/ListAccounts": Access.OPERATOR,
    "/paykit.v1.OperatorService/ListInFlightPayments": Access.OPERATOR,
    "/grpc.health.v1.Health/Check": Access.OPEN,
    "/grpc.health.v1.Health/Watch": Access.OPEN,
    "/grpc.health.v1.Health/List": Access.OPEN,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": Access.OPEN,
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": Access.OPEN,
}

DEFAULT_POOL = "rpc"
SIGN_IN_POOL = "sign-in"
# Calls that hash a password run on a small pool of their own: a flood of them waits there (or is
# refused when its queue is full) and never takes the threads that payments and balances need.
POOLS: dict[str, str] = {
    "/paykit.v1.Gateway/Register": SIGN_IN_POOL,
    "/paykit.v1.Gateway/Authenticate": SIGN_IN_POOL,
}
ATTEMPT_MAX_DIGITS = 6

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


def peer_host(context: grpc.ServicerContext) -> str:
    """The caller's IP address as text ("127.0.0.1", "[::1]"), without the port."""
    peer = context.peer() or ""
    return peer.removeprefix("ipv4:").removeprefix("ipv6:").rsplit(":", 1)[0]


_KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
_FACTORIES = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}


def _kind(handler: grpc.RpcMethodHandler) -> tuple[str, Callable]:
    for kind in _KINDS:
        behaviour = getattr(handler, kind)
        if behaviour is not None:
            return kind, behaviour
    raise TypeError(f"a method handler with no behaviour: {handler!r}")


def _rebuild(handler: grpc.RpcMethodHandler, kind: str, behaviour: Callable):
    return _FACTORIES[kind](behaviour, handler.request_deserializer, handler.response_serializer)


def _wrapped(handler: grpc.RpcMethodHandler, before, after) -> grpc.RpcMethodHandler:
    """The same asyncio handler with `await before(request, context)` ahead of its behaviour and
    `after(state, context, failure)` once it ended (state is what before returned), whether the
    behaviour is a coroutine or an async generator. Plain try/finally: this runs on every call."""
    kind, behaviour = _kind(handler)
    if inspect.isasyncgenfunction(behaviour):

        async def streamed(request, context):
            state, failure = await before(request, context), None
            try:
                async for message in behaviour(request, context):
                    yield message
            except BaseException as exc:
                failure = exc
                raise
            finally:
                after(state, context, failure)

        return _rebuild(handler, kind, streamed)

    async def awaited(request, context):
        state, failure = await before(request, context), None
        try:
            return await behaviour(request, context)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            after(state, context, failure)

    return _rebuild(handler, kind, awaited)


class _PerMethod(grpc.aio.ServerInterceptor):
    """An interceptor that wraps each method's handler once and reuses the wrapped handler."""

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None:
            return None
        cached = self._wrapped.get(details.method)
        if cached is None or cached[0] is not handler:
            cached = self._wrapped[details.method] = (handler, self.wrap(handler, details.method))
        return cached[1]

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        raise NotImplementedError


def _nothing_after(_state, _context, _failure) -> None:
    return None


def _texts(message):
    """(name, text) of every text field of `message`, also inside its messages (a batch's legs)."""
    for field, value in message.ListFields():
        values = value if field.is_repeated else (value,)
        for item in values:
            if field.type == field.TYPE_MESSAGE:
                yield from _texts(item)
            elif isinstance(item, str | bytes):
                yield field.name, item


def _length_refusal(request) -> InvalidInput | None:
    """Every text field within its limit (paykit.core.ids.FIELD_MAX_CHARS), checked before the
    handler runs; the error names the field and its limit, not the value."""
    over = too_long(dict(_texts(request)))
    if over is None:
        return None
    name, limit = over
    err = InvalidInput(f"{name} is too long: at most {limit} characters")
    err.metadata["field"] = name
    return err


class AuthorizationInterceptor(_PerMethod):
    """Checks the caller's certificate and token against ACCESS before the handler runs, and
    runs paykit's synchronous handlers on the pool POOLS names."""

    def __init__(
        self, pools: dict[str, Pool], user_for_token: Callable[[str], Any] | None = None
    ) -> None:
        super().__init__()
        self.pools = pools
        self.user_for_token = user_for_token

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        access = ACCESS.get(method)
        kind, behaviour = _kind(handler)

        def refusal(context) -> PaykitError | None:
            return self._refusal(access, method, context)

        if inspect.iscoroutinefunction(behaviour) or inspect.isasyncgenfunction(behaviour):
            # health, reflection: asyncio already; only the certificate check
            async def checked(_request, context):
                err = refusal(context)
                if err is not None:
                    await context.abort_with_status(to_status(err))

            return _wrapped(handler, checked, _nothing_after)
        if kind != "unary_unary":
            raise TypeError(f"{method}: synchronous streaming handlers are not supported")
        pool = self.pools[POOLS.get(method, DEFAULT_POOL)]

        def on_thread(request, context):
            if access is Access.USER:
                self._check_token(context)
            return behaviour(request, context)

        async def call(request, context):
            err = refusal(context) or _length_refusal(request)
            if err is None:
                try:
                    return await pool.run(on_thread, request, context)
                except PaykitError as busy:  # the pool's queue is full; nothing ran
                    err = busy
            return end_with(context, to_status(err))

        return _rebuild(handler, kind, call)

    @staticmethod
    def _refusal(access: Access | None, method: str, context) -> PaykitError | None:
        _user.set(None)
        if access is None:
            return PermissionDenied(f"{method} is not in the access table")
        cn = peer_common_name(context)
        allowed = {
            Access.OPEN: True,
            Access.CLIENT: cn == CLIENT_CN,
            Access.USER: cn == CLIENT_CN,
            Access.GATEWAY: cn == GATEWAY_CN,
            Access.BANK: cn.startswith(BANK_CN_PREFIX),
            Access.OPERATOR: cn == OPERATOR_CN,
            Access.BOOKS: cn in (GATEWAY_CN, OPERATOR_CN),
        }[access]
        if not allowed:
            return PermissionDenied(f"a {cn[:64] or 'anonymous'} certificate may not call {method}")
        return None

    def _check_token(self, context) -> None:
        try:
            user = self.user_for_token(bearer_token(context))
        except NotAuthenticated as err:
            abort(context, err)
        _user.set(user)
        note(user=user.username)


def _finish(state: tuple, context, failure: BaseException | None) -> None:
    """Writes the call's `rpc` line, whatever way it ended."""
    started, record, token = state
    record["code"] = _code_name(context.code(), failure)
    if record["code"] != "OK":
        text = context.details() or (str(failure) if failure is not None else "")
        if isinstance(text, bytes):
            text = text.decode(errors="replace")
        record["error"] = text or f"the call ended {record['code']}"
    record["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
    eventlog.event("rpc", **record)
    _call.reset(token)


def _record(method: str, context) -> dict:
    md = _metadata(context)
    attempt = md.get("x-attempt", "")
    counted = attempt.isascii() and attempt.isdigit() and len(attempt) <= ATTEMPT_MAX_DIGITS
    return {
        "method": method,
        "peer": peer_host(context),
        "request_id": md.get("x-request-id"),
        "idempotency_key": md.get("idempotency-key"),
        "attempt": int(attempt) if counted else None,
    }


def _code_name(code, failure: BaseException | None) -> str:
    """The status the call ended with, by name; grpc.aio may give it as a StatusCode, an int,
    or None when the handler returned (OK) or raised past us (it then sends UNKNOWN)."""
    if isinstance(code, int) and not isinstance(code, bool):
        code = next((s for s in grpc.StatusCode if s.value[0] == code), None)
    if isinstance(code, grpc.StatusCode):
        return code.name
    if failure is None or isinstance(failure, GeneratorExit):
        return "OK"
    return "CANCELLED" if isinstance(failure, asyncio.CancelledError) else "UNKNOWN"


class LoggingInterceptor(_PerMethod):
    """One `rpc` event per call: who, what, which attempt, outcome, latency. No secrets."""

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        async def start(_request, context) -> tuple:
            record = _record(method, context)
            return time.perf_counter(), record, _call.set(record)

        return _wrapped(handler, start, _finish)
