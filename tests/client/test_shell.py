"""The client shell (cmd.Cmd) fed from stdin: `help CMD` for every command, Tab completion of
commands and bank names, errors apart from replies, an exit code that says how the session went,
and --json for scripts; run as the real `paykit client` process against a real cluster."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys

import pytest
from conftest import PASSWORD, signed_in

from paykit.client import exit_codes
from paykit.client.shell import COMMAND_NAMES, Shell
from paykit.client.shell_text import HELP


def paykit_client(cluster, tmp_path, *args, stdin: str, gateway: str | None = None, code=None):
    """`paykit client` as a process, its stdin a pipe; state (logs, outbox) under tmp_path."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            code or "import sys; from paykit.cli import main; sys.exit(main())",
            "client",
            "--gateway",
            gateway or cluster.gateway_address,
            "--pki-dir",
            str(cluster.pki_dir),
            *args,
        ],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PAYKIT_HOME": str(tmp_path)},
    )
    return result


def test_help_names_every_command_and_explains_each_one(shared_cluster):
    out = io.StringIO()
    shell = Shell(shared_cluster.client(), out)
    handlers = {n[3:] for n in dir(shell) if n.startswith("do_")}
    assert handlers == set(HELP), "every command has a HELP entry, and only commands do"
    for name in COMMAND_NAMES:
        out.seek(0), out.truncate()
        assert shell.run_line(f"help {name}")
        first, second = out.getvalue().splitlines()
        assert first.startswith("[CLIENT] usage: "), first
        assert second.startswith("[CLIENT]   ") and len(second) > 20, second
    out.seek(0), out.truncate()
    shell.run_line("help")
    listing = out.getvalue()
    assert all(f"  {usage}" in listing for usage, _ in HELP.values())
    out.seek(0), out.truncate()
    shell.run_line("help fly")
    assert (
        out.getvalue() == "[CLIENT] Error: no command 'fly'; type help for the list of commands\n"
    )
    assert shell.exit_code == exit_codes.FAILED


def test_tab_completes_commands_and_bank_names(shared_cluster):
    shell = Shell(shared_cluster.client(), io.StringIO(), default_bank="BankC")
    assert shell.completenames("pa") == ["pay", "payment"]
    assert shell.completenames("q") == ["queue", "quit"]
    # the BANK word of pay (first) and register (fifth): the known banks, the --bank one too
    assert shell.completedefault("B", "pay B", 4, 5) == ["BankA", "BankB", "BankC"]
    assert shell.completedefault("", "register u p a 10 ", 18, 18) == ["BankA", "BankB", "BankC"]
    assert shell.completedefault("Bank", "pay BankB Bank", 10, 14) == []  # an account, not a bank
    assert shell.completedefault("ba", "help ba", 5, 7) == ["balance"]


def test_piped_commands_errors_go_to_err_and_the_code_says_a_command_failed(shared_cluster):
    out, err = io.StringIO(), io.StringIO()
    shell = Shell(signed_in(shared_cluster, "pia", "pia-acct", "10"), out, err=err)
    code = shell.run(io.StringIO("balance\npay BankB recipient123 abc\nsend money\n"))
    assert out.getvalue() == "[CLIENT] Balance of pia-acct at BankA: 10.00 (available 10.00)\n"
    assert err.getvalue().splitlines() == [
        "[CLIENT] Error: amount 'abc' is not valid: it is not a plain decimal number (ASCII digits "
        "0-9); write it like 200 or 12.50",
        "[CLIENT] Error: unknown command 'send'; type help for the list of commands",
    ]
    assert code == exit_codes.FAILED


def test_a_session_where_every_command_failed_exits_1_with_the_errors_on_stderr(
    shared_cluster, tmp_path
):
    result = paykit_client(
        shared_cluster,
        tmp_path,
        stdin="balance\nauth nobody password123\npay BankB recipient123 5\nsend\n",
    )
    assert result.returncode == 1, result
    assert result.stdout == ""  # no reply, and no prompt noise in a pipe
    errors = result.stderr.splitlines()
    assert errors == [
        "[CLIENT] Error: not signed in (sign in with: auth USER PASSWORD)",
        "[CLIENT] Error: wrong username or password (sign in with: auth USER PASSWORD)",
        "[CLIENT] Error: not signed in (sign in with: auth USER PASSWORD)",
        "[CLIENT] Error: unknown command 'send'; type help for the list of commands",
    ]


