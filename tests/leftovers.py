"""A pytest plugin: a run fails if it leaves paykit-* folders in the temp dir.

The run gets a temp dir of its own (TMPDIR and tempfile.tempdir, inherited by every server,
kernel and xdist worker it starts), so folders other runs on the machine make are not counted;
run state ($PAYKIT_HOME, e.g. a lesson's kept chaos data) goes there too, not into the checkout.
At the end the controller lists the paykit-* folders left there, fails the run if there are
any, and removes the run's temp dir. pytest's own tmp_path folders stay where they always were
(PYTEST_DEBUG_TEMPROOT). tests/conftest.py loads it; tests/test_leftovers.py checks it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

PREFIX = "paykit-"


def pytest_configure(config) -> None:
    if hasattr(config, "workerinput"):  # an xdist worker: the controller set TMPDIR for it
        return
    os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", tempfile.gettempdir())
    run_tmp = tempfile.mkdtemp(prefix="pytest-run-")
    os.environ["TMPDIR"] = run_tmp
    tempfile.tempdir = run_tmp
    os.environ["PAYKIT_HOME"] = os.path.join(run_tmp, "state")
    config.stash[RUN_TMP] = Path(run_tmp)


def pytest_sessionfinish(session, exitstatus) -> None:
    run_tmp = session.config.stash.get(RUN_TMP, None)
    if run_tmp is None:
        return
    left = sorted(p.name for p in run_tmp.iterdir() if p.name.startswith(PREFIX))
    shutil.rmtree(run_tmp, ignore_errors=True)
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        text = f"this run left {len(left)} {PREFIX}* temp folders: {', '.join(left[:5])}"
        if reporter is not None:
            reporter.write_line(f"\nFAILED (leftovers): {text}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


RUN_TMP = pytest.StashKey[Path]()
