"""The lab grader's frame: load the student's class, run a lab's checks on it, report.

A lab (paykit.lab.labs.<name>) is a module with a `LAB = Lab(...)`: its name, the interface the
student implements, and its checks. A check is a function of a `Run` (the student's class, a seed,
a scratch folder) that returns nothing when the rule holds and raises `Broken(hint)` when it does
not; the hint names the rule broken, so a student reads what to fix, not a stack trace. The
grader runs every check (one failing does not stop the others), times it and scores the lab.

    paykit lab grade participant mylab:MyParticipant [--seed N] [--check NAME]
    paykit.lab.grade("participant", "mylab:MyParticipant")  # in a notebook: a Report

The same checks grade the reference solution (which must pass) and the buggy implementations
under tests/ (each must fail with its hint), so the grader itself is tested both ways.
"""

from __future__ import annotations

import argparse
import html
import importlib
import random
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paykit.core.commandline import finish_parser

# The labs by name -> the module holding its LAB.
LABS: dict[str, str] = {
    "participant": "paykit.lab.labs.participant",
    "coordinator": "paykit.lab.labs.coordinator",
    "idempotency": "paykit.lab.labs.idempotency",
}
TARGET_MAX_CHARS = 200  # "package.module:Class"; longer is not a dotted path
SHOWN_CHARS = 40  # no error echoes more than this much of what it was given


class GradeError(ValueError):
    """The grader could not start: an unknown lab, a target that does not load."""


class Broken(AssertionError):
    """A check found a rule broken; the message is the hint a student reads."""


class Shared:
    """What the checks of one grade share, made once: `get(name, make)` enters the context
    manager `make(folder)` returns (a LocalCluster, say) the first time and gives the same object
    after; grade() closes them all when its last check is done. `folder` outlives the checks."""

    def __init__(self) -> None:
        self._stacks: dict[str, ExitStack] = {}
        self._items: dict[str, object] = {}
        self._folder: Path | None = None

    def get(self, name: str, make: Callable[[Path], AbstractContextManager]):
        if name not in self._items:
            if self._folder is None:
                self._folder = Path(tempfile.mkdtemp(prefix="paykit-grade-shared-"))
            stack = ExitStack()
            self._items[name] = stack.enter_context(make(self._folder / name))
            self._stacks[name] = stack
        return self._items[name]

    def drop(self, name: str) -> None:
        """Closes one shared thing (a check broke it beyond repair); the next get makes anew."""
        self._items.pop(name, None)
        stack = self._stacks.pop(name, None)
        if stack is not None:
            stack.close()

    def close(self) -> None:
        for name in list(self._stacks):
            self.drop(name)
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


@dataclass
class Run:
    """What a check gets: the class under test, the run's seed and a scratch folder of its own,
    and what the checks of this grade share (`shared`, e.g. one cluster for all of them)."""

    target: type
    seed: int
    workdir: Path
    shared: Shared = field(default_factory=Shared)  # things made on first use (kit.py)
    fixture: Any = None  # what the lab's own `shared` set up once for all its checks (Lab A)
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)


@dataclass(frozen=True)
class Check:
    name: str  # short, unique in its lab: `--check NAME` runs it alone
    rule: str  # the rule it checks, one line, as the lab sheet states it
    run: Callable[[Run], None]
    points: int = 1


@dataclass(frozen=True)
class Lab:
    name: str
    interface: type  # the base class the student's class derives from (the starter's)
    checks: Sequence[Check]
    reference: str = ""  # dotted path of the reference solution
    # shared(target, seed, workdir): a context manager whose value every check gets as
    # run.fixture, entered once per grade (e.g. one cluster reused by the checks, not one each).
    shared: Callable[[type, int, Path], AbstractContextManager[Any]] | None = None


@dataclass(frozen=True)
class Result:
    check: Check
    passed: bool
    hint: str  # empty when passed
    seconds: float


@dataclass
class Report:
    lab: str
    target: str
    seed: int
    results: list[Result]

    @property
    def score(self) -> int:
        return sum(r.check.points for r in self.results if r.passed)

    @property
    def out_of(self) -> int:
        return sum(r.check.points for r in self.results)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def failed(self) -> list[str]:
        return [r.check.name for r in self.results if not r.passed]

    def hint(self, name: str) -> str:
        return next(r.hint for r in self.results if r.check.name == name)

    def text(self) -> str:
        lines = [f"lab {self.lab}: {self.target} (seed {self.seed})"]
        for r in self.results:
            mark = "PASS" if r.passed else "FAIL"
            lines.append(f"  {mark} {r.check.name:<28} {r.seconds:5.1f}s  {r.check.rule}")
            if not r.passed:
                lines.append(f"       hint: {r.hint}")
        lines.append(f"score {self.score}/{self.out_of}")
        if not self.passed:
            lines.append(f"rerun: paykit lab grade {self.lab} {self.target} --seed {self.seed}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{'✓' if r.passed else '✗'}</td><td>{html.escape(r.check.name)}</td>"
            f"<td>{html.escape(r.check.rule)}</td><td>{html.escape(r.hint)}</td>"
            f"<td>{r.seconds:.1f}s</td></tr>"
            for r in self.results
        )
        head = "<tr><th></th><th>check</th><th>rule</th><th>hint</th><th>time</th></tr>"
        return (
            f"<p><b>lab {html.escape(self.lab)}</b>: {html.escape(self.target)}, "
            f"score <b>{self.score}/{self.out_of}</b>, seed {self.seed}</p>"
            f"<table>{head}{rows}</table>"
        )


