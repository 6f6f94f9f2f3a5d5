"""The ledger's batches (a bank's Exchange) on their own: one transaction for many legs,
each leg answered as the unary call would answer it, all or nothing on a failure."""

from __future__ import annotations

import sqlite3

import pytest

from paykit.bank.ledger import Ledger, PrepareLeg
from paykit.core import failpoints
from paykit.core.errors import InvalidInput, ProtocolViolation, UnknownPayment
from paykit.core.twopc import BATCH_LEGS_MAX, CREDIT, DEBIT


@pytest.fixture
def ledger(tmp_path):
    books = Ledger(tmp_path / "BankA.db", bank="BankA")
    books.open_account("ada", 1_000)
    books.open_account("bob", 0)
    yield books
    books.close()


def test_a_prepare_batch_votes_each_leg_as_prepare_would(ledger):
    votes = ledger.prepare_many(
        [
            PrepareLeg("p1.debit", DEBIT, "ada", 600),
            PrepareLeg("p2.debit", DEBIT, "ada", 600),  # the first one's hold leaves only 400
            PrepareLeg("p3.credit", CREDIT, "nobody", 5),
            PrepareLeg(
                "p4.debit", "sideways", "ada", 5
            ),  # not valid: NO with the reason, not an error
            PrepareLeg(
                "p1.debit", DEBIT, "ada", 600
            ),  # a repeat in the same batch: still YES, once
        ]
    )
    assert [(v.yes, v.reason) for v in votes] == [
        (True, ""),
        (False, "INSUFFICIENT_FUNDS"),
        (False, "UNKNOWN_ACCOUNT"),
        (False, InvalidInput.reason),
        (True, ""),
    ]
    assert ledger.balance("ada").held_minor == 600  # held once


def test_a_decide_batch_applies_each_leg_and_reports_the_ones_it_cannot(ledger):
    ledger.prepare_many(
        [
            PrepareLeg("p1.debit", DEBIT, "ada", 100),
            PrepareLeg("p2.credit", CREDIT, "bob", 100),
            PrepareLeg("p3.debit", DEBIT, "ada", 50),
        ]
    )
    ledger.abort("p3.debit")
    results = ledger.decide_many(
        [
            ("p1.debit", True),
            ("ghost.debit", True),
            ("p2.credit", True),
            ("p3.debit", True),
            ("p1.debit", True),
        ]
    )
    assert results[0] == "committed" and results[2] == "committed" and results[4] == "committed"
    assert isinstance(results[1], UnknownPayment) and isinstance(results[3], ProtocolViolation)
    assert ledger.balance("ada").balance_minor == 900 and ledger.balance("bob").balance_minor == 100
    assert ledger.balance("ada").held_minor == 0  # p3's hold was released by its abort


def test_batches_have_a_size_limit_checked_first(ledger):
    with pytest.raises(InvalidInput, match=str(BATCH_LEGS_MAX)):
        ledger.prepare_many(
            [PrepareLeg(f"p{i}.credit", CREDIT, "bob", 1) for i in range(BATCH_LEGS_MAX + 1)]
        )
    with pytest.raises(InvalidInput):
        ledger.decide_many([])
    assert ledger.txn_state("p0.credit") is None  # nothing was written


@pytest.fixture
def failing_batch(tmp_path):
    failpoints.configure(tmp_path, enabled=True)
    failpoints.arm(tmp_path, "bank.batch_between_legs", "error")
    yield
    failpoints.configure(tmp_path, enabled=False)


def test_a_failure_inside_a_prepare_batch_leaves_no_leg_prepared(ledger, failing_batch):
    # The first leg's hold is written, then the disk fails: the whole batch is rolled back.
    with pytest.raises(sqlite3.OperationalError):
        ledger.prepare_many(
            [PrepareLeg("p1.debit", DEBIT, "ada", 100), PrepareLeg("p2.debit", DEBIT, "ada", 100)]
        )
    assert ledger.txn_state("p1.debit") is None and ledger.txn_state("p2.debit") is None
    assert ledger.balance("ada").held_minor == 0
