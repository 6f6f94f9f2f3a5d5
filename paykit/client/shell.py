"""The client's command language (the seed's session), used by `paykit client` and the demo.

Every reply line starts with [CLIENT]; every error says what was wrong and what to do.
"""

from __future__ import annotations

import datetime as dt
import shlex
import sys
import threading
from collections.abc import Callable, Iterable
from typing import TextIO

from paykit.client import notify
from paykit.client import outbox as ob
from paykit.client.api import PaymentClient
from paykit.client.models import QUEUED_NO_ANSWER, QUEUED_SIGNED_OUT, QUEUED_UNREACHABLE, Payment
from paykit.core.errors import ConnectFailed, InvalidInput, PaykitError
from paykit.core.money import format_minor

HELP = {
    "register": (
        "register USER PASSWORD ACCOUNT OPENING_BALANCE [BANK]",
        "create a user and open ACCOUNT at BANK with an opening balance",
    ),
    "auth": ("auth USER PASSWORD", "sign in (needed before balance, pay, search)"),
    "logout": ("logout", "sign out: the token stops working"),
    "balance": ("balance", "your account's balance and what is available to pay"),
    "pay": (
        "pay BANK ACCOUNT AMOUNT",
        "pay AMOUNT (like 200 or 12.50) from your account to ACCOUNT at BANK "
        "(queued and sent later if the gateway is unreachable)",
    ),
    "queue": ("queue", "payments waiting to be sent, oldest first (also: pending)"),
    "cancel": ("cancel ID", "cancel a queued payment that has not been sent yet (ID from queue)"),
    "payment": (
        "payment ID",
        "one of your payments, by id (or its first 8 characters from search)",
    ),
    "search": (
        (
            "search [status=succeeded|failed|pending] [counterparty=BANK/ACCOUNT] [min=AMOUNT] "
            "[max=AMOUNT] "
            "[since=YYYY-MM-DD] [until=YYYY-MM-DD] [limit=N]"
        ),
        "your payment history, newest first",
    ),
    "help": ("help", "this list"),
    "quit": ("quit", "leave (also: exit, Ctrl+D)"),
}
SEARCH_KEYS = ("status", "counterparty", "min", "max", "since", "until", "limit")


# Lines come from the user's commands and from the outbox's thread: one writer at a time.
_OUT_LOCK = threading.RLock()


def say(out: TextIO, text: str) -> None:
    with _OUT_LOCK:
        for line in text.splitlines() or [""]:
            print(f"[CLIENT] {line}".rstrip(), file=out, flush=True)


def _usage(cmd: str) -> str:
    return f"usage: {HELP[cmd][0]}"


def _date_ms(text: str, field: str) -> int:
    try:
        day = dt.datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=dt.UTC)
    except ValueError:
        raise InvalidInput(f"{field}={text!r} is not a date; write it like 2026-11-28") from None
    return int(day.timestamp() * 1000)


def payment_table(rows: list[Payment], me: tuple[str, str]) -> str:
    """A readable table of payments from the point of view of account `me` (bank, account)."""
    if not rows:
        return "no payments match"
    header = (
        f"{'id':8}  {'created (UTC)':19}  {'dir':3}  {'counterparty':24}  {'amount':>12}  "
        f"{'status':9}  reason"
    )
    lines = [f"{len(rows)} payment{'s' * (len(rows) != 1)}", header]
    for p in rows:
        outgoing = (p.from_bank, p.from_account) == me
        cp = f"{p.to_bank}/{p.to_account}" if outgoing else f"{p.from_bank}/{p.from_account}"
        when = dt.datetime.fromtimestamp(p.created_unix_ms / 1000, dt.UTC).strftime(
            "%Y-%m-%d %H:%M:%S"
        )
        lines.append(
            f"{p.payment_id[:8]:8}  {when:19}  {'out' if outgoing else 'in':3}  {cp[:24]:24}  "
            f"{format_minor(p.amount_minor):>12}  {p.status:9}  {p.failure_reason}"
        )
    return "\n".join(lines)


