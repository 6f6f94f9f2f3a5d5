"""The leftovers check (tests/leftovers.py) fails a run that leaves paykit-* temp folders, and
passes one that cleans up: each run here is a real pytest run in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

LEAVES = """
import tempfile

def test_leaves_a_folder():
    tempfile.mkdtemp(prefix="paykit-cluster-")
"""
CLEANS = """
import tempfile

def test_cleans_up():
    with tempfile.TemporaryDirectory(prefix="paykit-cluster-"):
        pass
"""


def run_pytest(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_it.py").write_text(body)
    env = {**os.environ, "PYTHONPATH": str(TESTS), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "leftovers", "-p", "no:cacheprovider", "-q"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_run_that_leaves_a_folder_fails(tmp_path):
    result = run_pytest(tmp_path, LEAVES)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 passed" in result.stdout  # the test itself passed: the check failed the run
    assert "left 1 paykit-* temp folders: paykit-cluster-" in result.stdout


def test_a_run_that_cleans_up_passes(tmp_path):
    result = run_pytest(tmp_path, CLEANS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "leftovers" not in result.stdout
