"""`paykit chaos`: a Jepsen-style fault test of exactly-once payments (run_chaos is importable).

Several payers pay each other concurrently across 2-3 banks while two nemeses, each on its own
seeded random schedule, strike at once: one kills (-9) and restarts banks and the gateway,
pauses them (SIGSTOP), and crashes them at named 2PC failpoints; the other pulls the network
between two processes (cut, partition, lost replies, delay; see paykit.lab.relay), so the
faults overlap. Every payment's key and what its client was told are recorded. Then
everything is healed, uncertain payments are retried with their keys, and paykit.check
verifies the books against what clients were told. The report carries per-second samples
(money, payments completed) for charts.

    paykit chaos --seed 7                    the short profile (about 20 s)
    paykit chaos --profile long --seed 7     five minutes, more payers and accounts
"""

from __future__ import annotations

import argparse
import html
import os
import random
import shutil
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from paykit.client.session import GatewaySession
from paykit.core.clock import Backoff, now_ms
from paykit.core.commandline import finish_parser
from paykit.core.errors import PaykitError, Unavailable
from paykit.lab.check import FAILED, SUCCEEDED, Report, check_invariants, money_sample, read_gateway
from paykit.lab.terminal import on_terminal
from paykit.v1 import payment_pb2 as pb

UNCERTAIN = "uncertain"
BANK_NAMES = ("BankA", "BankB", "BankC")
PASSWORD = "chaos-password"
PROCESS_FAULTS = ("kill", "pause", "failpoint")
NETWORK_FAULTS = ("cut", "partition", "drop-replies", "delay")
FAULT_KINDS = PROCESS_FAULTS + NETWORK_FAULTS
RESTART_ATTEMPTS = 5
SEND_BACKOFF = Backoff(first_s=0.1, max_s=1.0)  # between two sends of one payment
SAMPLE_EVERY_S = 1.0


@dataclass(frozen=True, kw_only=True)
class ChaosConfig:
    seed: int = 1
    duration_s: float = 15.0  # how long payers pay while the nemesis strikes
    banks: int = 3
    accounts: int = 8  # one user per account, spread over the banks
    payers: int = 4  # concurrent payer threads; each pays from its share of the accounts
    opening_minor: int = 100_000
    amount_max_minor: int = 5_000
    fault_every_s: float = 1.5  # mean gap between two faults
    down_max_s: float = 1.5  # longest a server stays killed or paused
    failpoint_window_s: float = 3.0  # how long an armed failpoint may wait for traffic to reach it
    faults: tuple[str, ...] = FAULT_KINDS
    prepare_timeout_s: float = 1.0
    call_timeout_s: float = 2.0  # one Pay call's deadline at the client
    attempts: int = 3  # sends of one payment (same key) before the payer calls it uncertain
    recover_timeout_s: float = 60.0
    data_dir: Path | None = None
    participant: str | type | None = None  # the banks' 2PC participant (a lab's student code)


PROFILES = {
    "short": ChaosConfig(),
    "long": ChaosConfig(duration_s=300.0, accounts=12, payers=8, fault_every_s=2.0, down_max_s=3.0),
}


@dataclass
class Intent:
    """One intended payment, its key, and what its client was told."""

    username: str
    key: str
    to_bank: str
    to_account: str
    amount_minor: int
    started_s: float
    outcome: str = UNCERTAIN  # succeeded | failed | uncertain (then resolved after healing)
    reason: str = ""  # failure reason, or the last error's reason when uncertain
    resolved: str = ""  # for uncertain ones: the answer the retry with the same key got


@dataclass(frozen=True)
class Fault:
    t_s: float
    target: str  # a server, or for network faults "a<->b" (both links) or one link "a->b"
    kind: str  # one of FAULT_KINDS, or failpoint-missed
    detail: str
    down_s: float


@dataclass(frozen=True)
class Sample:
    """One per-second point: money (sum of balances, and in flight between two Commits)
    and payments completed so far."""

    t_s: float
    total_minor: int | None  # None when a database could not be read at that instant
    in_flight_minor: int | None
    opened_minor: int
    completed: int
    succeeded: int
    failed: int
    uncertain: int
    down: str  # servers killed or paused at that moment


