"""Student versions of the lessons, made with nbgrader's own preprocessors, and the check that
each one fails exactly at its graded cells.

The lessons in lessons/ are nbgrader source notebooks: an answer cell (nbgrader metadata
`solution: true`) holds the solution between `### BEGIN SOLUTION` and `### END SOLUTION`,
after a line that sets the answer to None; a graded cell (`grade: true`, with points) calls a
check that prints a hint when the answer is wrong. nbgrader's preprocessors, in the order
`nbgrader generate_assignment` runs them, lock the graded cells, replace each solution by the
stub, clear outputs and record checksums.

    write_student_versions(lessons_dir, out_dir)   every lesson's student version (+ the map)
    check_student_version(path)                    runs it: only its graded cells may fail,
                                                   each printing its hint
    paykit lessons student [--out DIR] [--check]   the same from the command line (make student)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from paykit.core.commandline import finish_parser

LESSONS_DIR = Path(__file__).resolve().parents[2] / "lessons"
LESSON_GLOB = "[0-9][0-9]_*.ipynb"
LABS_DIR, LAB_GLOB = "labs", "lab_*.ipynb"  # the lab sheets, in lessons/labs/, with starters
# nbgrader's default stub also raises NotImplementedError, which would make the answer cell fail
# too; the line before the solution already sets the answer to None, which the check explains.
CODE_STUB = "# YOUR CODE HERE"
HINT_MARK = "Hint:"  # what a failing check prints (paykit.lab.lessons.check_answer)
CELL_TIMEOUT_S = 120
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
if not LESSONS_DIR.is_dir():  # an installed wheel carries its own copy (paykit.packaged)
    from paykit import packaged

    try:
        LESSONS_DIR = packaged.lessons_dir()
    except FileNotFoundError:
        pass  # `paykit lessons student` says there are no lessons


def _config():
    from traitlets.config import Config

    config = Config()
    config.ClearSolutions.code_stub = {"python": CODE_STUB}
    return config


def student_version(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook a student gets: solutions stubbed, graded cells locked, outputs cleared."""
    try:
        from nbgrader import preprocessors as pp
    except ImportError as exc:
        raise ImportError(
            "student versions need nbgrader, in the course extra: pip install -e '.[course]'"
        ) from exc
    steps = [
        pp.LockCells,
        pp.ClearSolutions,
        pp.ClearOutput,
        pp.CheckCellMetadata,
        pp.ComputeChecksums,
        pp.ClearHiddenTests,
        pp.ClearMarkScheme,
        pp.ComputeChecksums,
        pp.CheckCellMetadata,
    ]
    nb, resources, config = nbformat.from_dict(nb), {}, _config()
    for step in steps:
        nb, resources = step(config=config).preprocess(nb, resources)
    return nb


def lessons_in(folder: Path) -> list[Path]:
    """The numbered lessons in a folder (NN_name.ipynb), in order."""
    return sorted(Path(folder).glob(LESSON_GLOB))


def labs_in(folder: Path) -> list[Path]:
    """The lab sheets under a lessons folder (labs/lab_*.ipynb), in order."""
    return sorted((Path(folder) / LABS_DIR).glob(LAB_GLOB))


def write_student_versions(lessons_dir: Path, out_dir: Path) -> list[Path]:
    """Writes the student version of every lesson in `lessons_dir` to `out_dir`, and of every lab
    sheet to `out_dir`/labs with the labs' starter modules (and copies the course map,
    README.md); returns the notebooks written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in lessons_in(lessons_dir):
        target = out_dir / path.name
        nbformat.write(student_version(nbformat.read(path, as_version=4)), target)
        written.append(target)
    for path in labs_in(lessons_dir):
        (out_dir / LABS_DIR).mkdir(exist_ok=True)
        target = out_dir / LABS_DIR / path.name
        nbformat.write(student_version(nbformat.read(path, as_version=4)), target)
        written.append(target)
    for starter in sorted((Path(lessons_dir) / LABS_DIR).glob("*_starter.py")):
        shutil.copyfile(starter, out_dir / LABS_DIR / starter.name)
    readme = Path(lessons_dir) / "README.md"
    if readme.exists():
        shutil.copyfile(readme, out_dir / "README.md")
    return written


def graded_cells(nb: nbformat.NotebookNode) -> dict[int, str]:
    """Index -> grade_id of every graded cell (nbgrader `grade: true`)."""
    return {
        i: cell.metadata["nbgrader"]["grade_id"]
        for i, cell in enumerate(nb.cells)
        if cell.metadata.get("nbgrader", {}).get("grade")
    }


def solution_cells(nb: nbformat.NotebookNode) -> dict[int, str]:
    """Index -> grade_id of every answer cell (nbgrader `solution: true`)."""
    return {
        i: cell.metadata["nbgrader"]["grade_id"]
        for i, cell in enumerate(nb.cells)
        if cell.metadata.get("nbgrader", {}).get("solution")
    }


def format_problems(nb: nbformat.NotebookNode) -> list[str]:
    """What keeps a lesson from being a valid nbgrader source notebook with checked exercises."""
    problems = []
    graded, answers = graded_cells(nb), solution_cells(nb)
    if not graded or not answers:
        problems.append("needs at least one answer cell and one graded cell")
    ids = [c.metadata["nbgrader"].get("grade_id") for c in nb.cells if "nbgrader" in c.metadata]
    if len(ids) != len(set(ids)):
        problems.append(f"grade ids repeat: {sorted(ids)}")
    for i, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader")
        if BEGIN in cell.source and i not in answers:
            problems.append(f"cell {i} has a solution region but is not an answer cell")
        if i in answers and (BEGIN not in cell.source or END not in cell.source):
            problems.append(f"answer cell {i} has no {BEGIN} ... {END} region")
        if meta is not None and meta.get("schema_version") != 3:
            problems.append(f"cell {i}: nbgrader metadata must be schema version 3")
        if i in graded and (not meta.get("points") or "check_" not in cell.source):
            problems.append(f"graded cell {i} needs points and a check_... call")
    return problems


@dataclass
class StudentRun:
    """What running one student version showed."""

    path: Path
    graded: dict[int, str]  # index -> grade_id
    failed: dict[int, str] = field(default_factory=dict)  # index -> what the cell printed
    elapsed_s: float = 0.0

    @property
    def problems(self) -> list[str]:
        """What differs from: exactly the graded cells failed, each printing its hint."""
        found = [
            f"cell {i} ({self.graded.get(i, 'not graded')}) failed: {text[-300:]}"
            for i, text in self.failed.items()
            if i not in self.graded
        ]
        found += [
            f"graded cell {i} ({gid}) passed"
            for i, gid in self.graded.items()
            if i not in self.failed
        ]
        found += [
            f"graded cell {i} ({gid}) failed without a hint: {self.failed[i][-300:]}"
            for i, gid in self.graded.items()
            if i in self.failed and HINT_MARK not in self.failed[i]
        ]
        return found

    def __str__(self) -> str:
        verdict = "ok" if not self.problems else "PROBLEMS"
        head = (
            f"{verdict}: {self.path.name} ({self.elapsed_s:.1f} s): graded cells "
            f"{', '.join(self.graded.values())} failed with their hints"
        )
        return head if not self.problems else "\n  ".join([head, *self.problems])


def _cell_text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type == "error":
            parts.append(f"{out.ename}: {out.evalue}")
    return "".join(parts)


def run_notebook(path: Path, *, timeout_s: int = CELL_TIMEOUT_S) -> nbformat.NotebookNode:
    """Executes the notebook at `path` top to bottom in this Python's kernel, going on past
    errors, in the notebook's folder; returns it with its outputs."""
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    km = KernelManager(kernel_name="python3")
    # This interpreter's kernel, whatever kernels the machine has installed (like nbval's
    # --nbval-current-env).
    km.kernel_cmd = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    client = NotebookClient(
        nb,
        km=km,
        timeout=timeout_s,
        allow_errors=True,
        resources={"metadata": {"path": str(Path(path).parent)}},
    )
    client.execute()
    return nb


