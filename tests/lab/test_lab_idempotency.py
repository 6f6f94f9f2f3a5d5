"""Lab C's grader both ways: the reference store passes every check, and each classic mistake
fails the check meant to catch it, with a hint that names the rule it broke."""

from __future__ import annotations

import buggy_idempotency as bugs
import pytest

from paykit.gateway.keystore import SqlKeys
from paykit.lab import grading
from paykit.lab.labs import idempotency

# (buggy class, the check that catches it, words its hint must hold)
BUGS = [
    (bugs.DedupWindow, "replay_later", "time only prunes"),
    (bugs.DedupByParameters, "same_params", "never by time or parameters"),
    (bugs.StoresNoErrors, "replay_errors", "an error is an answer"),
    (bugs.RunsDuplicatesTwice, "concurrent", "exactly one may run"),
    (bugs.ReplaysLastResponse, "replay", "its own payment and stored response"),
    (bugs.IgnoresParameters, "changed_params", "IdempotencyKeyReused"),
    (bugs.NeverExpires, "prune", "keys must expire"),
    (bugs.RerunsExpired, "expired", "IdempotencyKeyExpired naming the payment"),
    (bugs.PrunesInProgress, "prune_in_progress", "never forgets a key still in progress"),
    (bugs.PrunesEverything, "prune", "keeps keys younger than the retention"),
    (bugs.GlobalKeys, "per_user", "keys are per user"),
    (bugs.EmptyWhileInProgress, "in_progress", "gets InProgress"),
    (bugs.AnswersInMemory, "crash_retry", "answer must replay"),
]


def test_the_reference_passes_the_whole_grade():
    report = grading.grade("idempotency", "paykit.gateway.keystore:SqlKeys", seed=11)
    assert report.passed, report.text()
    assert report.score == report.out_of == sum(c.points for c in idempotency.LAB.checks)
    assert idempotency.LAB.reference == "paykit.gateway.keystore:SqlKeys"


@pytest.mark.parametrize(("bug", "check", "words"), BUGS, ids=lambda v: getattr(v, "__name__", v))
def test_a_classic_mistake_fails_with_its_hint(bug, check, words):
    report = grading.grade("idempotency", bug, seed=5, only=[check])
    assert report.failed() == [check], report.text()
    assert words in report.hint(check), report.text()


@pytest.mark.parametrize(
    "bug", [b for b, _, _ in BUGS if b is not bugs.AnswersInMemory], ids=lambda b: b.__name__
)
def test_the_model_check_catches_every_mistake_a_single_process_can_show(bug):
    report = grading.grade("idempotency", bug, seed=5, only=["model"])
    assert report.failed() == ["model"] and "model check found a sequence" in report.hint("model")


def test_every_bug_is_a_store_with_one_rule_broken():
    assert len(BUGS) >= 10 and len({b for b, _, _ in BUGS}) == len(BUGS)
    assert all(issubclass(b, SqlKeys) and b is not SqlKeys for b, _, _ in BUGS)


def test_a_class_defined_in_a_notebook_gets_a_hint_for_the_cluster_checks():
    cls = type("Mine", (SqlKeys,), {"__module__": "__main__"})
    report = grading.grade("idempotency", cls, seed=1, only=["gateway_replay"])
    assert "put it in a module file" in report.hint("gateway_replay")
