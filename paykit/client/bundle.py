"""Where a client's certificates come from, and what a failed TLS handshake means.

Discovery is explicit, in this order, and the first one given is the one used (a wrong choice is
an error, never a quiet fall back to another folder):

1. the flag (`paykit client --pki-dir DIR`, alias `--certs`; `PaymentClient(pki_dir=DIR)`),
2. the environment variable PAYKIT_CERTS,
3. the default folder, <state folder>/pki ($PAYKIT_HOME/pki, else ./.paykit/pki).

DIR is the client's bundle (ca.pem, paykit-client.pem, paykit-client.key) or a PKI root with one
in client/. A client never creates a CA or a certificate: a missing bundle is an error naming
where it looked. A handshake that fails is probed once with Python's ssl module, to say which
side refused which certificate, instead of "cannot reach the server".
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from paykit.core.config import TLSFiles, state_dir
from paykit.core.errors import InvalidInput
from paykit.rpc.pki import CLIENT_CN, GATEWAY_CN, load_identity

ENV_VAR = "PAYKIT_CERTS"
PROBE_TIMEOUT_S = 2.0  # a probe of a server that does not answer gives up this soon
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@dataclass(frozen=True)
class ClientBundle:
    files: TLSFiles
    folder: Path  # the folder that holds ca.pem and the client's pair
    source: str  # how it was chosen: "--pki-dir", "PAYKIT_CERTS" or "the default folder"

    def describe(self) -> str:
        return f"client certificates from {self.folder} ({self.source})"


def _choice(flag: str | os.PathLike | None, environ: Mapping[str, str]) -> tuple[Path, str]:
    if flag:
        return Path(flag), "--pki-dir"
    if environ.get(ENV_VAR):
        return Path(environ[ENV_VAR]), ENV_VAR
    return state_dir() / "pki", "the default folder"


def find_client_bundle(
    flag: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None
) -> ClientBundle:
    """The client bundle to use (see the module's docstring); InvalidInput naming the folder
    (and how it was chosen) when it holds none. Never creates anything."""
    folder, source = _choice(flag, os.environ if environ is None else environ)
    try:
        files = load_identity(folder, CLIENT_CN, issue=False)
    except InvalidInput:
        raise InvalidInput(
            f"no client certificates in {folder} ({source}): looked for ca.pem, "
            f"{CLIENT_CN}.pem and {CLIENT_CN}.key there and in {folder / 'client'}. Give the "
            f"folder of a bundle with --pki-dir or {ENV_VAR} (paykit pki export client DIR makes "
            "one), or start the servers here (paykit up); the client never makes certificates"
        ) from None
    return ClientBundle(files, files.ca.parent, source)


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def _context(files: TLSFiles) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(files.ca))
    ctx.load_cert_chain(str(files.client_cert or files.cert), str(files.client_key or files.key))
    ctx.set_alpn_protocols(["h2"])
    return ctx


def diagnose_tls(address: str, files: TLSFiles, server_name: str = GATEWAY_CN) -> str | None:
    """Why a TLS handshake with `address` fails, as one sentence, or None when it does not fail
    (or the server cannot be reached at all: that is not a TLS problem)."""
    where = files.ca.parent
    try:
        host, port = _split(address)
        sock = socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S)
    except (OSError, ValueError):
        return None
    try:
        with _context(files).wrap_socket(sock, server_hostname=server_name) as tls:
            # TLS 1.3: a server refuses the client's certificate after the client's side of the
            # handshake is done, so the refusal arrives as the first thing read. The HTTP/2
            # preface makes a server that accepts it answer at once (its SETTINGS).
            tls.sendall(HTTP2_PREFACE)
            if not tls.recv(1):
                return _refused_client(address, where)
    except ssl.SSLCertVerificationError as exc:
        if "hostname" in str(exc.verify_message).lower():
            return (
                f"TLS handshake with {address} failed: its certificate is not {server_name}'s "
                f"(another service on that port?)"
            )
        return (
            f"TLS handshake with {address} failed: the server's certificate is not signed by "
            f"the CA in {where}"
        )
    except ssl.SSLError:
        return _refused_client(address, where)
    except OSError:  # a timeout, or the server closed the connection: not a verdict on TLS
        return None
    finally:
        sock.close()
    return None


def _refused_client(address: str, where: Path) -> str:
    return (
        f"TLS handshake with {address} failed: the server does not accept the client "
        f"certificate in {where} (it was issued by another CA)"
    )
