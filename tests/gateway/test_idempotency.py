"""Stripe-style idempotency keys at the gateway, over real calls (see docs/correctness.md).

Calls go through paykit.chaos.GatewaySession: one send per call, no outbox, so each
assertion is about exactly what the gateway answered, down to the bytes.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from contextlib import closing

import pytest
from conftest import PASSWORD

from paykit.client.session import GatewaySession
from paykit.core.errors import (
    IdempotencyKeyExpired,
    IdempotencyKeyReused,
    InProgress,
    InvalidInput,
    PaykitError,
)
from paykit.lab.check import check_invariants, read_gateway, total_money
from paykit.lab.lessons import wait_until
from paykit.v1 import payment_pb2 as pb

CLUSTER = {"prepare_timeout_s": 2.0}


def session(
    cluster, username: str, opening_minor: int = 100_000, bank: str = "BankA"
) -> GatewaySession:
    s = cluster.session()
    s.register(username, PASSWORD, f"{username}-acct", opening_minor, bank)
    s.authenticate(username, PASSWORD)
    return s


def payments_for(cluster, key: str):
    return [p for p in read_gateway(cluster.gateway_db()) if p.idempotency_key == key]


def test_a_retry_replays_the_stored_response_byte_for_byte(shared_cluster):
    ada = session(shared_cluster, "ada")
    key = str(uuid.uuid4())
    first = ada.pay_bytes("BankB", "recipient123", 2_500, key)
    assert pb.PayResponse.FromString(first).payment.status == pb.PAYMENT_STATUS_SUCCEEDED
    # The same bytes every time, and the money moved once.
    assert [ada.pay_bytes("BankB", "recipient123", 2_500, key) for _ in range(3)] == [first] * 3
    assert ada.balance().balance_minor == 100_000 - 2_500
    assert len(payments_for(shared_cluster, key)) == 1


def test_a_declined_payment_is_replayed_too_even_after_the_money_arrives(shared_cluster):
    bea = session(shared_cluster, "bea", opening_minor=1_000)
    key = str(uuid.uuid4())
    first = bea.pay_bytes("BankB", "recipient123", 5_000, key)
    declined = pb.PayResponse.FromString(first).payment
    assert (
        declined.status == pb.PAYMENT_STATUS_FAILED
        and declined.failure_reason == "INSUFFICIENT_FUNDS"
    )
    # The account gets the money from someone else; a retry still gets the stored refusal,
    # because the key names that one attempt, not "try again now".
    session(shared_cluster, "cem").pay("BankA", "bea-acct", 10_000, str(uuid.uuid4()))
    assert bea.pay_bytes("BankB", "recipient123", 5_000, key) == first
    assert bea.balance().balance_minor == 11_000
    # An unknown payee is a NO vote: a decided failure, stored and replayed the same way.
    key2 = str(uuid.uuid4())
    nobody = bea.pay_bytes("BankB", "nobody-here", 100, key2)
    assert pb.PayResponse.FromString(nobody).payment.failure_reason == "UNKNOWN_ACCOUNT"
    assert bea.pay_bytes("BankB", "nobody-here", 100, key2) == nobody


def test_the_same_key_with_other_parameters_is_refused(shared_cluster):
    dan = session(shared_cluster, "dan")
    key = str(uuid.uuid4())
    dan.pay("BankB", "recipient123", 1_000, key)
    for other in (
        ("BankB", "recipient123", 1_001),
        ("BankB", "merchant-b", 1_000),
        ("BankA", "merchant-a", 1_000),
    ):
        with pytest.raises(IdempotencyKeyReused) as caught:
            dan.pay(*other, key)
        assert "different payment" in str(caught.value)
    # FAILED_PRECONDITION on the wire, and nothing moved for the refused reuses.
    assert IdempotencyKeyReused.code == "FAILED_PRECONDITION"
    assert dan.balance().balance_minor == 99_000
    assert len(payments_for(shared_cluster, key)) == 1


def test_keys_belong_to_their_user(shared_cluster):
    eve, fay = session(shared_cluster, "eve"), session(shared_cluster, "fay")
    key = str(uuid.uuid4())
    # Two users may use the same key: each gets their own payment.
    assert eve.pay("BankB", "recipient123", 700, key).status == pb.PAYMENT_STATUS_SUCCEEDED
    assert fay.pay("BankB", "recipient123", 700, key).status == pb.PAYMENT_STATUS_SUCCEEDED
    assert len(payments_for(shared_cluster, key)) == 2


def test_validation_errors_are_not_stored(shared_cluster):
    gus = session(shared_cluster, "gus")
    key = str(uuid.uuid4())
    for bad in (
        ("BankB", "recipient123", 0),
        ("NoSuchBank", "recipient123", 100),
        ("BankB", "has space", 100),
        ("BankA", "gus-acct", 100),
    ):
        with pytest.raises(PaykitError) as caught:
            gus.pay(*bad, key)
        assert not isinstance(caught.value, IdempotencyKeyReused)
    assert payments_for(shared_cluster, key) == []
    # The key is still free: a good request with it runs.
    assert gus.pay("BankB", "recipient123", 100, key).status == pb.PAYMENT_STATUS_SUCCEEDED
    with pytest.raises(InvalidInput):
        gus.pay("BankB", "recipient123", 100, "not-a-uuid")


def test_concurrent_duplicates_run_once_and_the_rest_hear_in_progress_or_the_answer(shared_cluster):
    hal = session(shared_cluster, "hal")
    money_before = total_money(shared_cluster)
    key = str(uuid.uuid4())
    answers: list = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def send():
        start.wait()
        try:
            answer = hal.pay_bytes("BankB", "recipient123", 3_000, key)
        except PaykitError as err:
            answer = err
        with lock:
            answers.append(answer)

    # The payee's bank hangs for a moment, so the first send is still in progress while the
    # seven duplicates arrive.
    shared_cluster.pause("BankB")
    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        wait_until(
            lambda: len(payments_for(shared_cluster, key)) == 1,
            15.0,
            what="the first send's payment row",
        )
        wait_until(
            lambda: sum(isinstance(a, InProgress) for a in answers) == 7,
            10.0,
            what="seven IN_PROGRESS answers",
        )
    finally:
        shared_cluster.resume("BankB")
    for t in threads:
        t.join(timeout=30)
    stored = [a for a in answers if isinstance(a, bytes)]
    assert len(stored) == 1 and all(isinstance(a, InProgress) for a in answers if a not in stored)
    assert InProgress.code == "ABORTED"
    # Retried now, every duplicate gets the one stored answer; one payment ran, once.
    assert hal.pay_bytes("BankB", "recipient123", 3_000, key) == stored[0]
    status = pb.PayResponse.FromString(stored[0]).payment.status
    assert len(payments_for(shared_cluster, key)) == 1
    paid = 3_000 if status == pb.PAYMENT_STATUS_SUCCEEDED else 0
    wait_until(lambda: check_invariants(shared_cluster).ok, 15.0, what="nothing in doubt")
    assert hal.balance().balance_minor == 100_000 - paid
    assert total_money(shared_cluster) == money_before


def test_concurrent_duplicates_without_a_slow_bank_still_pay_once(shared_cluster):
    ivy = session(shared_cluster, "ivy")
    key = str(uuid.uuid4())
    answers: list = []
    start = threading.Barrier(6)

    def send():
        start.wait()
        try:
            answers.append(ivy.pay_bytes("BankB", "recipient123", 1_234, key))
        except InProgress as err:
            answers.append(err)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    final = ivy.pay_bytes("BankB", "recipient123", 1_234, key)
    assert all(a == final for a in answers if isinstance(a, bytes))
    assert ivy.balance().balance_minor == 100_000 - 1_234
    assert len(payments_for(shared_cluster, key)) == 1


def test_keys_older_than_the_retention_are_pruned(make_cluster):
    cluster = make_cluster(gateway_args=("--idempotency-retention-s", "1"))
    jo = session(cluster, "jo")
    keys = [str(uuid.uuid4()) for _ in range(5)]
    for key in keys:
        jo.pay("BankB", "recipient123", 100, key)

    def key_rows() -> int:
        with closing(sqlite3.connect(f"file:{cluster.gateway_db()}?mode=ro", uri=True)) as conn:
            return conn.execute("SELECT COUNT(*) FROM idempotency_keys").fetchone()[0]

    assert key_rows() == 5
    # Retention 1 s: the gateway prunes every 0.5 s, so within a few seconds all are gone.
    wait_until(lambda: key_rows() == 0, 10.0, what="pruning of keys older than 1 s")
    # The stored answers are gone, the payments are not: a late resend of an old key (an outbox
    # offline for longer than the retention) is refused, naming its payment, and runs nothing.
    first = read_gateway(cluster.gateway_db())
    assert len(first) == 5
    with pytest.raises(IdempotencyKeyExpired) as late:
        jo.pay("BankB", "recipient123", 100, keys[0])
    assert late.value.metadata["payment_id"] == next(
        p.payment_id for p in first if p.idempotency_key == keys[0]
    )
    with pytest.raises(IdempotencyKeyReused):  # and never starts another payment, whatever it asks
        jo.pay("BankB", "merchant-b", 200, keys[0])
    assert len(read_gateway(cluster.gateway_db())) == 5 and key_rows() == 0
    check_invariants(cluster).assert_ok()
