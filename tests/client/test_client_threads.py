"""PaymentClient under real threads: one send at a time, interrupts, listeners that call back, close

Each test is a defect a review found, with real servers: a reader of completions() stayed
blocked after close(); two concurrent pay() calls were both in flight and changed the drainer's
state at once; an interrupted pay() left its payment `sending` and the queue stuck; a listener
that paid again deadlocked the client; a listener that closed the client raced with the outbox.
"""

from __future__ import annotations

import logging
import threading
import time

import grpc
import pytest
from conftest import signed_in

from paykit.client import outbox as ob
from paykit.core.errors import OutboxBusy
from paykit.lab.check import check_invariants, total_money
from paykit.lab.lessons import wait_until
from paykit.v1 import payment_pb2 as pb

SLOW_PAY_S = 0.3  # how long the counting interceptor holds each Pay, so an overlap would show
DEADLINE_S = 15.0


class PayInterceptor(grpc.UnaryUnaryClientInterceptor):
    """Counts Pay calls in flight at once; can hold each one, or interrupt one (Ctrl+C) before
    or after it is sent."""

    def __init__(self, *, hold_s: float = 0.0, interrupt: str = "") -> None:
        self.hold_s, self.interrupt = hold_s, interrupt  # interrupt: "", "before" or "after"
        self.lock = threading.Lock()
        self.in_flight = self.most = self.sent = 0

    def intercept_unary_unary(self, continuation, details, request):
        if not details.method.endswith("/Pay"):
            return continuation(details, request)
        if self.interrupt == "before":
            self.interrupt = ""
            raise KeyboardInterrupt
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        try:
            time.sleep(self.hold_s)
            outcome = continuation(details, request)
            outcome.result()  # the answer is back: the gateway has run it
            self.sent += 1
        finally:
            with self.lock:
                self.in_flight -= 1
        if self.interrupt == "after":
            self.interrupt = ""
            raise KeyboardInterrupt
        return outcome


def client_with(cluster, name: str, interceptor: PayInterceptor, tmp_path):
    signed_in(cluster, name, f"{name}-acct").close()
    client = cluster.client(interceptors=(interceptor,), outbox_dir=tmp_path / name)
    client.authenticate(name, "password123")
    return client


def test_concurrent_pays_are_sent_one_at_a_time(cluster, tmp_path):
    counter = PayInterceptor(hold_s=SLOW_PAY_S)
    ada = client_with(cluster, "ada", counter, tmp_path)
    money, start, results = total_money(cluster), threading.Barrier(3), []

    def pay() -> None:
        start.wait()
        results.append(ada.pay("BankB", "recipient123", "1"))

    threads = [threading.Thread(target=pay) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE_S)
    # One send slot per client: the three payments left one after the other, in order.
    assert counter.most == 1 and counter.sent == 3
    assert [p.status for p in results] == ["succeeded"] * 3
    assert ada.balance().balance_minor == 100_000 - 300 and total_money(cluster) == money
    ada.close()


@pytest.mark.parametrize("when", ["before", "after"])
def test_an_interrupted_pay_is_sent_by_the_drainer_exactly_once(cluster, tmp_path, when):
    # Pressing "Interrupt kernel" during pay(): before the request left, or after the gateway
    # ran it but before the answer was read. Either way the outbox resends it with its key.
    ada = client_with(cluster, f"int{when}", PayInterceptor(interrupt=when), tmp_path)
    with pytest.raises(KeyboardInterrupt):
        ada.pay("BankB", "recipient123", "2.50")
    ended = next(ada.completions(timeout_s=DEADLINE_S))
    assert ended.succeeded and ada.pending_count() == 0
    assert ada.balance().balance_minor == 100_000 - 250  # paid once, not zero times, not twice
    check_invariants(cluster).assert_ok()
    ada.close()


def test_close_wakes_a_reader_blocked_in_completions(cluster, tmp_path):
    ada = client_with(cluster, "reader", PayInterceptor(), tmp_path)
    ada.pay("BankB", "recipient123", "1")  # opens the outbox and its drainer
    read: list = []
    reader = threading.Thread(target=lambda: read.extend(ada.completions()))  # no timeout
    reader.start()
    time.sleep(0.2)  # let it block
    ada.close()
    reader.join(2.0)
    assert not reader.is_alive() and read == []


def test_a_listener_may_pay_again_without_deadlocking_the_client(cluster, tmp_path):
    signed_in(cluster, "bea", "bea-acct").close()
    # A payment that ended while its client was away: finished but not yet reported.
    path = ob.outbox_path(tmp_path / "bea", cluster.gateway_address, "bea")
    box = ob.Outbox(path)
    added = box.add("BankB", "recipient123", 100)
    answer = pb.Payment(payment_id="p0", status=pb.PAYMENT_STATUS_SUCCEEDED, amount_minor=100)
    box.finish(
        added.entry.seq,
        ob.Attempt(
            ob.DONE, status=ob.SUCCEEDED, payment_id="p0", payment=answer.SerializeToString()
        ),
        reported=False,
    )
    box.close()
    bea = cluster.client(outbox_dir=tmp_path / "bea")
    paid = []
    bea.on_complete(lambda p: paid.append(bea.pay("BankB", "recipient123", "3")))
    signing_in = threading.Thread(target=bea.authenticate, args=("bea", "password123"))
    signing_in.start()
    signing_in.join(DEADLINE_S)
    assert not signing_in.is_alive(), "authenticate() is stuck behind its own listener"
    wait_until(lambda: paid, DEADLINE_S, what="the listener's payment")
    assert paid[0].succeeded and bea.balance().balance_minor == 100_000 - 300
    bea.close()


def test_a_listener_may_close_the_client(cluster, tmp_path, caplog):
    ada = client_with(cluster, "closer", PayInterceptor(), tmp_path)
    told = []

    def finish(payment) -> None:
        told.append(payment)
        ada.close()  # a script that is done once its queued payment has ended

    ada.on_complete(finish)
    cluster.stop_server("gateway")
    assert ada.pay("BankB", "recipient123", "4").queued
    with caplog.at_level(logging.ERROR, logger="paykit"):
        cluster.restart("gateway")
        wait_until(lambda: told, DEADLINE_S, what="the queued payment's outcome")
        time.sleep(0.5)  # whatever close() set off has run
    assert told[0].succeeded and not caplog.records, [r.getMessage() for r in caplog.records]
    # The outbox was closed and its lock let go: another process may open it now.
    ob.Outbox(ob.outbox_path(tmp_path / "closer", cluster.gateway_address, "closer")).close()


def test_an_outbox_is_never_written_after_close(tmp_path):
    box = ob.Outbox(tmp_path / "o.db")
    added = box.add("BankB", "recipient123", 100)
    box.close()
    assert box.mark_reported(added.entry.seq) is False  # a late notifier: a no-op, not a reopen
    other = ob.Outbox(tmp_path / "o.db")  # the lock is free, and the row is as close() left it
    with pytest.raises(OutboxBusy):
        ob.Outbox(tmp_path / "o.db")
    assert other.pending()[0].seq == added.entry.seq
    other.close()
