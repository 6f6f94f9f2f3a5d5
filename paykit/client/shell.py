"""The client's command language (the seed's session), used by `paykit client` and the demo.

Built on the standard library's cmd.Cmd. On a terminal (interact()), readline gives line
editing, a history kept across sessions and Tab completion of commands and bank names
(paykit.client.line_editing); from a pipe (run()), lines are read as they come, with no prompt
and no readline. Replies go to `out` as [CLIENT] lines (paykit.client.shell_text), or as one
JSON object per command with json=True (paykit.client.shell_json); errors go to `err`.
exit_code sums the session up for scripts (paykit.client.exit_codes).
"""

from __future__ import annotations

import cmd
import datetime as dt
import shlex
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from paykit.client import exit_codes, notify
from paykit.client import shell_json as js
from paykit.client.api import PaymentClient
from paykit.client.line_editing import LineEditing
from paykit.client.models import Payment
from paykit.client.shell_text import (
    HELP,
    OUT_LOCK,
    SEARCH_KEYS,
    date_ms,
    describe_completion,
    describe_notice,
    describe_payment,
    describe_queued,
    help_text,
    payment_table,
    queue_table,
    say,
    usage,
)
from paykit.core.config import DEFAULT_BANK_PORTS
from paykit.core.errors import InvalidInput, PaykitError
from paykit.core.money import format_minor

ALIASES = {"pending": "queue", "exit": "quit"}
QUIT = frozenset({"quit", "exit", "eof"})  # cmd.Cmd reads Ctrl+D as the line "EOF"
COMMAND_NAMES = tuple(sorted({*HELP, *ALIASES}))
BANK_WORD = {"pay": 1, "register": 5}  # which word of these commands names a bank


@dataclass
class Reply:
    """A command's answer: its [CLIENT] text and its JSON fields; failed: it counts as a failure
    for the exit code (a declined payment is a reply, not an error, but no money moved)."""

    text: str
    data: dict = field(default_factory=dict)
    failed: bool = False


