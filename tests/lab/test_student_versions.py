"""The student versions of the lessons (paykit.lab.student, with nbgrader's own preprocessors):
solutions stubbed, graded cells locked, and, run top to bottom, exactly the graded cells fail,
each printing its hint, and nothing else does.

The runs execute every student notebook in its own kernel, STUDENT_JOBS at a time: a lesson
mostly waits on its servers (one uses about a third of a core), so four at once take about a
third of the time of one after the other on two cores."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

from paykit.lab import student

LESSONS = Path(__file__).resolve().parents[2] / "lessons"
NOTEBOOKS = student.lessons_in(LESSONS)
STUDENT_JOBS = int(os.environ.get("PAYKIT_STUDENT_JOBS", "4"))


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("student")
    assert student.main(["student", "--lessons", str(LESSONS), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def runs(student_dir) -> dict[str, student.StudentRun]:
    done = student.check_student_versions(student.lessons_in(student_dir), jobs=STUDENT_JOBS)
    return {run.path.name: run for run in done}


def test_the_command_writes_every_lesson_and_the_map(student_dir):
    assert [p.name for p in student.lessons_in(student_dir)] == [p.name for p in NOTEBOOKS]
    assert (student_dir / "README.md").read_text() == (LESSONS / "README.md").read_text()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_a_student_version_has_no_solutions_and_locked_checks(student_dir, path):
    source = nbformat.read(path, as_version=4)
    given = nbformat.read(student_dir / path.name, as_version=4)
    assert len(given.cells) == len(source.cells)
    for i, (ours, theirs) in enumerate(zip(source.cells, given.cells, strict=True)):
        if i in student.solution_cells(source):
            solution = ours.source.split(student.BEGIN)[1].split(student.END)[0].strip()
            assert student.BEGIN not in theirs.source and student.CODE_STUB in theirs.source
            assert solution not in theirs.source, f"cell {i} still holds its solution"
        elif i in student.graded_cells(source):
            assert theirs.metadata["nbgrader"]["locked"] and not theirs.metadata["editable"]
            assert theirs.source == ours.source
        else:
            assert theirs.source == ours.source
        assert theirs.get("outputs", []) == []


def test_a_solution_outside_an_answer_cell_is_refused():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"{student.BEGIN}\nx = 1")])
    assert "not an answer cell" in " ".join(student.format_problems(nb))
    with pytest.raises(RuntimeError):  # nbgrader's ClearSolutions refuses it too
        student.student_version(nb)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_a_student_version_fails_exactly_at_its_graded_cells(runs, path):
    run = runs[path.name]
    assert run.graded, f"{path.name} has no graded cell"
    assert run.problems == [], str(run)
    for i in run.graded:
        assert "✗" in run.failed[i] and student.HINT_MARK in run.failed[i]


# The lab sheets (lessons/labs) import their starter module from their own folder.
LAB_SHEETS = [
    LESSONS / "labs" / "lab_b_coordinator.ipynb",
    LESSONS / "labs" / "lab_c_idempotency.ipynb",
]


@pytest.mark.parametrize("path", LAB_SHEETS, ids=lambda p: p.name)
def test_a_lab_sheets_student_version_fails_exactly_at_its_graded_cells(tmp_path, path):
    for starter in path.parent.glob("*_starter.py"):
        (tmp_path / starter.name).write_text(starter.read_text())
    given = student.student_version(nbformat.read(path, as_version=4))
    for i in student.solution_cells(given):
        assert student.BEGIN not in given.cells[i].source
    nbformat.write(given, tmp_path / path.name)
    run = student.check_student_version(tmp_path / path.name)
    assert run.graded and run.problems == [], str(run)
    for i in run.graded:
        assert "✗" in run.failed[i] and student.HINT_MARK in run.failed[i]
