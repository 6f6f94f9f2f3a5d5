"""The outbox's drainer: a thread that resends queued payments until each gets a definite answer.

One send at a time per outbox, so payments leave in the order they were queued: the
drainer and PaymentClient.pay both send inside `sending()`, the one send slot. The
drainer sends the queue's head with bounded exponential backoff and jitter, and at once
when the channel reports it has reconnected. It knows nothing of gRPC: the client gives
it a `send` function and a `Link` that reports connectivity. See docs/offline.md.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Protocol

from paykit.client.outbox import (
    AUTH,
    DONE,
    FAILED,
    QUEUED,
    RETRY,
    SENDING,
    TLS,
    Attempt,
    Entry,
    Outbox,
)
from paykit.core.clock import Backoff
from paykit.core.errors import (
    AccountLocked,
    ConnectFailed,
    InProgress,
    Internal,
    NotAuthenticated,
    PaykitError,
    TLSFailure,
    Unavailable,
)

# a gateway back after a long outage is found within 30 s
DEFAULT_BACKOFF = Backoff(first_s=0.5, max_s=30.0)
NUDGE_EVERY_S = 1.0  # while waiting, ask the channel to reconnect this often (it idles otherwise)
# Answers after which the payment's fate is unknown: resend later with the same key.
# AccountLocked is RESOURCE_EXHAUSTED, which is also what a server at its call limit says.
_UNCERTAIN = (Unavailable, InProgress, Internal, AccountLocked)

log = logging.getLogger("paykit.outbox")


def classify(err: PaykitError) -> Attempt:
    """How the outbox treats a send that raised `err`."""
    if isinstance(err, NotAuthenticated):
        return Attempt(AUTH, reason=err.reason, message=err.message, maybe_sent=False)
    if isinstance(err, TLSFailure):
        return Attempt(TLS, reason=err.reason, message=err.message, maybe_sent=False)
    if isinstance(err, _UNCERTAIN) or type(err) is PaykitError:
        return Attempt(
            RETRY,
            reason=err.reason,
            message=err.message,
            maybe_sent=not isinstance(err, ConnectFailed),
        )
    return Attempt(
        DONE, status=FAILED, reason=err.reason, message=err.message, metadata=err.metadata
    )


class Link(Protocol):
    """Connectivity of the channel to the gateway, as the drainer needs it."""

    def generation(self) -> int:
        """How many times the channel has become READY; a change means "reconnected"."""

    def is_ready(self) -> bool: ...

    def nudge(self) -> None:
        """Asks the channel to connect (an idle channel does not try on its own)."""


class Drainer:
    """Sends the outbox's head until the queue is empty; pauses when signed out or refused by
    TLS."""

    def __init__(
        self,
        outbox: Outbox,
        link: Link,
        send: Callable[[Entry], Attempt],
        *,
        on_done: Callable[[Entry], None],
        on_pause: Callable[[str, str], None],
        backoff: Backoff = DEFAULT_BACKOFF,
        rng: random.Random | None = None,
    ) -> None:
        self.outbox = outbox
        self.link = link
        self.send = send
        self.on_done = on_done  # must not block: the client hands it to its notifier's thread
        self.on_pause = on_pause
        self.backoff = backoff
        self.rng = rng or random.Random()
        self._slot = threading.Lock()  # the one send in flight
        self._state = threading.Lock()  # guards paused, _failures, _next_at, _failed_generation
        self.paused = ""  # "" | AUTH | TLS
        self._failures = 0
        self._next_at = 0.0
        self._failed_generation = -1
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"outbox-{outbox.path.stem}", daemon=True
        )

    @contextmanager
    def sending(self) -> Iterator[None]:
        """The send slot: whoever holds it may claim an entry, send it and apply the answer."""
        with self._slot:
            yield

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout_s: float) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def close(self, timeout_s: float) -> None:
        """Stops the thread, lets a send in flight apply its answer, then closes the outbox."""
        self.stop(timeout_s)
        got = self._slot.acquire(timeout=timeout_s)
        try:
            self.outbox.close()
        finally:
            if got:
                self._slot.release()

    def pause(self, why: str, message: str) -> None:
        with self._state:
            if self.paused == why:
                return
            self.paused = why
        self.on_pause(why, message)

    def resume(self) -> None:
        with self._state:
            self.paused = ""
            self._failures, self._next_at = 0, 0.0
        self._wake.set()

    def _due(self) -> bool:
        # Send when the backoff has run out, or at once when the channel has reconnected
        # since the last failure (a READY *transition*, so a stale READY cannot spin).
        with self._state:
            next_at, failed_generation = self._next_at, self._failed_generation
        return time.monotonic() >= next_at or self.link.generation() != failed_generation

    def _wait(self, timeout_s: float | None) -> None:
        self._wake.wait(timeout_s)
        self._wake.clear()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:  # a bug or a disk error: say so, keep the entries, do not spin
                log.exception("outbox drainer step failed; retrying in %.1f s", NUDGE_EVERY_S)
                self._stop.wait(NUDGE_EVERY_S)

    def _step(self) -> None:
        head = None if self.paused else self.outbox.head()
        if head is None:  # nothing to do (or paused): sleep until woken
            self._wait(None)
            return
        if not self._due():
            if not self.link.is_ready():
                self.link.nudge()
            with self._state:
                next_at = self._next_at
            self._wait(min(max(next_at - time.monotonic(), 0.0), NUDGE_EVERY_S))
            return
        with self._slot:
            self._send_head()

    def _send_head(self) -> None:
        """Inside the slot: claims the head, sends it, applies the answer."""
        head = self.outbox.head()
        if head is not None and head.state == SENDING:
            # a send of it was cut short: nobody holds it now
            self.outbox.release(head.seq, Attempt(RETRY, message="an earlier send was interrupted"))
        entry = None if head is None else self.outbox.claim(head.seq)  # None if cancelled meanwhile
        if entry is None:
            return
        generation = self.link.generation()
        try:
            attempt = self.send(entry)
        except BaseException:  # never leave it `sending` with no one sending it
            self.outbox.release(entry.seq, Attempt(RETRY, message="the send was interrupted"))
            raise
        self.apply(entry, attempt, generation)

    def apply(
        self, entry: Entry, attempt: Attempt, generation: int, *, reported: bool = False
    ) -> Entry:
        """Records what a send of a claimed entry taught us; returns the entry as it now is.
        Called by whoever holds the send slot."""
        if attempt.kind == DONE:
            with self._state:
                self._failures, self._next_at = 0, 0.0
            done = self.outbox.finish(entry.seq, attempt, reported=reported)
            self._wake.set()  # payments queued behind it may go now
            if not reported:
                self.on_done(done)
            return done
        self.outbox.release(entry.seq, attempt)
        if attempt.kind in (AUTH, TLS):
            self.pause(attempt.kind, attempt.message)
        else:
            with self._state:
                self._failures += 1
                self._failed_generation = generation
                self._next_at = time.monotonic() + self.backoff.delay_s(self._failures, self.rng)
        self._wake.set()
        return replace(
            entry,
            state=QUEUED,
            maybe_sent=entry.maybe_sent or attempt.maybe_sent,
            last_error=attempt.message,
            last_reason=attempt.reason,
        )
