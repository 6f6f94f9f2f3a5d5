"""The OperatorService: the whole system's books, read only, for the operator's certificate.

Accounts come from the banks (Bank.ListAccounts), a page at a time, bank after bank in the
gateway's order; payments in flight come from the gateway's own log. A bank that does not answer
is named in the reply's `unreachable` (AIP-217) and skipped, so a teacher still sees the others
while one is down. Nothing here writes anything.
"""

from __future__ import annotations

from paykit.core import paging
from paykit.core.db import Database
from paykit.core.errors import InvalidInput, PaykitError, field_of
from paykit.gateway import payments
from paykit.gateway.banks import BankChannels
from paykit.rpc.status import servicer_method
from paykit.v1 import payment_pb2 as pb
from paykit.v1 import payment_pb2_grpc as pb_grpc

ACCOUNTS_PAGE_DEFAULT = 500
ACCOUNTS_PAGE_MAX = 5000  # as a bank's own ListAccounts: one bank call fills a page
IN_FLIGHT_PAGE_DEFAULT = 100
IN_FLIGHT_PAGE_MAX = 1000


class OperatorServicer(pb_grpc.OperatorServiceServicer):
    def __init__(self, db: Database, banks: BankChannels, payment_to_pb) -> None:
        self.db = db
        self.banks = banks
        self.payment_to_pb = payment_to_pb

    @servicer_method
    def ListAccounts(self, request, context):
        if request.bank:
            with field_of("bank"):
                self.banks.stub(request.bank)  # UnknownBank if not ours
        names = [request.bank] if request.bank else self.banks.names
        size = paging.page_size(
            request.page_size, default=ACCOUNTS_PAGE_DEFAULT, maximum=ACCOUNTS_PAGE_MAX
        )
        query = paging.fingerprint("ListAccounts", request.bank)
        start = paging.decode_token(request.page_token, query, (str, str)) or (names[0], "")
        if start[0] not in names:
            raise InvalidInput("page_token names a bank this gateway does not have")
        reply = pb.ListAccountsResponse()
        for bank in names[names.index(start[0]) :]:
            after = start[1] if bank == start[0] else ""
            want = size - len(reply.accounts)
            try:
                found = self._bank_page(bank, after, want + 1)  # one more: is there a next?
            except PaykitError:
                reply.unreachable.append(bank)
                continue
            reply.accounts.extend(found[:want])
            if len(found) > want:  # this bank has more: the next page goes on here
                last = reply.accounts[-1].account_id
                reply.next_page_token = paging.encode_token(query, (bank, last))
                return reply
            if len(reply.accounts) >= size:
                later = names[names.index(bank) + 1 :]
                if later:  # the next bank from its start
                    reply.next_page_token = paging.encode_token(query, (later[0], ""))
                return reply
        return reply

    def _bank_page(self, bank: str, after: str, size: int) -> list[pb.Account]:
        request = pb.BankListAccountsRequest(page_size=size, start_after_account_id=after)
        return list(self.banks.call(bank, "ListAccounts", request).accounts)

    @servicer_method
    def ListInFlightPayments(self, request, context):
        size = paging.page_size(
            request.page_size, default=IN_FLIGHT_PAGE_DEFAULT, maximum=IN_FLIGHT_PAGE_MAX
        )
        query = paging.fingerprint("ListInFlightPayments")
        after = paging.decode_token(request.page_token, query, (int, str))
        found = payments.in_flight(self.db.read(), limit=size + 1, after=after)
        page = found[:size]
        reply = pb.ListInFlightPaymentsResponse(
            payments=[
                pb.InFlightPayment(
                    payment=self.payment_to_pb(p),
                    username=p.username,
                    debit_acked=p.debit_acked,
                    credit_acked=p.credit_acked,
                )
                for p in page
            ]
        )
        if len(found) > size:
            reply.next_page_token = paging.encode_token(
                query, (page[-1].created_unix_ms, page[-1].payment_id)
            )
        return reply
