"""What the client shell prints: the commands' usage lines, its tables and the sentences for a
payment's outcome, a queued payment and the outbox's notices (paykit.client.shell prints them).

Every reply line starts with [CLIENT]; every error says what was wrong and what to do.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import TextIO

from paykit.client import notify
from paykit.client import outbox as ob
from paykit.client.models import QUEUED_NO_ANSWER, QUEUED_SIGNED_OUT, QUEUED_UNREACHABLE, Payment
from paykit.core.errors import ConnectFailed, InvalidInput
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
    "help": ("help [COMMAND]", "the list of commands, or how to use one (help pay)"),
    "quit": ("quit", "leave (also: exit, Ctrl+D)"),
}
SEARCH_KEYS = ("status", "counterparty", "min", "max", "since", "until", "limit")


# Lines come from the user's commands and from the outbox's thread: one writer at a time.
OUT_LOCK = threading.RLock()


def say(out: TextIO, text: str) -> None:
    with OUT_LOCK:
        for line in text.splitlines() or [""]:
            print(f"[CLIENT] {line}".rstrip(), file=out, flush=True)


def usage(cmd: str) -> str:
    return f"usage: {HELP[cmd][0]}"


def date_ms(text: str, field: str) -> int:
    try:
        day = dt.datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=dt.UTC)
    except ValueError:
        raise InvalidInput(
            f"{field}={text[:24]!r} is not a date; write it like 2026-11-28"
        ) from None
    return int(day.timestamp() * 1000)


def help_text(cmd: str = "") -> str:
    """`help`: every command, one a line; `help CMD`: that command's usage and what it does."""
    if cmd:
        use, what = HELP[cmd]
        return f"usage: {use}\n  {what}"
    return "commands:\n" + "\n".join(
        f"  {u:44}  {d}" if len(u) <= 44 else f"  {u}\n  {'':44}  {d}" for u, d in HELP.values()
    )


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
