"""PaymentClient: the Python API of the gateway, for scripts, notebooks, the CLI and tests.

Every call carries a request id and an attempt number in metadata, so retries are
visible in the servers' logs. A payment's idempotency key is made once per intended
payment and reused on every retry, so a retry can never pay twice. Payments go through
a durable outbox (paykit.outbox): stored before the first send, sent at once when the
gateway answers, else queued and resent in the background (see docs/offline.md).
"""

from __future__ import annotations

import collections
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Self

import grpc

from paykit import outbox as ob
from paykit.client_log import open_client_log
from paykit.config import CALL_TIMEOUT_S, TLSFiles, state_dir
from paykit.errors import (
    InProgress,
    InvalidAmount,
    InvalidInput,
    NotAuthenticated,
    PaykitError,
    Unavailable,
    field_of,
    from_reason,
)
from paykit.money import OPENING_BALANCE_MAX_MINOR, check_amount_minor, parse_amount
from paykit.pki import CLIENT_CN, GATEWAY_CN, ensure_identity
from paykit.rpc import from_rpc_error, secure_channel
from paykit.v1 import payment_pb2 as pb
from paykit.v1 import payment_pb2_grpc as pb_grpc

READ_ATTEMPTS = 4  # a read is sent once and retried 3 times (payments retry through the outbox)
RETRY_FIRST_S = 0.2
STATUS_NAMES = {pb.PAYMENT_STATUS_PENDING: "pending", pb.PAYMENT_STATUS_SUCCEEDED: "succeeded",
                pb.PAYMENT_STATUS_FAILED: "failed"}
STATUS_VALUES = {v: k for k, v in STATUS_NAMES.items()}
# Errors after which the payment's outcome is unknown: retry with the same key.
RETRYABLE = (Unavailable, InProgress)
# pay() waits this long for a connection before queuing, so it answers at once when the
# gateway is down (a refused connection shows within milliseconds; this bounds a hung one).
CONNECT_CHECK_S = 1.0
CLOSE_WAIT_S = 5.0  # close() waits this long for the drainer's send in flight to end
COMPLETIONS_KEPT = 1000  # completions() buffers at most this many unread outcomes
NUDGE_SETTLE_S = 0.3  # a little over grpc's connectivity poll period (0.2 s)
# Why pay() answered "queued" (Payment.queued_reason).
QUEUED_UNREACHABLE = "unreachable"  # the gateway could not be reached: nothing was sent
QUEUED_NO_ANSWER = "no_answer"  # sent, but no answer came back: resent with the same key
QUEUED_BEHIND = "behind"  # earlier queued payments go first (FIFO)
QUEUED_SIGNED_OUT = "signed_out"  # the gateway refused the token: sent after the next auth
log = ob.log


@dataclass(frozen=True)
class Balance:
    bank: str
    account_id: str
    balance_minor: int
    held_minor: int
    available_minor: int


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
        return self.status == "succeeded"

    @property
    def queued(self) -> bool:
        return self.status == "queued"

    @classmethod
    def from_pb(cls, p: pb.Payment) -> Payment:
        return cls(p.payment_id, STATUS_NAMES.get(p.status, "pending"), p.from_bank, p.from_account, p.to_bank,
                   p.to_account, p.amount_minor, p.failure_reason, p.failure_message, p.created_unix_ms,
                   p.idempotency_key, p.settled)


def to_minor(amount: str | Decimal | int | None, amount_minor: int | None, *, opening: bool = False) -> int:
    """Amounts from Python: text or Decimal in major units, or amount_minor=. Never float."""
    limit = {"allow_zero": True, "max_minor": OPENING_BALANCE_MAX_MINOR} if opening else {}
    if amount_minor is not None:
        if amount is not None:
            raise InvalidAmount("give amount or amount_minor, not both")
        return check_amount_minor(amount_minor, **limit)
    if isinstance(amount, float):
        raise InvalidAmount("amounts are never floats: pass text like '12.50', a Decimal, or amount_minor=1250")
    if amount is None:
        raise InvalidAmount("an amount is needed")
    return parse_amount(str(amount), **limit)


def _ignore(_state: grpc.ChannelConnectivity) -> None:
    """A subscriber that exists only to ask the channel to connect."""


