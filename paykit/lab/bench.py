"""`paykit bench`: payments/s and latency of a real local cluster, against the gRPC floor of the
same setup.

    paykit bench --payers 16 --duration-s 20     throughput, p50/p95/p99, errors, ratio to the floor
    paykit bench --payers 16 --preload 1000000   the same on an empty start and after a big history
    paykit bench --payers 4 --rss --payments 100000   each server's RSS after 10k and 100k payments

The floor is a no-op RPC (the gateway's health Check) over the same mutual TLS and the
same server interceptors, at the same concurrency. One payment costs RPCS_PER_PAYMENT
RPCs: client -> gateway Pay, then gateway -> banks 2 Prepares and 2 Commits. So

    ratio = payments/s / (no-op RPCs/s / RPCS_PER_PAYMENT)

is the share of the transport's capacity that the payment path reaches; 1.0 would mean
the servers' own work (SQLite, fsync, 2PC bookkeeping) costs nothing. Payments and the
floor run in alternating rounds, so both see the same background load; the CPU ratio
(5 x CPU of one no-op call / CPU of one payment, all processes) does not depend on it.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from paykit.bank import ledger
from paykit.core.clock import now_ms
from paykit.core.twopc import CREDIT, DEBIT, Decision, leg_txn_id
from paykit.gateway import idempotency, payments
from paykit.gateway.payments import PaymentRecord
from paykit.gateway.server import encode_pay_response

RPCS_PER_PAYMENT = 5  # Pay, 2 x Prepare, 2 x Commit (GetBalance etc. are not on the path)
PASSWORD = "bench-password"
OPENING_MINOR = 100_000_000  # 1,000,000.00 each: small payments in a ring never drain anyone
AMOUNT_MINOR = 1  # every payer pays the next one 0.01, so every balance stays where it started
RSS_CHECKPOINTS = (10_000, 100_000)
ROUNDS = 4  # payments and the floor alternate this many times within one measurement
SEARCH_SAMPLES = 200
PRELOAD_BATCH = 50_000  # rows per executemany: bounded memory however big the preload
PRELOAD_SPAN_MS = 30 * 24 * 3600 * 1000  # the history spreads over the last 30 days
DAY_MS = 24 * 3600 * 1000
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


def _load() -> str:
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
                reason = getattr(exc, "reason", type(exc).__name__)
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
    if out is not None:
        print("\r" + " " * 78 + "\r", end="", file=out, flush=True)
    for lat, errs in zip(per_thread, errors, strict=True):
        phase.latencies_ms.extend(lat)
        phase.errors.update(errs)
    phase.ok = len(phase.latencies_ms)
    return phase


def _until_done(name, started, per_thread, errors, duration_s, budget, out, on_count) -> None:
    """Waits until the time is up or `budget` calls succeeded; prints progress each second."""
    deadline = started + duration_s if duration_s else float("inf")
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


def noop_calls(cluster, n: int) -> tuple[list, list]:
    """Health Check on the gateway, one channel per thread, like one PaymentClient per payer."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from paykit.rpc.channels import secure_channel
    from paykit.rpc.pki import CLIENT_CN, GATEWAY_CN, ensure_identity

    tls = ensure_identity(cluster.pki_dir, CLIENT_CN)
    # The same channel setup as PaymentClient's (the gateway's identity checked), so the floor is
    # fair.
    channels = [
        secure_channel(cluster.gateway_address, tls, server_name=GATEWAY_CN) for _ in range(n)
    ]
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


