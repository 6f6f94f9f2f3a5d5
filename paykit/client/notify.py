"""The client's notifications: how queued payments ended, and why sending them paused or resumed.

Listeners run on the notifier's own thread, never while the client holds a lock of its
own, so a listener may call back into the client (pay again, even close it). Each outcome
is also kept for `completions()`, whose readers are woken when the client closes.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from paykit.client.models import Payment

COMPLETIONS_KEPT = 1000  # completions() buffers at most this many unread outcomes
CLOSE_WAIT_S = 5.0  # close() waits this long for a listener that is running

log = logging.getLogger("paykit.outbox")

# Notice kinds.
RESUMED_SESSION = "resumed_session"  # payments queued by an earlier session are being sent
RESUMED_AUTH = "resumed_auth"  # signed in again: sending queued payments resumes
PAUSED_AUTH = (
    "paused_auth"  # the token was refused (or the user signed out): sending waits for auth
)
PAUSED_TLS = (
    "paused_tls"  # the TLS handshake failed: sending waits for a client with the right certificate
)


@dataclass(frozen=True)
class Notice:
    """A change in how queued payments are being sent. `pending` payments wait; `message` is
    the cause as the client learned it (an error's text), if any."""

    kind: str
    pending: int
    message: str = ""


class Notifier:
    """One thread that tells listeners, in order, what happened to queued payments."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._todo: collections.deque[tuple[str, Any, Callable[[], object] | None]] = (
            collections.deque()
        )
        self._completed: collections.deque[Payment] = collections.deque(maxlen=COMPLETIONS_KEPT)
        self._on_complete: list[Callable[[Payment], None]] = []
        self._on_notice: list[Callable[[Notice], None]] = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="paykit-notify", daemon=True)
        self._thread.start()

    def on_complete(self, fn: Callable[[Payment], None]) -> None:
        self._on_complete.append(fn)

    def on_notice(self, fn: Callable[[Notice], None]) -> None:
        self._on_notice.append(fn)

    def completed(self, payment: Payment, then: Callable[[], object] | None = None) -> None:
        """Queues the news that a payment ended; `then` runs after every listener has heard it."""
        self._put(("complete", payment, then))

    def notice(self, notice: Notice) -> None:
        self._put(("notice", notice, None))

    def _put(self, item: tuple) -> None:
        with self._cond:
            if not self._closed:
                self._todo.append(item)
                self._cond.notify_all()

    def completions(self, timeout_s: float | None = None) -> Iterator[Payment]:
        """Yields each queued payment's outcome as it ends; stops after timeout_s with none new,
        or when the client closes."""
        while True:
            with self._cond:
                if not self._cond.wait_for(lambda: self._completed or self._closed, timeout_s):
                    return
                if not self._completed:
                    return
                payment = self._completed.popleft()
            yield payment

    def close(self) -> None:
        """Stops after the delivery in progress (news not yet delivered is dropped: the outbox
        still has it unreported, so the next session tells it); wakes every completions() reader."""
        with self._cond:
            self._closed = True
            self._todo.clear()
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(CLOSE_WAIT_S)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._todo or self._closed)
                if self._closed:
                    return
                kind, what, then = self._todo.popleft()
            if kind == "complete":
                self._tell(self._on_complete, what)
                with self._cond:
                    self._completed.append(what)
                    self._cond.notify_all()
            else:
                self._tell(self._on_notice, what)
            if then is not None:
                try:
                    then()
                except Exception:
                    # a disk error: the outcome stays unreported and is told again later
                    log.exception("could not note that a payment's outcome was reported")

    @staticmethod
    def _tell(listeners: list[Callable], what: object) -> None:
        for fn in list(listeners):
            try:
                fn(what)
            except Exception:  # a listener's bug must not stop the news
                log.exception("a paykit client listener failed")
