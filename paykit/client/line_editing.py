"""Line editing for the interactive client: GNU readline (or libedit) through the standard
library, a history kept across sessions, Tab completion.

The history file is private (0600) and bounded (HISTORY_LENGTH lines). Lines that carry a
password (auth, register) never reach it, in the manner of the mysql client's default
histignore: a password typed once must not sit in a file. Each session appends only its own
lines, so two sessions at once both keep theirs."""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from pathlib import Path

from paykit.core.config import state_dir

HISTORY_LENGTH = 1000
HISTORY_FILE = "client_history"
SECRET_COMMANDS = frozenset({"auth", "register"})  # their second word is a password


def default_history_path() -> Path:
    """<state folder>/client_history, next to the client's outboxes and logs."""
    return state_dir() / HISTORY_FILE


def kept_in_history(line: str) -> bool:
    """Whether a typed line may be written to the history file."""
    try:
        words = shlex.split(line)
    except ValueError:
        words = line.split()
    return bool(words) and words[0].lower() not in SECRET_COMMANDS


class LineEditing:
    """Loads the history and binds Tab on enter; appends this session's lines on exit."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.added = 0
        self.readline = None

    def __enter__(self) -> LineEditing:
        try:
            import readline  # only for a terminal: a pipe gets no readline at all
        except ImportError:  # a Python built without it: plain input(), no history
            return self
        self.readline = readline
        readline.set_auto_history(False)  # add() decides what is kept
        readline.set_history_length(HISTORY_LENGTH)
        if "libedit" in (readline.__doc__ or ""):  # macOS's Python: libedit's own syntax
            readline.parse_and_bind("bind ^I rl_complete")
        if self.path and self.path.exists():
            os.chmod(self.path, 0o600)
            with contextlib.suppress(OSError):
                readline.read_history_file(self.path)
        return self

    def add(self, line: str) -> None:
        if self.readline and kept_in_history(line):
            self.readline.add_history(line.strip())
            self.added += 1

    def line_buffer(self) -> str:
        """What the user has typed so far on the current line (reprinted after an async line)."""
        return self.readline.get_line_buffer() if self.readline else ""

    def __exit__(self, *exc) -> None:
        if not (self.readline and self.path and self.added):
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))  # private when written
            os.chmod(self.path, 0o600)
            # append_history_file also truncates the file to the history length
            self.readline.append_history_file(min(self.added, HISTORY_LENGTH), self.path)
        except OSError as err:  # the session's work is done: say so, do not fail it
            print(f"paykit: this session's history was not saved ({err})", file=sys.stderr)
