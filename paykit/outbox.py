"""The client's durable outbox: payments wait in SQLite until the gateway gives a definite answer.

    queued ──claim──► sending ──definite answer──► succeeded | failed
      ▲  │                │
      │  └──cancel──► cancelled (only if never sent)
      └──uncertain answer─┘   (unavailable, timeout, in progress: resend later, same key)

A payment and its idempotency key are committed here before the first send, so a
crash at any moment can neither lose it nor pay it twice: a restarted client resends
it with the same key and the gateway replays its stored answer. The drainer sends the
queue in order (FIFO per user) with bounded exponential backoff and jitter, and sends
at once when the channel reports it has reconnected. This module knows nothing of
gRPC: the client gives it a `send` function and a `Link` that reports connectivity.
See docs/offline.md.
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from paykit.db import Database
from paykit.errors import (
    AccountLocked,
    IdempotencyKeyReused,
    InProgress,
    Internal,
    InvalidInput,
    NotAuthenticated,
    PaykitError,
    Unavailable,
)

QUEUED, SENDING, SUCCEEDED, FAILED, CANCELLED = "queued", "sending", "succeeded", "failed", "cancelled"
PENDING_STATES = (QUEUED, SENDING)
FINAL_STATES = (SUCCEEDED, FAILED, CANCELLED)

OUTBOX_PENDING_MAX = 100  # payments waiting per user; more is refused (say so, never drop)
FINISHED_KEPT = 500  # finished entries kept as history; older reported ones are deleted
BACKOFF_FIRST_S = 0.5  # first pause after an uncertain answer
BACKOFF_MAX_S = 30.0  # longest pause: a gateway back after a long outage is still found within 30 s
NUDGE_EVERY_S = 1.0  # while waiting, ask the channel to reconnect this often (it idles otherwise)
# Connect-phase "Socket closed" this many times in a row: the gateway is refusing our
# certificate (TLS 1.3 reports that only after the client's side of the handshake).
TLS_SUSPECT_CLOSES = 3

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,  -- the order payments are sent in
    short_id        TEXT NOT NULL UNIQUE,               -- 8 hex digits the user types
    idem_key        TEXT NOT NULL UNIQUE,               -- made once, reused on every send
    request_id      TEXT NOT NULL,                      -- the same on every send, for the logs
    to_bank         TEXT NOT NULL,
    to_account      TEXT NOT NULL,
    amount_minor    INTEGER NOT NULL CHECK (amount_minor > 0),
    state           TEXT NOT NULL CHECK (state IN ('queued', 'sending', 'succeeded', 'failed', 'cancelled')),
    maybe_sent      INTEGER NOT NULL DEFAULT 0,         -- 1: the gateway may have seen it; no cancel
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_unix_ms INTEGER NOT NULL,
    updated_unix_ms INTEGER NOT NULL,
    last_error      TEXT NOT NULL DEFAULT '',
    payment_id      TEXT NOT NULL DEFAULT '',
    failure_reason  TEXT NOT NULL DEFAULT '',
    failure_message TEXT NOT NULL DEFAULT '',
    payment         BLOB,                               -- the gateway's Payment message, as received
    reported        INTEGER NOT NULL DEFAULT 0          -- 1: the user has been told how it ended
);
CREATE INDEX IF NOT EXISTS outbox_state ON outbox (state, seq);
"""


class OutboxFull(PaykitError):
    """Client-side only (never on the wire): the queue holds OUTBOX_PENDING_MAX payments."""

    code = "RESOURCE_EXHAUSTED"
    reason = "OUTBOX_FULL"
    hint = "wait for queued payments to be sent, or cancel some (queue, cancel ID)"


class OutboxBusy(PaykitError):
    """Client-side only: another client process has this user's outbox open."""

    code = "FAILED_PRECONDITION"
    reason = "OUTBOX_BUSY"