class Shell:
    """Runs commands against a PaymentClient and prints [CLIENT] lines."""

    def __init__(
        self, client: PaymentClient, out: TextIO = sys.stdout, *, default_bank: str = ""
    ) -> None:
        self.client = client
        self.out = out
        self.default_bank = default_bank
        self.me: tuple[str, str] = ("", "")
        self.commands: dict[str, Callable[[list[str]], None]] = {
            "register": self.register,
            "auth": self.auth,
            "logout": self.logout,
            "balance": self.balance,
            "pay": self.pay,
            "payment": self.payment,
            "search": self.search,
            "help": self.help,
            "queue": self.queue,
            "pending": self.queue,
            "cancel": self.cancel,
        }
        # Queued payments end on the outbox's thread: print their outcome as it happens.
        self._prompt = False  # whether a "> " prompt is showing (an async line reprints it)
        client.on_complete(self._completed)
        client.on_notice(self._noticed)

    def run_line(self, line: str) -> bool:
        """Runs one command line; returns False when the user asked to quit."""
        try:
            words = shlex.split(line)
        except ValueError as exc:
            say(self.out, f"Error: cannot read that line ({exc}); check the quotes")
            return True
        if not words or words[0].startswith("#"):
            return True
        cmd, args = words[0].lower(), words[1:]
        if cmd in ("quit", "exit"):
            return False
        handler = self.commands.get(cmd)
        if handler is None:
            say(self.out, f"Error: unknown command {cmd!r}; type help for the list of commands")
            return True
        try:
            handler(args)
        except PaykitError as err:
            hint = f" ({err.hint})" if err.hint else ""
            say(self.out, f"Error: {err}{hint}")
        return True

    def run(self, lines: Iterable[str], *, prompt: bool = False) -> None:
        """Runs commands until quit or the end of input; then says how many payments are still
        queued."""
        self._prompt = prompt
        if prompt:
            print("> ", end="", file=self.out, flush=True)
        for line in lines:
            if not self.run_line(line):
                break
            if prompt:
                print("> ", end="", file=self.out, flush=True)
        self._prompt = False
        n = self.client.pending_count()
        if n:
            say(
                self.out,
                f"{n} payment{'s are' if n != 1 else ' is'} still queued; "
                f"{'they' if n != 1 else 'it'} "
                "will be sent when you start the client again and sign in as "
                f"{self.client.username}",
            )

    def _say_async(self, text: str) -> None:
        """A line printed without the user typing anything (from the outbox's thread)."""
        with _OUT_LOCK:
            if self._prompt:
                print(file=self.out)
            say(self.out, text)
            if self._prompt:
                print("> ", end="", file=self.out, flush=True)

    def _completed(self, p: Payment) -> None:
        self._say_async(describe_completion(p))

    def _noticed(self, n: notify.Notice) -> None:
        self._say_async(describe_notice(n))

    def _arity(self, cmd: str, args: list[str], low: int, high: int | None = None) -> None:
        high = low if high is None else high
        if not low <= len(args) <= high:
            raise InvalidInput(
                f"{cmd} takes {low if low == high else f'{low} to {high}'} arguments, "
                f"got {len(args)}; {_usage(cmd)}"
            )

    # -- commands -------------------------------------------------------------

    def register(self, args: list[str]) -> None:
        self._arity("register", args, 4, 5)
        user, password, account, opening = args[:4]
        bank = args[4] if len(args) == 5 else self.default_bank
        reply = self.client.register(user, password, account, opening, bank)
        say(self.out, f"Registration successful for user {reply.username}")

    def auth(self, args: list[str]) -> None:
        self._arity("auth", args, 2)
        reply = self.client.authenticate(*args)
        expires = dt.datetime.fromtimestamp(reply.expires_unix_ms / 1000, dt.UTC).strftime(
            "%H:%M UTC"
        )
        say(
            self.out,
            f"Authentication successful for user {reply.username} (session valid until {expires})",
        )

    def logout(self, args: list[str]) -> None:
        self._arity("logout", args, 0)
        self.client.logout()
        say(self.out, "Signed out")

    def balance(self, args: list[str]) -> None:
        self._arity("balance", args, 0)
        b = self.client.balance()
        self.me = (b.bank, b.account_id)
        held = f", held {format_minor(b.held_minor)}" if b.held_minor else ""
        say(
            self.out,
            f"Balance of {b.account_id} at {b.bank}: {format_minor(b.balance_minor)} "
            f"(available {format_minor(b.available_minor)}{held})",
        )

    def pay(self, args: list[str]) -> None:
        self._arity("pay", args, 3)
        bank, account, amount = args
        p = self.client.pay(bank, account, amount)
        if p.queued:
            ahead = len(self.client.queue()) - 1
            say(self.out, describe_queued(p, ahead))
        else:
            say(self.out, describe_payment(p))

    def queue(self, args: list[str]) -> None:
        self._arity("queue", args, 0)
        say(self.out, queue_table(self.client.queue(), paused=self.client.outbox_paused))

    def cancel(self, args: list[str]) -> None:
        self._arity("cancel", args, 1)
        e = self.client.cancel(args[0])
        say(
            self.out,
            f"Cancelled queued payment {e.short_id} ({format_minor(e.amount_minor)} to "
            f"{e.to_bank}/{e.to_account}); it was never sent, so no money moved",
        )

    def payment(self, args: list[str]) -> None:
        self._arity("payment", args, 1)
        pid = args[0]
        if len(pid) < 32:  # a short id from the search table
            matches = [p for p in self.client.search(limit=1000) if p.payment_id.startswith(pid)]
            if len(matches) != 1:
                raise InvalidInput(
                    f"{len(matches)} of your payments start with {pid!r}; give more characters"
                )
            pid = matches[0].payment_id
        p = self.client.get_payment(pid)
        say(
            self.out,
            f"Payment {p.payment_id}: {format_minor(p.amount_minor)} from "
            f"{p.from_bank}/{p.from_account} "
            f"to {p.to_bank}/{p.to_account}, {p.status}"
            + (f" ({p.failure_reason}: {p.failure_message})" if p.failure_reason else "")
            + ("" if p.settled or p.status == "pending" else ", settlement in progress"),
        )

    def search(self, args: list[str]) -> None:
        opts: dict[str, str] = {}
        for arg in args:
            key, eq, value = arg.partition("=")
            if not eq or key not in SEARCH_KEYS:
                raise InvalidInput(f"search filter {arg!r} is not understood; {_usage('search')}")
            opts[key] = value
        if not self.me[0]:
            b = self.client.balance()
            self.me = (b.bank, b.account_id)
        if opts.get("limit") and not opts["limit"].isdigit():
            raise InvalidInput(f"limit={opts['limit']!r} is not a whole number")
        rows = self.client.search(
            status=opts.get("status", ""),
            counterparty=opts.get("counterparty", ""),
            min_amount=opts.get("min"),
            max_amount=opts.get("max"),
            since_unix_ms=_date_ms(opts["since"], "since") if "since" in opts else 0,
            until_unix_ms=_date_ms(opts["until"], "until") + 86_399_999 if "until" in opts else 0,
            limit=int(opts.get("limit") or 0),
        )
        say(self.out, payment_table(rows, self.me))

    def help(self, args: list[str]) -> None:
        say(
            self.out,
            "commands:\n"
            + "\n".join(
                f"  {u:44}  {d}" if len(u) <= 44 else f"  {u}\n  {'':44}  {d}"
                for u, d in HELP.values()
            ),
        )


