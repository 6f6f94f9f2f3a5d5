"""paykit bench runs real clusters and prints figures; these check that it measures what it says
(no figure is asserted against a speed: the machine is shared)."""

from __future__ import annotations

import io

import pytest

from paykit.lab.bench import main, run_bench


def test_batching_both_measures_two_clusters_in_alternating_rounds_and_compares_them():
    out = io.StringIO()
    result = run_bench(
        payers=2,
        duration_s=1.0,
        variants={"batching off": {"batching": False}, "batching on": {"batching": True}},
        check=True,
        out=out,
    )
    text = out.getvalue()
    assert set(result["variants"]) == {"batching off", "batching on"}
    for figures in result["variants"].values():
        assert figures["payments"].ok > 0 and not figures["payments"].errors
        assert figures["noop"].ok > 0
        assert set(figures["cpu_ms_per_payment"]) == {"BankA", "BankB", "gateway", "bench"}
    assert result["compare"]["payments_per_s"] > 0
    assert "== batching on / batching off (same run, alternating rounds)" in text
    assert result["invariants_ok"], text


def test_preload_compares_an_empty_cluster_with_one_holding_the_history(tmp_path):
    out = io.StringIO()
    result = run_bench(
        payers=2, duration_s=1.0, preload_n=2_000, check=True, data_dir=tmp_path, out=out
    )
    text = out.getvalue()
    assert "preloaded 2000 payments" in text
    assert set(result["variants"]) == {"empty", "2000 stored"}
    assert result["preloaded_vs_empty"] == result["compare"]["payments_per_s"] > 0
    assert result["invariants_ok"], text  # the bulk history keeps every invariant


@pytest.mark.parametrize(
    "argv",
    [["--payers", "0"], ["--preload", "10", "--rss"], ["--batching", "both", "--relays", "both"]],
)
def test_bad_options_are_refused_with_exit_2(argv, capsys):
    assert main(argv) == 2
    assert "paykit bench: error:" in capsys.readouterr().err
