"""The gateway's side of the bank channels: the coordinator's `Participants`, over gRPC."""

from __future__ import annotations

from concurrent import futures

import grpc

from paykit.config import TLSFiles
from paykit.errors import UnknownBank
from paykit.interceptors import outgoing_metadata
from paykit.ledger import CREDIT, DEBIT, Vote
from paykit.pki import bank_cn
from paykit.rpc import from_rpc_error, secure_channel
from paykit.v1 import payment_pb2 as pb
from paykit.v1 import payment_pb2_grpc as pb_grpc

LEGS = {DEBIT: pb.LEG_DEBIT, CREDIT: pb.LEG_CREDIT}
BANK_CALL_TIMEOUT_S = 5.0
PREPARE_SENDERS = 32  # threads sending Prepares: as many as the gateway has workers, each sends 2 at most


class _PendingVote:
    def __init__(self, bank: str, future: futures.Future) -> None:
        self.bank = bank
        self.future = future

    def wait(self, timeout_s: float) -> Vote:
        try:
            reply = self.future.result(timeout=timeout_s)
        except futures.TimeoutError:  # the call itself ends at its own deadline
            return Vote(False, "BANK_TIMEOUT", f"{self.bank} did not vote in time")
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                return Vote(False, "BANK_TIMEOUT", f"{self.bank} did not vote in time")
            return Vote(False, "BANK_UNAVAILABLE", f"{self.bank} could not vote: {from_rpc_error(exc)}")
        return Vote(reply.vote == pb.VOTE_YES, reply.reason, reply.message)


class BankChannels:
    """One mutual-TLS channel per bank, made once and shared by all calls."""

    def __init__(self, banks: dict[str, str], tls: TLSFiles) -> None:
        self.addresses = dict(banks)
        self._stubs = {name: pb_grpc.BankStub(secure_channel(addr, tls, server_name=bank_cn(name)))
                       for name, addr in banks.items()}
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
            raise UnknownBank(f"unknown bank {bank!r}; this gateway knows {', '.join(self.addresses)}") from None

    def call(self, bank: str, method: str, request, timeout_s: float = BANK_CALL_TIMEOUT_S):
        """A unary call to a bank; failures come back as paykit errors."""
        try:
            return getattr(self.stub(bank), method)(request, timeout=timeout_s, metadata=outgoing_metadata())
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None

    # -- coordinator.Participants ----------------------------------------------

    def prepare(self, bank, txn_id, leg, account_id, amount_minor, coordinator, timeout_s):
        request = pb.PrepareRequest(txn_id=txn_id, leg=LEGS[leg], account_id=account_id,
                                    amount_minor=amount_minor, coordinator=coordinator)
        send = self.stub(bank).Prepare
        return _PendingVote(bank, self._senders.submit(send, request, timeout=timeout_s, metadata=outgoing_metadata()))

    def decide(self, bank, txn_id, commit, timeout_s):
        self.call(bank, "Commit" if commit else "Abort", pb.DecisionRequest(txn_id=txn_id), timeout_s)