def describe_queued(p: Payment, ahead: int) -> str:
    """What pay says when the payment went into the outbox instead of being answered now."""
    what = f"id {p.outbox_id}, {format_minor(p.amount_minor)} to {p.to_bank}/{p.to_account}"
    if p.queued_reason == QUEUED_UNREACHABLE:
        return (
            f"Gateway unreachable: payment queued ({what}); it will be sent when the gateway "
            "is back"
        )
    if p.queued_reason == QUEUED_NO_ANSWER:
        return (
            f"No answer from the gateway: payment queued ({what}); it will be resent with the same "
            "idempotency key, so it cannot be paid twice"
        )
    if p.queued_reason == QUEUED_SIGNED_OUT:
        return (
            f"The gateway did not accept your session: payment queued ({what}); "
            "sign in again with: auth USER PASSWORD"
        )
    return (
        f"Payment queued ({what}) behind {ahead} earlier payment{'s' * (ahead != 1)}; "
        "they are sent in order"
    )


def describe_notice(n: notify.Notice) -> str:
    """The line printed when sending queued payments pauses or resumes."""
    what = f"{n.pending} queued payment{'s' * (n.pending != 1)}"
    cause = n.message.rstrip(".")
    if n.kind == notify.RESUMED_SESSION:
        return f"Resuming {what} from an earlier session"
    if n.kind == notify.RESUMED_AUTH:
        return f"Signed in again: sending {what}"
    if n.kind == notify.PAUSED_AUTH:
        return f"Sending {what} is paused: {cause}. Sign in again with: auth USER PASSWORD"
    return (
        f"Cannot send {what}: the TLS handshake with the gateway failed ({cause}). They stay "
        "queued "
        "(cancel with: cancel ID); fix the client's certificates (--pki-dir) and start the client "
        "again"
    )


