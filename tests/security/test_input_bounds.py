"""Bounded input (issue 13, Medium 6): every request field's length is checked before any
handler runs, an error echoes at most a short prefix of what it was given, and no log line
grows with what a caller sent.

The attack: 20 Register calls with a 1,000,000-character bank name, needing no token, grew
gateway.jsonl by 20 MB in 0.45 s, and the reply's trailer was too large for the client.
"""

from __future__ import annotations

import json

import grpc
import pytest
from conftest import signed_in
from google.protobuf.descriptor import FieldDescriptor

from paykit.core import eventlog
from paykit.core.ids import ECHO_MAX_CHARS, FIELD_MAX_CHARS
from paykit.rpc.channels import secure_channel
from paykit.rpc.pki import CLIENT_CN, GATEWAY_CN, bank_cn, ensure_identity
from paykit.v1 import payment_pb2 as pb
from paykit.v1 import payment_pb2_grpc as pb_grpc

TIMEOUT_S = 10.0
HUGE = 1_000_000


@pytest.fixture(scope="module")
def stub(shared_cluster):
    tls = ensure_identity(shared_cluster.pki_dir, CLIENT_CN)
    with secure_channel(shared_cluster.gateway_address, tls, server_name=GATEWAY_CN) as channel:
        yield pb_grpc.GatewayStub(channel)


def refused(call, request, metadata=()) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=TIMEOUT_S, metadata=metadata)
    return caught.value


def test_huge_fields_are_refused_with_a_short_answer_and_a_short_log_line(shared_cluster, stub):
    log = shared_cluster.procs["gateway"].data_dir / "gateway.jsonl"
    size_before = log.stat().st_size
    for i in range(20):
        err = refused(
            stub.Register,
            pb.RegisterRequest(
                username=f"huge{i}",
                password="password123",
                account_id=f"huge{i}-acct",
                opening_balance_minor=100,
                bank="B" * HUGE,
            ),
        )
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.details() == "bank is too long: at most 32 characters"
    grown = log.stat().st_size - size_before
    assert grown < 20 * 1000, f"gateway.jsonl grew by {grown} bytes for 20 refused calls"


@pytest.fixture(scope="module")
def token(shared_cluster) -> list[tuple[str, str]]:
    client = signed_in(shared_cluster, "echo", "echo-acct")
    yield [("authorization", f"Bearer {client.session.token}")]
    client.close()


def test_an_error_echoes_at_most_a_short_prefix(stub, token):
    # Within the field's limit but unknown: the message names the value by a prefix only.
    err = refused(stub.GetPayment, pb.GetPaymentRequest(payment_id="p" * 60), metadata=token)
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert "p" * ECHO_MAX_CHARS in err.details() and "p" * (ECHO_MAX_CHARS + 1) not in err.details()


def test_an_absurd_attempt_number_does_not_break_the_call(stub):
    # x-attempt is logged as a number; 5,000 digits once made int() raise inside the logger.
    err = refused(
        stub.Authenticate,
        pb.AuthenticateRequest(username="nobody-at-all", password="wrong-password"),
        metadata=[("x-attempt", "9" * 5000)],
    )
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


def text_fields(message_type, seen=None):
    """(message name, field name) of every text field of a request, inside its messages too."""
    seen = set() if seen is None else seen
    if message_type.full_name in seen:
        return
    seen.add(message_type.full_name)
    for field in message_type.fields:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            yield from text_fields(field.message_type, seen)
        elif field.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
            yield message_type.name, field.name


def test_every_text_field_of_every_request_has_a_limit():
    missing = {
        f"{message}.{name}"
        for service in pb.DESCRIPTOR.services_by_name.values()
        for method in service.methods
        for message, name in text_fields(method.input_type)
        if name not in FIELD_MAX_CHARS
    }
    assert not missing, f"no limit in paykit.core.ids.FIELD_MAX_CHARS for {sorted(missing)}"


def test_a_batched_legs_fields_are_checked_too(shared_cluster):
    # Only the gateway's identity may call Exchange; even so, its legs' fields have limits.
    tls = ensure_identity(shared_cluster.pki_dir, GATEWAY_CN)
    address = shared_cluster.bank_address("BankA")
    with secure_channel(address, tls, server_name=bank_cn("BankA")) as channel:
        leg = pb.LegDecision(txn_id="t" * HUGE, decision=pb.DECISION_ABORT)
        with pytest.raises(grpc.RpcError) as refused:
            pb_grpc.BankStub(channel).Exchange(pb.ExchangeRequest(decisions=[leg]), timeout=5)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "txn_id is too long" in refused.value.details()


def test_a_log_line_is_bounded_whatever_a_field_holds(tmp_path):
    log = eventlog.EventLog(tmp_path / "x.jsonl", service="test")
    log.event("rpc", error="e" * HUGE, method="/x", detail={"k": "v" * HUGE})
    log.close()
    line = (tmp_path / "x.jsonl").read_text()
    assert len(line) < 2 * eventlog.FIELD_MAX_CHARS + 500
    record = json.loads(line)
    assert record["error"].startswith("e" * 100) and "more characters" in record["error"]
