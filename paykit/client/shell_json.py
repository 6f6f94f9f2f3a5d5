"""The shell's replies for scripts (`paykit client --json`): one JSON object a line.

    {"command": "balance", "ok": true, "balance": {"bank": "BankA", ...}}
    {"command": "pay", "ok": false, "error": {"code": "INVALID_ARGUMENT", "reason": ..., ...}}
    {"event": "completed", "payment": {...}}       a queued payment ended (outbox thread)

Amounts stay integers in minor units; a token or a stored reply's bytes never appear."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from paykit.core.errors import PaykitError

HIDDEN = frozenset({"token", "payment"})  # the bearer secret; an outbox entry's stored bytes


def plain(value: Any) -> Any:
    """A dataclass (or a list of them) as JSON-ready dicts, without the HIDDEN fields."""
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if dataclasses.is_dataclass(value):
        return {
            f.name: plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name not in HIDDEN
        }
    if isinstance(value, str):
        return str(value)  # a StrEnum status as its text
    return value


def error_fields(err: PaykitError) -> dict[str, str]:
    return {"code": err.code, "reason": err.reason, "message": str(err), "hint": err.hint}


def line(obj: dict) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))
