"""Each make target installs only what it needs (`make -n -B` prints the commands it would run):
`make demo` and `make up` the core alone, `make lab` the lessons extra, `make test` everything the
tests use; each set has its own stamp, so it is installed once."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def dry_run(target: str) -> str:
    return subprocess.run(
        ["make", "-n", "-B", "--no-print-directory", "-C", str(ROOT), target],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.mark.parametrize(
    ("target", "what", "stamp"),
    [
        ("demo", "-e .", ".installed-core"),
        ("up", "-e .", ".installed-core"),
        ("lab", "-e '.[lessons]'", ".installed-lessons"),
        ("test", "-e '.[lessons,course,dev]'", ".installed-test"),
    ],
)
def test_a_target_installs_what_it_needs(target, what, stamp):
    out = dry_run(target)
    (line,) = [line for line in out.splitlines() if re.search(r"pip install .*-e ", line)]
    assert line.endswith(what), line
    assert f"touch .venv/{stamp}" in out
