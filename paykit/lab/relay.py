"""Fault relays: TCP links between paykit's processes that can be cut, made to lose bytes one way
or both, delayed, and healed, while mutual TLS passes through untouched (see docs/network.md).

A relay copies bytes and never decrypts them, so every process still checks its peer's
certificate: a link is no way around mutual TLS. One event-loop thread serves all the links of
one `Relays`:

    relays = Relays(seed=7)
    link = relays.add("gateway->BankB", caller="gateway", server="BankB", service="Bank",
                      target=lambda: "127.0.0.1:50052")
    link.address                       where the caller dials instead of the server
    relays.cut([link])                 connections reset, new ones refused (ECONNREFUSED)
    relays.drop([link], REPLIES)       requests pass, every byte of the answers is lost
    relays.delay([link], ms=200, jitter_ms=50)
    relays.heal()                      every link passes again
    relays.states()                    one LinkState per link (dataclasses.asdict: a row)
    relays.close()                     listeners and connections closed, the thread joined

A connection that lost bytes can never carry its TLS stream again (a real network retransmits
a lost packet or, after long enough, TCP gives up and resets the connection), so healing resets
it, and gRPC dials again. The state of every link belongs to the loop thread: the methods
above run there and return once their sockets are closed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import math
import random
import socket
import struct
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from paykit.core.errors import InvalidInput, Unavailable

REQUESTS, REPLIES = "requests", "replies"  # caller -> server bytes, server -> caller bytes
BOTH = "both"
DIRECTIONS = (REQUESTS, REPLIES)
PASS, DROP, DELAY = "pass", "drop", "delay"
DELAY_MAX_MS = 60_000  # a longer delay is a partition: use drop
QUEUE_MAX_BYTES = 1 << 20  # a delayed direction holds this much, then stops reading its source
LISTEN_BACKLOG = 128
BIND_ATTEMPTS = 20
CONTROL_TIMEOUT_S = 10.0  # longest a control call waits for the loop thread
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST instead of FIN


@dataclass(frozen=True)
class Fault:
    """What a link does to one direction's bytes: pass them, drop them, or delay them."""

    kind: str = PASS
    ms: float = 0.0
    jitter_ms: float = 0.0

    def delay_s(self, rng: random.Random) -> float:
        return max(0.0, self.ms + rng.uniform(-self.jitter_ms, self.jitter_ms)) / 1000

    def __str__(self) -> str:
        if self.kind == DELAY:
            jitter = f"±{self.jitter_ms:g}" if self.jitter_ms else ""
            return f"delay {self.ms:g}{jitter} ms"
        return "dropped" if self.kind == DROP else "pass"


HEALTHY = Fault()


@dataclass(frozen=True)
class LinkState:
    """One link as it is now: a row of LocalCluster.links() (dataclasses.asdict)."""

    link: str  # "caller->server"
    caller: str
    server: str
    service: str  # the gRPC service the caller uses on this link
    state: str  # "ok", "cut", or what each direction does ("replies dropped", ...)
    requests: str  # "pass", "dropped" or "delay 200 ms"
    replies: str
    connections: int  # open now
    request_bytes: int  # forwarded so far, caller -> server
    reply_bytes: int
    dropped_bytes: int  # lost to drop faults so far, both directions
    address: str  # where the caller dials
    target: str  # where the relay forwards to

    def __repr__(self) -> str:
        n = self.connections
        return f"<link {self.link}: {self.state}, {n} connection{'s' * (n != 1)}>"


def _summary(cut: bool, requests: Fault, replies: Fault) -> str:
    if cut:
        return "cut"
    if requests == replies:
        return "ok" if requests == HEALTHY else f"{requests} both ways"
    return ", ".join(
        f"{d} {f}" for d, f in ((REQUESTS, requests), (REPLIES, replies)) if f.kind != PASS
    )


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _other(direction: str) -> str:
    return REPLIES if direction == REQUESTS else REQUESTS


def _linger_zero(sock) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
    except OSError:  # closed already
        pass


