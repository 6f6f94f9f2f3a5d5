"""Lesson 14 (performance): where one payment's time goes, and payers against payments/s with the
gateway's batching on and off, measured in one short run (compare within it, never across runs).

    LocalCluster(gateway_args=curve_gateway_args())   a gateway that lets the payers register
    fsync_ms(cluster.data_dir)                what one durable write costs on this disk
    split = time_split(cluster)               per payment, its phases in ms (a time window:
                                              one row of the curve)
    plot_time_split(split)                    their medians, one bar
    curve = payers_curve({"batching on": a, "batching off": b}, [1, 4, 16], seconds=1.0)
    plot_curve(curve); speedup(curve, 16)     payments/s against payers; on over off
    bank_rpcs_per_payment(cluster)            RPCs the banks served per payment (4 unbatched;
                                              the curve has it for each of its rows)

The payers are the benchmark's (paykit.lab.load): payer i pays payer i+1 0.01 on its own
PaymentClient and thread, one Pay RPC per payment with a fresh key, so nobody runs dry.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes

from paykit.core.errors import AlreadyExists, InvalidInput
from paykit.lab.load import (
    OPENING_MINOR,
    PASSWORD,
    accounts_for,
    drive,
    limits_for,
    pay_calls,
    sign_in_all,
)
from paykit.lab.logs import read_logs

PHASES = {  # phase -> (from event, to event) at the gateway, for one payment
    "claim: payment + key (fsync)": ("pay", "2pc.begin"),
    "prepare: both votes (bank fsync)": ("2pc.begin", "votes"),
    "decision logged (fsync)": ("votes", "2pc.decision"),
    "commit: both acks": ("2pc.decision", "acks"),
    "reply": ("acks", "reply"),
}
PAY = "/paykit.v1.Gateway/Pay"
BANK_PATH = r"/paykit\.v1\.Bank/(Prepare|Commit|Abort|Exchange)"
FSYNC_SAMPLES = 20
SECONDS_MAX = 10.0
PAYERS_MAX = 64


def curve_gateway_args(max_payers: int = PAYERS_MAX) -> tuple[str, ...]:
    """Gateway flags that let a curve of up to `max_payers` register its users (their opening
    balances, from one address): LocalCluster(gateway_args=...)."""
    return limits_for(accounts_for(max_payers + 1))


def fsync_ms(folder: Path, samples: int = FSYNC_SAMPLES) -> float:
    """The median time of one small write + fsync in `folder` (the disk the cluster writes to)."""
    times = []
    with tempfile.NamedTemporaryFile(dir=folder, prefix="fsync-probe-") as f:
        for _ in range(samples):
            f.write(b"x" * 100)
            f.flush()
            started = time.perf_counter()
            os.fsync(f.fileno())
            times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 3)


def _first(t: pd.DataFrame, event: str, how: str = "min") -> pd.Series:
    return t[t["event"] == event].groupby("txn")["t_s"].agg(how)


def _moments(gw: pd.DataFrame) -> pd.DataFrame:
    """Per payment id, the time of each moment of PHASES (seconds since the epoch)."""
    t = gw.assign(t_s=gw["ts"].astype("int64") / 1e9, txn=gw["txn_id"].astype("string"))
    pays = t[(t["event"] == "rpc") & (t["method"].astype(str) == PAY)]
    pays = pays.assign(start=pays["t_s"] - pays["latency_ms"] / 1000).set_index("txn")
    moments = pd.DataFrame(
        {
            "pay": pays["start"],
            "2pc.begin": _first(t, "2pc.begin"),
            "votes": _first(t, "2pc.vote", "max"),
            "2pc.decision": _first(t, "2pc.decision"),
            "acks": _first(t, "2pc.ack", "max"),
            "reply": pays["t_s"],
            "request_id": pays["request_id"],
        }
    )
    return moments.dropna(subset=[c for c in moments.columns if c != "request_id"])


def _between(df: pd.DataFrame, since_s: float, until_s: float) -> pd.DataFrame:
    t_s = df["ts"].astype("int64") / 1e9
    return df[(t_s >= since_s) & (t_s <= until_s)]


def time_split(source, since_s: float = 0.0, until_s: float = float("inf")) -> pd.DataFrame:
    """One row per payment committed between two times (seconds since the epoch): the
    milliseconds of each phase of PHASES at the gateway (from its log), then `client and
    network` (the client's latency, from its log, less the gateway's; missing for a bare
    session, which does not log) and `total`. `source`: a cluster, or read_logs' DataFrame."""
    df = source if isinstance(source, pd.DataFrame) else read_logs(source)
    df = _between(df, since_s, until_s)
    gw = df[df["source"].astype(str) == "gateway"]
    committed = gw[(gw["event"] == "2pc.decision") & (gw["decision"].astype(str) == "commit")]
    moments = _moments(gw[gw["txn_id"].isin(committed["txn_id"])])
    split = pd.DataFrame(
        {name: (moments[b] - moments[a]) * 1000 for name, (a, b) in PHASES.items()}
    )
    sent = df[(df["event"] == "rpc.client") & (df["method"].astype(str) == PAY)]
    client_ms = sent.groupby("request_id")["latency_ms"].max()
    at_client = moments["request_id"].map(client_ms)
    split["client and network"] = at_client - split.sum(axis=1)
    split["total"] = split.sum(axis=1, min_count=len(split.columns))
    return split.round(3)


