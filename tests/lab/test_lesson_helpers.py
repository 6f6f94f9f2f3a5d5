"""paykit.lab.lessons and paykit.lab.charts: the exercise checks, polling, and the helpers the
lessons lean on."""

from __future__ import annotations

import matplotlib
import pytest

from paykit.lab import charts as charts
from paykit.lab.lessons import (
    check_answer,
    in_doubt,
    make_traffic,
    pid_alive,
    refused_with_stranger_certificate,
    refused_without_certificate,
    servers,
    servers_running_under,
    wait_until,
)
from paykit.lab.logs import read_logs

matplotlib.use("Agg")


def test_check_answer_prints_a_tick_or_a_cross_and_raises(capsys):
    check_answer("sum", 2 + 2, 4)
    assert "✓ sum" in capsys.readouterr().out
    with pytest.raises(AssertionError):
        check_answer("sum", 5, 4, hint="add again")
    out = capsys.readouterr().out
    assert "✗ sum" in out and "add again" in out


def test_wait_until_returns_the_value_or_fails_at_the_deadline():
    assert wait_until(lambda: 7, 1.0) == 7
    with pytest.raises(AssertionError, match="never did not happen within 0.2 s"):
        wait_until(lambda: False, 0.2, what="never", every_s=0.05)


def test_cluster_helpers(cluster):
    table = servers(cluster)
    assert table.alive.all() and list(table.name) == ["BankA", "BankB", "gateway"]
    assert sorted(servers_running_under(cluster.data_dir)) == sorted(int(p) for p in table.pid)
    assert refused_without_certificate(cluster).startswith("refused")
    assert refused_with_stranger_certificate(cluster).startswith("refused")
    assert in_doubt(cluster) == []
    counts = make_traffic(cluster, payments=5)
    assert counts == {"succeeded": 4, "failed": 1, "errors": 1, "retried": 1}
    df = read_logs(cluster)
    for chart in (
        charts.latency_by_method,
        charts.codes_over_time,
        charts.retries,
        charts.twopc_outcomes,
    ):
        ax = chart(df)
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel(), chart.__name__
    pids = [int(p) for p in table.pid]
    cluster.stop()
    assert not any(pid_alive(p) for p in pids) and servers_running_under(cluster.data_dir) == []
