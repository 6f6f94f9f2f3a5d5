"""paykit.lab.diagram: sequence diagrams drawn from the real logs of a real cluster, and the
blocking window watched while the coordinator is down (paykit.lab.blocking and its chart).

One cluster with failpoints for the file; each test makes its own payment and reads the
steps back: the arrows in order, what each carried, lost messages, crashes and restarts."""

from __future__ import annotations

import matplotlib
import pandas as pd
import pytest
from matplotlib.text import Annotation

from paykit.lab import charts
from paykit.lab.blocking import HoldWatch, blocking_window_s, down_spans, gateway_down_s
from paykit.lab.diagram import draw_steps, sequence_diagram, sequence_steps
from paykit.lab.lessons import ask_decision, in_background, wait_recovered, wait_until

matplotlib.use("Agg")
CLUSTER = {"failpoints": True, "prepare_timeout_s": 1.5}
_users = iter(range(1, 1000))


@pytest.fixture
def ada(shared_cluster):
    n = next(_users)
    client = shared_cluster.client()
    client.register(f"ada{n}", "password123", f"ada{n}-acct", "1000", "BankA")
    client.authenticate(f"ada{n}", "password123")
    yield client
    client.close()
    wait_recovered(shared_cluster)


def arrows(steps: pd.DataFrame) -> list[tuple[str, str, str, str]]:
    return [(r.kind, r.src, r.dst, r.label) for r in steps.itertuples()]


def test_a_payment_is_pay_prepare_votes_decision_commits_reply(shared_cluster, ada):
    payment = ada.pay("BankB", "recipient123", "200")
    steps = sequence_steps(shared_cluster, payment.payment_id)
    assert steps.attrs["lanes"] == ["client", "gateway", "BankA", "BankB"]
    got = arrows(steps)
    assert got[0] == ("message", "client", "gateway", "Pay #1 200.00")
    assert got[1] == ("write", "gateway", "gateway", "log payment, undecided")
    # the two Prepares and the two votes, in whichever order they came; the decision after
    middle = set(got[2:6])
    assert middle == {
        ("message", "gateway", "BankA", "Prepare debit 200.00"),
        ("message", "gateway", "BankB", "Prepare credit 200.00"),
        ("message", "BankA", "gateway", "YES"),
        ("message", "BankB", "gateway", "YES"),
    }
    assert got[6] == ("write", "gateway", "gateway", "log COMMIT")
    assert got[7:11] == [
        ("message", "gateway", "BankA", "Commit"),
        ("message", "BankA", "gateway", "ack"),
        ("message", "gateway", "BankB", "Commit"),
        ("message", "BankB", "gateway", "ack"),
    ]
    assert got[11] == ("message", "gateway", "client", "succeeded")
    assert steps.t_ms.is_monotonic_increasing and steps.t_ms.iloc[0] == 0
    ax = draw_steps(steps)
    assert ax.get_title(loc="left") == f"Payment {payment.payment_id[:8]}: succeeded"
    # one arrow per message, and a label for each step
    drawn = [t for t in ax.texts if isinstance(t, Annotation)]
    assert len(drawn) == sum(steps.kind.isin(["message", "lost"])) == 10
    labels = {t.get_text() for t in ax.texts}
    assert set(steps.label) <= labels


def test_a_declined_payment_shows_the_no_vote_and_the_abort(shared_cluster, ada):
    payment = ada.pay("BankB", "recipient123", "5000")
    got = arrows(sequence_steps(shared_cluster, payment.payment_id))
    assert ("message", "BankA", "gateway", "NO (INSUFFICIENT_FUNDS)") in got
    assert ("write", "gateway", "gateway", "log ABORT (INSUFFICIENT_FUNDS)") in got
    assert got[-1] == ("message", "gateway", "client", "failed: INSUFFICIENT_FUNDS")


