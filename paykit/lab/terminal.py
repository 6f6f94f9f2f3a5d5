"""Whether output goes to a person's terminal: progress (bench's redrawn counters, chaos's status
every two seconds) is only for a terminal; a pipe or a log file gets the plain result lines."""

from __future__ import annotations

from typing import TextIO


def on_terminal(out: TextIO | None) -> bool:
    """True when `out` is a terminal (a pipe, a file, a notebook's stream or None are not)."""
    try:
        return bool(out is not None and out.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
