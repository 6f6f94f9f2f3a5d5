"""JSON-lines event log: one object per line, stable event names, no secrets, bounded lines.

Each server process configures one log file in its data folder; the logging
interceptor writes one `rpc` event per call and the 2PC code writes `2pc.*` events
into the same stream. `paykit.logs` reads them back into pandas. No field's text is longer
than FIELD_MAX_CHARS (what a caller sent may be huge), so no line is longer than a few KiB.
The file is readable by its owner only (0600, in a 0700 folder).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, TextIO

# Field names that must never be written, whatever a caller passes.
_SECRET_FIELDS = frozenset({"password", "token", "authorization", "private_key", "key_pem"})
# One encoder for every line: json.dumps with options builds a new JSONEncoder per call,
# and a payment writes about a dozen lines across the servers.
_ENCODE = json.JSONEncoder(separators=(",", ":"), default=str).encode
FIELD_MAX_CHARS = 500  # of any one field's text; the rest is cut, saying how much


def bounded(value: Any) -> Any:
    """`value`, or its text cut to FIELD_MAX_CHARS when it is longer."""
    if isinstance(value, int | float | bool):
        return value
    text = value if isinstance(value, str) else _ENCODE(value)
    if len(text) <= FIELD_MAX_CHARS:
        return value
    return f"{text[:FIELD_MAX_CHARS]}... ({len(text) - FIELD_MAX_CHARS} more characters)"


class EventLog:
    def __init__(self, path: Path | None, *, service: str) -> None:
        self.service = service
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self._out: TextIO | None = None
        if self.path is not None:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.fchmod(fd, 0o600)  # also a file made before paykit wrote them 0600
            self._out = open(fd, "a", encoding="utf-8", buffering=1)

    def event(self, name: str, **fields: Any) -> None:
        if self._out is None:
            return
        record = {"ts": time.time(), "service": self.service, "event": name}
        record.update(
            (k, bounded(v)) for k, v in fields.items() if k not in _SECRET_FIELDS and v is not None
        )
        line = _ENCODE(record)
        with self._lock:
            self._out.write(line + "\n")

    def close(self) -> None:
        with self._lock:
            if self._out is not None:
                self._out.close()
                self._out = None


_active = EventLog(None, service="-")


def configure(path: Path | None, *, service: str) -> EventLog:
    global _active
    _active.close()
    _active = EventLog(path, service=service)
    return _active


def event(name: str, **fields: Any) -> None:
    _active.event(name, **fields)
