"""The coordinator alone, against in-memory banks (a fake `Participants`) and a real SQLite log.

Each test is one rule of DESIGN.md's two-phase commit: decide only on all YES votes, the first
NO decides with its own reason, a silent bank times out, the decision is logged before it is
sent, PENDING while votes are collected, presumed abort, redrive, recovery after a restart, and
a payment whose decision could not be written is aborted while the gateway lives on.
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import Future

import pytest

from paykit.core import failpoints
from paykit.core.db import Database
from paykit.core.errors import Unavailable
from paykit.core.twopc import CREDIT, DEBIT, Decision, Vote, leg_txn_id
from paykit.gateway import idempotency, payments
from paykit.gateway.coordinator import Coordinator

TIMEOUT_S = 5.0  # the prepare timeout: long, so a test that waits for it would show


class FakeBanks:
    """In-memory participants: each bank votes what the test says (None: never answers) and
    records every decision it is sent; a bank in `down` refuses decisions."""

    def __init__(self) -> None:
        self.votes: dict[str, Vote | None] = {}
        self.down: set[str] = set()
        self.decided: list[tuple[str, str, bool]] = []
        self.silent: dict[str, Future[Vote]] = {}  # txn id -> the vote a silent bank holds back
        self.asked = threading.Event()
        self.log: Database | None = None
        self.logged_before_sent: list[bool] = []

    def prepare(self, bank, txn_id, leg, account_id, amount_minor, coordinator, timeout_s):
        vote: Future[Vote] = Future()
        answer = self.votes.get(bank, Vote(True))
        if answer is None:
            self.silent[txn_id] = vote
        else:
            vote.set_result(answer)
        self.asked.set()
        return vote

    def decide(self, bank, txn_id, commit, timeout_s):
        if bank in self.down:
            raise Unavailable(f"{bank} is down")
        if self.log is not None:  # what the log says at the moment the decision leaves
            record = payments.get(self.log.read(), txn_id.rsplit(".", 1)[0])
            self.logged_before_sent.append(
                record.decision == (Decision.COMMIT if commit else Decision.ABORT)
            )
        self.decided.append((bank, txn_id, commit))


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "gateway.db", payments.SCHEMA + idempotency.SCHEMA)
    yield database
    database.close()


@pytest.fixture
def banks(db) -> FakeBanks:
    fake = FakeBanks()
    fake.log = db
    return fake


def encode(p) -> bytes:
    return f"{p.payment_id}|{p.decision}|{p.failure_reason}".encode()


def coordinator(db, banks, **options) -> Coordinator:
    options = {"prepare_timeout_s": TIMEOUT_S, "retention_s": 3600.0, **options}
    return Coordinator(db, banks, advertise="127.0.0.1:1", encode_response=encode, **options)


def pay(c: Coordinator, key: str | None = None, to_bank: str = "BankB") -> tuple[str, bytes]:
    return c.pay(
        username="ada",
        from_bank="BankA",
        from_account="ada-acct",
        to_bank=to_bank,
        to_account="bob-acct",
        amount_minor=500,
        key=key or str(uuid.uuid4()),
    )


def record(db, payment_id):
    return payments.get(db.read(), payment_id)


def test_all_yes_commits_logs_first_and_tells_both_banks(db, banks):
    payment_id, response = pay(coordinator(db, banks))
    assert response == f"{payment_id}|commit|".encode()
    assert record(db, payment_id).decision == Decision.COMMIT and record(db, payment_id).settled
    assert sorted(banks.decided) == [
        ("BankA", leg_txn_id(payment_id, DEBIT), True),
        ("BankB", leg_txn_id(payment_id, CREDIT), True),
    ]
    assert banks.logged_before_sent == [True, True]  # the decision was durable before it was sent


def test_the_first_no_decides_with_its_own_reason_without_waiting(db, banks):
    # The payer's bank never answers; the payee's says NO at once. Votes are taken as they come,
    # so the NO decides now, with the payee's reason, not BANK_TIMEOUT after the deadline.
    banks.votes = {"BankA": None, "BankB": Vote(False, "UNKNOWN_ACCOUNT", "no account bob-acct")}
    payment_id, response = pay(coordinator(db, banks))
    assert response == f"{payment_id}|abort|UNKNOWN_ACCOUNT".encode()
    assert {commit for _, _, commit in banks.decided} == {False}  # both legs aborted


def test_a_silent_bank_times_out_and_the_payment_aborts(db, banks):
    banks.votes = {"BankB": None}
    payment_id, response = pay(coordinator(db, banks, prepare_timeout_s=0.2))
    assert response == f"{payment_id}|abort|BANK_TIMEOUT".encode()
    assert "BankB" in record(db, payment_id).failure_message


def test_pending_while_votes_are_collected_then_final(db, banks):
    banks.votes = {"BankB": None}
    c = coordinator(db, banks)
    done: list[tuple[str, bytes]] = []
    worker = threading.Thread(target=lambda: done.append(pay(c)))
    worker.start()
    assert banks.asked.wait(5.0)
    ((txn_id, vote),) = banks.silent.items()
    assert c.decision_for(txn_id) == Decision.PENDING  # asked mid-vote: the bank must keep waiting
    vote.set_result(Vote(True))
    worker.join(10.0)
    assert c.decision_for(txn_id) == Decision.COMMIT == record(db, done[0][0]).decision


def test_no_record_means_abort(db, banks):
    assert (
        coordinator(db, banks).decision_for(leg_txn_id("never-heard-of", CREDIT)) == Decision.ABORT
    )


def test_a_retry_with_the_key_replays_and_runs_nothing(db, banks):
    c, key = coordinator(db, banks), str(uuid.uuid4())
    first = pay(c, key)
    decided = len(banks.decided)
    assert pay(c, key) == first and len(banks.decided) == decided


def test_a_bank_down_at_decision_time_is_redriven_later(db, banks):
    banks.down = {"BankB"}
    c = coordinator(db, banks)
    payment_id, response = pay(c)  # the decision is logged: the client gets its answer anyway
    assert response.endswith(b"|commit|") and not record(db, payment_id).settled
    assert c.redrive(min_age_s=0) == 0  # still down: nothing settles, nothing is lost
    banks.down.clear()
    assert c.redrive(min_age_s=0) == 1 and record(db, payment_id).settled
    assert ("BankB", leg_txn_id(payment_id, CREDIT), True) in banks.decided


def test_recovery_aborts_what_a_crash_left_undecided(db, banks):
    undecided = payments.PaymentRecord(
        "p1",
        "ada",
        str(uuid.uuid4()),
        "BankA",
        "ada-acct",
        "BankB",
        "bob-acct",
        500,
        created_unix_ms=1,
    )
    with db.write() as conn:  # what the gateway had written when it crashed mid-vote
        payments.insert(conn, undecided)
    c = coordinator(db, banks)  # the restarted gateway
    assert c.recover() == 1
    assert (
        record(db, "p1").decision == Decision.ABORT
        and record(db, "p1").failure_reason == "GATEWAY_RESTARTED"
    )
    assert c.redrive(min_age_s=0) == 1  # both banks are told to abort (they may hold money)
    assert {(bank, commit) for bank, _, commit in banks.decided} == {
        ("BankA", False),
        ("BankB", False),
    }


@pytest.fixture
def failing_decision_write(tmp_path):
    failpoints.configure(tmp_path, enabled=True)
    failpoints.arm(tmp_path, "gateway.decision_write", "error")
    yield
    failpoints.configure(tmp_path, enabled=False)


def test_a_decision_that_could_not_be_written_is_aborted_while_the_gateway_lives(
    db, banks, failing_decision_write
):
    c = coordinator(db, banks)
    with pytest.raises(Exception, match="disk I/O error"):
        pay(c)
    (stranded,) = payments.undecided(db.read())
    assert banks.decided == []  # nothing was sent: no decision is logged
    assert c.abort_stranded() == 1
    assert record(db, stranded.payment_id).failure_reason == "DECISION_NOT_LOGGED"
    c.redrive(min_age_s=0)
    assert {commit for _, _, commit in banks.decided} == {False}


def test_abort_stranded_leaves_a_payment_being_decided_alone(db, banks):
    banks.votes = {"BankB": None}
    c = coordinator(db, banks)
    worker = threading.Thread(target=pay, args=(c,))
    worker.start()
    assert banks.asked.wait(5.0)
    assert c.abort_stranded() == 0  # its request thread is still collecting votes
    (vote,) = banks.silent.values()
    vote.set_result(Vote(True))
    worker.join(10.0)
    assert [p.decision for p in payments.undecided(db.read())] == []
