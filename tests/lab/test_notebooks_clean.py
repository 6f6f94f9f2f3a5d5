"""The lessons are committed clean (no outputs, no execution counts, no machine paths) and keep
their shape."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

LESSONS = Path(__file__).resolve().parents[2] / "lessons"
NOTEBOOKS = sorted(LESSONS.glob("[0-9][0-9]_*.ipynb"))
# Absolute paths of a machine (a home folder, a temp folder, this checkout) must not leak into a
# lesson.
MACHINE_PATH = re.compile(r"(/home/|/Users/|/tmp/|/work/|/root/|[A-Z]:\\\\)")
CELL_LINES_MAX = 16  # cells stay short: the logic lives in paykit


def test_the_nine_lessons_are_there():
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(1, 10)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_machine_paths(path):
    found = MACHINE_PATH.findall(path.read_text())
    assert not found, f"{path.name} mentions machine paths {found}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_lesson_shape(path):
    """Opens with what you will learn, short cells, an exercise with a check, ends by stopping the
    cluster."""
    nb = nbformat.read(path, as_version=4)
    first, code = nb.cells[0], [c for c in nb.cells if c.cell_type == "code"]
    assert first.cell_type == "markdown" and "You will learn" in first.source
    assert max(len(c.source.splitlines()) for c in code) <= CELL_LINES_MAX
    assert any("## Exercise" in c.source for c in nb.cells if c.cell_type == "markdown")
    assert any("check_answer(" in c.source for c in code)
    ends = code[-1].source
    assert ".stop()" in ends or "servers_running_under(" in ends, (
        f"{path.name} must end by stopping what it started"
    )