def describe_completion(p: Payment) -> str:
    """The line printed when a queued payment ends."""
    if p.succeeded:
        return f"Queued payment {p.outbox_id}: Payment processed successfully"
    why = p.failure_message or p.failure_reason
    return f"Queued payment {p.outbox_id} failed: {why}. No money moved."


def queue_table(entries: list, *, paused: str = "") -> str:
    """The outbox's waiting payments (paykit.outbox.Entry), oldest (next to send) first."""
    if not entries:
        return "no queued payments"
    lines = [
        f"{len(entries)} queued payment{'s' * (len(entries) != 1)}"
        + {
            ob.AUTH: " (paused: sign in again with auth USER PASSWORD)",
            ob.TLS: " (paused: TLS failure; fix the certificates and restart)",
        }.get(paused, "")
    ]
    lines.append(
        f"{'id':8}  {'queued (UTC)':19}  {'to':24}  {'amount':>12}  {'state':7}  {'tries':>5}  note"
    )
    for e in entries:
        when = dt.datetime.fromtimestamp(e.created_unix_ms / 1000, dt.UTC).strftime(
            "%Y-%m-%d %H:%M:%S"
        )
        note = "sent, no answer yet: cannot cancel" if e.maybe_sent else "not sent yet: can cancel"
        if e.last_error:
            note += f"; last try: {_short_error(e)}"
        to = f"{e.to_bank}/{e.to_account}"
        lines.append(
            f"{e.short_id:8}  {when:19}  {to[:24]:24}  {format_minor(e.amount_minor):>12}  "
            f"{e.state:7}  "
            f"{e.attempts:>5}  {note}"
        )
    return "\n".join(lines)


def _short_error(e: ob.Entry) -> str:
    """gRPC's connect errors are long; the last clause ("Connection refused") is the news."""
    if e.last_reason == ConnectFailed.reason:
        return "gateway unreachable (" + e.last_error.rstrip(")").rsplit(": ", 1)[-1] + ")"
    return e.last_error if len(e.last_error) <= 60 else e.last_error[:57] + "..."


def describe_payment(p: Payment) -> str:
    """The seed's line for a payment's outcome."""
    if p.succeeded:
        return "Payment Response: Payment processed successfully"
    if p.status == "failed":
        return f"Payment failed: {p.failure_message or p.failure_reason}. No money moved."
    return f"Payment {p.payment_id[:8]} is pending; check it with: payment {p.payment_id[:8]}"
