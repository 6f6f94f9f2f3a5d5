"""The client's durable outbox: payments wait in SQLite until the gateway gives a definite answer.

    queued ──claim──► sending ──definite answer──► succeeded | failed
      ▲  │                │
      │  └──cancel──► cancelled (only if never sent)
      └──uncertain answer─┘   (unavailable, timeout, in progress: resend later, same key)

A payment and its idempotency key are committed here before the first send, so a
crash at any moment can neither lose it nor pay it twice: a restarted client resends
it with the same key and the gateway replays its stored answer. This module is the
store only; paykit.client.drainer sends from it. See docs/offline.md.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import threading
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

from paykit.client.models import html_view
from paykit.core.clock import now_ms
from paykit.core.db import Database
from paykit.core.errors import IdempotencyKeyReused, InvalidInput, OutboxBusy, OutboxFull
from paykit.core.money import format_minor

QUEUED, SENDING, SUCCEEDED, FAILED, CANCELLED = (
    "queued",
    "sending",
    "succeeded",
    "failed",
    "cancelled",
)
PENDING_STATES = (QUEUED, SENDING)
FINAL_STATES = (SUCCEEDED, FAILED, CANCELLED)

OUTBOX_PENDING_MAX = 100  # payments waiting per user; more is refused (say so, never drop)
FINISHED_KEPT = 500  # finished entries kept as history; older reported ones are deleted
LAST_ERROR_MAX_LEN = 500  # what is kept of the last error text of an entry

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,  -- the order payments are sent in
    short_id        TEXT NOT NULL UNIQUE,               -- 8 hex digits the user types
    idem_key        TEXT NOT NULL UNIQUE,               -- made once, reused on every send
    request_id      TEXT NOT NULL,                      -- the same on every send, for the logs
    to_bank         TEXT NOT NULL,
    to_account      TEXT NOT NULL,
    amount_minor    INTEGER NOT NULL CHECK (amount_minor > 0),
    state TEXT NOT NULL CHECK (state IN ('queued', 'sending', 'succeeded', 'failed', 'cancelled')),
    maybe_sent      INTEGER NOT NULL DEFAULT 0,         -- 1: the gateway may have it; no cancel
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_unix_ms INTEGER NOT NULL,
    updated_unix_ms INTEGER NOT NULL,
    last_error      TEXT NOT NULL DEFAULT '',
    last_reason     TEXT NOT NULL DEFAULT '',           -- its stable reason (CONNECT_FAILED, ...)
    payment_id      TEXT NOT NULL DEFAULT '',
    failure_reason  TEXT NOT NULL DEFAULT '',
    failure_message TEXT NOT NULL DEFAULT '',
    payment         BLOB,                               -- the gateway's Payment message as received
    reported        INTEGER NOT NULL DEFAULT 0          -- 1: the user has been told how it ended
);
CREATE INDEX IF NOT EXISTS outbox_state ON outbox (state, seq);
"""


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
    last_reason: str = ""
    payment_id: str = ""
    failure_reason: str = ""
    failure_message: str = ""
    payment: bytes | None = None

    @property
    def cancellable(self) -> bool:
        return self.state == QUEUED and not self.maybe_sent

    def as_row(self) -> dict[str, object]:
        """The fields a person reads, amounts as text (a notebook row)."""
        return {
            "outbox_id": self.short_id,
            "state": self.state,
            "to": f"{self.to_bank}/{self.to_account}",
            "amount": format_minor(self.amount_minor),
            "attempts": self.attempts,
            "maybe_sent": self.maybe_sent,
            "last_reason": self.last_reason,
            "payment": self.payment_id[:8],
        }

    def _repr_html_(self) -> str:
        return html_view("Outbox entry", self.as_row())


@dataclass(frozen=True)
class Added:
    """What Outbox.add did: the entry, how many queued payments wait before it, and whether
    the caller holds it (claimed: state sending, the caller must send it and apply the answer)."""

    entry: Entry
    ahead: int
    claimed: bool


# What one send of an entry taught us (paykit.client.drainer.classify decides which).
DONE, RETRY, AUTH, TLS = "done", "retry", "auth", "tls"


@dataclass(frozen=True)
class Attempt:
    """What one send of an entry taught us."""

    # DONE: definite answer | RETRY: uncertain | AUTH: token refused | TLS: handshake failed
    kind: str
    status: str = ""  # for DONE: succeeded | failed
    payment_id: str = ""
    reason: str = ""
    message: str = ""
    payment: bytes | None = None
    maybe_sent: bool = True  # False only when the request certainly never left this machine
    # a refusal's ErrorInfo metadata (its "field")
    metadata: dict[str, str] = field(default_factory=dict)


# -- the store --------------------------------------------------------------


def outbox_path(folder: Path, gateway: str, username: str) -> Path:
    """<folder>/<gateway>-<user>.db, with anything unsafe in a file name replaced by _."""

    def safe(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9._-]", "_", text)

    return Path(folder) / f"{safe(gateway)}-{safe(username)}.db"


