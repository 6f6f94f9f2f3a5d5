"""The payment form without a browser: set the fields, click Pay, read the result and the
balances."""

from __future__ import annotations

import pytest
from conftest import signed_in

from paykit.client.widgets import PaymentForm
from paykit.lab.check import check_invariants
from paykit.lab.lessons import wait_until


@pytest.fixture
def form(cluster) -> PaymentForm:
    return PaymentForm(signed_in(cluster, "ada", "ada-acct", "1000"), cluster.bank_names)


def fill(form: PaymentForm, bank: str, recipient: str, amount: str) -> None:
    form.bank.value, form.recipient.value, form.amount.value = bank, recipient, amount


def test_dropdown_lists_the_banks_and_balance_is_shown(form):
    assert form.bank.options == ("BankA", "BankB")
    assert "1000.00" in form.balance.value and "ada-acct" in form.balance.value


def test_click_pay_moves_money_and_refreshes_the_balance(cluster, form):
    recipient = signed_in(cluster, "bob", "bob-acct", "5", bank="BankB")
    fill(form, "BankB", "bob-acct", "12.50")
    form.pay_button.click()
    assert "Payment succeeded: 12.50 to BankB/bob-acct" in form.result.value
    assert form.last_payment is not None and form.last_payment.succeeded
    assert "987.50" in form.balance.value  # refreshed after the payment
    assert recipient.balance().balance_minor == 1750
    assert not form.pay_button.disabled
    check_invariants(cluster).assert_ok()


def test_invalid_amount_shows_an_error_and_changes_nothing(cluster, form):
    before = form.client.balance()
    for amount in ["abc", "-5", "1.234", "0", "", "1e3", "2000000"]:
        fill(form, "BankB", "recipient123", amount)
        form.pay_button.click()
        assert "Error:" in form.result.value and "Nothing was sent" in form.result.value, amount
        assert "amount" in form.result.value, amount
    assert form.last_payment is None
    assert form.client.balance() == before
    assert form.client.search() == []


def test_missing_recipient_is_an_error(form):
    fill(form, "BankB", "  ", "5")
    form.pay_button.click()
    assert "a recipient account is needed" in form.result.value
    assert form.client.search() == []


def test_declined_payment_says_so_and_moves_nothing(form):
    fill(form, "BankB", "recipient123", "5000")  # more than ada has
    form.pay_button.click()
    assert "Payment failed" in form.result.value and "No money moved" in form.result.value
    assert form.client.balance().balance_minor == 100_000


def test_unknown_recipient_account_fails_cleanly(form):
    fill(form, "BankB", "nobody-here", "5")
    form.pay_button.click()
    assert "Payment failed" in form.result.value or "Error:" in form.result.value
    assert form.client.balance().balance_minor == 100_000


def test_gateway_down_queues_and_the_form_shows_the_outcome_when_sent(cluster, form):
    fill(form, "BankB", "recipient123", "3")
    cluster.stop_server("gateway")
    form.pay_button.click()
    assert "queued" in form.result.value and form.last_payment.queued
    cluster.restart("gateway")
    wait_until(
        lambda: "Payment succeeded: 3.00 to BankB/recipient123" in form.result.value,
        30.0,
        what="the queued payment's outcome on the form",
    )
    assert "997.00" in form.balance.value
    assert form.client.balance().balance_minor == 100_000 - 300  # paid once
    check_invariants(cluster).assert_ok()
