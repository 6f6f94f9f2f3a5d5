"""The gateway's side of the bank channels: the coordinator's `Participants`, over gRPC."""

from __future__ import annotations

from concurrent import futures

import grpc

from paykit.core.config import TLSFiles
from paykit.core.errors import UnknownBank
from paykit.core.twopc import CREDIT, DEBIT, Vote
from paykit.rpc.channels import secure_channel
from paykit.rpc.interceptors import outgoing_metadata
from paykit.rpc.pki import bank_cn
from paykit.rpc.status import from_rpc_error
from paykit.v1 import payment_pb2 as pb
from paykit.v1 import payment_pb2_grpc as pb_grpc

LEGS = {DEBIT: pb.LEG_DEBIT, CREDIT: pb.LEG_CREDIT}
BANK_CALL_TIMEOUT_S = 5.0
PREPARE_SENDERS = (
    32  # threads sending Prepares: as many as the gateway has workers, each sends 2 at most
)


class BankChannels:
    """One mutual-TLS channel per bank, made once and shared by all calls."""

    def __init__(self, banks: dict[str, str], tls: TLSFiles) -> None:
        self.addresses = dict(banks)
        self._stubs = {
            name: pb_grpc.BankStub(secure_channel(addr, tls, server_name=bank_cn(name)))
            for name, addr in banks.items()
        }
        # Prepares go out as blocking calls on these threads, not as .future() calls: grpcio
        # completes a blocking call on its own queue, a future on the channel's shared spin
        # thread, which cost about 2 ms more per Prepare round trip (paykit bench, 1 payer).
        self._senders = futures.ThreadPoolExecutor(PREPARE_SENDERS, "prepare")

    @property
    def names(self) -> list[str]:
        return list(self.addresses)

    def stub(self, bank: str) -> pb_grpc.BankStub:
        try:
            return self._stubs[bank]
        except KeyError:
            raise UnknownBank(
                f"unknown bank {bank!r}; this gateway knows {', '.join(self.addresses)}"
            ) from None

    def call(self, bank: str, method: str, request, timeout_s: float = BANK_CALL_TIMEOUT_S):
        """A unary call to a bank; failures come back as paykit errors."""
        try:
            return getattr(self.stub(bank), method)(
                request, timeout=timeout_s, metadata=outgoing_metadata()
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None

    # -- coordinator.Participants ----------------------------------------------

    def prepare(
        self, bank, txn_id, leg, account_id, amount_minor, coordinator, timeout_s
    ) -> futures.Future[Vote]:
        request = pb.PrepareRequest(
            txn_id=txn_id,
            leg=LEGS[leg],
            account_id=account_id,
            amount_minor=amount_minor,
            coordinator=coordinator,
        )
        return self._senders.submit(self._vote, bank, request, timeout_s, outgoing_metadata())

    def _vote(self, bank: str, request: pb.PrepareRequest, timeout_s: float, metadata) -> Vote:
        """One Prepare call; a bank that cannot answer votes NO, with why."""
        try:
            reply = self.stub(bank).Prepare(request, timeout=timeout_s, metadata=metadata)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                return Vote(False, "BANK_TIMEOUT", f"{bank} did not vote in time")
            return Vote(False, "BANK_UNAVAILABLE", f"{bank} could not vote: {from_rpc_error(exc)}")
        return Vote(reply.vote == pb.VOTE_YES, reply.reason, reply.message)

    def decide(self, bank, txn_id, commit, timeout_s) -> None:
        self.call(
            bank, "Commit" if commit else "Abort", pb.DecisionRequest(txn_id=txn_id), timeout_s
        )
