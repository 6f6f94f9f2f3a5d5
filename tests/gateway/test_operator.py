"""The read-only OperatorService against real servers: every bank's accounts with balance and
holds, the payments in flight, page tokens, a bank that is down, and only the operator's
certificate may ask (the client's is refused)."""

from __future__ import annotations

import threading
import uuid

import grpc
import pytest
from conftest import PASSWORD, signed_in
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from paykit import cli
from paykit.client.operator import OperatorClient
from paykit.lab.check import read_bank, total_money
from paykit.lab.lessons import wait_until
from paykit.rpc.channels import secure_channel
from paykit.rpc.pki import CLIENT_CN, GATEWAY_CN, OPERATOR_CN, bundle_files, ensure_identity
from paykit.v1 import payment_pb2 as pb
from paykit.v1 import payment_pb2_grpc as pb_grpc

CLUSTER = {"banks": ("BankA", "BankB"), "prepare_timeout_s": 20.0}
TIMEOUT_S = 10.0


def channel_as(cluster, holder: str, address: str | None = None) -> grpc.Channel:
    return secure_channel(
        address or cluster.gateway_address,
        ensure_identity(cluster.pki_dir, holder),
        server_name=GATEWAY_CN if address is None else None,
    )


@pytest.fixture(scope="module")
def operator_stub(shared_cluster):
    with channel_as(shared_cluster, OPERATOR_CN) as channel:
        yield pb_grpc.OperatorServiceStub(channel)


def file_books(cluster) -> dict[tuple[str, str], tuple[int, int]]:
    """(bank, account) -> (balance, held), read from each bank's own SQLite file."""
    books = {}
    for bank in cluster.bank_names:
        b = read_bank(bank, cluster.bank_db(bank))
        books |= {(bank, a): (v, b.held[a]) for a, v in b.balances.items()}
    return books


def test_the_books_list_every_account_of_every_bank(shared_cluster):
    with signed_in(shared_cluster, "uma", "uma-acct", "500", "BankA") as uma:
        uma.pay("BankB", "recipient123", "12.34")
    books = shared_cluster.books()
    assert books.attrs["unreachable"] == []
    seen = {(r.bank, r.account_id): (r.balance_minor, r.held_minor) for r in books.itertuples()}
    assert seen == file_books(shared_cluster)
    assert books["balance_minor"].sum() == total_money(shared_cluster)
    assert (books["available_minor"] == books["balance_minor"] - books["held_minor"]).all()
    assert list(shared_cluster.books("BankB")["bank"].unique()) == ["BankB"]