def check_student_version(path: Path) -> StudentRun:
    """Runs a student version; its problems list what differs from "exactly the graded cells
    fail, each printing its hint"."""
    started = time.monotonic()
    nb = run_notebook(path)
    run = StudentRun(Path(path), graded_cells(nb))
    for i, cell in enumerate(nb.cells):
        if any(out.output_type == "error" for out in cell.get("outputs", [])):
            run.failed[i] = _cell_text(cell)
    run.elapsed_s = time.monotonic() - started
    return run


# What makes a lesson slow: server restarts, crashes and whole chaos runs (a rough count).
SLOW_CALLS = {
    "restart(": 1,
    "stop_server(": 1,
    "arm(": 1,
    "race_payments(": 2,
    "make_traffic(": 2,
    "crash_coordinator(": 3,
    "run_chaos(": 6,
    "sweep_prepare_timeout(": 4,  # a gateway restart per timeout
    "payers_curve(": 3,  # two clusters' users registered and driven
}


def _cost(path: Path) -> int:
    text = "".join(
        c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"
    )
    return sum(weight * text.count(call) for call, weight in SLOW_CALLS.items())


def check_student_versions(paths: list[Path], *, jobs: int = 1) -> list[StudentRun]:
    """check_student_version for each path, `jobs` at a time (each in its own kernel), the
    slowest-looking first so the last one to finish is a short one; in the order given."""
    slowest_first = sorted(paths, key=_cost, reverse=True)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        done = dict(zip(slowest_first, pool.map(check_student_version, slowest_first), strict=True))
    return [done[path] for path in paths]


def build_parser() -> argparse.ArgumentParser:
    """`paykit lessons ACTION`: for now the one action, student."""
    parser = argparse.ArgumentParser(prog="paykit lessons", description="The lessons' tools.")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser(
        "student",
        help="write the student versions (make student)",
        description="Write the student versions of the lessons (solutions replaced by a stub, "
        "graded cells locked, outputs cleared) with nbgrader's own preprocessors.",
    )
    p.add_argument("--lessons", type=Path, default=LESSONS_DIR, help="the source lessons")
    p.add_argument("--out", type=Path, default=Path("student"), help="where (default student/)")
    p.add_argument(
        "--check",
        action="store_true",
        help="then run each one: exactly its graded cells must fail, each with its hint",
    )
    p.add_argument("--jobs", type=int, default=1, help="student versions run at once (--check)")
    return finish_parser(parser)


def main(argv: list[str]) -> int:
    """`paykit lessons student [--out DIR] [--check]`: 0 when written (and, with --check, when
    every student version failed exactly at its graded cells), 1 if not, 2 on bad arguments."""
    args = build_parser().parse_args(argv)
    if not lessons_in(args.lessons):
        print(f"paykit lessons: error: no lessons in {args.lessons}", file=sys.stderr)
        return 2
    written = write_student_versions(args.lessons, args.out)
    for path in written:
        graded = graded_cells(nbformat.read(path, as_version=4))
        print(f"[lessons] {path} ({len(graded)} graded cells)")
    if not args.check:
        return 0
    runs = check_student_versions(written, jobs=args.jobs)
    for run in runs:
        print(run)
    return 1 if any(run.problems for run in runs) else 0
