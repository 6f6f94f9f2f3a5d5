"""Batching with real servers: many legs per Exchange call, the same outcome per leg
as unary calls, and a crash inside a batch leaves each leg fully prepared or not at all."""

from __future__ import annotations

import json
import threading
import time
import uuid

from conftest import OPENING_MINOR, new_payer

from paykit.core.errors import PaykitError
from paykit.lab.check import check_invariants, read_bank, read_gateway, total_money
from paykit.lab.lessons import wait_until
from paykit.v1 import payment_pb2 as pb

PAYERS = 12
SETTLE_S = 20.0


def bank_calls(cluster, bank: str, method: str) -> list[dict]:
    """The bank's own log lines of each call of `method` (e.g. Exchange)."""
    path = cluster.procs[bank].data_dir / f"{bank}.jsonl"
    lines = (json.loads(line) for line in path.read_text().splitlines() if line.startswith("{"))
    return [e for e in lines if e.get("event") == "rpc" and e["method"].endswith(f"/{method}")]


def pay_all(payers, amounts) -> list:
    """Every payer pays its amount at the same instant; each answer, or the error it got."""
    start, answers = threading.Barrier(len(payers)), [None] * len(payers)

    def one(i: int) -> None:
        start.wait()
        try:
            answers[i] = payers[i].pay("BankB", "recipient123", amounts[i], str(uuid.uuid4()))
        except PaykitError as err:
            answers[i] = err

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(payers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(SETTLE_S)
    return answers


def test_concurrent_payments_share_batches_and_each_leg_gets_its_own_vote(make_cluster):
    cluster = make_cluster()
    payers = [new_payer(cluster) for _ in range(PAYERS)]
    money = total_money(cluster)
    # Every third payer asks for more than it has: its leg votes NO inside a shared batch.
    amounts = [OPENING_MINOR + 1 if i % 3 == 0 else 700 for i in range(PAYERS)]
    answers = pay_all(payers, amounts)
    want = [
        pb.PAYMENT_STATUS_FAILED if i % 3 == 0 else pb.PAYMENT_STATUS_SUCCEEDED
        for i in range(PAYERS)
    ]
    assert [a.status for a in answers] == want
    assert all(a.failure_reason == "INSUFFICIENT_FUNDS" for a in answers[::3])
    wait_until(lambda: check_invariants(cluster).ok, SETTLE_S, what="every decision delivered")
    assert total_money(cluster) == money
    # The legs really travelled together: each payment has a Prepare and a decision at BankA,
    # in fewer calls than legs (a batch of one goes as the unary call), some with several.
    sizes = [call["legs"] for call in bank_calls(cluster, "BankA", "Exchange")]
    alone = sum(len(bank_calls(cluster, "BankA", m)) for m in ("Prepare", "Commit", "Abort"))
    assert sum(sizes) + alone == 2 * PAYERS and max(sizes) > 1


def test_with_batching_off_each_leg_is_its_own_call(make_cluster):
    cluster = make_cluster(batching=False)
    payers = [new_payer(cluster) for _ in range(3)]
    answers = pay_all(payers, [500, 500, 500])
    assert {a.status for a in answers} == {pb.PAYMENT_STATUS_SUCCEEDED}
    assert len(bank_calls(cluster, "BankA", "Prepare")) == 3
    assert not bank_calls(cluster, "BankA", "Exchange")
    wait_until(lambda: check_invariants(cluster).ok, SETTLE_S, what="every decision delivered")


def test_a_crash_inside_a_prepare_batch_leaves_every_leg_prepared_or_none(make_cluster):
    cluster = make_cluster(failpoints=True, prepare_timeout_s=4.0)
    payers = [new_payer(cluster) for _ in range(3)]
    money = total_money(cluster)
    # BankA hangs with the first payment's leg in flight, so the next two legs wait at the
    # gateway and go together, as one batch, when it answers. That batch crashes BankA midway.
    cluster.pause("BankA")
    answers: list = [None] * 3
    first = threading.Thread(target=lambda: answers.__setitem__(0, pay_all(payers[:1], [100])[0]))
    first.start()
    time.sleep(0.5)  # the first leg is in flight to the paused bank
    rest = threading.Thread(
        target=lambda: answers.__setitem__(slice(1, 3), pay_all(payers[1:], [200, 300]))
    )
    rest.start()
    time.sleep(0.5)  # the next two legs wait for the first batch to return
    cluster.arm("BankA", "bank.batch_between_legs")
    cluster.resume("BankA")
    cluster.wait_dead("BankA")
    # Dead midway through the second batch's transaction: neither of its legs is at the bank.
    second = {
        p.payment_id
        for p in read_gateway(cluster.gateway_db())
        if p.username in {payers[1].username, payers[2].username}
    }
    states = read_bank("BankA", cluster.bank_db("BankA")).txn_states
    assert len(second) == 2 and not any(f"{pid}.debit" in states for pid in second)
    cluster.restart("BankA")
    first.join(SETTLE_S)
    rest.join(SETTLE_S)
    # The first payment's YES was durable before the crash: it commits; the other two abort.
    assert answers[0].status == pb.PAYMENT_STATUS_SUCCEEDED
    assert all(
        isinstance(a, PaykitError) or a.status == pb.PAYMENT_STATUS_FAILED for a in answers[1:]
    )
    wait_until(lambda: check_invariants(cluster).ok, SETTLE_S, what="recovery after the crash")
    assert total_money(cluster) == money
    assert [p.balance().balance_minor for p in payers] == [
        OPENING_MINOR - 100,
        OPENING_MINOR,
        OPENING_MINOR,
    ]
