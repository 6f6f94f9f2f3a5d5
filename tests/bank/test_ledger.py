"""The bank's ledger on its own (no servers): seeding, accounts, and what a bad request leaves."""

import sqlite3

import pytest

from paykit.bank.ledger import Ledger
from paykit.core.errors import AlreadyExists, InvalidAmount, InvalidInput, UnknownAccount
from paykit.core.twopc import DEBIT


@pytest.fixture
def seed_csv(tmp_path):
    path = tmp_path / "accounts.csv"
    path.write_text("bank,account_id,opening_balance\nBankA,a1,10.50\nBankB,b1,500\nBankA,a2,0\n")
    return path


def test_a_bank_loads_only_its_own_rows_once(tmp_path, seed_csv):
    ledger = Ledger(tmp_path / "BankA.db", bank="BankA")
    assert ledger.seed_from_csv(seed_csv) == 2
    assert ledger.balance("a1").balance_minor == 1050 and ledger.balance("a2").balance_minor == 0
    with pytest.raises(UnknownAccount):
        ledger.balance("b1")  # BankB's row stays at BankB
    ledger.close()
    again = Ledger(tmp_path / "BankA.db", bank="BankA")  # a restart seeds again: nothing doubles
    assert again.seed_from_csv(seed_csv) == 0
    assert again.balance("a1").balance_minor == 1050


def test_opening_an_account_twice_or_badly_changes_nothing(tmp_path):
    ledger = Ledger(tmp_path / "BankA.db", bank="BankA")
    ledger.open_account("acct", 100)
    for bad, error in (
        (("acct", 5), AlreadyExists),
        (("", 5), InvalidInput),
        (("has space", 5), InvalidInput),
        (("x" * 65, 5), InvalidInput),
        (("neg", -1), InvalidAmount),
    ):
        with pytest.raises(error):
            ledger.open_account(*bad)
    assert ledger.balance("acct").balance_minor == 100
    with sqlite3.connect(tmp_path / "BankA.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM accounts").fetchone()[0] == 1
        assert conn.execute("SELECT SUM(delta_minor) FROM entries").fetchone()[0] == 100


def test_only_the_same_registration_may_open_an_account_again(tmp_path):
    ledger = Ledger(tmp_path / "BankA.db", bank="BankA")
    assert ledger.open_account("acct", 100, opened_for="alice") is True
    # a retry: nothing opened twice
    assert ledger.open_account("acct", 100, opened_for="alice") is False
    for other in (("acct", 100, "mallory"), ("acct", 100, ""), ("acct", 999, "alice")):
        with pytest.raises(AlreadyExists):
            ledger.open_account(*other)
    # opened for nobody (the seed file): never "retried" by anyone
    ledger.open_account("seeded", 50)
    with pytest.raises(AlreadyExists):
        ledger.open_account("seeded", 50, opened_for="alice")
    assert ledger.balance("acct").balance_minor == 100
    with sqlite3.connect(tmp_path / "BankA.db") as conn:
        assert (
            conn.execute("SELECT COUNT(*) FROM entries WHERE account_id = 'acct'").fetchone()[0]
            == 1
        )


def test_the_database_is_durable_by_configuration(tmp_path):
    ledger = Ledger(tmp_path / "BankA.db", bank="BankA")
    conn = ledger.db.read()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_a_hold_limits_what_a_second_prepare_can_take(tmp_path):
    ledger = Ledger(tmp_path / "BankA.db", bank="BankA")
    ledger.open_account("acct", 100)
    assert ledger.prepare("t1.debit", DEBIT, "acct", 70).yes
    second = ledger.prepare("t2.debit", DEBIT, "acct", 31)
    assert not second.yes and second.reason == "INSUFFICIENT_FUNDS"
    assert "available 0.30, needed 0.31" in second.message
    b = ledger.balance("acct")
    assert (b.balance_minor, b.held_minor, b.available_minor) == (100, 70, 30)
