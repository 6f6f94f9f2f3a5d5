"""Crash at every named point of the 2PC path, restart, and check that nothing was lost or doubled.

Harness (paykit.cluster.LocalCluster, one cluster shared_cluster by the file, failpoints on):
    arm(server, failpoint)  the server SIGKILLs itself when it reaches that point (one shot)
    wait_dead(server)       the crash really happened there
    restart(server)         same port, same database: recovery runs before it serves
    pause/resume(server)    SIGSTOP / SIGCONT: a server that hangs without dying
Every test starts from a healed cluster with nothing in doubt, and leaves one behind.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from conftest import OPENING_MINOR, leg_states, new_payer

from paykit import LocalCluster
from paykit.client.session import GatewaySession
from paykit.core.errors import InProgress, PaykitError, Unavailable
from paykit.core.failpoints import FAILPOINTS
from paykit.lab.check import check_invariants, read_bank, read_gateway, total_money
from paykit.lab.lessons import wait_until
from paykit.rpc.channels import secure_channel
from paykit.rpc.pki import bank_cn, ensure_identity
from paykit.v1 import payment_pb2 as pb
from paykit.v1 import payment_pb2_grpc as pb_grpc

AMOUNT_MINOR = 10_000
FINAL = {pb.PAYMENT_STATUS_SUCCEEDED: "succeeded", pb.PAYMENT_STATUS_FAILED: "failed"}
SETTLE_TIMEOUT_S = 20.0

# failpoint, the server that crashes there, and the payment's final state (None: either,
# depending on whether the YES reply got out before the process died).
CASES = [
    ("bank.after_hold_before_commit", "BankA", "failed"),  # the hold rolled back with the process
    # YES on disk, never heard: timeout/abort
    ("bank.after_vote_yes_before_reply", "BankA", "failed"),
    ("bank.after_reply_yes", "BankB", None),
    ("bank.after_commit_before_ack", "BankA", "succeeded"),  # the resent Commit is a no-op
    ("gateway.before_decision", "gateway", "failed"),  # recovery aborts the undecided payment
    ("gateway.decision_write", "gateway", "failed"),
    ("gateway.after_commit_logged", "gateway", "succeeded"),  # the logged COMMIT is redriven
    ("gateway.between_commits", "gateway", "succeeded"),
    ("gateway.before_reply", "gateway", "succeeded"),
]


CLUSTER = {"failpoints": True, "prepare_timeout_s": 3.0}


@pytest.fixture
def fc(shared_cluster: LocalCluster) -> LocalCluster:
    """The shared cluster, healed: a failed test must not leave the next one a crashed server."""
    for name, proc in shared_cluster.procs.items():
        if proc.running:
            shared_cluster.disarm(name)
            if proc.paused:
                shared_cluster.resume(name)
        else:
            shared_cluster.disarm(name)
            shared_cluster.restart(name)
    wait_settled(shared_cluster)
    return shared_cluster


def wait_settled(cluster: LocalCluster, timeout_s: float = SETTLE_TIMEOUT_S) -> None:
    """Polls every invariant until all hold (nothing in doubt, every decision delivered)."""
    deadline = time.monotonic() + timeout_s
    while True:
        report = check_invariants(cluster)
        if report.ok:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not settled {timeout_s} s after recovery:\n{report}")
        time.sleep(0.1)


def pay(payer: GatewaySession, key: str):
    return payer.pay("BankB", "recipient123", AMOUNT_MINOR, key)


def retry(payer: GatewaySession, key: str, timeout_s: float = 10.0):
    """What a client does: resend with the same key while the outcome is unknown."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return pay(payer, key)
        except (Unavailable, InProgress):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def payment_for(cluster: LocalCluster, key: str):
    found = [p for p in read_gateway(cluster.gateway_db()) if p.idempotency_key == key]
    assert len(found) <= 1, f"key {key} gave {len(found)} payments"
    return found[0] if found else None


def test_every_failpoint_has_a_crash_test():
    # The batch failpoint needs several legs in one batch: tests/scenarios/test_batching.py.
    assert {c[0] for c in CASES} | {"bank.batch_between_legs"} == set(FAILPOINTS)


@pytest.mark.parametrize(("failpoint", "server", "final"), CASES, ids=[c[0] for c in CASES])
def test_crash_at_failpoint_then_restart_settles_exactly_once(fc, failpoint, server, final):
    payer = new_payer(fc)
    money_before = total_money(fc)
    key = str(uuid.uuid4())
    fc.arm(server, failpoint, "crash")
    # The first send: it may be answered, or the client may lose the gateway mid-call.
    try:
        first = pay(payer, key)
    except PaykitError as err:
        first = err
    fc.wait_dead(server)  # the crash happened at that very point
    fc.restart(server)  # same database: recovery, redrive and the in-doubt resolver take over
    wait_settled(fc)

    # The client retries with the same key and learns the final answer (never "pending").
    retried = retry(payer, key)
    assert retried.status in FINAL
    if final is not None:
        assert FINAL[retried.status] == final, retried
    if not isinstance(first, PaykitError):  # an answer the client already had is never contradicted
        assert (first.payment_id, first.status) == (retried.payment_id, retried.status)
    # Exactly one payment for the key, in the same final state at both banks.
    record = payment_for(fc, key)
    assert record.payment_id == retried.payment_id and record.settled
    succeeded = retried.status == pb.PAYMENT_STATUS_SUCCEEDED
    want = "committed" if succeeded else "aborted"
    assert leg_states(fc, record.payment_id) == (want, want)
    # Money conserved exactly; the payer paid once or not at all; no hold left.
    assert total_money(fc) == money_before
    balance = payer.balance()
    assert balance.balance_minor == OPENING_MINOR - (AMOUNT_MINOR if succeeded else 0)
    assert balance.held_minor == 0
    # And a retry after settling replays the same answer again.
    assert pay(payer, key) == retried


