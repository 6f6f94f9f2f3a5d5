"""paykit.lab.network (lesson 8): a payment through a network fault on a real cluster, what was
in doubt and held while it lasted, and the count of a bank's unanswered questions."""

from __future__ import annotations

import pytest
from conftest import signed_in

from paykit.core.errors import InvalidInput
from paykit.lab.lessons import in_doubt
from paykit.lab.network import fault_trial, leg_state, links_table, unanswered_questions

CLUSTER = {"prepare_timeout_s": 0.5}


@pytest.fixture(scope="module")
def ada(shared_cluster, tmp_path_factory):
    client = signed_in(
        shared_cluster, "ada", "ada-acct", outbox_dir=tmp_path_factory.mktemp("outbox")
    )
    assert client.pay("BankB", "recipient123", "1").succeeded  # opens every connection
    yield client
    client.close()


def test_the_links_table_has_a_row_per_link_with_its_traffic(shared_cluster, ada):
    links = links_table(shared_cluster)
    assert set(links.link) == {
        "client->gateway",
        "gateway->BankA",
        "gateway->BankB",
        "BankA->gateway",
        "BankB->gateway",
    }
    assert (links.state == "ok").all()
    assert links.set_index("link").loc["gateway->BankB", "request_bytes"] > 0


def test_the_payer_bank_cut_off_after_its_yes_holds_the_money_until_the_heal(shared_cluster, ada):
    before = ada.balance().balance_minor
    trial = fault_trial(shared_cluster, ada, ("gateway", "BankA"), after_yes=True, look_after_s=0.6)
    assert (trial.told_first.status, trial.told_first.failure_reason) == ("failed", "BANK_TIMEOUT")
    assert trial.in_doubt_during == [("BankA", f"{trial.payment_id}.debit")]
    assert trial.held_during_minor == 1_000
    assert trial.told_finally.settled and in_doubt(shared_cluster) == []
    assert leg_state(shared_cluster, "BankA", f"{trial.payment_id}.debit") == "aborted"
    assert ada.balance().balance_minor == before  # nothing moved
    # it asked in vain while cut off (its questions went over the partitioned link)
    assert unanswered_questions(shared_cluster, "BankA", f"{trial.payment_id}.debit") >= 1
    assert "held during the fault" in trial._repr_html_()


def test_lost_replies_alone_let_the_abort_through(shared_cluster, ada):
    trial = fault_trial(shared_cluster, ada, ("gateway", "BankA"), "replies", look_after_s=0.3)
    assert (trial.told_first.status, trial.told_first.failure_reason) == ("failed", "BANK_TIMEOUT")
    assert trial.in_doubt_during == [] and trial.held_during_minor == 0  # the Abort arrived


def test_a_lost_request_is_queued_and_sent_once_after_the_heal(shared_cluster, ada):
    before = ada.balance().balance_minor
    ada.timeout_s = 1.0
    try:
        trial = fault_trial(shared_cluster, ada, ("client", "gateway"), "requests", look_after_s=0)
    finally:
        ada.timeout_s = 5.0
    assert trial.told_first.status == "queued" and trial.payment_id
    assert trial.told_finally.status == "succeeded"
    assert trial.in_doubt_during == [] and trial.held_during_minor == 0
    assert ada.balance().balance_minor == before - 1_000  # paid once
    assert all(row["state"] == "ok" for row in shared_cluster.links())  # healed


def test_a_bad_drop_is_refused_and_breaks_nothing(shared_cluster, ada):
    with pytest.raises(InvalidInput, match="drop must be one of"):
        fault_trial(shared_cluster, ada, ("gateway", "BankB"), "sideways")
    assert all(row["state"] == "ok" for row in shared_cluster.links())
    with pytest.raises(InvalidInput, match="needs a bank"):
        fault_trial(shared_cluster, ada, ("client", "gateway"), after_yes=True)
    assert all(row["state"] == "ok" for row in shared_cluster.links())
    assert leg_state(shared_cluster, "BankB", "no-such.credit") is None
