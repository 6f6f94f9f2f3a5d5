"""Driving a cluster with payers, and what the benchmark reads of its processes (CPU, RSS, load).

`drive` runs one call per thread in a loop and collects latencies and error reasons; the
payment and no-op calls, the users and their sign-in are the benchmark's, shared by
paykit.lab.bench and its preload.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from paykit.lab.terminal import on_terminal

RPCS_PER_PAYMENT = 5  # Pay, 2 x Prepare, 2 x Commit (GetBalance etc. are not on the path)
PASSWORD = "bench-password"
OPENING_MINOR = 100_000_000  # 1,000,000.00 each: small payments in a ring never drain anyone
AMOUNT_MINOR = 1  # every payer pays the next one 0.01, so every balance stays where it started
SEARCH_SAMPLES = 200
BANKS = ("BankA", "BankB")


@dataclass
class Phase:
    """What one timed phase measured."""

    name: str
    ok: int = 0
    elapsed_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s else 0.0

    def pct(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        xs = sorted(self.latencies_ms)
        return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]

    def merge(self, other: Phase) -> None:
        self.ok += other.ok
        self.elapsed_s += other.elapsed_s
        self.latencies_ms.extend(other.latencies_ms)
        self.errors.update(other.errors)

    def line(self) -> str:
        errs = ", ".join(f"{k} {v}" for k, v in self.errors.most_common()) or "none"
        return (
            f"{self.name:18} {self.rate:8.1f} /s   p50 {self.pct(50):6.2f} ms   p95 "
            f"{self.pct(95):6.2f} ms   "
            f"p99 {self.pct(99):6.2f} ms   ok {self.ok}   errors: {errs}"
        )


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def rss_kib(pid: int) -> int:
    """A process's resident set size in KiB, from /proc/<pid>/status (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far, from /proc/<pid>/stat (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_process(cluster) -> dict[str, float]:
    found = {row["name"]: cpu_s(row["pid"]) for row in cluster.status() if row["pid"]}
    found["bench"] = cpu_s(os.getpid())
    return found


# -- driving calls from N threads ---------------------------------------------


def drive(
    name: str,
    calls: list,
    *,
    duration_s: float,
    budget: int = 0,
    out: TextIO | None = None,
    on_count=None,
) -> Phase:
    """Runs calls[i]() in a loop on thread i until the time is up (or `budget` calls succeeded).

    A call returns an error reason (a string) for an expected failure, or None when it worked."""
    phase = Phase(name)
    per_thread = [[] for _ in calls]
    errors = [Counter() for _ in calls]
    stop = threading.Event()

    def worker(i: int) -> None:
        lat, errs, call = per_thread[i], errors[i], calls[i]
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                reason = call()
            except Exception as exc:
                # a failed call is a figure of the benchmark, not a crash of it
                reason = _reason(exc)
            if reason:
                errs[reason] += 1
            else:
                lat.append((time.perf_counter() - t0) * 1000)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(len(calls))]
    started = time.perf_counter()
    for t in threads:
        t.start()
    _until_done(name, started, per_thread, errors, duration_s, budget, out, on_count)
    stop.set()
    for t in threads:
        t.join()
    phase.elapsed_s = time.perf_counter() - started
    if on_terminal(out):  # wipe the progress line
        print("\r" + " " * 78 + "\r", end="", file=out, flush=True)
    for lat, errs in zip(per_thread, errors, strict=True):
        phase.latencies_ms.extend(lat)
        phase.errors.update(errs)
    phase.ok = len(phase.latencies_ms)
    return phase


def _until_done(name, started, per_thread, errors, duration_s, budget, out, on_count) -> None:
    """Waits until the time is up or `budget` calls succeeded; on a terminal, redraws a progress
    line each second (a pipe gets none: "\r" redraws are noise in a log)."""
    deadline = started + duration_s if duration_s else float("inf")
    out = out if on_terminal(out) else None
    last = started
    while True:
        time.sleep(0.05)
        now = time.perf_counter()
        done = sum(len(x) for x in per_thread)
        if on_count:
            on_count(done)
        if now >= deadline or (budget and done >= budget):
            return
        if out is not None and now - last >= 1.0:
            last = now
            failed = sum(sum(e.values()) for e in errors)
            rate = done / (now - started)
            line = f"\r  {name}: {now - started:5.1f} s  {done} ok  {rate:7.1f} /s  errors {failed}"
            print(line, end="", file=out, flush=True)


