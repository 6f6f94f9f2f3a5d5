"""Running one server process: lock its data folder, serve health and reflection, report
the port it got, stop cleanly on SIGTERM/SIGINT, and exit when its parent dies.

The gRPC server is grpc.aio's, on an event loop of its own thread, so that an idle stream or a
call whose request has not arrived costs no thread; the servicers stay synchronous and run on
worker pools (paykit.rpc.dispatch). Everything else in the process (recovery, background
threads, the main thread waiting for a signal) is unchanged: Server's methods are synchronous.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path

from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from paykit.core import eventlog, failpoints
from paykit.core.config import SIGN_IN_WORKERS
from paykit.core.errors import Unavailable
from paykit.rpc.channels import make_server
from paykit.rpc.dispatch import Pool
from paykit.rpc.interceptors import (
    DEFAULT_POOL,
    SIGN_IN_POOL,
    AuthorizationInterceptor,
    LoggingInterceptor,
)
from paykit.v1 import payment_pb2

STOP_GRACE_S = 1.0
# Sign-ins and registrations that may wait for the sign-in pool's threads: a wait costs no
# thread, and most of a burst is answered at once by the throttle, so the queue can be long.
SIGN_IN_QUEUE = 256


def private_data_dir(data_dir: Path) -> None:
    """The data folder and what the server writes in it are its owner's alone: 0700, and 0600
    for every file (databases and their -wal/-shm, logs), also those an earlier run made."""
    os.umask(0o077)  # SQLite creates its files itself: the process's umask decides their mode
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    for path in data_dir.iterdir():
        if path.is_file() and not path.is_symlink():
            os.chmod(path, 0o600)


def lock_data_dir(data_dir: Path, name: str):
    """Holds an exclusive lock for the process's life: one server per database."""
    try:
        private_data_dir(data_dir)
        handle = open(data_dir / f"{name}.lock", "w")
    except OSError as exc:
        raise Unavailable(
            f"cannot use {data_dir} as {name}'s data folder: {exc.strerror}; "
            "choose another with --data-dir"
        ) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise Unavailable(f"{name} is already running on {data_dir} (its lock is held)") from None
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


class _Loop:
    """An asyncio event loop running on a thread of its own; run() waits for a coroutine."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()


class Server:
    """A paykit gRPC server with the shared interceptors, health and reflection."""

    def __init__(
        self,
        *,
        name: str,
        host: str,
        port: int,
        data_dir: Path,
        tls,
        workers: int,
        failpoints_enabled: bool,
    ) -> None:
        self.name = name
        self.data_dir = Path(data_dir)
        self._lock = lock_data_dir(self.data_dir, name)
        eventlog.configure(self.data_dir / f"{name}.jsonl", service=name)
        failpoints.configure(self.data_dir, enabled=failpoints_enabled)
        self.pools = {
            DEFAULT_POOL: Pool(DEFAULT_POOL, workers),
            SIGN_IN_POOL: Pool(SIGN_IN_POOL, SIGN_IN_WORKERS, queue_max=SIGN_IN_QUEUE),
        }
        self._authorization = AuthorizationInterceptor(self.pools)
        interceptors = [LoggingInterceptor(), self._authorization]
        self._loop = _Loop(f"{name}-grpc")

        async def create():
            # grpc.aio objects belong to the loop they are made on.
            made = make_server(
                host, port, tls, interceptors=interceptors, migration_pool=self.pools[DEFAULT_POOL]
            )
            return (*made, health.aio.HealthServicer())

        self.grpc_server, self.port, self.health = self._loop.run(create())
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc_server)
        self.stopped = threading.Event()
        self._stopping = threading.Lock()

    def check_tokens_with(self, user_for_token: Callable[[str], object]) -> None:
        """How calls that need a user (Access.USER) turn a bearer token into one; set before
        start()."""
        self._authorization.user_for_token = user_for_token

    def add_services(self, adders: list[tuple[Callable, object, str]]) -> None:
        """(add_XServicer_to_server, servicer, full service name) for each service."""
        names = [health.SERVICE_NAME, reflection.SERVICE_NAME]
        for add, servicer, service_name in adders:
            add(servicer, self.grpc_server)
            names.append(service_name)
            self._set_health(service_name, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.services = names[2:]
        reflection.enable_server_reflection(names, self.grpc_server)

    def _set_health(self, service_name: str, status) -> None:
        self._loop.run(self.health.set(service_name, status))

    def start(self) -> None:
        self._set_health("", health_pb2.HealthCheckResponse.NOT_SERVING)
        self._loop.run(self.grpc_server.start())

    def ready(self) -> None:
        """Recovery is done: mark SERVING and tell whoever started us which port we got."""
        for service_name in self.services + [""]:
            self._set_health(service_name, health_pb2.HealthCheckResponse.SERVING)
        eventlog.event("server.ready", port=self.port, pid=os.getpid())
        print(json.dumps({"ready": self.name, "port": self.port, "pid": os.getpid()}), flush=True)

    def stop(self) -> None:
        if self._stopping.acquire(blocking=False):  # a signal and stdin EOF may both ask
            self._loop.run(self.health.enter_graceful_shutdown())
            self._loop.run(self.grpc_server.stop(STOP_GRACE_S))
            for pool in self.pools.values():
                pool.shutdown()
            self.stopped.set()

    def serve_until_stopped(self, *, exit_on_stdin_eof: bool) -> None:
        def on_signal(signum, _frame):
            eventlog.event("server.stopping", signal=signal.Signals(signum).name)
            threading.Thread(target=self.stop, daemon=True).start()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        if exit_on_stdin_eof:
            # The parent holds our stdin pipe; when it dies (even by SIGKILL) we read EOF.
            threading.Thread(target=self._watch_stdin, daemon=True).start()
        while not self.stopped.wait(0.5):
            pass
        eventlog.event("server.stopped")

    def _watch_stdin(self) -> None:
        # os.read on the raw descriptor, not sys.stdin: a daemon thread blocked inside a
        # buffered reader can abort the interpreter's shutdown ("_enter_buffered_busy").
        while os.read(0, 4096):
            pass
        eventlog.event("server.parent_gone")
        self.stop()


SERVICE_NAMES = {
    name: payment_pb2.DESCRIPTOR.services_by_name[name].full_name
    for name in ("Gateway", "Bank", "Coordinator", "OperatorService")
}