def _shown(text: str) -> str:
    return repr(text[:SHOWN_CHARS] + ("..." if len(text) > SHOWN_CHARS else ""))


def model_settings(max_examples: int, **more):
    """hypothesis settings for a lab's model check: the same scenarios for every student
    (derandomized, no example database), quiet, no deadline, and no shrinking: the first broken
    scenario is reported at once, as a hint, not minimised for minutes."""
    from hypothesis import HealthCheck, Phase, Verbosity, settings

    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        verbosity=Verbosity.quiet,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        **more,
    )


def load_lab(name: str) -> Lab:
    if len(name) > TARGET_MAX_CHARS or name not in LABS:
        raise GradeError(f"no lab {_shown(name)}: the labs are {', '.join(LABS)}")
    return importlib.import_module(LABS[name]).LAB


def split_target(dotted: str) -> tuple[str, str]:
    """("package.module", "Class") from "package.module:Class", or a GradeError saying why not."""
    if len(dotted) > TARGET_MAX_CHARS:
        raise GradeError(f"target is {len(dotted)} characters; at most {TARGET_MAX_CHARS}")
    module_name, sep, attr = dotted.partition(":")
    if not sep or not module_name or not attr:
        raise GradeError(f"target {_shown(dotted)} is not of the form module:Class")
    return module_name, attr


def load_target(dotted: str | type, interface: type) -> type:
    """The class named "package.module:Class" (or a class itself), checked against the lab."""
    if isinstance(dotted, type):
        cls = dotted
    else:
        module_name, attr = split_target(dotted)
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # a student's module may fail in any way: say how, briefly
            raise GradeError(f"cannot import {_shown(module_name)}: {type(exc).__name__}") from exc
        cls = getattr(module, attr, None)
        if cls is None:
            raise GradeError(f"module {_shown(module_name)} has no {_shown(attr)}")
    if not (isinstance(cls, type) and issubclass(cls, interface)):
        raise GradeError(
            f"{_shown(getattr(cls, '__name__', str(cls)))} must subclass "
            f"{interface.__module__}.{interface.__name__}"
        )
    return cls


def _run_one(check: Check, target: type, seed: int, shared: Shared, fixture: Any = None) -> Result:
    workdir = Path(tempfile.mkdtemp(prefix=f"paykit-grade-{check.name}-"))
    started = time.monotonic()
    try:
        check.run(Run(target, seed, workdir, shared=shared, fixture=fixture))
        passed, hint = True, ""
    except Broken as broken:
        passed, hint = False, str(broken)
    except Exception as exc:  # the student's code raised: the hint says where
        where = traceback.extract_tb(exc.__traceback__)[-1]
        hint = f"your code raised {type(exc).__name__}: {str(exc)[:120]} ({where.name}, line "
        passed, hint = False, hint + f"{where.lineno})"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return Result(check, passed, hint, time.monotonic() - started)


def grade(
    lab: str, target: str | type, *, seed: int | None = None, only: Sequence[str] = ()
) -> Report:
    """Grade `target` (a class or "module:Class") in `lab`; every check runs, one after another."""
    if isinstance(target, str):
        split_target(target)  # a malformed target is refused before anything loads
    the_lab = load_lab(lab)
    cls = load_target(target, the_lab.interface)
    names = {c.name for c in the_lab.checks}
    unknown = [n for n in only if n not in names]
    if unknown:
        raise GradeError(f"lab {lab} has no check {_shown(unknown[0])}: {', '.join(sorted(names))}")
    seed = random.randrange(1, 10**6) if seed is None else seed
    checks = [c for c in the_lab.checks if not only or c.name in only]
    shown = target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"
    workdir = Path(tempfile.mkdtemp(prefix=f"paykit-grade-{the_lab.name}-"))
    shared = Shared()
    try:
        with (the_lab.shared or _nothing_shared)(cls, seed, workdir) as fixture:
            results = [_run_one(c, cls, seed, shared, fixture) for c in checks]
    finally:
        shared.close()  # the clusters the checks shared: nothing is left running
        shutil.rmtree(workdir, ignore_errors=True)
    return Report(the_lab.name, shown, seed, results)


def _nothing_shared(target: type, seed: int, workdir: Path) -> AbstractContextManager[None]:
    return nullcontext()


def build_parser() -> argparse.ArgumentParser:
    """`paykit lab VERB`: for now the one verb, grade."""
    parser = argparse.ArgumentParser(
        prog="paykit lab",
        description="Grade a lab: the kit's own crash tests run against your class.",
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    g = sub.add_parser("grade", help="grade your class for one lab; exit 0 when every check passes")
    g.add_argument("lab", choices=sorted(LABS), help="which lab")
    g.add_argument("target", help="your class as module:Class (the module on sys.path or in .)")
    g.add_argument("--seed", type=int, default=None, help="rerun with the seed a report printed")
    g.add_argument(
        "--check", action="append", default=[], metavar="NAME", help="run only this check"
    )
    return finish_parser(parser)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sys.path.insert(0, str(Path.cwd()))  # `mylab:MyParticipant` from the student's own folder
    try:
        report = grade(args.lab, args.target, seed=args.seed, only=args.check)
    except GradeError as err:
        print(f"paykit lab: error: {err}", file=sys.stderr)
        return 2
    print(report.text())
    return 0 if report.passed else 1
