"""Faults from the foundation issue: a paused bank, many concurrent payers, a bank killed with -9,
and a registration cut short after the bank opened the account."""

import threading
import time

import pytest
from conftest import PASSWORD, signed_in

from paykit.core.errors import AlreadyExists
from paykit.lab.check import check_invariants, read_bank, total_money
from paykit.lab.lessons import wait_until
from paykit.rpc.channels import secure_channel
from paykit.rpc.pki import GATEWAY_CN, bank_cn, ensure_identity
from paykit.v1 import payment_pb2 as pb
from paykit.v1 import payment_pb2_grpc as pb_grpc


def test_a_paused_payee_bank_times_out_the_payment_and_nothing_moves(make_cluster):
    cluster = make_cluster(prepare_timeout_s=1.0)
    alice = signed_in(cluster, "alice", "alice-acct", "100", "BankA")
    # the gateway's channel to BankB is up
    assert alice.pay("BankB", "recipient123", "1").status == "succeeded"
    money_before = total_money(cluster)
    cluster.pause("BankB")  # SIGSTOP: BankB hangs without dying, past --prepare-timeout-s
    try:
        started = time.monotonic()
        payment = alice.pay("BankB", "recipient123", "30")
        took_s = time.monotonic() - started
    finally:
        cluster.resume("BankB")
    # The coordinator gave up on the missing vote and aborted: nothing moved anywhere.
    assert payment.status == "failed" and payment.failure_reason == "BANK_TIMEOUT"
    assert took_s < 5, f"the timeout is 1 s, the payment took {took_s:.1f} s"
    assert alice.balance().balance_minor == 9900
    assert total_money(cluster) == money_before
    # After BankB resumes, the Abort reaches it (the late Prepare, if any, is aborted too) and
    # BankA's hold is released: nothing in doubt anywhere.
    wait_until(
        lambda: check_invariants(cluster).ok, 15.0, what="no holds and agreement after resume"
    )
    assert alice.balance().available_minor == 9900
    assert read_bank("BankB", cluster.bank_db("BankB")).balances["recipient123"] == 50100


def test_sixteen_threads_paying_from_one_account_never_overdraw_it(cluster):
    owner = signed_in(cluster, "olive", "olive-acct", "100", "BankA")
    money_before = total_money(cluster)
    # One signed-in client shared by 16 threads: a client's outbox belongs to one process and
    # user, and its channel carries concurrent calls (HTTP/2 streams), so all 16 are in flight.
    results, lock = [], threading.Lock()

    def payer():
        for _ in range(4):  # 16 threads x 4 payments x 7.00 = 448.00 wanted, 100.00 available
            p = owner.pay("BankB", "recipient123", "7")
            with lock:
                results.append(p)

    threads = [threading.Thread(target=payer) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    succeeded = [p for p in results if p.status == "succeeded"]
    failed = [p for p in results if p.status == "failed"]
    assert len(results) == 64
    assert len(succeeded) == 14  # floor(100 / 7): exactly as many as the money allows
    assert {p.failure_reason for p in failed} == {"INSUFFICIENT_FUNDS"}
    wait_until(lambda: check_invariants(cluster).ok, 15.0, what="invariants")
    assert owner.balance().balance_minor == 10000 - 14 * 700
    assert total_money(cluster) == money_before  # conserved exactly


def test_a_bank_killed_with_sigkill_keeps_every_balance_and_committed_payment(cluster):
    alice = signed_in(cluster, "alice", "alice-acct", "1000", "BankA")
    bob = signed_in(cluster, "bob", "bob-acct", "0", "BankB")
    paid = [alice.pay("BankB", "bob-acct", amount) for amount in ("1", "2.50", "300")]
    assert all(p.status == "succeeded" for p in paid)
    wait_until(lambda: check_invariants(cluster).ok, 15.0, what="settled")
    before = {b: read_bank(b, cluster.bank_db(b)) for b in cluster.bank_names}
    cluster.kill("BankA")  # power cut: no clean shutdown
    cluster.kill("BankB")
    cluster.restart("BankA")
    cluster.restart("BankB")
    for b in cluster.bank_names:
        after = read_bank(b, cluster.bank_db(b))
        assert after.balances == before[b].balances
        assert after.txn_states == before[b].txn_states
    assert alice.balance().balance_minor == 100000 - 30350
    assert bob.balance().balance_minor == 30350
    assert {p.payment_id for p in bob.search(status="succeeded")} == {p.payment_id for p in paid}
    check_invariants(cluster).assert_ok()
    # And it keeps working after the restart.
    assert alice.pay("BankB", "bob-acct", "1").status == "succeeded"


def test_a_registration_cut_short_after_the_bank_opened_the_account_completes_on_retry(cluster):
    # What the gateway leaves behind if it dies (or loses the reply) right after OpenAccount:
    # the account exists at the bank, opened for "carol", and the gateway has no user carol.
    as_gateway = pb_grpc.BankStub(
        secure_channel(
            cluster.bank_address("BankA"),
            ensure_identity(cluster.pki_dir, GATEWAY_CN),
            server_name=bank_cn("BankA"),
        )
    )
    as_gateway.OpenAccount(
        pb.OpenAccountRequest(
            account_id="carol-acct", opening_balance_minor=25_00, opened_for="carol"
        ),
        timeout=5,
    )
    money_before = total_money(cluster)
    # Somebody else cannot take that account over...
    with pytest.raises(AlreadyExists):
        cluster.client().register("mallory", PASSWORD, "carol-acct", "25", "BankA")
    # ...but carol registering again completes her registration, and no money appears twice.
    carol = cluster.client()
    carol.register("carol", PASSWORD, "carol-acct", "25", "BankA")
    carol.authenticate("carol", PASSWORD)
    assert carol.balance().balance_minor == 25_00
    assert total_money(cluster) == money_before
    check_invariants(cluster).assert_ok()
    # Registering a second time is refused as before: the user exists now.
    with pytest.raises(AlreadyExists):
        cluster.client().register("carol", PASSWORD, "carol-acct", "25", "BankA")
