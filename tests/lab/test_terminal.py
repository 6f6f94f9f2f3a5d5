"""Progress (bench's counters redrawn with "\\r") goes to a terminal only; a pipe or a file gets
none, so a log of `paykit bench | tee run.txt` holds the results, not a hundred redraws."""

from __future__ import annotations

import io
import os
import pty
import select

from paykit.lab.load import drive
from paykit.lab.terminal import on_terminal


def test_a_pipe_gets_no_progress_redraws():
    out = io.StringIO()
    phase = drive("payments", [lambda: None], duration_s=1.5, out=out)
    assert phase.ok > 0
    assert not on_terminal(out) and out.getvalue() == ""


def test_a_terminal_gets_the_progress_line_redrawn():
    master, slave = pty.openpty()
    try:
        with open(slave, "w", closefd=False) as tty:
            assert on_terminal(tty)
            drive("payments", [lambda: None], duration_s=1.5, out=tty)
        shown = b""
        while select.select([master], [], [], 0.5)[0]:
            shown += os.read(master, 65536)
    finally:
        os.close(slave)
        os.close(master)
    assert b"\r  payments:" in shown and b" ok " in shown


def test_closed_or_missing_streams_are_no_terminal():
    closed = io.StringIO()
    closed.close()
    assert not on_terminal(closed) and not on_terminal(None)