def test_a_gateway_crash_shows_the_lost_reply_the_questions_and_the_recovery(shared_cluster, ada):
    notices = []
    ada.on_complete(notices.append)
    watch = HoldWatch(shared_cluster).start()
    shared_cluster.arm("gateway", "gateway.before_decision")
    queued = ada.pay("BankB", "recipient123", "100")
    shared_cluster.wait_dead("gateway")
    # both banks voted YES and hold on; a bank asking hears nothing until the restart
    wait_until(lambda: len(watch.rows) > 30, 10, what="samples while the gateway is down")
    assert ask_decision(shared_cluster, "whatever.debit").startswith("no answer")
    shared_cluster.restart("gateway")
    wait_until(lambda: notices, 20, what="the outbox's resend")
    wait_recovered(shared_cluster)
    samples = watch.stop()
    payment_id = notices[0].payment_id
    assert queued.queued and notices[0].failure_reason == "GATEWAY_RESTARTED"
    got = arrows(sequence_steps(shared_cluster, payment_id))
    kinds = [k for k, *_ in got]
    crash, restart = kinds.index("crash"), kinds.index("restart")
    assert got[crash][1] == "gateway" and crash < restart
    assert ("lost", "gateway", "client", "no reply (UNAVAILABLE)") in got[crash:]
    assert any(k == "lost" and s == "BankA" and "GetDecision" in lab for k, s, _, lab in got)
    assert ("write", "gateway", "gateway", "log ABORT (GATEWAY_RESTARTED)") in got[restart:]
    stored = ("message", "gateway", "client", "failed: GATEWAY_RESTARTED (stored answer)")
    assert stored in got[restart:]
    # the blocking window: money held from the YES until after the restart
    window_s, down_s = blocking_window_s(samples), gateway_down_s(samples)
    assert down_s > 0.2 and window_s >= down_s and samples.iloc[-1]["BankA_held_minor"] == 0
    ax = charts.blocking_window(samples)
    assert "Blocking window" in ax.get_title() and ax.get_xlabel() and ax.get_ylabel()


def test_a_bank_asking_while_votes_are_collected_hears_pending(shared_cluster, ada):
    shared_cluster.arm("BankB", "bank.after_vote_yes_before_reply", "pause")
    pending = in_background(ada.pay, "BankB", "recipient123", "10")
    # BankA voted YES at once; it asks after a second and hears PENDING until the timeout
    payment = pending.result(timeout=20)
    shared_cluster.resume("BankB")
    assert payment.failure_reason == "BANK_TIMEOUT"
    wait_recovered(shared_cluster)
    got = arrows(sequence_steps(shared_cluster, payment.payment_id))
    assert ("lost", "BankB", "gateway", "YES") in got
    assert ("note", "gateway", "gateway", "BankB: no vote in time") in got
    assert ("message", "gateway", "BankA", "PENDING") in got
    assert ("message", "gateway", "BankA", "ABORT") in got or (
        "message",
        "gateway",
        "BankA",
        "Abort",
    ) in got


def test_down_spans_and_the_window_from_samples_alone():
    samples = pd.DataFrame(
        {
            "t_s": [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0],
            "gateway": ["up", "down", "down", "up", "up", "up", "up"],
            "BankA_held_minor": [0, 100, 100, 100, 100, 0, 0],
            "BankA_prepared": [0, 1, 1, 1, 1, 0, 0],
        }
    )
    assert down_spans(samples) == [(0.5, 1.5)] and gateway_down_s(samples) == 1.0
    assert blocking_window_s(samples) == 2.0
    assert blocking_window_s(samples.assign(BankA_prepared=0)) == 0.0


def test_sequence_diagram_takes_a_log_folder_too(shared_cluster, ada):
    payment = ada.pay("BankB", "recipient123", "1")
    ax = sequence_diagram(shared_cluster.data_dir, payment.payment_id, title="one payment")
    assert ax.get_title(loc="left") == "one payment"


def test_an_unknown_payment_draws_an_empty_diagram(shared_cluster):
    steps = sequence_steps(shared_cluster, "0" * 32)
    assert steps.empty and steps.attrs["outcome"] == "undecided"
    assert draw_steps(steps).get_title(loc="left").endswith("undecided")
