"""paykit.lab.race: concurrent payments from one account against the bank's holds, and the toy
check-then-debit the lesson contrasts them with (real threads, real SQLite)."""

from __future__ import annotations

import pytest

from paykit.lab.race import check_debit, naive_debit, race_debits, race_payments


def locked_debit(conn, account_id, amount_minor):
    conn.execute("BEGIN IMMEDIATE")
    (balance,) = conn.execute(
        "SELECT balance_minor FROM accounts WHERE account_id = ?", (account_id,)
    ).fetchone()
    if balance < amount_minor:
        conn.execute("ROLLBACK")
        return False
    conn.execute(
        "UPDATE accounts SET balance_minor = balance_minor - ? WHERE account_id = ?",
        (amount_minor, account_id),
    )
    conn.execute("COMMIT")
    return True


def one_statement_debit(conn, account_id, amount_minor):
    cursor = conn.execute(
        "UPDATE accounts SET balance_minor = balance_minor - ? "
        "WHERE account_id = ? AND balance_minor >= ?",
        (amount_minor, account_id, amount_minor),
    )
    return cursor.rowcount == 1


def lost_update_debit(conn, account_id, amount_minor):
    """Checks and writes under the lock... of nothing: writes a balance computed from its read."""
    (balance,) = conn.execute(
        "SELECT balance_minor FROM accounts WHERE account_id = ?", (account_id,)
    ).fetchone()
    if balance < amount_minor:
        return False
    conn.execute(
        "UPDATE accounts SET balance_minor = ? WHERE account_id = ?",
        (balance - amount_minor, account_id),
    )
    return True


def test_the_naive_debit_overdraws_under_a_race_every_time():
    for _ in range(3):
        race = race_debits(naive_debit, 10)
        # more debits pass than the balance covers (all ten, unless a thread starts late)
        assert race.succeeded > race.expected_successes == 3
        assert race.overdrawn and not race.correct and not race.lost_updates


@pytest.mark.parametrize("debit", [locked_debit, one_statement_debit])
def test_a_debit_that_checks_and_acts_in_one_step_passes(capsys, debit):
    race = check_debit(debit)
    assert race.succeeded == 3 and race.balance_minor == 1_000
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("debit", "says"),
    [
        (naive_debit, "passed the check before any of them wrote"),
        (lost_update_debit, "passed the check before any of them wrote"),
        (lambda conn, a, m: 1 / 0, "ZeroDivisionError"),
        (lambda conn, a, m: None, "returns None: write its body"),
        (lambda conn, a, m: False, "return True exactly when you debited"),
        (None, "write the function"),
    ],
    ids=["naive", "lost-update", "raises", "returns-none", "never-debits", "missing"],
)
def test_a_wrong_debit_fails_with_a_hint_that_says_why(capsys, debit, says):
    with pytest.raises(AssertionError):
        check_debit(debit)
    out = capsys.readouterr().out
    assert "✗" in out and "Hint:" in out and says in out


def test_lost_updates_are_named_when_the_balance_stays_positive(capsys):
    def rewrite(conn, account_id, amount_minor):
        # one thread at a time passes the check, but each writes what it read minus its amount
        (balance,) = conn.execute("SELECT balance_minor FROM accounts").fetchone()
        if balance < amount_minor:
            return False
        conn.execute("UPDATE accounts SET balance_minor = ?", (balance - amount_minor,))
        return True

    race = race_debits(rewrite, 2, opening_minor=10_000, amount_minor=1_000)
    assert race.succeeded == 2 and race.lost_updates and not race.overdrawn
    with pytest.raises(AssertionError):
        check_debit(rewrite, n=2)
    assert "lost update" in capsys.readouterr().out


def test_holds_stop_the_race_at_the_bank(cluster):
    race = race_payments(cluster, 10, "100", "30")
    assert race.succeeded == 3 and race.declined == {"INSUFFICIENT_FUNDS": 7}
    assert race.balance.balance_minor == 1_000 and race.balance.held_minor == 0
    assert "10.00" in race._repr_html_()
