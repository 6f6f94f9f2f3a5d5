"""What a lesson shows: many of the kit's objects as one table, and progress of a long cell.

    table(ada.queue())                       outbox entries, payments, balances: one row each
    with Progress("chaos", expected_s=6) as progress:
        report = run_chaos(..., progress=progress)   # a bar and the latest line, updated in place

In a notebook (JupyterLab, or nbval running one) the progress is one display updated in
place; anywhere else each new line is printed.
"""

from __future__ import annotations

import html
import threading
import time
from dataclasses import asdict, is_dataclass
from typing import Any

import pandas as pd

from paykit.core.errors import PaykitError

TICK_S = 0.5  # how often the bar moves while no new line comes
BAR_WIDTH = 24  # characters of the text bar


def _row(item: Any) -> dict[str, Any]:
    if hasattr(item, "as_row"):
        return item.as_row()
    if isinstance(item, PaykitError):  # e.g. one of pay_concurrently's answers
        return {"status": "error", "reason": item.reason, "message": str(item)}
    if is_dataclass(item) and not isinstance(item, type):
        return asdict(item)
    return {"value": item}


def table(items) -> pd.DataFrame:
    """The kit's objects (payments, balances, outbox entries, errors) as one DataFrame, a row
    each, with amounts as text: what a notebook shows instead of a list of reprs."""
    return pd.DataFrame([_row(item) for item in items])


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class _View:
    """One state of a progress display, as HTML (JupyterLab) and as text (anything else)."""

    def __init__(self, what: str, elapsed_s: float, expected_s: float, line: str, done: bool):
        self.what, self.elapsed_s, self.expected_s = what, elapsed_s, expected_s
        self.line, self.done = line, done

    @property
    def fraction(self) -> float:
        if self.done:
            return 1.0
        return min(self.elapsed_s / self.expected_s, 0.99) if self.expected_s > 0 else 0.0

    def _status(self) -> str:
        if self.done:
            return f"{self.what}: done in {self.elapsed_s:.1f} s"
        return f"{self.what}: {self.elapsed_s:.1f} s of about {self.expected_s:.0f} s"

    def __repr__(self) -> str:
        filled = round(self.fraction * BAR_WIDTH)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        return f"[{bar}] {self._status()}  {self.line}".rstrip()

    def _repr_html_(self) -> str:
        return (
            f'<progress value="{self.fraction:.3f}" max="1" style="width:12em"></progress> '
            f"<b>{html.escape(self._status())}</b> <code>{html.escape(self.line)}</code>"
        )


class Progress:
    """A progress bar with the latest line for a cell that runs for seconds; pass the object
    itself as a `progress=` callback (it takes one line of text)."""

    def __init__(self, what: str, *, expected_s: float) -> None:
        self.what = what
        self.expected_s = expected_s
        self.line = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._notebook = _in_notebook()
        self._handle = None
        self._ticker: threading.Thread | None = None

    def _view(self, done: bool = False) -> _View:
        return _View(self.what, time.monotonic() - self._started, self.expected_s, self.line, done)

    def _show(self, *, done: bool = False, new_line: bool = False) -> None:
        with self._lock:
            view = self._view(done)
            if self._notebook and self._handle is not None:
                self._handle.update(view)
            elif not self._notebook and (new_line or done):
                print(repr(view), flush=True)

    def __call__(self, line: str) -> None:
        self.line = line.strip()
        self._show(new_line=True)

    def __enter__(self) -> Progress:
        self._started = time.monotonic()
        if self._notebook:
            from IPython.display import display

            self._handle = display(self._view(), display_id=True)
            self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._ticker.start()
        return self

    def _tick(self) -> None:
        while not self._stop.wait(TICK_S):
            self._show()

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        self._show(done=exc[0] is None)
