"""`python -m paykit.lab.attack`: hold a server's capacity the way a certificate holder could, and
measure what a legitimate payment then costs (docs/security.md, "Holding a server").

    python -m paykit.lab.attack measure --streams 1000 --bodyless 1000   the full measurement
    python -m paykit.lab.attack hold --address HOST:PORT --pki-dir DIR ...  hold until stdin closes

An attacker with the shared client certificate opens, against each server, `streams` idle
streams (health Watch streams that read nothing more, reflection streams that never send) and
`bodyless` calls whose headers are sent and whose request message never is, spread over
`connections` connections. A holder runs in its own process on an asyncio channel, so it costs
the attacker one thread however many calls it holds. The measurement pays one payment at a time
through the gateway while nothing is held, then while every server is held, and prints both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from paykit.rpc.channels import channel_credentials
from paykit.rpc.pki import CLIENT_CN, ensure_identity

BODYLESS_METHOD = {"gateway": "/paykit.v1.Gateway/Pay", "bank": "/paykit.v1.Bank/Prepare"}
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
OPEN_TIMEOUT_S = 60.0
HOLD_READY = "holding"


async def _never():
    """A request stream that never sends a message (and never ends)."""
    await asyncio.Event().wait()
    yield b""  # pragma: no cover - never reached


def _channels(address: str, tls, n: int) -> list[grpc.aio.Channel]:
    # A local subchannel pool each: n channels are n TCP connections, not one shared.
    options = [("grpc.use_local_subchannel_pool", 1)]
    creds = channel_credentials(tls)
    return [grpc.aio.secure_channel(address, creds, options=options) for _ in range(n)]


async def _idle_watch(channel: grpc.aio.Channel, opened: asyncio.Queue) -> None:
    call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
    await call.read()  # the first status: the stream is open; read nothing more
    await opened.put("watch")
    await call.wait_for_connection()
    await asyncio.Event().wait()


async def _idle_stream(channel: grpc.aio.Channel, method: str, kind: str, opened) -> None:
    # A raw method (no serializers): the request stream never yields, so nothing is encoded.
    call = channel.stream_stream(method)(_never())
    await call.wait_for_connection()
    await opened.put(kind)
    await asyncio.Event().wait()


async def hold(
    address: str, tls, *, streams: int, bodyless: int, connections: int, method: str
) -> dict[str, int]:
    """Opens the streams and calls and returns how many of each are open; they stay open
    while the event loop runs."""
    channels = _channels(address, tls, connections)
    opened: asyncio.Queue = asyncio.Queue()
    tasks = []
    for i in range(streams):
        channel = channels[i % connections]
        if i % 2 == 0:
            tasks.append(asyncio.ensure_future(_idle_watch(channel, opened)))
        else:
            tasks.append(
                asyncio.ensure_future(_idle_stream(channel, REFLECTION, "reflection", opened))
            )
    for i in range(bodyless):
        channel = channels[(streams + i) % connections]
        tasks.append(asyncio.ensure_future(_idle_stream(channel, method, "bodyless", opened)))
    counts = {"watch": 0, "reflection": 0, "bodyless": 0}
    deadline = time.monotonic() + OPEN_TIMEOUT_S
    while sum(counts.values()) < len(tasks) and time.monotonic() < deadline:
        try:
            kind = await asyncio.wait_for(opened.get(), deadline - time.monotonic())
        except TimeoutError:
            break
        counts[kind] += 1
    hold.tasks = tasks  # keep them referenced
    return counts


def _hold_main(args) -> int:
    tls = ensure_identity(Path(args.pki_dir), CLIENT_CN)

    async def run() -> None:
        counts = await hold(
            args.address,
            tls,
            streams=args.streams,
            bodyless=args.bodyless,
            connections=args.connections,
            method=args.method,
        )
        print(json.dumps({HOLD_READY: counts}), flush=True)
        # Hold until whoever started us closes our stdin (or dies).
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.buffer.read)

    asyncio.run(run())
    return 0


class Holder:
    """A `hold` process against one server; `counts` says what it got open."""

    def __init__(
        self,
        address: str,
        pki_dir: Path,
        *,
        kind: str,
        streams: int,
        bodyless: int,
        connections: int,
    ) -> None:
        cmd = [
            sys.executable, "-m", "paykit.lab.attack", "hold", "--address", address,
            "--pki-dir", str(pki_dir), "--streams", str(streams), "--bodyless", str(bodyless),
            "--connections", str(connections), "--method", BODYLESS_METHOD[kind],
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self.counts: dict[str, int] = {}
        reader = threading.Thread(target=self._read, daemon=True)
        reader.start()
        reader.join(OPEN_TIMEOUT_S + 10)

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith(b"{"):
                self.counts = json.loads(line)[HOLD_READY]
                return

    def stop(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


def hold_cluster(cluster, *, streams: int, bodyless: int, connections: int) -> list[Holder]:
    """One holder against each server of a LocalCluster; stop() each when done."""
    holders = []
    for proc in cluster.procs.values():
        kind = "gateway" if proc.name == "gateway" else "bank"
        holders.append(
            Holder(
                proc.address,
                cluster.pki_dir,
                kind=kind,
                streams=streams,
                bodyless=bodyless,
                connections=connections,
            )
        )
    return holders


class SourceRelay:
    """Forwards TCP connections made to it on to `target`, from the local address `source`
    (127.0.0.2, ...): a second peer address on one machine, as a remote attacker would have.
    Bytes pass through untouched, so TLS and identity checks are end to end."""

    def __init__(self, target: str, source: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target, self.source = (host, int(port)), source
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                inbound, _ = self.listener.accept()
            except OSError:  # closed
                return
            outbound = socket.create_connection(self.target, source_address=(self.source, 0))
            for a, b in ((inbound, outbound), (outbound, inbound)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self.listener.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def pay_latencies_ms(session, n: int, *, timeout_s: float = 10.0) -> tuple[list[float], int]:
    """n payments one after another: (latency of each that succeeded, how many failed)."""
    latencies, failed = [], 0
    for _ in range(n):
        started = time.perf_counter()
        try:
            payment = session.pay(
                "BankB", "recipient123", 1, str(uuid.uuid4()), timeout_s=timeout_s
            )
        except Exception:
            failed += 1
            continue
        if payment.failure_reason:
            failed += 1
            continue
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies, failed


def _summary(name: str, latencies: list[float], failed: int) -> dict:
    p50 = statistics.median(latencies) if latencies else float("nan")
    return {"phase": name, "ok": len(latencies), "failed": failed, "p50_ms": round(p50, 2)}


def measure(*, streams: int, bodyless: int, connections: int, pays: int) -> dict:
    """Quiet, held, quiet again: Pay p50 in each (same cluster, same run), the held p50 over the
    quiet ones', and each server's memory quiet and held."""
    from paykit.lab.bench import rss_kib
    from paykit.lab.cluster import LocalCluster

    with LocalCluster() as cluster:
        payer = cluster.session()
        payer.register("attack-payer", "attack-password", "attack-payer-acct", 1_000_000, "BankA")
        payer.authenticate("attack-payer", "attack-password")
        pay_latencies_ms(payer, 10)  # warm up channels and caches
        phases = [_summary("quiet", *pay_latencies_ms(payer, pays))]
        rss_quiet = {p.name: rss_kib(p.popen.pid) for p in cluster.procs.values()}
        holders = hold_cluster(cluster, streams=streams, bodyless=bodyless, connections=connections)
        try:
            phases.append(_summary("held", *pay_latencies_ms(payer, pays)))
            phases[-1]["open"] = [h.counts for h in holders]
            rss_held = {p.name: rss_kib(p.popen.pid) for p in cluster.procs.values()}
        finally:
            for h in holders:
                h.stop()
        phases.append(_summary("quiet again", *pay_latencies_ms(payer, pays)))
        payer.close()
    quiet_p50 = statistics.mean([phases[0]["p50_ms"], phases[2]["p50_ms"]])
    return {
        "phases": phases,
        "held_over_quiet": round(phases[1]["p50_ms"] / quiet_p50, 2),
        "rss_mib": {
            name: [round(rss_quiet[name] / 1024, 1), round(rss_held[name] / 1024, 1)]
            for name in rss_quiet
        },
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m paykit.lab.attack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="Pay latency quiet and while every server is held")
    h = sub.add_parser("hold", help="hold one server until stdin closes")
    for q in (m, h):
        q.add_argument("--streams", type=int, default=1000, help="idle streams per server")
        q.add_argument("--bodyless", type=int, default=1000, help="body-less calls per server")
        q.add_argument("--connections", type=int, default=10, help="connections per server")
    m.add_argument("--pays", type=int, default=50, help="payments in each phase")
    h.add_argument("--address", required=True)
    h.add_argument("--pki-dir", required=True)
    h.add_argument("--method", default=BODYLESS_METHOD["bank"])
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "hold":
        return _hold_main(args)
    result = measure(
        streams=args.streams, bodyless=args.bodyless, connections=args.connections, pays=args.pays
    )
    print(json.dumps(result, indent=2))
    return 0 if result["phases"][1]["ok"] == args.pays else 1


if __name__ == "__main__":
    sys.exit(main())
