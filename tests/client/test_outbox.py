"""The offline outbox with real servers: the gateway killed and restarted, clients killed with -9.

Harness (paykit.cluster.LocalCluster via make_cluster in conftest; real TLS, SQLite, processes):
    kill(name) / restart(name)   SIGKILL a server / start it again on the same port and data
    arm(server, failpoint, act)  the server crashes ("crash") or stops itself ("pause") there
    run_child(...)               a client in its own process, so the test can kill -9 it
Every test ends with the money checks: paykit.check.check_invariants and total_money.
"""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from paykit import LocalCluster, PaymentClient
from paykit.client.notify import Notice
from paykit.client.shell import Shell
from paykit.core.config import TLSFiles
from paykit.core.errors import TLSFailure
from paykit.lab.check import check_invariants, total_money
from paykit.lab.lessons import wait_until
from paykit.rpc.pki import CLIENT_CN, ensure_identity

PASSWORD = "password123"
DEADLINE_S = 30.0


def assert_settled(cluster: LocalCluster, timeout_s: float = 10.0) -> None:
    """Every invariant holds once the gateway's redrive has caught up (it runs every 0.5 s)."""
    deadline = time.monotonic() + timeout_s
    while not check_invariants(cluster).ok and time.monotonic() < deadline:
        time.sleep(0.1)
    check_invariants(cluster).assert_ok()


def new_user(
    cluster: LocalCluster, name: str, opening: str, outbox_dir: Path, bank: str = "BankA"
) -> PaymentClient:
    client = cluster.client(outbox_dir=outbox_dir)
    client.register(name, PASSWORD, f"{name}-acct", opening, bank)
    client.authenticate(name, PASSWORD)
    return client


def payments_for_key(cluster: LocalCluster, key: str) -> list[sqlite3.Row]:
    with sqlite3.connect(f"file:{cluster.gateway_db()}?mode=ro", uri=True) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(
            "SELECT payment_id, decision FROM payments WHERE idempotency_key = ?", (key,)
        ).fetchall()


def test_fifty_payments_queued_by_two_clients_while_the_gateway_is_down_end_exactly_once(
    make_cluster, tmp_path
):
    cluster = make_cluster()
    money = total_money(cluster)
    alice = new_user(cluster, "alice", "1000", tmp_path / "alice-device")
    bob = new_user(cluster, "bob", "100", tmp_path / "bob-device", bank="BankB")
    done: dict[str, list] = {"alice": [], "bob": []}
    alice.on_complete(lambda p: done["alice"].append((time.monotonic(), p)))
    bob.on_complete(lambda p: done["bob"].append((time.monotonic(), p)))
    cluster.kill("gateway")
    # 25 payments each; bob's 25 x 7.00 is more than his 100.00, so the last ones must fail.
    queued = {"alice": [], "bob": []}
    for i in range(25):
        for name, client, to_bank, to, amount in (
            ("alice", alice, "BankB", "recipient123", f"{i + 1}.25"),
            ("bob", bob, "BankA", "merchant-a", "7"),
        ):
            started = time.monotonic()
            p = client.pay(to_bank, to, amount)
            assert time.monotonic() - started < 2.0, (
                "pay must answer at once when the gateway is down"
            )
            assert p.status == "queued" and p.outbox_id, p
            queued[name].append(p)
    # FIFO order kept
    assert [e.short_id for e in alice.queue()] == [p.outbox_id for p in queued["alice"]]
    cluster.restart("gateway")
    restarted = time.monotonic()
    wait_until(
        lambda: len(done["alice"]) == 25 and len(done["bob"]) == 25,
        DEADLINE_S,
        what="all 50 completions",
    )
    first = min(t for t, _ in done["alice"] + done["bob"]) - restarted
    assert first < 3.0, f"reconnection noticed only after {first:.2f} s"
    for name, client in (("alice", alice), ("bob", bob)):
        ended = [p for _, p in done[name]]
        assert [p.outbox_id for p in ended] == [p.outbox_id for p in queued[name]]  # sent in order
        assert all(
            p.status == "succeeded" or (p.status == "failed" and p.failure_reason) for p in ended
        )
        assert client.queue() == [] and client.pending_count() == 0  # the outbox is empty
        for p in ended:  # exactly one payment per key at the gateway, in the state reported
            rows = payments_for_key(cluster, p.idempotency_key)
            assert [(r["payment_id"], r["decision"]) for r in rows] == [
                (p.payment_id, "commit" if p.succeeded else "abort")
            ]
    bob_paid = [p for _, p in done["bob"] if p.succeeded]
    # 14 x 7.00 = 98.00 of 100.00
    assert len(bob_paid) == 14 and all(
        p.failure_reason == "INSUFFICIENT_FUNDS" for _, p in done["bob"][14:]
    )
    assert bob.balance().balance_minor == 10_000 - 14 * 700
    alice_paid = sum(p.amount_minor for _, p in done["alice"] if p.succeeded)
    assert alice_paid == sum(i * 100 + 125 for i in range(25))
    assert alice.balance().balance_minor == 100_000 - alice_paid
    # only the two opening deposits were added
    assert total_money(cluster) == money + 100_000 + 10_000
    assert_settled(cluster)
    alice.close()
    bob.close()


