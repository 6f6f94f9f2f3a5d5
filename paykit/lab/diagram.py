"""Sequence diagrams of one payment, drawn from the real logs of every process.

    steps = sequence_steps(cluster, payment_id)     one row per arrow or mark, oldest first
    sequence_diagram(cluster, payment_id)           the same steps, drawn with matplotlib

Lanes are the client, the gateway, and the payment's banks. An arrow is a message, labelled
with what it carried (Pay, Prepare, the vote, Commit or Abort, the acknowledgement,
GetDecision and its answer); an arrow that stops short at a cross is a message that got no
answer (lost on the way, or sent to a process that was down; repeats are drawn once, "×n").
A box on a lane is a durable write (the payment row, the decision). A cross on a lane is a
crash: a process life that ended without `server.stopped`; a restart starts a new one. Rows
follow the order of events, not a time scale; a gap of more than GAP_S is marked on the left.
Used by the lessons about the protocol (two-phase commit, crashes, retries, the outbox).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from typing import Any

import pandas as pd
from matplotlib.axes import Axes

from paykit.core.money import format_minor
from paykit.lab.logs import read_logs

CLIENT, GATEWAY = "client", "gateway"
MESSAGE, LOST, WRITE, NOTE = "message", "lost", "write", "note"
CRASH, STOP, RESTART = "crash", "stop", "restart"
GAP_S = 0.4  # a pause longer than this between two rows is marked
ANSWER_WINDOW_S = 0.5  # a bank's resolved line this soon after GetDecision is its answer
# A call that never left the client: the gateway was down (anything else reached it).
_NOT_SENT = re.compile(r"failed to connect|connection refused|Connection refused|DNS", re.I)
# Lines a process writes when it starts, before server.ready (recovery runs first).
_START_EVENTS = ("2pc.recovered", "bank.seeded")
_PAY, _DECISION_RPC = "Gateway/Pay", "Coordinator/GetDecision"
RESTARTED = "GATEWAY_RESTARTED"  # the reason recovery gives the payments it aborts


@dataclass(frozen=True)
class Step:
    """One row of the diagram: a message from src to dst, or a mark on the lane src."""

    t_s: float  # seconds since the epoch, from the log line
    kind: str  # message | lost | write | note | crash | stop | restart
    src: str
    dst: str
    label: str
    count: int = 1  # repeats merged into this row (lost messages sent again and again)


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and value != value) else str(value)


def _col(rows: pd.DataFrame, name: str) -> pd.Series:
    if name in rows.columns:
        return rows[name].astype("string").fillna("")
    return pd.Series("", index=rows.index, dtype="string")


def _frame(source: Any) -> pd.DataFrame:
    df = source if isinstance(source, pd.DataFrame) else read_logs(source)
    df = df.copy()
    df["t_s"] = df["ts"].astype("int64") / 1e9
    df["event"] = df["event"].astype(str)
    df["rpc"] = df["method"].astype(str).str.removeprefix("/paykit.v1.")
    df["txn"] = _col(df, "txn_id")
    return df


def _legs(rows: pd.DataFrame) -> dict[str, str]:
    """leg -> bank, from the gateway's prepare_sent lines."""
    sent = rows[rows["event"] == "2pc.prepare_sent"]
    return {_text(r["leg"]): _text(r["bank"]) for _, r in sent.iterrows()}


def _key_of(df: pd.DataFrame, payment_id: str) -> str:
    keys = _col(df, "idempotency_key")[
        (df["txn"] == payment_id) & (_col(df, "idempotency_key") != "")
    ]
    return keys.iloc[0] if len(keys) else ""


def _outcome(gw: pd.DataFrame) -> str:
    decided = gw[gw["event"] == "2pc.decision"]
    if decided.empty:
        return "undecided"
    row = decided.iloc[0]
    if _text(row["decision"]) == "commit":
        return "succeeded"
    return f"failed: {_text(row.get('reason')) or 'aborted'}"


