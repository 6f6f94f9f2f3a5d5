"""Rich error details on real calls: google.rpc ErrorInfo (a stable reason) and BadRequest field
violations.

Any gRPC client can read them from the `grpc-status-details-bin` trailer; here we read them
the way a Python client without paykit would, with grpc_status.rpc_status.from_call.
"""

from __future__ import annotations

import uuid

import grpc
import pytest
from conftest import PASSWORD, signed_in
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from paykit.core.errors import ERROR_DOMAIN, InvalidAmount, InvalidInput
from paykit.v1 import payment_pb2 as pb


def details_of(
    exc: grpc.RpcError,
) -> tuple[error_details_pb2.ErrorInfo | None, error_details_pb2.BadRequest | None]:
    """The ErrorInfo and BadRequest packed into a failed call's status, if any."""
    status = rpc_status.from_call(exc)
    assert status is not None, "the call carried no google.rpc.Status"
    assert status.code == exc.code().value[0] and status.message == exc.details()
    info = bad = None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
    return info, bad


def raw_pay(client, **fields) -> grpc.RpcError:
    """Sends a Pay straight through the stub (no client-side checks) and returns its error."""
    request = pb.PayRequest(
        **{
            "idempotency_key": str(uuid.uuid4()),
            "to_bank": "BankB",
            "to_account": "recipient123",
            "amount_minor": 100,
            **fields,
        }
    )
    metadata = [("authorization", f"Bearer {client.token}")]
    with pytest.raises(grpc.RpcError) as caught:
        client.session.stub.Pay(request, timeout=5, metadata=metadata)
    return caught.value


@pytest.fixture
def alice(cluster):
    client = signed_in(cluster, "alice", "alice-acct")
    yield client
    client.close()


@pytest.mark.parametrize(
    "fields, reason, field",
    [
        ({"amount_minor": 0}, "INVALID_AMOUNT", "amount_minor"),
        ({"amount_minor": -5}, "INVALID_AMOUNT", "amount_minor"),
        ({"idempotency_key": "not-a-uuid"}, "INVALID_INPUT", "idempotency_key"),
        ({"to_account": "has space"}, "INVALID_INPUT", "to_account"),
        # paying yourself
        ({"to_bank": "BankA", "to_account": "alice-acct"}, "INVALID_INPUT", "to_account"),
    ],
)
def test_a_bad_pay_field_comes_back_as_error_info_and_a_field_violation(
    alice, fields, reason, field
):
    exc = raw_pay(alice, **fields)
    # The status code says "your request is wrong"; the details say which part and why.
    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
    info, bad = details_of(exc)
    assert (info.reason, info.domain, info.metadata["field"]) == (reason, ERROR_DOMAIN, field)
    assert [(v.field, v.description) for v in bad.field_violations] == [(field, exc.details())]


def test_an_unknown_bank_names_its_field_but_is_not_found_rather_than_bad_request(alice):
    exc = raw_pay(alice, to_bank="NoSuchBank")
    assert exc.code() == grpc.StatusCode.NOT_FOUND
    info, bad = details_of(exc)
    assert (info.reason, info.metadata["field"]) == ("UNKNOWN_BANK", "to_bank")
    assert bad is None  # BadRequest is for INVALID_ARGUMENT only


@pytest.mark.parametrize(
    "username, password, field",
    [
        ("bob", "short", "password"),
        ("no spaces allowed", PASSWORD, "username"),
    ],
)
def test_register_names_the_field_that_is_wrong(cluster, username, password, field):
    with cluster.client() as client, pytest.raises(grpc.RpcError) as caught:
        client.session.stub.Register(
            pb.RegisterRequest(
                username=username,
                password=password,
                account_id="bob-acct",
                opening_balance_minor=100,
            ),
            timeout=5,
        )
    info, bad = details_of(caught.value)
    assert info.metadata["field"] == field
    assert bad.field_violations[0].field == field


def test_search_names_the_field_that_is_wrong(alice):
    with pytest.raises(grpc.RpcError) as caught:
        alice.session.stub.SearchPayments(
            pb.SearchPaymentsRequest(page_size=-1),
            timeout=5,
            metadata=[("authorization", f"Bearer {alice.token}")],
        )
    assert details_of(caught.value)[1].field_violations[0].field == "page_size"


def test_payment_client_errors_keep_reason_and_field(alice):
    # Refused by the gateway: the Python client raises the same class, with its field.
    with pytest.raises(InvalidInput) as caught:
        alice.pay("BankB", "has space", "1.00")
    assert (caught.value.reason, caught.value.field) == ("INVALID_INPUT", "to_account")
    # Refused before sending (the client checks amounts itself): same class, same field.
    with pytest.raises(InvalidAmount) as caught:
        alice.pay("BankB", "recipient123", "1.001")
    assert caught.value.field == "amount_minor"


def test_a_successful_call_carries_no_status_details(alice):
    request = pb.GetBalanceRequest()
    _, call = alice.session.stub.GetBalance.with_call(
        request, timeout=5, metadata=[("authorization", f"Bearer {alice.token}")]
    )
    assert call.code() == grpc.StatusCode.OK
    assert rpc_status.from_call(call) is None
