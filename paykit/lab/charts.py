"""matplotlib charts of the logs DataFrame (paykit.lab.logs.read_logs) for the lessons, each titled
and labelled."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from paykit.lab.logs import retried_requests, rpc_calls, twopc_events

# Horizontal boxes: matplotlib 3.10 added `orientation` and deprecated `vert`.
_HORIZONTAL = (
    {"orientation": "horizontal"}
    if tuple(map(int, matplotlib.__version__.split(".")[:2])) >= (3, 10)
    else {"vert": False}
)


def _axes(ax: Axes | None) -> Axes:
    return ax if ax is not None else plt.subplots(figsize=(7, 4))[1]


def latency_by_method(df: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Box plot of server-side latency per RPC method (Gateway/Pay, Bank/Prepare, ...)."""
    ax = _axes(ax)
    calls = rpc_calls(df)
    calls = calls[(calls["side"] == "server") & calls["latency_ms"].notna()]
    calls = calls.assign(name=calls["method"].astype(str).str.removeprefix("/paykit.v1."))
    groups = {name: g["latency_ms"].to_numpy() for name, g in calls.groupby("name")}
    ax.boxplot(list(groups.values()), tick_labels=list(groups), showfliers=True, **_HORIZONTAL)
    ax.set_title("Latency per method (server side)")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("method")
    return ax


def codes_over_time(
    df: pd.DataFrame, ax: Axes | None = None, *, bin_s: float | None = None
) -> Axes:
    """Calls per second by gRPC status code, as seen by the servers (bins: a twentieth of the run
    by default)."""
    ax = _axes(ax)
    calls = rpc_calls(df)
    calls = calls[calls["side"] == "server"]
    elapsed_s = (calls["ts"] - calls["ts"].min()).dt.total_seconds()
    bin_s = bin_s or max(elapsed_s.max() / 20, 0.05)
    seconds = (elapsed_s // bin_s * bin_s).round(3).rename("t_s")
    counts = calls.groupby([seconds, calls["code"].astype(str)]).size().unstack(fill_value=0)
    for code in counts.columns:
        ax.plot(counts.index, counts[code] / bin_s, marker="o", label=code)
    ax.set_title("gRPC status codes over time")
    ax.set_xlabel("time since the first call (s)")
    ax.set_ylabel("calls per second")
    ax.legend(title="code")
    return ax


def retries(df: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """How many client requests needed 1, 2, 3 ... attempts (from the clients' logs)."""
    ax = _axes(ax)
    calls = rpc_calls(df)
    client = calls[calls["side"] == "client"]
    attempts = (
        client.groupby("request_id", observed=True)["attempt"].max().value_counts().sort_index()
    )
    ax.bar(attempts.index.astype(str), attempts.to_numpy(), color="tab:orange")
    ax.set_title(f"Attempts per client request ({len(retried_requests(df))} retried)")
    ax.set_xlabel("attempts needed")
    ax.set_ylabel("requests")
    return ax


def twopc_outcomes(df: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Payments by the coordinator's logged decision, and for aborts, the reason."""
    ax = _axes(ax)
    decisions = twopc_events(df)
    decisions = decisions[decisions["event"] == "2pc.decision"]
    reason = (
        decisions["reason"]
        if "reason" in decisions.columns
        else pd.Series("", index=decisions.index)
    )
    label = decisions["decision"].astype(str) + reason.fillna("").map(
        lambda r: f"\n({r})" if r else ""
    )
    counts = label.value_counts().sort_index()
    ax.bar(
        counts.index,
        counts.to_numpy(),
        color=["tab:green" if i.startswith("commit") else "tab:red" for i in counts.index],
    )
    ax.set_title("Two-phase commit outcomes")
    ax.set_xlabel("decision (reason)")
    ax.set_ylabel("payments")
    return ax


def dashboard(df: pd.DataFrame) -> Figure:
    """The four charts of lesson 11 on one figure."""
    fig, axes = plt.subplots(2, 2, figsize=(13, 8))
    latency_by_method(df, axes[0][0])
    codes_over_time(df, axes[0][1])
    retries(df, axes[1][0])
    twopc_outcomes(df, axes[1][1])
    fig.tight_layout()
    return fig


def chaos_timeline(report) -> Figure:
    """Lesson 15: money (balances + in flight, against the money opened) and payments per second
    of a paykit.chaos report, with the seconds when some server was down shaded."""
    s = pd.DataFrame(report.sample_rows())
    s["money_minor"] = s["total_minor"] + s["in_flight_minor"]
    rate = s["completed"].diff() / s["t_s"].diff()
    fig, (money, speed) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    money.plot(s["t_s"], s["money_minor"] / 100, marker="o", label="balances + in flight")
    money.plot(s["t_s"], s["total_minor"] / 100, marker=".", alpha=0.6, label="balances only")
    money.plot(
        s["t_s"], s["opened_minor"] / 100, linestyle="--", color="black", label="money opened"
    )
    readable = s.dropna(subset=["money_minor"])
    conserved = bool((readable["money_minor"] == readable["opened_minor"]).all())
    money.set_title(
        f"Money during chaos (seed {report.seed}): "
        + ("conserved at every sample" if conserved else "NOT conserved")
    )
    money.set_ylabel("money (major units)")
    money.legend()
    speed.bar(s["t_s"], rate.fillna(0), width=0.6, color="tab:blue")
    speed.set_title("Payments completed per second while servers are killed and paused")
    speed.set_xlabel("time since the payers started (s)")
    speed.set_ylabel("payments per second")
    for ax in (money, speed):
        for t, down in zip(s["t_s"], s["down"], strict=True):
            if down:
                ax.axvspan(t - 0.5, t + 0.5, color="tab:red", alpha=0.1, linewidth=0)
    fig.tight_layout()
    return fig


def blocking_window(samples: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """The coordinator-crash lesson: money each bank held, and its prepared legs, over time
    (paykit.lab.HoldWatch's samples), with the seconds the gateway was down shaded."""
    from paykit.lab.blocking import blocking_window_s, down_spans, gateway_down_s

    ax = _axes(ax)
    banks = [c.removesuffix("_held_minor") for c in samples.columns if c.endswith("_held_minor")]
    for bank in banks:
        held = samples[f"{bank}_held_minor"].astype("float64") / 100
        ax.step(samples["t_s"], held, where="post", label=f"{bank}: money held")
    legs = ax.twinx()
    for bank in banks:
        prepared = samples[f"{bank}_prepared"].astype("float64")
        legs.step(samples["t_s"], prepared, where="post", linestyle=":", label=f"{bank}: legs")
    legs.set_ylabel("prepared legs (in doubt)")
    legs.set_ylim(0, max(2.5, float(legs.get_ylim()[1])))
    for start_s, end_s in down_spans(samples):
        ax.axvspan(start_s, end_s, color="tab:red", alpha=0.12, linewidth=0)
    ax.set_title(
        f"Blocking window {blocking_window_s(samples):.1f} s "
        f"(gateway down {gateway_down_s(samples):.1f} s, shaded)"
    )
    ax.set_xlabel("time since the watch started (s)")
    ax.set_ylabel("money held (major units)")
    lines, labels = ax.get_legend_handles_labels()
    more, more_labels = legs.get_legend_handles_labels()
    ax.legend(
        lines + more, labels + more_labels, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2
    )
    ax.set_ylim(bottom=-0.05 * max(1.0, float(ax.get_ylim()[1])), top=ax.get_ylim()[1] * 1.15)
    return ax