def plot_time_split(split: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """The median of each phase of one payment, as one stacked bar (ms)."""
    import matplotlib.pyplot as plt

    ax = ax if ax is not None else plt.subplots(figsize=(8, 2.8))[1]
    medians = split.drop(columns="total").median().dropna()
    left = 0.0
    for name, ms in medians.items():
        ax.barh([0], [ms], left=left, label=f"{name}: {ms:.2f} ms")
        left += ms
    ax.set_yticks([])
    ax.set_title(f"Where a payment's time goes (medians of {len(split)} payments)")
    ax.set_xlabel("milliseconds")
    ax.set_ylabel("one payment")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=2, fontsize=8)
    return ax


def _validate(payers: list[int], seconds: float) -> None:
    if not payers or any(not 1 <= n <= PAYERS_MAX for n in payers):
        raise InvalidInput(f"payers must be 1 to {PAYERS_MAX} each, not {payers!r:.40}")
    if not 0 < seconds <= SECONDS_MAX:
        raise InvalidInput(f"seconds must be more than 0 and at most {SECONDS_MAX}")


def _register_new(cluster, users: list[tuple[str, str, str]]) -> None:
    """The bench users, those not registered by an earlier curve on this cluster."""
    with cluster.client() as client:
        for username, bank, account in users:
            try:
                client.register(username, PASSWORD, account, bank=bank,
                                opening_balance_minor=OPENING_MINOR)  # fmt: skip
            except AlreadyExists:
                pass


def payers_curve(clusters: dict, payers: list[int], *, seconds: float = 1.0) -> pd.DataFrame:
    """For each number of payers, each cluster in turn (so both see the same background load)
    is driven for `seconds`. One row per (cluster, payers): payments/s, p50 and p99 (ms),
    errors, when it ran (since_s, until_s: for time_split) and the banks' RPCs per payment.
    Registers max(payers) + 1 bench users on each cluster (whose gateway must allow
    their opening balances: paykit.lab.load.limits_for)."""
    _validate(payers, seconds)
    users = accounts_for(max(payers) + 1)
    accounts = [(bank, account) for _, bank, account in users]
    signed = {}
    try:
        for name, cluster in clusters.items():
            _register_new(cluster, users)
            signed[name] = sign_in_all(cluster, users, max(payers))
        rows = []
        for n in payers:
            for name, clients in signed.items():
                started = time.time()
                phase = drive(name, pay_calls(clients[:n], accounts), duration_s=seconds)
                rows.append(
                    {
                        "cluster": name,
                        "payers": n,
                        "payments_per_s": round(phase.rate, 1),
                        "p50_ms": round(phase.pct(50), 2),
                        "p99_ms": round(phase.pct(99), 2),
                        "errors": sum(phase.errors.values()),
                        "since_s": started,
                        "until_s": time.time(),
                    }
                )
        curve = pd.DataFrame(rows)
        logs = {name: read_logs(cluster) for name, cluster in clusters.items()}
        curve["bank_rpcs_per_payment"] = [
            bank_rpcs_per_payment(logs[row.cluster], row.since_s, row.until_s)
            for row in curve.itertuples()
        ]
        return curve
    finally:
        for clients in signed.values():
            for client in clients:
                client.close()


def speedup(curve: pd.DataFrame, payers: int, *, over: str = "batching off") -> float:
    """Payments/s of the other cluster over `over`'s, at `payers` payers, from one curve."""
    at = curve[curve["payers"] == payers].set_index("cluster")["payments_per_s"]
    other = [name for name in at.index if name != over]
    return round(float(at[other[0]] / at[over]), 3)


def plot_curve(curve: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Payments/s against the number of payers, one line per cluster."""
    import matplotlib.pyplot as plt

    ax = ax if ax is not None else plt.subplots(figsize=(7, 4))[1]
    for name, rows in curve.groupby("cluster", sort=False):
        ax.plot(rows["payers"], rows["payments_per_s"], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(curve["payers"].unique()), labels=sorted(curve["payers"].unique()))
    ax.set_ylim(bottom=0)
    ax.set_title("Payers against payments per second (one run, same machine)")
    ax.set_xlabel("concurrent payers")
    ax.set_ylabel("payments per second")
    ax.legend()
    return ax


def bank_rpcs_per_payment(source, since_s: float = 0.0, until_s: float = float("inf")) -> float:
    """The calls the banks served on the payment path (Prepare, Commit, Abort, and Exchange:
    a batch of legs) per payment the gateway decided, between two times (seconds since the
    epoch): 4 when every leg goes alone. `source`: a cluster, or read_logs' DataFrame."""
    df = _between(
        source if isinstance(source, pd.DataFrame) else read_logs(source), since_s, until_s
    )
    method = df["method"].astype(str)
    served = (df["event"] == "rpc") & method.str.fullmatch(BANK_PATH)
    decided = (df["event"] == "2pc.decision") & (df["source"].astype(str) == "gateway")
    return round(float(served.sum() / decided.sum()), 2) if decided.any() else float("nan")


def slowest_phase(split: pd.DataFrame) -> str:
    """The phase of time_split with the largest median."""
    return str(split.drop(columns="total").median().idxmax())
