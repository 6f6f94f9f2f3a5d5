"""What the checks of one grade share (Run.shared): made once, the same object for every check,
closed when the grade ends, and made anew after a check drops it."""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from paykit.lab import grading
from paykit.lab.grading import Check, Lab

made: list[str] = []
closed: list[str] = []


class Thing:
    """The toy interface of this lab."""


@contextmanager
def resource(folder):
    made.append(folder.name)
    try:
        yield object()
    finally:
        closed.append(folder.name)


seen: list[object] = []


def _uses(run: grading.Run) -> None:
    seen.append(run.shared.get("cluster", resource))


def _drops(run: grading.Run) -> None:
    _uses(run)
    run.shared.drop("cluster")


LAB = Lab(
    "shared", Thing, [Check("a", "a", _uses), Check("b", "b", _drops), Check("c", "c", _uses)]
)


@pytest.fixture
def shared_lab(monkeypatch):
    monkeypatch.setitem(grading.LABS, "shared", __name__)
    made.clear(), closed.clear(), seen.clear()


def test_a_shared_resource_is_made_once_and_closed_at_the_end(shared_lab):
    report = grading.grade("shared", Thing, seed=1, only=["a", "c"])
    assert report.passed and made == ["cluster"] and closed == ["cluster"]
    assert seen[0] is seen[1]


def test_a_dropped_resource_is_closed_and_made_anew(shared_lab):
    report = grading.grade("shared", Thing, seed=1)
    assert report.passed and made == ["cluster", "cluster"] and len(closed) == 2
    assert seen[0] is seen[1] and seen[2] is not seen[1]