class Shell(cmd.Cmd):
    """Runs commands against a PaymentClient and prints their replies."""

    prompt = "> "

    def __init__(
        self,
        client: PaymentClient,
        out: TextIO = sys.stdout,
        *,
        default_bank: str = "",
        err: TextIO | None = None,
        json: bool = False,
    ) -> None:
        super().__init__(stdout=out)
        self.client = client
        self.out = out
        self.err = err or out  # a caller that gives one stream sees errors in order with replies
        self.json = json
        self.default_bank = default_bank
        self.me: tuple[str, str] = ("", "")
        self.banks = set(DEFAULT_BANK_PORTS) | ({default_bank} - {""})  # for Tab completion
        self._codes: set[int] = set()
        self._codes_lock = threading.Lock()  # commands and the outbox's thread both add codes
        self._editing: LineEditing | None = None
        self._prompting = False  # whether a prompt is showing (an async line reprints it)
        # Queued payments end on the outbox's thread: print their outcome as it happens.
        client.on_complete(self._completed)
        client.on_notice(self._noticed)

    @property
    def exit_code(self) -> int:
        with self._codes_lock:
            return exit_codes.session_code(self._codes)

    def _count(self, code: int) -> None:
        with self._codes_lock:
            self._codes.add(code)

    # -- reading commands -------------------------------------------------------

    def run_line(self, line: str) -> bool:
        """Runs one command line; returns False when the user asked to quit."""
        return not self.onecmd(line)

    def run(self, lines: Iterable[str]) -> int:
        """Runs piped commands until quit or the end of input: no prompt, no readline."""
        for line in lines:
            if self.onecmd(line):
                break
        return self.finish()

    def interact(self, history: Path | None = None, *, banner: str = "") -> int:
        """The terminal loop: readline editing, history in `history`, Tab completion."""
        if banner and not self.json:
            say(self.out, banner)
        with LineEditing(history) as editing:
            self._editing = editing
            while True:
                try:
                    self.cmdloop()
                    break
                except KeyboardInterrupt:  # Ctrl+C drops the line being typed, as in bash
                    print(file=self.out)
            self._editing = None
        return self.finish()

    def finish(self) -> int:
        """Says how many payments are still queued; returns the session's exit code."""
        self._prompting = False
        n = self.client.pending_count()
        if n:
            self._count(exit_codes.QUEUED)
            self._emit(
                {"event": "still_queued", "pending": n, "username": self.client.username},
                f"{n} payment{'s are' if n != 1 else ' is'} still queued; "
                f"{'they' if n != 1 else 'it'} will be sent when you start the client again and "
                f"sign in as {self.client.username}",
            )
        return self.exit_code

    # cmd.Cmd's hooks (interact() only): what the prompt shows, what history keeps
    def preloop(self) -> None:
        self._prompting = True

    def precmd(self, line: str) -> str:
        self._prompting = False
        if self._editing and line != "EOF":  # cmd.Cmd's name for Ctrl+D
            self._editing.add(line)
        return line

    def postcmd(self, stop: bool, line: str) -> bool:
        self._prompting = not stop
        return stop

    def onecmd(self, line: str) -> bool:
        """Runs one line; True when the user asked to quit (cmd.Cmd's convention)."""
        try:
            words = shlex.split(line)
        except ValueError as exc:
            self._error("", InvalidInput(f"cannot read that line ({exc}); check the quotes"))
            return False
        if not words or words[0].startswith("#"):
            return False
        name, args = words[0].lower(), words[1:]
        if name in QUIT:
            if line == "EOF" and self._editing:  # Ctrl+D left the cursor on the prompt line
                print(file=self.out)
            return True
        handler = getattr(self, f"do_{ALIASES.get(name, name)}", None)
        if handler is None:
            self._error(
                name[:24],
                InvalidInput(f"unknown command {name[:24]!r}; type help for the list of commands"),
            )
            return False
        try:
            reply = handler(args)
        except PaykitError as err:
            self._error(name, err)
        else:
            if reply.failed:
                self._count(exit_codes.FAILED)
            self._emit({"command": name, "ok": not reply.failed, **reply.data}, reply.text)
        return False

    # -- output -----------------------------------------------------------------

    def _emit(self, obj: dict, text: str, *, stream: TextIO | None = None) -> None:
        with OUT_LOCK:
            if self.json:
                print(js.line(obj), file=self.out, flush=True)
            else:
                say(stream or self.out, text)

    def _error(self, name: str, err: PaykitError) -> None:
        code = exit_codes.code_of(err)
        self._count(code)
        hint = f" ({err.hint})" if err.hint else ""
        self._emit(
            {"command": name, "ok": False, "error": js.error_fields(err), "exit_code": code},
            f"Error: {err}{hint}",
            stream=self.err,
        )

    def _say_async(self, obj: dict, text: str) -> None:
        """A line printed without the user typing anything (from the outbox's thread)."""
        with OUT_LOCK:
            if self._prompting:
                print(file=self.out)
            self._emit(obj, text)
            if self._prompting:
                typed = self._editing.line_buffer() if self._editing else ""
                print(self.prompt + typed, end="", file=self.out, flush=True)

    def _completed(self, p: Payment) -> None:
        if not p.succeeded:
            self._count(exit_codes.FAILED)
        event = {"event": "completed", "ok": p.succeeded, "payment": js.plain(p)}
        self._say_async(event, describe_completion(p))

    def _noticed(self, n: notify.Notice) -> None:
        event = {"event": "notice", **js.plain(n)}
        self._say_async(event, describe_notice(n))

    # -- Tab completion (cmd.Cmd calls these through readline) ---------------------

    def completenames(self, text: str, *ignored) -> list[str]:
        return [n for n in COMMAND_NAMES if n.startswith(text.lower())]

    def completedefault(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:
        words = line[:begidx].split()
        name, position = (words[0].lower() if words else ""), len(words)
        if BANK_WORD.get(name) == position:
            return sorted(b for b in self.banks if b.startswith(text))
        if name == "help" and position == 1:
            return self.completenames(text)
        if name == "cancel" and position == 1:
            return [e.short_id for e in self.client.queue() if e.short_id.startswith(text)]
        return []

    complete_help = completedefault

    def _arity(self, name: str, args: list[str], low: int, high: int | None = None) -> None:
        high = low if high is None else high
        if not low <= len(args) <= high:
            raise InvalidInput(
                f"{name} takes {low if low == high else f'{low} to {high}'} arguments, "
                f"got {len(args)}; {usage(name)}"
            )

    def _saw(self, *banks: str) -> None:
        self.banks.update(b for b in banks if b)

    # -- commands: each returns its Reply or raises PaykitError -------------------------

    def do_register(self, args: list[str]) -> Reply:
        self._arity("register", args, 4, 5)
        user, password, account, opening = args[:4]
        bank = args[4] if len(args) == 5 else self.default_bank
        r = self.client.register(user, password, account, opening, bank)
        self._saw(r.bank)
        return Reply(
            f"Registration successful for user {r.username}", {"registration": js.plain(r)}
        )

    def do_auth(self, args: list[str]) -> Reply:
        self._arity("auth", args, 2)
        s = self.client.authenticate(*args)
        expires = _utc(s.expires_unix_ms, "%H:%M UTC")
        return Reply(
            f"Authentication successful for user {s.username} (session valid until {expires})",
            {"sign_in": js.plain(s)},
        )

    def do_logout(self, args: list[str]) -> Reply:
        self._arity("logout", args, 0)
        self.client.logout()
        return Reply("Signed out")

    def do_balance(self, args: list[str]) -> Reply:
        self._arity("balance", args, 0)
        b = self.client.balance()
        self.me = (b.bank, b.account_id)
        self._saw(b.bank)
        held = f", held {format_minor(b.held_minor)}" if b.held_minor else ""
        return Reply(
            f"Balance of {b.account_id} at {b.bank}: {format_minor(b.balance_minor)} "
            f"(available {format_minor(b.available_minor)}{held})",
            {"balance": js.plain(b)},
        )

    def do_pay(self, args: list[str]) -> Reply:
        self._arity("pay", args, 3)
        bank, account, amount = args
        p = self.client.pay(bank, account, amount)
        self._saw(bank)
        data = {"payment": js.plain(p)}
        if p.queued:
            return Reply(describe_queued(p, len(self.client.queue()) - 1), data)
        return Reply(describe_payment(p), data, failed=p.status == "failed")

    def do_queue(self, args: list[str]) -> Reply:
        self._arity("queue", args, 0)
        entries, paused = self.client.queue(), self.client.outbox_paused
        return Reply(
            queue_table(entries, paused=paused), {"queue": js.plain(entries), "paused": paused}
        )

    def do_cancel(self, args: list[str]) -> Reply:
        self._arity("cancel", args, 1)
        e = self.client.cancel(args[0])
        return Reply(
            f"Cancelled queued payment {e.short_id} ({format_minor(e.amount_minor)} to "
            f"{e.to_bank}/{e.to_account}); it was never sent, so no money moved",
            {"cancelled": js.plain(e)},
        )

    def do_payment(self, args: list[str]) -> Reply:
        self._arity("payment", args, 1)
        pid = args[0]
        if len(pid) < 32:  # a short id from the search table
            matches = [p for p in self.client.search(limit=1000) if p.payment_id.startswith(pid)]
            if len(matches) != 1:
                raise InvalidInput(
                    f"{len(matches)} of your payments start with {pid[:24]!r}; give more characters"
                )
            pid = matches[0].payment_id
        p = self.client.get_payment(pid)
        return Reply(
            f"Payment {p.payment_id}: {format_minor(p.amount_minor)} from "
            f"{p.from_bank}/{p.from_account} to {p.to_bank}/{p.to_account}, {p.status}"
            + (f" ({p.failure_reason}: {p.failure_message})" if p.failure_reason else "")
            + ("" if p.settled or p.status == "pending" else ", settlement in progress"),
            {"payment": js.plain(p)},
        )

    def do_search(self, args: list[str]) -> Reply:
        opts = _search_options(args)
        if not self.me[0]:
            b = self.client.balance()
            self.me = (b.bank, b.account_id)
        rows = self.client.search(
            status=opts.get("status", ""),
            counterparty=opts.get("counterparty", ""),
            min_amount=opts.get("min"),
            max_amount=opts.get("max"),
            since_unix_ms=date_ms(opts["since"], "since") if "since" in opts else 0,
            until_unix_ms=date_ms(opts["until"], "until") + 86_399_999 if "until" in opts else 0,
            limit=int(opts.get("limit") or 0),
        )
        self._saw(*(b for p in rows for b in (p.from_bank, p.to_bank)))
        return Reply(payment_table(rows, self.me), {"payments": js.plain(rows)})

    def do_help(self, args: list[str]) -> Reply:
        self._arity("help", args, 0, 1)
        if not args:
            listing = {n: {"usage": u, "description": d} for n, (u, d) in HELP.items()}
            return Reply(help_text(), {"commands": listing})
        name = ALIASES.get(args[0].lower(), args[0].lower())
        if name not in HELP:
            raise InvalidInput(f"no command {name[:24]!r}; type help for the list of commands")
        use, what = HELP[name]
        return Reply(help_text(name), {"usage": use, "description": what})

    def do_quit(self, args: list[str]) -> Reply:  # onecmd() stops before calling it
        return Reply("")


def _search_options(args: list[str]) -> dict[str, str]:
    opts: dict[str, str] = {}
    for arg in args:
        key, eq, value = arg.partition("=")
        if not eq or key not in SEARCH_KEYS:
            raise InvalidInput(f"search filter {arg[:24]!r} is not understood; {usage('search')}")
        opts[key] = value
    if opts.get("limit") and not opts["limit"].isdigit():
        raise InvalidInput(f"limit={opts['limit'][:12]!r} is not a whole number")
    return opts


def _utc(unix_ms: int, fmt: str) -> str:
    return dt.datetime.fromtimestamp(unix_ms / 1000, dt.UTC).strftime(fmt)