def test_gateway_dies_after_committing_before_replying_and_the_resend_gets_the_stored_answer(
    make_cluster, tmp_path
):
    cluster = make_cluster(failpoints=True)
    alice = new_user(cluster, "alice", "1000", tmp_path / "outbox")
    # commit logged and sent, then SIGKILL before the reply
    cluster.arm("gateway", "gateway.before_reply")
    key = str(uuid.uuid4())
    p = alice.pay("BankB", "recipient123", "200", key=key)
    # No answer came back: the payment stays queued with its key, and may not be cancelled.
    assert p.status == "queued" and p.queued_reason == "no_answer", p
    cluster.wait_dead("gateway")
    assert not alice.queue()[0].cancellable
    cluster.restart("gateway")
    ended = next(alice.completions(timeout_s=DEADLINE_S))
    assert ended.status == "succeeded" and ended.outbox_id == p.outbox_id
    rows = payments_for_key(cluster, key)
    # it ran once
    assert [(r["payment_id"], r["decision"]) for r in rows] == [(ended.payment_id, "commit")]
    assert alice.balance().balance_minor == 100_000 - 20_000  # the money moved once
    # a retry replays the same answer
    assert alice.pay("BankB", "recipient123", "200", key=key) == ended
    assert_settled(cluster)
    alice.close()


CHILD = """
import json, sys, time
from pathlib import Path
from paykit import PaymentClient
gateway, pki_dir, outbox_dir, user, mode = sys.argv[1:6]
# A long call deadline: the first send must still be waiting for its answer when the test kills us.
client = PaymentClient(gateway, pki_dir=Path(pki_dir), outbox_dir=Path(outbox_dir), timeout_s=60)
client.authenticate(user, "password123")
if mode == "pay":
    print(json.dumps({"event": "signed_in"}), flush=True)
    sys.stdin.readline()  # the test says when to pay
    print(json.dumps({"event": "paying"}), flush=True)
    p = client.pay(*sys.argv[6:9])
    print(json.dumps({"event": "paid", "status": p.status, "outbox_id": p.outbox_id, "key":
    p.idempotency_key}),
          flush=True)
    time.sleep(60)  # the test kills this process
else:
    for p in client.completions(timeout_s=20):
        print(json.dumps({"event": "completed", "status": p.status, "outbox_id": p.outbox_id,
                          "payment_id": p.payment_id, "key": p.idempotency_key}), flush=True)
        if client.pending_count() == 0:
            break
    client.close()
"""


def run_child(
    cluster: LocalCluster, outbox_dir: Path, user: str, mode: str, *args: str
) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            cluster.gateway_address,
            str(cluster.pki_dir),
            str(outbox_dir),
            user,
            mode,
            *args,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def read_event(child: subprocess.Popen, event: str) -> dict:
    for line in child.stdout:
        msg = json.loads(line)
        if msg["event"] == event:
            return msg
    raise AssertionError(f"the child exited (code {child.wait()}) before {event!r}")


def outbox_rows(outbox_dir: Path) -> list[sqlite3.Row]:
    """The outbox file's rows, read directly ([] while the child has not created it yet)."""
    paths = list(outbox_dir.glob("*.db"))
    if not paths:
        return []
    with sqlite3.connect(f"file:{paths[0]}?mode=ro", uri=True) as conn:
        conn.row_factory = sqlite3.Row
        try:
            return conn.execute("SELECT * FROM outbox ORDER BY seq").fetchall()
        except sqlite3.OperationalError:  # created, schema not yet committed
            return []


