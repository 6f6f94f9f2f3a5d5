"""Named crash and pause points on the 2PC path, for fault tests and lessons.

Off unless the server was started with failpoints enabled (`--failpoints`). When on,
`hit(name)` reads the server's arm file (failpoints.json in its data folder), and if
`name` is armed it disarms it (so a restart does not crash again) and then acts:
"crash" kills the process with SIGKILL, "pause" stops it with SIGSTOP, "error" raises
the error a failing disk gives SQLite (the process lives on).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
from pathlib import Path

# Every failpoint, where it sits, and what a crash there tests.
FAILPOINTS: dict[str, str] = {
    "bank.after_hold_before_commit": "hold placed inside the prepare transaction, not committed",
    "bank.batch_between_legs": "an Exchange's first leg written, the rest not; none committed",
    "bank.after_vote_yes_before_reply": "prepare committed (YES is durable), reply not sent",
    "bank.after_reply_yes": "the YES reply has been sent",
    "bank.after_commit_before_ack": "Commit applied, acknowledgement not sent",
    "gateway.before_decision": "all votes in, decision not yet logged",
    "gateway.decision_write": 'all votes in, the decision is being written (as "error": the write '
    "fails)",
    "gateway.after_commit_logged": "COMMIT logged, no Commit sent yet",
    "gateway.between_commits": "Commit acknowledged by the first bank, not yet sent to the second",
    "gateway.before_reply": "decision logged and sent, client not yet answered",
}
ACTIONS = ("crash", "pause", "error")
ARM_FILE = "failpoints.json"


class FailpointError(ValueError):
    """A failpoint name or action that does not exist, or failpoints are off."""


class Failpoints:
    def __init__(self, data_dir: Path, *, enabled: bool) -> None:
        self.enabled = enabled
        self.path = Path(data_dir) / ARM_FILE
        self._lock = threading.Lock()

    def hit(self, name: str) -> None:
        if not self.enabled:
            return
        with self._lock:
            armed = read_armed(self.path)
            action = armed.pop(name, None)
            if action is None:
                return
            _write_armed(self.path, armed)
        # Signal this thread, not the process: a process-directed SIGSTOP is taken by another
        # thread (the main one), and until it has stopped the group this thread runs on, long
        # enough to send the very reply the failpoint is meant to hold back. A thread-directed
        # signal stops (or kills) the process before this call returns.
        if action == "crash":
            signal.pthread_kill(threading.get_ident(), signal.SIGKILL)
        elif action == "pause":
            signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)
        elif action == "error":
            raise sqlite3.OperationalError(f"disk I/O error (failpoint {name})")


def read_armed(path: Path) -> dict[str, str]:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}


def _write_armed(path: Path, armed: dict[str, str]) -> None:
    # One temporary file per process: the server (disarming) and a test (arming) may write at once.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(armed))
    os.replace(tmp, path)


def arm(data_dir: Path, name: str, action: str = "crash") -> None:
    """Arms `name` on the server whose data folder is `data_dir` (one shot)."""
    if name not in FAILPOINTS:
        raise FailpointError(f"unknown failpoint {name!r}; known: {', '.join(FAILPOINTS)}")
    if action not in ACTIONS:
        raise FailpointError(f"unknown action {action!r}; use one of {ACTIONS}")
    path = Path(data_dir) / ARM_FILE
    armed = read_armed(path)
    armed[name] = action
    _write_armed(path, armed)


def disarm(data_dir: Path) -> None:
    """Disarms every failpoint of that server (a fault test that did not reach its point)."""
    _write_armed(Path(data_dir) / ARM_FILE, {})


_active = Failpoints(Path("."), enabled=False)


def configure(data_dir: Path, *, enabled: bool) -> None:
    global _active
    _active = Failpoints(data_dir, enabled=enabled)


def hit(name: str) -> None:
    """Called at each point on the 2PC path; does nothing unless armed."""
    assert name in FAILPOINTS, name
    _active.hit(name)
