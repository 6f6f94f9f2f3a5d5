"""paykit.lab.perf (lesson 14): a short payers curve on two real clusters, batching on and off,
the split of a payment's time from the logs, and the charts. Figures of speed are never
asserted (they belong to `paykit bench`); only what the run must show whatever the machine:
every payment succeeded, the phases add up, and batching sent fewer bank RPCs."""

from __future__ import annotations

import math

import matplotlib
import pandas as pd
import pytest

from paykit.core.errors import InvalidInput
from paykit.lab.logs import read_logs
from paykit.lab.perf import (
    PHASES,
    bank_rpcs_per_payment,
    curve_gateway_args,
    fsync_ms,
    payers_curve,
    plot_curve,
    plot_time_split,
    slowest_phase,
    speedup,
    time_split,
)

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from paykit import LocalCluster

    folder = tmp_path_factory.mktemp("perf")
    args = curve_gateway_args(8)
    on = LocalCluster(data_dir=folder / "on", relays=False, gateway_args=args).start()
    off = LocalCluster(
        data_dir=folder / "off", relays=False, batching=False, gateway_args=args
    ).start()
    try:
        clusters = {"batching on": on, "batching off": off}
        yield on, off, payers_curve(clusters, [1, 8], seconds=0.4)
    finally:
        on.stop()
        off.stop()


def test_the_curve_has_a_row_per_cluster_and_payers_and_no_errors(run):
    _, _, curve = run
    assert list(zip(curve.cluster, curve.payers, strict=True)) == [
        ("batching on", 1),
        ("batching off", 1),
        ("batching on", 8),
        ("batching off", 8),
    ]
    assert (curve.payments_per_s > 0).all()
    assert (curve.errors <= curve.payments_per_s * 0.4 * 0.05).all()  # a few, on a loaded machine
    assert (curve.until_s > curve.since_s).all()
    expected = curve.set_index(["cluster", "payers"]).payments_per_s
    assert speedup(curve, 8) == round(expected["batching on", 8] / expected["batching off", 8], 3)


def test_batching_shares_bank_rpcs_and_without_it_every_leg_goes_alone(run):
    on, off, curve = run
    rpcs = curve.set_index(["cluster", "payers"]).bank_rpcs_per_payment
    assert rpcs["batching off", 1] == rpcs["batching off", 8] == 4.0
    assert rpcs["batching on", 8] < 4.0
    assert bank_rpcs_per_payment(off) == 4.0  # the whole run, from the cluster's logs


def test_the_split_of_a_lone_payer_adds_up_to_what_its_client_saw(run):
    on, _, curve = run
    alone = curve[(curve.cluster == "batching on") & (curve.payers == 1)].iloc[0]
    split = time_split(read_logs(on), alone.since_s, alone.until_s)
    assert len(split) >= 5
    assert list(split.columns) == [*PHASES, "client and network", "total"]
    parts = split.drop(columns="total").sum(axis=1)
    assert ((parts - split.total).abs() < 0.01).all()
    assert (split.drop(columns=["client and network"]) > 0).all().all()
    assert slowest_phase(split) in split.columns
    ax = plot_time_split(split)
    assert ax.get_title() and ax.get_xlabel() and len(ax.patches) == len(split.columns) - 1


def test_the_curve_chart_has_a_line_per_cluster():
    curve = pd.DataFrame(
        {"cluster": ["a", "b", "a", "b"], "payers": [1, 1, 4, 4], "payments_per_s": [1, 2, 3, 4]}
    )
    ax = plot_curve(curve)
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    assert [list(line.get_ydata()) for line in ax.get_lines()] == [[1, 3], [2, 4]]


def test_an_fsync_is_timed_and_leaves_no_file(tmp_path):
    assert 0 < fsync_ms(tmp_path, samples=3) < 10_000
    assert list(tmp_path.iterdir()) == []


def test_bad_curves_are_refused_before_anything_runs():
    for payers, seconds in (([], 1.0), ([0], 1.0), ([1000], 1.0), ([1], 0), ([1], 60)):
        with pytest.raises(InvalidInput):
            payers_curve({}, payers, seconds=seconds)
    empty = pd.DataFrame(
        {"ts": pd.to_datetime([], utc=True), "event": [], "method": [], "source": []}
    )
    assert math.isnan(bank_rpcs_per_payment(empty))  # no payment: no ratio, not a crash
