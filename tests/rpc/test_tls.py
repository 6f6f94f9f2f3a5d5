"""Mutual TLS on every channel: who is refused at the handshake, who by the access table, and
that a refused call never reaches a handler (no user, no account, no handler's log line)."""

from __future__ import annotations

import json
import sqlite3
import uuid

import grpc
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

from paykit import LocalCluster
from paykit.rpc.channels import secure_channel
from paykit.rpc.pki import (
    CLIENT_CN,
    GATEWAY_CN,
    bank_cn,
    cert_sans,
    ensure_identity,
    init_pki,
    read_tls,
)
from paykit.v1 import payment_pb2 as pb
from paykit.v1 import payment_pb2_grpc as pb_grpc

CALL_TIMEOUT_S = 5.0


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory):
    """A second, unrelated dev PKI: same names, another CA."""
    pki_dir = tmp_path_factory.mktemp("other-pki")
    init_pki(pki_dir, ["BankA"])
    return pki_dir


def log_events(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def denied_calls(path) -> list[dict]:
    return [e for e in log_events(path) if e["event"] == "rpc" and e["code"] == "PERMISSION_DENIED"]


def users_named(shared_cluster: LocalCluster, username: str) -> int:
    with sqlite3.connect(f"file:{shared_cluster.gateway_db()}?mode=ro", uri=True) as conn:
        return conn.execute(
            "SELECT COUNT(*) FROM users WHERE username = ?", (username,)
        ).fetchone()[0]


def bank_accounts(shared_cluster: LocalCluster, bank: str, account_id: str) -> int:
    with sqlite3.connect(f"file:{shared_cluster.bank_db(bank)}?mode=ro", uri=True) as conn:
        return conn.execute(
            "SELECT COUNT(*) FROM accounts WHERE account_id = ?", (account_id,)
        ).fetchone()[0]


def try_register(channel: grpc.Channel, username: str) -> tuple[grpc.RpcError, str]:
    """A Register through `channel` that must fail; returns the error and the request id it
    carried."""
    request_id = uuid.uuid4().hex
    request = pb.RegisterRequest(
        username=username,
        password="password123",
        account_id=f"{username}-acct",
        opening_balance_minor=100,
        bank="BankA",
    )
    with pytest.raises(grpc.RpcError) as caught:
        pb_grpc.GatewayStub(channel).Register(
            request,
            timeout=CALL_TIMEOUT_S,
            metadata=[("x-request-id", request_id), ("x-attempt", "1")],
        )
    return caught.value, request_id


def assert_never_handled(shared_cluster: LocalCluster, username: str, request_id: str) -> None:
    """No user, no account at the bank, and the gateway never logged the request."""
    assert users_named(shared_cluster, username) == 0
    assert bank_accounts(shared_cluster, "BankA", f"{username}-acct") == 0
    gateway_log = shared_cluster.procs["gateway"].data_dir / "gateway.jsonl"
    assert not [e for e in log_events(gateway_log) if e.get("request_id") == request_id]


def test_the_cluster_client_certificate_gets_through(shared_cluster):
    # The control: the same Register through a proper client channel succeeds, so the
    # refusals below are about credentials, not a broken setup.
    tls = ensure_identity(shared_cluster.pki_dir, CLIENT_CN)
    with secure_channel(shared_cluster.gateway_address, tls) as channel:
        reply = pb_grpc.GatewayStub(channel).Register(
            pb.RegisterRequest(
                username="control",
                password="password123",
                account_id="control-acct",
                opening_balance_minor=100,
                bank="BankA",
            ),
            timeout=CALL_TIMEOUT_S,
        )
    assert reply.username == "control"
    assert users_named(shared_cluster, "control") == 1


def test_plaintext_client_is_refused(shared_cluster):
    # No TLS at all: the server speaks only TLS, so the call never becomes an RPC.
    with grpc.insecure_channel(shared_cluster.gateway_address) as channel:
        err, request_id = try_register(channel, "plain")
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert_never_handled(shared_cluster, "plain", request_id)


def test_tls_client_without_certificate_is_refused(shared_cluster):
    # TLS that trusts our CA but shows no certificate: the server requires one.
    ca, _, _ = read_tls(ensure_identity(shared_cluster.pki_dir, CLIENT_CN))
    with grpc.secure_channel(
        shared_cluster.gateway_address, grpc.ssl_channel_credentials(root_certificates=ca)
    ) as channel:
        err, request_id = try_register(channel, "nocert")
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert_never_handled(shared_cluster, "nocert", request_id)


def test_client_certificate_from_another_ca_is_refused(shared_cluster, other_pki):
    # A well-formed "paykit-client" certificate, signed by another CA: the server does not trust it,
    # even though the client trusts the server (it has our CA as root).
    our_ca, _, _ = read_tls(ensure_identity(shared_cluster.pki_dir, CLIENT_CN))
    _, cert, key = read_tls(ensure_identity(other_pki, CLIENT_CN))
    creds = grpc.ssl_channel_credentials(
        root_certificates=our_ca, private_key=key, certificate_chain=cert
    )
    with grpc.secure_channel(shared_cluster.gateway_address, creds) as channel:
        err, request_id = try_register(channel, "otherca")
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert_never_handled(shared_cluster, "otherca", request_id)


def test_server_with_another_ca_is_not_trusted(shared_cluster, other_pki):
    # The other direction: a client of the other PKI refuses our gateway's certificate.
    with secure_channel(
        shared_cluster.gateway_address, ensure_identity(other_pki, CLIENT_CN)
    ) as channel:
        err, request_id = try_register(channel, "otherside")
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert_never_handled(shared_cluster, "otherside", request_id)


@pytest.mark.parametrize("holder", [CLIENT_CN, bank_cn("BankB")])
def test_only_the_gateway_may_call_a_bank(shared_cluster, holder):
    # A client's (or another bank's) certificate passes TLS, but the bank's access table wants the
    # gateway.
    account_id = f"direct-{uuid.uuid4().hex[:8]}"
    txn_id = f"{uuid.uuid4().hex}.debit"
    bank_log = shared_cluster.procs["BankA"].data_dir / "BankA.jsonl"
    denied_before = len(denied_calls(bank_log))
    with secure_channel(
        shared_cluster.bank_address("BankA"), ensure_identity(shared_cluster.pki_dir, holder)
    ) as channel:
        stub = pb_grpc.BankStub(channel)
        with pytest.raises(grpc.RpcError) as opened:
            stub.OpenAccount(
                pb.OpenAccountRequest(account_id=account_id, opening_balance_minor=10**6),
                timeout=CALL_TIMEOUT_S,
            )
        with pytest.raises(grpc.RpcError) as prepared:
            stub.Prepare(
                pb.PrepareRequest(
                    txn_id=txn_id, leg=pb.LEG_DEBIT, account_id="bank123", amount_minor=1
                ),
                timeout=CALL_TIMEOUT_S,
            )
    for err in (opened.value, prepared.value):
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        assert holder in err.details() and "may not call" in err.details()
    # The handlers never ran: no account, no transaction, no account.opened / 2pc.voted event, and
    # the refusals' rpc lines lack the txn id a Prepare handler notes first thing.
    assert bank_accounts(shared_cluster, "BankA", account_id) == 0
    with sqlite3.connect(f"file:{shared_cluster.bank_db('BankA')}?mode=ro", uri=True) as conn:
        assert (
            conn.execute("SELECT COUNT(*) FROM txns WHERE txn_id = ?", (txn_id,)).fetchone()[0] == 0
        )
    assert not [
        e
        for e in log_events(bank_log)
        if e.get("account_id") == account_id or e.get("txn_id") == txn_id
    ]
    assert len(denied_calls(bank_log)) == denied_before + 2


def test_gateway_certificate_is_not_a_client(shared_cluster):
    # The access table tells certificates apart: the gateway's own certificate may not register
    # users.
    with secure_channel(
        shared_cluster.gateway_address, ensure_identity(shared_cluster.pki_dir, GATEWAY_CN)
    ) as channel:
        err, _ = try_register(channel, "asgateway")
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert users_named(shared_cluster, "asgateway") == 0


def test_health_is_open_to_any_certificate_of_our_ca(shared_cluster):
    # Health is OPEN in the table: a client certificate may ask a bank.
    with secure_channel(
        shared_cluster.bank_address("BankA"), ensure_identity(shared_cluster.pki_dir, CLIENT_CN)
    ) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT_S
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_a_later_san_reissues_the_certificate(tmp_path):
    # `paykit gateway --san pay.example` after the PKI exists: the certificate must then cover
    # pay.example, keep its old names, and still chain to the same CA.
    pki_dir = tmp_path / "pki"
    first = ensure_identity(pki_dir, GATEWAY_CN)
    ca_before = first.ca.read_bytes()
    assert "pay.example" not in cert_sans(first.cert)
    again = ensure_identity(pki_dir, GATEWAY_CN, sans=("pay.example", "10.0.0.7"))
    assert {"pay.example", "10.0.0.7", "127.0.0.1", "localhost"} <= set(cert_sans(again.cert))
    assert again.ca.read_bytes() == ca_before
    # raises if the CA did not sign it
    x509.load_pem_x509_certificate(again.cert.read_bytes()).verify_directly_issued_by(
        x509.load_pem_x509_certificate(ca_before)
    )
    unchanged = again.cert.read_bytes()
    ensure_identity(pki_dir, GATEWAY_CN, sans=("pay.example",))  # already covered: left alone
    assert again.cert.read_bytes() == unchanged


@pytest.mark.parametrize(("dial", "expect"), [("BankA", GATEWAY_CN), ("gateway", bank_cn("BankA"))])
def test_a_server_with_another_identity_is_refused(shared_cluster, dial, expect):
    # Every certificate comes from one CA, so the channel also demands the expected identity:
    # a bank (or anyone holding one of our certificates) cannot pose as the gateway, nor the
    # gateway as a bank. The TLS handshake fails; nothing is sent.
    address = (
        shared_cluster.gateway_address if dial == "gateway" else shared_cluster.bank_address(dial)
    )
    holder = CLIENT_CN if expect == GATEWAY_CN else GATEWAY_CN
    with secure_channel(
        address, ensure_identity(shared_cluster.pki_dir, holder), server_name=expect
    ) as channel:
        with pytest.raises(grpc.RpcError) as info:
            health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT_S
            )
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    # The right name on the same address works: the refusal was the identity, not the network.
    right = GATEWAY_CN if dial == "gateway" else bank_cn(dial)
    with secure_channel(
        address, ensure_identity(shared_cluster.pki_dir, holder), server_name=right
    ) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT_S
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
