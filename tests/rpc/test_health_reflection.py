"""The standard gRPC health and reflection services, on every server, over mutual TLS, without
a token.

They are what grpcurl, Evans, Postman and load balancers use: health says whether a
server has finished recovery; reflection hands out the service definitions, so a tool
needs no .proto file.
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from paykit.lab.cluster import GATEWAY
from paykit.rpc.channels import secure_channel
from paykit.rpc.pki import CLIENT_CN, ensure_identity

# What each kind of server serves, besides health and reflection.
SERVICES = {
    GATEWAY: ("paykit.v1.Gateway", "paykit.v1.Coordinator", "paykit.v1.OperatorService"),
    "BankA": ("paykit.v1.Bank",),
    "BankB": ("paykit.v1.Bank",),
}
HEALTH, REFLECTION = "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"


@pytest.fixture(scope="module")
def channels(shared_cluster):
    """A client-certificate channel to each server, with no token anywhere."""
    tls = ensure_identity(shared_cluster.pki_dir, CLIENT_CN)
    made = {p.name: secure_channel(p.address, tls) for p in shared_cluster.procs.values()}
    yield made
    for channel in made.values():
        channel.close()


@pytest.mark.parametrize("server", list(SERVICES))
def test_every_server_reports_serving_for_itself_and_each_service(channels, server):
    stub = health_pb2_grpc.HealthStub(channels[server])
    # "" is the whole server; then each paykit service it hosts.
    for service in ("", *SERVICES[server]):
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, (server, service)


def test_health_of_a_service_the_server_does_not_host_is_not_found(channels):
    with pytest.raises(grpc.RpcError) as caught:
        health_pb2_grpc.HealthStub(channels["BankA"]).Check(
            health_pb2.HealthCheckRequest(service="paykit.v1.Gateway"), timeout=5
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("server", list(SERVICES))
def test_reflection_lists_the_services_of_every_server(channels, server):
    db = ProtoReflectionDescriptorDatabase(channels[server])
    assert set(db.get_services()) == {*SERVICES[server], HEALTH, REFLECTION}


def test_reflection_hands_out_the_gateway_definition_without_a_proto_file(channels):
    db = ProtoReflectionDescriptorDatabase(channels[GATEWAY])
    # The file that defines the service, as a tool like grpcurl fetches it.
    file_proto = db.FindFileContainingSymbol("paykit.v1.Gateway")
    assert file_proto.name == "paykit/v1/payment.proto"
    assert file_proto.package == "paykit.v1"
    # Enough to build requests: the methods with their message types and fields.
    gateway = DescriptorPool(db).FindServiceByName("paykit.v1.Gateway")
    methods = {m.name: (m.input_type.full_name, m.output_type.full_name) for m in gateway.methods}
    assert methods["Pay"] == ("paykit.v1.PayRequest", "paykit.v1.PayResponse")
    pay_fields = {f.name for f in gateway.methods_by_name["Pay"].input_type.fields}
    assert {"idempotency_key", "to_bank", "to_account", "amount_minor"} <= pay_fields