class TLSFailure(Unavailable):
    """Client-side only: the TLS handshake with the gateway failed; retrying will not help."""

    reason = "TLS_FAILURE"
    hint = "check the client's certificates (--pki-dir): they must come from the gateway's CA"


@dataclass(frozen=True)
class Entry:
    """One payment in the outbox."""

    seq: int
    short_id: str
    key: str
    request_id: str
    to_bank: str
    to_account: str
    amount_minor: int
    state: str
    maybe_sent: bool
    attempts: int
    created_unix_ms: int
    last_error: str = ""
    payment_id: str = ""
    failure_reason: str = ""
    failure_message: str = ""
    payment: bytes | None = None

    @property
    def cancellable(self) -> bool:
        return self.state == QUEUED and not self.maybe_sent


@dataclass(frozen=True)
class Added:
    """What Outbox.add did: the entry, how many queued payments wait before it, and whether
    the caller holds it (claimed: state sending, the caller must send it and apply the answer)."""

    entry: Entry
    ahead: int
    claimed: bool


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """Pauses between sends of an entry that got an uncertain answer."""

    first_s: float = BACKOFF_FIRST_S
    max_s: float = BACKOFF_MAX_S

    def delay_s(self, failures: int, rng: random.Random) -> float:
        # Doubling from first_s, capped at max_s; "equal jitter" (half fixed, half random)
        # spreads many clients apart yet never waits less than half the step, so no spin.
        step = min(self.max_s, self.first_s * 2 ** min(max(failures, 1) - 1, 32))
        return rng.uniform(step / 2, step)


DEFAULT_BACKOFF = Backoff()

log = logging.getLogger("paykit.outbox")

# -- answers ----------------------------------------------------------------

DONE, RETRY, AUTH, TLS = "done", "retry", "auth", "tls"
_TLS_MARKERS = ("handshake failed", "ssl_error", "certificate_verify_failed", "tsi_protocol_failure",
                "certificate verify failed")
CONNECT_FAILED = "failed to connect to all addresses"
# Answers after which the payment's fate is unknown: resend later with the same key.
# AccountLocked is RESOURCE_EXHAUSTED, which is also what a server at its call limit says.
_UNCERTAIN = (Unavailable, InProgress, Internal, AccountLocked)


@dataclass(frozen=True)
class Attempt:
    """What one send of an entry taught us."""

    kind: str  # DONE: definite answer | RETRY: uncertain | AUTH: token refused | TLS: handshake failed
    status: str = ""  # for DONE: succeeded | failed
    payment_id: str = ""
    reason: str = ""
    message: str = ""
    payment: bytes | None = None
    maybe_sent: bool = True  # False only when the request certainly never left this machine
    closed_at_connect: bool = False
    metadata: dict[str, str] = field(default_factory=dict)  # a refusal's ErrorInfo metadata (its "field")


def is_tls_failure(err: PaykitError) -> bool:
    """A failed TLS handshake, told apart from a gateway that is down by the error text."""
    text = err.message.lower()
    return isinstance(err, Unavailable) and any(m in text for m in _TLS_MARKERS)


def classify(err: PaykitError) -> Attempt:
    """How the outbox treats a send that raised `err`."""
    if isinstance(err, NotAuthenticated):
        return Attempt(AUTH, reason=err.reason, message=err.message, maybe_sent=False)
    if is_tls_failure(err):
        return Attempt(TLS, reason=TLSFailure.reason, message=err.message, maybe_sent=False)
    if isinstance(err, _UNCERTAIN) or type(err) is PaykitError:
        not_sent = CONNECT_FAILED in err.message
        return Attempt(RETRY, reason=err.reason, message=err.message, maybe_sent=not not_sent,
                       closed_at_connect=not_sent and "socket closed" in err.message.lower())
    return Attempt(DONE, status=FAILED, reason=err.reason, message=err.message, metadata=err.metadata)


# -- the store --------------------------------------------------------------


