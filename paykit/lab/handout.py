"""`paykit lessons`: the lessons for a student who installed paykit with pip.

    paykit lessons copy DIR [--force]   copies the lessons (the notebooks and the course map,
                                        README.md) into DIR; refuses to overwrite a file there
                                        unless --force; prints each file it wrote
    paykit lessons open [DIR] [ARGS]    copies them into DIR (default ./paykit-lessons) unless it
                                        has lessons already, then starts JupyterLab on DIR with
                                        paykit's Jupyter settings (no news pop-up, no nbgrader
                                        panels); ARGS go to JupyterLab (e.g. --no-browser)
    paykit lessons student ...          the student versions (paykit.lab.student, for teachers)

The lessons need no other files: the seed accounts are package data (paykit.packaged), and
each lesson's LocalCluster makes its own folders.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
from pathlib import Path

from paykit import packaged
from paykit.core.commandline import finish_parser

LESSON_GLOB = "[0-9][0-9]_*.ipynb"
DEFAULT_DIR = "paykit-lessons"


LAB_GLOBS = ("labs/lab_*.ipynb", "labs/*_starter.py")  # a lab sheet imports its starter


def lesson_files(source: Path | None = None) -> list[Path]:
    """The files a student gets: the numbered notebooks, the course map, the labs' sheets and
    starters (in labs/, as in the checkout, so the course map's links work)."""
    source = source or packaged.lessons_dir()
    labs = [p for pattern in LAB_GLOBS for p in sorted(source.glob(pattern))]
    return [*sorted(source.glob(LESSON_GLOB)), source / "README.md", *labs]


def copy_lessons(target: Path, *, force: bool = False, source: Path | None = None) -> list[Path]:
    """Copies the lessons into `target` (made if missing) and returns the files written. Raises
    FileExistsError, naming them, when files are there already and `force` is false; then
    nothing is written."""
    target = Path(target)
    source = source or packaged.lessons_dir()
    files = lesson_files(source)
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{str(target)[:200]} is a file, not a folder")
    there = [target / f.relative_to(source) for f in files]
    there = [p for p in there if p.exists()]
    if there and not force:
        names = ", ".join(p.name for p in there[:3]) + (" ..." if len(there) > 3 else "")
        raise FileExistsError(
            f"{len(there)} of the lessons are in {str(target)[:200]} already ({names}); "
            "nothing was copied. --force overwrites them (your answers in them are lost)"
        )
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for f in files:
        out = target / f.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, out)
        written.append(out)
    return written


def _copy(args) -> int:
    try:
        written = copy_lessons(Path(args.dir), force=args.force)
    except (FileExistsError, NotADirectoryError) as err:
        print(f"paykit lessons: error: {err}", file=sys.stderr)
        return 1
    for path in written:
        print(f"[lessons] wrote {path}")
    print(f"[lessons] {len(written)} files; open them with: paykit lessons open {args.dir}")
    return 0


def jupyter_command(folder: Path, extra: list[str]) -> tuple[list[str], dict[str, str]]:
    """The command and environment that start JupyterLab on `folder`, as `make lab` does:
    JUPYTER_CONFIG_PATH adds paykit's settings; as root (a container) Jupyter wants
    --allow-root."""
    config = str(packaged.jupyter_config_dir())
    path = os.pathsep.join(p for p in (config, os.environ.get("JUPYTER_CONFIG_PATH")) if p)
    command = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={folder}", *extra]
    if os.geteuid() == 0:
        command.append("--allow-root")
    return command, {**os.environ, "JUPYTER_CONFIG_PATH": path}


def _open(args, extra: list[str]) -> int:
    if importlib.util.find_spec("jupyterlab") is None:
        print(
            "paykit lessons: error: JupyterLab is not installed; it comes with the lessons "
            "extra: pip install 'paykit[lessons]'",
            file=sys.stderr,
        )
        return 2
    folder = Path(args.dir).resolve()
    if folder.is_dir() and any(folder.glob(LESSON_GLOB)):
        print(f"[lessons] opening your copy in {folder} (paykit lessons copy --force refreshes it)")
    else:
        code = _copy(argparse.Namespace(dir=str(folder), force=False))
        if code:
            return code
    command, env = jupyter_command(folder, extra)
    print("[lessons] starting JupyterLab; Ctrl+C stops it", flush=True)
    os.execve(sys.executable, command, env)  # JupyterLab takes over this process (and Ctrl+C)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paykit lessons",
        description="The lessons: copy them, open them, or (teachers) "
        "write their student versions.",
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser("copy", help="copy the lessons into a folder of your choice")
    p.add_argument("dir", metavar="DIR", help="the folder (made if missing)")
    p.add_argument("--force", action="store_true", help="overwrite lessons already there")
    p = sub.add_parser(
        "open",
        help="copy the lessons if needed and start JupyterLab on them",
        description="Copy the lessons into DIR unless it has them, then start JupyterLab there "
        "with paykit's settings (no news pop-up). Other arguments go to JupyterLab.",
    )
    p.add_argument(
        "dir", metavar="DIR", nargs="?", default=DEFAULT_DIR, help=f"default ./{DEFAULT_DIR}"
    )
    sub.add_parser("student", help="write the student versions (teachers; needs nbgrader)")
    return finish_parser(parser)


def main(argv: list[str]) -> int:
    if argv[:1] == ["student"]:  # its own options (paykit lessons student --help)
        from paykit.lab import student

        return student.main(argv)
    args, extra = build_parser().parse_known_args(argv)
    if args.action == "open":
        return _open(args, extra)
    if extra:
        build_parser().error(f"unrecognized arguments: {' '.join(extra)[:80]}")
    return _copy(args)
