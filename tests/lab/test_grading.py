"""The grader's frame on a toy lab: a passing class scores, a broken rule fails with its hint."""

from __future__ import annotations

import subprocess
import sys

import pytest

from paykit.lab import grading
from paykit.lab.grading import Broken, Check, GradeError, Lab


class Counter:
    """The toy interface: add(n) returns the running total; a seen request id counts once."""

    def add(self, request_id: str, n: int) -> int:
        raise NotImplementedError


class Good(Counter):
    def __init__(self) -> None:
        self.total, self.seen = 0, set()

    def add(self, request_id: str, n: int) -> int:
        if request_id not in self.seen:
            self.seen.add(request_id)
            self.total += n
        return self.total


class CountsTwice(Good):
    def add(self, request_id: str, n: int) -> int:
        self.total += n
        return self.total


class Raises(Counter):
    def add(self, request_id: str, n: int) -> int:
        raise KeyError("oops")


def _adds(run: grading.Run) -> None:
    counter = run.target()
    n = run.rng.randrange(1, 100)
    if counter.add("a", n) != n:
        raise Broken("add must return the running total")


def _once(run: grading.Run) -> None:
    counter = run.target()
    counter.add("a", 5)
    if counter.add("a", 5) != 5:
        raise Broken("a request id seen before must not count again (apply once)")


TOY = Lab("toy", Counter, [Check("adds", "adds up", _adds), Check("once", "once", _once)])


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(grading.LABS, "toy", __name__)
    return TOY


LAB = TOY  # what load_lab imports from this module


def test_a_correct_class_passes_every_check(toy):
    report = grading.grade("toy", Good, seed=7)
    assert report.passed and report.score == report.out_of == 2
    assert "score 2/2" in report.text() and "rerun" not in report.text()


def test_a_broken_rule_fails_with_its_hint_and_the_rest_still_run(toy):
    report = grading.grade("toy", CountsTwice, seed=7)
    assert report.failed() == ["once"] and report.score == 1
    assert "apply once" in report.hint("once")
    assert "--seed 7" in report.text() and "<table>" in report._repr_html_()


def test_code_that_raises_is_a_failure_naming_the_error(toy):
    report = grading.grade("toy", Raises, seed=1)
    assert report.failed() == ["adds", "once"]
    assert "KeyError" in report.hint("adds")


@pytest.mark.parametrize(
    ("lab", "target", "message"),
    [
        ("nope", Good, "no lab 'nope'"),
        ("toy", "x" * 500, "at most 200"),
        ("toy", "no_colon", "module:Class"),
        ("toy", "no_such_module_zz:X", "cannot import"),
        ("toy", f"{__name__}:Missing", "has no 'Missing'"),
        ("toy", f"{__name__}:Broken", "must subclass"),
    ],
)
def test_bad_targets_are_refused_clearly(toy, lab, target, message):
    with pytest.raises(GradeError, match=message):
        grading.grade(lab, target)


def test_an_unknown_check_name_is_refused(toy):
    with pytest.raises(GradeError, match="no check 'zzz'"):
        grading.grade("toy", Good, only=["zzz"])


def test_the_command_exits_2_on_a_bad_target_and_says_why():
    done = subprocess.run(
        [sys.executable, "-m", "paykit", "lab", "grade", "idempotency", "no_colon"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "module:Class" in done.stderr