def test_a_decision_the_gateway_could_not_write_is_aborted_without_a_restart(fc):
    payer = new_payer(fc)
    money_before = total_money(fc)
    key = str(uuid.uuid4())
    # Both banks vote YES, then writing the decision fails (a disk error); the gateway lives on.
    fc.arm("gateway", "gateway.decision_write", "error")
    with pytest.raises(PaykitError) as failed:
        pay(payer, key)
    assert failed.value.reason == "INTERNAL", failed.value
    assert fc.procs["gateway"].running
    # The key is in progress until the gateway's sweeper aborts the stranded payment; then the
    # retry gets that answer, and the banks release their holds, all without a restart.
    final = retry(payer, key)
    assert FINAL[final.status] == "failed" and final.failure_reason == "DECISION_NOT_LOGGED", final
    wait_settled(fc)
    assert total_money(fc) == money_before
    balance = payer.balance()
    assert (balance.balance_minor, balance.held_minor) == (OPENING_MINOR, 0)
    assert pay(payer, key) == final


@pytest.mark.parametrize("action", ["pause", "crash"])
def test_a_bank_that_voted_yes_keeps_its_hold_until_the_gateway_decides(fc, action):
    payer = new_payer(fc)
    money_before = total_money(fc)
    key = str(uuid.uuid4())
    # The gateway stops (hangs, or dies) right after both banks voted YES, before deciding.
    fc.arm("gateway", "gateway.before_decision", action)
    outcome: list = []
    paying = threading.Thread(target=lambda: outcome.append(_pay_or_error(payer, key)), daemon=True)
    paying.start()
    record = wait_until(lambda: payment_for(fc, key), 10.0, what="the payment row")
    wait_until(
        lambda: leg_states(fc, record.payment_id) == ("prepared", "prepared"),
        10.0,
        what="both YES votes",
    )
    if action == "crash":
        fc.wait_dead("gateway")
    # The payer's bank restarts too: its YES is on disk, so it must keep the hold across it.
    fc.kill("BankA")
    fc.restart("BankA")
    time.sleep(2.5)  # > the banks' ask-after (1 s): they have asked GetDecision and heard nothing
    assert leg_states(fc, record.payment_id) == ("prepared", "prepared")
    held = read_bank("BankA", fc.bank_db("BankA")).held[f"{payer.username}-acct"]
    assert held == AMOUNT_MINOR  # never aborted on its own
    # The gateway comes back: paused, it goes on and commits; dead, recovery aborts.
    if action == "pause":
        fc.resume("gateway")
    else:
        fc.restart("gateway")
    paying.join(timeout=30)
    wait_settled(fc)
    final = retry(payer, key)
    assert FINAL[final.status] == ("succeeded" if action == "pause" else "failed")
    if action == "crash":
        assert final.failure_reason == "GATEWAY_RESTARTED"
    assert total_money(fc) == money_before
    assert payer.balance().held_minor == 0


def test_a_bank_asking_while_votes_are_collected_hears_pending_not_abort(fc):
    payer = new_payer(fc)
    money_before = total_money(fc)
    key = str(uuid.uuid4())
    tls = ensure_identity(fc.pki_dir, bank_cn("BankA"))
    with secure_channel(fc.gateway_address, tls) as channel:
        coordinator = pb_grpc.CoordinatorStub(channel)
        # Presumed abort: a transaction the coordinator never heard of is aborted.
        unknown = coordinator.GetDecision(
            pb.GetDecisionRequest(txn_id=f"{uuid.uuid4().hex}.debit"), timeout=5
        )
        assert unknown.decision == pb.DECISION_ABORT
        fc.pause("BankB")  # the payee's bank hangs: the gateway waits for its vote (3 s timeout)
        try:
            outcome: list = []
            paying = threading.Thread(
                target=lambda: outcome.append(_pay_or_error(payer, key)), daemon=True
            )
            paying.start()
            record = wait_until(lambda: payment_for(fc, key), 10.0, what="the payment row")
            wait_until(
                lambda: leg_states(fc, record.payment_id)[0] == "prepared", 10.0, what="BankA's YES"
            )
            # BankA voted YES and asks: the gateway is still collecting votes, so PENDING.
            asked = coordinator.GetDecision(
                pb.GetDecisionRequest(txn_id=f"{record.payment_id}.debit"), timeout=5
            )
            assert asked.decision == pb.DECISION_PENDING
            assert payment_for(fc, key).decision is None
            paying.join(timeout=30)
        finally:
            fc.resume("BankB")
        # The timeout decided ABORT; from now on that is the answer, to everyone.
        assert (
            outcome
            and outcome[0].status == pb.PAYMENT_STATUS_FAILED
            and outcome[0].failure_reason == "BANK_TIMEOUT"
        )
        asked = coordinator.GetDecision(
            pb.GetDecisionRequest(txn_id=f"{record.payment_id}.debit"), timeout=5
        )
        assert asked.decision == pb.DECISION_ABORT
    wait_settled(fc)
    assert total_money(fc) == money_before
    assert payer.balance().balance_minor == OPENING_MINOR


def _pay_or_error(payer: GatewaySession, key: str):
    try:
        return pay(payer, key)
    except PaykitError as err:
        return err
