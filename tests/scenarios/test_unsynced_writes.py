"""A bank's Commit is not fsynced (synchronous=NORMAL); a machine crash may take it back, and
nothing is lost or doubled when it does (docs/correctness.md, "Writes a power cut may take back").

A process crash (kill -9) cannot lose it: it is in the operating system's cache. A power cut
can: the database comes back as it was at the last fsync. We stand in for the power cut by
putting back a consistent copy of the database taken at that moment (SQLite's backup API),
after a real kill -9, on real servers with mutual TLS.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from pathlib import Path

import pytest
from conftest import leg_states, new_payer

from paykit.lab.check import check_invariants, read_bank, read_gateway, total_money
from paykit.lab.lessons import wait_until
from paykit.v1 import payment_pb2 as pb

AMOUNT_MINOR = 10_000
PAYEE_BANK, PAYEE = "BankB", "recipient123"


@pytest.fixture
def fc(make_cluster):
    return make_cluster(failpoints=True, prepare_timeout_s=3.0)


def copy_db(src: Path, dst: Path) -> None:
    """A consistent copy of a live WAL database: what a power cut at this moment would leave."""
    with sqlite3.connect(src) as source, sqlite3.connect(dst) as target:
        source.backup(target)
    source.close()
    target.close()


def put_back(cluster, name: str, db: Path, copy: Path) -> None:
    """kill -9 the server, bring its database back to the copy, and start it again."""
    cluster.kill(name)  # returns once the process is gone
    for leftover in (Path(f"{db}-wal"), Path(f"{db}-shm")):
        leftover.unlink(missing_ok=True)
    copy.replace(db)
    cluster.restart(name)


def stopped(pid: int) -> bool:
    """The process is stopped by SIGSTOP (state T in /proc)."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "T"


def payee_balance(cluster) -> int:
    return read_bank(PAYEE_BANK, cluster.bank_db(PAYEE_BANK)).balances[PAYEE]


def test_a_bank_commit_lost_to_a_power_cut_is_applied_again_by_its_resolver(fc, tmp_path):
    payer = new_payer(fc)
    money_before, payee_before = total_money(fc), payee_balance(fc)
    key = str(uuid.uuid4())
    # Hold the gateway right after its COMMIT is on disk, before any bank hears it.
    fc.arm("gateway", "gateway.after_commit_logged", "pause")
    answer: list = []
    paying = threading.Thread(
        target=lambda: answer.append(payer.pay(PAYEE_BANK, PAYEE, AMOUNT_MINOR, key))
    )
    paying.start()
    record = wait_until(
        lambda: next((p for p in read_gateway(fc.gateway_db()) if p.decision == "commit"), None),
        10.0,
        what="the logged COMMIT",
    )
    wait_until(
        lambda: stopped(fc.procs["gateway"].popen.pid),
        10.0,
        what="the gateway to stop at the failpoint",
    )
    # The payee's bank as of its last fsync: the credit leg prepared (Prepare is durable).
    snapshot = tmp_path / "payee-at-prepare.db"
    copy_db(fc.bank_db(PAYEE_BANK), snapshot)
    assert read_bank(PAYEE_BANK, snapshot).txn_states[f"{record.payment_id}.credit"] == "prepared"
    fc.resume("gateway")
    paying.join(timeout=30)
    assert answer and answer[0].status == pb.PAYMENT_STATUS_SUCCEEDED
    wait_until(
        lambda: read_gateway(fc.gateway_db())[-1].settled, 10.0, what="both banks to acknowledge"
    )
    assert payee_balance(fc) == payee_before + AMOUNT_MINOR

    # The power cut: the payee's bank loses its (unsynced) commit after acknowledging it. The
    # gateway has its acknowledgement and will not resend; only the bank's resolver can notice.
    put_back(fc, PAYEE_BANK, fc.bank_db(PAYEE_BANK), snapshot)
    wait_until(
        lambda: leg_states(fc, record.payment_id) == ("committed", "committed"),
        15.0,
        what="the resolver to apply the lost commit",
    )
    # credited once, not zero times, not twice
    assert payee_balance(fc) == payee_before + AMOUNT_MINOR
    assert total_money(fc) == money_before
    check_invariants(fc).assert_ok()
    assert payer.pay(PAYEE_BANK, PAYEE, AMOUNT_MINOR, key) == answer[0]  # the key still replays
