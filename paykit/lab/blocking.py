"""The coordinator-crash lesson: how long banks hold a payment's money while the gateway is down,
the blocking window of two-phase commit.

    watch = HoldWatch(cluster).start()    every bank's held money and prepared legs, sampled
    ... the gateway crashes, stays down, restarts ...
    samples = watch.stop()                DataFrame: t_s, gateway (up or down), per bank
                                          <bank>_held_minor and <bank>_prepared
    blocking_window_s(samples)            seconds from the first sample with anything prepared
                                          to the first one after it with nothing prepared
    crash_coordinator(cluster, failpoint, down_s=...)   all of it for one payment (CrashRun)

The samples read the banks' SQLite files (read-only), so they go on while the gateway is
dead; the gateway counts as up once its current process has logged server.ready (a process
that is still recovering does not answer yet). charts.blocking_window(samples) draws them.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from paykit.client.models import Payment, html_view

SAMPLE_EVERY_S = 0.05
GATEWAY = "gateway"
_users = itertools.count(1)


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
    """HoldWatch's rows as a DataFrame, counts and amounts as nullable integers."""
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


@dataclass
class CrashRun:
    """One payment whose gateway crashed at a failpoint and stayed down for down_s."""

    failpoint: str
    told_first: Payment  # what pay() returned while the gateway died (queued: no answer)
    told_finally: Payment  # what the outbox's resend with the same key was told
    samples: pd.DataFrame  # HoldWatch's samples over the whole run

    @property
    def window_s(self) -> float:
        return blocking_window_s(self.samples)

    @property
    def down_s(self) -> float:
        return gateway_down_s(self.samples)

    def as_row(self) -> dict[str, object]:
        return {
            "failpoint": self.failpoint,
            "told at first": f"{self.told_first.status} ({self.told_first.queued_reason})",
            "told in the end": f"{self.told_finally.status} {self.told_finally.failure_reason}",
            "gateway down (s)": self.down_s,
            "blocking window (s)": self.window_s,
        }

    def _repr_html_(self) -> str:
        return html_view("The coordinator crashed", self.as_row())


def crash_coordinator(
    cluster,
    failpoint: str,
    *,
    down_s: float,
    amount: str = "10",
    timeout_s: float = 30.0,
    progress: Callable[[str], None] | None = None,
) -> CrashRun:
    """A new user at BankA pays `amount` to BankB/recipient123 while the gateway is armed to
    crash at `failpoint`; the gateway stays dead for `down_s`, restarts, and the run ends when
    the client has its final answer and no bank holds anything. `progress` hears each step."""
    say = progress or (lambda _line: None)
    username = f"crash{next(_users)}"
    client = cluster.client(outbox_dir=Path(cluster.data_dir) / "outbox" / username)
    try:
        client.register(username, "password123", f"{username}-acct", "1000", "BankA")
        client.authenticate(username, "password123")
        told: list[Payment] = []
        client.on_complete(told.append)
        watch = HoldWatch(cluster).start()
        cluster.arm(GATEWAY, failpoint)
        say(f"armed {failpoint}; paying {amount}")
        first = client.pay("BankB", "recipient123", amount)
        cluster.wait_dead(GATEWAY)
        say(f"the gateway crashed; the client was told {first.status}; down for {down_s} s")
        time.sleep(down_s)
        say("restarting the gateway (recovery first)")
        cluster.restart(GATEWAY)
        say("waiting for the client's resend and the banks' release")
        _wait(lambda: told and not _prepared(samples_frame(watch.rows[-1:])).any(), timeout_s)
        time.sleep(2 * watch.every_s)  # a sample or two after the release, for the chart
        return CrashRun(failpoint, first, told[0], watch.stop())
    finally:
        client.close()


def _wait(done, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"the crashed payment did not settle within {timeout_s} s")
        time.sleep(0.05)
