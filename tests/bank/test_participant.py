"""The participant interface and its store (paykit.bank.participant): the store refuses writes
that would break the books and changes nothing then; the default batch applies legs one by one
through the rules, a bad leg voting NO; a class is loaded by a dotted path or refused clearly;
and a bank server runs a student's class (`paykit bank --participant-class`)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from paykit.bank.participant import (
    ABORTED,
    PREPARED,
    LedgerParticipant,
    LegStore,
    Participant,
    PrepareLeg,
    StoreRefused,
    load_participant_class,
)
from paykit.core.errors import InvalidInput, UnknownPayment
from paykit.core.twopc import CREDIT, DEBIT, Decision


@pytest.fixture
def store(tmp_path):
    s = LegStore(tmp_path / "bank.db", bank="BankT")
    s.ledger.open_account("acct", 1_000)
    yield s
    s.close()


def test_a_transaction_is_all_or_nothing(store):
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.record_leg("t1.debit", DEBIT, "acct", 300, PREPARED)
        tx.hold("acct", 300)
        raise RuntimeError("the rule's code failed midway")
    assert store.leg("t1.debit") is None
    assert store.account("acct").held_minor == 0


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda tx: tx.hold("acct", 1_001), "would exceed its balance"),
        (lambda tx: tx.release("acct", 1), "0 is held"),
        (lambda tx: tx.debit("acct", 1_001, "t.debit"), "would leave less than its holds"),
        (lambda tx: tx.credit("nobody", 5, "t.credit"), "no account"),
        (lambda tx: tx.set_state("t", "maybe"), "prepared, committed or aborted"),
    ],
)
def test_the_store_refuses_what_would_break_the_books_and_changes_nothing(store, write, message):
    with pytest.raises((StoreRefused, InvalidInput), match=message), store.transaction() as tx:
        write(tx)
    assert (store.account("acct").balance_minor, store.account("acct").held_minor) == (1_000, 0)


def test_a_leg_is_recorded_once(store):
    with store.transaction() as tx:
        tx.record_leg("t2.credit", CREDIT, "acct", 5, PREPARED, coordinator="gw:1")
    with pytest.raises(StoreRefused, match="already has a leg"), store.transaction() as tx:
        tx.record_leg("t2.credit", CREDIT, "acct", 5, PREPARED)
    assert [leg.txn_id for leg in store.prepared_legs()] == ["t2.credit"]
    assert store.leg("t2.credit").coordinator == "gw:1"


def test_the_default_batch_goes_leg_by_leg_through_the_rules(store):
    class OneByOne(LedgerParticipant):
        apply_batch = Participant.apply_batch  # the interface's default, not the Ledger's batch

    p = OneByOne(store)
    acks, votes = p.apply_batch(
        [("never.debit", True), ("early.debit", False)],
        [PrepareLeg("b1.debit", DEBIT, "acct", 400), PrepareLeg("b2.debit", "sideways", "acct", 1)],
    )
    assert isinstance(acks[0], UnknownPayment) and acks[1] == ABORTED  # a tombstone
    assert votes[0].yes and not votes[1].yes and votes[1].reason == "INVALID_INPUT"
    assert store.account("acct").held_minor == 400


def test_the_reference_resolves_only_on_a_final_answer(store):
    p = LedgerParticipant(store)
    assert p.prepare(PrepareLeg("r1.debit", DEBIT, "acct", 100, "gw:1")).yes
    for answer in (None, Decision.PENDING):
        assert p.resolve(lambda txn, coordinator, answer=answer: answer, 0) == 0
        assert store.leg("r1.debit").state == PREPARED
    assert p.resolve(lambda txn, coordinator: Decision.COMMIT, 0) == 1
    assert store.account("acct").balance_minor == 900


@pytest.mark.parametrize(
    ("dotted", "message"),
    [
        ("x" * 300, "at most 200"),
        ("no_colon", "module:Class"),
        ("no_such_module_zz:X", "cannot import"),
        ("paykit.bank.participant:LegStore", "not a subclass"),
    ],
)
def test_a_participant_class_that_does_not_load_is_refused_clearly(dotted, message):
    with pytest.raises(InvalidInput, match=message):
        load_participant_class(dotted)


def test_a_bank_with_a_class_that_does_not_load_exits_2_before_serving(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "paykit",
            "bank",
            "--name",
            "BankA",
            "--port",
            "0",
            "--data-dir",
            str(tmp_path / "data"),
            "--pki-dir",
            str(tmp_path / "pki"),
            "--participant-class",
            "no_such_module_zz:Mine",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "cannot import 'no_such_module_zz'" in done.stderr


def test_a_yes_is_never_written_without_an_fsync(store):
    for write in (
        lambda tx: tx.hold("acct", 10),
        lambda tx: tx.record_leg("t3.debit", DEBIT, "acct", 10, PREPARED),
    ):
        with pytest.raises(StoreRefused, match="durable=False"):
            with store.transaction(durable=False) as tx:
                write(tx)
    assert store.leg("t3.debit") is None and store.account("acct").held_minor == 0
    with store.transaction(durable=False) as tx:  # a Commit's writes may skip the fsync
        tx.credit("acct", 5, "t4.credit")
    assert store.account("acct").balance_minor == 1_005
