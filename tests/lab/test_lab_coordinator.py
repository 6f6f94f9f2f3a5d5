"""Lab B's grader both ways: the reference rules pass every check, and each classic mistake of
a coordinator fails the check meant to catch it, with a hint that names the rule it broke."""

from __future__ import annotations

import buggy_coordinator as bugs
import pytest

from paykit.gateway.decisions import TwoPhaseRules
from paykit.lab import grading
from paykit.lab.labs import coordinator

# (buggy class, the check that catches it, words its hint must hold)
BUGS = [
    (bugs.SendsBeforeLogging, "log_first", "log the decision before sending it"),
    (bugs.AbortsAfterCommitTimeout, "commit_stands", "a logged COMMIT stands"),
    (bugs.NeverRedrivesAfterRestart, "redrive_restart", "after a restart, redrive"),
    (bugs.AbortWhilePending, "pending", "answers PENDING"),
    (bugs.CommitsOnNo, "no_vote", "never commit on a NO"),
    (bugs.CommitsOnMissingVote, "missing_vote", "never commit on a missing vote"),
    (bugs.DecidesOnFirstYes, "all_votes", "decide only when every vote is in"),
    (bugs.WaitsOutTheDeadline, "first_no", "the first NO decides at once"),
    (bugs.ForgetsLogOnRestart, "log_survives", "durable log"),
    (bugs.PresumesCommit, "presumed_abort", "presumed abort"),
    (bugs.RecoverCommits, "recover", "decided ABORT"),
    (bugs.RedrivesOnlyCommits, "recover", "the ABORT goes to both banks"),
    (bugs.NeverRedrivesAfterRestart, "crash_points", "redrive delivers every logged decision"),
]


def test_the_reference_passes_the_whole_grade():
    report = grading.grade("coordinator", "paykit.gateway.decisions:TwoPhaseRules", seed=11)
    assert report.passed, report.text()
    assert report.score == report.out_of == sum(c.points for c in coordinator.LAB.checks)


@pytest.mark.parametrize(("bug", "check", "words"), BUGS, ids=lambda v: getattr(v, "__name__", v))
def test_a_classic_mistake_fails_with_its_hint(bug, check, words):
    report = grading.grade("coordinator", bug, seed=5, only=[check])
    assert report.failed() == [check], report.text()
    assert words in report.hint(check), report.text()


# The model check's random scenarios (votes, refusals, restarts) catch these as well (and
# NeverRedrivesAfterRestart, left out here: waiting out its redrive costs 9 s).
MODEL_CATCHES = [
    bugs.SendsBeforeLogging,
    bugs.AbortsAfterCommitTimeout,
    bugs.CommitsOnNo,
    bugs.CommitsOnMissingVote,
    bugs.DecidesOnFirstYes,
    bugs.ForgetsLogOnRestart,
    bugs.RedrivesOnlyCommits,
]


@pytest.mark.parametrize("bug", MODEL_CATCHES, ids=lambda b: b.__name__)
def test_the_model_check_catches_outcome_logging_and_redrive_mistakes(bug):
    report = grading.grade("coordinator", bug, seed=5, only=["model"])
    assert report.failed() == ["model"] and "the model check" in report.hint("model")


def test_every_bug_is_the_reference_with_one_rule_broken():
    assert len({b for b, _, _ in BUGS}) >= 10
    assert all(issubclass(b, TwoPhaseRules) and b is not TwoPhaseRules for b, _, _ in BUGS)
