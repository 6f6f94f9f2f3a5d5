"""What the Python client returns, and amounts in Python.

Every PaymentClient method answers with a frozen dataclass of this module (Registration, SignIn,
Balance, Payment) or of paykit.client.outbox (Entry), never a protobuf message: one style to
learn, and a repr that never shows a token. docs/client.md lists them."""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from paykit.core.errors import InvalidAmount
from paykit.core.money import (
    OPENING_BALANCE_MAX_MINOR,
    check_amount_minor,
    format_minor,
    parse_amount,
)
from paykit.core.twopc import PaymentStatus
from paykit.v1 import payment_pb2 as pb

STATUS_NAMES = {
    pb.PAYMENT_STATUS_PENDING: PaymentStatus.PENDING,
    pb.PAYMENT_STATUS_SUCCEEDED: PaymentStatus.SUCCEEDED,
    pb.PAYMENT_STATUS_FAILED: PaymentStatus.FAILED,
}
STATUS_VALUES = {v: k for k, v in STATUS_NAMES.items()}
QUEUED = "queued"  # a Payment's status while it waits in the outbox
# Why pay() answered "queued" (Payment.queued_reason).
QUEUED_UNREACHABLE = "unreachable"  # the gateway could not be reached: nothing was sent
QUEUED_NO_ANSWER = "no_answer"  # sent, but no answer came back: resent with the same key
QUEUED_BEHIND = "behind"  # earlier queued payments go first (FIFO)
QUEUED_SIGNED_OUT = "signed_out"  # the gateway refused the token: sent after the next auth


# Colours of a status in a notebook view (green, red, amber); anything else stays black.
STATUS_COLOURS = {
    PaymentStatus.SUCCEEDED: "#1a7f37",
    PaymentStatus.FAILED: "#b00020",
    QUEUED: "#8a6d00",
    PaymentStatus.PENDING: "#8a6d00",
}


def html_view(title: str, fields: Mapping[str, object]) -> str:
    """A notebook view of one object: its title over a two-column table of its fields, escaped.

    What `_repr_html_` returns for the client's objects, so a notebook shows a small table
    instead of a dataclass repr; paykit.lab.table() shows many of them as one DataFrame."""
    rows = []
    for name, value in fields.items():
        text = html.escape(str(value))
        colour = STATUS_COLOURS.get(value) if name in ("status", "state") else None
        if colour:
            text = f'<b style="color:{colour}">{text}</b>'
        rows.append(f'<tr><th style="text-align:left">{html.escape(name)}</th><td>{text}</td></tr>')
    return f"<table><caption>{html.escape(title)}</caption>{''.join(rows)}</table>"


@dataclass(frozen=True)
class Registration:
    """What register() answers: the user and the account opened for them."""

    username: str
    bank: str
    account_id: str

    def as_row(self) -> dict[str, object]:
        return {"user": self.username, "bank": self.bank, "account": self.account_id}

    def _repr_html_(self) -> str:
        return html_view("Registration", self.as_row())

    @classmethod
    def from_pb(cls, r: pb.RegisterResponse) -> Registration:
        return cls(r.username, r.bank, r.account_id)


@dataclass(frozen=True)
class SignIn:
    """What authenticate() answers. The token is a bearer secret: kept out of repr and rows."""

    username: str
    expires_unix_ms: int
    token: str = field(default="", repr=False)

    def as_row(self) -> dict[str, object]:
        return {"user": self.username, "expires_unix_ms": self.expires_unix_ms}

    def _repr_html_(self) -> str:
        return html_view("Signed in", self.as_row())

    @classmethod
    def from_pb(cls, r: pb.AuthenticateResponse) -> SignIn:
        return cls(r.username, r.expires_unix_ms, r.token)


@dataclass(frozen=True)
class Balance:
    bank: str
    account_id: str
    balance_minor: int
    held_minor: int
    available_minor: int

    def as_row(self) -> dict[str, object]:
        """The fields a person reads, amounts as text (a notebook row)."""
        return {
            "bank": self.bank,
            "account": self.account_id,
            "balance": format_minor(self.balance_minor),
            "held": format_minor(self.held_minor),
            "available": format_minor(self.available_minor),
        }

    def _repr_html_(self) -> str:
        return html_view("Balance", self.as_row())


@dataclass(frozen=True)
class Payment:
    """One payment as the gateway reports it. status: pending | succeeded | failed, or queued
    (in the outbox, not yet answered: outbox_id names it, queued_reason says why)."""

    payment_id: str
    status: str
    from_bank: str
    from_account: str
    to_bank: str
    to_account: str
    amount_minor: int
    failure_reason: str = ""
    failure_message: str = ""
    created_unix_ms: int = 0
    idempotency_key: str = ""
    settled: bool = False
    outbox_id: str = ""
    queued_reason: str = ""

    @property
    def succeeded(self) -> bool:
        return self.status == PaymentStatus.SUCCEEDED

    @property
    def queued(self) -> bool:
        return self.status == QUEUED

    def as_row(self) -> dict[str, object]:
        """The fields a person reads, amounts as text (a notebook row)."""
        row: dict[str, object] = {
            "payment": self.payment_id[:8] or "-",
            "status": str(self.status),
            "from": f"{self.from_bank}/{self.from_account}".strip("/"),
            "to": f"{self.to_bank}/{self.to_account}",
            "amount": format_minor(self.amount_minor),
            "reason": self.failure_reason,
            "settled": self.settled,
        }
        if self.queued:
            row.update(outbox_id=self.outbox_id, queued_reason=self.queued_reason)
        return row

    def _repr_html_(self) -> str:
        return html_view("Payment", self.as_row())

    @classmethod
    def from_pb(cls, p: pb.Payment) -> Payment:
        return cls(
            p.payment_id,
            STATUS_NAMES.get(p.status, PaymentStatus.PENDING),
            p.from_bank,
            p.from_account,
            p.to_bank,
            p.to_account,
            p.amount_minor,
            p.failure_reason,
            p.failure_message,
            p.created_unix_ms,
            p.idempotency_key,
            p.settled,
        )


def to_minor(
    amount: str | Decimal | int | None, amount_minor: int | None, *, opening: bool = False
) -> int:
    """Amounts from Python: text or Decimal in major units, or amount_minor=. Never float."""
    limit = {"allow_zero": True, "max_minor": OPENING_BALANCE_MAX_MINOR} if opening else {}
    if amount_minor is not None:
        if amount is not None:
            raise InvalidAmount("give amount or amount_minor, not both")
        return check_amount_minor(amount_minor, **limit)
    if isinstance(amount, float):
        raise InvalidAmount(
            "amounts are never floats: pass text like '12.50', a Decimal, or amount_minor=1250"
        )
    if amount is None:
        raise InvalidAmount("an amount is needed")
    return parse_amount(str(amount), **limit)