@dataclass
class ChaosReport:
    config: ChaosConfig
    data_dir: Path
    elapsed_s: float = 0.0
    faults: list[Fault] = field(default_factory=list)
    intents: list[Intent] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)  # reasons of failed calls while faults ran
    samples: list[Sample] = field(default_factory=list)
    invariants: Report = field(default_factory=Report)
    first_sent_on_retry: int = 0  # uncertain payments the gateway first saw after the heal

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def ok(self) -> bool:
        return bool(self.invariants.results) and self.invariants.ok

    def faults_by_kind(self) -> Counter:
        return Counter(f.kind for f in self.faults)

    def faults_per_target(self) -> dict[str, Counter]:
        per: dict[str, Counter] = {}
        for f in self.faults:
            per.setdefault(f.target, Counter())[f.kind] += 1
        return per

    def outcomes(self) -> Counter:
        return Counter(i.outcome for i in self.intents)

    def resolutions(self) -> Counter:
        return Counter(i.resolved or "unresolved" for i in self.intents if i.outcome == UNCERTAIN)

    def sample_rows(self) -> list[dict]:
        """The time series as dicts (pandas.DataFrame(report.sample_rows()))."""
        return [asdict(s) for s in self.samples]

    def _repr_html_(self) -> str:
        """A notebook view: the run in one line, faults per server, outcomes, the invariants."""
        c, o, r = self.config, self.outcomes(), self.resolutions()
        faults = "".join(
            f"<tr><td>{html.escape(t)}</td><td>"
            + html.escape(", ".join(f"{k} {n}" for k, n in sorted(cnt.items())))
            + "</td></tr>"
            for t, cnt in sorted(self.faults_per_target().items())
        )
        verdict = "PASS" if self.ok else "FAIL"
        return (
            f"<p><b>Chaos run, seed {c.seed}: {verdict}</b> ({self.elapsed_s:.1f} s, {c.banks} "
            f"banks, {c.accounts} accounts, {c.payers} payers)</p>"
            f"<table><caption>Faults ({len(self.faults)})</caption>{faults}</table>"
            f"<p>{len(self.intents)} payments: {o[SUCCEEDED]} succeeded, {o[FAILED]} failed, "
            f"{o[UNCERTAIN]} uncertain (resolved by key: {r[SUCCEEDED]} succeeded, "
            f"{r[FAILED]} failed, {r['unresolved']} unresolved)</p>" + self.invariants._repr_html_()
        )

    def summary(self) -> str:
        c = self.config
        lines = [
            f"seed {c.seed}  ran {self.elapsed_s:.1f} s  banks {c.banks}  accounts {c.accounts}  "
            f"payers {c.payers}  data {self.data_dir}"
        ]
        per = self.faults_per_target()
        faults = "; ".join(
            f"{t} " + ", ".join(f"{k} {n}" for k, n in sorted(cnt.items()))
            for t, cnt in sorted(per.items())
        )
        lines.append(f"faults ({len(self.faults)}): {faults or 'none'}")
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.faults_by_kind().items()))
        lines.append(f"faults by kind: {kinds or 'none'}")
        o, r = self.outcomes(), self.resolutions()
        reasons = Counter(i.reason for i in self.intents if i.outcome == FAILED)
        lines.append(
            f"outcomes: {len(self.intents)} payments: {o[SUCCEEDED]} succeeded, {o[FAILED]} failed "
            f"({', '.join(f'{k} {n}' for k, n in reasons.most_common()) or '-'}), {o[UNCERTAIN]} "
            "uncertain "
            f"-> resolved by key: {r[SUCCEEDED]} succeeded, {r[FAILED]} failed, {r['unresolved']} "
            "unresolved "
            f"({self.first_sent_on_retry} had never reached the gateway)"
        )
        if self.errors:
            lines.append(
                "call errors while faults ran: "
                + ", ".join(f"{k} {n}" for k, n in self.errors.most_common())
            )
        rates = [s.completed for s in self.samples]
        if len(rates) > 1 and self.elapsed_s:
            lines.append(
                f"throughput: {len(self.intents) / max(c.duration_s, 1e-9):.1f} payments/s while "
                "faults ran"
            )
        lines.append("invariants:")
        lines.append(str(self.invariants))
        verdict = (
            "PASS"
            if self.ok
            else f"FAIL: {', '.join(self.invariants.violations) or 'no checks ran'}"
        )
        lines.append(verdict)
        return "\n".join(lines)


