"""gRPC plumbing shared by every process: mutual-TLS servers and channels, and the one
place where paykit errors become gRPC statuses (with google.rpc.ErrorInfo) and back."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from paykit.config import TLSFiles
from paykit.errors import ERROR_DOMAIN, Internal, InvalidInput, PaykitError, Unavailable, from_reason
from paykit.pki import read_tls

log = logging.getLogger("paykit")
MAX_MESSAGE_BYTES = 1 << 20  # no paykit message comes near 1 MiB; refuse anything bigger


def server_credentials(tls: TLSFiles) -> grpc.ServerCredentials:
    ca, cert, key = read_tls(tls)
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)


def channel_credentials(tls: TLSFiles) -> grpc.ChannelCredentials:
    ca, cert, key = read_tls(tls)
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def make_server(host: str, port: int, tls: TLSFiles, *, workers: int,
                interceptors: Sequence[grpc.ServerInterceptor]) -> tuple[grpc.Server, int]:
    """A synchronous server bound to host:port (0 = any free port); returns (server, port)."""
    server = grpc.server(
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpc"),
        interceptors=list(interceptors),
        options=[
            # 0: a second process can never bind the same port and steal half the calls.
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ],
        maximum_concurrent_rpcs=workers * 8,
    )
    try:
        bound = server.add_secure_port(f"{host}:{port}", server_credentials(tls))
    except RuntimeError as exc:
        raise Unavailable(f"cannot listen on {host}:{port}: {exc}; is the port in use?") from exc
    if bound == 0:
        raise Unavailable(f"cannot listen on {host}:{port}; is the port in use?")
    return server, bound


def secure_channel(target: str, tls: TLSFiles, *, server_name: str | None = None) -> grpc.Channel:
    """A mutual-TLS channel. With `server_name` (a paykit common name) the server must present
    that identity's certificate: another holder of a certificate from our CA cannot pose as it."""
    identity = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    return grpc.secure_channel(
        target,
        channel_credentials(tls),
        options=[
            *identity,
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            # Reconnect quickly after a server restart (default backoff grows to 120 s).
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
            ("grpc.min_reconnect_backoff_ms", 100),
        ],
    )


# -- errors -> status ---------------------------------------------------------


def to_status(err: PaykitError) -> grpc.Status:
    info = error_details_pb2.ErrorInfo(reason=err.reason, domain=ERROR_DOMAIN, metadata=err.metadata)
    details = [_pack(info)]
    if isinstance(err, InvalidInput) and err.metadata.get("field"):
        violation = error_details_pb2.BadRequest.FieldViolation(field=err.metadata["field"], description=err.message)
        details.append(_pack(error_details_pb2.BadRequest(field_violations=[violation])))
    code = grpc.StatusCode[err.code]
    return rpc_status.to_status(status_pb2.Status(code=code.value[0], message=err.message, details=details))


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


def from_rpc_error(exc: grpc.RpcError) -> PaykitError:
    """The paykit error a failed call stands for (by ErrorInfo reason, else by code)."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    message = (exc.details() if hasattr(exc, "details") else "") or str(code)
    reason, metadata = "", {}
    try:
        status = rpc_status.from_call(exc)
    except ValueError:
        status = None
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, metadata = info.reason, dict(info.metadata)
    cls = from_reason(reason, code.name if code else None)
    if code == grpc.StatusCode.UNAVAILABLE and not reason:
        message = f"cannot reach the server ({message})"
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED and not reason:
        message = "the server did not answer in time"
    return cls(message, metadata=metadata)
