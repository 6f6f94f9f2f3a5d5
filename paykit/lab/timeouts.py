"""Lesson 9 (timeouts under delay): a sweep of the gateway's prepare timeout while the network to
one bank is slow and another bank is cut off.

    payers = timeout_payers(cluster, 6)          users at BankA, each with its own session
    sweep = sweep_prepare_timeout(cluster, payers, [0.1, 0.25, 0.5, 1.0], delay_ms=100,
                                  jitter_ms=80)  one row per timeout (a DataFrame)
    plot_sweep(sweep)                            aborted share and money held, against timeout

At each timeout the gateway is restarted with it (the timeout is a gateway flag); then, at the
same time, every payer pays the slow bank (a healthy payment whose votes take a round trip of
the delay) but the first, which pays the cut-off bank (it can only end at the timeout). Two
costs of one knob: a short timeout aborts healthy payments, a long one holds the payer's money
for as long as it waits for a bank that will never answer.
"""

from __future__ import annotations

import itertools
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pandas as pd
from matplotlib.axes import Axes

from paykit.core.errors import InvalidInput, PaykitError
from paykit.lab.check import read_bank
from paykit.lab.lessons import wait_until
from paykit.lab.logs import read_logs
from paykit.v1 import payment_pb2 as pb

PAYEE = "recipient123"
AMOUNT_MINOR = 100
TIMEOUT_MIN_S, TIMEOUT_MAX_S = 0.01, 10.0
READY_TIMEOUT_S = 15.0
_users = itertools.count(1)


@dataclass
class Payer:
    username: str
    session: object  # a signed-in GatewaySession (one send per call, no outbox)


def timeout_payers(cluster, n: int, *, bank: str = "BankA") -> list[Payer]:
    """`n` new users at `bank` (timeout1, timeout2, ...), each signed in on its own session."""
    payers = []
    for _ in range(n):
        name = f"timeout{next(_users)}"
        session = cluster.session()
        session.register(name, "password123", f"{name}-acct", 100_000, bank)
        session.authenticate(name, "password123")
        payers.append(Payer(name, session))
    return payers


def _ready(payers: list[Payer]) -> bool:
    """True once every payer's session reaches the (restarted) gateway."""
    try:
        for payer in payers:
            payer.session.balance()
    except PaykitError:
        return False
    return True


def _pay(payer: Payer, to: tuple[str, str]) -> tuple[str, str, float]:
    """One payment to (bank, account): (payment id, failure reason or "", seconds to answer)."""
    started = time.monotonic()
    p = payer.session.pay(*to, AMOUNT_MINOR, str(uuid.uuid4()))
    reason = "" if p.status == pb.PAYMENT_STATUS_SUCCEEDED else p.failure_reason or "failed"
    return p.payment_id, reason, time.monotonic() - started


def held_s(df: pd.DataFrame, payment_id: str, bank: str = "BankA") -> float:
    """How long `bank` held the money of payment `payment_id`: from its YES (the hold placed) to
    its commit or abort (the hold gone), from its log lines."""
    mine = df[
        (df["source"].astype(str) == bank)
        & (df["txn_id"].astype("string") == f"{payment_id}.debit")
    ]
    voted = mine.loc[mine["event"] == "2pc.voted", "ts"]
    ended = mine.loc[mine["event"].isin(["2pc.committed", "2pc.aborted"]), "ts"]
    if voted.empty or ended.empty:
        return float("nan")
    return (ended.min() - voted.min()).total_seconds()


def _held_by(cluster, payer: Payer, bank: str = "BankA") -> int:
    return read_bank(bank, cluster.bank_db(bank)).held[f"{payer.username}-acct"]


def _round(cluster, payers: list[Payer], slow_to, dead_to, timeout_s: float) -> tuple[list, tuple]:
    """The first payer pays the cut-off bank while the others pay the slow one. Once the first
    payer's hold is gone (the timeout passed and ABORT was sent), the network is healed, so the
    gateway's Abort to the cut-off bank gets through instead of being retried for a second."""
    started = time.monotonic()
    with ThreadPoolExecutor(len(payers)) as pool:
        stuck = pool.submit(_pay, payers[0], dead_to)
        healthy = list(pool.map(lambda p: _pay(p, slow_to), payers[1:]))
        wait_until(
            lambda: time.monotonic() - started >= timeout_s and not _held_by(cluster, payers[0]),
            READY_TIMEOUT_S,
            what="the payment to the cut-off bank aborted",
            every_s=0.02,
        )
        cluster.heal()
        return healthy, stuck.result()


