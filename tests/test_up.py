"""`paykit up` on busy ports: one clear line per server whose port is taken (which port, which
flag changes it), exit code 1, nothing started; on free ports given by its flags it runs. A
server that fails to start reports only what that start wrote, never earlier runs' log lines."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest
from conftest import ctrl_c_as_in_a_terminal

from paykit import LocalCluster
from paykit.cli import _up_start_failed
from paykit.core.errors import Unavailable


@pytest.fixture
def taken_port():
    """A port something really listens on, for as long as the test runs."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def up(tmp_path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "paykit", "up", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PAYKIT_HOME": str(tmp_path / "home")},
        preexec_fn=ctrl_c_as_in_a_terminal,
    )


def test_up_names_each_taken_port_and_its_flag(tmp_path, taken_port):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        second = other.getsockname()[1]
        # BankB on any free port: the default 50052 may be in use by another test's `paykit up`
        proc = up(
            tmp_path,
            *("--gateway-port", str(taken_port), "--bank-a-port", str(second)),
            *("--bank-b-port", "0"),
        )
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    lines = err.splitlines()
    assert lines == [
        f"paykit up: BankA cannot listen on 127.0.0.1:{second}: the port is taken (another "
        "program, or a paykit up already running); choose another with --bank-a-port PORT "
        "(0: any free port)",
        f"paykit up: gateway cannot listen on 127.0.0.1:{taken_port}: the port is taken (another"
        " program, or a paykit up already running); choose another with --gateway-port PORT "
        "(0: any free port)",
    ]
    assert "listening" not in out, "nothing was started"


def test_up_runs_on_the_ports_its_flags_give(tmp_path):
    proc = up(tmp_path, "--gateway-port", "0", "--bank-a-port", "0", "--bank-b-port", "0")
    try:
        lines = [proc.stdout.readline() for _ in range(3)]
        assert all("listening on 127.0.0.1:" in line for line in lines), lines
        assert not any(line.rstrip().endswith(":0") for line in lines), "real ports are shown"
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "all stopped" in out
    for name in ("BankA", "BankB", "gateway"):  # each server started once, and stopped
        log = (tmp_path / "home" / "data" / name / f"{name}.jsonl").read_text()
        assert log.count('"event":"server.ready"') == 1, f"{name} started more than once"
        assert log.count('"event":"server.stopped"') == 1


def test_a_bad_port_flag_is_refused(tmp_path):
    proc = up(tmp_path, "--gateway-port", "70000")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "'70000' is not a port (0-65535)" in err


def test_a_failed_start_reports_this_start_only(tmp_path, taken_port, capsys):
    # An earlier run's lines in the gateway's stderr log must not come back.
    (tmp_path / "gateway").mkdir()
    (tmp_path / "gateway" / "gateway.stderr").write_text("an earlier run's traceback\n")
    ports = {"BankA": 0, "BankB": 0, "gateway": taken_port}
    cluster = LocalCluster(data_dir=tmp_path, ports=ports, relays=False)
    with pytest.raises(Unavailable) as failed:
        cluster.start()
    cluster.stop()
    assert "port in use" in str(failed.value)
    assert "earlier run" not in str(failed.value)
    # `paykit up` turns it into its one line (for a port taken after its own check).
    _up_start_failed(failed.value, "127.0.0.1", ports)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and f"127.0.0.1:{taken_port}" in err[0] and "--gateway-port" in err[0]
