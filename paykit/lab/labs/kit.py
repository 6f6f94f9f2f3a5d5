"""What the labs' whole-cluster checks share: one cluster per grade running the student's class,
healed before each check, fresh payers, and waits that end in a hint rather than a hang."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import TypeVar

from paykit.client.session import GatewaySession
from paykit.core.errors import PaykitError
from paykit.lab.chaos import ChaosConfig, run_chaos
from paykit.lab.check import check_invariants
from paykit.lab.cluster import LocalCluster
from paykit.lab.grading import Broken, Run

T = TypeVar("T")
PASSWORD = "lab-password-1"
OPENING_MINOR = 100_000
SETTLE_TIMEOUT_S = 12.0
_payers = itertools.count(1)


def dotted(cls: type) -> str:
    """ "module:Class" for a gateway process to import the student's class by."""
    if cls.__module__ == "__main__" or "." in cls.__qualname__ or "<" in cls.__qualname__:
        raise Broken(
            "whole-cluster checks start a gateway that imports your class: put it in a module "
            "file (copy the starter) and grade it as module:Class"
        )
    return f"{cls.__module__}:{cls.__qualname__}"


def cluster(run: Run, name: str = "cluster", **options) -> LocalCluster:
    """The grade's cluster `name` (started the first time, with the student's class as
    `options` say), healed: every server up, nothing armed, nothing in doubt."""

    def make(folder):
        return LocalCluster(data_dir=folder, **options)

    c = run.shared.get(name, make)
    try:
        heal(c)
    except Broken:
        run.shared.drop(name)  # a previous check left it beyond repair: start another
        c = run.shared.get(name, make)
        heal(c)
    return c


def heal(c: LocalCluster) -> None:
    for server, proc in c.procs.items():
        if c.failpoints:
            c.disarm(server)
        if proc.running and proc.paused:
            c.resume(server)
        elif not proc.running:
            c.restart(server)
    if c.relays:
        c.heal()
    settled(c, "the cluster did not settle before the check")


def settled(c: LocalCluster, hint: str, timeout_s: float = SETTLE_TIMEOUT_S) -> None:
    """Waits until every invariant holds (nothing in doubt, every decision delivered)."""
    deadline = time.monotonic() + timeout_s
    while True:
        report = check_invariants(c)
        if report.ok:
            return
        if time.monotonic() > deadline:
            raise Broken(f"{hint}: {violated(report)}")
        time.sleep(0.1)


def gateway_chaos(run: Run, broke: str, **cluster_options) -> None:
    """A short seeded chaos run on the student's gateway part (cluster_options names it): kills
    and failpoint crashes of the gateway and banks, lost replies; every invariant must hold."""
    report = run_chaos(
        ChaosConfig(
            seed=run.seed,
            duration_s=6.0,
            banks=2,
            accounts=4,
            payers=3,
            fault_every_s=1.0,
            down_max_s=1.0,
            faults=("kill", "failpoint", "drop-replies"),
            data_dir=run.workdir / "chaos",
        ),
        progress=None,
        cluster_options=cluster_options,
    )
    if not report.ok:
        raise Broken(f"chaos (seed {run.seed}) broke {broke}: {violated(report.invariants)}")


def violated(report) -> str:
    """The invariants a paykit.lab.check.Report found broken, each with its figure, briefly."""
    return "; ".join(f"{name} ({report.results[name][1]})" for name in report.violations)[:300]


def payer(c: LocalCluster, opening_minor: int = OPENING_MINOR, bank: str = "BankA"):
    """(a signed-in session of a fresh user, its account id)."""
    name = f"lab{next(_payers)}u{time.monotonic_ns() % 10**6}"
    s = c.session()
    s.register(name, PASSWORD, f"{name}-acct", opening_minor, bank)
    s.authenticate(name, PASSWORD)
    return s, f"{name}-acct"


def refusal(call: Callable[[], T]) -> PaykitError | None:
    """The paykit error `call` raised, or None if it returned."""
    try:
        call()
    except PaykitError as err:
        return err
    return None


def reason_of(err: BaseException | None) -> str:
    return getattr(err, "reason", "") if err is not None else "no error"


def eventually(predicate: Callable[[], T], timeout_s: float, hint: str) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Broken(hint)
        time.sleep(0.1)


def open_session(c: LocalCluster, session: GatewaySession) -> GatewaySession:
    """A new session signed in as the same user (after a gateway restart, say)."""
    fresh = c.session()
    fresh.authenticate(session.username, PASSWORD)
    return fresh


def check_lab(report) -> None:
    """A lab sheet's graded cell: prints ✓ when every check of the report passed, or ✗ with
    each failed check's hint, and then raises AssertionError."""
    if report.passed:
        print(f"✓ lab {report.lab}: {report.score}/{report.out_of}, every check passed")
        return
    lines = [f"✗ lab {report.lab}: {report.score}/{report.out_of}"]
    lines += [f"  Hint: {r.check.name}: {r.hint}" for r in report.results if not r.passed]
    print("\n".join(lines))
    raise AssertionError(f"lab {report.lab}: {', '.join(report.failed())} failed")
