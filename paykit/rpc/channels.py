"""Mutual-TLS gRPC servers and channels, made the same way by every paykit process."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor

import grpc

from paykit.core.config import TLSFiles
from paykit.core.errors import Unavailable
from paykit.rpc.pki import read_client_tls, read_tls

MAX_MESSAGE_BYTES = 1 << 20  # no paykit message comes near 1 MiB; refuse anything bigger


def server_credentials(tls: TLSFiles) -> grpc.ServerCredentials:
    ca, cert, key = read_tls(tls)
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=True
    )


def channel_credentials(tls: TLSFiles) -> grpc.ChannelCredentials:
    ca, cert, key = read_client_tls(tls)
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )


# HTTP/2 limits of every server (docs/security.md, "Holding a server"). They bound what one
# connection can hold, not what a peer can: the asyncio server is what makes an idle stream or a
# call without its body cost no thread.
SERVER_OPTIONS = (
    # 0: a second process can never bind the same port and steal half the calls.
    ("grpc.so_reuseport", 0),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Streams one connection may have open at once; a client past it waits for a free one.
    ("grpc.max_concurrent_streams", 1000),
    # A connection lives at most this long (then GOAWAY; its calls get the grace to finish), so
    # nothing a peer opens is held for ever.
    ("grpc.max_connection_age_ms", 30 * 60 * 1000),
    ("grpc.max_connection_age_grace_ms", 60 * 1000),
)


def make_server(
    host: str,
    port: int,
    tls: TLSFiles,
    *,
    interceptors: Sequence[grpc.aio.ServerInterceptor],
    migration_pool: Executor,
) -> tuple[grpc.aio.Server, int]:
    """An asyncio server bound to host:port (0 = any free port); returns (server, port).
    Call it on the event loop that will run the server."""
    server = grpc.aio.server(
        migration_thread_pool=migration_pool,
        interceptors=list(interceptors),
        options=list(SERVER_OPTIONS),
    )
    try:
        bound = server.add_secure_port(f"{host}:{port}", server_credentials(tls))
    except RuntimeError as exc:
        raise Unavailable(f"cannot listen on {host}:{port}: {exc}; is the port in use?") from exc
    if bound == 0:
        raise Unavailable(f"cannot listen on {host}:{port}; is the port in use?")
    return server, bound


CONNECT_TIMEOUT_MS = 5_000  # one connection attempt, handshakes included (see secure_channel)


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
            # Not a backoff at all: grpc core uses it as the deadline of one whole connection
            # attempt (TCP, TLS handshake, HTTP/2 settings; its MIN_CONNECT_TIMEOUT, 20 s by
            # default; grpc/grpc#33423). At 100 ms a link slower than ~50 ms each way, or a busy
            # machine, failed new channels with "Handshake read failed". A refused connection
            # still fails at once; a call's own deadline still bounds how long it waits.
            ("grpc.min_reconnect_backoff_ms", CONNECT_TIMEOUT_MS),
        ],
    )
