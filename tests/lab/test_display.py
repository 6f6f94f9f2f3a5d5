"""What lessons show: notebook views (_repr_html_) of the kit's objects, table(), and Progress,
outside a notebook and inside a real kernel (as JupyterLab and nbval run it)."""

from __future__ import annotations

import sys
from collections import Counter

import nbformat
import pytest

from paykit.client.models import Balance, Payment
from paykit.client.outbox import Entry
from paykit.core.errors import InProgress
from paykit.lab.chaos import ChaosConfig, ChaosReport
from paykit.lab.check import Report
from paykit.lab.display import Progress, table

PAYMENT = Payment("5f0c2a91deadbeef", "succeeded", "BankA", "ada-acct", "BankB", "bob", 1250)
ENTRY = Entry(3, "a1b2c3d4", "key", "req", "BankB", "bob", 2000, "queued", False, 0, 0)


def test_objects_show_as_small_tables_with_amounts_as_text():
    html = PAYMENT._repr_html_()
    assert "<table>" in html and "12.50" in html and "5f0c2a91" in html
    assert "deadbeef" not in html  # short ids: what a person types
    assert "20.00" in ENTRY._repr_html_() and "a1b2c3d4" in ENTRY._repr_html_()
    assert "80.00" in Balance("BankA", "ada-acct", 10_000, 2_000, 8_000)._repr_html_()
    evil = Payment("x", "failed", "BankA", "<script>", "BankB", "b", 1, failure_reason="<b>")
    assert "<script>" not in evil._repr_html_() and "&lt;script&gt;" in evil._repr_html_()


def test_reports_show_each_invariant_and_the_verdict():
    report = Report()
    report.add("money conserved", True, "total 5 == opened 5")
    report.add("nothing in doubt", False, "1 prepared")
    html = report._repr_html_()
    assert "violated: nothing in doubt" in html and "✓" in html and "✗" in html
    chaos = ChaosReport(ChaosConfig(seed=7), data_dir=None, invariants=report)
    chaos.faults, chaos.intents = [], []
    html = chaos._repr_html_()
    assert "seed 7: FAIL" in html and "violated" in html


def test_table_has_a_row_per_object_errors_included():
    frame = table([PAYMENT, ENTRY, InProgress("still running")])
    assert len(frame) == 3 and frame.loc[0, "amount"] == "12.50"
    assert frame.loc[2, "status"] == "error" and frame.loc[2, "reason"] == InProgress.reason
    assert list(table([]).columns) == []


def test_progress_prints_each_line_outside_a_notebook(capsys):
    with Progress("chaos", expected_s=2) as progress:
        progress("[chaos] t=1.0s 10 done")
    out = capsys.readouterr().out.splitlines()
    assert "10 done" in out[0] and "chaos: 0.0 s of about 2 s" in out[0]
    assert "done in" in out[-1] and out[-1].startswith("[" + "#" * 24 + "]")


PROGRESS_CELL = """
import time
from paykit.lab import Progress
with Progress("a long cell", expected_s=1.0) as progress:
    for i in range(3):
        progress(f"step {i}")
        time.sleep(0.3)
"""


def test_progress_updates_one_display_in_a_kernel(tmp_path):
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(PROGRESS_CELL)])
    km = KernelManager(kernel_name="python3")
    km.kernel_cmd = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    NotebookClient(nb, km=km, timeout=60).execute()
    outputs = nb.cells[0].outputs
    kinds = Counter(o.output_type for o in outputs)
    # one display, updated in place: no printed lines, and it ends done with the last line
    assert kinds == {"display_data": 1}, outputs
    shown = outputs[0].data
    assert "<progress" in shown["text/html"] and 'value="1.000"' in shown["text/html"]
    assert "done in" in shown["text/plain"] and "step 2" in shown["text/plain"]


@pytest.mark.parametrize("expected_s", [0, -1])
def test_progress_without_an_estimate_does_not_divide_by_zero(capsys, expected_s):
    with Progress("x", expected_s=expected_s) as progress:
        progress("a line")
    assert "done in" in capsys.readouterr().out
