"""The dev PKI: a CA and certificates for the gateway, each bank and clients.

Made with the `cryptography` package on first use, into a folder git ignores. A
certificate's common name says who holds it ("paykit-gateway", "paykit-bank-BankA",
"paykit-client"); servers authorize peers by that name (see paykit.auth).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from paykit.core.config import TLSFiles

GATEWAY_CN = "paykit-gateway"
CLIENT_CN = "paykit-client"
BANK_CN_PREFIX = "paykit-bank-"
CERT_VALID_DAYS = 365
DEFAULT_SANS = ("localhost", "127.0.0.1", "::1")


def bank_cn(name: str) -> str:
    return BANK_CN_PREFIX + name


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _san_entries(sans: tuple[str, ...]) -> list[x509.GeneralName]:
    entries: list[x509.GeneralName] = []
    for san in dict.fromkeys(sans):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            entries.append(x509.DNSName(san))
    return entries


def _create_ca(pki_dir: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "paykit dev CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CERT_VALID_DAYS * 5))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write_private(pki_dir / "ca.key", _key_pem(key))
    (pki_dir / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _issue(pki_dir: Path, common_name: str, sans: tuple[str, ...]) -> None:
    ca_key = serialization.load_pem_private_key((pki_dir / "ca.key").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate((pki_dir / "ca.pem").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CERT_VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(_san_entries(sans)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            # Every holder is both a server and a client: the gateway calls banks, banks
            # call the coordinator.
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(pki_dir / f"{common_name}.key", _key_pem(key))
    (pki_dir / f"{common_name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def ensure_identity(pki_dir: Path, common_name: str, *, sans: tuple[str, ...] = ()) -> TLSFiles:
    """Returns the TLS files for `common_name`, creating the CA and the cert if missing."""
    pki_dir = Path(pki_dir)
    pki_dir.mkdir(parents=True, exist_ok=True)
    if not (pki_dir / "ca.pem").exists():
        _create_ca(pki_dir)
    files = TLSFiles(
        ca=pki_dir / "ca.pem",
        cert=pki_dir / f"{common_name}.pem",
        key=pki_dir / f"{common_name}.key",
    )
    # The common name is also a DNS name of the certificate, so a peer can demand it: the
    # gateway's channel to BankA accepts only a certificate for "paykit-bank-BankA" (see
    # rpc.secure_channel's server_name), whatever host it dials.
    sans = (common_name, *sans)
    if not files.cert.exists() or not files.key.exists():
        _issue(pki_dir, common_name, DEFAULT_SANS + tuple(sans))
    elif not {_san_text(s) for s in sans} <= set(have := cert_sans(files.cert)):
        # A later --san names a host this certificate does not cover: re-issue it (same CA, so
        # every peer still trusts it), keeping the names it had.
        _issue(pki_dir, common_name, have + tuple(sans))
    return files


def _san_text(san: str) -> str:
    try:
        return str(ipaddress.ip_address(san))
    except ValueError:
        return san


def cert_sans(cert_path: Path) -> tuple[str, ...]:
    """The host names and IP addresses a certificate is valid for, as text."""
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(names.get_values_for_type(x509.DNSName)) + tuple(
        str(ip) for ip in names.get_values_for_type(x509.IPAddress)
    )


def init_pki(pki_dir: Path, banks: list[str], *, sans: tuple[str, ...] = ()) -> dict[str, TLSFiles]:
    """Creates (or keeps) the whole dev PKI: CA, gateway, each bank, client."""
    names = [GATEWAY_CN, CLIENT_CN] + [bank_cn(b) for b in banks]
    return {cn: ensure_identity(pki_dir, cn, sans=sans) for cn in names}


def read_tls(files: TLSFiles) -> tuple[bytes, bytes, bytes]:
    """(ca, cert, key) bytes for grpc's credential constructors."""
    return files.ca.read_bytes(), files.cert.read_bytes(), files.key.read_bytes()
