"""Payments end to end: money moves at both banks or nowhere; every bad input gets its own
message and changes nothing (checked on the balances, not only the message)."""

import io

import pytest
from conftest import PASSWORD, signed_in

from paykit.client.shell import Shell
from paykit.lab.check import check_invariants, read_bank


def balances(cluster) -> dict[tuple[str, str], int]:
    return {
        (b, a): v
        for b in cluster.bank_names
        for a, v in read_bank(b, cluster.bank_db(b)).balances.items()
    }


def test_a_successful_payment_moves_the_money_at_both_banks(shared_cluster):
    alice = signed_in(shared_cluster, "alice", "alice-acct", "1000", "BankA")
    before = balances(shared_cluster)
    payment = alice.pay("BankB", "recipient123", "200.50")
    assert payment.status == "succeeded" and payment.amount_minor == 20050
    after = balances(shared_cluster)
    assert after[("BankA", "alice-acct")] == before[("BankA", "alice-acct")] - 20050
    assert after[("BankB", "recipient123")] == before[("BankB", "recipient123")] + 20050
    assert alice.balance().available_minor == 100000 - 20050
    check_invariants(shared_cluster).assert_ok()


def test_an_insufficient_funds_payment_moves_none(shared_cluster):
    bob = signed_in(shared_cluster, "bob", "bob-acct", "10", "BankA")
    before = balances(shared_cluster)
    payment = bob.pay("BankB", "recipient123", "10.01")
    assert payment.status == "failed" and payment.failure_reason == "INSUFFICIENT_FUNDS"
    assert "available 10.00, needed 10.01" in payment.failure_message
    assert balances(shared_cluster) == before
    assert bob.balance().held_minor == 0


def test_payments_within_one_bank_work(shared_cluster):
    carol = signed_in(shared_cluster, "carol", "carol-acct", "50", "BankB")
    assert carol.pay("BankB", "recipient123", "5").status == "succeeded"
    assert carol.balance().balance_minor == 4500
    check_invariants(shared_cluster).assert_ok()


# (what the user types, a piece of the message it must print). Each is run by a signed-in
# user "dave" (except where the command is about signing in) and must change no balance.
BAD_INPUT = [
    ("pay BankB recipient123 0", "0.00 is not a payment"),
    ("pay BankB recipient123 -5", "is negative"),
    ("pay BankB recipient123 12.345", "more than 2 decimals"),
    ("pay BankB recipient123 abc", "not a plain decimal number"),
    ("pay BankB recipient123 nan", "not a plain decimal number"),
    ("pay BankB recipient123 1e3", "not a plain decimal number"),
    ("pay BankB recipient123 1000000.01", "over the limit of 1000000.00"),
    ("send BankB recipient123 5", "unknown command 'send'; type help"),
    ("pay BankB recipient123", "pay takes 3 arguments, got 2; usage: pay BANK ACCOUNT AMOUNT"),
    ("pay BankB recipient123 5 extra", "pay takes 3 arguments, got 4"),
    ("balance now", "balance takes 0 arguments, got 1"),
    ("register dave password123 other-acct 10", "user dave already exists"),
    (
        "register erin password123 recipient123 10 BankB",
        "account recipient123 already exists at BankB",
    ),
    ("register frank short acct-f 10", "password is too short"),
    ("register gina password123 acct-g 10 BankZ", "unknown bank 'BankZ'"),
    ("pay BankZ recipient123 5", "unknown bank 'BankZ'; this gateway knows BankA, BankB"),
    ("pay BankB nobody-here 5", "Payment failed: no account nobody-here at BankB. No money moved."),
    ("pay BankA dave-acct 5", "you cannot pay yourself"),
    ("pay BankB recipient123 1000.01", "Payment failed: insufficient funds in dave-acct at BankA"),
    ("search status=lost", "status 'lost' is not one of"),
    ("search colour=red", "search filter 'colour=red' is not understood"),
    ("auth dave wrong-password", "wrong username or password"),
    ("auth nobody password123", "wrong username or password"),
]


@pytest.fixture(scope="module")
def dave(shared_cluster):
    return signed_in(shared_cluster, "dave", "dave-acct", "1000", "BankA")


@pytest.mark.parametrize(("line", "message"), BAD_INPUT, ids=[b[0] for b in BAD_INPUT])
def test_bad_input_gets_its_own_message_and_changes_nothing(shared_cluster, dave, line, message):
    before = balances(shared_cluster)
    out = io.StringIO()
    Shell(dave, out).run_line(line)
    printed = out.getvalue()
    assert printed.startswith("[CLIENT] ") and message in printed, printed
    assert balances(shared_cluster) == before
    assert dave.balance().held_minor == 0


@pytest.mark.parametrize("line", ["balance", "pay BankB recipient123 5", "search"])
def test_commands_before_auth_say_to_sign_in(shared_cluster, line):
    before = balances(shared_cluster)
    out = io.StringIO()
    Shell(shared_cluster.client(), out).run_line(line)
    assert "not signed in" in out.getvalue() and "auth USER PASSWORD" in out.getvalue()
    assert balances(shared_cluster) == before


def test_wrong_password_does_not_sign_in(shared_cluster):
    client = shared_cluster.client()
    out = io.StringIO()
    shell = Shell(client, out)
    shell.run_line("register hal password123 hal-acct 10")
    shell.run_line("auth hal not-the-password")
    shell.run_line("balance")
    assert out.getvalue().splitlines()[1:] == [
        "[CLIENT] Error: wrong username or password (sign in with: auth USER PASSWORD)",
        "[CLIENT] Error: not signed in (sign in with: auth USER PASSWORD)",
    ]
    assert client.authenticate("hal", PASSWORD).username == "hal"


def test_search_filters_the_users_own_history(shared_cluster):
    ivy = signed_in(shared_cluster, "ivy", "ivy-acct", "100", "BankA")
    jon = signed_in(shared_cluster, "jon", "jon-acct", "100", "BankB")
    ivy.pay("BankB", "jon-acct", "10")
    ivy.pay("BankB", "recipient123", "20")
    ivy.pay("BankB", "recipient123", "500")  # fails: insufficient funds
    jon.pay("BankA", "ivy-acct", "1")
    # newest first, in and out
    assert [p.amount_minor for p in ivy.search()] == [
        100,
        50000,
        2000,
        1000,
    ]
    assert [p.amount_minor for p in ivy.search(status="failed")] == [50000]
    assert [p.amount_minor for p in ivy.search(counterparty="BankB/jon-acct")] == [100, 1000]
    assert [p.amount_minor for p in ivy.search(min_amount="5", max_amount="100")] == [2000, 1000]
    # jon sees nothing of ivy's other payments
    assert [p.amount_minor for p in jon.search()] == [
        100,
        1000,
    ]
    out = io.StringIO()
    Shell(ivy, out).run_line("search status=succeeded")
    assert out.getvalue().splitlines()[0] == "[CLIENT] 3 payments"
