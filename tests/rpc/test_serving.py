"""A server's data folder: made when missing, or a clear one-line reason why it cannot be used."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SERVERS = {
    "bank": ["bank", "--name", "BankA"],
    "gateway": ["gateway", "--bank", "BankA=127.0.0.1:1"],
}


def command(role: str, data_dir, pki_dir) -> list[str]:
    common = ["--port", "0", "--data-dir", str(data_dir), "--pki-dir", str(pki_dir)]
    return [sys.executable, "-m", "paykit", *SERVERS[role], *common, "--exit-on-stdin-eof"]


@pytest.mark.parametrize("role", SERVERS)
def test_a_server_makes_its_missing_data_folder(role, tmp_path):
    folder = tmp_path / "not" / "there" / "yet"
    proc = subprocess.Popen(
        command(role, folder, tmp_path / "pki"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = json.loads(proc.stdout.readline())  # the server's one line when it serves
        assert ready["port"] > 0
        assert any(folder.glob("*.db")), "the database is in the folder it made"
    finally:
        proc.stdin.close()  # the parent's pipe closes: the server stops
        proc.wait(10)


@pytest.mark.parametrize("role", SERVERS)
def test_a_server_says_why_it_cannot_use_its_data_folder(role, tmp_path):
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    out = subprocess.run(
        command(role, not_a_folder, tmp_path / "pki"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert "cannot use" in out.stderr and "--data-dir" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.splitlines()) == 1