def test_pages_across_banks_visit_every_account_once(shared_cluster, operator_stub):
    for i in range(4):
        signed_in(shared_cluster, f"vic{i}", f"vic{i}-acct", "1", "BankA").close()
    pages, token = [], ""
    while True:
        reply = operator_stub.ListAccounts(
            pb.ListAccountsRequest(page_size=3, page_token=token), timeout=TIMEOUT_S
        )
        assert len(reply.accounts) <= 3
        pages += [(a.bank, a.account_id) for a in reply.accounts]
        token = reply.next_page_token
        if not token:
            break
    assert pages == sorted(file_books(shared_cluster))  # by bank, then account id; none twice
    with pytest.raises(grpc.RpcError) as caught:  # a token from another query (one bank only)
        operator_stub.ListAccounts(
            pb.ListAccountsRequest(
                bank="BankB", page_size=3, page_token=_first_token(operator_stub)
            ),
            timeout=TIMEOUT_S,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token belongs to another query" in caught.value.details()


def _first_token(stub) -> str:
    return stub.ListAccounts(pb.ListAccountsRequest(page_size=1), timeout=TIMEOUT_S).next_page_token


def in_flight_pages(stub, page_size: int) -> list[list[pb.InFlightPayment]]:
    pages, token = [], ""
    while True:
        request = pb.ListInFlightPaymentsRequest(page_size=page_size, page_token=token)
        reply = stub.ListInFlightPayments(request, timeout=TIMEOUT_S)
        pages.append(list(reply.payments))
        token = reply.next_page_token
        if not token:
            return pages


def test_holds_and_payments_in_flight_are_seen_while_a_bank_hangs(shared_cluster, operator_stub):
    signed_in(shared_cluster, "wes", "wes-acct", "100", "BankA").close()
    payers = [shared_cluster.session(timeout_s=30) for _ in range(3)]
    for payer in payers:
        payer.authenticate("wes", PASSWORD)
    shared_cluster.pause("BankB")  # BankB never votes: BankA holds the debits, nothing decided
    outcomes = []
    paying = [
        threading.Thread(
            target=lambda p=payer: outcomes.append(
                p.pay("BankB", "recipient123", 1000, str(uuid.uuid4()))
            )
        )
        for payer in payers
    ]
    for thread in paying:
        thread.start()
    try:
        wait_until(
            lambda: len(in_flight_pages(operator_stub, 100)[0]) == 3,
            TIMEOUT_S,
            what="three payments in flight",
        )
        pages = in_flight_pages(operator_stub, 1)  # a page each, oldest first
        assert [len(page) for page in pages] == [1, 1, 1]
        flight = [page[0] for page in pages]
        assert [f.payment.created_unix_ms for f in flight] == sorted(
            f.payment.created_unix_ms for f in flight
        )
        assert {(f.username, f.payment.status, f.payment.amount_minor) for f in flight} == {
            ("wes", pb.PAYMENT_STATUS_PENDING, 1000)
        }
        assert len({f.payment.payment_id for f in flight}) == 3
        row = shared_cluster.books("BankA").query("account_id == 'wes-acct'").iloc[0]
        assert (row.held_minor, row.balance_minor, row.available_minor) == (3000, 10000, 7000)
    finally:
        shared_cluster.resume("BankB")
        for thread in paying:
            thread.join(60)
        for payer in payers:
            payer.close()
    assert [p.status for p in outcomes] == [pb.PAYMENT_STATUS_SUCCEEDED] * 3
    wait_until(lambda: shared_cluster.in_flight().empty, TIMEOUT_S, what="the payments settled")
    row = shared_cluster.books("BankA").query("account_id == 'wes-acct'").iloc[0]
    assert (row.balance_minor, row.held_minor) == (7000, 0)


def test_a_bank_that_is_down_is_named_and_the_others_are_listed(shared_cluster):
    shared_cluster.kill("BankB")
    try:
        books = shared_cluster.books()
        assert books.attrs["unreachable"] == ["BankB"]
        assert set(books["bank"]) == {"BankA"} and len(books) > 0
    finally:
        shared_cluster.restart("BankB")
    # (the gateway's channel to BankB reconnects within its backoff)
    wait_until(
        lambda: shared_cluster.books().attrs["unreachable"] == [], 20.0, what="BankB listed again"
    )


def test_only_the_operator_certificate_may_read_the_books(shared_cluster):
    with channel_as(shared_cluster, CLIENT_CN) as channel:
        for call, request in (
            (pb_grpc.OperatorServiceStub(channel).ListAccounts, pb.ListAccountsRequest()),
            (
                pb_grpc.OperatorServiceStub(channel).ListInFlightPayments,
                pb.ListInFlightPaymentsRequest(),
            ),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                call(request, timeout=TIMEOUT_S)
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "paykit-client certificate may not call" in caught.value.details()
    bank = shared_cluster.bank_address("BankA")
    with channel_as(shared_cluster, CLIENT_CN, bank) as channel:
        with pytest.raises(grpc.RpcError) as caught:  # nor ask a bank directly
            pb_grpc.BankStub(channel).ListAccounts(pb.BankListAccountsRequest(), timeout=TIMEOUT_S)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with channel_as(shared_cluster, OPERATOR_CN, bank) as channel:
        stub = pb_grpc.BankStub(channel)
        assert stub.ListAccounts(pb.BankListAccountsRequest(), timeout=TIMEOUT_S).accounts
        with pytest.raises(grpc.RpcError) as caught:  # read only: it cannot move money
            stub.Commit(pb.CommitRequest(txn_id="x.debit"), timeout=TIMEOUT_S)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with channel_as(shared_cluster, OPERATOR_CN) as channel:
        with pytest.raises(grpc.RpcError) as caught:  # nor act as a user
            pb_grpc.GatewayStub(channel).Register(
                pb.RegisterRequest(username="op", password=PASSWORD, account_id="op-acct"),
                timeout=TIMEOUT_S,
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_pki_export_writes_the_operator_bundle_and_it_reads_the_books(
    shared_cluster, tmp_path, capsys
):
    root = shared_cluster.pki_dir  # the cluster's PKI root, which holds its CA
    assert cli.main(["pki", "export", "operator", str(tmp_path / "op"), "--dir", str(root)]) == 0
    assert "OperatorService" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "op").iterdir()) == [
        "ca.pem",
        f"{OPERATOR_CN}.key",
        f"{OPERATOR_CN}.pem",
    ]
    cert = x509.load_pem_x509_certificate((tmp_path / "op" / f"{OPERATOR_CN}.pem").read_bytes())
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]  # it calls, it never serves
    with OperatorClient(
        shared_cluster.gateway_address, bundle_files(tmp_path / "op", OPERATOR_CN)
    ) as operator:
        assert {b.bank for b in operator.accounts().accounts} == {"BankA", "BankB"}