def preload(cluster, users: list[tuple[str, str, str]], n: int, out: TextIO | None = None) -> None:
    """Writes n committed payments between `users` into the stopped cluster's databases, through
    the bulk loads of the modules that own each schema (payments, idempotency, ledger).

    Each payment has its gateway row, decided and settled, and a committed leg with its entry at
    each bank; balances move by the net amounts, so paykit.lab.check holds. Keys of the last two
    days are kept (older ones are past the retention: pruning at start deletes them)."""
    gw = sqlite3.connect(cluster.gateway_db())
    banks = {b: sqlite3.connect(cluster.bank_db(b)) for b in cluster.bank_names}
    for conn in (gw, *banks.values()):
        # A bulk load into stopped servers' files: one fsync at each batch's end is enough,
        # a crash here only loses benchmark data.
        conn.execute("PRAGMA synchronous = NORMAL")
    rng, now, done = random.Random(7), now_ms(), 0
    while done < n:
        size = min(PRELOAD_BATCH, n - done)
        rows = _preload_rows(users, done, size, now, rng)
        with gw:
            payments.insert_history(gw, rows["payments"])
            idempotency.insert_answered(gw, rows["keys"])
        for bank, conn in banks.items():
            with conn:
                ledger.insert_history(conn, rows["legs"][bank], rows["net"][bank])
        done += size
        if out is not None:
            print(f"\r  preload: {done}/{n} payments", end="", file=out, flush=True)
    for conn in (gw, *banks.values()):
        conn.close()
    if out is not None:
        print(file=out)


def _preload_rows(users, start: int, size: int, now: int, rng: random.Random) -> dict:
    rows = {
        "payments": [],
        "keys": [],
        "legs": {b: [] for b in BANKS},
        "net": {b: Counter() for b in BANKS},
    }
    for k in range(start, start + size):
        (user, fbank, facct), (_, tbank, tacct) = users[k % len(users)], users[(k + 1) % len(users)]
        amount = 1 + k % 97
        ts = now - int(rng.random() * PRELOAD_SPAN_MS)
        pid, key = uuid.uuid4().hex, str(uuid.uuid4())
        rows["payments"].append((pid, user, key, fbank, facct, tbank, tacct, amount, ts))
        if ts > now - 2 * DAY_MS:
            rec = PaymentRecord(
                pid,
                user,
                key,
                fbank,
                facct,
                tbank,
                tacct,
                amount,
                Decision.COMMIT,
                created_unix_ms=ts,
                debit_acked=True,
                credit_acked=True,
            )
            rows["keys"].append(
                (
                    user,
                    key,
                    idempotency.fingerprint(fbank, facct, tbank, tacct, amount),
                    pid,
                    encode_pay_response(rec),
                    ts,
                )
            )
        rows["legs"][fbank].append((leg_txn_id(pid, DEBIT), DEBIT, facct, amount, ts))
        rows["legs"][tbank].append((leg_txn_id(pid, CREDIT), CREDIT, tacct, amount, ts))
        rows["net"][fbank][facct] -= amount
        rows["net"][tbank][tacct] += amount
    return rows


# -- the run --------------------------------------------------------------------


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


def measure(
    cluster,
    users,
    payers: int,
    duration_s: float,
    out: TextIO | None,
    label: str,
    outbox: bool = False,
) -> dict:
    """Payments and the no-op floor at the same concurrency, in alternating rounds, and their ratio.

    Alternating (payments, floor, payments, floor, ...) puts both under the same background
    load, which on a shared machine changes by the minute."""
    clients = sign_in_all(cluster, users, payers)
    accounts = [(bank, account) for _, bank, account in users]
    calls, channels = noop_calls(cluster, payers)
    pay, noop = Phase(f"{label}payments"), Phase(f"{label}no-op RPC")
    cpu_pay: Counter = Counter()
    cpu_noop: Counter = Counter()
    try:
        for _ in range(ROUNDS):
            for phase, cpu, round_calls, round_s in (
                (pay, cpu_pay, pay_calls(clients, accounts, outbox=outbox), duration_s / ROUNDS),
                (noop, cpu_noop, calls, max(1.0, duration_s / ROUNDS / 2)),
            ):
                before = cpu_by_process(cluster)
                phase.merge(drive(phase.name, round_calls, duration_s=round_s, out=out))
                cpu.update({k: v - before[k] for k, v in cpu_by_process(cluster).items()})
        load_pay = _load()
        search = search_p50_ms(clients)
    finally:
        for ch in channels:
            ch.close()
        for c in clients:
            c.close()
    ratio = pay.rate / (noop.rate / RPCS_PER_PAYMENT) if noop.rate else float("nan")
    return {
        "payments": pay,
        "noop": noop,
        "ratio": ratio,
        "search_p50_ms": search,
        "load": load_pay,
        "cpu_ms_per_payment": {k: v * 1000 / max(1, pay.ok) for k, v in cpu_pay.items()},
        "cpu_ms_per_noop": {k: v * 1000 / max(1, noop.ok) for k, v in cpu_noop.items()},
    }


