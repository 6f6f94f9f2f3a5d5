"""Small helpers the notebooks in lessons/ call, so their cells stay short (each names its lesson).

check_answer(name, answer, expected)   an exercise's check against a computed value: ✓, or ✗,
                                        a hint and AssertionError
check_hashed(name, answer, digest)      the same against a fixed answer kept as a hash
answer_digest(name, answer)             the digest check_hashed compares with (for teachers)
wait_until(predicate, timeout_s)        poll with a deadline instead of sleeping
in_background(fn, *args)                run something on its own thread now (a Future)
servers(cluster)                        lesson 1: the processes and ports, as a DataFrame
second_copy(cluster, name)              lesson 1: what a second copy of a server is told
refused_without_certificate(cluster)    lesson 2: what mutual TLS refuses
books(cluster)                          lessons 4, 6: every account at every bank, as a DataFrame
pay_concurrently(cluster, user, ...)    lesson 5: the same payment sent n times at once
in_doubt(cluster) / wait_recovered()    lessons 6, 7: prepared transactions; waiting for recovery
ask_decision(cluster, txn_id)           lesson 7: GetDecision, asked as a bank would
make_traffic(cluster)                   lesson 11: a small mixed workload to chart
payment_id_of(data_dir, user, key)      lesson 15: which payment a key made
"""

from __future__ import annotations

import hashlib
import itertools
import json
import numbers
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import grpc
import pandas as pd

from paykit.client.models import Payment, to_minor
from paykit.core.errors import InvalidInput, PaykitError
from paykit.core.money import format_minor
from paykit.lab.check import Report, check_invariants, read_bank
from paykit.rpc.channels import channel_credentials, secure_channel
from paykit.rpc.pki import CLIENT_CN, GATEWAY_CN, bank_cn, ensure_identity
from paykit.rpc.status import from_rpc_error
from paykit.v1 import payment_pb2 as pb
from paykit.v1 import payment_pb2_grpc as pb_grpc

T = TypeVar("T")
REFUSAL_TIMEOUT_S = 3.0
_traffic_users = itertools.count(1)


SHOWN_MAX = 80  # characters of a wrong answer repeated back
KIND_NAMES = {
    "bool": "True or False",
    "int": "whole number (an int)",
    "float": "number",
    "str": "text (a str)",
    "tuple": "tuple",
    "dict": "dict",
}


def _not_answered(answer: object) -> bool:
    """What an answer cell holds before the student writes it (None, or ...)."""
    return answer is None or answer is Ellipsis


