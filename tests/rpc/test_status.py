"""The one error hierarchy: every class maps to a gRPC status and back to itself, over a real
call."""

from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpc_status import rpc_status

from paykit.client.session import GatewaySession
from paykit.core.errors import (
    CLIENT_ONLY,
    ERROR_CLASSES,
    WIRE_CLASSES,
    ConnectFailed,
    PaykitError,
    from_reason,
)
from paykit.rpc.pki import CLIENT_CN, ensure_identity
from paykit.rpc.status import abort, from_rpc_error
from paykit.v1 import payment_pb2 as pb

BY_NAME = {cls.__name__: cls for cls in ERROR_CLASSES}


@pytest.fixture(scope="module")
def raising_channel():
    """A real gRPC server whose one method raises the paykit error named in the request."""

    def raise_named(request: bytes, context):
        cls = BY_NAME[request.decode()]
        abort(context, cls("something went wrong", metadata={"field": "amount_minor"}))

    handler = grpc.method_handlers_generic_handler(
        "test.Errors", {"Raise": grpc.unary_unary_rpc_method_handler(raise_named)}
    )
    server = grpc.server(ThreadPoolExecutor(2), handlers=[handler])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield channel.unary_unary("/test.Errors/Raise")
    channel.close()
    server.stop(0)


@pytest.mark.parametrize("cls", WIRE_CLASSES, ids=lambda c: c.__name__)
def test_every_error_round_trips_through_a_grpc_status(raising_channel, cls):
    with pytest.raises(grpc.RpcError) as info:
        raising_channel(cls.__name__.encode(), timeout=5)
    if cls is not PaykitError:
        assert info.value.code() == grpc.StatusCode[cls.code]
    assert rpc_status.from_call(info.value).message == "something went wrong"
    back = from_rpc_error(info.value)
    assert type(back) is cls
    assert back.message == "something went wrong"
    assert back.metadata["field"] == "amount_minor"


@pytest.mark.parametrize("cls", CLIENT_ONLY, ids=lambda c: c.__name__)
def test_a_server_cannot_raise_a_client_only_error(raising_channel, cls):
    # ConnectFailed says "never sent" and TLSFailure "never retry": only the client may conclude
    # that.
    with pytest.raises(grpc.RpcError) as info:
        raising_channel(cls.__name__.encode(), timeout=5)
    back = from_rpc_error(info.value)
    assert type(back) not in CLIENT_ONLY and back.code == cls.code


def test_reasons_are_unique_and_stable():
    reasons = [cls.reason for cls in ERROR_CLASSES]
    assert len(reasons) == len(set(reasons))


def test_without_details_the_code_picks_the_general_class():
    assert from_reason("", "NOT_FOUND").__name__ == "NotFound"
    assert from_reason("", "DEADLINE_EXCEEDED").__name__ == "Unavailable"


def test_a_call_that_found_no_server_is_connect_failed(tmp_path):
    # Refused at once (nothing listens on port 1): the request certainly never left this machine,
    # which is what lets the outbox cancel it (docs/offline.md).
    tls = ensure_identity(tmp_path / "pki", CLIENT_CN)
    with GatewaySession("127.0.0.1:1", tls, timeout_s=2.0) as session, pytest.raises(ConnectFailed):
        session.call("GetBalance", pb.GetBalanceRequest())