def _reset(transport: asyncio.BaseTransport) -> None:
    """Closes with RST, as a rejecting network does: gRPC reads "connection reset", not the
    orderly close (FIN) a server gives a certificate it refuses, which the client counts."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        _linger_zero(sock)
    transport.abort()


def bind_listener(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening socket on an explicitly bound port (`port`, else a free one).

    Only an explicit bind keeps its port while the socket stops listening (a cut), so a healed
    link listens on the same address again; a port-0 bind would give its port back."""
    for _ in range(BIND_ATTEMPTS):
        if not port:
            with socket.socket() as probe:
                probe.bind((host, 0))
                want = probe.getsockname()[1]
        else:
            want = port
        sock = socket.socket()
        # Without it, listening again after a cut fails (EADDRINUSE) while any connection the
        # link accepted still holds the port, open or in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, want))
        except OSError:
            sock.close()
            port = 0  # taken meanwhile (or the old port of a restarted cluster): take another
            continue
        sock.setblocking(False)
        sock.listen(LISTEN_BACKLOG)
        return sock
    raise Unavailable(f"found no free port on {host} for a relay")


class Link:
    """One relay: the caller dials `address`, each connection is copied to `target()`.

    Mutable state is touched only on the loop thread (see Relays)."""

    def __init__(
        self,
        name: str,
        *,
        caller: str,
        server: str,
        service: str,
        target: Callable[[], str],
        listener: socket.socket,
    ) -> None:
        self.name, self.caller, self.server, self.service = name, caller, server, service
        self.target = target
        self.listener = listener
        self.host, self.port = listener.getsockname()[:2]
        self.faults = {REQUESTS: HEALTHY, REPLIES: HEALTHY}
        self.cut = False
        self.conns: set[_Conn] = set()
        self.forwarded: Counter = Counter()
        self.dropped = 0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def state(self) -> LinkState:
        try:
            target = self.target()
        except Exception:  # a target that is not known yet (a server not started)
            target = "?"
        req, rep = self.faults[REQUESTS], self.faults[REPLIES]
        return LinkState(
            self.name,
            self.caller,
            self.server,
            self.service,
            _summary(self.cut, req, rep),
            "cut" if self.cut else str(req),
            "cut" if self.cut else str(rep),
            len(self.conns),
            self.forwarded[REQUESTS],
            self.forwarded[REPLIES],
            self.dropped,
            self.address,
            target,
        )

    def __repr__(self) -> str:
        return f"<Link {self.name} on {self.address}>"


class _Side(asyncio.Protocol):
    """One socket of a relayed connection: the caller's (it reads requests) or the relay's own
    to the server (it reads replies)."""

    def __init__(self, conn: _Conn, reads: str) -> None:
        self.conn, self.reads = conn, reads
        self.transport: asyncio.Transport | None = None
        self.pauses: set[str] = set()  # why reading is paused: "peer" backs up, "queue" is full

    def pause(self, why: str) -> None:
        if not self.pauses and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        self.pauses.add(why)

    def resume(self, why: str) -> None:
        if why not in self.pauses:
            return
        self.pauses.discard(why)
        if not self.pauses and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def connection_made(self, transport) -> None:
        self.transport = transport
        if self.pauses:
            transport.pause_reading()
        self.conn.made(self)

    def data_received(self, data: bytes) -> None:
        self.conn.received(self.reads, data)

    def eof_received(self) -> bool:
        self.conn.received(self.reads, b"")  # b"" stands for the FIN, queued behind the data
        return True  # keep the socket open for writing: the other way may still carry bytes

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.close(reset=exc is not None)

    def pause_writing(self) -> None:  # this socket's send buffer is full: stop its feeder
        self.conn.readers[_other(self.reads)].pause("peer")

    def resume_writing(self) -> None:
        self.conn.readers[_other(self.reads)].resume("peer")


