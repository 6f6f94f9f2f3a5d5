"""The authorization table covers every RPC: from the service descriptors, and from what the
running servers say they serve (reflection); and the live servers enforce each kind of entry."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from paykit import LocalCluster
from paykit.rpc.channels import secure_channel
from paykit.rpc.interceptors import ACCESS, Access
from paykit.rpc.pki import CLIENT_CN, GATEWAY_CN, bank_cn, ensure_identity
from paykit.v1 import payment_pb2 as pb
from paykit.v1 import payment_pb2_grpc as pb_grpc

CALL_TIMEOUT_S = 5.0


CLUSTER = {"banks": ("BankA",)}


def service_methods(service) -> set[str]:
    return {f"/{service.full_name}/{m.name}" for m in service.methods}


# Newer grpcio-reflection releases also serve grpc.reflection.v1; ACCESS lists it ahead of time.
REFLECTION_V1 = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"


def descriptor_methods() -> set[str]:
    """Every RPC of every service a paykit server registers, from the descriptors."""
    methods = set()
    for service in pb.DESCRIPTOR.services_by_name.values():
        methods |= service_methods(service)
    for module in (health_pb2, reflection_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            methods |= service_methods(service)
    return methods


def test_every_rpc_in_the_descriptors_has_an_entry():
    missing = descriptor_methods() - set(ACCESS)
    assert not missing, f"RPCs without an entry in paykit.interceptors.ACCESS: {sorted(missing)}"
    # And no stale entry: each names a real RPC, so the table stays the list of what exists.
    stale = set(ACCESS) - descriptor_methods() - {REFLECTION_V1}
    assert not stale, f"ACCESS entries that are no RPC: {sorted(stale)}"
    # A bank answers the gateway only, but for its read-only list (the operator's too).
    bank = service_methods(pb.DESCRIPTOR.services_by_name["Bank"])
    assert {ACCESS[m] for m in bank - {"/paykit.v1.Bank/ListAccounts"}} == {Access.GATEWAY}
    assert ACCESS["/paykit.v1.Bank/ListAccounts"] == Access.BOOKS
    operator = service_methods(pb.DESCRIPTOR.services_by_name["OperatorService"])
    assert {ACCESS[m] for m in operator} == {Access.OPERATOR}


def channel_as(shared_cluster: LocalCluster, address: str, holder: str) -> grpc.Channel:
    return secure_channel(address, ensure_identity(shared_cluster.pki_dir, holder))


def served_methods(channel: grpc.Channel) -> set[str]:
    """What a running server serves, asked through reflection (an OPEN method)."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    reply = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=CALL_TIMEOUT_S)))
    pool = descriptor_pool.Default()
    methods = set()
    for service in reply.list_services_response.service:
        methods |= service_methods(pool.FindServiceByName(service.name))
    return methods


def test_every_rpc_the_servers_serve_has_an_entry(shared_cluster):
    for address in (shared_cluster.gateway_address, shared_cluster.bank_address("BankA")):
        with channel_as(shared_cluster, address, CLIENT_CN) as channel:
            served = served_methods(channel)
        assert served, f"reflection listed nothing at {address}"
        assert served <= set(ACCESS), f"served but not in ACCESS: {sorted(served - set(ACCESS))}"


def test_user_methods_need_a_token(shared_cluster):
    # Every USER method of the Gateway, called with a client certificate and no token.
    requests = {
        m.name: getattr(pb, m.input_type.name)()
        for m in pb.DESCRIPTOR.services_by_name["Gateway"].methods
    }
    user_methods = [
        name for name in requests if ACCESS[f"/paykit.v1.Gateway/{name}"] is Access.USER
    ]
    assert {"GetBalance", "Pay", "SearchPayments", "GetPayment", "Logout"} <= set(user_methods)
    with channel_as(shared_cluster, shared_cluster.gateway_address, CLIENT_CN) as channel:
        stub = pb_grpc.GatewayStub(channel)
        for name in user_methods:
            with pytest.raises(grpc.RpcError) as caught:
                getattr(stub, name)(requests[name], timeout=CALL_TIMEOUT_S)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, name
            assert "not signed in" in caught.value.details()


@pytest.mark.parametrize(
    "holder, allowed", [(bank_cn("BankA"), True), (CLIENT_CN, False), (GATEWAY_CN, False)]
)
def test_only_banks_ask_the_coordinator(shared_cluster, holder, allowed):
    # GetDecision is BANK: a bank's certificate gets the presumed-abort answer, others are refused.
    with channel_as(shared_cluster, shared_cluster.gateway_address, holder) as channel:
        call = pb_grpc.CoordinatorStub(channel).GetDecision
        request = pb.GetDecisionRequest(txn_id="0" * 32 + ".debit")
        if allowed:
            assert call(request, timeout=CALL_TIMEOUT_S).decision == pb.DECISION_ABORT
        else:
            with pytest.raises(grpc.RpcError) as caught:
                call(request, timeout=CALL_TIMEOUT_S)
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert holder in caught.value.details()


def test_the_gateway_certificate_may_call_a_bank(shared_cluster):
    # The positive side of GATEWAY: the same call a client is refused (test_tls) works for the
    # gateway.
    with channel_as(shared_cluster, shared_cluster.bank_address("BankA"), GATEWAY_CN) as channel:
        reply = pb_grpc.BankStub(channel).GetBalance(
            pb.BankGetBalanceRequest(account_id="merchant-a"), timeout=CALL_TIMEOUT_S
        )
    assert reply.account_id == "merchant-a"