class ChannelWatch:
    """The channel's own connectivity (grpc.Channel.subscribe), for the outbox's drainer.

    Counts transitions into READY, so "reconnected" is a change of `generation()`; an
    idle channel (the gateway closed it) does not reconnect by itself, hence `nudge()`.
    """

    def __init__(self, channel: grpc.Channel, on_change: Callable[[], None]) -> None:
        self._channel = channel
        self._on_change = on_change
        self._cond = threading.Condition()
        self._state: grpc.ChannelConnectivity | None = None
        self._generation = 0
        self._last_nudge = time.monotonic()  # subscribing below nudges too
        channel.subscribe(self._changed, try_to_connect=True)

    def _changed(self, state: grpc.ChannelConnectivity) -> None:
        with self._cond:
            if state is grpc.ChannelConnectivity.READY and self._state is not grpc.ChannelConnectivity.READY:
                self._generation += 1
            self._state = state
            self._cond.notify_all()
        self._on_change()

    def generation(self) -> int:
        with self._cond:
            return self._generation

    def is_ready(self) -> bool:
        return self._state is grpc.ChannelConnectivity.READY

    def nudge(self) -> None:
        self._last_nudge = time.monotonic()
        self._channel.subscribe(_ignore, try_to_connect=True)
        self._channel.unsubscribe(_ignore)

    def wait_settled(self, timeout_s: float) -> bool:
        """Waits until the channel is READY or a connection attempt has failed; True if READY."""
        if not self.is_ready():
            self.nudge()
        settled = (grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.TRANSIENT_FAILURE)
        with self._cond:
            self._cond.wait_for(lambda: self._state in settled, timeout_s)
        return self.is_ready()

    def close(self) -> None:
        """Unsubscribes. Call before closing the channel."""
        self._channel.unsubscribe(self._changed)
        # grpc's poller acts on a nudge within its 0.2 s poll; closing the channel before
        # then makes that thread fail ("Channel closed!"), so let a recent nudge land first.
        time.sleep(max(0.0, self._last_nudge + NUDGE_SETTLE_S - time.monotonic()))