def test_a_declined_payment_exits_1_and_its_reply_stays_on_stdout(shared_cluster, tmp_path):
    signed_in(shared_cluster, "dee", "dee-acct", "1").close()
    result = paykit_client(
        shared_cluster,
        tmp_path,
        stdin=f"auth dee {PASSWORD}\npay BankB recipient123 5\n",
    )
    assert result.returncode == exit_codes.FAILED
    assert result.stdout.splitlines()[1].startswith(
        "[CLIENT] Payment failed: insufficient funds in dee-acct at BankA"
    )
    assert result.stderr == ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_gateway_exits_3(shared_cluster, tmp_path):
    nowhere = f"127.0.0.1:{free_port()}"  # nothing listens there
    result = paykit_client(
        shared_cluster, tmp_path, stdin="register zed password123 zed-acct 10\n", gateway=nowhere
    )
    assert result.returncode == exit_codes.UNREACHABLE, result
    assert result.stdout == ""
    assert result.stderr.startswith("[CLIENT] Error: "), result.stderr


def test_a_payment_left_queued_exits_4(cluster, tmp_path):
    """Queued is not failed (the payment will be sent), but a script learns no money moved yet.
    Its own cluster: the cut must not reach the shared one's other tests."""
    signed_in(cluster, "queuer", "queuer-acct", "10").close()
    client = subprocess.Popen(
        [sys.executable, "-m", "paykit", "client", "--gateway", cluster.gateway_address,
         "--pki-dir", str(cluster.pki_dir), "--outbox-dir", str(tmp_path / "outbox")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PAYKIT_HOME": str(tmp_path)},
    )  # fmt: skip
    try:
        client.stdin.write(f"auth queuer {PASSWORD}\n")
        client.stdin.flush()
        assert "Authentication successful" in client.stdout.readline()
        cluster.cut("client", "gateway")  # connections reset, new ones refused
        out, err = client.communicate("pay BankB recipient123 1\n", timeout=60)
    finally:
        cluster.heal()
        client.kill() if client.poll() is None else None
    assert client.returncode == exit_codes.QUEUED, (out, err)
    assert "payment queued" in out and "1 payment is still queued" in out, out
    assert err == ""


def test_json_mode_prints_one_object_per_command_errors_included(shared_cluster, tmp_path):
    signed_in(shared_cluster, "jay", "jay-acct", "100").close()
    commands = [
        f"auth jay {PASSWORD}",
        "balance",
        "pay BankB recipient123 2.50",
        "pay BankB recipient123 -1",
        "search",
        "frobnicate",
    ]
    result = paykit_client(shared_cluster, tmp_path, "--json", stdin="\n".join(commands))
    assert result.returncode == exit_codes.FAILED
    assert result.stderr == "" and "[CLIENT]" not in result.stdout
    replies = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["command"] for r in replies] == [c.split()[0] for c in commands]
    assert [r["ok"] for r in replies] == [True, True, True, False, True, False]
    sign_in, balance, paid, refused, search, unknown = replies
    assert sign_in["sign_in"]["username"] == "jay" and "token" not in sign_in["sign_in"]
    assert balance["balance"] == {
        "bank": "BankA",
        "account_id": "jay-acct",
        "balance_minor": 10000,
        "held_minor": 0,
        "available_minor": 10000,
    }
    assert paid["payment"]["status"] == "succeeded" and paid["payment"]["amount_minor"] == 250
    assert refused["error"]["code"] == "INVALID_ARGUMENT"
    assert refused["error"]["reason"] == "INVALID_AMOUNT" and refused["exit_code"] == 1
    assert [p["amount_minor"] for p in search["payments"]] == [250]
    assert unknown["error"]["message"].startswith("unknown command 'frobnicate'")
    token = shared_cluster.client().authenticate("jay", PASSWORD).token
    assert token not in result.stdout


@pytest.mark.parametrize("flag", [[], ["--json"]])
def test_a_pipe_gets_no_prompt_and_no_readline(shared_cluster, tmp_path, flag):
    code = (
        "import sys; from paykit.cli import main; c = main(); "
        "print('readline loaded' if 'readline' in sys.modules else 'no readline', file=sys.stderr);"
        " sys.exit(c)"
    )
    result = paykit_client(shared_cluster, tmp_path, *flag, stdin="help\n", code=code)
    assert result.returncode == 0
    assert result.stderr.strip() == "no readline"
    assert "> " not in result.stdout and "Connected to gateway" not in result.stdout


def test_no_certificates_is_a_start_failure_exit_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "paykit", "client", "--pki-dir", str(tmp_path / "no-pki")],
        input="balance\n",
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PAYKIT_HOME": str(tmp_path)},
    )
    assert result.returncode == exit_codes.USAGE
    assert result.stdout == "" and "paykit: error:" in result.stderr