def measure_rss(
    cluster, users, payers: int, budget: int, out: TextIO | None, outbox: bool = False
) -> tuple[Phase, list]:
    """Pays until `budget` payments, noting every server's RSS as each checkpoint passes."""
    checkpoints = [c for c in RSS_CHECKPOINTS if c < budget] + [budget]
    samples = [(0, server_rss(cluster))]

    def on_count(done: int) -> None:
        while checkpoints and done >= checkpoints[0]:
            samples.append((checkpoints.pop(0), server_rss(cluster)))

    clients = sign_in_all(cluster, users, payers)
    accounts = [(bank, account) for _, bank, account in users]
    try:
        calls = pay_calls(clients, accounts, outbox=outbox)
        phase = drive(
            "payments (rss)", calls, duration_s=0, budget=budget, out=out, on_count=on_count
        )
    finally:
        for c in clients:
            c.close()
    return phase, samples


def run_bench(
    *,
    payers: int = 1,
    duration_s: float = 10.0,
    preload_n: int = 0,
    rss: bool = False,
    payments_budget: int = RSS_CHECKPOINTS[-1],
    data_dir: Path | None = None,
    outbox: bool = False,
    check: bool = False,
    out: TextIO | None = sys.stdout,
) -> dict:
    """Starts a cluster (mutual TLS, SQLite synchronous=FULL, as `paykit up` runs it) and measures.

    Returns the figures as a dict; prints progress and results to `out` (None: quiet)."""
    from paykit.lab.cluster import LocalCluster

    own_dir = data_dir is None
    root = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="paykit-bench-"))
    users = accounts_for(payers)
    result: dict = {"payers": payers, "rpcs_per_payment": RPCS_PER_PAYMENT, "load_start": _load()}
    cluster = LocalCluster(BANKS, data_dir=root, gateway_args=limits_for(users))
    try:
        cluster.start()
        register_all(cluster, users)
        result["empty"] = measure(cluster, users, payers, duration_s, out, "", outbox)
        _report(result["empty"], payers, out, "empty start")
        if preload_n:
            _measure_preloaded(cluster, users, preload_n, payers, duration_s, out, outbox, result)
        if rss:
            _measure_rss(cluster, users, payers, payments_budget, out, outbox, result)
        cluster.stop()
        if check:  # read-only, on the stopped cluster's files: every payment has settled
            from paykit.lab.check import check_invariants

            report = check_invariants(cluster)
            result["invariants_ok"] = report.ok
            _say(out, f"invariants (paykit.check):\n{report}")
    finally:
        cluster.stop()
        if own_dir:
            shutil.rmtree(root, ignore_errors=True)
    result["load_end"] = _load()
    _say(out, f"load average (1/5/15 min): start {result['load_start']}, end {result['load_end']}")
    return result


def _measure_preloaded(cluster, users, n, payers, duration_s, out, outbox, result) -> None:
    """Stops the cluster, writes n payments of history, starts it and measures again."""
    cluster.stop()
    t0 = time.perf_counter()
    preload(cluster, users, n, out)
    result["preload_s"] = time.perf_counter() - t0
    _say(out, f"preloaded {n} payments in {result['preload_s']:.0f} s (servers stopped, bulk SQL)")
    cluster.start()
    result["preloaded"] = measure(cluster, users, payers, duration_s, out, "preloaded ", outbox)
    _report(result["preloaded"], payers, out, f"after preloading {n} payments")
    empty, preloaded = result["empty"]["payments"].rate, result["preloaded"]["payments"].rate
    result["preloaded_vs_empty"] = preloaded / empty
    _say(out, f"throughput preloaded / empty = {result['preloaded_vs_empty']:.3f}")


