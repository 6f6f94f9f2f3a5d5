"""Registration takes no thread a payment or a balance needs (issue 13, Medium 9), account ids
follow the usernames' look-alike rule, and amounts are ASCII digits (Low).

The attacks: 48 concurrent registrations, queued on one lock while holding worker threads,
raised a normal GetBalance from 3.8 ms to 1.1 s; Cyrillic letters, combining accents and '/'
registered beside real account ids; '١٠٠' was read as 100.00.
"""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from conftest import PASSWORD, signed_in

from paykit.core.errors import InvalidInput
from paykit.rpc.channels import secure_channel
from paykit.rpc.pki import CLIENT_CN, GATEWAY_CN, ensure_identity
from paykit.v1 import payment_pb2 as pb
from paykit.v1 import payment_pb2_grpc as pb_grpc

STUCK = 60  # concurrent registrations: more than the old 32 worker threads
LOOK_ALIKES = ["bаnk123", "bank123\u0301", "bank/123", "Bank123", "ｂａｎｋ１２３"]


@pytest.mark.parametrize(
    "account_id",
    LOOK_ALIKES,
    ids=["cyrillic-a", "combining-accent", "slash", "uppercase", "fullwidth"],
)
def test_look_alike_account_ids_are_refused(shared_cluster, account_id):
    tls = ensure_identity(shared_cluster.pki_dir, CLIENT_CN)
    with secure_channel(shared_cluster.gateway_address, tls, server_name=GATEWAY_CN) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            pb_grpc.GatewayStub(channel).Register(
                pb.RegisterRequest(
                    username=f"lookalike{LOOK_ALIKES.index(account_id)}",
                    password=PASSWORD,
                    account_id=account_id,
                    bank="BankA",
                ),
                timeout=10,
            )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "account id" in caught.value.details()


def test_a_flood_of_registrations_takes_no_thread_a_balance_needs(shared_cluster):
    reader = signed_in(shared_cluster, "reader", "reader-acct", opening="0")
    # STUCK registrations at once over one channel: each hashes a password and takes the
    # registration lock in turn. They wait on the sign-in pool's threads; the balance has its own.
    flood = shared_cluster.session(timeout_s=60)
    threads = [
        threading.Thread(
            target=flood.register, args=(f"flood{i}", PASSWORD, f"flood{i}-acct", 0, "BankA")
        )
        for i in range(STUCK)
    ]
    try:
        for t in threads:
            t.start()
        time.sleep(0.5)  # they are all at the gateway, most of them waiting
        started = time.monotonic()
        assert reader.balance().bank == "BankA"
        took_s = time.monotonic() - started
        assert took_s < 1.0, f"a balance took {took_s:.2f} s behind {STUCK} registrations"
    finally:
        for t in threads:
            t.join(60)
        flood.close()
        reader.close()


def test_amounts_in_other_scripts_digits_are_refused(shared_cluster):
    client = signed_in(shared_cluster, "arabic", "arabic-acct", opening="0")
    for text in ("١٠٠", "１００", "१००"):  # 100 in Arabic-Indic, fullwidth, Devanagari digits
        with pytest.raises(InvalidInput):
            client.pay("BankB", "recipient123", text)
    assert client.balance().balance_minor == 0
    client.close()