def outbox_path(folder: Path, gateway: str, username: str) -> Path:
    """<folder>/<gateway>-<user>.db, with anything unsafe in a file name replaced by _."""
    def safe(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9._-]", "_", text)

    return Path(folder) / f"{safe(gateway)}-{safe(username)}.db"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _entry(row) -> Entry:
    return Entry(row["seq"], row["short_id"], row["idem_key"], row["request_id"], row["to_bank"], row["to_account"],
                 row["amount_minor"], row["state"], bool(row["maybe_sent"]), row["attempts"],
                 row["created_unix_ms"], row["last_error"], row["payment_id"], row["failure_reason"],
                 row["failure_message"], bytes(row["payment"]) if row["payment"] is not None else None)


class Outbox:
    """One user's outbox file; one process at a time (an flock on <file>.lock)."""

    def __init__(self, path: Path, *, pending_max: int = OUTBOX_PENDING_MAX) -> None:
        self.path = Path(path)
        self.pending_max = pending_max
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.path.with_suffix(".lock"), "a+")  # held open (and locked) until close()
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise OutboxBusy(f"the outbox {self.path.name} is in use by another paykit client on this machine; "
                             "close that client first") from None
        self._lock_file.truncate(0)
        self._lock_file.write(f"{os.getpid()}\n")
        self._lock_file.flush()
        self.db = Database(self.path, SCHEMA)
        # A 'sending' row left by a crashed process may have reached the gateway: queue it
        # again (the same key makes the resend safe) and never let it be cancelled.
        with self.db.write() as conn:
            conn.execute("UPDATE outbox SET state = ?, maybe_sent = 1 WHERE state = ?", (QUEUED, SENDING))

    def close(self) -> None:
        self.db.close()
        self._lock_file.close()  # releases the flock

    def add(self, to_bank: str, to_account: str, amount_minor: int, *, key: str | None = None) -> Added:
        """Commits a payment before anything is sent; says whether the caller may send it now.

        It is claimed for the caller (sending, durable) when no queued payment waits before
        it: queued ones go first (FIFO), while payments other threads are sending right now
        do not hold it back. A key already here is a retry of that payment: it is returned.
        """
        now = _now_ms()
        with self.db.write() as conn:
            row = conn.execute("SELECT * FROM outbox WHERE idem_key = ?", (key,)).fetchone() if key else None
            if row is not None:
                return self._retry(conn, _entry(row), to_bank, to_account, amount_minor)
            pending = conn.execute("SELECT COUNT(*) FROM outbox WHERE state IN (?, ?)", PENDING_STATES).fetchone()[0]
            if pending >= self.pending_max:
                raise OutboxFull(f"the offline queue is full ({pending} payments waiting, the limit is "
                                 f"{self.pending_max}); nothing was queued")
            ahead = conn.execute("SELECT COUNT(*) FROM outbox WHERE state = ?", (QUEUED,)).fetchone()[0]
            state, attempts = (QUEUED, 0) if ahead else (SENDING, 1)
            cur = conn.execute(
                "INSERT INTO outbox (short_id, idem_key, request_id, to_bank, to_account, amount_minor, state, "
                "attempts, created_unix_ms, updated_unix_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (self._new_short_id(conn), key or str(uuid.uuid4()), uuid.uuid4().hex, to_bank, to_account,
                 amount_minor, state, attempts, now, now),
            )
            row = conn.execute("SELECT * FROM outbox WHERE seq = ?", (cur.lastrowid,)).fetchone()
        return Added(_entry(row), ahead, claimed=not ahead)

    @staticmethod
    def _retry(conn, entry: Entry, to_bank: str, to_account: str, amount_minor: int) -> Added:
        if (entry.to_bank, entry.to_account, entry.amount_minor) != (to_bank, to_account, amount_minor):
            raise IdempotencyKeyReused(f"idempotency key {entry.key} was used for a different payment (queued as "
                                       f"{entry.short_id}); make a new key for a new payment")
        ahead = conn.execute("SELECT COUNT(*) FROM outbox WHERE state = ? AND seq < ?",
                             (QUEUED, entry.seq)).fetchone()[0]
        if entry.state != QUEUED or ahead:
            return Added(entry, ahead, claimed=False)
        conn.execute("UPDATE outbox SET state = ?, attempts = attempts + 1, updated_unix_ms = ? WHERE seq = ?",
                     (SENDING, _now_ms(), entry.seq))
        return Added(replace(entry, state=SENDING, attempts=entry.attempts + 1), 0, claimed=True)

    @staticmethod
    def _new_short_id(conn) -> str:
        while True:
            short_id = secrets.token_hex(4)
            if not conn.execute("SELECT 1 FROM outbox WHERE short_id = ?", (short_id,)).fetchone():
                return short_id

    def head(self) -> Entry | None:
        """The oldest pending payment: the only one that may be sent (FIFO)."""
        row = self.db.read().execute("SELECT * FROM outbox WHERE state IN (?, ?) ORDER BY seq LIMIT 1",
                                     PENDING_STATES).fetchone()
        return _entry(row) if row else None

    def claim(self, seq: int) -> Entry | None:
        """queued -> sending, if `seq` is still queued and first in line; durable before the send."""
        with self.db.write() as conn:
            first = conn.execute("SELECT seq, state FROM outbox WHERE state IN (?, ?) ORDER BY seq LIMIT 1",
                                 PENDING_STATES).fetchone()
            if first is None or first["seq"] != seq or first["state"] != QUEUED:
                return None
            conn.execute("UPDATE outbox SET state = ?, attempts = attempts + 1, updated_unix_ms = ? WHERE seq = ?",
                         (SENDING, _now_ms(), seq))
            row = conn.execute("SELECT * FROM outbox WHERE seq = ?", (seq,)).fetchone()
        return _entry(row)

    def release(self, seq: int, attempt: Attempt) -> None:
        """sending -> queued after an uncertain answer (or no send at all)."""
        with self.db.write() as conn:
            conn.execute(
                "UPDATE outbox SET state = ?, maybe_sent = MAX(maybe_sent, ?), last_error = ?, updated_unix_ms = ? "
                "WHERE seq = ? AND state = ?",
                (QUEUED, int(attempt.maybe_sent), attempt.message[:500], _now_ms(), seq, SENDING),
            )

    def finish(self, seq: int, attempt: Attempt, *, reported: bool) -> Entry:
        """sending -> succeeded | failed, with the gateway's answer; prunes old history."""
        with self.db.write() as conn:
            conn.execute(
                "UPDATE outbox SET state = ?, payment_id = ?, failure_reason = ?, failure_message = ?, payment = ?, "
                "reported = ?, last_error = '', updated_unix_ms = ? WHERE seq = ?",
                (attempt.status, attempt.payment_id, attempt.reason, attempt.message, attempt.payment,
                 int(reported), _now_ms(), seq),
            )
            conn.execute(
                "DELETE FROM outbox WHERE reported = 1 AND state IN (?, ?, ?) AND seq NOT IN "
                "(SELECT seq FROM outbox WHERE state IN (?, ?, ?) ORDER BY seq DESC LIMIT ?)",
                (*FINAL_STATES, *FINAL_STATES, FINISHED_KEPT),
            )
            row = conn.execute("SELECT * FROM outbox WHERE seq = ?", (seq,)).fetchone()
        return _entry(row)

    def cancel(self, short_id: str) -> Entry:
        """queued -> cancelled, only if the gateway can never have seen it."""
        with self.db.write() as conn:
            row = conn.execute("SELECT * FROM outbox WHERE short_id = ?", (short_id.lower(),)).fetchone()
            if row is None or row["state"] not in PENDING_STATES:
                raise InvalidInput(f"no queued payment {short_id!r}; list them with: queue")
            entry = _entry(row)
            if not entry.cancellable:
                raise InvalidInput(
                    f"payment {short_id} cannot be cancelled: it has been sent and no answer came back, so the "
                    "gateway may have it; it will be resent with the same key until the gateway answers")
            conn.execute("UPDATE outbox SET state = ?, reported = 1, updated_unix_ms = ? WHERE seq = ?",
                         (CANCELLED, _now_ms(), entry.seq))
        return entry

    def mark_reported(self, seq: int) -> None:
        with self.db.write() as conn:
            conn.execute("UPDATE outbox SET reported = 1 WHERE seq = ?", (seq,))

    def pending(self) -> list[Entry]:
        rows = self.db.read().execute("SELECT * FROM outbox WHERE state IN (?, ?) ORDER BY seq",
                                      PENDING_STATES).fetchall()
        return [_entry(r) for r in rows]

    def unreported(self) -> list[Entry]:
        """Finished payments whose outcome the user has not been told (the client died first)."""
        rows = self.db.read().execute("SELECT * FROM outbox WHERE reported = 0 AND state IN (?, ?) ORDER BY seq",
                                      (SUCCEEDED, FAILED)).fetchall()
        return [_entry(r) for r in rows]