def _measure_rss(cluster, users, payers, budget, out, outbox, result) -> None:
    phase, samples = measure_rss(cluster, users, payers, budget, out, outbox)
    result["rss"] = samples
    _say(out, phase.line())
    for done, by_server in samples:
        sizes = "  ".join(f"{k} {v / 1024:.1f} MiB" for k, v in by_server.items())
        _say(out, f"RSS after {done:>7} payments: {sizes}")


def _say(out: TextIO | None, text: str) -> None:
    if out is not None:
        print(text, file=out, flush=True)


def _report(m: dict, payers: int, out: TextIO | None, title: str) -> None:
    _say(out, f"== {title}: {payers} payer{'s' * (payers != 1)}, load {m['load']}")
    _say(out, m["payments"].line())
    _say(out, m["noop"].line())
    _say(
        out,
        f"ratio = {m['payments'].rate:.1f} / ({m['noop'].rate:.1f} / {RPCS_PER_PAYMENT}) = "
        f"{m['ratio']:.2f}"
        f"   ({RPCS_PER_PAYMENT} RPCs per payment: Pay + 2 Prepare + 2 Commit)",
    )
    _say(
        out,
        "CPU per payment: "
        + ", ".join(f"{k} {v:.2f} ms" for k, v in m["cpu_ms_per_payment"].items())
        + f" (total {sum(m['cpu_ms_per_payment'].values()):.2f} ms; this host has {os.cpu_count()} "
        "cores)",
    )
    noop_cpu = m["cpu_ms_per_noop"]["gateway"] + m["cpu_ms_per_noop"]["bench"]
    _say(
        out,
        f"CPU per no-op RPC: gateway {m['cpu_ms_per_noop']['gateway']:.3f} ms, "
        f"bench {m['cpu_ms_per_noop']['bench']:.3f} ms; CPU ratio = {RPCS_PER_PAYMENT} x "
        f"{noop_cpu:.3f} / "
        f"{sum(m['cpu_ms_per_payment'].values()):.2f} = "
        f"{RPCS_PER_PAYMENT * noop_cpu / sum(m['cpu_ms_per_payment'].values()):.2f} "
        "(load-independent)",
    )
    _say(out, f"search p50 {m['search_p50_ms']:.2f} ms")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="paykit bench",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    p.add_argument(
        "--payers",
        type=int,
        default=1,
        help="concurrent payers, one client and thread each (default 1)",
    )
    p.add_argument(
        "--duration-s", type=float, default=10.0, help="how long each timed phase runs (default 10)"
    )
    p.add_argument(
        "--preload",
        type=int,
        default=0,
        metavar="N",
        help="after the empty-start run, write N committed payments into the databases and run "
        "again",
    )
    p.add_argument(
        "--rss", action="store_true", help="report each server's RSS after 10k and 100k payments"
    )
    p.add_argument(
        "--payments",
        type=int,
        default=RSS_CHECKPOINTS[-1],
        help="payment budget of --rss (default 100000)",
    )
    p.add_argument(
        "--outbox",
        action="store_true",
        help="pay through PaymentClient.pay and its durable client outbox (default: the Pay RPC "
        "alone)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="at the end, check paykit.check's invariants on the databases (slow for big preloads)",
    )
    p.add_argument(
        "--data-dir",
        help="keep the cluster's databases and logs here (default: a temporary folder)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.payers < 1 or args.duration_s <= 0 or args.preload < 0 or args.payments < 1:
        print(
            "paykit bench: error: --payers, --duration-s and --payments must be positive",
            file=sys.stderr,
        )
        return 2
    run_bench(
        payers=args.payers,
        duration_s=args.duration_s,
        preload_n=args.preload,
        rss=args.rss,
        payments_budget=args.payments,
        data_dir=Path(args.data_dir) if args.data_dir else None,
        outbox=args.outbox,
        check=args.check,
        out=sys.stdout,
    )
    return 0
