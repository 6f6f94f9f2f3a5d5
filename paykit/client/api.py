"""PaymentClient: the Python API of the gateway, for scripts, notebooks, the CLI and tests.

It puts together one job per module: the transport and session (paykit.client.session),
the durable outbox (outbox), the drainer that resends from it (drainer), the channel's
connectivity (watch) and the notifications (notify). A payment's idempotency key is made
once per intended payment and reused on every retry, so a retry can never pay twice:
payments are stored in the outbox before the first send, sent at once when the gateway
answers, else queued and resent in the background (see docs/offline.md).

Threads: any number may call the API. Sends are one at a time per client (the drainer's
send slot), so payments leave in order; listeners run on the notifier's own thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Self

from paykit.client import outbox as ob
from paykit.client.drainer import DEFAULT_BACKOFF, Drainer, classify
from paykit.client.log import open_client_log
from paykit.client.models import (
    QUEUED,
    QUEUED_BEHIND,
    QUEUED_NO_ANSWER,
    QUEUED_SIGNED_OUT,
    QUEUED_UNREACHABLE,
    STATUS_NAMES,
    STATUS_VALUES,
    Balance,
    Payment,
    Registration,
    SignIn,
    to_minor,
)
from paykit.client.notify import (
    PAUSED_AUTH,
    PAUSED_TLS,
    RESUMED_AUTH,
    RESUMED_SESSION,
    Notice,
    Notifier,
)
from paykit.client.session import RETRYABLE, GatewaySession
from paykit.client.watch import ChannelWatch
from paykit.core.clock import Backoff
from paykit.core.config import CALL_TIMEOUT_S, TLSFiles, state_dir
from paykit.core.errors import (
    IdempotencyKeyExpired,
    InvalidInput,
    PaykitError,
    TLSFailure,
    Unavailable,
    field_of,
    from_reason,
)
from paykit.core.money import parse_amount
from paykit.rpc.pki import CLIENT_CN, load_identity
from paykit.v1 import payment_pb2 as pb

__all__ = ["RETRYABLE", "Balance", "Payment", "PaymentClient", "Registration", "SignIn", "to_minor"]

# pay() waits this long for a connection before queuing, so it answers at once when the
# gateway is down (a refused connection shows within milliseconds; this bounds a hung one).
CONNECT_CHECK_S = 1.0
CLOSE_WAIT_S = 5.0  # close() waits this long for the drainer's send in flight to end


class PaymentClient:
    """A signed-in session with one gateway, over mutual TLS, with a durable outbox for payments.

    outbox_dir: where each user's outbox lives (default <state folder>/outbox);
    backoff: pauses between resends of a queued payment (default 0.5 s doubling to 30 s).
    """

    def __init__(
        self,
        gateway: str,
        *,
        tls: TLSFiles | None = None,
        pki_dir: Path | None = None,
        timeout_s: float = CALL_TIMEOUT_S,
        interceptors: tuple = (),
        log_path: Path | None = None,
        outbox_dir: Path | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
    ) -> None:
        self.gateway = gateway
        self.outbox_dir = Path(outbox_dir) if outbox_dir else state_dir() / "outbox"
        self.backoff = backoff
        # pki_dir: the client's bundle, or a PKI folder holding one (never issued here)
        self.tls = tls or load_identity(
            Path(pki_dir) if pki_dir else state_dir() / "pki", CLIENT_CN, issue=False
        )
        # log_path: one `rpc.client` JSON line per call attempt (see paykit.client.log).
        self._log = open_client_log(log_path, target=gateway) if log_path else None
        self.session = GatewaySession(
            gateway,
            self.tls,
            timeout_s=timeout_s,
            interceptors=(*interceptors, self._log) if self._log else interceptors,
        )
        self._notifier = Notifier()
        self._watch: ChannelWatch | None = None
        # The outbox and its drainer: opened at the first sign-in or payment, swapped when another
        # user signs in, closed by close(). The lock guards the swap, not the sends.
        self._outbox_lock = threading.Lock()
        self._outbox: ob.Outbox | None = None
        self._drainer: Drainer | None = None
        self._closed = False

    @property
    def token(self) -> str:
        return self.session.token

    @token.setter
    def token(self, value: str) -> None:
        self.session.token = value

    @property
    def username(self) -> str:
        return self.session.username

    @property
    def timeout_s(self) -> float:
        return self.session.timeout_s

    @timeout_s.setter
    def timeout_s(self, value: float) -> None:
        self.session.timeout_s = value

    def close(self) -> None:
        """Stops the drainer (a send in flight is cancelled and stays queued), then the channel.
        Readers blocked in completions() return. Safe to call from a listener."""
        with self._outbox_lock:
            self._closed = True  # nothing opens the outbox again
        self._notifier.close()
        drainer = self._drainer
        if drainer:
            drainer.stop(0.2)  # an idle drainer exits at once; one mid-send is cancelled below
        if self._watch:
            self._watch.close()
        self.session.close()
        self._close_outbox()
        if self._log:
            self._log.log.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the API ----------------------------------------------------------------

    def register(
        self,
        username: str,
        password: str,
        account_id: str,
        opening_balance: str | Decimal | int | None = None,
        bank: str = "",
        *,
        opening_balance_minor: int | None = None,
    ) -> Registration:
        """Creates a user and opens their account (bank "": the gateway's first bank)."""
        minor = to_minor(opening_balance, opening_balance_minor, opening=True)
        return Registration.from_pb(
            self.session.register(username, password, account_id, minor, bank)
        )

    def authenticate(self, username: str, password: str) -> SignIn:
        """Signs in; if this user has an outbox with payments waiting, sending them resumes."""
        before = self.session.username
        reply = self.session.authenticate(username, password)
        if self._outbox is not None and reply.username != before:
            self._close_outbox()  # another user: their outbox, not this one
        drainer = self._drainer
        if drainer is not None and drainer.paused == ob.AUTH:
            drainer.resume()
            self._notice(RESUMED_AUTH)
        else:
            self._open_outbox(create=False)
        return SignIn.from_pb(reply)

    def logout(self) -> None:
        self.session.logout()
        if self._drainer is not None:
            self._drainer.pause(ob.AUTH, "you signed out")

    def balance(self) -> Balance:
        self.session.require_auth()
        r = self.session.retrying("GetBalance", pb.GetBalanceRequest())
        return Balance(r.bank, r.account_id, r.balance_minor, r.held_minor, r.available_minor)

    def pay(
        self,
        to_bank: str,
        to_account: str,
        amount: str | Decimal | int | None = None,
        *,
        amount_minor: int | None = None,
        key: str | None = None,
    ) -> Payment:
        """Pays from your own account, through the outbox (payment and key are on disk first).

        Returns the gateway's answer (status succeeded or failed) when it answers now; else a
        Payment with status "queued" at once, and the drainer resends it with the same key:
        on_complete() and completions() report how it ended. Refusals of the request itself
        (unknown bank, bad amount, ...) raise, as does a TLS failure (TLSFailure).
        """
        self.session.require_auth()
        with field_of("amount_minor"):
            minor = to_minor(amount, amount_minor)
        box, drainer = self._open_outbox(create=True)
        ready = self._watch.wait_settled(CONNECT_CHECK_S)
        with drainer.sending():  # one send at a time: the drainer waits, and FIFO holds
            added = box.add(to_bank, to_account, minor, key=key)
            if not added.claimed:
                return self._not_claimed(added.entry, drainer)
            return self._send_claimed(added.entry, box, drainer, ready)

    def _send_claimed(
        self, entry: ob.Entry, box: ob.Outbox, drainer: Drainer, ready: bool
    ) -> Payment:
        """Sends an entry add() claimed for this call and applies the answer (in the send slot)."""
        generation = self._watch.generation()
        try:
            # Not READY: one fail-fast try with a short deadline tells "down" from "wrong
            # certificate".
            attempt = self._send_entry(
                entry, timeout_s=self.timeout_s if ready else CONNECT_CHECK_S
            )
        except BaseException:
            # interrupted (Ctrl+C, a kernel interrupt): it may have left, resend it
            box.release(entry.seq, ob.Attempt(ob.RETRY, message="the send was interrupted"))
            drainer.wake()
            raise
        if attempt.kind == ob.TLS:  # nothing was sent (the handshake failed): end it, say why
            drainer.apply(
                entry, replace(attempt, kind=ob.DONE, status=ob.FAILED), generation, reported=True
            )
            drainer.pause(ob.TLS, attempt.message)
            raise TLSFailure(
                f"TLS handshake with the gateway {self.gateway} failed; payment {entry.short_id} "
                f"was not sent ({attempt.message})"
            )
        done = drainer.apply(entry, attempt, generation, reported=True)
        if attempt.kind == ob.DONE and not attempt.payment:
            # the gateway refused the request itself
            raise from_reason(attempt.reason)(attempt.message, metadata=attempt.metadata)
        if attempt.kind == ob.DONE:
            return self._payment_of(done)
        why = {ob.AUTH: QUEUED_SIGNED_OUT}.get(
            attempt.kind, QUEUED_NO_ANSWER if attempt.maybe_sent else QUEUED_UNREACHABLE
        )
        return replace(self._payment_of(done), queued_reason=why)

    def _not_claimed(self, entry: ob.Entry, drainer: Drainer) -> Payment:
        """pay() of a payment it may not send now: queued behind others, or a retry of a known
        key."""
        if entry.state in ob.PENDING_STATES:
            # earlier payments wait: this one goes after them (FIFO)
            drainer.wake()
            return replace(self._payment_of(entry), queued_reason=QUEUED_BEHIND)
        if entry.state == ob.CANCELLED:
            raise InvalidInput(
                f"the payment with key {entry.key} was cancelled; make a new key to pay again"
            )
        if not entry.payment:  # a retry of a payment the gateway refused: the same refusal
            raise from_reason(entry.failure_reason)(entry.failure_message)
        return self._payment_of(entry)  # a retry of a finished payment: the gateway's stored answer

    # -- the outbox ---------------------------------------------------------------

    def queue(self) -> list[ob.Entry]:
        """Payments waiting in the outbox, oldest (next to send) first."""
        box = self._outbox
        return box.pending() if box else []

    def pending_count(self) -> int:
        return len(self.queue())

    def cancel(self, outbox_id: str) -> ob.Entry:
        """Cancels a queued payment that has never been sent (so the gateway cannot have it)."""
        box = self._outbox
        if box is None:
            raise InvalidInput(f"no queued payment {outbox_id[:16]!r}; list them with: queue")
        return box.cancel(outbox_id)

    @property
    def outbox_paused(self) -> str:
        """Why queued payments are not being sent: "" (they are), "auth" or "tls"."""
        drainer = self._drainer
        return drainer.paused if drainer else ""

    def on_complete(self, fn: Callable[[Payment], None]) -> Callable[[Payment], None]:
        """Calls fn(payment) when a queued payment ends (on the notifier's thread); usable as a
        decorator."""
        self._notifier.on_complete(fn)
        return fn

    def on_notice(self, fn: Callable[[Notice], None]) -> Callable[[Notice], None]:
        """Calls fn(notice) when sending queued payments pauses or resumes
        (paykit.client.notify)."""
        self._notifier.on_notice(fn)
        return fn

    def completions(self, timeout_s: float | None = None) -> Iterator[Payment]:
        """Yields each queued payment's outcome as it ends; stops after timeout_s with none new,
        or when the client is closed."""
        return self._notifier.completions(timeout_s)

    def _open_outbox(self, *, create: bool) -> tuple[ob.Outbox, Drainer] | None:
        with self._outbox_lock:
            if self._closed:
                raise Unavailable("this client is closed; make a new one to pay")
            if self._outbox is None:
                path = ob.outbox_path(self.outbox_dir, self.gateway, self.session.username)
                if not create and not path.exists():
                    return None
                box = ob.Outbox(path)
                if self._watch is None:
                    self._watch = ChannelWatch(self.session.raw_channel, self._wake_drainer)
                drainer = Drainer(
                    box,
                    self._watch,
                    self._send_entry,
                    on_done=self._complete,
                    on_pause=self._paused,
                    backoff=self.backoff,
                )
                self._outbox, self._drainer = box, drainer
                for entry in box.unreported():  # finished, but this client died before saying so
                    self._complete(entry)
                self._notice(RESUMED_SESSION)
                drainer.start()
            return self._outbox, self._drainer

    def _close_outbox(self) -> None:
        with self._outbox_lock:
            if self._drainer is not None:
                self._drainer.close(CLOSE_WAIT_S)
            elif self._outbox is not None:
                self._outbox.close()
            self._outbox, self._drainer = None, None

    def _wake_drainer(self) -> None:
        drainer = self._drainer
        if drainer is not None:
            drainer.wake()

    def _send_entry(self, entry: ob.Entry, *, timeout_s: float | None = None) -> ob.Attempt:
        """One send of an outbox entry, with its own key, request id and attempt number."""
        try:
            reply = self.session.pay_bytes(
                entry.to_bank,
                entry.to_account,
                entry.amount_minor,
                entry.key,
                attempt=entry.attempts,
                request_id=entry.request_id,
                timeout_s=timeout_s,
            )
        except IdempotencyKeyExpired as err:  # resent after the gateway forgot the key: look it up
            return self._look_up(err)
        except PaykitError as err:
            return classify(err)
        return self._attempt_of(pb.PayResponse.FromString(reply).payment)

    def _look_up(self, err: IdempotencyKeyExpired) -> ob.Attempt:
        """The gateway kept the payment of an expired key: its outcome is the payment's status."""
        try:
            payment = self.session.call(
                "GetPayment", pb.GetPaymentRequest(payment_id=err.metadata["payment_id"])
            )
        except PaykitError as lookup:
            return classify(lookup)
        if payment.status == pb.PAYMENT_STATUS_PENDING:  # recovery will decide it: ask again later
            return ob.Attempt(ob.RETRY, reason=err.reason, message=err.message)
        return self._attempt_of(payment)

    @staticmethod
    def _attempt_of(p: pb.Payment) -> ob.Attempt:
        return ob.Attempt(
            ob.DONE,
            status=STATUS_NAMES.get(p.status, "pending"),
            payment_id=p.payment_id,
            reason=p.failure_reason,
            message=p.failure_message,
            payment=p.SerializeToString(),
        )

    @staticmethod
    def _payment_of(entry: ob.Entry) -> Payment:
        if entry.payment:
            return replace(
                Payment.from_pb(pb.Payment.FromString(entry.payment)), outbox_id=entry.short_id
            )
        status = entry.state if entry.state in ob.FINAL_STATES else QUEUED
        return Payment(
            entry.payment_id,
            status,
            "",
            "",
            entry.to_bank,
            entry.to_account,
            entry.amount_minor,
            entry.failure_reason,
            entry.failure_message,
            entry.created_unix_ms,
            entry.key,
            outbox_id=entry.short_id,
        )

    def _complete(self, entry: ob.Entry) -> None:
        """Hands how a queued payment ended to the notifier; it is marked told once listeners heard
        it."""
        box = self._outbox
        self._notifier.completed(
            self._payment_of(entry), then=lambda: box.mark_reported(entry.seq) if box else None
        )

    def _paused(self, why: str, message: str) -> None:
        self._notice(PAUSED_AUTH if why == ob.AUTH else PAUSED_TLS, message)

    def _notice(self, kind: str, message: str = "") -> None:
        box = self._outbox
        pending = len(box.pending()) if box else 0
        if pending:
            self._notifier.notice(Notice(kind, pending, message))

    def get_payment(self, payment_id: str) -> Payment:
        self.session.require_auth()
        return Payment.from_pb(
            self.session.retrying("GetPayment", pb.GetPaymentRequest(payment_id=payment_id))
        )

    def search(
        self,
        *,
        status: str = "",
        counterparty: str = "",
        min_amount: str | None = None,
        max_amount: str | None = None,
        since_unix_ms: int = 0,
        until_unix_ms: int = 0,
        limit: int = 0,
    ) -> list[Payment]:
        self.session.require_auth()
        if status and status not in STATUS_VALUES:
            raise InvalidInput(f"status {status[:16]!r} is not one of {', '.join(STATUS_VALUES)}")
        request = pb.SearchPaymentsRequest(
            status=STATUS_VALUES.get(status, pb.PAYMENT_STATUS_UNSPECIFIED),
            counterparty=counterparty,
            min_amount_minor=parse_amount(min_amount) if min_amount else 0,
            max_amount_minor=parse_amount(max_amount) if max_amount else 0,
            since_unix_ms=since_unix_ms,
            until_unix_ms=until_unix_ms,
            limit=limit,
        )
        return [
            Payment.from_pb(p) for p in self.session.retrying("SearchPayments", request).payments
        ]
