"""The monitoring logs after a full scenario: every call of every process logged with its fields,
retries visible as attempt 2, 3, ..., 2PC steps as events, and no password, token or key
anywhere."""

from __future__ import annotations

import json
import re
import secrets
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

from paykit import LocalCluster, PaymentClient
from paykit.core.errors import NotAuthenticated, PaykitError, Unavailable
from paykit.rpc.pki import CLIENT_CN, ensure_identity
from paykit.v1 import payment_pb2 as pb

RPC_FIELDS = ("ts", "service", "method", "peer", "code", "latency_ms")
CLIENT_FIELDS = ("ts", "service", "method", "request_id", "attempt", "code", "latency_ms")


def events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def pay_request(
    key: str, amount_minor: int, to_bank: str = "BankB", to_account: str = "bob-acct"
) -> pb.PayRequest:
    return pb.PayRequest(
        idempotency_key=key, to_bank=to_bank, to_account=to_account, amount_minor=amount_minor
    )


@pytest.fixture(scope="module")
def scenario(shared_cluster):
    """Runs register, sign-in, payments, failures and retries; yields what the test needs to look
    for."""
    cluster = shared_cluster
    secrets_used = {
        "alice_pw": "alice-" + secrets.token_hex(8),
        "bob_pw": "bob-" + secrets.token_hex(8),
        "wrong_pw": "wrong-" + secrets.token_hex(8),
        "forged": "pk_" + secrets.token_urlsafe(32),
    }
    facts: dict = {"cluster": cluster, "secrets": secrets_used}
    alice, bob = cluster.client(), cluster.client()
    alice.register("alice", secrets_used["alice_pw"], "alice-acct", "100", "BankA")
    bob.register("bob", secrets_used["bob_pw"], "bob-acct", "50", "BankB")
    with pytest.raises(NotAuthenticated):
        alice.authenticate("alice", secrets_used["wrong_pw"])
    secrets_used["alice_token"] = alice.authenticate("alice", secrets_used["alice_pw"]).token
    secrets_used["bob_token"] = bob.authenticate("bob", secrets_used["bob_pw"]).token
    facts["paid"] = alice.pay("BankB", "bob-acct", "10")  # succeeds
    # insufficient funds: a failed payment
    facts["declined"] = alice.pay("BankB", "bob-acct", "5000")
    with pytest.raises(PaykitError):
        alice.pay("BankZ", "bob-acct", "1")  # unknown bank: an error status
    bob.pay("BankA", "alice-acct", "2")
    # A retry by hand: the same request, key and request id, sent as attempt 1 then attempt 2.
    key, request_id = str(uuid.uuid4()), uuid.uuid4().hex
    for attempt in (1, 2):
        alice.session.call(
            "Pay", pay_request(key, 300), attempt=attempt, request_id=request_id, key=key
        )
    facts["manual_retry"] = (key, request_id)
    # A real retry: the gateway hangs (SIGSTOP) so attempt 1 times out; it resumes and a later
    # attempt lands.
    impatient = cluster.client(timeout_s=0.5)
    impatient.token = secrets_used["alice_token"]
    # connected first, so the hang shows as a deadline, not a failed handshake
    impatient.balance()
    cluster.pause("gateway")
    threading.Timer(1.0, cluster.resume, args=("gateway",)).start()
    facts["real_retry"] = impatient.balance()
    # A forged token is refused; then alice signs out.
    bob.token = secrets_used["forged"]
    with pytest.raises(NotAuthenticated):
        bob.balance()
    alice.logout()
    for client in (alice, bob, impatient):
        client.close()
    yield facts


def all_log_files(cluster: LocalCluster) -> list[Path]:
    """Every file a process wrote that is not a database or the PKI: JSON logs, stdout, stderr."""
    return [
        p
        for p in cluster.data_dir.rglob("*")
        if p.is_file() and p.suffix in (".jsonl", ".out", ".stderr")
    ]


def gateway_log(cluster: LocalCluster) -> Path:
    return cluster.procs["gateway"].data_dir / "gateway.jsonl"


def server_events(cluster: LocalCluster) -> list[dict]:
    return [e for p in cluster.log_paths() for e in events(p)]


