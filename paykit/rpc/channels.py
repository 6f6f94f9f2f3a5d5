"""Mutual-TLS gRPC servers and channels, made the same way by every paykit process."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import grpc

from paykit.core.config import TLSFiles
from paykit.core.errors import Unavailable
from paykit.rpc.pki import read_tls

MAX_MESSAGE_BYTES = 1 << 20  # no paykit message comes near 1 MiB; refuse anything bigger


def server_credentials(tls: TLSFiles) -> grpc.ServerCredentials:
    ca, cert, key = read_tls(tls)
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=True
    )


def channel_credentials(tls: TLSFiles) -> grpc.ChannelCredentials:
    ca, cert, key = read_tls(tls)
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )


def make_server(
    host: str,
    port: int,
    tls: TLSFiles,
    *,
    workers: int,
    interceptors: Sequence[grpc.ServerInterceptor],
) -> tuple[grpc.Server, int]:
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
