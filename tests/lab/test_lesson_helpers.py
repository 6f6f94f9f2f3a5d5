"""paykit.lab.lessons and paykit.lab.charts: the exercise checks, polling, and the helpers the
lessons lean on."""

from __future__ import annotations

import matplotlib
import pytest

from paykit.lab import charts as charts
from paykit.lab.lessons import (
    answer_digest,
    ask_decision,
    check_answer,
    check_hashed,
    in_background,
    in_doubt,
    make_traffic,
    pid_alive,
    refused_with_stranger_certificate,
    refused_without_certificate,
    second_copy,
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


def _fails(capsys, check, *args, **kwargs) -> str:
    with pytest.raises(AssertionError):
        check(*args, **kwargs)
    return capsys.readouterr().out


def test_check_answer_says_what_was_wrong_before_the_hint(capsys):
    out = _fails(capsys, check_answer, "count", None, 2, hint="count the rows")
    assert "not answered yet" in out and "Hint: count the rows" in out
    out = _fails(capsys, check_answer, "count", "2", 2, hint="h")
    assert "whole number" in out and "'2' is a text" in out
    out = _fails(capsys, check_answer, "count", 3, 2, hint="h")
    assert "3 is not the answer" in out and "Hint: h" in out
    # numpy scalars count as numbers, a list matches a tuple, tol allows measurement noise
    import numpy as np

    check_answer("count", np.int64(2), 2)
    check_answer("pair", ["BankA", "abort"], ("BankA", "abort"))
    check_answer("seconds", 2.45, 2.5, tol=0.1)
    _fails(capsys, check_answer, "seconds", 2.3, 2.5, tol=0.1)


def test_check_hashed_keeps_the_answer_off_the_cell(capsys):
    digest = answer_digest("servers still running", 2)
    kind, hashed = digest.split(":")
    assert (
        kind == "int" and len(hashed) == 16 and answer_digest("servers still running", 2) == digest
    )
    assert answer_digest("another exercise", 2) != digest  # salted with the exercise's name
    check_hashed("servers still running", 2, digest)
    assert "✓" in capsys.readouterr().out
    out = _fails(capsys, check_hashed, "servers still running", 3, digest, hint="one stopped")
    assert "✗" in out and "Hint: one stopped" in out
    out = _fails(capsys, check_hashed, "servers still running", "2", digest)
    assert "whole number" in out
    out = _fails(capsys, check_hashed, "servers still running", None, digest)
    assert "not answered yet" in out


def test_in_background_hands_back_the_result_or_the_error():
    assert in_background(lambda a, b: a + b, 2, b=3).result(timeout=5) == 5
    with pytest.raises(ZeroDivisionError):
        in_background(lambda: 1 / 0).result(timeout=5)


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
    # the data folder's lock refuses a second copy of a running server
    for name in ("BankB", "gateway"):
        said = second_copy(cluster, name)
        assert said.startswith("refused") and "already running" in said, said
    # presumed abort: the coordinator has no record of this transaction
    assert ask_decision(cluster, "0123456789abcdef.debit") == "ABORT"
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