def _add_missing_columns(db: Database) -> None:
    """An outbox file from an earlier paykit lacks newer columns: add them (with their defaults)."""
    have = {row["name"] for row in db.read().execute("PRAGMA table_info(outbox)")}
    if "last_reason" not in have:
        with db.write() as conn:
            conn.execute("ALTER TABLE outbox ADD COLUMN last_reason TEXT NOT NULL DEFAULT ''")


def _entry(row) -> Entry:
    return Entry(
        row["seq"],
        row["short_id"],
        row["idem_key"],
        row["request_id"],
        row["to_bank"],
        row["to_account"],
        row["amount_minor"],
        row["state"],
        bool(row["maybe_sent"]),
        row["attempts"],
        row["created_unix_ms"],
        row["last_error"],
        row["last_reason"],
        row["payment_id"],
        row["failure_reason"],
        row["failure_message"],
        bytes(row["payment"]) if row["payment"] is not None else None,
    )


class Outbox:
    """One user's outbox file; one process at a time (an flock on <file>.lock)."""

    def __init__(self, path: Path, *, pending_max: int = OUTBOX_PENDING_MAX) -> None:
        self.path = Path(path)
        self.pending_max = pending_max
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # held open (and locked) until close()
        self._lock_file = open(self.path.with_suffix(".lock"), "a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise OutboxBusy(
                f"the outbox {self.path.name} is in use by another paykit client on this machine; "
                "close that client first"
            ) from None
        self._lock_file.truncate(0)
        self._lock_file.write(f"{os.getpid()}\n")
        self._lock_file.flush()
        self.db = Database(self.path, SCHEMA)
        _add_missing_columns(self.db)
        # close() and mark_reported() (which runs on the notifier's thread) take turns: the file
        # is never written after its flock has been let go.
        self._closing = threading.Lock()
        self.closed = False
        # A 'sending' row left by a crashed process may have reached the gateway: queue it
        # again (the same key makes the resend safe) and never let it be cancelled.
        with self.db.write() as conn:
            conn.execute(
                "UPDATE outbox SET state = ?, maybe_sent = 1 WHERE state = ?", (QUEUED, SENDING)
            )

    def close(self) -> None:
        with self._closing:
            if self.closed:
                return
            self.closed = True
            self.db.close()
            self._lock_file.close()  # releases the flock: from now on another process may open it

    def add(
        self, to_bank: str, to_account: str, amount_minor: int, *, key: str | None = None
    ) -> Added:
        """Commits a payment before anything is sent; says whether the caller may send it now.

        It is claimed for the caller (sending, durable) when no queued payment waits before
        it: queued ones go first (FIFO). Call it holding the drainer's send slot, so no other
        send is in flight. A key already here is a retry of that payment: it is returned.
        """
        now = now_ms()
        with self.db.write() as conn:
            row = (
                conn.execute("SELECT * FROM outbox WHERE idem_key = ?", (key,)).fetchone()
                if key
                else None
            )
            if row is not None:
                return self._retry(conn, _entry(row), to_bank, to_account, amount_minor)
            pending = conn.execute(
                "SELECT COUNT(*) FROM outbox WHERE state IN (?, ?)", PENDING_STATES
            ).fetchone()[0]
            if pending >= self.pending_max:
                raise OutboxFull(
                    f"the offline queue is full ({pending} payments waiting, the limit is "
                    f"{self.pending_max}); nothing was queued"
                )
            ahead = conn.execute(
                "SELECT COUNT(*) FROM outbox WHERE state = ?", (QUEUED,)
            ).fetchone()[0]
            state, attempts = (QUEUED, 0) if ahead else (SENDING, 1)
            cur = conn.execute(
                "INSERT INTO outbox (short_id, idem_key, request_id, to_bank, to_account, "
                "amount_minor, state, "
                "attempts, created_unix_ms, updated_unix_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self._new_short_id(conn),
                    key or str(uuid.uuid4()),
                    uuid.uuid4().hex,
                    to_bank,
                    to_account,
                    amount_minor,
                    state,
                    attempts,
                    now,
                    now,
                ),
            )
            row = conn.execute("SELECT * FROM outbox WHERE seq = ?", (cur.lastrowid,)).fetchone()
        return Added(_entry(row), ahead, claimed=not ahead)

    @staticmethod
    def _retry(conn, entry: Entry, to_bank: str, to_account: str, amount_minor: int) -> Added:
        if (entry.to_bank, entry.to_account, entry.amount_minor) != (
            to_bank,
            to_account,
            amount_minor,
        ):
            raise IdempotencyKeyReused(
                f"idempotency key {entry.key} was used for a different payment (queued as "
                f"{entry.short_id}); make a new key for a new payment"
            )
        ahead = conn.execute(
            "SELECT COUNT(*) FROM outbox WHERE state = ? AND seq < ?", (QUEUED, entry.seq)
        ).fetchone()[0]
        # A pending entry with nobody ahead is the caller's to send. (It can be `sending` only if a
        # send of it was cut short: the caller holds the drainer's one send slot, so no one else
        # is.)
        if entry.state not in PENDING_STATES or ahead:
            return Added(entry, ahead, claimed=False)
        conn.execute(
            "UPDATE outbox SET state = ?, attempts = attempts + 1, updated_unix_ms = ? WHERE seq = "
            "?",
            (SENDING, now_ms(), entry.seq),
        )
        return Added(replace(entry, state=SENDING, attempts=entry.attempts + 1), 0, claimed=True)

    @staticmethod
    def _new_short_id(conn) -> str:
        while True:
            short_id = secrets.token_hex(4)
            if not conn.execute("SELECT 1 FROM outbox WHERE short_id = ?", (short_id,)).fetchone():
                return short_id

    def head(self) -> Entry | None:
        """The oldest pending payment: the only one that may be sent (FIFO)."""
        row = (
            self.db.read()
            .execute(
                "SELECT * FROM outbox WHERE state IN (?, ?) ORDER BY seq LIMIT 1", PENDING_STATES
            )
            .fetchone()
        )
        return _entry(row) if row else None

    def claim(self, seq: int) -> Entry | None:
        """queued -> sending, if `seq` is still queued and first in line; durable before the
        send."""
        with self.db.write() as conn:
            first = conn.execute(
                "SELECT seq, state FROM outbox WHERE state IN (?, ?) ORDER BY seq LIMIT 1",
                PENDING_STATES,
            ).fetchone()
            if first is None or first["seq"] != seq or first["state"] != QUEUED:
                return None
            conn.execute(
                "UPDATE outbox SET state = ?, attempts = attempts + 1, updated_unix_ms = ? WHERE "
                "seq = ?",
                (SENDING, now_ms(), seq),
            )
            row = conn.execute("SELECT * FROM outbox WHERE seq = ?", (seq,)).fetchone()
        return _entry(row)

    def release(self, seq: int, attempt: Attempt) -> None:
        """sending -> queued after an uncertain answer (or no send at all)."""
        with self.db.write() as conn:
            conn.execute(
                "UPDATE outbox SET state = ?, maybe_sent = MAX(maybe_sent, ?), last_error = ?, "
                "last_reason = ?, "
                "updated_unix_ms = ? "
                "WHERE seq = ? AND state = ?",
                (
                    QUEUED,
                    int(attempt.maybe_sent),
                    attempt.message[:LAST_ERROR_MAX_LEN],
                    attempt.reason,
                    now_ms(),
                    seq,
                    SENDING,
                ),
            )

    def finish(self, seq: int, attempt: Attempt, *, reported: bool) -> Entry:
        """sending -> succeeded | failed, with the gateway's answer; prunes old history."""
        with self.db.write() as conn:
            conn.execute(
                "UPDATE outbox SET state = ?, payment_id = ?, failure_reason = ?, failure_message "
                "= ?, payment = ?, "
                "reported = ?, last_error = '', last_reason = '', updated_unix_ms = ? "
                "WHERE seq = ?",
                (
                    attempt.status,
                    attempt.payment_id,
                    attempt.reason,
                    attempt.message,
                    attempt.payment,
                    int(reported),
                    now_ms(),
                    seq,
                ),
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
            row = conn.execute(
                "SELECT * FROM outbox WHERE short_id = ?", (short_id.lower(),)
            ).fetchone()
            if row is None or row["state"] not in PENDING_STATES:
                raise InvalidInput(f"no queued payment {short_id!r}; list them with: queue")
            entry = _entry(row)
            if not entry.cancellable:
                raise InvalidInput(
                    f"payment {short_id} cannot be cancelled: it has been sent and no answer came "
                    "back, so the "
                    "gateway may have it; it will be resent with the same key until the gateway "
                    "answers"
                )
            conn.execute(
                "UPDATE outbox SET state = ?, reported = 1, updated_unix_ms = ? WHERE seq = ?",
                (CANCELLED, now_ms(), entry.seq),
            )
        return entry

    def mark_reported(self, seq: int) -> bool:
        """Notes that the user was told how `seq` ended. After close() it does nothing (and says
        False): the entry stays unreported, so the next session tells it again, at least once."""
        with self._closing:
            if self.closed:
                return False
            with self.db.write() as conn:
                conn.execute("UPDATE outbox SET reported = 1 WHERE seq = ?", (seq,))
            return True

    def pending(self) -> list[Entry]:
        rows = (
            self.db.read()
            .execute("SELECT * FROM outbox WHERE state IN (?, ?) ORDER BY seq", PENDING_STATES)
            .fetchall()
        )
        return [_entry(r) for r in rows]

    def unreported(self) -> list[Entry]:
        """Finished payments whose outcome the user has not been told (the client died first)."""
        rows = (
            self.db.read()
            .execute(
                "SELECT * FROM outbox WHERE reported = 0 AND state IN (?, ?) ORDER BY seq",
                (SUCCEEDED, FAILED),
            )
            .fetchall()
        )
        return [_entry(r) for r in rows]
