"""OperatorClient: the read-only OperatorService of a gateway, for the operator's certificate.

Every bank's accounts with their balance and holds, and the payments in flight, read page by
page until the last: what a teacher or an outside checker needs to see the books without signing
in as every user. `paykit pki export operator DIR` writes the certificate bundle it needs;
LocalCluster.books() and .in_flight() use it on a local cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Self

import grpc

from paykit.client.models import Balance, Payment
from paykit.core.config import CALL_TIMEOUT_S, TLSFiles
from paykit.rpc.channels import secure_channel
from paykit.rpc.pki import GATEWAY_CN
from paykit.rpc.status import from_rpc_error
from paykit.v1 import payment_pb2 as pb
from paykit.v1 import payment_pb2_grpc as pb_grpc


@dataclass(frozen=True)
class InFlight:
    """A payment not settled yet: undecided (status pending), or decided and waiting for a
    bank to apply it (debit_acked / credit_acked say which did)."""

    payment: Payment
    username: str
    debit_acked: bool
    credit_acked: bool


@dataclass(frozen=True)
class Accounts:
    accounts: list[Balance]
    unreachable: list[str] = field(default_factory=list)  # banks that did not answer


class OperatorClient:
    def __init__(self, gateway: str, tls: TLSFiles, *, timeout_s: float = CALL_TIMEOUT_S):
        self.timeout_s = timeout_s
        self.channel = secure_channel(gateway, tls, server_name=GATEWAY_CN)  # the real gateway
        self.stub = pb_grpc.OperatorServiceStub(self.channel)

    def _call(self, method: str, request):
        try:
            return getattr(self.stub, method)(request, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None

    def accounts(self, bank: str = "") -> Accounts:
        """Every account of every bank (or of `bank`), by bank then account id."""
        found, unreachable, token = [], [], ""
        while True:
            reply = self._call("ListAccounts", pb.ListAccountsRequest(bank=bank, page_token=token))
            found += [
                Balance(a.bank, a.account_id, a.balance_minor, a.held_minor, a.available_minor)
                for a in reply.accounts
            ]
            unreachable += [b for b in reply.unreachable if b not in unreachable]
            token = reply.next_page_token
            if not token:
                return Accounts(found, unreachable)

    def in_flight(self) -> list[InFlight]:
        """Every payment not settled yet, oldest first."""
        found, token = [], ""
        while True:
            request = pb.ListInFlightPaymentsRequest(page_token=token)
            reply = self._call("ListInFlightPayments", request)
            found += [
                InFlight(Payment.from_pb(p.payment), p.username, p.debit_acked, p.credit_acked)
                for p in reply.payments
            ]
            token = reply.next_page_token
            if not token:
                return found

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