def pay_calls(clients: list, accounts: list[tuple[str, str]], *, outbox: bool = False) -> list:
    """Payer i pays account i+1 (a ring), so nobody runs dry however long it runs.

    By default one Pay RPC per payment with a fresh key, as PaymentClient sends it (the
    gateway's path, what the floor is compared with); outbox=True goes through
    PaymentClient.pay, which first stores each payment in the client's durable outbox."""
    from paykit.core.errors import PaykitError
    from paykit.v1 import payment_pb2 as pb

    def make(i: int):
        client, (bank, account) = clients[i], accounts[(i + 1) % len(accounts)]

        def call_outbox():
            p = client.pay(bank, account, amount_minor=AMOUNT_MINOR)
            return None if p.succeeded else (p.failure_reason or p.status)

        def call():
            try:  # one Pay on the client's session, exactly what PaymentClient sends
                p = client.session.pay(bank, account, AMOUNT_MINOR, str(uuid.uuid4()))
            except PaykitError as err:
                return err.reason
            return (
                None
                if p.status == pb.PAYMENT_STATUS_SUCCEEDED
                else (p.failure_reason or "NOT_SUCCEEDED")
            )

        return call_outbox if outbox else call

    return [make(i) for i in range(len(clients))]


def _reason(exc: Exception) -> str:
    """A failed call's reason: paykit's own, else the gRPC status code, else the type's name."""
    if hasattr(exc, "reason"):
        return exc.reason
    code = getattr(exc, "code", None)
    if callable(code) and code() is not None:
        return code().name
    return type(exc).__name__


def noop_calls(cluster, n: int) -> tuple[list, list]:
    """Health Check on the gateway, one channel per thread, like one PaymentClient per payer."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from paykit.rpc.channels import secure_channel
    from paykit.rpc.pki import CLIENT_CN, GATEWAY_CN, ensure_identity

    tls = ensure_identity(cluster.pki_dir, CLIENT_CN)
    # The same channel setup as PaymentClient's (the gateway's identity checked), so the floor is
    # fair.
    channels = [
        secure_channel(cluster.gateway_address, tls, server_name=GATEWAY_CN) for _ in range(n)
    ]
    # Connected before the clock starts, as the payers' channels are by their sign-in: 64
    # handshakes at once on a loaded machine leave some channels in reconnect backoff, and a call
    # on such a channel fails at once (counted as an error, and the floor looks lower than it is).
    for channel in channels:
        grpc.channel_ready_future(channel).result(timeout=60)
    request = health_pb2.HealthCheckRequest(service="")

    def make(channel):
        stub = health_pb2_grpc.HealthStub(channel)

        def call():
            stub.Check(request, timeout=5.0)

        return call

    return [make(c) for c in channels], channels


# -- the cluster and its users ------------------------------------------------


def accounts_for(n: int) -> list[tuple[str, str, str]]:
    """(username, bank, account) for n payers, alternating banks so every payment crosses banks."""
    return [(f"bench{i}", BANKS[i % 2], f"bench-acct-{i}") for i in range(max(n, 2))]


def limits_for(users: list) -> tuple[str, ...]:
    """Gateway flags lifting the per-address limits (docs/security.md) to what a run registers:
    every account opens with OPENING_MINOR, all from this one address."""
    return (
        "--opening-minor-per-hour", str(len(users) * OPENING_MINOR),
        "--registrations-per-hour", str(max(len(users), 100)),
    )  # fmt: skip


def register_all(cluster, users: list[tuple[str, str, str]]) -> None:
    with cluster.client() as c:
        for username, bank, account in users:
            c.register(username, PASSWORD, account, bank=bank, opening_balance_minor=OPENING_MINOR)


def sign_in_all(cluster, users: list[tuple[str, str, str]], n: int) -> list:
    clients = []
    for username, _, _ in users[:n]:
        c = cluster.client()
        c.authenticate(username, PASSWORD)
        clients.append(c)
    return clients


# -- preloading a history -----------------------------------------------------


def search_p50_ms(clients: list, samples: int = SEARCH_SAMPLES) -> float:
    """Median latency of a default `search` (the newest 50 of the user's history), one caller."""
    lat = []
    for i in range(samples):
        t0 = time.perf_counter()
        clients[i % len(clients)].search()
        lat.append((time.perf_counter() - t0) * 1000)
    return sorted(lat)[len(lat) // 2]


def server_rss(cluster) -> dict[str, int]:
    return {row["name"]: rss_kib(row["pid"]) for row in cluster.status() if row["pid"]}