def _kind(value: object) -> str:
    """The kind of an answer, so 3, 3.0 and numpy's int64(3) compare alike and 3 != "3"."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, numbers.Integral):
        return "int"
    if isinstance(value, numbers.Real):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, tuple | list):
        return "tuple"
    if isinstance(value, dict):
        return "dict"
    return type(value).__name__


def _plain(value: object) -> object:
    """The answer as plain JSON-able data: tuples become lists, numbers plain ints and floats."""
    kind = _kind(value)
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "tuple":
        return [_plain(v) for v in value]
    if kind == "dict":
        return {str(k): _plain(v) for k, v in value.items()}
    if kind in ("bool", "str"):
        return value
    return repr(value)


def answer_digest(name: str, answer: object) -> str:
    """What check_hashed compares with: the answer's kind and a hash of it salted with the
    exercise's name, e.g. "int:3b1f0c2e9a4d5e6f". A teacher makes one with the right answer."""
    text = json.dumps(_plain(answer), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(f"paykit-lesson:{name}:{text}".encode()).hexdigest()[:16]
    return f"{_kind(answer)}:{digest}"


def _shown(answer: object) -> str:
    text = repr(answer)
    return text if len(text) <= SHOWN_MAX else text[: SHOWN_MAX - 3] + "..."


def _verdict(name: str, answer: object, right: bool, kind: str, hint: str) -> None:
    """Prints ✓, or ✗ with what was wrong and the hint, and then raises AssertionError."""
    if right:
        print(f"✓ {name}: right ({_shown(answer)})")
        return
    if _not_answered(answer):
        why = "not answered yet: put your answer in place of the None in the cell above."
    elif _kind(answer) != kind:
        want, got = (KIND_NAMES.get(k, k) for k in (kind, _kind(answer)))
        why = f"the answer is a {want}, and {_shown(answer)} is a {got}."
    else:
        why = f"not yet: {_shown(answer)} is not the answer."
    print(f"✗ {name}: {why}" + (f"\n  Hint: {hint}" if hint else ""))
    raise AssertionError(f"{name}: {_shown(answer)} is not the expected answer")


def check_answer(
    name: str, answer: object, expected: object, *, hint: str = "", tol: float = 0.0
) -> None:
    """An exercise's check against a value the lesson computed (from the cluster, the logs):
    prints ✓, or ✗ with a hint and raises. Numbers match within `tol`; a tuple matches a list."""
    if _not_answered(answer) or _kind(answer) != _kind(expected):
        right = False
    elif _kind(expected) in ("int", "float") and tol:
        right = abs(float(answer) - float(expected)) <= tol
    else:
        right = _plain(answer) == _plain(expected)
    _verdict(name, answer, right, _kind(expected), hint)


def check_hashed(name: str, answer: object, digest: str, *, hint: str = "") -> None:
    """An exercise's check against a fixed answer kept as answer_digest(name, answer), so the
    answer cannot be read off the cell: prints ✓, or ✗ with a hint and raises."""
    kind = digest.split(":", 1)[0]
    right = not _not_answered(answer) and answer_digest(name, answer) == digest
    _verdict(name, answer, right, kind, hint)


def wait_until(
    predicate: Callable[[], T],
    timeout_s: float = 10.0,
    *,
    what: str = "the condition",
    every_s: float = 0.1,
) -> T:
    """Calls `predicate` until it returns something truthy (returned); AssertionError after
    `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s} s")
        time.sleep(every_s)


def pid_alive(pid: int) -> bool:
    """True while process `pid` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def servers(cluster) -> pd.DataFrame:
    """Lesson 1: one row per server of `cluster`: name, pid, port, state, and whether the pid is
    alive."""
    rows = [{k: row[k] for k in ("name", "pid", "port", "state")} for row in cluster.status()]
    for row in rows:
        row["alive"] = row["pid"] is not None and pid_alive(row["pid"])
    return pd.DataFrame(rows).astype({"pid": "Int64"})


def _try_call(address: str, creds: grpc.ChannelCredentials) -> str:
    """Signs in as nobody: 'refused: ...' if TLS stops the call, else 'accepted ...' with the
    gateway's answer."""
    with grpc.secure_channel(address, creds) as channel:
        stub = pb_grpc.GatewayStub(channel)
        try:
            stub.Authenticate(
                pb.AuthenticateRequest(username="nobody", password="x"), timeout=REFUSAL_TIMEOUT_S
            )
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                return f"refused: {exc.code().name}: {exc.details()}"
            why = from_rpc_error(exc)
            return f"accepted (the call reached the gateway and failed on its own terms: {why})"
    return "accepted"


def second_copy(cluster, name: str, timeout_s: float = 10.0) -> str:
    """Lesson 1: starts a second copy of server `name` on the same data folder (another port) and
    returns what it said: 'refused: ...' when the folder's lock stops it, as it must."""
    row = next((r for r in cluster.status() if r["name"] == name), None)
    if row is None:
        raise InvalidInput(f"no server {name!r} in this cluster")
    common = ["--port", "0", "--data-dir", row["data_dir"], "--pki-dir", str(cluster.pki_dir)]
    if name == "gateway":
        banks = [
            a for b in cluster.bank_names for a in ("--bank", f"{b}={cluster.bank_address(b)}")
        ]
        role = ["gateway", *banks]
    else:
        role = ["bank", "--name", name]
    command = [sys.executable, "-m", "paykit", *role, *common]
    try:
        out = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:  # it ran: the lock did not stop it (subprocess killed it)
        return f"started: a second {name} ran on the same data for {timeout_s} s"
    said = (out.stderr.strip().splitlines() or ["(nothing)"])[-1]
    return f"refused (exit code {out.returncode}): {said.removeprefix('paykit: error: ')}"


def in_background(fn: Callable[..., T], *args, **kwargs) -> Future[T]:
    """Runs fn(*args, **kwargs) on its own thread now; .result() waits for its answer (lessons
    4 and 7: a payment that hangs while the cell goes on)."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to whoever calls .result()
            future.set_exception(exc)

    threading.Thread(target=run, name="lesson-background", daemon=True).start()
    return future


def ask_decision(cluster, txn_id: str, *, as_bank: str = "BankA") -> str:
    """Lesson 7: asks the gateway GetDecision about `txn_id` as bank `as_bank` would (with its
    certificate): COMMIT, ABORT, PENDING, or 'no answer (...)' when the gateway cannot answer."""
    tls = ensure_identity(cluster.pki_dir, bank_cn(as_bank))
    with secure_channel(cluster.gateway_address, tls, server_name=GATEWAY_CN) as channel:
        try:
            answer = pb_grpc.CoordinatorStub(channel).GetDecision(
                pb.GetDecisionRequest(txn_id=txn_id), timeout=REFUSAL_TIMEOUT_S
            )
        except grpc.RpcError as exc:
            return f"no answer ({exc.code().name})"
    return pb.Decision.Name(answer.decision).removeprefix("DECISION_")


def refused_without_certificate(cluster) -> str:
    """Lesson 2: calls the gateway trusting its CA but showing no client certificate."""
    ca = ensure_identity(cluster.pki_dir, CLIENT_CN).ca.read_bytes()
    return _try_call(cluster.gateway_address, grpc.ssl_channel_credentials(root_certificates=ca))


def refused_with_stranger_certificate(cluster) -> str:
    """Lesson 2: calls the gateway with a client certificate from another CA (a stranger's PKI)."""
    with tempfile.TemporaryDirectory(prefix="paykit-stranger-") as folder:  # gone once read
        stranger = ensure_identity(Path(folder), CLIENT_CN)
        creds = grpc.ssl_channel_credentials(
            root_certificates=ensure_identity(cluster.pki_dir, CLIENT_CN).ca.read_bytes(),
            private_key=stranger.key.read_bytes(),
            certificate_chain=stranger.cert.read_bytes(),
        )
    return _try_call(cluster.gateway_address, creds)


def accepted_with_certificate(cluster) -> str:
    """Lesson 2: the same call with the cluster's own client certificate (mutual TLS succeeds)."""
    return _try_call(
        cluster.gateway_address, channel_credentials(ensure_identity(cluster.pki_dir, CLIENT_CN))
    )


def books(cluster) -> pd.DataFrame:
    """Every account at every bank, read from the banks' databases (works while a bank is down)."""
    rows = []
    for bank in cluster.bank_names:
        b = read_bank(bank, cluster.bank_db(bank))
        for account, balance in sorted(b.balances.items()):
            rows.append(
                {
                    "bank": bank,
                    "account": account,
                    "balance": format_minor(balance),
                    "held": format_minor(b.held[account]),
                    "balance_minor": balance,
                    "held_minor": b.held[account],
                }
            )
    return pd.DataFrame(rows)


def in_doubt(cluster) -> list[tuple[str, str]]:
    """Lessons 6, 7: (bank, txn id) of every transaction a bank has prepared but not yet seen
    decided."""
    found = []
    for bank in cluster.bank_names:
        states = read_bank(bank, cluster.bank_db(bank)).txn_states
        found += [(bank, txn) for txn, state in sorted(states.items()) if state == "prepared"]
    return found


def wait_recovered(cluster, timeout_s: float = 20.0) -> Report:
    """Lessons 6, 7: waits until every invariant holds (nothing in doubt, money conserved); returns
    the report."""
    last: list[Report] = []

    def healthy() -> bool:
        last[:] = [check_invariants(cluster)]
        return last[0].ok

    try:
        wait_until(healthy, timeout_s, what="recovery", every_s=0.2)
    except AssertionError:
        raise AssertionError(f"not recovered within {timeout_s} s:\n{last[0]}") from None
    return last[0]


def pay_concurrently(
    cluster,
    username: str,
    password: str,
    n: int,
    to_bank: str,
    to_account: str,
    amount: str,
    *,
    key: str,
) -> list[Payment | PaykitError]:
    """Lesson 5: `n` separate connections signed in as `username` (like n devices) send the same
    payment with
    the same key at the same instant, each exactly once (no outbox, no retries); returns each
    answer."""
    sessions = [cluster.session() for _ in range(n)]
    for session in sessions:
        session.authenticate(username, password)
    start = threading.Barrier(n)
    amount_minor = to_minor(amount, None)

    def one(session) -> Payment | PaykitError:
        start.wait()
        try:
            return Payment.from_pb(session.pay(to_bank, to_account, amount_minor, key))
        except PaykitError as err:
            return err

    try:
        with ThreadPoolExecutor(max_workers=n) as pool:
            return list(pool.map(one, sessions))
    finally:
        for session in sessions:
            session.close()


def make_traffic(
    cluster, payments: int = 20, *, retried: int = 1, username: str = ""
) -> dict[str, int]:
    """Lesson 11: a small mixed workload by a new user (alice1, alice2, ... unless named):
    payments that succeed, some declined, one to an unknown bank, and `retried` balance requests
    sent while the gateway hangs for a moment (so the client retries)."""
    username = username or f"alice{next(_traffic_users)}"
    alice = cluster.client()
    alice.register(username, "password123", f"{username}-acct", "1000", cluster.bank_names[0])
    alice.authenticate(username, "password123")
    counts = {"succeeded": 0, "failed": 0, "errors": 0, "retried": 0}
    for i in range(payments):
        # every fifth one is more than alice has
        amount = "5000" if i % 5 == 4 else f"{1 + i % 7}.25"
        p = alice.pay(cluster.bank_names[-1], "recipient123", amount)
        counts[p.status] = counts.get(p.status, 0) + 1
    try:
        alice.pay("NoSuchBank", "someone", "1")
    except PaykitError:
        counts["errors"] += 1
    alice.timeout_s = 0.3  # short deadlines, so a hanging gateway makes the client retry
    for _ in range(retried):
        cluster.pause("gateway")
        timer = threading.Timer(0.4, cluster.resume, ["gateway"])
        timer.start()
        try:
            # attempt 1 times out while the gateway hangs; a later attempt gets the answer
            alice.balance()
            counts["retried"] += 1
        finally:
            timer.join()
    alice.close()
    return counts


def payment_id_of(data_dir: Path, username: str, key: str) -> str:
    """Lesson 15: the id of the payment a user's key made, from the gateway's database in a
    (stopped) cluster's data folder; "" if the gateway never had the key."""
    from paykit.lab.check import read_gateway

    for p in read_gateway(Path(data_dir) / "gateway" / "gateway.db"):
        if (p.username, p.idempotency_key) == (username, key):
            return p.payment_id
    return ""


def servers_running_under(folder: Path) -> list[int]:
    """Lesson 15: pids of paykit servers whose data folder is inside `folder` (none once everything
    stopped)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            b"paykit" in args
            and any(a.startswith(str(folder).encode()) for a in args)
            and pid_alive(int(proc.name))
        ):
            found.append(int(proc.name))
    return found