class _Conn:
    """A caller's connection and the relay's own connection to the server, and the bytes
    between them (loop thread only)."""

    def __init__(self, relays: Relays, link: Link) -> None:
        self.relays, self.link = relays, link
        self.readers: dict[str, _Side] = {
            REQUESTS: _Side(self, REQUESTS),
            REPLIES: _Side(self, REPLIES),
        }
        self.queues: dict[str, deque[tuple[float, bytes]]] = {d: deque() for d in DIRECTIONS}
        self.queued: Counter = Counter()
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.eofs: set[str] = set()  # directions whose FIN was delivered
        self.lost = False  # bytes were dropped: the stream is broken, so heal resets it
        self.closed = False

    def writer(self, direction: str) -> asyncio.Transport | None:
        """The transport that writes `direction`'s bytes, once it is connected."""
        t = self.readers[_other(direction)].transport
        return None if t is None or t.is_closing() else t

    def made(self, side: _Side) -> None:
        if self.closed:
            _reset(side.transport)
            return
        self.flush(_other(side.reads))  # bytes that waited for this socket can go now

    def received(self, direction: str, data: bytes) -> None:
        fault = self.link.faults[direction]
        if fault.kind == DROP:
            self.lose(len(data))
            if not data and self.readers[REPLIES].transport is None:
                self.close(reset=True)  # the caller gave up on a blackholed connection: let go
            return
        out, q = self.writer(direction), self.queues[direction]
        if fault.kind == PASS and not q and out is not None and data:
            out.write(data)  # the common case: nothing waits, nothing is wrong
            self.link.forwarded[direction] += len(data)
            return
        now = self.relays.loop.time()
        due = now + fault.delay_s(self.relays.rng) if fault.kind == DELAY else now
        q.append((max(due, q[-1][0]) if q else due, data))  # TCP keeps order, so do we
        self.queued[direction] += len(data)
        if self.queued[direction] > QUEUE_MAX_BYTES:
            self.readers[direction].pause("queue")
        self.flush(direction)

    def flush(self, direction: str) -> None:
        """Writes every byte of `direction` that is due, and sets a timer for the rest."""
        out, q = self.writer(direction), self.queues[direction]
        if self.closed or out is None:
            return
        now = self.relays.loop.time()
        while q and q[0][0] <= now:
            _, data = q.popleft()
            self.queued[direction] -= len(data)
            if data:
                out.write(data)
                self.link.forwarded[direction] += len(data)
            else:
                self.deliver_eof(direction, out)
        if self.queued[direction] <= QUEUE_MAX_BYTES // 2:
            self.readers[direction].resume("queue")
        timer = self.timers.pop(direction, None)
        if timer is not None:
            timer.cancel()
        if q and not self.closed:
            self.timers[direction] = self.relays.loop.call_at(q[0][0], self.flush, direction)

    def deliver_eof(self, direction: str, out: asyncio.Transport) -> None:
        if out.can_write_eof():
            try:
                out.write_eof()
            except OSError:  # that side reset meanwhile, unseen: its reading stopped at its FIN
                self.close(reset=True)
                return
        self.eofs.add(direction)
        if len(self.eofs) == 2:  # both ends said FIN: an orderly close, as the peers meant
            self.close(reset=False)

    def lose(self, nbytes: int) -> None:
        self.lost = True
        self.link.dropped += nbytes

    def refault(self, direction: str) -> None:
        """The link's fault on `direction` changed: bytes waiting there follow the new one."""
        fault, q = self.link.faults[direction], self.queues[direction]
        if fault.kind == DROP:
            if q:  # bytes "on the wire" when the cable is pulled are lost with it
                self.lose(self.queued[direction])
                q.clear()
                self.queued[direction] = 0
        elif fault.kind == PASS:
            now = self.relays.loop.time()
            self.queues[direction] = deque((now, data) for _, data in q)
        self.flush(direction)

    def close(self, *, reset: bool) -> None:
        if self.closed:
            return
        self.closed = True
        for timer in self.timers.values():
            timer.cancel()
        for side in self.readers.values():
            t = side.transport
            if t is not None and not t.is_closing():
                _reset(t) if reset else t.close()
        self.link.conns.discard(self)


