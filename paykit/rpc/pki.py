"""The dev PKI: a CA, and one key bundle per role (gateway, each bank, clients).

Made with the `cryptography` package on first use, into a folder git ignores. A
certificate's common name says who holds it ("paykit-gateway", "paykit-bank-BankA",
"paykit-client"); servers authorize peers by that name (paykit.rpc.interceptors).

A PKI root holds the CA apart from the bundles (docs/security.md, "The dev PKI"):

    <root>/ca/            ca.pem, ca.key: only the machine that issues certificates needs it
    <root>/gateway/       ca.pem, paykit-gateway.pem/.key (serverAuth: it serves) and
                          paykit-gateway.client.pem/.key (clientAuth: its calls to the banks)
    <root>/bank-<Name>/   the same for that bank (its client identity asks for decisions)
    <root>/client/        ca.pem, paykit-client.pem/.key (clientAuth only)
    <root>/operator/      ca.pem, paykit-operator.pem/.key (clientAuth only): the read-only
                          OperatorService (every bank's books); made when first exported

A process is given its bundle, or a root that holds it: a client never holds a server key or
the CA key, and `paykit pki export ROLE DIR` writes one role's bundle for another host.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from paykit.core.config import TLSFiles
from paykit.core.errors import InvalidInput

GATEWAY_CN = "paykit-gateway"
CLIENT_CN = "paykit-client"
OPERATOR_CN = "paykit-operator"
# Roles that only call (one clientAuth certificate, no server identity).
CALLER_CNS = frozenset({CLIENT_CN, OPERATOR_CN})
BANK_CN_PREFIX = "paykit-bank-"
CERT_VALID_DAYS = 365
DEFAULT_SANS = ("localhost", "127.0.0.1", "::1")
CA_FOLDER = "ca"
CLIENT_SUFFIX = ".client"  # a server role's client identity: paykit-gateway.client.pem


def bank_cn(name: str) -> str:
    return BANK_CN_PREFIX + name


def role_folder(common_name: str) -> str:
    """The bundle folder of a role: "gateway", "client", "bank-BankA"."""
    if common_name.startswith(BANK_CN_PREFIX):
        return "bank-" + common_name.removeprefix(BANK_CN_PREFIX)
    return common_name.removeprefix("paykit-")


def role_common_name(role: str) -> str:
    """The common name of a role as `paykit pki export` names it (gateway, client, bank-NAME)."""
    if role in ("gateway", "client", "operator"):
        return "paykit-" + role
    if role.startswith("bank-") and len(role) > len("bank-"):
        return bank_cn(role.removeprefix("bank-"))
    raise InvalidInput(
        f"unknown role {role[:40]!r}: use gateway, client, operator or bank-NAME (bank-BankA)"
    )


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


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


def _create_ca(ca_dir: Path) -> None:
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
    _write_private(ca_dir / "ca.key", _key_pem(key))
    (ca_dir / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _leaf_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=False,
        crl_sign=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )


def _issue(ca_dir: Path, out: Path, common_name: str, sans: tuple[str, ...] | None) -> None:
    """Writes out/<name>.pem and .key: a server certificate for `sans` (serverAuth only), or,
    with sans=None, a client certificate (clientAuth only, no host names). One purpose each:
    a client certificate cannot serve (pose as the gateway), a server's cannot call."""
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    purpose = ExtendedKeyUsageOID.CLIENT_AUTH if sans is None else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CERT_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
    )
    if sans is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(_san_entries(sans)), critical=False
        )
    name = common_name + (CLIENT_SUFFIX if sans is None and common_name not in CALLER_CNS else "")
    _write_private(out / f"{name}.key", _key_pem(key))
    cert = builder.sign(ca_key, hashes.SHA256())
    (out / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def bundle_files(bundle: Path, common_name: str) -> TLSFiles:
    """The files of `common_name`'s bundle in folder `bundle` (they may not exist yet)."""
    server_role = common_name not in CALLER_CNS
    return TLSFiles(
        ca=bundle / "ca.pem",
        cert=bundle / f"{common_name}.pem",
        key=bundle / f"{common_name}.key",
        client_cert=bundle / f"{common_name}{CLIENT_SUFFIX}.pem" if server_role else None,
        client_key=bundle / f"{common_name}{CLIENT_SUFFIX}.key" if server_role else None,
    )


def _complete(files: TLSFiles) -> bool:
    paths = [files.ca, files.cert, files.key, files.client_cert, files.client_key]
    return all(p.exists() for p in paths if p is not None)


def _is_bundle(folder: Path, common_name: str) -> bool:
    # A bundle never holds the CA key: a folder that does is a root (or the old flat layout).
    return _complete(bundle_files(folder, common_name)) and not (folder / "ca.key").exists()


def _move_flat_layout(root: Path) -> None:
    """A root made before bundles had every key side by side, with certificates valid for both
    purposes: keep its CA (every peer still trusts it), drop the rest (issued again below)."""
    if not (root / "ca.key").exists() or (root / CA_FOLDER).exists():
        return
    ca_dir = _private_dir(root / CA_FOLDER)
    for name in ("ca.key", "ca.pem"):
        os.replace(root / name, ca_dir / name)
    for old in [*root.glob("paykit-*.pem"), *root.glob("paykit-*.key")]:
        old.unlink()


def ensure_identity(pki_dir: Path, common_name: str, *, sans: tuple[str, ...] = ()) -> TLSFiles:
    """The issuer's call: returns `common_name`'s bundle under the PKI root `pki_dir`, creating
    the CA and the bundle if missing. Given a bundle folder (no CA here), returns that."""
    pki_dir = Path(pki_dir)
    if _is_bundle(pki_dir, common_name):
        return _bundle_covering(pki_dir, common_name, sans)
    if (pki_dir / "ca.pem").exists() and not (pki_dir / "ca.key").exists():
        raise InvalidInput(
            f"{pki_dir} is a bundle without {common_name}'s keys (another role's?): give this "
            "process its own bundle, or the PKI folder that holds the CA"
        )
    _private_dir(pki_dir)
    _move_flat_layout(pki_dir)
    ca_dir = pki_dir / CA_FOLDER
    if not (ca_dir / "ca.pem").exists():
        _create_ca(_private_dir(ca_dir))
    bundle = _private_dir(pki_dir / role_folder(common_name))
    files = bundle_files(bundle, common_name)
    if not files.ca.exists():
        shutil.copyfile(ca_dir / "ca.pem", files.ca)
    # The common name is also a DNS name of a server certificate, so a peer can demand it: the
    # gateway's channel to BankA accepts only a certificate for "paykit-bank-BankA" (see
    # rpc.secure_channel's server_name), whatever host it dials.
    sans = (common_name, *sans)
    if common_name in CALLER_CNS:
        if not files.cert.exists() or not files.key.exists():
            _issue(ca_dir, bundle, common_name, None)
        return files
    if not files.cert.exists() or not files.key.exists():
        _issue(ca_dir, bundle, common_name, DEFAULT_SANS + tuple(sans))
    elif not {_san_text(s) for s in sans} <= set(have := cert_sans(files.cert)):
        # A later --san names a host this certificate does not cover: re-issue it (same CA, so
        # every peer still trusts it), keeping the names it had.
        _issue(ca_dir, bundle, common_name, have + tuple(sans))
    if not files.client_cert.exists() or not files.client_key.exists():
        _issue(ca_dir, bundle, common_name, None)
    return files


def _bundle_covering(bundle: Path, common_name: str, sans: tuple[str, ...]) -> TLSFiles:
    files = bundle_files(bundle, common_name)
    if common_name not in CALLER_CNS and sans:
        missing = {_san_text(s) for s in sans} - set(cert_sans(files.cert))
        if missing:
            raise InvalidInput(
                f"{files.cert.name} in {bundle} is not valid for {', '.join(sorted(missing))}, "
                "and a bundle cannot re-issue it (no CA key here): export it again with --san "
                "from the machine that holds the CA (paykit pki export ... --san NAME)"
            )
    return files


def load_identity(
    pki_dir: Path, common_name: str, *, sans: tuple[str, ...] = (), issue: bool
) -> TLSFiles:
    """What a process runs with: `pki_dir` is its role's bundle, or a PKI root that holds it.
    With issue=True (the servers: the dev PKI is made on first use) a root that lacks it gets
    it, and the client bundle too, so a client on this machine finds its own; a client
    (issue=False) never issues anything."""
    pki_dir = Path(pki_dir)
    for folder in (pki_dir, pki_dir / role_folder(common_name)):
        if _is_bundle(folder, common_name):
            return _bundle_covering(folder, common_name, sans)
    if not issue:
        raise InvalidInput(
            f"no {common_name} certificate in {pki_dir}: start the servers (paykit up) or run "
            "paykit pki init on this machine first, or copy a bundle made with "
            "paykit pki export client DIR and point --pki-dir at it"
        )
    files = ensure_identity(pki_dir, common_name, sans=sans)
    ensure_identity(pki_dir, CLIENT_CN)
    return files


def export_bundle(pki_dir: Path, role: str, out: Path, *, sans: tuple[str, ...] = ()) -> TLSFiles:
    """Writes one role's bundle (the CA certificate and that role's own keys, nothing else)
    into `out`, for another host; issues it from the root `pki_dir` first if needed."""
    common_name = role_common_name(role)
    source = ensure_identity(pki_dir, common_name, sans=sans)
    out = _private_dir(Path(out))
    if (out / "ca.key").exists() or out.resolve() == Path(pki_dir).resolve():
        raise InvalidInput(f"{out} holds the CA: export a bundle into a folder of its own")
    target = bundle_files(out, common_name)
    for src, dst in zip(bundle_paths(source), bundle_paths(target), strict=True):
        shutil.copyfile(src, dst)
        os.chmod(dst, 0o600 if dst.suffix == ".key" else 0o644)
    return target


def bundle_paths(files: TLSFiles) -> list[Path]:
    return [
        p
        for p in (files.ca, files.cert, files.key, files.client_cert, files.client_key)
        if p is not None
    ]


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
    """Creates (or keeps) the whole dev PKI under the root `pki_dir`: the CA, and a bundle for
    the gateway, each bank and the client."""
    names = [GATEWAY_CN, CLIENT_CN] + [bank_cn(b) for b in banks]
    return {cn: ensure_identity(pki_dir, cn, sans=sans) for cn in names}


def read_tls(files: TLSFiles) -> tuple[bytes, bytes, bytes]:
    """(ca, cert, key) bytes for grpc's server credentials: the identity a process serves with."""
    return files.ca.read_bytes(), files.cert.read_bytes(), files.key.read_bytes()


def read_client_tls(files: TLSFiles) -> tuple[bytes, bytes, bytes]:
    """(ca, cert, key) bytes of the identity a process calls others with: a server role's client
    certificate, or the client's own."""
    cert, key = files.client_cert or files.cert, files.client_key or files.key
    return files.ca.read_bytes(), cert.read_bytes(), key.read_bytes()