@pytest.mark.parametrize("moment", ["after_queuing", "after_sending"])
def test_a_client_killed_with_sigkill_finishes_the_payment_exactly_once_when_restarted(
    make_cluster, tmp_path, moment
):
    cluster = make_cluster(failpoints=True)
    outbox_dir = tmp_path / "outbox"
    new_user(cluster, "carol", "1000", tmp_path / "setup").close()
    child = run_child(cluster, outbox_dir, "carol", "pay", "BankB", "recipient123", "300")
    read_event(child, "signed_in")
    if moment == "after_queuing":
        cluster.kill("gateway")  # the payment can only be queued
    else:
        # commits, then hangs before replying
        cluster.arm("gateway", "gateway.before_reply", "pause")
    child.stdin.write("pay\n")
    child.stdin.close()
    read_event(child, "paying")
    if moment == "after_queuing":
        assert read_event(child, "paid")["status"] == "queued"
    # the request reached the gateway, which committed it and stopped: the child waits for a reply
    else:
        wait_until(
            lambda: outbox_rows(outbox_dir) and outbox_rows(outbox_dir)[0]["state"] == "sending",
            DEADLINE_S,
            what="a send",
        )
        wait_until(
            lambda: any(
                r["decision"] == "commit"
                for r in payments_for_key(cluster, outbox_rows(outbox_dir)[0]["idem_key"])
            ),
            DEADLINE_S,
            what="the commit",
        )
    child.kill()  # kill -9: no clean-up runs
    child.wait()
    child.stdout.close()
    (row,) = outbox_rows(outbox_dir)  # the payment and its key were on disk before the first send
    # Normally still unanswered; on a very slow machine a resend may already have fetched the
    # stored answer (the decision is logged before the gateway pauses): then nothing is left to
    # finish.
    assert row["state"] in ("queued", "sending", "succeeded")
    cluster.kill("gateway")
    cluster.restart("gateway")
    if row["state"] != "succeeded":
        resumed = run_child(cluster, outbox_dir, "carol", "resume")
        resumed.stdin.close()
        ended = read_event(resumed, "completed")
        assert resumed.wait(timeout=DEADLINE_S) == 0
        resumed.stdout.close()
        assert ended["status"] == "succeeded" and ended["key"] == row["idem_key"]
    rows = payments_for_key(cluster, row["idem_key"])
    assert [r["decision"] for r in rows] == ["commit"]
    if row["state"] != "succeeded":
        assert rows[0]["payment_id"] == ended["payment_id"]
    with cluster.client(outbox_dir=tmp_path / "check") as carol:
        carol.authenticate("carol", PASSWORD)
        assert carol.balance().balance_minor == 100_000 - 30_000  # paid exactly once
    assert [r["state"] for r in outbox_rows(outbox_dir)] == ["succeeded"]
    assert_settled(cluster)


def test_a_queued_payment_whose_funds_were_spent_meanwhile_is_reported_failed_with_the_reason(
    make_cluster, tmp_path
):
    cluster = make_cluster()
    phone = new_user(cluster, "dave", "100", tmp_path / "phone")
    cluster.kill("gateway")
    queued = phone.pay("BankB", "recipient123", "80")
    assert queued.status == "queued"
    phone.close()  # the phone is switched off with the payment queued
    cluster.restart("gateway")
    # another device spends the money
    with cluster.client(outbox_dir=tmp_path / "laptop") as laptop:
        laptop.authenticate("dave", PASSWORD)
        assert laptop.pay("BankB", "recipient123", "50").succeeded
    phone = cluster.client(outbox_dir=tmp_path / "phone")
    out = io.StringIO()
    Shell(phone, out)  # the shell prints each completion as it happens
    phone.authenticate("dave", PASSWORD)  # signing in resumes the queue
    ended = next(phone.completions(timeout_s=DEADLINE_S))
    assert ended.outbox_id == queued.outbox_id and ended.status == "failed"
    assert (
        ended.failure_reason == "INSUFFICIENT_FUNDS" and "available 50.00" in ended.failure_message
    )
    wait_until(
        lambda: "failed: insufficient funds" in out.getvalue(),
        DEADLINE_S,
        what="the shell's completion line",
    )
    assert (
        f"[CLIENT] Queued payment {queued.outbox_id} failed: insufficient funds" in out.getvalue()
    )
    assert phone.balance().balance_minor == 5_000 and phone.pending_count() == 0
    phone.close()
    assert_settled(cluster)


def test_a_certificate_from_another_ca_is_reported_as_a_tls_failure_not_queued_forever(
    make_cluster, tmp_path
):
    cluster = make_cluster()
    good = new_user(cluster, "erin", "1000", tmp_path / "good")
    money = total_money(cluster)
    other = ensure_identity(tmp_path / "other-pki", CLIENT_CN)  # a whole identity from another CA
    cases = {
        # Neither side trusts the other: the client's own handshake fails, and says so.
        "other-ca": (other, "is not signed by the CA in"),
        # The client trusts the gateway, but the gateway refuses the client's certificate: under
        # TLS 1.3 gRPC sees only "Socket closed" at connect; the client's probe of the handshake
        # (paykit.client.bundle) tells it at the first try.
        "cert-refused": (
            TLSFiles(
                ca=ensure_identity(cluster.pki_dir, CLIENT_CN).ca, cert=other.cert, key=other.key
            ),
            "the server does not accept the client certificate",
        ),
    }
    for name, (tls, why) in cases.items():
        bad = PaymentClient(cluster.gateway_address, tls=tls, outbox_dir=tmp_path / name)
        # a session made elsewhere
        bad.session.token, bad.session.username = (
            good.token,
            good.username,
        )
        notices: list[Notice] = []
        bad.on_notice(notices.append)
        started = time.monotonic()
        with pytest.raises(TLSFailure, match="TLS handshake") as caught:
            bad.pay("BankB", "recipient123", "10")
        assert why in str(caught.value)
        assert time.monotonic() - started < 3.0 and bad.pending_count() == 0  # nothing queued
        bad.close()
    assert total_money(cluster) == money and good.balance().balance_minor == 100_000
    good.close()