def _pay_steps(df: pd.DataFrame, key: str, begun_s: float, outcome: str) -> list[Step]:
    """The client's Pay attempts with this key and the answers (the gateway's lines if no client
    log has them: a bare session does not log)."""
    same_key = df[(_col(df, "idempotency_key") == key) & (df["rpc"] == _PAY)]
    calls = same_key[same_key["event"] == "rpc.client"]
    if calls.empty:
        calls = same_key[same_key["event"] == "rpc"]
    steps = []
    for _, call in calls.iterrows():
        attempt = _text(call.get("attempt")) or "1"
        sent_s = call["t_s"] - (call["latency_ms"] or 0) / 1000
        code, error = _text(call["code"]), _text(call.get("error"))
        amount = call.get("amount_minor")
        what = f"Pay #{attempt}" + (f" {format_minor(int(amount))}" if pd.notna(amount) else "")
        if code != "OK" and _NOT_SENT.search(error):
            steps.append(Step(sent_s, LOST, CLIENT, GATEWAY, f"{what} (gateway down)"))
            continue
        steps.append(Step(sent_s, MESSAGE, CLIENT, GATEWAY, what))
        if code == "OK":
            again = " (stored answer)" if sent_s > begun_s + 1e-3 else ""
            steps.append(Step(call["t_s"], MESSAGE, GATEWAY, CLIENT, outcome + again))
        elif code == "ABORTED":
            steps.append(Step(call["t_s"], MESSAGE, GATEWAY, CLIENT, "in progress, retry"))
        elif code in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED"):
            steps.append(Step(call["t_s"], LOST, GATEWAY, CLIENT, f"no reply ({code})"))
        else:
            steps.append(Step(call["t_s"], MESSAGE, GATEWAY, CLIENT, code))
    return steps


def _gateway_steps(gw: pd.DataFrame, bank_rows: pd.DataFrame) -> list[Step]:
    """Prepare, durable writes, timeouts, decisions and acknowledgements, as the gateway logged
    them (a Prepare no bank ever answered is drawn lost)."""
    steps, word = [], "decision"
    voted = set(zip(bank_rows["source"].astype(str), bank_rows["event"], strict=True))
    for _, r in gw.iterrows():
        event, bank, leg = r["event"], _text(r.get("bank")), _text(r.get("leg"))
        if event == "2pc.begin":
            steps.append(Step(r["t_s"], WRITE, GATEWAY, GATEWAY, "log payment, undecided"))
        elif event == "2pc.prepare_sent":
            amount = format_minor(int(r["amount_minor"])) if pd.notna(r["amount_minor"]) else ""
            kind = MESSAGE if (bank, "2pc.voted") in voted else LOST
            steps.append(Step(r["t_s"], kind, GATEWAY, bank, f"Prepare {leg} {amount}".strip()))
        elif event == "2pc.vote" and _text(r.get("reason")) == "BANK_TIMEOUT":
            steps.append(Step(r["t_s"], NOTE, GATEWAY, GATEWAY, f"{bank}: no vote in time"))
        elif event == "2pc.decision":
            reason = _text(r.get("reason"))
            label = f"log {_text(r['decision']).upper()}" + (f" ({reason})" if reason else "")
            steps.append(Step(r["t_s"], WRITE, GATEWAY, GATEWAY, label))
            word = _text(r["decision"]).capitalize()
        elif event == "2pc.decision_unacked":
            steps.append(Step(r["t_s"], LOST, GATEWAY, bank, f"{word} (no ack)"))
        elif event == "2pc.ack":
            steps.append(Step(r["t_s"], MESSAGE, bank, GATEWAY, "ack"))
    return steps


