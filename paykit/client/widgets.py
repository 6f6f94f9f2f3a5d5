"""PaymentForm: an ipywidgets payment form (bank, recipient, amount, Pay) bound to a PaymentClient
(lesson 12)."""

from __future__ import annotations

import html
import uuid
from collections.abc import Sequence

import ipywidgets as widgets

from paykit.client.api import RETRYABLE, Payment, PaymentClient, to_minor
from paykit.core.errors import InvalidInput, PaykitError
from paykit.core.money import format_minor

# CSS classes on the widgets, so a browser test (or a stylesheet) can find them.
CSS_PREFIX = "paykit-form"


class PaymentForm:
    """A payment form for a signed-in client: choose the bank, type recipient and amount, press Pay.

    One intended payment keeps one idempotency key: if a click ends with the outcome unknown
    (the gateway did not answer), pressing Pay again with the same fields reuses the key, so
    the payment can never happen twice. Any known outcome, or changed fields, starts a new one.
    """

    def __init__(self, client: PaymentClient, banks: Sequence[str]) -> None:
        if not banks:
            raise ValueError("the form needs at least one bank to pay to")
        self.client = client
        self.bank = widgets.Dropdown(options=list(banks), value=banks[0], description="Bank")
        self.recipient = widgets.Text(
            description="Recipient", placeholder="account id, e.g. recipient123"
        )
        self.amount = widgets.Text(description="Amount", placeholder="e.g. 12.50")
        self.pay_button = widgets.Button(
            description="Pay", button_style="primary", icon="paper-plane"
        )
        self.result = widgets.HTML(value="")
        self.balance = widgets.HTML(value="")
        for name in ("bank", "recipient", "amount", "pay_button", "result", "balance"):
            getattr(self, name).add_class(f"{CSS_PREFIX}-{name.replace('_', '-')}")
        self.pay_button.on_click(self._on_pay)
        self.box = widgets.VBox(
            [self.balance, self.bank, self.recipient, self.amount, self.pay_button, self.result]
        )
        self.last_payment: Payment | None = None
        self._unknown: tuple[tuple[str, str, int], str] | None = (
            None  # (fields, key) of an unknown outcome
        )
        self._queued_keys: set[str] = set()  # payments this form left in the client's outbox
        client.on_complete(self._on_complete)
        self.refresh_balance()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.box)

    def refresh_balance(self) -> None:
        """Shows the signed-in user's balance (and what is held, if anything)."""
        try:
            b = self.client.balance()
        except PaykitError as err:
            self.balance.value = f"<b>Balance unavailable:</b> {html.escape(str(err))}"
            return
        held = f", held {format_minor(b.held_minor)}" if b.held_minor else ""
        self.balance.value = (
            f"<b>Your balance</b> ({html.escape(b.bank)}/{html.escape(b.account_id)}): "
            f"{format_minor(b.balance_minor)} (available {format_minor(b.available_minor)}{held})"
        )

    def _say(self, kind: str, text: str) -> None:
        colour = {"ok": "green", "error": "#b00020", "pending": "#8a6d00"}[kind]
        self.result.value = (
            f'<span class="{CSS_PREFIX}-{kind}" style="color:{colour}">{html.escape(text)}</span>'
        )

    def _on_pay(self, _button: widgets.Button | None = None) -> None:
        self.pay_button.disabled = True  # no second click while this payment is on its way
        try:
            self.submit()
        finally:
            self.pay_button.disabled = False

    def submit(self) -> Payment | None:
        """Pays what the fields say and shows the outcome; returns the payment, or None on an
        error."""
        try:
            amount_minor = to_minor(self.amount.value.strip(), None)
            recipient = self.recipient.value.strip()
            if not recipient:
                raise InvalidInput("a recipient account is needed, e.g. recipient123")
        except PaykitError as err:
            self._say("error", f"Error: {err}. Nothing was sent.")
            return None
        fields = (self.bank.value, recipient, amount_minor)
        key = (
            self._unknown[1] if self._unknown and self._unknown[0] == fields else str(uuid.uuid4())
        )
        try:
            payment = self.client.pay(
                self.bank.value, recipient, amount_minor=amount_minor, key=key
            )
        except PaykitError as err:
            unknown = isinstance(err, RETRYABLE)  # the gateway may or may not have run it
            self._unknown = (fields, key) if unknown else None
            retry = (
                " The outcome is unknown: press Pay again to retry safely (same key)."
                if unknown
                else ""
            )
            self._say("error", f"Error: {err}.{retry}")
            return None
        self._unknown = None
        self.last_payment = payment
        if payment.queued:
            self._queued_keys.add(key)
        self._say(*describe(payment))
        self.refresh_balance()
        return payment

    def _on_complete(self, payment: Payment) -> None:
        """A payment this form queued (gateway unreachable) has ended: show how (runs on the
        client's notifier thread)."""
        if payment.idempotency_key not in self._queued_keys:
            return
        self._queued_keys.discard(payment.idempotency_key)
        self.last_payment = payment
        self._say(*describe(payment))
        self.refresh_balance()


def describe(payment: Payment) -> tuple[str, str]:
    """(kind, message) for a payment's outcome, as the form shows it."""
    what = f"{format_minor(payment.amount_minor)} to {payment.to_bank}/{payment.to_account}"
    if payment.succeeded:
        return "ok", f"Payment succeeded: {what} (id {payment.payment_id[:8]})."
    if payment.status == "failed":
        reason = payment.failure_message or payment.failure_reason
        return "error", f"Payment failed: {reason}. No money moved."
    if payment.queued:
        return (
            "pending",
            f"Gateway unreachable: payment of {what} queued; its outcome will show here when sent.",
        )
    return (
        "pending",
        f"Payment of {what} is {payment.status}; you will see its outcome here and in search.",
    )
