"""The seed's session, piped into the real `paykit client`, against real servers."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ctrl_c_as_in_a_terminal

SEED_SESSION = """\
register user1 password123 bank123 1000
auth user1 password123
balance
pay BankB recipient123 200
search
"""
EXPECTED = [
    r"\[CLIENT\] Registration successful for user user1",
    r"\[CLIENT\] Authentication successful for user user1 \(session valid until \d\d:\d\d UTC\)",
    r"\[CLIENT\] Balance of bank123 at BankA: 1000\.00 \(available 1000\.00\)",
    r"\[CLIENT\] Payment Response: Payment processed successfully",
    r"\[CLIENT\] 1 payment",
    r"\[CLIENT\] id +created \(UTC\) +dir +counterparty +amount +status +reason",
    r"\[CLIENT\] [0-9a-f]{8}  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d  out  BankB/recipient123 +200\.00  "
    r"succeeded",
]


def paykit(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "paykit", *args],
        capture_output=True,
        text=True,
        timeout=60,
        **kwargs,
    )


def assert_session(stdout: str) -> None:
    lines = stdout.splitlines()
    assert len(lines) == len(EXPECTED), stdout
    for line, pattern in zip(lines, EXPECTED, strict=True):
        assert re.fullmatch(pattern, line), f"{line!r} does not match {pattern!r}"


def test_seed_session_piped_into_the_cli(cluster):
    # stdin is not a terminal: no prompts, one [CLIENT] line per reply.
    result = paykit(
        "client",
        "--gateway",
        cluster.gateway_address,
        "--pki-dir",
        str(cluster.pki_dir),
        input=SEED_SESSION,
    )
    assert result.returncode == 0, result.stderr
    assert_session(result.stdout)
    # The money moved at both banks: 1000 - 200 at BankA, 500 + 200 at BankB (seeded from
    # paykit/data/accounts.csv).
    from paykit.lab.check import read_bank

    assert read_bank("BankA", cluster.bank_db("BankA")).balances["bank123"] == 80000
    assert read_bank("BankB", cluster.bank_db("BankB")).balances["recipient123"] == 70000


def _ports_free(*ports: int) -> bool:
    import socket

    for port in ports:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return False
    return True


def test_paykit_up_serves_the_seed_ports_and_ctrl_c_stops_all_three(tmp_path):
    if not _ports_free(50050, 50051, 50052):
        pytest.fail("ports 50050-50052 are taken on this machine; `paykit up` needs them")
    env = {**os.environ, "PAYKIT_HOME": str(tmp_path)}
    up = subprocess.Popen(
        [sys.executable, "-m", "paykit", "up"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
        preexec_fn=ctrl_c_as_in_a_terminal,
    )
    pids, deadline = [], time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            line = up.stdout.readline()
            assert line, f"paykit up exited early: {up.stderr.read()}"
            pids += [int(p) for p in re.findall(r"pid (\d+)", line)]
            if "Ctrl+C" in line:
                break
        assert len(pids) == 3
        result = paykit("client", "--gateway", "127.0.0.1:50050", input=SEED_SESSION, env=env)
        assert_session(result.stdout)
    finally:
        # what Ctrl+C in a terminal does: the whole foreground group
        os.killpg(up.pid, signal.SIGINT)
        up.wait(20)
    assert "all stopped" in up.stdout.read()
    for pid in pids:
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        ), pid
    # Run state went to the state folder, not the source tree.
    assert (tmp_path / "data" / "BankA" / "BankA.db").exists()
    assert (tmp_path / "pki" / "ca" / "ca.pem").exists()
    assert (tmp_path / "pki" / "client" / "paykit-client.key").exists()


def test_each_server_has_help_with_host_and_data_dir():
    for server in ("bank", "gateway", "client", "up", "demo", "pki"):
        result = paykit(server, "--help")
        assert result.returncode == 0 and "usage: paykit" in result.stdout
    for server in ("bank", "gateway"):
        out = paykit(server, "--help").stdout
        assert "--host" in out and "--data-dir" in out and "--port" in out
    assert "--prepare-timeout-s" in paykit("gateway", "--help").stdout


def test_a_bank_runs_alone_and_refuses_a_second_copy_on_its_data(tmp_path):
    args = [
        sys.executable,
        "-m",
        "paykit",
        "bank",
        "--name",
        "BankA",
        "--port",
        "0",
        "--data-dir",
        str(tmp_path / "a"),
        "--pki-dir",
        str(tmp_path / "pki"),
    ]
    bank = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = json.loads(bank.stdout.readline())
        assert ready["ready"] == "BankA" and ready["port"] > 0
        second = subprocess.run(args, capture_output=True, text=True, timeout=30)
        assert second.returncode == 2
        assert "already running" in second.stderr
    finally:
        bank.send_signal(signal.SIGTERM)
        assert bank.wait(10) == 0


def test_gateway_without_banks_says_what_is_missing(tmp_path):
    result = paykit(
        "gateway", "--port", "0", "--data-dir", str(tmp_path), "--pki-dir", str(tmp_path / "pki")
    )
    assert result.returncode == 2
    assert "--bank NAME=HOST:PORT" in result.stderr