def sweep_prepare_timeout(
    cluster, payers: list[Payer], timeouts: list[float], *, delay_ms: float,
    jitter_ms: float = 0.0, slow_to: tuple[str, str] = ("BankB", PAYEE),
    dead_to: tuple[str, str] = ("BankC", PAYEE), progress=None,
) -> pd.DataFrame:  # fmt: skip
    """For each timeout: restarts the gateway with it, delays the link to the bank of `slow_to`
    (bank, account) by `delay_ms` (± `jitter_ms`) each way and cuts off the bank of `dead_to`;
    the first payer pays `dead_to` while the others pay `slow_to`. One row per timeout: healthy
    payments,
    how many were aborted, their median answer time, and how long the payer's bank held the
    money of the payment to the cut-off bank. The cluster is healed and left on the last
    timeout."""
    bad = [t for t in timeouts if not TIMEOUT_MIN_S <= t <= TIMEOUT_MAX_S]
    if bad or not timeouts:
        raise InvalidInput(
            f"timeouts must be {TIMEOUT_MIN_S} to {TIMEOUT_MAX_S} s, not {bad!r:.40}"
        )
    say = progress or (lambda _line: None)
    rows = []
    for timeout_s in timeouts:
        if cluster.prepare_timeout_s != timeout_s:
            say(f"restarting the gateway with a prepare timeout of {timeout_s:g} s")
            cluster.heal()
            cluster.prepare_timeout_s = timeout_s
            cluster.restart("gateway")
        wait_until(lambda: _ready(payers), READY_TIMEOUT_S, what="the payers' sessions")
        for to in (slow_to, dead_to):  # open the gateway's connections while all is well
            _pay(payers[0], to)
        slow_bank, dead_bank = slow_to[0], dead_to[0]
        cluster.delay("gateway", slow_bank, ms=delay_ms, jitter_ms=jitter_ms)
        cluster.partition("gateway", dead_bank)
        say(f"timeout {timeout_s:g} s: {len(payers) - 1} to {slow_bank}, 1 to {dead_bank}")
        healthy, (stuck_id, _, _) = _round(cluster, payers, slow_to, dead_to, timeout_s)
        rows.append(
            {
                "timeout_s": timeout_s,
                "payments": len(healthy),
                "aborted": sum(bool(reason) for _, reason, _ in healthy),
                "p50_ms": round(pd.Series([s for *_, s in healthy]).median() * 1000, 1),
                "stuck_payment": stuck_id,
            }
        )
    df = read_logs(cluster)
    sweep = pd.DataFrame(rows)
    sweep["aborted_share"] = sweep["aborted"] / sweep["payments"]
    sweep["held_s"] = [round(held_s(df, pid), 3) for pid in sweep["stuck_payment"]]
    return sweep


def plot_sweep(sweep: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """The two costs of the prepare timeout: the share of healthy payments aborted (left axis)
    and how long a payment to a cut-off bank held the payer's money (right axis)."""
    import matplotlib.pyplot as plt

    ax = ax if ax is not None else plt.subplots(figsize=(7, 4))[1]
    ax.plot(sweep["timeout_s"], sweep["aborted_share"] * 100, marker="o", color="tab:red",
            label="healthy payments aborted (%)")  # fmt: skip
    ax.set_xlabel("prepare timeout (s)")
    ax.set_ylabel("healthy payments aborted (%)")
    ax.set_ylim(-5, 105)
    held = ax.twinx()
    held.plot(sweep["timeout_s"], sweep["held_s"], marker="s", color="tab:blue",
              label="money held by a payment to a cut-off bank (s)")  # fmt: skip
    held.set_ylabel("money held (s)")
    held.set_ylim(bottom=0)
    ax.set_title("The prepare timeout: too short aborts, too long holds")
    lines, labels = ax.get_legend_handles_labels()
    more, more_labels = held.get_legend_handles_labels()
    ax.legend(lines + more, labels + more_labels, loc="upper center", bbox_to_anchor=(0.5, -0.15))
    return ax


def shortest_clean_timeout(sweep: pd.DataFrame) -> float:
    """The shortest timeout of a sweep at which no healthy payment was aborted (nan if none)."""
    clean = sweep.loc[sweep["aborted"] == 0, "timeout_s"]
    return float(clean.min()) if len(clean) else float("nan")
