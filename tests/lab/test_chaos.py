"""The short chaos profile, in `make test`: faults on a seeded schedule, then every invariant.

Two runs of about 10 s each (6 s of faults), each with two nemeses striking at once, one at the
processes and one at the network: kills and pauses with failpoints off (the gateway sends both
Commits at once, as in production) against partitions and lost replies; crashes at random 2PC
failpoints (Commits one after the other) and kills against cuts and delays.
The longer profile is `paykit chaos --profile long` (see docs/correctness.md).
"""

from __future__ import annotations

import pytest

from paykit.lab import chaos


@pytest.mark.parametrize(
    ("seed", "faults", "status_lines"),
    [
        (11, ("kill", "pause", "partition", "drop-replies"), True),
        (12, ("failpoint", "kill", "cut", "delay"), False),  # as `paykit chaos` in a pipe
    ],
    ids=["kill-pause-partition", "failpoint-kill-cut-delay"],
)
def test_short_chaos_run_keeps_every_invariant(tmp_path, seed, faults, status_lines):
    lines: list[str] = []
    report = chaos.run_chaos(
        seed=seed,
        duration_s=6.0,
        faults=faults,
        fault_every_s=1.2,
        payers=3,
        accounts=6,
        data_dir=tmp_path / "cluster",
        progress=lines.append,
        status_lines=status_lines,
    )
    summary = report.summary()
    assert report.ok, summary
    # It really ran: payments were made and told, faults struck, and the report says so.
    outcomes = report.outcomes()
    assert outcomes[chaos.SUCCEEDED] >= 20, summary
    assert len([f for f in report.faults if f.kind != "failpoint-missed"]) >= 2, summary
    assert f"seed {seed}" in summary and "PASS" in summary
    # Both nemeses struck, and their faults overlapped in time; the summary counts them by kind.
    kinds = report.faults_by_kind()
    assert any(kinds[k] for k in chaos.NETWORK_FAULTS), summary
    assert any(kinds[k] for k in chaos.PROCESS_FAULTS), summary
    assert overlapping(report.faults), summary
    assert "faults by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) in summary
    assert all(
        name in report.invariants.results
        for name in (
            "money conserved",
            "no negative",
            "ledger matches",
            "nothing in doubt",
            "agreement",
            "applied once",
            "books match payments",
            "one payment per key",
            "client view",
            "uncertain resolved",
        )
    )
    # Every uncertain payment was resolved through its key.
    assert report.resolutions()["unresolved"] == 0
    # The time series for the lessons' charts: one sample a second, completed payments never
    # decreasing, and after recovery all the money is in balances again, none in flight.
    rows = report.sample_rows()
    assert len(rows) >= 6
    assert [r["completed"] for r in rows] == sorted(r["completed"] for r in rows)
    assert (rows[-1]["total_minor"], rows[-1]["in_flight_minor"]) == (rows[-1]["opened_minor"], 0)
    assert any(line.startswith("[chaos]") for line in lines)
    # Events print either way; the status line every 2 s is a terminal's progress only.
    assert any("healed" in line for line in lines)
    assert any(" done (" in line for line in lines) == status_lines


def overlapping(faults) -> bool:
    """Whether a network fault and a process fault were in force at the same moment."""
    spans = [(f.t_s, f.t_s + f.down_s, f.kind in chaos.NETWORK_FAULTS) for f in faults]
    return any(
        a0 < b1 and b0 < a1 for a0, a1, net_a in spans for b0, b1, net_b in spans if net_a != net_b
    )


def test_chaos_cli_help_and_bad_arguments(capsys):
    with pytest.raises(SystemExit) as exited:
        chaos.main(["--help"])
    assert exited.value.code == 0
    assert "paykit chaos" in capsys.readouterr().out
    assert chaos.main(["--faults", "meteor", "--duration-s", "1"]) == 2
    assert "unknown fault kinds" in capsys.readouterr().err
