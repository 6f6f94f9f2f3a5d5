"""Partitions, lost replies and delays between live processes, through LocalCluster's relays.

Harness (paykit.lab.LocalCluster, one cluster for the file, votes time out after 1.5 s):
    partition(a, b)                   nothing passes between a and b: calls wait for their deadline
    partition(a, b, drop="replies")   requests arrive and are served, the answers are lost
    cut(a, b)                         connections reset, new ones refused: calls fail at once
    delay(a, b, ms=...)               every byte waits
    heal()                            everything passes again
A name like "BankA->gateway" is one link alone (the bank's GetDecision calls). A partition is
not a crash: both sides live on with their state. Each test heals what it broke and waits until
nothing is in doubt, so the next one starts clean.
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import OPENING_MINOR, PASSWORD, new_payer, signed_in

from paykit import LocalCluster
from paykit.client.models import QUEUED_UNREACHABLE
from paykit.core.errors import PaykitError, Unavailable
from paykit.core.twopc import Decision
from paykit.lab.check import check_invariants, read_bank, read_gateway
from paykit.lab.lessons import wait_until
from paykit.v1 import payment_pb2 as pb

CLUSTER = {"prepare_timeout_s": 1.5}
AMOUNT_MINOR = 1_000
SETTLE_S = 20.0


@pytest.fixture
def net(shared_cluster: LocalCluster) -> LocalCluster:
    """The shared cluster with every link healed, before and after the test."""
    shared_cluster.heal()
    yield shared_cluster
    shared_cluster.heal()
    settled(shared_cluster)


def settled(cluster: LocalCluster) -> None:
    """Waits until every invariant holds: the gateway may still be redialing a healed link to
    have its decision acknowledged."""
    wait_until(lambda: check_invariants(cluster).ok, SETTLE_S, what="every invariant")


def payment_for(cluster: LocalCluster, key: str):
    found = [p for p in read_gateway(cluster.gateway_db()) if p.idempotency_key == key]
    return found[0] if found else None


def leg(cluster: LocalCluster, bank: str, txn_id: str) -> str | None:
    return read_bank(bank, cluster.bank_db(bank)).txn_states.get(txn_id)


def asked_in_vain(cluster: LocalCluster, bank: str, txn_id: str) -> int:
    """How often `bank`'s resolver asked the coordinator about `txn_id` and got no answer."""
    path = cluster.procs[bank].data_dir / f"{bank}.jsonl"
    events = (json.loads(line) for line in path.read_text().splitlines())
    return sum(e.get("event") == "2pc.in_doubt" and e.get("txn_id") == txn_id for e in events)