class _Run:
    """The state of one chaos run shared by the payer, nemesis and sampler threads."""

    def __init__(
        self,
        cfg: ChaosConfig,
        cluster,
        progress: Callable[[str], None] | None,
        status_lines: bool = True,
    ) -> None:
        self.cfg = cfg
        self.cluster = cluster
        self.progress = progress or (lambda _line: None)
        self.status_lines = status_lines  # the sampler's line every 2 s (events print anyway)
        self.report = ChaosReport(cfg, cluster.data_dir)
        self.lock = threading.Lock()
        self.stop_paying = threading.Event()
        self.stop_sampling = threading.Event()
        self.started = time.monotonic()
        self.opened_minor = cfg.accounts * cfg.opening_minor
        self.accounts = [
            (f"chaos{i:02d}", BANK_NAMES[i % cfg.banks], f"acct{i:02d}")
            for i in range(cfg.accounts)
        ]
        self.down: dict[str, str] = {}  # server -> killed | paused | crashed, for progress lines
        self.done: Counter = Counter()  # payments finished by payers, by what the client was told

    def now_s(self) -> float:
        return round(time.monotonic() - self.started, 3)

    def say(self, text: str) -> None:
        self.progress(f"[chaos] t={self.now_s():6.1f}s {text}")

    # -- payers -----------------------------------------------------------------

    def session(self) -> GatewaySession:
        return self.cluster.session(timeout_s=self.cfg.call_timeout_s)

    def send(
        self,
        session: GatewaySession,
        intent: Intent,
        attempts: int,
        give_up: threading.Event | None,
    ) -> tuple[str, str] | None:
        """Sends with the intent's key up to `attempts` times: (answer, failure reason), or None."""
        for attempt in range(1, attempts + 1):
            try:
                p = session.pay(intent.to_bank, intent.to_account, intent.amount_minor, intent.key)
            except PaykitError as err:
                intent.reason = err.reason
                if give_up is not None:  # counted while faults run, not while resolving
                    with self.lock:
                        self.report.errors[err.reason] += 1
            else:
                if p.status == pb.PAYMENT_STATUS_SUCCEEDED:
                    return SUCCEEDED, ""
                if p.status == pb.PAYMENT_STATUS_FAILED:
                    return FAILED, p.failure_reason
            if give_up is not None and give_up.is_set():
                return None
            time.sleep(SEND_BACKOFF.delay_s(attempt))
        return None

    def payer(self, index: int, sessions: list[GatewaySession]) -> None:
        """Pays from one of its accounts (every `payers`-th one) to any other, until told to stop.

        Every account pays, so money circulates instead of piling up at pure payees."""
        rng = random.Random(f"{self.cfg.seed}/payer/{index}")
        mine = list(range(index, self.cfg.accounts, self.cfg.payers))
        while not self.stop_paying.is_set():
            source = rng.choice(mine)
            session, username = sessions[source], self.accounts[source][0]
            _, to_bank, to_account = rng.choice([a for a in self.accounts if a[0] != username])
            intent = Intent(
                username,
                str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                to_bank,
                to_account,
                rng.randint(1, self.cfg.amount_max_minor),
                self.now_s(),
            )
            with self.lock:
                self.report.intents.append(intent)
            answer = self.send(session, intent, self.cfg.attempts, self.stop_paying)
            if answer is not None:
                intent.outcome, intent.reason = answer
            with self.lock:
                self.done[intent.outcome] += 1

    # -- the nemeses ------------------------------------------------------------------

    def nemeses(self) -> None:
        """Runs the process and the network nemesis at once (each if any of its kinds is on)."""
        kinds = [
            (name, [k for k in self.cfg.faults if k in group])
            for name, group in (("process", PROCESS_FAULTS), ("network", NETWORK_FAULTS))
        ]
        threads = [
            threading.Thread(target=self.nemesis, args=(name, chosen), name=f"nemesis-{name}")
            for name, chosen in kinds
            if chosen
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def nemesis(self, stream: str, kinds: list[str]) -> None:
        rng = random.Random(f"{self.cfg.seed}/nemesis/{stream}")
        deadline = self.started + self.cfg.duration_s
        while True:
            gap_s = rng.uniform(0.5, 1.5) * self.cfg.fault_every_s
            if (
                self.stop_paying.wait(max(0.0, min(gap_s, deadline - time.monotonic())))
                or time.monotonic() >= deadline
            ):
                return
            kind = rng.choice(kinds)
            down_s = round(rng.uniform(0.2, self.cfg.down_max_s), 2)
            strike = self.strike if stream == "process" else self.strike_network
            try:
                strike(rng, kind, down_s)
            except Exception as exc:  # a fault that could not be applied is reported, not fatal
                self.say(f"nemesis: {kind} failed: {exc!r}")

    def strike(self, rng: random.Random, kind: str, down_s: float) -> None:
        from paykit.core.failpoints import FAILPOINTS

        c, t0 = self.cluster, self.now_s()
        target = rng.choice(list(c.procs))
        role = "gateway." if target == "gateway" else "bank."
        point = rng.choice([n for n in FAILPOINTS if n.startswith(role)])
        if kind == "kill":
            self._down(target, "killed", c.kill)
            self.say(f"kill -9 {target} (down {down_s} s)")
            time.sleep(down_s)
            self._up(target)
        elif kind == "pause":
            self._down(target, "paused", c.pause)
            self.say(f"pause {target} ({down_s} s)")
            time.sleep(down_s)
            c.resume(target)
            self._mark(target, None)
        else:
            c.arm(target, point, "crash")
            if not c.died_within(target, self.cfg.failpoint_window_s):
                c.disarm(target)
                if c.procs[target].running:
                    self._record(Fault(t0, target, "failpoint-missed", point, 0.0))
                    return
            self._mark(target, "crashed")
            self.say(f"{target} crashed at failpoint {point} (down {down_s} s)")
            time.sleep(down_s)
            self._up(target)
        self._record(Fault(t0, target, kind, point if kind == "failpoint" else "", down_s))

    def strike_network(self, rng: random.Random, kind: str, down_s: float) -> None:
        """Pulls the network between two processes (both links), or on one bank's link to the
        coordinator alone, for down_s; then heals it."""
        c, t0 = self.cluster, self.now_s()
        pairs = [("client", "gateway")] + [("gateway", b) for b in c.bank_names]
        pairs += [(f"{b}->gateway", None) for b in c.bank_names]
        a, b = rng.choice(pairs)
        target = a if b is None else f"{a}<->{b}"
        detail = ""
        if kind == "cut":
            c.cut(a, b)
        elif kind == "partition":
            c.partition(a, b)
        elif kind == "drop-replies":
            c.partition(a, b, drop="replies")
        else:  # up to 1.5 x the vote timeout each way: some Prepares time out, most do not
            ms = round(rng.uniform(20, 1500 * self.cfg.prepare_timeout_s))
            c.delay(a, b, ms=ms, jitter_ms=ms // 4)
            detail = f"{ms} ms"
        self._mark(target, kind)
        self.say(f"network: {kind} {target} {detail}({down_s} s)")
        time.sleep(down_s)
        c.heal(a, b)
        self._mark(target, None)
        self._record(Fault(t0, target, kind, detail, down_s))

    def _record(self, fault: Fault) -> None:
        with self.lock:
            self.report.faults.append(fault)

    def _down(self, target: str, state: str, action: Callable[[str], None]) -> None:
        self._mark(target, state)
        action(target)

    def _mark(self, target: str, state: str | None) -> None:
        with self.lock:
            if state is None:
                self.down.pop(target, None)
            else:
                self.down[target] = state

    def _up(self, target: str) -> None:
        for attempt in range(RESTART_ATTEMPTS):
            try:
                self.cluster.restart(target)
                self._mark(target, None)
                return
            except PaykitError as exc:
                self.say(f"restart of {target} failed ({exc}); retrying")
                time.sleep(0.5 * (attempt + 1))
        raise Unavailable(f"{target} would not restart")

    def heal(self) -> None:
        """Heals the network, resumes paused servers, restarts dead ones, and takes back armed
        failpoints."""
        if self.cluster.relays:
            self.cluster.heal()
        for name, proc in self.cluster.procs.items():
            if self.cluster.failpoints:
                self.cluster.disarm(name)
            if proc.running and proc.paused:
                self.cluster.resume(name)
            elif not proc.running:
                self._up(name)
        with self.lock:
            self.down.clear()

    # -- the sampler ----------------------------------------------------------------

    def sampler(self) -> None:
        last_line = 0.0
        while not self.stop_sampling.wait(SAMPLE_EVERY_S):
            sample = self.sample()
            with self.lock:
                self.report.samples.append(sample)
            if self.status_lines and sample.t_s - last_line >= 2.0:
                last_line = sample.t_s
                money = (
                    "unreadable"
                    if sample.total_minor is None
                    else (
                        f"{sample.total_minor} {sample.in_flight_minor:+d} in flight = "
                        f"{sample.total_minor + sample.in_flight_minor} of {sample.opened_minor}"
                    )
                )
                self.say(
                    f"{sample.completed} done ({sample.succeeded} ok, {sample.failed} failed, "
                    f"{sample.uncertain} uncertain), money {money}, down: {sample.down or '-'}"
                )

    def sample(self) -> Sample:
        try:
            total, in_flight = money_sample(self.cluster)
        except Exception:  # a database mid-recovery cannot be read this instant; skip the point
            total = in_flight = None
        with self.lock:
            done = Counter(self.done)
            down = ", ".join(f"{t} {s}" for t, s in sorted(self.down.items()))
        return Sample(
            self.now_s(),
            total,
            in_flight,
            self.opened_minor,
            sum(done.values()),
            done[SUCCEEDED],
            done[FAILED],
            done[UNCERTAIN],
            down,
        )


def run_chaos(
    config: ChaosConfig | None = None,
    *,
    progress: Callable[[str], None] | None = print,
    status_lines: bool = True,
    cluster_options: dict | None = None,
    **overrides,
) -> ChaosReport:
    """Runs one chaos test on a fresh local cluster and returns its report (see ChaosReport).

    progress gets each event (a fault, the heal, recovery) and, with status_lines, a status
    line every two seconds (payments done, money, what is down): `paykit chaos` shows those only
    on a terminal. `cluster_options` go to LocalCluster too (the labs: coordinator=,
    idempotency=)."""
    from paykit.lab.cluster import LocalCluster

    cfg = replace(config or PROFILES["short"], **overrides)
    if (
        not 2 <= cfg.banks <= len(BANK_NAMES)
        or not 2 <= cfg.accounts
        or not 1 <= cfg.payers <= cfg.accounts
    ):
        raise ValueError("chaos needs 2-3 banks, at least 2 accounts, and 1..accounts payers")
    unknown = set(cfg.faults) - set(FAULT_KINDS)
    if unknown:
        raise ValueError(f"unknown fault kinds {sorted(unknown)}; use {FAULT_KINDS}")
    # Failpoints only when that fault is wanted: with them on, the gateway sends the two Commits
    # one after the other (so "between the commits" exists); off, it sends both at once.
    cluster = LocalCluster(
        BANK_NAMES[: cfg.banks],
        data_dir=Path(cfg.data_dir) if cfg.data_dir else kept_data_dir(cfg),
        prepare_timeout_s=cfg.prepare_timeout_s,
        failpoints="failpoint" in cfg.faults,
        seed_csv=None,
        relays=any(kind in NETWORK_FAULTS for kind in cfg.faults),
        relay_seed=cfg.seed,
        participant=cfg.participant,
        **(cluster_options or {}),
    )
    cluster.start()
    try:
        return _run(_Run(cfg, cluster, progress, status_lines))
    finally:
        cluster.stop()


def kept_data_dir(cfg: ChaosConfig) -> Path:
    """Where a run keeps its databases and logs (the report reads them after the run) when no
    data_dir is given: run state, like `paykit up`'s, in <state folder>/chaos/seed-N-faults, not
    a temporary folder; a rerun of the same seed and faults replaces it."""
    from paykit.core.config import state_dir

    folder = state_dir() / "chaos" / f"seed-{cfg.seed}-{'-'.join(cfg.faults)}"
    shutil.rmtree(folder, ignore_errors=True)
    return folder


def _run(run: _Run) -> ChaosReport:
    cfg, report = run.cfg, run.report
    sessions = []
    for username, bank, account in run.accounts:
        s = run.session()
        s.register(username, PASSWORD, account, cfg.opening_minor, bank)
        s.authenticate(username, PASSWORD)
        sessions.append(s)
    run.say(
        f"seed {cfg.seed}: {cfg.accounts} accounts at {cfg.banks} banks, {cfg.payers} payers, "
        f"{cfg.duration_s} s of faults ({', '.join(cfg.faults)})"
    )
    run.started = time.monotonic()
    threads = [
        threading.Thread(target=run.payer, args=(i, sessions), daemon=True)
        for i in range(cfg.payers)
    ]
    sampler = threading.Thread(target=run.sampler, daemon=True)
    for t in (*threads, sampler):
        t.start()
    run.nemeses()
    run.stop_paying.set()
    run.heal()
    for t in threads:
        t.join()
    healed_ms = now_ms()
    run.say("healed; resolving uncertain payments through their keys")
    _resolve(run, sessions, healed_ms)
    _wait_recovered(run)
    run.stop_sampling.set()
    sampler.join()
    report.samples.append(run.sample())  # the healed end state closes the time series
    report.elapsed_s = run.now_s()
    _final_checks(run)
    for s in sessions:
        s.close()
    return report


def _resolve(run: _Run, sessions: list[GatewaySession], healed_ms: int) -> None:
    by_user = {s.username: s for s in sessions}
    deadline = time.monotonic() + run.cfg.recover_timeout_s
    resolved_now = []
    for intent in [i for i in run.report.intents if i.outcome == UNCERTAIN]:
        while not intent.resolved and time.monotonic() < deadline:
            answer = run.send(by_user[intent.username], intent, 1, None)
            if answer is None:
                time.sleep(0.2)
                continue
            intent.resolved, intent.reason = answer
            resolved_now.append(intent)
    if resolved_now:  # one read of the gateway's payments, not one per payment
        created = {
            (p.username, p.idempotency_key): p.created_unix_ms
            for p in read_gateway(run.cluster.gateway_db())
        }
        run.report.first_sent_on_retry += sum(  # the gateway never had them before the heal
            created.get((i.username, i.key), -1) >= healed_ms for i in resolved_now
        )


def _wait_recovered(run: _Run) -> Report:
    """Polls until no bank holds anything in doubt and every decision reached both banks."""
    deadline = time.monotonic() + run.cfg.recover_timeout_s
    while True:
        report = check_invariants(run.cluster)
        settled = all(
            report.results[name][0] for name in ("nothing in doubt", "decisions delivered")
        )
        if settled or time.monotonic() > deadline:
            run.say(
                "recovered: nothing in doubt" if settled else "NOT recovered within the deadline"
            )
            return report
        time.sleep(0.2)


def _final_checks(run: _Run) -> None:
    intents = run.report.intents
    told = {
        (i.username, i.key): i.resolved or i.outcome
        for i in intents
        if (i.resolved or i.outcome) != UNCERTAIN
    }
    report = check_invariants(run.cluster, told=told)
    uncertain = [i for i in intents if i.outcome == UNCERTAIN]
    unresolved = sum(not i.resolved for i in uncertain)
    report.add(
        "uncertain resolved",
        unresolved == 0,
        f"{len(uncertain) - unresolved} of {len(uncertain)} uncertain payments resolved through "
        "their key",
    )
    keys = {(i.username, i.key) for i in intents}
    stray = [
        p.payment_id[:8]
        for p in read_gateway(run.cluster.gateway_db())
        if (p.username, p.idempotency_key) not in keys
    ]
    report.add(
        "payments from intents", not stray, f"{len(stray)} payments no payer intended {stray[:3]}"
    )
    run.report.invariants = report


def build_parser() -> argparse.ArgumentParser:
    d = PROFILES["short"]
    p = argparse.ArgumentParser(
        prog="paykit chaos",
        description="Jepsen-style fault test: concurrent payers, kill -9 / pause / failpoint "
        "crashes of banks and the gateway and, at the same time, network faults between them "
        "(cut, partition, lost replies, delay) on a seeded schedule, then heal and check that "
        "every payment happened exactly once. Exits 1 on any violated invariant.",
        epilog="Longer run: paykit chaos --profile long --seed 7 (five minutes, 8 payers, 12 "
        "accounts). Each fault prints a line; the status line every 2 s (payments, money, what "
        "is down) only on a terminal, not into a pipe or a file.",
    )
    p.add_argument(
        "--profile", choices=sorted(PROFILES), default="short", help="preset sizes (default short)"
    )
    p.add_argument(
        "--seed",
        type=int,
        help="seed of the schedule (default: random, printed so it can be rerun)",
    )
    p.add_argument("--duration-s", type=float, help=f"how long faults run (short: {d.duration_s})")
    p.add_argument("--banks", type=int, choices=(2, 3), help=f"number of banks (default {d.banks})")
    p.add_argument("--accounts", type=int, help=f"accounts, one user each (short: {d.accounts})")
    p.add_argument("--payers", type=int, help=f"concurrent payers (short: {d.payers})")
    p.add_argument(
        "--fault-every-s", type=float, help=f"mean gap between faults (short: {d.fault_every_s})"
    )
    p.add_argument(
        "--down-max-s", type=float, help=f"longest a server stays down (short: {d.down_max_s})"
    )
    p.add_argument(
        "--faults", help=f"comma-separated kinds out of {','.join(FAULT_KINDS)} (default all)"
    )
    p.add_argument(
        "--prepare-timeout-s",
        type=float,
        help=f"the gateway's vote timeout (default {d.prepare_timeout_s})",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        help="where the cluster's databases and logs go (default: <state folder>/chaos/"
        "seed-N-FAULTS, replaced when the same seed and faults run again)",
    )
    p.add_argument("--quiet", action="store_true", help="print only the final report")
    return finish_parser(p)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    overrides = {
        name: value
        for name, value in (
            ("duration_s", args.duration_s),
            ("banks", args.banks),
            ("accounts", args.accounts),
            ("payers", args.payers),
            ("fault_every_s", args.fault_every_s),
            ("down_max_s", args.down_max_s),
            ("prepare_timeout_s", args.prepare_timeout_s),
            ("data_dir", args.data_dir),
            ("faults", tuple(args.faults.split(",")) if args.faults else None),
        )
        if value is not None
    }
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    print(f"[chaos] seed {seed} (rerun with --seed {seed})", flush=True)
    try:
        report = run_chaos(
            PROFILES[args.profile],
            seed=seed,
            progress=None if args.quiet else lambda line: print(line, flush=True),
            status_lines=on_terminal(sys.stdout),  # progress on a terminal, not in a pipe
            **overrides,
        )
    except ValueError as err:
        print(f"paykit chaos: error: {err}", file=sys.stderr)
        return 2
    print(report.summary(), flush=True)
    return 0 if report.ok else 1
