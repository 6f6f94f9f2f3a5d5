"""Client certificate discovery (flag, then PAYKIT_CERTS, then the default folder, said on start),
no CA ever made by a client, and a TLS mismatch reported as one, against real servers."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from paykit import PaymentClient
from paykit.client import exit_codes
from paykit.client.bundle import ENV_VAR, find_client_bundle
from paykit.core.config import TLSFiles
from paykit.core.errors import ConnectFailed, InvalidInput, TLSFailure
from paykit.rpc.pki import CLIENT_CN, export_bundle, init_pki

CLUSTER = {"banks": ("BankA", "BankB")}
TIMEOUT_S = 60


@pytest.fixture(scope="module")
def bundles(shared_cluster, tmp_path_factory):
    """The cluster's client bundle exported to a folder of its own, and one from another CA."""
    root = tmp_path_factory.mktemp("bundles")
    right = root / "right"
    export_bundle(shared_cluster.pki_dir, "client", right)
    init_pki(root / "other-pki", ["BankA"])
    wrong = root / "wrong"
    export_bundle(root / "other-pki", "client", wrong)
    return right, wrong


def client_env(cwd: Path, env: dict | None) -> dict:
    base = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    return {**base, "PAYKIT_HOME": str(cwd / ".paykit"), **(env or {})}


def client_cmd(cluster, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "paykit.cli",
        "client",
        "--gateway",
        cluster.gateway_address,
        *args,
    ]


def run_client(cluster, cwd: Path, lines: str, *args: str, env: dict | None = None):
    """`paykit client` in a pipe, run from the folder `cwd`."""
    return subprocess.run(
        client_cmd(cluster, *args),
        input=lines,
        cwd=cwd,
        env=client_env(cwd, env),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def started_on_a_terminal(cluster, cwd: Path, env: dict) -> str:
    """What `paykit client` says on stderr when its stdin is a terminal (then it is told quit)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        client_cmd(cluster, "--history", str(cwd / "history")),
        stdin=slave,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env={**client_env(cwd, env), "TERM": "dumb"},
        text=True,
    )
    os.close(slave)
    try:
        os.write(master, b"quit\n")
        _, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
        os.close(master)
    return err


def test_the_flag_comes_before_the_variable_before_the_default_folder(bundles, tmp_path):
    right, wrong = bundles
    default = tmp_path / "home"
    export_bundle(default / "root", "client", default / "pki")  # a bundle of a third CA
    os.environ["PAYKIT_HOME"], saved = str(default), os.environ["PAYKIT_HOME"]
    try:
        found = find_client_bundle(right, {ENV_VAR: str(wrong)})
        assert (found.folder, found.source) == (right, "--pki-dir")
        found = find_client_bundle(None, {ENV_VAR: str(wrong)})
        assert (found.folder, found.source) == (wrong, ENV_VAR)
        found = find_client_bundle(None, {})
        assert (found.folder, found.source) == (default / "pki", "the default folder")
    finally:
        os.environ["PAYKIT_HOME"] = saved


def test_a_missing_bundle_is_an_error_naming_where_it_looked_and_makes_nothing(tmp_path):
    empty = tmp_path / "nothing-here"
    with pytest.raises(InvalidInput) as caught:
        find_client_bundle(None, {ENV_VAR: str(empty)})
    assert f"no client certificates in {empty} ({ENV_VAR})" in str(caught.value)
    assert not empty.exists()  # no CA, no folder: a client never makes certificates


def test_the_client_says_which_bundle_it_uses_and_works_from_another_folder(
    shared_cluster, bundles, tmp_path
):
    right, _ = bundles
    said = started_on_a_terminal(shared_cluster, tmp_path, {ENV_VAR: str(right)})
    assert f"[CLIENT] client certificates from {right} ({ENV_VAR})" in said, said
    done = run_client(
        shared_cluster,
        tmp_path,
        "register mia password123 mia-acct 10 BankA\n",
        env={ENV_VAR: str(right)},
    )
    said = done.stdout + done.stderr
    assert done.returncode == 0 and done.stderr == "", said  # in a pipe, stderr is for errors
    with shared_cluster.client() as check:  # the registration went through
        assert check.authenticate("mia", "password123").username == "mia", said
    assert not (tmp_path / ".paykit" / "pki").exists()


def test_a_client_without_a_bundle_stops_with_a_clear_error(shared_cluster, tmp_path):
    done = run_client(shared_cluster, tmp_path, "balance\n")
    assert done.returncode == exit_codes.USAGE
    assert f"no client certificates in {tmp_path / '.paykit' / 'pki'} (the default folder)" in (
        done.stderr
    )
    assert not (tmp_path / ".paykit" / "pki").exists()


def test_a_bundle_of_another_ca_is_reported_as_a_tls_mismatch(shared_cluster, bundles, tmp_path):
    _, wrong = bundles
    done = run_client(
        shared_cluster,
        tmp_path,
        "register noa password123 noa-acct 10 BankA\n",
        "--certs",
        str(wrong),
    )
    said = done.stdout + done.stderr
    assert (
        f"TLS handshake with {shared_cluster.gateway_address} failed: the server's certificate "
        f"is not signed by the CA in {wrong}"
    ) in said, said
    assert "cannot reach" not in said
    assert done.returncode == exit_codes.UNREACHABLE and done.stdout == "", said


def test_a_certificate_the_gateway_does_not_accept_is_reported_at_once(
    shared_cluster, bundles, tmp_path
):
    right, wrong = bundles
    mixed = TLSFiles(
        ca=right / "ca.pem", cert=wrong / f"{CLIENT_CN}.pem", key=wrong / f"{CLIENT_CN}.key"
    )
    with PaymentClient(shared_cluster.gateway_address, tls=mixed, outbox_dir=tmp_path) as client:
        with pytest.raises(TLSFailure) as caught:  # the first call, not the third
            client.register("ola", "password123", "ola-acct", "10", "BankA")
    assert "the server does not accept the client certificate" in str(caught.value)


def test_a_server_that_is_not_there_is_unreachable_not_a_tls_failure(bundles, tmp_path):
    right, _ = bundles
    with PaymentClient("127.0.0.1:1", pki_dir=right, outbox_dir=tmp_path) as client:
        with pytest.raises(ConnectFailed, match="cannot reach"):
            client.register("pia", "password123", "pia-acct", "10", "BankA")
