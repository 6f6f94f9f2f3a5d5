"""The participant lab's grader can fail: each buggy participant (a classic mistake, in
tests/lab/labs/participants.py) fails the check meant to catch it, with the hint naming the rule
it broke; the kit's own participant passes the whole grade; a student's class written over the
store alone passes the checks on real banks; the starter fails with NotImplementedError.

One cluster serves the whole file: its banks load `Switch`, which plays whichever class the test
names (a file it reads on every call), and the lab's shared bench is that cluster."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import pytest

from paykit.bank.participant import LedgerParticipant
from paykit.core.errors import InvalidInput
from paykit.lab import grading
from paykit.lab.cluster import LocalCluster
from paykit.lab.labs import participant as lab
from paykit.lab.labs.participant_bench import Bench

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the banks import the classes as tests.lab.labs.participants
    sys.path.insert(0, str(ROOT))
from tests.lab.labs import participants as p  # noqa: E402


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lab-participant")
    choice = folder / "playing.txt"
    choice.write_text("LedgerParticipant")
    mp = pytest.MonkeyPatch()
    mp.setenv(p.SWITCH_FILE_ENV, str(choice))
    mp.syspath_prepend(str(ROOT))
    b = Bench(p.Switch, 1, folder)
    b.renew_after_failure = False  # one cluster for the file (see the order of the tests)
    try:
        yield b, choice
    finally:
        b.close()
        mp.undo()


@pytest.fixture
def playing(bench, monkeypatch):
    """play(cls): the bench's banks play `cls` from now on; grade() uses the bench."""
    b, choice = bench
    monkeypatch.setattr(lab, "LAB", dataclasses.replace(lab.LAB, shared=lambda *a: nullcontext(b)))

    def play(cls) -> None:
        choice.write_text(cls.__name__)

    return play


def test_the_kits_participant_passes_the_whole_grade(playing):
    # First, on the fresh cluster (the buggy classes below leave broken payments behind).
    playing(LedgerParticipant)
    report = grading.grade("participant", p.Switch, seed=3)
    assert report.passed and report.score == report.out_of, report.text()
    assert {c.name for c in lab.CHECKS} >= {
        "crash_after_hold_before_commit",
        "crash_batch_between_legs",
        "crash_after_vote_yes_before_reply",
        "crash_after_reply_yes",
        "crash_after_commit_before_ack",
        "chaos",
        "model",
    }


def test_a_students_class_over_the_store_passes_the_checks_on_real_banks(playing):
    # Its model check runs in the lab sheet (lessons/labs), whose solution is this class.
    playing(p.StudentParticipant)
    rest = [c.name for c in lab.CHECKS if c.name not in ("chaos", "model")]
    report = grading.grade("participant", p.Switch, seed=2, only=rest)
    assert report.passed, report.text()


@pytest.mark.parametrize(
    ("buggy", "check", "words"), p.BUGGY, ids=[f"{c.__name__}-{n}" for c, n, _ in p.BUGGY]
)
def test_a_classic_mistake_fails_its_check_with_the_rule_it_broke(playing, buggy, check, words):
    # Each fails at its own look, before anything waits on the broken payments of the others.
    playing(buggy)
    report = grading.grade("participant", p.Switch, seed=1, only=[check])
    assert report.failed() == [check], report.text()
    assert words in report.hint(check), report.text()


def test_the_starter_fails_with_not_implemented(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "lessons" / "labs"))
    report = grading.grade("participant", "participant_starter:MyParticipant", only=["model"])
    assert report.failed() == ["model"] and "NotImplementedError" in report.hint("model")


@pytest.mark.parametrize(
    ("participant", "message"),
    [
        ("no_colon", "module:Class"),
        ("__main__:Mine", "%%writefile"),
        ("no_such_module_zz:Mine", "cannot find module"),
    ],
)
def test_a_cluster_refuses_a_participant_its_banks_could_not_import(participant, message):
    with pytest.raises(InvalidInput, match=message):
        LocalCluster(participant=participant)


def test_a_cluster_puts_the_participants_folder_on_the_banks_path(tmp_path):
    cluster = LocalCluster(participant=p.Switch, data_dir=tmp_path)
    assert cluster.participant == "tests.lab.labs.participants:Switch"
    assert cluster._env()["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT)


def test_a_class_from_a_notebook_is_refused_before_any_check_runs():
    in_notebook = type("MyParticipant", (p.StudentParticipant,), {"__module__": "__main__"})
    with pytest.raises(grading.GradeError, match="%%writefile mylab.py"):
        grading.grade("participant", in_notebook, only=["model"])


def test_the_command_grades_a_copy_of_the_starter_in_the_students_folder(tmp_path):
    (tmp_path / "mylab.py").write_text((ROOT / "lessons/labs/participant_starter.py").read_text())
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "paykit",
            "lab",
            "grade",
            "participant",
            "mylab:MyParticipant",
            "--check",
            "model",
            "--seed",
            "7",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "FAIL model" in done.stdout and "NotImplementedError" in done.stdout
    assert "--seed 7" in done.stdout