def _bank_steps(bank_rows: pd.DataFrame, gw: pd.DataFrame, rpcs: pd.DataFrame) -> list[Step]:
    """Votes, applied decisions (with a lost ack if the bank died before answering), and the
    in-doubt resolver's questions."""
    heard = {
        (_text(r["bank"]), _text(r["vote"]))
        for _, r in gw[gw["event"] == "2pc.vote"].iterrows()
        if _text(r.get("reason")) != "BANK_TIMEOUT"
    }
    steps = []
    for _, r in bank_rows.iterrows():
        bank, event = str(r["source"]), r["event"]
        if event == "2pc.voted":
            vote, reason = _text(r["vote"]), _text(r.get("reason"))
            label = vote.upper() + (f" ({reason})" if reason else "")
            kind = MESSAGE if (bank, vote) in heard else LOST
            steps.append(Step(r["t_s"], kind, bank, GATEWAY, label))
        elif event in ("2pc.committed", "2pc.aborted"):
            word = "Commit" if event == "2pc.committed" else "Abort"
            steps.append(Step(r["t_s"], MESSAGE, GATEWAY, bank, word))
            answered = rpcs[(rpcs["source"] == bank) & (rpcs["txn"] == r["txn"])]
            if not (answered["rpc"].str.endswith(word) & (answered["t_s"] >= r["t_s"])).any():
                steps.append(Step(r["t_s"] + 1e-4, LOST, bank, GATEWAY, "ack (bank died)"))
        elif event == "2pc.in_doubt":
            steps.append(Step(r["t_s"], LOST, bank, GATEWAY, "GetDecision (no answer)"))
        elif event == "2pc.resolved":
            answer = _text(r["decision"]).removeprefix("DECISION_")
            steps.append(Step(r["t_s"], MESSAGE, GATEWAY, bank, answer))
    return steps


def _question_steps(asked: pd.DataFrame, bank_rows: pd.DataFrame, legs: dict) -> list[Step]:
    """Each GetDecision the gateway answered; PENDING when the bank resolved nothing after it."""
    resolved = bank_rows[bank_rows["event"] == "2pc.resolved"]
    steps = []
    for _, r in asked.iterrows():
        bank = legs.get(r["txn"].rsplit(".", 1)[-1], "")
        sent_s = r["t_s"] - (r["latency_ms"] or 0) / 1000
        steps.append(Step(sent_s, MESSAGE, bank, GATEWAY, "GetDecision"))
        after = resolved[(resolved["source"] == bank) & (resolved["txn"] == r["txn"])]
        soon = after[(after["t_s"] >= r["t_s"]) & (after["t_s"] <= r["t_s"] + ANSWER_WINDOW_S)]
        if soon.empty:
            steps.append(Step(r["t_s"], MESSAGE, GATEWAY, bank, "PENDING"))
    return steps


def _life_steps(df: pd.DataFrame, lanes: list[str], start_s: float, end_s: float) -> list[Step]:
    """Crashes and restarts of the servers on the lanes within [start_s, end_s]."""
    steps = []
    for lane in lanes[1:]:
        lines = df[df["source"].astype(str) == lane].reset_index(drop=True)
        ready = lines.index[lines["event"] == "server.ready"]
        for i in ready[1:]:  # the first ready is the first start, not a restart
            first = i
            while first > 0 and _starting(lines.loc[first - 1]):
                first -= 1
            restart_s = lines.loc[first, "t_s"]
            if not start_s <= restart_s <= end_s:
                continue
            before = lines.loc[: first - 1]
            if len(before):
                last = before.iloc[-1]
                stopped = last["event"] == "server.stopped"
                kind, label = (STOP, "stopped (SIGTERM)") if stopped else (CRASH, "crash (kill -9)")
                steps.append(Step(last["t_s"] + 1e-4, kind, lane, lane, label))
            label = "restart: recovery first" if lane == GATEWAY else "restart"
            steps.append(Step(restart_s - 1e-4, RESTART, lane, lane, label))
    return steps


def _starting(line: pd.Series) -> bool:
    """A line a process writes while starting: seeding, recovery and the aborts it logs."""
    recovering = line["event"] == "2pc.decision" and _text(line.get("reason")) == RESTARTED
    return line["event"] in _START_EVENTS or recovering


def _merge_repeats(steps: list[Step]) -> list[Step]:
    """A lost message sent again with nothing but other lost messages on its lanes between:
    one row, ×n."""
    merged: list[Step] = []
    for step in steps:
        last = None
        if step.kind == LOST:
            lanes = {step.src, step.dst}
            for earlier in reversed(merged):
                same_way = (earlier.src, earlier.dst) == (step.src, step.dst)
                if {earlier.src, earlier.dst} & lanes and (earlier.kind != LOST or same_way):
                    last = earlier
                    break
        if last is not None and (last.kind, last.label) == (LOST, step.label):
            merged[merged.index(last)] = replace(last, count=last.count + 1)
        else:
            merged.append(step)
    return merged


