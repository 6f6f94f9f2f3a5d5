"""`paykit bench`: payments/s and latency of a real local cluster, against the gRPC floor of the
same setup.

    paykit bench --payers 16 --duration-s 20     throughput, p50/p95/p99, errors, ratio to the floor
    paykit bench --payers 16 --preload 1000000   an empty cluster against one with a big history
    paykit bench --payers 4 --rss --payments 100000   each server's RSS after 10k and 100k payments
    paykit bench --payers 16 --relays both       what LocalCluster's fault relays cost (same run)

The floor is a no-op RPC (the gateway's health Check) over the same mutual TLS and the
same server interceptors, at the same concurrency. One payment costs 5 RPCs:
client -> gateway Pay, then gateway -> banks 2 Prepares and 2 Commits. So

    ratio = payments/s / (no-op RPCs/s / 5)

is the share of the transport's capacity that the payment path reaches; 1.0 would mean
the servers' own work (SQLite, fsync, 2PC bookkeeping) costs nothing. Payments and the
floor run in alternating rounds, so both see the same background load; the CPU ratio
(5 x CPU of one no-op call / CPU of one payment, all processes) does not depend on it.

On a terminal each phase redraws a progress line; in a pipe or a file only the results print.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import TextIO

from paykit.core.commandline import finish_parser
from paykit.lab.load import (
    BANKS,
    RPCS_PER_PAYMENT,
    Phase,
    accounts_for,
    cpu_by_process,
    drive,
    limits_for,
    load_average,
    noop_calls,
    pay_calls,
    register_all,
    search_p50_ms,
    server_rss,
    sign_in_all,
)
from paykit.lab.preload import preload

RSS_CHECKPOINTS = (10_000, 100_000)
ROUNDS = 4  # payments and the floor alternate this many times within one measurement


class _Meter:
    """One cluster under measurement: its signed-in payers, floor channels, what they measured."""

    def __init__(self, cluster, users, payers: int, label: str, outbox: bool) -> None:
        self.cluster, self.outbox = cluster, outbox
        self.clients = sign_in_all(cluster, users, payers)
        self.accounts = [(bank, account) for _, bank, account in users]
        self.noop_calls, self.channels = noop_calls(cluster, payers)
        self.pay, self.noop = Phase(f"{label}payments"), Phase(f"{label}no-op RPC")
        self.cpu_pay: Counter = Counter()
        self.cpu_noop: Counter = Counter()

    def round(self, duration_s: float, out: TextIO | None) -> None:
        """One round of payments, then one of the floor, each with the CPU every process used."""
        pays = pay_calls(self.clients, self.accounts, outbox=self.outbox)
        for phase, cpu, calls, round_s in (
            (self.pay, self.cpu_pay, pays, duration_s / ROUNDS),
            (self.noop, self.cpu_noop, self.noop_calls, max(1.0, duration_s / ROUNDS / 2)),
        ):
            before = cpu_by_process(self.cluster)
            phase.merge(drive(phase.name, calls, duration_s=round_s, out=out))
            cpu.update({k: v - before[k] for k, v in cpu_by_process(self.cluster).items()})

    def figures(self) -> dict:
        pay, noop = self.pay, self.noop
        ratio = pay.rate / (noop.rate / RPCS_PER_PAYMENT) if noop.rate else float("nan")
        return {
            "payments": pay,
            "noop": noop,
            "ratio": ratio,
            "search_p50_ms": search_p50_ms(self.clients),
            "load": load_average(),
            "cpu_ms_per_payment": {k: v * 1000 / max(1, pay.ok) for k, v in self.cpu_pay.items()},
            "cpu_ms_per_noop": {k: v * 1000 / max(1, noop.ok) for k, v in self.cpu_noop.items()},
        }

    def close(self) -> None:
        for channel in self.channels:
            channel.close()
        for client in self.clients:
            client.close()


def measure(
    clusters: dict, users, payers: int, duration_s: float, out: TextIO | None, outbox: bool = False
) -> dict[str, dict]:
    """Payments and the no-op floor at the same concurrency on each cluster, in alternating rounds.

    Alternating (payments, floor, then the next cluster, ... ROUNDS times) puts every figure
    under the same background load, which on a shared machine changes by the minute."""
    meters = {}
    try:
        for name, cluster in clusters.items():
            meters[name] = _Meter(cluster, users, payers, f"{name} " if name else "", outbox)
        for _ in range(ROUNDS):
            for meter in meters.values():
                meter.round(duration_s, out)
        return {name: meter.figures() for name, meter in meters.items()}
    finally:
        for meter in meters.values():
            meter.close()


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
    variants: dict[str, dict] | None = None,
    out: TextIO | None = sys.stdout,
) -> dict:
    """Starts a cluster (mutual TLS, SQLite synchronous=FULL, as `paykit up` runs it) and measures.

    `variants` (label -> LocalCluster options) runs one cluster per variant and measures them in
    alternating rounds, then prints their ratios. Returns the figures as a dict; prints progress
    and results to `out` (None: quiet)."""
    variants = variants or {"": {}}
    if len(variants) > 1 and (preload_n or rss):
        raise ValueError("variants are compared on a plain run: leave out --preload and --rss")
    if preload_n and rss:
        raise ValueError("--preload and --rss are separate runs: give one of them")
    if preload_n:  # the same cluster twice, one with a history, measured in alternating rounds
        (options,) = variants.values()
        variants = {"empty": options, f"{preload_n} stored": options}
    own_dir = data_dir is None
    root = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="paykit-bench-"))
    users = accounts_for(payers)
    result: dict = {"payers": payers, "rpcs_per_payment": RPCS_PER_PAYMENT}
    result["load_start"] = load_average()
    clusters = _clusters(variants, root, users)
    try:
        for cluster in clusters.values():
            cluster.start()
            register_all(cluster, users)
        if preload_n:
            _preload(list(clusters.values())[-1], users, preload_n, out, result)
        _measure_empty(clusters, users, payers, duration_s, out, outbox, result)
        if preload_n:
            result["preloaded_vs_empty"] = result["compare"]["payments_per_s"]
        (first,) = clusters.values() if len(clusters) == 1 else (None,)
        if rss:
            _measure_rss(first, users, payers, payments_budget, out, outbox, result)
        for cluster in clusters.values():
            cluster.stop()
        if check:
            _check(clusters, out, result)
    finally:
        for cluster in clusters.values():
            cluster.stop()
        if own_dir:
            shutil.rmtree(root, ignore_errors=True)
    result["load_end"] = load_average()
    _say(out, f"load average (1/5/15 min): start {result['load_start']}, end {result['load_end']}")
    return result


def _clusters(variants: dict[str, dict], root: Path, users: list) -> dict:
    from paykit.lab.cluster import LocalCluster

    limits = limits_for(users)
    folders = {
        name: root if len(variants) == 1 else root / name.replace(" ", "-") for name in variants
    }
    return {
        name: LocalCluster(BANKS, data_dir=folders[name], gateway_args=limits, **options)
        for name, options in variants.items()
    }


def _measure_empty(clusters, users, payers, duration_s, out, outbox, result) -> None:
    figures = measure(clusters, users, payers, duration_s, out, outbox)
    for name, m in figures.items():
        title = f"{name}: empty start" if name else "empty start"
        _report(m, payers, out, name if "preload_s" in result else title)
    if len(figures) == 1:
        result["empty"] = next(iter(figures.values()))
        return
    result["variants"] = figures
    result["compare"] = _compare(figures, out)


def _compare(figures: dict[str, dict], out: TextIO | None) -> dict[str, float]:
    """The second variant's figures over the first's, from the same alternating rounds."""
    (a, fa), (b, fb) = list(figures.items())[:2]
    cpu_a, cpu_b = (sum(f["cpu_ms_per_payment"].values()) for f in (fa, fb))
    ratios = {
        "payments_per_s": fb["payments"].rate / fa["payments"].rate,
        "p50": fb["payments"].pct(50) / fa["payments"].pct(50),
        "p99": fb["payments"].pct(99) / fa["payments"].pct(99),
        "cpu_ms_per_payment": cpu_b / cpu_a,
    }
    _say(
        out,
        f"== {b} / {a} (same run, alternating rounds): "
        + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()),
    )
    return ratios


def _check(clusters: dict, out: TextIO | None, result: dict) -> None:
    """paykit.lab.check's invariants, read-only, on the stopped clusters' files."""
    from paykit.lab.check import check_invariants

    result["invariants_ok"] = True
    for name, cluster in clusters.items():
        report = check_invariants(cluster)
        result["invariants_ok"] &= report.ok
        _say(out, f"invariants (paykit.lab.check){' ' + name if name else ''}:\n{report}")


def _preload(cluster, users, n, out, result) -> None:
    """Stops the cluster, writes n payments of history into its databases, starts it again."""
    cluster.stop()
    t0 = time.perf_counter()
    preload(cluster, users, n, out)
    result["preload_s"] = time.perf_counter() - t0
    _say(out, f"preloaded {n} payments in {result['preload_s']:.0f} s (servers stopped, bulk SQL)")
    cluster.start()


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
        help="measure two clusters in alternating rounds: an empty one and one with N committed "
        "payments written into its databases first; prints both and their ratios",
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
        "--batching",
        choices=("on", "off", "both"),
        default="on",
        help="the gateway sends a bank's legs in batches (on, the default) or one call each "
        "(off); both: one cluster each, measured in alternating rounds, and their ratios",
    )
    _add_relays_option(p)
    p.add_argument(
        "--data-dir",
        help="keep the cluster's databases and logs here (default: a temporary folder)",
    )
    return finish_parser(p)


def _add_relays_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--relays",
        choices=("on", "off", "both"),
        default="off",
        help="put LocalCluster's fault relays on every link (on) or not (off, the default, as "
        "`paykit up` runs); both: one cluster each, in alternating rounds, and their ratios (what "
        "a relay with no fault set costs; its CPU is counted in the bench process's)",
    )


def variants_of(args) -> dict[str, dict]:
    """The clusters to measure: one, or two to compare (the second over the first)."""
    batching, relays = {"batching": args.batching == "on"}, {"relays": args.relays == "on"}
    if args.batching == "both" and args.relays == "both":
        raise ValueError("compare one thing at a time: --batching both or --relays both")
    if args.batching == "both":
        return {
            "batching off": {**relays, "batching": False},
            "batching on": {**relays, "batching": True},
        }
    if args.relays == "both":
        return {
            "relays off": {**batching, "relays": False},
            "relays on": {**batching, "relays": True},
        }
    return {"": {**batching, **relays}}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.payers < 1 or args.duration_s <= 0 or args.preload < 0 or args.payments < 1:
        print(
            "paykit bench: error: --payers, --duration-s and --payments must be positive",
            file=sys.stderr,
        )
        return 2
    try:
        variants = variants_of(args)
        if args.preload and args.rss:
            raise ValueError("--preload and --rss are separate runs: give one of them")
    except ValueError as err:
        print(f"paykit bench: error: {err}", file=sys.stderr)
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
        variants=variants,
        out=sys.stdout,
    )
    return 0
