"""The client on a real terminal (a pseudo-terminal, as a terminal emulator gives it): Up-arrow
recalls the last line instead of `unknown command '\\x1b[a'`, Tab completes commands and bank
names, and the history survives the session in a private file without any password."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import stat
import subprocess
import sys
import time

from conftest import PASSWORD, signed_in

UP, TAB, CTRL_D = b"\x1b[A", b"\t", b"\x04"
PROMPT = re.compile(r"> (\x1b\[[0-9;?]*[A-Za-z])*\Z")  # the screen ends at a fresh prompt
WAIT_S = 30


class Terminal:
    """`paykit client` with a pseudo-terminal as stdin, stdout and stderr."""

    def __init__(self, cluster, home, history) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "paykit", "client", "--gateway", cluster.gateway_address,
             "--pki-dir", str(cluster.pki_dir), "--history", str(history)],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            # a client that hangs prints where (SIGABRT in close())
            env={**os.environ, "PAYKIT_HOME": str(home), "TERM": "xterm",
                 "PYTHONFAULTHANDLER": "1"},
            start_new_session=True,
        )  # fmt: skip
        os.close(slave)
        self.screen = b""

    def type(self, keys: bytes, *, fresh_line: bool = True) -> None:
        """Types at the prompt, as a person does: keys typed while a command still runs reach
        the terminal before readline reads it raw (a Ctrl+D then is no end of input)."""
        if fresh_line:
            self.wait_for(PROMPT)
        os.write(self.master, keys)

    def wait_for(self, pattern: str | re.Pattern, count: int = 1) -> str:
        """Reads the screen until `pattern` has shown `count` times; the screen so far."""
        deadline = time.monotonic() + WAIT_S
        while len(re.findall(pattern, self.text())) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"{pattern!r} x{count} never showed; the screen:\n{self.text()}"
            if select.select([self.master], [], [], left)[0]:
                try:
                    self.screen += os.read(self.master, 4096)
                except OSError:  # the client exited and closed the terminal
                    break
        return self.text()

    def drain(self) -> str:
        while select.select([self.master], [], [], 0.5)[0]:
            try:
                self.screen += os.read(self.master, 4096)
            except OSError:
                break
        return self.text()

    def text(self) -> str:
        return self.screen.decode(errors="replace")

    def close(self) -> int:
        try:
            code = self.proc.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGABRT)
            raise AssertionError(f"the client did not exit; the screen:\n{self.drain()}") from None
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            os.close(self.master)
        return code


def test_line_editing_completion_and_a_history_kept_across_sessions(shared_cluster, tmp_path):
    signed_in(shared_cluster, "tess", "tess-acct", "100").close()
    history = tmp_path / "state" / "client_history"
    term = Terminal(shared_cluster, tmp_path, history)
    try:
        term.wait_for(r"Connected to gateway")
        term.type(b"help balance\r")
        term.wait_for(r"usage: balance")
        term.type(UP + b"\r")  # the line again, not `unknown command '\x1b[a'`
        screen = term.wait_for(r"usage: balance", count=2)
        assert "unknown command" not in screen
        term.type(f"auth tess {PASSWORD}\r".encode())
        term.wait_for(r"Authentication successful for user tess")
        term.type(b"bal" + TAB + b"\r")  # completes to "balance"
        term.wait_for(r"Balance of tess-acct at BankA: 100\.00")
        term.type(b"pay Bank" + TAB + TAB)  # two banks match: both are listed
        term.wait_for(r"BankA\s+BankB")
        term.type(b"B recipient123 1\r", fresh_line=False)
        term.wait_for(r"Payment Response: Payment processed successfully")
        term.type(b"help queue\r")
        term.wait_for(r"usage: queue")
        term.type(b"quit\r")
    finally:
        code = term.close()
    assert code == 0
    kept = history.read_text().splitlines()
    assert kept[-4:] == ["balance", "pay BankB recipient123 1", "help queue", "quit"], kept
    assert PASSWORD not in history.read_text() and not any(k.startswith("auth") for k in kept)
    assert stat.S_IMODE(history.stat().st_mode) == 0o600
    # A new session: Up twice is the last session's "help queue"; Ctrl+D leaves.
    term = Terminal(shared_cluster, tmp_path, history)
    try:
        term.wait_for(r"Connected to gateway")
        term.type(UP + UP + b"\r")
        term.wait_for(r"usage: queue")
        term.type(CTRL_D)
    finally:
        assert term.close() == 0


def test_the_history_file_stays_bounded(shared_cluster, tmp_path):
    from paykit.client.line_editing import HISTORY_LENGTH

    history = tmp_path / "client_history"
    history.write_text("".join(f"help pay {i}\n" for i in range(HISTORY_LENGTH + 50)))
    history.chmod(0o644)  # written by hand, too open: the client makes it private again
    term = Terminal(shared_cluster, tmp_path, history)
    try:
        term.wait_for(r"Connected to gateway")
        term.type(b"help\r")
        term.wait_for(r"commands:")
        term.type(CTRL_D)
    finally:
        term.close()
    kept = history.read_text().splitlines()
    assert len(kept) == HISTORY_LENGTH and kept[-1] == "help"
    assert stat.S_IMODE(history.stat().st_mode) == 0o600


def test_a_history_that_cannot_be_written_is_reported_and_the_session_still_ends_well(
    shared_cluster, tmp_path
):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    term = Terminal(shared_cluster, tmp_path, blocker / "client_history")
    try:
        term.type(b"help\r")
        term.wait_for(r"commands:")
        term.type(CTRL_D)
        screen = term.wait_for(r"history was not saved")
    finally:
        code = term.close()
    assert code == 0 and "Traceback" not in screen