def sequence_steps(source: Any, payment_id: str, *, key: str = "") -> pd.DataFrame:
    """One payment's messages and marks, oldest first: t_ms (since its first row), kind, src,
    dst, label, count. `source`: a LocalCluster, a log folder, or read_logs' DataFrame."""
    df = _frame(source)
    mine = (df["txn"] == payment_id) | df["txn"].str.startswith(payment_id + ".")
    gw = df[mine & (df["source"].astype(str) == GATEWAY) & df["event"].str.startswith("2pc.")]
    legs = _legs(gw)
    banks = list(dict.fromkeys(legs.values()))
    bank_rows = df[mine & df["source"].astype(str).isin(banks) & df["event"].str.startswith("2pc.")]
    rpcs = df[mine & (df["event"] == "rpc")]
    begun = gw.loc[gw["event"] == "2pc.begin", "t_s"]
    begun_s = float(begun.iloc[0]) if len(begun) else float("inf")
    steps = _pay_steps(df, key or _key_of(df, payment_id), begun_s, _outcome(gw))
    steps += _gateway_steps(gw, bank_rows) + _bank_steps(bank_rows, gw, rpcs)
    steps += _question_steps(rpcs[rpcs["rpc"] == _DECISION_RPC], bank_rows, legs)
    if steps:
        start_s, end_s = min(s.t_s for s in steps), max(s.t_s for s in steps)
        steps += _life_steps(df, [CLIENT, GATEWAY, *banks], start_s, end_s)
    steps = _merge_repeats(sorted(steps, key=lambda s: s.t_s))
    rows = pd.DataFrame([asdict(s) for s in steps], columns=list(Step.__dataclass_fields__))
    t0 = rows["t_s"].min() if len(rows) else 0.0
    rows.insert(0, "t_ms", ((rows.pop("t_s") - t0) * 1000).round(1))
    rows.attrs.update(lanes=[CLIENT, GATEWAY, *banks], payment_id=payment_id, outcome=_outcome(gw))
    return rows


# -- drawing ------------------------------------------------------------------------

LANE_GAP = 2.6  # horizontal distance between two lanes
LOST_REACH = 0.6  # how far along its way a lost message is drawn
COLOURS = {"YES": "#1a7f37", "COMMIT": "#1a7f37", "NO": "#b00020", "ABORT": "#b00020"}


def _label_colour(label: str) -> str:
    word = label.split(" ", 1)[0].upper()
    return COLOURS.get(word, "black")


# marker, colour, size of each mark on a lane
MARKS = {CRASH: ("X", "#b00020", 13), STOP: ("s", "0.4", 8), RESTART: (">", "#1a7f37", 9)}


def _draw_arrow(ax: Axes, step: pd.Series, y: float, x0: float, x1: float, label: str) -> None:
    lost = step["kind"] == LOST
    end = x0 + (x1 - x0) * (LOST_REACH if lost else 1.0)
    style = {"arrowstyle": "-", "color": "grey", "linestyle": "--"} if lost else {}
    arrow = {"arrowstyle": "-|>", "color": "0.2", "lw": 1.2, **style}
    ax.annotate("", xy=(end, y), xytext=(x0, y), arrowprops=arrow)
    if lost:
        ax.plot([end], [y], marker="x", color="#b00020", markersize=8, mew=2)
    colour = "grey" if lost else _label_colour(step["label"])
    ax.text(
        (x0 + end) / 2,
        y + 0.12,
        label,
        ha="center",
        va="bottom",
        fontsize=8,
        color=colour,
        style="italic" if lost else "normal",
    )