def send_until_answered(session, key: str, timeout_s: float = 10.0) -> pb.Payment:
    """Resends one payment with its key, as a client does, until the gateway answers."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return session.pay("BankB", "recipient123", AMOUNT_MINOR, key)
        except Unavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_a_reply_lost_after_a_committed_pay_is_answered_by_the_retry_with_its_key(net):
    payer = new_payer(net)
    key = str(uuid.uuid4())
    # The Pay reaches the gateway and is committed; its answer never comes back.
    net.partition("client", "gateway", drop="replies")
    with pytest.raises(Unavailable, match="in time"):
        payer.pay("BankB", "recipient123", AMOUNT_MINOR, key, timeout_s=2.5)
    committed = payment_for(net, key)
    assert committed is not None and committed.decision is Decision.COMMIT
    net.heal()
    # The retry with the same key gets the stored answer: the same payment, not a second one.
    answer = send_until_answered(payer, key)
    assert answer.status == pb.PAYMENT_STATUS_SUCCEEDED
    assert answer.payment_id == committed.payment_id
    assert sum(p.idempotency_key == key for p in read_gateway(net.gateway_db())) == 1
    assert payer.balance().balance_minor == OPENING_MINOR - AMOUNT_MINOR  # moved once


def test_the_payee_bank_partitioned_during_prepare_times_out_and_aborts(net):
    payer = new_payer(net)
    key = str(uuid.uuid4())
    net.partition("gateway", "BankB")  # BankB lives on; nothing reaches it, nothing comes back
    started = time.monotonic()
    payment = payer.pay("BankB", "recipient123", AMOUNT_MINOR, key)
    took_s = time.monotonic() - started
    # No vote within the 1.5 s timeout counts as NO: the coordinator aborts.
    assert payment.status == pb.PAYMENT_STATUS_FAILED
    assert payment.failure_reason == "BANK_TIMEOUT"
    assert took_s < 5, f"the vote timeout is 1.5 s, the payment took {took_s:.1f} s"
    # The payer's bank heard the Abort at once: its hold is released, nothing moved.
    assert payer.balance().available_minor == OPENING_MINOR
    assert leg(net, "BankB", f"{payment.payment_id}.credit") is None  # BankB never heard of it
    net.heal()
    # After the heal the Abort reaches BankB too (a tombstone: a late Prepare would vote NO).
    wait_until(
        lambda: leg(net, "BankB", f"{payment.payment_id}.credit") == "aborted",
        SETTLE_S,
        what="the Abort delivered to BankB",
    )
    settled(net)


def test_a_payee_that_voted_yes_then_lost_its_link_stays_in_doubt_until_heal(net):
    payer = new_payer(net)
    key = str(uuid.uuid4())
    before = set(read_bank("BankB", net.bank_db("BankB")).txn_states)
    net.partition("gateway", "BankB", drop="replies")  # BankB hears the Prepare; its YES is lost
    with ThreadPoolExecutor(1) as pool:
        paying = pool.submit(payer.pay, "BankB", "recipient123", AMOUNT_MINOR, key)
        txn = wait_until(
            lambda: set(read_bank("BankB", net.bank_db("BankB")).txn_states) - before,
            5.0,
            what="BankB's prepared credit leg",
        ).pop()
        net.cut("gateway", "BankB")  # and now the link is cut, both ways
        payment = paying.result()
    assert payment.status == pb.PAYMENT_STATUS_FAILED
    assert payment.failure_reason in ("BANK_TIMEOUT", "BANK_UNAVAILABLE")
    assert txn == f"{payment.payment_id}.credit"
    # BankB voted YES, so it may not decide alone: it asks the coordinator and cannot reach it.
    wait_until(lambda: asked_in_vain(net, "BankB", txn) >= 2, 10.0, what="BankB asking in vain")
    assert leg(net, "BankB", txn) == "prepared"
    assert payer.balance().available_minor == OPENING_MINOR  # BankA heard the Abort
    net.heal()
    wait_until(lambda: leg(net, "BankB", txn) == "aborted", SETTLE_S, what="BankB resolved")
    settled(net)


def test_a_payer_bank_cut_from_the_coordinator_keeps_its_hold_until_heal(net):
    payer = new_payer(net)
    key = str(uuid.uuid4())
    net.cut("BankA->gateway")  # BankA's resolver cannot ask for decisions
    # BankA's Prepare and Commit arrive 0.6 s late: time to cut the Commit off after COMMIT is
    # logged (BankA's YES still arrives well within the 1.5 s vote timeout).
    net.delay("gateway->BankA", ms=600, direction="requests")
    with ThreadPoolExecutor(1) as pool:
        paying = pool.submit(payer.pay, "BankB", "recipient123", AMOUNT_MINOR, key)
        decided = wait_until(
            lambda: (p := payment_for(net, key)) is not None and p.decision is not None and p,
            5.0,
            what="the decision logged",
            every_s=0.02,
        )
        net.cut("gateway", "BankA")  # the Commit in flight to BankA is lost with its connection
        payment = paying.result()
    assert decided.decision is Decision.COMMIT
    assert payment.status == pb.PAYMENT_STATUS_SUCCEEDED  # the client is told: COMMIT is logged
    txn = f"{payment.payment_id}.debit"
    # BankA holds the money and asks, in vain: the hold stays (it never decides alone).
    wait_until(lambda: asked_in_vain(net, "BankA", txn) >= 2, 10.0, what="BankA asking in vain")
    books = read_bank("BankA", net.bank_db("BankA"))
    assert books.txn_states[txn] == "prepared"
    account = f"{payer.username}-acct"
    assert books.balances[account] == OPENING_MINOR  # not debited yet...
    assert books.held[account] == AMOUNT_MINOR  # ...but held
    net.heal()
    wait_until(lambda: leg(net, "BankA", txn) == "committed", SETTLE_S, what="BankA committed")
    settled(net)  # (the gateway redials BankA within its reconnect backoff, at most 1 s)
    assert payer.balance().balance_minor == OPENING_MINOR - AMOUNT_MINOR  # debited once


def test_a_client_cut_from_the_gateway_queues_and_drains_after_heal(net, tmp_path):
    alice = signed_in(net, "alice", "alice-acct", "100", "BankA", outbox_dir=tmp_path / "outbox")
    net.cut("client", "gateway")
    queued = [alice.pay("BankB", "recipient123", amount) for amount in ("5", "7")]
    # Refused at once, so certainly not sent: queued, in order, with their keys on disk.
    assert [p.status for p in queued] == ["queued", "queued"]
    assert queued[0].queued_reason == QUEUED_UNREACHABLE
    assert len(alice.queue()) == 2
    net.heal()
    done = {}
    for finished in alice.completions(timeout_s=15.0):
        done[finished.outbox_id] = finished
        if len(done) == len(queued):
            break
    assert set(done) == {p.outbox_id for p in queued}
    assert all(done[p.outbox_id].status == "succeeded" for p in queued)
    assert alice.queue() == []
    assert alice.balance().balance_minor == 100_00 - 12_00  # each applied exactly once
    keys = {p.idempotency_key for p in queued}
    assert sum(p.idempotency_key in keys for p in read_gateway(net.gateway_db())) == 2
    alice.close()


def test_a_delay_longer_than_the_vote_timeout_aborts_with_bank_timeout(net):
    payer = new_payer(net)
    key = str(uuid.uuid4())
    net.delay("gateway", "BankA", ms=2000)  # the payer's bank: its vote would come after 4 s
    payment = payer.pay("BankB", "recipient123", AMOUNT_MINOR, key)
    assert payment.status == pb.PAYMENT_STATUS_FAILED
    assert payment.failure_reason == "BANK_TIMEOUT"
    net.heal()  # the late Prepare and then the Abort arrive, in that order
    txn = f"{payment.payment_id}.debit"
    wait_until(lambda: leg(net, "BankA", txn) == "aborted", SETTLE_S, what="the late leg aborted")
    settled(net)
    # Nothing moved: no debit, no hold, no credit.
    assert payer.balance().balance_minor == OPENING_MINOR
    assert payer.balance().available_minor == OPENING_MINOR
    assert leg(net, "BankB", f"{payment.payment_id}.credit") == "aborted"


def test_faults_name_processes_or_links_and_refuse_the_rest(net):
    with pytest.raises(PaykitError, match="no link between BankA and BankB"):
        net.partition("BankA", "BankB")  # banks never talk to each other
    with pytest.raises(PaykitError, match="no process or link 'BankZ'"):
        net.cut("gateway", "BankZ")
    with pytest.raises(PaykitError, match="direction"):
        net.delay("gateway", "BankA", ms=10, direction="sideways")
    assert all(row["state"] == "ok" for row in net.links())  # a refusal changes nothing
    # One process alone: every link it is on.
    isolated = net.partition("BankB")
    assert sorted(s.link for s in isolated) == ["BankB->gateway", "gateway->BankB"]
    assert repr(isolated[0]).startswith("<link gateway->BankB: dropped both ways")


def test_a_fresh_client_connects_over_a_slow_link(net):
    # grpc's min_reconnect_backoff_ms is also the deadline of a whole connection attempt (TCP,
    # TLS, HTTP/2 settings): at 100 ms, a link slower than ~50 ms each way could never connect a
    # new channel ("Handshake read failed"), and a loaded machine failed fresh channels at times.
    net.delay("client", "gateway", ms=80)
    try:
        fresh = net.session()
        connected_at = time.monotonic()
        fresh.register(
            f"slow{uuid.uuid4().hex[:8]}",
            PASSWORD,
            f"slow-{uuid.uuid4().hex[:8]}",
            OPENING_MINOR,
            "BankA",
        )
        assert time.monotonic() - connected_at < 10
    finally:
        net.heal()
