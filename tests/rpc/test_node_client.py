"""A client in another language: Node.js with @grpc/grpc-js, built only from payment.proto.

It talks to a real cluster over mutual TLS with the dev PKI (register, sign in, pay, retry
with the same key, balance) and reads a refused call's rich details from the trailer. It
needs `node` and the packages of tests/node (`npm ci --prefix tests/node`, which .ci/run does).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from google.rpc import status_pb2

from paykit.rpc.pki import CLIENT_CN, GATEWAY_CN

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "tests" / "node"
# googleapis-common-protos ships google/rpc/status.proto and error_details.proto next to their
# modules.
GOOGLEAPIS = Path(status_pb2.__file__).resolve().parent.parent.parent
NODE_TIMEOUT_S = 60


def node_or_skip() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the Node.js client test needs Node.js 18 or newer")
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.skip(
            "tests/node/node_modules is missing: run `npm ci --prefix tests/node` (.ci/run does)"
        )
    return node


def run_node_client(cluster, user: str) -> dict:
    node = node_or_skip()
    pki = cluster.pki_dir / "client"  # the client bundle
    cmd = [
        node,
        str(NODE_DIR / "client.js"),
        "--gateway",
        cluster.gateway_address,
        "--ca",
        str(pki / "ca.pem"),
        "--cert",
        str(pki / f"{CLIENT_CN}.pem"),
        "--key",
        str(pki / f"{CLIENT_CN}.key"),
        "--server-name",
        GATEWAY_CN,
        "--proto-root",
        str(ROOT / "proto"),
        "--googleapis",
        str(GOOGLEAPIS),
        "--user",
        user,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=NODE_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_node_client_registers_signs_in_pays_and_reads_error_details(cluster):
    out = run_node_client(cluster, "carol")
    assert out["register"] == {"username": "carol", "bank": "BankA", "account_id": "carol-acct"}
    assert out["authenticated"] == {"username": "carol", "token_present": True}
    # The payment went through 2PC; int64 amounts arrive as decimal strings in JavaScript.
    pay = out["pay"]
    assert (pay["status"], pay["amount_minor"]) == ("PAYMENT_STATUS_SUCCEEDED", "2500")
    assert (pay["to_bank"], pay["to_account"]) == ("BankB", "recipient123")
    # Retrying with the same idempotency key replays the stored answer: the same payment, once.
    assert out["pay_retry"] == pay
    assert out["balance"]["balance_minor"] == "97500"
    # A refused call: the status code, and the google.rpc.Status from grpc-status-details-bin.
    error = out["error"]
    assert error["code"] == "INVALID_ARGUMENT"
    status = error["status"]
    assert (status["code"], status["message"]) == (3, error["details"])
    by_type = {d["type"]: d for d in status["details"]}
    info = by_type["google.rpc.ErrorInfo"]
    assert (info["reason"], info["domain"], info["metadata"]) == (
        "INVALID_AMOUNT",
        "paykit.dev",
        {"field": "amount_minor"},
    )
    violations = by_type["google.rpc.BadRequest"]["fieldViolations"]
    assert [v["field"] for v in violations] == ["amount_minor"]


def test_the_node_client_moved_money_exactly_once(cluster):
    run_node_client(cluster, "dave")
    # Seen from Python: one payment of 25.00, though the Node client sent Pay twice.
    with cluster.client() as client:
        client.authenticate("dave", "node-password-1")
        found = client.search()
    assert [(p.amount_minor, p.status) for p in found] == [(2500, "succeeded")]
