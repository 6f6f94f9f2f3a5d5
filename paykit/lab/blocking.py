"""The coordinator-crash lesson: how long banks hold a payment's money while the gateway is down,
the blocking window of two-phase commit.

    watch = HoldWatch(cluster).start()    every bank's held money and prepared legs, sampled
    ... the gateway crashes, stays down, restarts ...
    samples = watch.stop()                DataFrame: t_s, gateway (up or down), per bank
                                          <bank>_held_minor and <bank>_prepared
    blocking_window_s(samples)            seconds from the first sample with anything prepared
                                          to the first one after it with nothing prepared

The samples read the banks' SQLite files (read-only), so they go on while the gateway is
dead; the gateway counts as up once its current process has logged server.ready (a process
that is still recovering does not answer yet). charts.blocking_window(samples) draws them.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

import pandas as pd

SAMPLE_EVERY_S = 0.05
GATEWAY = "gateway"


def _bank_state(db: Path) -> tuple[int, int] | None:
    """(held money, prepared legs) of one bank, or None if its file cannot be read this instant."""
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2)) as conn:
            conn.execute("BEGIN")  # one snapshot for both
            (held,) = conn.execute("SELECT COALESCE(SUM(held_minor), 0) FROM accounts").fetchone()
            (prepared,) = conn.execute(
                "SELECT COUNT(*) FROM txns WHERE state = 'prepared'"
            ).fetchone()
    except sqlite3.Error:
        return None
    return held, prepared


class HoldWatch:
    """Samples, in the background, what each bank of `cluster` holds and whether the gateway
    runs, every `every_s`, until stop()."""

    def __init__(self, cluster, *, every_s: float = SAMPLE_EVERY_S) -> None:
        self.cluster = cluster
        self.every_s = every_s
        self.rows: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hold-watch", daemon=True)
        self._started = 0.0
        self._log = next(p for p in cluster.log_paths() if p.stem == GATEWAY)
        self._read_to = 0  # bytes of the gateway's log read so far
        self._ready_pids: set[int] = set()  # gateway processes that said server.ready

    def start(self) -> HoldWatch:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def _gateway_up(self, pid: int | None) -> bool:
        """Whether gateway process `pid` runs and has logged server.ready."""
        try:
            with open(self._log, "rb") as log:
                log.seek(self._read_to)
                new = log.read()
        except FileNotFoundError:
            new = b""
        complete = new[: new.rfind(b"\n") + 1]  # a line still being written waits its turn
        self._read_to += len(complete)
        for line in complete.splitlines():
            if b'"server.ready"' in line:
                self._ready_pids.add(json.loads(line).get("pid"))
        return pid is not None and pid in self._ready_pids

    def _sample(self) -> dict:
        gateway = next(r for r in self.cluster.status() if r["name"] == GATEWAY)
        row: dict = {"t_s": round(time.monotonic() - self._started, 3)}
        row[GATEWAY] = "up" if self._gateway_up(gateway["pid"]) else "down"
        for bank in self.cluster.bank_names:
            state = _bank_state(self.cluster.bank_db(bank))
            held, prepared = state if state is not None else (None, None)
            row[f"{bank}_held_minor"], row[f"{bank}_prepared"] = held, prepared
        return row

    def _run(self) -> None:
        while True:
            self.rows.append(self._sample())
            if self._stop.wait(self.every_s):
                return

    def stop(self) -> pd.DataFrame:
        """Stops sampling; returns the samples, oldest first."""
        self._stop.set()
        self._thread.join()
        return samples_frame(self.rows)


def samples_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for column in frame.columns:
        if column.endswith(("_held_minor", "_prepared")):
            frame[column] = frame[column].astype("Int64")
    return frame


def _prepared(samples: pd.DataFrame) -> pd.Series:
    columns = [c for c in samples.columns if c.endswith("_prepared")]
    return samples[columns].fillna(0).sum(axis=1) > 0


def blocking_window_s(samples: pd.DataFrame) -> float:
    """Seconds from the first sample with a prepared leg at some bank to the first sample after
    it with none: how long banks held on to a payment they could not decide alone."""
    prepared = _prepared(samples)
    if not prepared.any():
        return 0.0
    first = prepared.idxmax()
    released = samples.index[(samples.index > first) & ~prepared]
    end = released[0] if len(released) else samples.index[-1]
    return round(float(samples.loc[end, "t_s"] - samples.loc[first, "t_s"]), 2)


def gateway_down_s(samples: pd.DataFrame) -> float:
    """Seconds the gateway was down (not running, or not yet ready), over the samples."""
    return round(sum(end - start for start, end in down_spans(samples)), 2)


def down_spans(samples: pd.DataFrame) -> list[tuple[float, float]]:
    """(from, to) seconds of each stretch of samples with the gateway down (to: the next
    sample, when it was seen up again)."""
    spans, start = [], None
    times, down = list(samples["t_s"]), list(samples[GATEWAY] == "down")
    for i, (t, is_down) in enumerate(zip(times, down, strict=True)):
        if is_down and start is None:
            start = t
        if start is not None and (not is_down or i == len(times) - 1):
            spans.append((start, t))
            start = None
    return spans