class PaymentClient:
    """A signed-in session with one gateway, over mutual TLS, with a durable outbox for payments.

    outbox_dir: where each user's outbox lives (default <state folder>/outbox);
    backoff: pauses between resends of a queued payment (default 0.5 s doubling to 30 s).
    """

    def __init__(self, gateway: str, *, tls: TLSFiles | None = None, pki_dir: Path | None = None,
                 timeout_s: float = CALL_TIMEOUT_S, interceptors: tuple = (), log_path: Path | None = None,
                 outbox_dir: Path | None = None, backoff: ob.Backoff = ob.DEFAULT_BACKOFF) -> None:
        self.gateway = gateway
        self.outbox_dir = Path(outbox_dir) if outbox_dir else state_dir() / "outbox"
        self.backoff = backoff
        self._outbox: ob.Outbox | None = None
        self._drainer: ob.Drainer | None = None
        self._watch: ChannelWatch | None = None
        self._outbox_lock = threading.Lock()  # opening and closing the outbox
        self._completed: collections.deque[Payment] = collections.deque(maxlen=COMPLETIONS_KEPT)
        self._completed_cond = threading.Condition()
        self._on_complete: list[Callable[[Payment], None]] = []
        self._on_notice: list[Callable[[str], None]] = []
        self._closed_handshakes = 0  # connect-phase "Socket closed" in a row (see outbox.TLS_SUSPECT_CLOSES)
        self._closing = False
        self.timeout_s = timeout_s
        self.tls = tls or ensure_identity(Path(pki_dir) if pki_dir else state_dir() / "pki", CLIENT_CN)
        channel = secure_channel(gateway, self.tls, server_name=GATEWAY_CN)
        # log_path: one `rpc.client` JSON line per call attempt (see paykit.client_log).
        self._log = open_client_log(log_path, target=gateway) if log_path else None
        interceptors = (*interceptors, self._log) if self._log else interceptors
        self.channel = grpc.intercept_channel(channel, *interceptors) if interceptors else channel
        self._raw_channel = channel
        self.stub = pb_grpc.GatewayStub(self.channel)
        self.token = ""
        self.username = ""

    # -- plumbing ---------------------------------------------------------------

    def _call(self, method: str, request, *, attempt: int = 1, request_id: str = "", key: str = "",
              timeout_s: float | None = None):
        metadata = [("x-request-id", request_id or uuid.uuid4().hex), ("x-attempt", str(attempt))]
        if self.token:
            metadata.append(("authorization", f"Bearer {self.token}"))
        if key:
            metadata.append(("idempotency-key", key))
        try:
            return getattr(self.stub, method)(request, timeout=timeout_s or self.timeout_s, metadata=metadata)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None

    def _retrying(self, method: str, request, *, attempts: int = READ_ATTEMPTS):
        """Sends a read, and on an uncertain outcome resends it (same request id, next attempt)."""
        request_id, pause_s = uuid.uuid4().hex, RETRY_FIRST_S
        for attempt in range(1, attempts + 1):
            try:
                return self._call(method, request, attempt=attempt, request_id=request_id)
            except RETRYABLE:
                if attempt == attempts:
                    raise
            time.sleep(pause_s)
            pause_s *= 2
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Stops the drainer (a send in flight is cancelled and stays queued), then the channel."""
        self._closing = True
        if self._drainer:
            self._drainer.stop(0.2)  # an idle drainer exits at once; one mid-send is cancelled below
        if self._watch:
            self._watch.close()
        self._raw_channel.close()
        self._close_outbox()
        if self._log:
            self._log.log.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the API ----------------------------------------------------------------

    def register(self, username: str, password: str, account_id: str,
                 opening_balance: str | Decimal | int | None = None, bank: str = "", *,
                 opening_balance_minor: int | None = None) -> pb.RegisterResponse:
        minor = to_minor(opening_balance, opening_balance_minor, opening=True)
        return self._call("Register", pb.RegisterRequest(username=username, password=password, account_id=account_id,
                                                         opening_balance_minor=minor, bank=bank))

    def authenticate(self, username: str, password: str) -> pb.AuthenticateResponse:
        """Signs in; if this user has an outbox with payments waiting, sending them resumes."""
        reply = self._call("Authenticate", pb.AuthenticateRequest(username=username, password=password))
        if self._outbox is not None and reply.username != self.username:
            self._close_outbox()  # another user: their outbox, not this one
        self.token, self.username = reply.token, reply.username
        if self._drainer is not None and self._drainer.paused == ob.AUTH:
            self._drainer.resume()
            self._say_pending("Signed in again: sending {n} queued payment{s}")
        else:
            self._open_outbox(create=False)
        return reply

    def logout(self) -> None:
        self._require_auth()
        self._call("Logout", pb.LogoutRequest())
        self.token = ""
        if self._drainer is not None:
            self._drainer.pause(ob.AUTH, "you signed out")

    def balance(self) -> Balance:
        self._require_auth()
        r = self._retrying("GetBalance", pb.GetBalanceRequest())
        return Balance(r.bank, r.account_id, r.balance_minor, r.held_minor, r.available_minor)

    def pay(self, to_bank: str, to_account: str, amount: str | Decimal | int | None = None, *,
            amount_minor: int | None = None, key: str | None = None) -> Payment:
        """Pays from your own account, through the outbox (the payment and its key are on disk first).

        Returns the gateway's answer (status succeeded or failed) when it answers now; else a
        Payment with status "queued" at once, and the drainer resends it with the same key:
        on_complete() and completions() report how it ended. Refusals of the request itself
        (unknown bank, bad amount, ...) raise, as does a TLS failure (TLSFailure).
        """
        self._require_auth()
        with field_of("amount_minor"):
            minor = to_minor(amount, amount_minor)
        box, drainer = self._open_outbox(create=True)
        added = box.add(to_bank, to_account, minor, key=key)
        entry = added.entry
        if not added.claimed:
            return self._not_claimed(entry, drainer)
        generation = self._watch.generation()
        ready = self._watch.wait_settled(CONNECT_CHECK_S)
        # Not READY: one fail-fast try with a short deadline tells "down" from "wrong certificate".
        attempt = self._send_entry(entry, timeout_s=self.timeout_s if ready else CONNECT_CHECK_S)
        if attempt.kind == ob.TLS:  # nothing was sent (the handshake failed): end it, say why
            drainer.apply(entry, replace(attempt, kind=ob.DONE, status=ob.FAILED), generation, reported=True)
            drainer.pause(ob.TLS, attempt.message)
            raise ob.TLSFailure(f"TLS handshake with the gateway {self.gateway} failed; payment {entry.short_id} "
                                f"was not sent ({attempt.message})")
        done = drainer.apply(entry, attempt, generation, reported=True)
        if attempt.kind == ob.DONE and not attempt.payment:  # the gateway refused the request itself
            raise from_reason(attempt.reason)(attempt.message, metadata=attempt.metadata)
        if attempt.kind == ob.DONE:
            return self._payment_of(done)
        why = {ob.AUTH: QUEUED_SIGNED_OUT}.get(attempt.kind, QUEUED_NO_ANSWER if attempt.maybe_sent
                                               else QUEUED_UNREACHABLE)
        return replace(self._payment_of(done), queued_reason=why)

    def _not_claimed(self, entry: ob.Entry, drainer: ob.Drainer) -> Payment:
        """pay() of a payment it may not send now: queued behind others, or a retry of a known key."""
        if entry.state == ob.QUEUED:  # earlier payments wait: this one goes after them (FIFO)
            drainer.wake()
            return replace(self._payment_of(entry), queued_reason=QUEUED_BEHIND)
        if entry.state == ob.CANCELLED:
            raise InvalidInput(f"the payment with key {entry.key} was cancelled; make a new key to pay again")
        if entry.state in ob.FINAL_STATES:  # a retry of a finished payment: the gateway's stored answer
            if not entry.payment:
                raise from_reason(entry.failure_reason)(entry.failure_message)
            return self._payment_of(entry)
        # Another thread is sending this very key right now: send it too, as a plain retry
        # (the gateway runs it once; a retry during the first gets IN_PROGRESS), never queued twice.
        reply = self._call("Pay", _pay_request(entry), attempt=entry.attempts + 1, request_id=entry.request_id,
                           key=entry.key)
        return replace(Payment.from_pb(reply.payment), outbox_id=entry.short_id)

    # -- the outbox ---------------------------------------------------------------

    def queue(self) -> list[ob.Entry]:
        """Payments waiting in the outbox, oldest (next to send) first."""
        return self._outbox.pending() if self._outbox else []

    def pending_count(self) -> int:
        return len(self.queue())

    def cancel(self, outbox_id: str) -> ob.Entry:
        """Cancels a queued payment that has never been sent (so the gateway cannot have it)."""
        if self._outbox is None:
            raise InvalidInput(f"no queued payment {outbox_id!r}; list them with: queue")
        return self._outbox.cancel(outbox_id)

    @property
    def outbox_paused(self) -> str:
        """Why queued payments are not being sent: "" (they are), "auth" or "tls"."""
        return self._drainer.paused if self._drainer else ""

    def on_complete(self, fn: Callable[[Payment], None]) -> Callable[[Payment], None]:
        """Calls fn(payment) (on the drainer's thread) when a queued payment ends; usable as a decorator."""
        self._on_complete.append(fn)
        return fn

    def on_notice(self, fn: Callable[[str], None]) -> Callable[[str], None]:
        """Calls fn(text) when sending queued payments pauses or resumes (sign in again, TLS failure)."""
        self._on_notice.append(fn)
        return fn

    def completions(self, timeout_s: float | None = None) -> Iterator[Payment]:
        """Yields each queued payment's outcome as it ends; stops after timeout_s with none new."""
        while True:
            with self._completed_cond:
                if not self._completed_cond.wait_for(lambda: self._completed or self._closing, timeout_s):
                    return
                if not self._completed:
                    return
                payment = self._completed.popleft()
            yield payment

    def _open_outbox(self, *, create: bool) -> tuple[ob.Outbox, ob.Drainer] | None:
        with self._outbox_lock:
            if self._outbox is None:
                path = ob.outbox_path(self.outbox_dir, self.gateway, self.username)
                if not create and not path.exists():
                    return None
                self._outbox = ob.Outbox(path)
                if self._watch is None:
                    self._watch = ChannelWatch(self._raw_channel, self._wake_drainer)
                self._drainer = ob.Drainer(self._outbox, self._watch, self._send_entry, on_done=self._complete,
                                           on_pause=self._paused, backoff=self.backoff)
                for entry in self._outbox.unreported():  # finished, but this client died before saying so
                    self._complete(entry)
                self._say_pending("Resuming {n} queued payment{s} from an earlier session")
                self._drainer.start()
            return self._outbox, self._drainer

    def _close_outbox(self) -> None:
        with self._outbox_lock:
            if self._drainer is not None:
                self._drainer.stop(CLOSE_WAIT_S)
            if self._outbox is not None:
                self._outbox.close()
            self._outbox, self._drainer = None, None

    def _wake_drainer(self) -> None:
        drainer = self._drainer
        if drainer is not None:
            drainer.wake()

    def _send_entry(self, entry: ob.Entry, *, timeout_s: float | None = None) -> ob.Attempt:
        """One send of an outbox entry, with its own key, request id and attempt number."""
        try:
            reply = self._call("Pay", _pay_request(entry), attempt=entry.attempts, request_id=entry.request_id,
                               key=entry.key, timeout_s=timeout_s)
        except PaykitError as err:
            attempt = ob.classify(err)
            self._closed_handshakes = self._closed_handshakes + 1 if attempt.closed_at_connect else 0
            if self._closed_handshakes >= ob.TLS_SUSPECT_CLOSES:
                return replace(attempt, kind=ob.TLS, reason=ob.TLSFailure.reason, message=(
                    f"the gateway closed the connection during the TLS handshake {self._closed_handshakes} times "
                    f"in a row: it does not accept this client's certificate (one from another CA?); {err.message}"))
            return attempt
        self._closed_handshakes = 0
        p = reply.payment
        return ob.Attempt(ob.DONE, status=STATUS_NAMES.get(p.status, "pending"), payment_id=p.payment_id,
                          reason=p.failure_reason, message=p.failure_message, payment=p.SerializeToString())

    def _payment_of(self, entry: ob.Entry) -> Payment:
        if entry.payment:
            return replace(Payment.from_pb(pb.Payment.FromString(entry.payment)), outbox_id=entry.short_id)
        status = entry.state if entry.state in ob.FINAL_STATES else "queued"
        return Payment(entry.payment_id, status, "", "", entry.to_bank, entry.to_account, entry.amount_minor,
                       entry.failure_reason, entry.failure_message, entry.created_unix_ms, entry.key,
                       outbox_id=entry.short_id)

    def _complete(self, entry: ob.Entry) -> None:
        """Tells every listener how a queued payment ended, then marks it told."""
        payment = self._payment_of(entry)
        for fn in list(self._on_complete):
            try:
                fn(payment)
            except Exception:  # a listener's bug must not stop the drainer
                log.exception("on_complete callback failed")
        with self._completed_cond:
            self._completed.append(payment)
            self._completed_cond.notify_all()
        if self._outbox is not None:
            self._outbox.mark_reported(entry.seq)

    def _paused(self, why: str, message: str) -> None:
        if why == ob.AUTH:
            self._say_pending("Sending {n} queued payment{s} is paused: " + message.rstrip(".")
                              + ". Sign in again with: auth USER PASSWORD")
        else:
            self._say_pending("Cannot send {n} queued payment{s}: the TLS handshake with the gateway failed ("
                              + message + "). They stay queued (cancel with: cancel ID); fix the client's "
                              "certificates (--pki-dir) and start the client again")

    def _say_pending(self, template: str) -> None:
        n = len(self._outbox.pending()) if self._outbox else 0
        if n:
            self._notice(template.format(n=n, s="s" * (n != 1)))

    def _notice(self, text: str) -> None:
        log.info("%s", text)
        for fn in list(self._on_notice):
            try:
                fn(text)
            except Exception:
                log.exception("on_notice callback failed")

    def get_payment(self, payment_id: str) -> Payment:
        self._require_auth()
        return Payment.from_pb(self._retrying("GetPayment", pb.GetPaymentRequest(payment_id=payment_id)))

    def search(self, *, status: str = "", counterparty: str = "", min_amount: str | None = None,
               max_amount: str | None = None, since_unix_ms: int = 0, until_unix_ms: int = 0,
               limit: int = 0) -> list[Payment]:
        self._require_auth()
        if status and status not in STATUS_VALUES:
            raise InvalidInput(f"status {status!r} is not one of {', '.join(STATUS_VALUES)}")
        request = pb.SearchPaymentsRequest(
            status=STATUS_VALUES.get(status, pb.PAYMENT_STATUS_UNSPECIFIED), counterparty=counterparty,
            min_amount_minor=parse_amount(min_amount) if min_amount else 0,
            max_amount_minor=parse_amount(max_amount) if max_amount else 0,
            since_unix_ms=since_unix_ms, until_unix_ms=until_unix_ms, limit=limit,
        )
        return [Payment.from_pb(p) for p in self._retrying("SearchPayments", request).payments]

    def _require_auth(self) -> None:
        if not self.token:
            raise NotAuthenticated("not signed in: run auth USER PASSWORD first")


def _pay_request(entry: ob.Entry) -> pb.PayRequest:
    """The Pay request of an outbox entry: the same one on every send, key included."""
    return pb.PayRequest(idempotency_key=entry.key, to_bank=entry.to_bank, to_account=entry.to_account,
                         amount_minor=entry.amount_minor)
