"""Files paykit ships as package data, and what happens when a named seed file is missing:
a standalone bank opens the packaged seed rows by default, and --seed to a missing file is an
error that names it (never dropped without a word)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from paykit import packaged
from paykit.lab.check import read_bank

ROOT = Path(__file__).resolve().parent.parent


def test_the_seed_accounts_are_package_data():
    path = packaged.seed_csv()
    assert path.is_relative_to(ROOT / "paykit"), "inside the package, so a wheel carries it"
    rows = list(csv.DictReader(path.open()))
    assert {"bank": "BankB", "account_id": "recipient123", "opening_balance": "500.00"} in rows


def test_the_packaged_proto_is_the_source():
    # proto/ is the one source: a checkout reads it there, and a wheel carries a copy next to its
    # stubs (setup.py; tests/test_wheel.py looks for it), so an installed paykit has the contract.
    assert packaged.proto_file() == ROOT / "proto/paykit/v1/payment.proto"
    assert not (ROOT / "paykit/v1/payment.proto").exists(), "no second copy in the checkout"


def test_the_lessons_and_their_jupyter_settings_are_found():
    assert (packaged.lessons_dir() / "01_tour.ipynb").is_file()
    assert (packaged.jupyter_config_dir() / "labconfig" / "page_config.json").is_file()


def bank(tmp_path: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "paykit",
        "bank",
        "--name",
        "BankB",
        "--port",
        "0",
        "--data-dir",
        str(tmp_path / "BankB"),
        "--pki-dir",
        str(tmp_path / "pki"),
        *extra,
    ]


def run_bank_until_ready(tmp_path: Path, *extra: str) -> dict[str, int]:
    """Starts a standalone bank, waits for its ready line, stops it; its balances."""
    proc = subprocess.Popen(
        [*bank(tmp_path, *extra), "--exit-on-stdin-eof"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert json.loads(proc.stdout.readline())["ready"] == "BankB", proc.stderr.read()
    finally:
        proc.stdin.close()
        assert proc.wait(20) == 0
        proc.stdout.close()
        proc.stderr.close()
    return read_bank("BankB", tmp_path / "BankB" / "BankB.db").balances


def test_a_standalone_bank_opens_the_packaged_seed_rows(tmp_path):
    assert run_bank_until_ready(tmp_path)["recipient123"] == 50000


def test_no_seed_opens_none(tmp_path):
    assert "recipient123" not in run_bank_until_ready(tmp_path, "--no-seed")


def test_a_missing_seed_file_is_named_and_nothing_starts(tmp_path):
    missing = tmp_path / "gone.csv"
    out = subprocess.run(
        bank(tmp_path, "--seed", str(missing)),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 2
    assert f"seed file {missing} not found" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "BankB").exists(), "nothing was started"