def client_events(cluster: LocalCluster) -> list[dict]:
    return [e for p in sorted((cluster.data_dir / "clients").glob("*.jsonl")) for e in events(p)]


def test_no_password_token_or_private_key_in_any_log(scenario):
    cluster = scenario["cluster"]
    files = all_log_files(scenario["cluster"])
    assert {p.name for p in files} >= {
        "gateway.jsonl",
        "BankA.jsonl",
        "BankB.jsonl",
        "gateway.stderr",
    }
    # alice, bob, the impatient one
    assert len([p for p in files if p.parent.name == "clients"]) == 3
    text = "\n".join(p.read_text(errors="replace") for p in files)
    assert '"rpc.client"' in text and '"rpc"' in text  # we are looking at the real logs
    for name, secret in scenario["secrets"].items():
        assert secret not in text, f"{name} appears in a log"
        if name.endswith("token"):
            assert secret.removeprefix("pk_")[:16] not in text, f"part of {name} appears in a log"
    key_files = sorted(cluster.pki_dir.glob("*.key"))
    assert len(key_files) >= 4  # CA, gateway, client, two banks
    for key_file in key_files:
        body_lines = [
            line
            for line in key_file.read_text().splitlines()
            if line and not line.startswith("-----")
        ]
        assert "".join(body_lines) not in text
        for line in body_lines:
            assert line[:24] not in text, f"material of {key_file.name} appears in a log"
    assert "authorization" not in text.lower() and "bearer" not in text.lower()


def test_every_server_call_has_the_fields(scenario):
    cluster = scenario["cluster"]
    calls = [e for e in server_events(cluster) if e["event"] == "rpc"]
    assert {e["service"] for e in calls} == {"gateway", "BankA", "BankB"}
    for e in calls:
        missing = [f for f in RPC_FIELDS if f not in e]
        assert not missing, f"{missing} missing from {e}"
        assert e["peer"] in ("127.0.0.1", "[::1]")
        assert isinstance(e["latency_ms"], float) and e["latency_ms"] >= 0
        assert ("error" in e) == (e["code"] != "OK"), e
        if e["method"].startswith("/paykit.v1.Gateway/"):  # client calls carry id and attempt
            assert re.fullmatch(r"[0-9a-f]{32}", e["request_id"]) and e["attempt"] >= 1, e
        if e["method"] == "/paykit.v1.Gateway/Pay" and e["code"] == "OK":
            assert {"user", "idempotency_key", "amount_minor", "txn_id"} <= set(e), e
        if e["method"] in (
            "/paykit.v1.Bank/Prepare",
            "/paykit.v1.Bank/Commit",
            "/paykit.v1.Bank/Abort",
        ):
            assert "txn_id" in e, e
        if e["method"] == "/paykit.v1.Bank/Prepare":
            # sent while serving a Pay: the client's request id
            assert "request_id" in e and "amount_minor" in e, e
    codes = {e["code"] for e in calls}
    assert {"OK", "UNAUTHENTICATED", "NOT_FOUND"} <= codes
    refused = [
        e for e in calls if e["code"] == "UNAUTHENTICATED" and e["method"].endswith("/GetBalance")
    ]
    assert refused and "user" not in refused[0] and "not recognised" in refused[0]["error"]


def test_every_client_attempt_has_the_fields_and_matches_the_gateway(scenario):
    cluster = scenario["cluster"]
    attempts = client_events(cluster)
    assert attempts and {e["event"] for e in attempts} == {"rpc.client"}
    for e in attempts:
        missing = [f for f in CLIENT_FIELDS if f not in e]
        assert not missing, f"{missing} missing from {e}"
        assert ("error" in e) == (e["code"] != "OK"), e
        if e["method"].endswith("/Pay"):
            assert "idempotency_key" in e and "amount_minor" in e
    # The successful payment seen three ways, joined by request id: the client's attempt, the
    # gateway's Pay, and each bank's vote (legs travel in batches, so a vote carries its own).
    paid = scenario["paid"]
    client_pay = next(e for e in attempts if e.get("idempotency_key") == paid.idempotency_key)
    same_request = [
        e for e in server_events(cluster) if e.get("request_id") == client_pay["request_id"]
    ]
    assert {(e["service"], e["event"]) for e in same_request} >= {
        ("gateway", "rpc"),
        ("BankA", "2pc.voted"),
        ("BankB", "2pc.voted"),
    }
    # (A Commit may be sent by another thread or the redriver; it is joined by txn id instead.)
    commits = [
        e
        for e in server_events(cluster)
        if e["event"] == "2pc.committed" and e.get("txn_id", "").startswith(paid.payment_id)
    ]
    assert {e["service"] for e in commits} == {"BankA", "BankB"}