class Relays:
    """Every link of one cluster, served by one event-loop thread that owns their state."""

    def __init__(self, *, seed: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.rng = random.Random(seed)  # jitter, on the loop thread only
        self.links: dict[str, Link] = {}
        self.loop = asyncio.new_event_loop()
        self._tasks: set[asyncio.Task] = set()
        self._lock = threading.Lock()  # guards _closed and _waiting (any thread)
        self._closed = False
        self._waiting: set[concurrent.futures.Future] = set()
        # A daemon, so a notebook that never stops its cluster can still exit; stop() joins it.
        self._thread = threading.Thread(target=self._run, name="paykit-relays", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"<Relays {', '.join(self.links) or 'no links'}{' (closed)' * self._closed}>"

    # -- the loop thread --------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        tasks = asyncio.all_tasks(self.loop)  # connections still being opened
        for task in tasks:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self.loop.run_until_complete(asyncio.sleep(0))  # let the last aborts close their sockets

    def _call(self, fn: Callable, *args):
        """Runs fn(*args) on the loop thread; returns its result once the sockets it closed are
        closed. Raises Unavailable if the relays are closed (also while waiting)."""
        done: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            try:
                result = fn(*args)
            except BaseException as exc:
                done.set_exception(exc)
            else:  # an abort closes its socket in the next callback: answer after those
                self.loop.call_soon(done.set_result, result)

        with self._lock:
            if self._closed:
                raise Unavailable("the network relays are closed (the cluster was stopped)")
            self._waiting.add(done)
            self.loop.call_soon_threadsafe(run)
        try:
            return done.result(CONTROL_TIMEOUT_S)
        finally:
            with self._lock:
                self._waiting.discard(done)

    def _listen(self, link: Link) -> None:
        link.listener.listen(LISTEN_BACKLOG)
        self.loop.add_reader(link.listener.fileno(), self._accept, link)

    def _unlisten(self, link: Link) -> None:
        """Stops listening but keeps the port: connects are refused until _listen again."""
        self.loop.remove_reader(link.listener.fileno())
        try:
            link.listener.shutdown(socket.SHUT_RD)
        except OSError:  # not listening already
            pass

    def _accept(self, link: Link) -> None:
        while True:
            try:
                sock, _ = link.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # the listener was shut down under us (a cut)
                return
            sock.setblocking(False)
            conn = _Conn(self, link)
            link.conns.add(conn)
            task = self.loop.create_task(self._open(conn, sock))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _open(self, conn: _Conn, sock: socket.socket) -> None:
        """Wraps the caller's socket, then dials the server (unless the caller's bytes are
        being dropped: then nothing would reach it anyway)."""
        try:
            await self.loop.connect_accepted_socket(lambda: conn.readers[REQUESTS], sock)
            if conn.closed:
                return
            if conn.link.faults[REQUESTS].kind == DROP:
                conn.lost = True  # a blackholed connection: reset when the fault ends
                return
            host, port = _split(conn.link.target())
            await self.loop.create_connection(
                lambda: conn.readers[REPLIES], host, port, local_addr=_same_source(sock)
            )
        except (OSError, ValueError):
            self._abandon(conn, sock)  # the server is down: the caller's connection is reset
        except BaseException:  # cancelled at close(): leave no socket open
            self._abandon(conn, sock)
            raise

    @staticmethod
    def _abandon(conn: _Conn, sock: socket.socket) -> None:
        conn.close(reset=True)
        _linger_zero(sock)
        sock.close()

    def _shutdown(self) -> None:
        for link in self.links.values():
            self.loop.remove_reader(link.listener.fileno())
            link.listener.close()
            for conn in list(link.conns):
                conn.close(reset=True)
        self.loop.call_soon(self.loop.stop)  # after the aborts' own callbacks

    # -- links and faults (any thread) -----------------------------------------------

    def add(
        self,
        name: str,
        *,
        caller: str,
        server: str,
        service: str,
        target: Callable[[], str],
        port: int = 0,
    ) -> Link:
        """A new link listening on `port` (0: any free port) and forwarding to target()."""
        if name in self.links:
            raise InvalidInput(f"there is a link {name!r} already")
        link = Link(
            name,
            caller=caller,
            server=server,
            service=service,
            target=target,
            listener=bind_listener(self.host, port),
        )
        self.links[name] = link
        self._call(self._listen, link)
        return link

    def states(self, links: Iterable[Link] | None = None) -> list[LinkState]:
        chosen = list(self.links.values()) if links is None else list(links)
        return self._call(lambda: [link.state() for link in chosen])

    def cut(self, links: Iterable[Link]) -> list[LinkState]:
        """Resets every connection of each link and refuses new ones until healed."""
        chosen = list(links)

        def run() -> list[LinkState]:
            for link in chosen:
                if not link.cut:
                    self._unlisten(link)
                link.cut = True
                link.faults = {REQUESTS: HEALTHY, REPLIES: HEALTHY}
                for conn in list(link.conns):
                    conn.close(reset=True)
            return [link.state() for link in chosen]

        return self._call(run)

    def drop(self, links: Iterable[Link], direction: str = BOTH) -> list[LinkState]:
        """Every byte that way is read and lost: connections are accepted, nothing arrives."""
        return self._set(links, _directions(direction), Fault(DROP))

    def delay(
        self, links: Iterable[Link], *, ms: float, jitter_ms: float = 0.0, direction: str = BOTH
    ) -> list[LinkState]:
        """Each chunk of bytes that way waits ms ± jitter_ms (uniform), in order."""
        ms, jitter_ms = _millis("ms", ms), _millis("jitter_ms", jitter_ms, zero=True)
        if jitter_ms > ms:
            raise InvalidInput(f"jitter_ms ({jitter_ms:g}) must not be more than ms ({ms:g})")
        return self._set(links, _directions(direction), Fault(DELAY, ms, jitter_ms))

    def heal(self, links: Iterable[Link] | None = None) -> list[LinkState]:
        """Everything passes again; connections that lost bytes are reset (gRPC dials again)."""
        chosen = list(self.links.values()) if links is None else list(links)

        def run() -> list[LinkState]:
            for link in chosen:
                if link.cut:
                    link.cut = False
                    self._listen(link)
                link.faults = {REQUESTS: HEALTHY, REPLIES: HEALTHY}
                self._settle(link, DIRECTIONS)
            return [link.state() for link in chosen]

        return self._call(run)

    def _set(self, links: Iterable[Link], directions: tuple[str, ...], fault: Fault):
        chosen = list(links)

        def run() -> list[LinkState]:
            for link in chosen:
                if link.cut:  # a new fault replaces the cut: the link listens again
                    link.cut = False
                    self._listen(link)
                for d in directions:
                    link.faults[d] = fault
                self._settle(link, directions)
            return [link.state() for link in chosen]

        return self._call(run)

    @staticmethod
    def _settle(link: Link, directions: tuple[str, ...]) -> None:
        """After a change of `directions`' faults: a connection that lost bytes is reset once
        nothing is dropped any more (its stream is broken); the others follow the new faults."""
        dropping = any(f.kind == DROP for f in link.faults.values())
        for conn in list(link.conns):
            if conn.lost and not dropping:
                conn.close(reset=True)
                continue
            for d in directions:
                conn.refault(d)

    def close(self) -> None:
        """Closes every listener and connection (a reader blocked on one is woken: its
        connection is reset) and joins the thread; control calls still waiting raise."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.loop.call_soon_threadsafe(self._shutdown)
        self._thread.join(CONTROL_TIMEOUT_S)
        with self._lock:
            for waiting in self._waiting:
                if not waiting.done():
                    waiting.set_exception(Unavailable("the network relays were closed"))
        if not self._thread.is_alive():
            self.loop.close()


def _directions(direction: str) -> tuple[str, ...]:
    if direction == BOTH:
        return DIRECTIONS
    if direction in DIRECTIONS:
        return (direction,)
    raise InvalidInput(
        f"direction {str(direction)[:20]!r} is not one of {BOTH!r}, {REQUESTS!r}, {REPLIES!r}"
    )


def _millis(name: str, value: float, *, zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(f"{name} must be a number of milliseconds, not {str(value)[:20]!r}")
    if not (0 <= value if zero else 0 < value) or value > DELAY_MAX_MS:
        low = "0" if zero else "more than 0"
        raise InvalidInput(f"{name} must be {low} and at most {DELAY_MAX_MS} ms, not {value:g}")
    return float(value)


def _same_source(sock: socket.socket) -> tuple[str, int] | None:
    """Dial from the caller's own loopback address (127.0.0.2 stays 127.0.0.2), so the server
    sees the address it would see without the relay: its limits per address still apply."""
    try:
        address = ipaddress.ip_address(sock.getpeername()[0])
    except (OSError, ValueError):
        return None
    return (str(address), 0) if address.version == 4 and address.is_loopback else None