# -- the drainer ------------------------------------------------------------


class Link(Protocol):
    """Connectivity of the channel to the gateway, as the drainer needs it."""

    def generation(self) -> int:
        """How many times the channel has become READY; a change means "reconnected"."""

    def is_ready(self) -> bool: ...

    def nudge(self) -> None:
        """Asks the channel to connect (an idle channel does not try on its own)."""


class Drainer:
    """A background thread that sends the outbox's head until the queue is empty."""

    def __init__(self, outbox: Outbox, link: Link, send: Callable[[Entry], Attempt], *,
                 on_done: Callable[[Entry], None], on_pause: Callable[[str, str], None],
                 backoff: Backoff = DEFAULT_BACKOFF, rng: random.Random | None = None) -> None:
        self.outbox = outbox
        self.link = link
        self.send = send
        self.on_done = on_done
        self.on_pause = on_pause
        self.backoff = backoff
        self.rng = rng or random.Random()
        self.paused = ""  # "" | AUTH | TLS
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._failures = 0
        self._next_at = 0.0
        self._failed_generation = -1
        self._thread = threading.Thread(target=self._run, name=f"outbox-{outbox.path.stem}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout_s: float) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def pause(self, why: str, message: str) -> None:
        if self.paused != why:
            self.paused = why
            self.on_pause(why, message)

    def resume(self) -> None:
        self.paused = ""
        self._failures, self._next_at = 0, 0.0
        self._wake.set()

    def _due(self) -> bool:
        # Send when the backoff has run out, or at once when the channel has reconnected
        # since the last failure (a READY *transition*, so a stale READY cannot spin).
        return time.monotonic() >= self._next_at or self.link.generation() != self._failed_generation

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
        if head is None or head.state == SENDING:  # nothing to do, or pay() is sending it right now
            self._wait(None)
            return
        if not self._due():
            if not self.link.is_ready():
                self.link.nudge()
            self._wait(min(max(self._next_at - time.monotonic(), 0.0), NUDGE_EVERY_S))
            return
        entry = self.outbox.claim(head.seq)  # None if it was cancelled meanwhile
        if entry is not None:
            generation = self.link.generation()
            self.apply(entry, self.send(entry), generation)

    def apply(self, entry: Entry, attempt: Attempt, generation: int, *, reported: bool = False) -> Entry:
        """Records what a send of a claimed entry taught us; returns the entry as it now is.

        Only one send is ever in flight (the drainer sends a queued head; pay() sends the
        entry add() claimed for it), so this is never called twice at once.
        """
        if attempt.kind == DONE:
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
            self._failures += 1
            self._failed_generation = generation
            self._next_at = time.monotonic() + self.backoff.delay_s(self._failures, self.rng)
        self._wake.set()
        return replace(entry, state=QUEUED, maybe_sent=entry.maybe_sent or attempt.maybe_sent,
                       last_error=attempt.message)
