"""Running paykit's synchronous servicers under the asyncio gRPC server, on bounded thread pools.

The asyncio server holds a call that is waiting for its request message, or an idle stream, as
a coroutine: no thread is committed until a call's whole request has arrived (docs/security.md,
"Holding a server"). Then the servicer's plain synchronous code runs on a worker thread with
`SyncContext`, the part of grpc.ServicerContext paykit's servicers use. Each pool's queue is
bounded: past it a call is refused at once (UNAVAILABLE, retry) instead of waiting unseen.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc

from paykit.core.errors import Unavailable

QUEUE_PER_WORKER = 8  # calls that may wait for a pool's thread, per thread


class _Aborted(Exception):
    """Raised on the worker thread by SyncContext.abort*: the call ends with the status kept."""


class SyncContext:
    """A grpc.ServicerContext for synchronous code on a worker thread, over the asyncio call's
    context. abort() raises at once, as in grpc's sync server; add_callback() callbacks run when
    the call is over (its status sent), as there."""

    def __init__(self, context: grpc.aio.ServicerContext) -> None:
        self._context = context
        self.status: grpc.Status | None = None
        self.callbacks: list[Callable[[], None]] = []

    def invocation_metadata(self):
        return self._context.invocation_metadata()

    def auth_context(self):
        return self._context.auth_context()

    def peer(self) -> str:
        return self._context.peer()

    def time_remaining(self):
        return self._context.time_remaining()

    def set_code(self, code: grpc.StatusCode) -> None:
        self._context.set_code(code)

    def set_details(self, details: str) -> None:
        self._context.set_details(details)

    def abort_with_status(self, status: grpc.Status):
        self.status = status
        raise _Aborted()

    def abort(self, code: grpc.StatusCode, details: str):
        self.abort_with_status(_Status(code, details, ()))

    def add_callback(self, callback: Callable[[], None]) -> bool:
        self.callbacks.append(callback)
        return True


class _Status(grpc.Status):
    def __init__(self, code, details, trailing_metadata) -> None:
        self.code, self.details, self.trailing_metadata = code, details, trailing_metadata


class Pool:
    """A named thread pool with a bounded queue of calls waiting for its threads."""

    def __init__(self, name: str, workers: int, queue_max: int | None = None) -> None:
        self.name = name
        self.workers = workers
        self.queue_max = workers * QUEUE_PER_WORKER if queue_max is None else queue_max
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._pending = 0  # calls given to the executor and not yet finished

    def _admit(self) -> None:
        with self._lock:
            if self._pending >= self.workers + self.queue_max:
                raise Unavailable(
                    f"the server is busy ({self._pending} calls for its {self.name} threads); "
                    "try again in a moment"
                )
            self._pending += 1

    def _done(self, _future) -> None:
        with self._lock:
            self._pending -= 1

    async def run(self, fn: Callable, request, context: grpc.aio.ServicerContext):
        """Runs fn(request, SyncContext) on a thread of this pool, in the call's contextvars;
        a status it aborted with is sent from here."""
        self._admit()
        sync = SyncContext(context)
        ctx = contextvars.copy_context()
        future = asyncio.get_running_loop().run_in_executor(
            self._executor, ctx.run, _call, fn, request, sync
        )
        future.add_done_callback(self._done)
        response = await future
        for callback in sync.callbacks:
            context.add_done_callback(lambda _ctx, callback=callback: callback())
        if sync.status is not None:
            return end_with(context, sync.status)
        return response

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def end_with(context: grpc.aio.ServicerContext, status: grpc.Status) -> None:
    """Ends a unary call with `status` once the handler returns. Unlike abort(), which sends the
    status at once, this lets the interceptors finish first (the call's log line is written
    before the caller can see the answer, as in grpc's sync server)."""
    context.set_code(status.code)
    context.set_details(status.details)
    context.set_trailing_metadata(tuple(status.trailing_metadata or ()))


def _call(fn: Callable, request, sync: SyncContext):
    try:
        return fn(request, sync)
    except _Aborted:
        return None
