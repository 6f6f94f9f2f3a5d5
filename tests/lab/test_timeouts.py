"""paykit.lab.timeouts (lesson 9): a sweep of the prepare timeout on a real cluster with a slow
link to one bank and another bank cut off, and its chart."""

from __future__ import annotations

import uuid

import matplotlib
import pandas as pd
import pytest

from paykit.core.errors import InvalidInput
from paykit.lab.lessons import wait_recovered
from paykit.lab.timeouts import (
    plot_sweep,
    shortest_clean_timeout,
    sweep_prepare_timeout,
    timeout_payers,
)

matplotlib.use("Agg")
CLUSTER = {"banks": ("BankA", "BankB", "BankC")}


@pytest.fixture(scope="module")
def sweep(shared_cluster):
    shop = shared_cluster.session()
    shop.register("shop", "password123", "recipient123", 0, "BankC")
    payers = timeout_payers(shared_cluster, 4)
    try:
        # 30 ms each way with no jitter: a vote's round trip is over 60 ms, far under 0.6 s
        yield sweep_prepare_timeout(shared_cluster, payers, [0.03, 0.6], delay_ms=30)
    finally:
        for payer in payers:
            payer.session.close()
        shop.close()


def test_too_short_aborts_healthy_payments_and_long_enough_aborts_none(shared_cluster, sweep):
    assert list(sweep.timeout_s) == [0.03, 0.6]
    assert list(sweep.payments) == [3, 3]  # the first payer pays the cut-off bank
    assert list(sweep.aborted) == [3, 0]
    assert shortest_clean_timeout(sweep) == 0.6
    assert shared_cluster.prepare_timeout_s == 0.6  # left on the last timeout
    assert all(row["state"] == "ok" for row in shared_cluster.links())  # healed


def test_the_money_is_held_for_about_the_timeout(shared_cluster, sweep):
    short, long = sweep.held_s
    assert 0.0 < short < 0.3 and 0.55 <= long < 1.2
    payer = shared_cluster.session()
    payer.register("after", "password123", "after-acct", 100_000, "BankA")
    payer.authenticate("after", "password123")
    assert payer.pay("BankC", "recipient123", 100, str(uuid.uuid4())).payment_id  # healed
    payer.close()
    assert wait_recovered(shared_cluster).ok


def test_the_chart_draws_both_costs():
    sweep = pd.DataFrame(
        {"timeout_s": [0.1, 0.2, 0.4], "aborted_share": [1.0, 0.5, 0.0], "held_s": [0.1, 0.2, 0.4]}
    )
    ax = plot_sweep(sweep)
    assert "prepare timeout" in ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    assert [list(line.get_ydata()) for line in ax.get_lines()] == [[100.0, 50.0, 0.0]]
    assert len(ax.get_legend().get_texts()) == 2


def test_shortest_clean_timeout_is_nan_when_every_timeout_aborted_some():
    sweep = pd.DataFrame({"timeout_s": [0.1, 0.2], "aborted": [3, 1]})
    assert pd.isna(shortest_clean_timeout(sweep))


def test_timeouts_out_of_range_are_refused_before_anything_changes(shared_cluster):
    before = shared_cluster.prepare_timeout_s
    with pytest.raises(InvalidInput, match="timeouts must be"):
        sweep_prepare_timeout(shared_cluster, [], [0.1, 60.0], delay_ms=10)
    with pytest.raises(InvalidInput, match="timeouts must be"):
        sweep_prepare_timeout(shared_cluster, [], [], delay_ms=10)
    assert shared_cluster.prepare_timeout_s == before
