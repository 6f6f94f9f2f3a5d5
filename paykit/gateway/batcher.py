"""Natural batching: work for one peer goes at once when nothing is in flight; what arrives while a
batch is in flight waits, and everything that waited goes together when it returns.

No timer, so a lone caller waits for nothing, and under load batches grow by themselves to
the size the round trip allows (TigerBeetle batches the same way; so does SQLite's group
commit in paykit.core.db). Each item gets its own Future. Plain Python: the gateway's bank
adapter (paykit.gateway.banks) gives it a function that sends one batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batcher(Generic[Item, Result]):
    """Sends items to one peer in batches of at most `max_items`, one batch in flight at a time.

    `send(items)` returns one result per item, in order; if it raises, every item of that batch
    gets `failed(item, error)` instead. It runs on `pool`, never on the caller's thread."""

    def __init__(
        self,
        send: Callable[[Sequence[Item]], Sequence[Result]],
        failed: Callable[[Item, BaseException], Result],
        pool: Executor,
        max_items: int,
    ) -> None:
        self._send, self._failed, self._pool, self._max = send, failed, pool, max_items
        self._lock = threading.Lock()  # guards _waiting and _busy
        self._waiting: list[tuple[Item, Future[Result]]] = []
        self._busy = False  # a batch is in flight (its sender thread will take the next one)

    def submit(self, item: Item, *, inline: bool = False) -> Future[Result]:
        """Queues `item`; with nothing in flight its batch is sent now. `inline`: by this thread,
        before submit returns (for a caller about to wait anyway: one thread hand-off fewer),
        else by the pool, so the caller can submit to other peers meanwhile."""
        future: Future[Result] = Future()
        with self._lock:
            self._waiting.append((item, future))
            start, self._busy = not self._busy, True
        if start and inline:
            self._send_one()
            with self._lock:  # whatever arrived meanwhile goes on the pool's thread
                handoff = self._busy = bool(self._waiting)
            if handoff:
                self._pool.submit(self._drain)
        elif start:
            self._pool.submit(self._drain)
        return future

    def _drain(self) -> None:
        """Sends batches until nothing waits; then the next submit starts a new drain."""
        while self._send_one():
            pass

    def _send_one(self) -> bool:
        """Sends the next batch; False (and no longer busy) when nothing waits."""
        with self._lock:
            batch, self._waiting = self._waiting[: self._max], self._waiting[self._max :]
            if not batch:
                self._busy = False
                return False
        self._deliver(batch)
        return True

    def _deliver(self, batch: list[tuple[Item, Future[Result]]]) -> None:
        items = [item for item, _ in batch]
        try:
            results = list(self._send(items))
            if len(results) != len(items):
                raise RuntimeError(f"{len(results)} results for {len(items)} items")
        except BaseException as exc:  # the batch failed as a whole: so does each of its items
            results = [self._failed(item, exc) for item in items]
        for (_, future), result in zip(batch, results, strict=True):
            future.set_result(result)
