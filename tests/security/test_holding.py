"""No certificate holder can stall a server: idle streams and calls whose request never arrives
cost the servers no thread, so payments go on while many are held (issue 13, High 1 and 2).

A smaller version of `python -m paykit.lab.attack measure` (which holds 1,000 of each against
every server and measures the latency, docs/security.md): before the asyncio server, 32 idle
Watch streams froze the gateway and 32 body-less Prepares froze a bank.
"""

from __future__ import annotations

import uuid

import pytest
from conftest import new_payer
from grpc_health.v1 import health_pb2, health_pb2_grpc

from paykit.lab.attack import hold_cluster
from paykit.rpc.channels import secure_channel
from paykit.rpc.pki import CLIENT_CN, ensure_identity
from paykit.v1 import payment_pb2 as pb

HELD = 100  # idle streams, and as many body-less calls, per server: 3x the old thread count
CONNECTIONS = 4


@pytest.fixture(scope="module")
def held(shared_cluster):
    """Every server held by one attacker process with the shared client certificate: half the
    idle streams are health Watches, half reflection streams that never send; the body-less
    calls are Gateway/Pay at the gateway and Bank/Prepare (which the client may not call) at
    the banks."""
    holders = hold_cluster(shared_cluster, streams=HELD, bodyless=HELD, connections=CONNECTIONS)
    yield holders
    for holder in holders:
        holder.stop()


def test_a_payment_succeeds_while_every_server_is_held(shared_cluster, held):
    payer = new_payer(shared_cluster)
    # Through the gateway to both banks, each holding 2 x HELD calls: it must not time out.
    payment = payer.pay("BankB", "recipient123", 100, str(uuid.uuid4()), timeout_s=5.0)
    assert payment.status == pb.PAYMENT_STATUS_SUCCEEDED, payment.failure_message
    assert payer.balance().available_minor == 100_000 - 100
    # And the attack was really in place: every stream and call it tried is open.
    for holder in held:
        assert holder.counts == {"watch": HELD // 2, "reflection": HELD // 2, "bodyless": HELD}


def test_held_streams_still_see_health_and_new_watches_open(shared_cluster, held):
    # A new watcher is served at once (health's Watch never takes a thread).
    tls = ensure_identity(shared_cluster.pki_dir, CLIENT_CN)
    with secure_channel(shared_cluster.bank_address("BankA"), tls) as channel:
        stream = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(), timeout=5.0
        )
        assert next(stream).status == health_pb2.HealthCheckResponse.SERVING
        stream.cancel()