def test_2pc_steps_are_events(scenario):
    cluster = scenario["cluster"]
    gateway = [
        e for e in events(gateway_log(cluster)) if e.get("txn_id") == scenario["paid"].payment_id
    ]
    steps = [e["event"] for e in gateway if e["event"] != "rpc"]
    assert steps[:2] == ["2pc.begin", "2pc.prepare_sent"]
    assert steps.count("2pc.vote") == 2 and steps.count("2pc.ack") == 2
    assert steps.index("2pc.decision") < steps.index("2pc.ack")
    assert next(e for e in gateway if e["event"] == "2pc.decision")["decision"] == "commit"
    declined = [
        e
        for e in events(gateway_log(cluster))
        if e.get("txn_id") == scenario["declined"].payment_id
    ]
    decision = next(e for e in declined if e["event"] == "2pc.decision")
    assert decision["decision"] == "abort" and decision["reason"] == "INSUFFICIENT_FUNDS"


def test_a_retry_is_visible_as_attempt_2(scenario):
    cluster = scenario["cluster"]
    key, request_id = scenario["manual_retry"]
    sent = [
        (e["attempt"], e["code"])
        for e in client_events(cluster)
        if e.get("request_id") == request_id
    ]
    received = [
        e
        for e in server_events(cluster)
        if e.get("request_id") == request_id and e["event"] == "rpc" and e["service"] == "gateway"
    ]
    assert sent == [(1, "OK"), (2, "OK")]
    assert [e["attempt"] for e in received] == [1, 2]
    assert received[0]["txn_id"] == received[1]["txn_id"]  # the retry replayed the same payment
    assert any(
        e["event"] == "idempotency.replay" and e.get("idempotency_key") == key
        for e in server_events(cluster)
    )


def test_a_real_retry_after_a_timeout(scenario):
    cluster = scenario["cluster"]
    assert scenario["real_retry"].account_id == "alice-acct"  # it got through in the end
    balance_calls = [e for e in client_events(cluster) if e["method"].endswith("/GetBalance")]
    retried = {e["request_id"] for e in balance_calls if e["attempt"] >= 2}
    assert len(retried) == 1
    sent = [e for e in balance_calls if e["request_id"] in retried]
    assert (sent[0]["attempt"], sent[0]["code"]) == (1, "DEADLINE_EXCEEDED")
    assert (sent[-1]["attempt"] >= 2, sent[-1]["code"]) == (True, "OK")
    assert [e["attempt"] for e in sent] == list(range(1, len(sent) + 1))
    # The gateway saw the attempts that reached it under the same request id, the last one answered.
    received = [e for e in server_events(cluster) if e.get("request_id") in retried]
    assert (
        received and received[-1]["code"] == "OK" and received[-1]["attempt"] == sent[-1]["attempt"]
    )


def test_unreachable_gateway_attempts_are_logged(scenario, tmp_path):
    # Nothing listens on this port: each attempt fails fast, and each is a line with its number.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_path = tmp_path / "client.jsonl"
    token = "pk_" + secrets.token_urlsafe(32)
    tls = ensure_identity(scenario["cluster"].pki_dir, CLIENT_CN)
    with PaymentClient(f"127.0.0.1:{port}", tls=tls, log_path=log_path, timeout_s=1.0) as client:
        client.token = token
        started = time.monotonic()
        with pytest.raises(Unavailable):
            client.balance()
    lines = events(log_path)
    assert [e["attempt"] for e in lines] == [1, 2, 3, 4]
    assert {e["code"] for e in lines} == {"UNAVAILABLE"} and len(
        {e["request_id"] for e in lines}
    ) == 1
    assert all(e["error"] and e["peer"] == f"127.0.0.1:{port}" for e in lines)
    assert token not in log_path.read_text()
    assert time.monotonic() - started < 10
