"""The lessons are committed clean (no outputs, no execution counts, no machine paths), keep their
shape (a reading, an experiment, exercises with graded checks, a stopped cluster at the end), link
only to files that exist, and are all on the course map (lessons/README.md)."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from paykit.lab.student import format_problems, graded_cells, solution_cells

ROOT = Path(__file__).resolve().parents[2]
LESSONS = ROOT / "lessons"
NOTEBOOKS = sorted(LESSONS.glob("[0-9][0-9]_*.ipynb"))
LAB_SHEETS = sorted((LESSONS / "labs").glob("lab_*.ipynb"))  # the labs' sheets
# Absolute paths of a machine (a home folder, a temp folder, this checkout) must not leak into a
# lesson.
MACHINE_PATH = re.compile(r"(/home/|/Users/|/tmp/|/work/|/root/|[A-Z]:\\\\)")
CELL_LINES_MAX = 16  # cells stay short: the logic lives in paykit
READING_WORDS_MIN = 800  # a chapter, not a caption (the lessons had 130-300 words before)
MAP_ROW = re.compile(r"^\| (\d+) \| (.+?) \| .+? \| (.+?) \| (\d+) \|$", re.M)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def course_map() -> dict[int, tuple[str, str, int]]:
    """Lesson number -> (its cell in the map, prerequisites, minutes)."""
    text = (LESSONS / "README.md").read_text()
    return {
        int(n): (cell, before, int(minutes)) for n, cell, before, minutes in MAP_ROW.findall(text)
    }


def test_the_course_map_lists_fifteen_lessons_and_every_notebook():
    lessons = course_map()
    assert sorted(lessons) == list(range(1, 16))
    written = {int(p.name[:2]): p.name for p in NOTEBOOKS}
    for number, (cell, before, minutes) in lessons.items():
        if number in written:
            assert f"]({written[number]})" in cell, f"the map does not link {written[number]}"
        else:
            assert "(coming)" in cell, f"lesson {number} has no notebook and is not marked coming"
        assert 10 <= minutes <= 60 and (before == "-" or re.fullmatch(r"[\d, ]+", before))
        assert all(int(b) < number for b in re.findall(r"\d+", before)), "prerequisites come first"
    assert len(written) == 15 and set(written) <= set(lessons)


@pytest.mark.parametrize("path", [*NOTEBOOKS, *LAB_SHEETS], ids=lambda p: p.name)
def test_no_outputs_no_counts_no_widget_state(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], (
                f"{path.name} cell {i} has outputs: clear them before committing"
            )
            assert cell.execution_count is None, f"{path.name} cell {i} has an execution count"
    assert "widgets" not in nb.metadata, f"{path.name} stores widget state; clear it"
    assert nb.metadata.kernelspec.name == "python3"


@pytest.mark.parametrize("path", [*NOTEBOOKS, *LAB_SHEETS], ids=lambda p: p.name)
def test_no_machine_paths(path):
    found = MACHINE_PATH.findall(path.read_text())
    assert not found, f"{path.name} mentions machine paths {found}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_lesson_shape(path):
    """Opens with what you will learn, reads like a chapter, short cells, an experiment, graded
    exercises in nbgrader's format, ends by stopping what it started."""
    nb = nbformat.read(path, as_version=4)
    first, code = nb.cells[0], [c for c in nb.cells if c.cell_type == "code"]
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert first.cell_type == "markdown" and "You will learn" in first.source
    assert len(markdown.split()) >= READING_WORDS_MIN, f"{path.name}: the reading is too short"
    assert "How real systems do it" in markdown or "how real systems" in markdown.lower()
    assert max(len(c.source.splitlines()) for c in code) <= CELL_LINES_MAX
    assert "## Exercise" in markdown and "Experiment" in markdown
    assert format_problems(nb) == [], format_problems(nb)
    assert len(graded_cells(nb)) >= 1
    ends = code[-1].source
    assert ".stop()" in ends or "servers_running_under(" in ends, (
        f"{path.name} must end by stopping what it started"
    )


@pytest.mark.parametrize(
    "path", [*NOTEBOOKS, *LAB_SHEETS, LESSONS / "README.md"], ids=lambda p: p.name
)
def test_links_point_at_files_that_exist(path):
    text = (
        path.read_text()
        if path.suffix == ".md"
        else "\n".join(
            c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown"
        )
    )
    local = [t for t in LINK.findall(text) if "://" not in t]
    missing = [t for t in local if not (path.parent / t).exists()]
    assert not missing, f"{path.name} links to missing files: {missing}"


LAB_CELL_LINES_MAX = 24  # a lab sheet's cells stay short
LAB_ANSWER_LINES_MAX = 40  # an answer cell: one method (Lab A) or a class of a few (B, C)
LAB_READING_WORDS_MIN = 800


@pytest.mark.parametrize("path", LAB_SHEETS, ids=lambda p: p.name)
def test_lab_sheet_shape(path):
    """A lab sheet states its rules and how real systems follow them, has an answer cell per
    rule and a graded cell that runs the grader, names the command that grades the whole lab,
    and its starter module exists; the course map lists it."""
    nb = nbformat.read(path, as_version=4)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert nb.cells[0].cell_type == "markdown" and "You will learn" in nb.cells[0].source
    assert len(markdown.split()) >= LAB_READING_WORDS_MIN, f"{path.name}: the reading is short"
    assert "How real systems do it" in markdown and "Experiment" in markdown
    answers = set(solution_cells(nb))
    for i, c in enumerate(nb.cells):
        if c.cell_type == "code":  # an answer cell may hold a small class (Labs B and C)
            limit = LAB_ANSWER_LINES_MAX if i in answers else LAB_CELL_LINES_MAX
            assert len(c.source.splitlines()) <= limit, f"{path.name} cell {i} is long"
    assert format_problems(nb) == [], format_problems(nb)
    graded = graded_cells(nb)
    assert graded and all(
        "grade(" in nb.cells[i].source or "check_lab(" in nb.cells[i].source for i in graded
    )
    assert "paykit lab grade " in markdown
    starters = [t for t in LINK.findall(markdown) if t.endswith("_starter.py")]
    assert starters and all((path.parent / t).exists() for t in starters)
    assert f"](labs/{path.name})" in (LESSONS / "README.md").read_text(), "not on the course map"