def _draw_step(ax: Axes, step: pd.Series, y: float, x: dict[str, float]) -> None:
    label = step["label"] + (f"  ×{step['count']}" if step["count"] > 1 else "")
    lane = x[step["src"]]
    if step["kind"] in (MESSAGE, LOST):
        _draw_arrow(ax, step, y, lane, x[step["dst"]], label)
    elif step["kind"] == WRITE:
        box = {"boxstyle": "round", "fc": "#fff6d5", "ec": "#c9a227"}
        colour = _label_colour(step["label"].removeprefix("log "))
        ax.text(lane, y, label, ha="center", va="center", fontsize=8, color=colour, bbox=box)
    elif step["kind"] == NOTE:
        ax.text(lane + 0.1, y, label, va="center", fontsize=8, color="grey", style="italic")
    else:
        marker, colour, size = MARKS[step["kind"]]
        ax.plot([lane], [y], marker=marker, color=colour, markersize=size)
        ax.text(lane + 0.2, y, label, va="center", fontsize=8, color=colour, weight="bold")


def _rows_of(steps: pd.DataFrame) -> list[tuple[float, pd.Series | None]]:
    """(y, step) for each step, top to bottom, with a spacer row (step None) at each long gap."""
    rows, y, last_ms = [], 0.0, None
    for _, step in steps.iterrows():
        if last_ms is not None and step["t_ms"] - last_ms > GAP_S * 1000:
            y -= 1
            rows.append((y, None))
        y -= 1
        rows.append((y, step))
        last_ms = step["t_ms"]
    return rows


def _down_spans(steps: pd.DataFrame, rows, lanes) -> dict[str, list[tuple[float, float]]]:
    """Per lane, the (y of crash, y of restart or the bottom) spans while it was down."""
    spans: dict[str, list[tuple[float, float]]] = {lane: [] for lane in lanes}
    down: dict[str, float] = {}
    for y, step in rows:
        if step is None:
            continue
        if step["kind"] in (CRASH, STOP):
            down[step["src"]] = y
        elif step["kind"] == RESTART and step["src"] in down:
            spans[step["src"]].append((down.pop(step["src"]), y))
    bottom = rows[-1][0] - 0.5 if rows else 0.0
    for lane, y in down.items():
        spans[lane].append((y, bottom))
    return spans


def draw_steps(steps: pd.DataFrame, ax: Axes | None = None, *, title: str = "") -> Axes:
    """Draws sequence_steps' rows: one lane per process, one row per step."""
    import matplotlib.pyplot as plt

    lanes = steps.attrs.get("lanes") or list(dict.fromkeys([*steps["src"], *steps["dst"]]))
    rows = _rows_of(steps)
    if ax is None:
        height = 1.4 + 0.36 * max(len(rows), 4)
        ax = plt.subplots(figsize=(2.2 + LANE_GAP * len(lanes), height))[1]
    x = {lane: i * LANE_GAP for i, lane in enumerate(lanes)}
    bottom = (rows[-1][0] if rows else -1) - 0.8
    spans = _down_spans(steps, rows, lanes)
    for lane, lx in x.items():
        ax.plot([lx, lx], [0.2, bottom], color="0.75", lw=1, zorder=0)
        for top, end in spans[lane]:
            ax.plot([lx, lx], [top, end], color="#b00020", lw=3, alpha=0.25, zorder=0)
        ax.text(
            lx,
            0.6,
            lane,
            ha="center",
            va="bottom",
            weight="bold",
            bbox={"boxstyle": "round", "fc": "#e8eef7", "ec": "#4a6fa5"},
        )
    for y, step in rows:
        if step is None:
            ax.text(-1.0, y, "...", ha="right", va="center", color="grey")
            continue
        ax.text(
            -1.0, y, f"{step['t_ms']:.0f} ms", ha="right", va="center", fontsize=7, color="grey"
        )
        _draw_step(ax, step, y, x)
    ax.set_xlim(-2.2, LANE_GAP * (len(lanes) - 1) + 1.6)
    ax.set_ylim(bottom, 1.4)
    ax.axis("off")
    pid = steps.attrs.get("payment_id", "")
    ax.set_title(title or f"Payment {pid[:8]}: {steps.attrs.get('outcome', '')}", loc="left")
    return ax


def sequence_diagram(
    source: Any, payment_id: str, ax: Axes | None = None, *, key: str = "", title: str = ""
) -> Axes:
    """One payment as a sequence diagram from the logs of `source` (a LocalCluster, a log
    folder, or read_logs' DataFrame): lanes client, gateway and its banks."""
    return draw_steps(sequence_steps(source, payment_id, key=key), ax, title=title)
