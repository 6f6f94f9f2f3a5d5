"""Servers started from a notebook never outlive its kernel: killed (SIGKILL), restarted, or
interrupted then shut down.

Each test starts a real Jupyter kernel (this venv's Python), starts a LocalCluster inside it,
reads the servers' pids back, does to the kernel what a student's JupyterLab would, and then
waits (with a deadline) until every server process is gone.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import pytest
from jupyter_client.manager import KernelManager

from paykit.lab.lessons import pid_alive, wait_until

GONE_WITHIN_S = 10.0
START_CLUSTER = """
import json
from paykit import LocalCluster
cluster = LocalCluster(data_dir={data_dir!r}).start()
print(json.dumps([row["pid"] for row in cluster.status()]))
"""


@pytest.fixture
def kernel():
    km = KernelManager(kernel_name="python3")
    km.kernel_cmd = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    yield km, kc
    kc.stop_channels()
    if km.has_kernel:
        km.shutdown_kernel(now=True)


def run(kc, code: str, timeout_s: float = 60.0) -> tuple[dict, str]:
    """Executes `code` in the kernel; returns (the execute_reply content, what it printed)."""
    out: list[str] = []
    reply = kc.execute_interactive(
        code, timeout=timeout_s, output_hook=lambda msg: out.append(msg["content"].get("text", ""))
    )
    return reply["content"], "".join(out)


def wait_printed(kc, text: str, timeout_s: float = 30.0) -> None:
    """Reads the kernel's output until `text` appears."""

    def seen() -> bool:
        msg = kc.get_iopub_msg(timeout=timeout_s)
        return msg["msg_type"] == "stream" and text in msg["content"]["text"]

    wait_until(seen, timeout_s, what=f"the kernel printing {text!r}", every_s=0)


def start_cluster(kc, tmp_path) -> list[int]:
    reply, printed = run(kc, START_CLUSTER.format(data_dir=str(tmp_path / "cluster")))
    assert reply["status"] == "ok", reply
    pids = json.loads(printed.strip().splitlines()[-1])
    assert len(pids) == 3 and all(pid_alive(p) for p in pids)
    return pids


def assert_all_gone(pids: list[int]) -> None:
    wait_until(
        lambda: not any(pid_alive(p) for p in pids),
        GONE_WITHIN_S,
        what=f"every server exiting ({[p for p in pids if pid_alive(p)]} still alive)",
    )


def test_killed_kernel_leaves_no_server(kernel, tmp_path):
    km, kc = kernel
    pids = start_cluster(kc, tmp_path)
    kernel_pid = km.provisioner.process.pid
    # no atexit, no finally: only the stdin pipes can tell the servers
    os.kill(kernel_pid, signal.SIGKILL)
    assert_all_gone(pids)


def test_restarted_kernel_leaves_no_server(kernel, tmp_path):
    km, kc = kernel
    pids = start_cluster(kc, tmp_path)
    # what JupyterLab's "Restart Kernel" does: ask, then kill if it lingers
    km.restart_kernel(now=False)
    assert_all_gone(pids)
    kc.wait_for_ready(timeout=60)
    reply, _ = run(kc, "'cluster' in dir()")
    assert reply["status"] == "ok"


def test_interrupted_cell_then_shutdown_leaves_no_server(kernel, tmp_path):
    km, kc = kernel
    pids = start_cluster(kc, tmp_path)
    kc.execute(
        "import time\nprint('sleeping', flush=True)\nfor _ in range(600):\n    time.sleep(0.1)"
    )
    wait_printed(kc, "sleeping")  # the cell is running: now the interrupt lands inside it
    km.interrupt_kernel()  # the Interrupt button: SIGINT to the kernel
    reply = kc.get_shell_msg(timeout=30)["content"]
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt"
    assert all(pid_alive(p) for p in pids), (
        "an interrupt must not kill the cluster the notebook still uses"
    )
    km.shutdown_kernel(now=False)
    assert_all_gone(pids)


def test_interrupt_while_starting_leaves_no_orphan(kernel, tmp_path):
    """Interrupting `LocalCluster().start()` midway: whatever had started is stopped with the
    kernel."""
    km, kc = kernel
    code = (
        "import json, threading\nfrom paykit import LocalCluster\n"
        f"c = LocalCluster(data_dir={str(tmp_path / 'half')!r})\nc.start()"
    )
    kc.execute(code, stop_on_error=False)  # its KeyboardInterrupt must not abort the next request
    wait_until(
        lambda: (tmp_path / "half" / "BankA" / "BankA.out").exists(), 30.0, what="BankA starting"
    )
    km.interrupt_kernel()
    kc.get_shell_msg(timeout=30)
    reply, printed = run(kc, "print(json.dumps([r['pid'] for r in c.status() if r['pid']]))")
    assert reply["status"] == "ok", reply  # the cluster object is there, half started
    pids = json.loads(printed.strip().splitlines()[-1])
    km.shutdown_kernel(now=False)
    assert_all_gone(pids)
