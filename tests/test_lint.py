"""The code stays ruff-clean and ruff-formatted (rules in pyproject.toml), so style never drifts."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True
    )


def test_ruff_is_clean():
    result = ruff("check", "paykit", "tests")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_applied():
    result = ruff("format", "--check", "paykit", "tests")
    assert result.returncode == 0, "run `ruff format paykit tests`:\n" + result.stdout
