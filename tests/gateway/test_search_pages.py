"""SearchPayments pages as in Google's AIP-158 (page_size, page_token, next_page_token), against
real servers: every payment once across the pages, a size over the maximum read as the maximum,
and a token that is not ours, or from another query, refused with INVALID_ARGUMENT."""

from __future__ import annotations

import base64
import json
import sqlite3
import uuid

import grpc
import pytest
from conftest import signed_in

from paykit.core.errors import InvalidInput
from paykit.gateway import payments
from paykit.gateway.payments import SEARCH_PAGE_DEFAULT, SEARCH_PAGE_MAX
from paykit.v1 import payment_pb2 as pb

CLUSTER = {"banks": ("BankA", "BankB")}
PAID = 53  # real payments, some in the same millisecond (the keyset breaks ties by id)
HISTORY = SEARCH_PAGE_MAX + 150  # old payments loaded into the stopped gateway's file


def raw_search(client, **fields) -> pb.SearchPaymentsResponse:
    return client.session.stub.SearchPayments(
        pb.SearchPaymentsRequest(**fields),
        timeout=10,
        metadata=[("authorization", f"Bearer {client.token}")],
    )


def all_pages(client, page_size: int, **filters) -> list[list[str]]:
    pages, token = [], ""
    while True:
        reply = raw_search(client, page_size=page_size, page_token=token, **filters)
        pages.append([p.payment_id for p in reply.payments])
        token = reply.next_page_token
        if not token:
            return pages


@pytest.fixture(scope="module")
def payer(shared_cluster):
    kim = signed_in(shared_cluster, "kim", "kim-acct", "1000", "BankA")
    with signed_in(shared_cluster, "lea", "lea-acct", "1000", "BankB") as lea:
        lea.pay("BankA", "kim-acct", "1")
    for i in range(PAID):
        kim.pay("BankB", "lea-acct" if i % 2 else "recipient123", f"0.{i + 1:02d}")
    yield kim
    kim.close()


def test_paging_visits_every_payment_once_newest_first(payer):
    pages = all_pages(payer, 7)
    assert [len(p) for p in pages] == [7] * 7 + [5]  # kim's 53 and lea's payment to kim
    ids = [i for page in pages for i in page]
    assert len(ids) == len(set(ids)) == PAID + 1
    whole = raw_search(payer, page_size=100)
    assert [p.payment_id for p in whole.payments] == ids and whole.next_page_token == ""
    # The Python API reads the pages for you: limit=None is every match.
    assert [p.payment_id for p in payer.search(limit=None)] == ids
    assert [p.payment_id for p in payer.search(limit=10)] == ids[:10]


def test_a_payment_made_while_paging_moves_no_page(payer):
    first = raw_search(payer, page_size=10)
    payer.pay("BankB", "lea-acct", "0.01")  # newest: it comes before the first page, not after
    rest = all_pages(payer, 10)  # (from the start again, to compare)
    second = raw_search(payer, page_size=10, page_token=first.next_page_token)
    assert rest[0][1:] == [p.payment_id for p in first.payments][:9]
    assert [p.payment_id for p in second.payments] == rest[1][1:] + rest[2][:1]


def test_the_filter_applies_on_every_page(payer):
    pages = all_pages(payer, 4, counterparty="BankB/lea-acct")
    ids = [i for page in pages for i in page]
    assert len(ids) >= PAID // 2
    assert ids == [p.payment_id for p in payer.search(counterparty="BankB/lea-acct", limit=None)]
    found = raw_search(payer, page_size=1000, counterparty="BankB/lea-acct").payments
    assert all("lea-acct" in (p.to_account, p.from_account) for p in found)
    nothing = raw_search(payer, counterparty="BankB/nobody")
    assert list(nothing.payments) == [] and nothing.next_page_token == ""


def test_page_size_zero_is_the_default_and_negative_is_refused(payer):
    assert len(raw_search(payer).payments) == SEARCH_PAGE_DEFAULT
    with pytest.raises(grpc.RpcError) as caught:
        raw_search(payer, page_size=-1)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_size must not be negative" in caught.value.details()


def test_a_token_from_another_filter_is_refused(payer):
    token = raw_search(payer, page_size=5).next_page_token
    with pytest.raises(grpc.RpcError) as caught:
        raw_search(payer, page_size=5, page_token=token, status=pb.PAYMENT_STATUS_SUCCEEDED)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token belongs to another query" in caught.value.details()
    # The Python client raises the same error, naming the field.
    with pytest.raises(InvalidInput) as raised:
        payer.search_page(page_size=5, page_token=token, min_amount="0.10")
    assert raised.value.field == "page_token"


def test_a_token_from_another_user_is_refused(shared_cluster, payer):
    token = raw_search(payer, page_size=5).next_page_token
    with shared_cluster.client() as lea:
        lea.authenticate("lea", "password123")
        with pytest.raises(InvalidInput, match="another query"):
            lea.search_page(page_size=5, page_token=token)


@pytest.mark.parametrize(
    "token",
    [
        "not base64 at all!",
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        base64.urlsafe_b64encode(json.dumps([1, "x", "no", 3]).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps([9, "x", 1, "id"]).encode()).decode(),
        "A" * 300,  # over the field's limit: refused before the handler
    ],
)
def test_a_forged_token_is_refused_with_a_clear_message(payer, token):
    with pytest.raises(grpc.RpcError) as caught:
        raw_search(payer, page_size=5, page_token=token)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = caught.value.details()
    assert "page_token" in details and token not in details


def test_a_page_size_over_the_maximum_is_read_as_the_maximum(shared_cluster, payer):
    """Old payments are loaded into the stopped gateway's file (as paykit bench --preload does)."""
    shared_cluster.stop_server("gateway")
    with sqlite3.connect(shared_cluster.gateway_db()) as conn:
        # Three payments a millisecond: pages must break ties (by id) to miss none.
        rows = [
            (uuid.uuid4().hex, "kim", str(uuid.uuid4()), "BankA", "kim-acct", "BankB", "x", 1, t)
            for t in (1_000_000 + i // 3 for i in range(HISTORY))
        ]
        payments.insert_history(conn, rows)
    conn.close()
    shared_cluster.restart("gateway")
    payer.authenticate("kim", "password123")
    reply = raw_search(payer, page_size=SEARCH_PAGE_MAX * 5)
    assert len(reply.payments) == SEARCH_PAGE_MAX and reply.next_page_token
    rest = raw_search(payer, page_size=SEARCH_PAGE_MAX, page_token=reply.next_page_token)
    ids = [p.payment_id for p in (*reply.payments, *rest.payments)]
    assert len(set(ids)) == len(ids)
    total = PAID + 2 + HISTORY  # kim's, lea's to kim, the one paid while paging, the history
    assert len(rest.payments) == total - SEARCH_PAGE_MAX and rest.next_page_token == ""
    assert rest.payments[-1].created_unix_ms == 1_000_000  # the oldest comes last
