"""SQLite with the settings money needs: WAL, synchronous=FULL, BEGIN IMMEDIATE, group commit.

Reads use one connection per thread. Every write runs in `with db.write() as conn:`
and either commits whole or not at all, and is on disk when the block returns. Writes
queue in this process (not in SQLite's busy loop, which sleeps up to 100 ms at a time)
and share commits: writers that arrive while a commit's fsync runs each run their block
in its own SAVEPOINT of the next transaction, and the last of them commits for all.
So N concurrent writers cost one fsync, not N, and each still waits for its own.
`write(durable=False)` is for rows a crash may lose safely (they are re-derived or
resent): it commits with synchronous=NORMAL (no fsync) in a batch of its own kind.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

BUSY_TIMEOUT_MS = 10_000


class Database:
    def __init__(self, path: Path, schema: str) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # Group commit: whose turn it is on the write connection, and the open batch.
        self._turn = threading.Condition()
        self._busy = False
        self._batch: _Batch | None = None
        self._waiting = {True: 0, False: 0}
        self._writers: dict[bool, sqlite3.Connection] = {}
        self._closed = False
        # The schema is CREATE ... IF NOT EXISTS statements: safe on every start.
        self._conn().executescript(schema)

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN ourselves, so nothing is implicit.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a transaction that returned is on disk, even if the machine dies next.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        with self._lock:
            self._all.append(conn)
        return conn

    def _conn(self) -> sqlite3.Connection:
        if self._closed:  # never reopen silently: the owner gave the file up (its lock, its folder)
            raise sqlite3.ProgrammingError(f"{self.path.name} is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    @contextmanager
    def write(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """An atomic write, durable (synchronous=FULL) when the block returns; undone on any
        error."""
        batch, conn = self._join(durable)
        try:
            conn.execute("SAVEPOINT w")
            yield conn
            conn.execute("RELEASE w")
        except BaseException:
            self._undo(batch)
            self._leave(batch)
            raise
        self._leave(batch)
        batch.done.wait()
        if batch.error is not None:
            raise batch.error

    @staticmethod
    def _undo(batch: _Batch) -> None:
        """Takes back one block's writes. If SQLite has already rolled back the whole transaction
        (disk full, I/O error), or cannot take them back, the batch fails for every writer in it."""
        conn = batch.conn
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK TO w")
                conn.execute("RELEASE w")
                return
            except sqlite3.Error as exc:
                batch.error = batch.error or exc
                return
        batch.error = batch.error or sqlite3.OperationalError("SQLite rolled the transaction back")

    def _join(self, durable: bool) -> tuple[_Batch, sqlite3.Connection]:
        """Waits for the connection, then joins the open batch or begins one."""
        if getattr(self._local, "writing", False):
            raise RuntimeError("nested db.write() in one thread: do both writes in one block")
        with self._turn:
            self._waiting[durable] += 1
            # A durable write never joins a NORMAL batch: that commit would not fsync it.
            while self._busy or (self._batch is not None and durable and not self._batch.durable):
                self._turn.wait()
            self._waiting[durable] -= 1
            self._busy = True
            batch = self._batch
        if batch is None:
            try:
                conn = self._writer(durable)
            except BaseException:  # closed: give the turn back
                with self._turn:
                    self._busy = False
                    self._turn.notify_all()
                raise
            try:
                conn.execute("BEGIN IMMEDIATE")
            except BaseException:
                # another process held the lock past busy_timeout: give the turn back
                with self._turn:
                    self._busy = False
                    self._turn.notify_all()
                raise
            batch = self._batch = _Batch(durable, conn)
        self._local.writing = True
        return batch, batch.conn

    def _leave(self, batch: _Batch) -> None:
        """Hands the connection to a waiting writer that can join, or commits the batch."""
        self._local.writing = False
        with self._turn:
            joinable = self._waiting[False] + (self._waiting[True] if batch.durable else 0)
            if joinable:
                self._busy = False
                self._turn.notify_all()
                return
            self._batch = None
        try:
            if batch.error is None:
                batch.conn.execute("COMMIT")
        except BaseException as exc:  # disk full, I/O error: every write of the batch failed
            batch.error = exc
        finally:
            if batch.conn.in_transaction:  # only after a failure: nothing of the batch may stay
                try:
                    batch.conn.execute("ROLLBACK")
                except sqlite3.Error as exc:
                    batch.error = batch.error or exc
            with self._turn:
                self._busy = False
                self._turn.notify_all()
            batch.done.set()

    def _writer(self, durable: bool) -> sqlite3.Connection:
        """The process's write connection for FULL (durable) or NORMAL batches."""
        conn = self._writers.get(durable)
        if conn is None:
            if self._closed:
                raise sqlite3.ProgrammingError(f"{self.path.name} is closed")
            conn = self._writers[durable] = self._connect()
            if not durable:
                conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def read(self) -> sqlite3.Connection:
        """A connection for reads outside a transaction (each statement sees a snapshot)."""
        return self._conn()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._writers.clear()
        self._local = threading.local()


@dataclass(eq=False)
class _Batch:
    """Writes that share one transaction and one commit."""

    durable: bool
    conn: sqlite3.Connection
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
