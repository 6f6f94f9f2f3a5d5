"""The payment form in a real browser: JupyterLab on a copy of lessons/, headless Chromium driven
by Playwright.

Opens lesson 12, runs it up to the form, fills the form, clicks Pay and waits for the success
message.
Needs the Debian package `chromium` (/usr/bin/chromium) and the `playwright` Python package (no
`playwright install`: the system browser is used). Without them the test is skipped, saying why.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest

from paykit.lab.lessons import wait_until

CHROMIUM = Path(os.environ.get("PAYKIT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LESSONS = Path(__file__).resolve().parents[2] / "lessons"
LESSON = "12_payment_form.ipynb"
JUPYTER_CONFIG = Path(__file__).resolve().parents[2] / "jupyter-config"  # what `make lab` uses
LAB_READY_S = 60.0
UI_TIMEOUT_MS = 120_000  # first load of JupyterLab, a kernel and a cluster on 2 busy cores


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def form_cell_index() -> int:
    nb = nbformat.read(LESSONS / LESSON, as_version=4)
    return next(i for i, c in enumerate(nb.cells) if "form" in c.metadata.get("tags", []))


@pytest.fixture
def lab(tmp_path):
    """JupyterLab serving a copy of lessons/ on a free port with a token; yields (base url,
    token)."""
    root = tmp_path / "lessons"
    shutil.copytree(LESSONS, root, ignore=shutil.ignore_patterns(".paykit", ".ipynb_checkpoints"))
    port, token = free_port(), secrets.token_hex(16)
    log = open(tmp_path / "lab.log", "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            *(["--allow-root"] if os.geteuid() == 0 else []),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=root,
        env={
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
            "JUPYTER_CONFIG_PATH": str(JUPYTER_CONFIG),
        },
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(
                f"jupyter lab exited:\n{(tmp_path / 'lab.log').read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as reply:
                return reply.status == 200
        except (urllib.error.URLError, OSError):
            return False

    try:
        wait_until(up, LAB_READY_S, what="JupyterLab answering", every_s=0.5)
        yield base, token
    finally:
        if proc.poll() is None:
            # the server, and with it the kernel and the lesson's cluster
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


@pytest.fixture
def playwright_api():
    """Playwright's sync API, or a skip that says what is missing (checked before JupyterLab
    starts)."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"Chromium not found at {CHROMIUM}: install the Debian package `chromium` (apt-get "
            "install "
            "chromium) to run the browser test"
        )
    try:
        from playwright import sync_api
    except ImportError:
        pytest.skip("the playwright Python package is not installed: pip install -e '.[dev]'")
    return sync_api


def test_pay_with_the_form_in_jupyterlab(playwright_api, lab, tmp_path):
    expect, sync_playwright = playwright_api.expect, playwright_api.sync_playwright
    base, token = lab
    expect.set_options(timeout=UI_TIMEOUT_MS)  # assertions have their own timeout (5 s by default)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(UI_TIMEOUT_MS)
            page.goto(f"{base}/lab/tree/{LESSON}?token={token}")
            after_form = page.locator(".jp-NotebookPanel:visible .jp-Notebook .jp-Cell").nth(
                form_cell_index() + 1
            )
            expect(after_form).to_be_visible()
            # Select the cell after the form, then Run ▸ Run All Above Selected Cell (the cells
            # after the
            # form drive it from code and stop the cluster; here a person uses the form).
            # JupyterLab may still be settling (kernel starting, first cell made active): click
            # until the
            # kernel is idle and our cell is the active one.
            expect(page.locator("#jp-main-statusbar")).to_contain_text(
                re.compile(r"Python 3.*Idle")
            )
            after_form.locator(".jp-InputPrompt").click()
            expect(after_form).to_have_class(re.compile(r"\bjp-mod-active\b"))
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Above Selected Cell").click()
            recipient = page.locator(".paykit-form-recipient input")
            expect(recipient).to_be_visible()
            expect(page.locator(".paykit-form-balance")).to_contain_text("1000.00")
            page.locator(".paykit-form-bank select").select_option("BankB")
            recipient.fill("recipient123")
            page.locator(".paykit-form-amount input").fill("12.50")
            page.locator("button.paykit-form-pay-button").click()
            expect(page.locator(".paykit-form-ok")).to_contain_text(
                "Payment succeeded: 12.50 to BankB/recipient123"
            )
            expect(page.locator(".paykit-form-balance")).to_contain_text("987.50")
        except Exception:
            # what the browser showed, for the report
            page.screenshot(path=str(tmp_path / "lab-failure.png"))
            raise
        finally:
            browser.close()
