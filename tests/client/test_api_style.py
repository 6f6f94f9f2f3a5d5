"""PaymentClient answers in one style: frozen dataclasses of paykit.client.models, never protobuf
messages, and none of them shows the bearer token."""

from __future__ import annotations

import dataclasses

import pytest

from paykit import Balance, Payment, Registration, SignIn
from tests.conftest import PASSWORD


def test_every_reply_of_the_api_is_a_dataclass_and_the_token_stays_out_of_sight(shared_cluster):
    client = shared_cluster.client()
    replies = {"register": client.register("una", PASSWORD, "una-acct", "100", "BankA")}
    replies["authenticate"] = client.authenticate("una", PASSWORD)
    replies["balance"] = client.balance()
    replies["pay"] = client.pay("BankB", "recipient123", "1")
    replies["get_payment"] = client.get_payment(replies["pay"].payment_id)
    replies["search"] = client.search()[0]
    kinds = {name: type(reply) for name, reply in replies.items()}
    assert kinds == {
        "register": Registration,
        "authenticate": SignIn,
        "balance": Balance,
        "pay": Payment,
        "get_payment": Payment,
        "search": Payment,
    }
    for name, reply in replies.items():
        assert dataclasses.is_dataclass(reply), name
        with pytest.raises(dataclasses.FrozenInstanceError):
            reply.bank = "elsewhere"
    assert replies["register"] == Registration("una", "BankA", "una-acct")
    sign_in = replies["authenticate"]
    assert sign_in.username == "una" and sign_in.token == client.token and sign_in.token
    assert sign_in.expires_unix_ms > 0
    for view in (repr(sign_in), sign_in._repr_html_(), str(sign_in.as_row())):
        assert client.token not in view
    client.close()
