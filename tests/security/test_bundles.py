"""A key bundle per role (issue 13, Medium 7): a client never holds a server key or the CA key,
and each certificate has one purpose, so the shared client certificate cannot serve (pose as
the gateway) and a server's certificate cannot call.

The attacks: with the gateway key found in the client's PKI folder a client credited
1,000,000.00 at a bank; a fake gateway using the client certificate captured a password from a
grpcurl-style client (one that checks the host name, not paykit's identity).
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from paykit.rpc.channels import secure_channel
from paykit.rpc.pki import (
    CLIENT_CN,
    GATEWAY_CN,
    OPERATOR_CN,
    bank_cn,
    ensure_identity,
    read_tls,
)
from paykit.v1 import payment_pb2 as pb
from paykit.v1 import payment_pb2_grpc as pb_grpc

TIMEOUT_S = 5.0


def purposes(cert_path) -> set:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_the_client_bundle_holds_only_the_ca_certificate_and_its_own_keys(shared_cluster):
    tls = ensure_identity(shared_cluster.pki_dir, CLIENT_CN)  # what cluster.client() uses
    bundle = tls.cert.parent
    assert {p.name for p in bundle.iterdir()} == {
        "ca.pem",
        "paykit-client.pem",
        "paykit-client.key",
    }
    assert tls.key.stat().st_mode & 0o777 == 0o600 and bundle.stat().st_mode & 0o777 == 0o700


def test_each_server_runs_from_its_own_bundle(shared_cluster):
    # The CA key is in ca/ only; a bank's folder has no gateway key, the gateway's no bank key.
    root = shared_cluster.pki_dir
    assert [p.relative_to(root).as_posix() for p in root.rglob("ca.key")] == ["ca/ca.key"]
    for folder, own in (("gateway", GATEWAY_CN), ("bank-BankA", bank_cn("BankA"))):
        keys = {p.name for p in (root / folder).glob("*.key")}
        assert keys == {f"{own}.key", f"{own}.client.key"}, folder


def test_every_certificate_has_one_purpose(shared_cluster):
    server, client = {ExtendedKeyUsageOID.SERVER_AUTH}, {ExtendedKeyUsageOID.CLIENT_AUTH}
    for cn in (GATEWAY_CN, bank_cn("BankA"), bank_cn("BankB")):
        tls = ensure_identity(shared_cluster.pki_dir, cn)
        assert purposes(tls.cert) == server and purposes(tls.client_cert) == client, cn
    for cn in (CLIENT_CN, OPERATOR_CN):  # the roles that only call
        assert purposes(ensure_identity(shared_cluster.pki_dir, cn).cert) == client, cn


class FakeGateway:
    """A server that presents the client certificate and records any password sent to it."""

    def __init__(self, tls) -> None:
        self.passwords: list[str] = []

        def authenticate(request, _context):
            self.passwords.append(request.password)
            return pb.AuthenticateResponse(token="pk_fake")

        handlers = {
            "Authenticate": grpc.unary_unary_rpc_method_handler(
                authenticate,
                request_deserializer=pb.AuthenticateRequest.FromString,
                response_serializer=pb.AuthenticateResponse.SerializeToString,
            )
        }
        ca, cert, key = read_tls(tls)
        self.server = grpc.server(ThreadPoolExecutor(2))
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("paykit.v1.Gateway", handlers),)
        )
        creds = grpc.ssl_server_credentials([(key, cert)], root_certificates=ca)
        self.port = self.server.add_secure_port("127.0.0.1:0", creds)
        self.server.start()


def test_a_fake_gateway_with_the_client_certificate_gets_no_password(shared_cluster):
    tls = ensure_identity(shared_cluster.pki_dir, CLIENT_CN)
    fake = FakeGateway(tls)
    try:
        # Like grpcurl with -cacert/-cert/-key: trusts the CA, checks the host name it dials.
        with secure_channel(f"127.0.0.1:{fake.port}", tls) as channel:
            with pytest.raises(grpc.RpcError) as caught:
                pb_grpc.GatewayStub(channel).Authenticate(
                    pb.AuthenticateRequest(username="ada", password="ada-secret-pw"),
                    timeout=TIMEOUT_S,
                )
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # refused at the handshake
        assert fake.passwords == []
    finally:
        fake.server.stop(0)


def test_a_server_key_cannot_be_used_to_call_a_bank(shared_cluster):
    # The gateway's serving certificate (serverAuth only) shown as a client: the bank's TLS
    # refuses it; only the gateway's client identity may call.
    serving = ensure_identity(shared_cluster.pki_dir, GATEWAY_CN)
    ca, cert, key = read_tls(serving)
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )
    with grpc.secure_channel(shared_cluster.bank_address("BankA"), creds) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            pb_grpc.BankStub(channel).GetBalance(
                pb.BankGetBalanceRequest(account_id="merchant-a"), timeout=TIMEOUT_S
            )
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    with secure_channel(shared_cluster.bank_address("BankA"), serving) as channel:
        reply = pb_grpc.BankStub(channel).GetBalance(
            pb.BankGetBalanceRequest(account_id="merchant-a"), timeout=TIMEOUT_S
        )
    assert reply.account_id == "merchant-a"


def test_pki_export_writes_one_role_for_another_host(shared_cluster, tmp_path):
    out = tmp_path / "bank-host"
    subprocess.run(
        [sys.executable, "-m", "paykit", "pki", "export", "bank-BankA", str(out),
         "--dir", str(shared_cluster.pki_dir)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    assert {p.name for p in out.iterdir()} == {
        "ca.pem",
        "paykit-bank-BankA.pem",
        "paykit-bank-BankA.key",
        "paykit-bank-BankA.client.pem",
        "paykit-bank-BankA.client.key",
    }
    assert out.stat().st_mode & 0o777 == 0o700
    # The exported bundle is a working identity: BankA's channel to the gateway's coordinator.
    exported = ensure_identity(out, bank_cn("BankA"))
    with secure_channel(shared_cluster.gateway_address, exported, server_name=GATEWAY_CN) as ch:
        reply = pb_grpc.CoordinatorStub(ch).GetDecision(
            pb.GetDecisionRequest(txn_id="never-seen.debit"), timeout=TIMEOUT_S
        )
    assert reply.decision == pb.DECISION_ABORT  # presumed abort: the call got through
