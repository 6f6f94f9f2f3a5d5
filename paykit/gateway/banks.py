"""The gateway's side of the bank channels: the coordinator's `Participants`, over gRPC.

With batching on (the default), each bank has a natural batcher (paykit.gateway.batcher):
the Prepares, Commits and Aborts that wait while a batch to that bank is in flight go
together in one Exchange call, and the coordinator still sees one vote and one
acknowledgement per leg. With it off, each leg is its own unary Prepare, Commit or Abort,
as tools and lessons call them.
"""

from __future__ import annotations

import time
from concurrent import futures
from dataclasses import dataclass

import grpc

from paykit.core.config import TLSFiles
from paykit.core.errors import PaykitError, Unavailable, UnknownBank, from_reason
from paykit.core.twopc import BATCH_LEGS_MAX, CREDIT, DEBIT, Vote
from paykit.gateway.batcher import Batcher
from paykit.rpc.channels import secure_channel
from paykit.rpc.interceptors import outgoing_metadata
from paykit.rpc.pki import bank_cn
from paykit.rpc.status import from_rpc_error
from paykit.v1 import payment_pb2 as pb
from paykit.v1 import payment_pb2_grpc as pb_grpc

LEGS = {DEBIT: pb.LEG_DEBIT, CREDIT: pb.LEG_CREDIT}
BANK_CALL_TIMEOUT_S = 5.0
# Threads sending unary Prepares: as many as the gateway has workers, each sends 2 at most.
PREPARE_SENDERS = 32


@dataclass(slots=True)
class _Leg:
    """A leg waiting for its bank's next batch."""

    request: pb.PrepareRequest | pb.LegDecision
    deadline: float  # time.monotonic() after which nobody waits for it any more


class BankChannels:
    """One mutual-TLS channel per bank, made once and shared by all calls."""

    def __init__(self, banks: dict[str, str], tls: TLSFiles, *, batching: bool = True) -> None:
        self.addresses = dict(banks)
        self.batching = batching
        self._stubs = {
            name: pb_grpc.BankStub(secure_channel(addr, tls, server_name=bank_cn(name)))
            for name, addr in banks.items()
        }
        # Prepares go out as blocking calls on these threads, not as .future() calls: grpcio
        # completes a blocking call on its own queue, a future on the channel's shared spin
        # thread, which cost about 2 ms more per Prepare round trip (paykit bench, 1 payer).
        size = len(banks) if batching else PREPARE_SENDERS
        self._senders = futures.ThreadPoolExecutor(size, "bank-send")
        # With batching, a bank's batches are sent one at a time: one thread per bank suffices.
        self._batchers = {bank: self._batcher(bank) for bank in banks}

    def _batcher(self, bank: str) -> Batcher:
        return Batcher(
            lambda legs: self._exchange(bank, legs),
            lambda leg, exc: _leg_failed(bank, leg, exc),
            self._senders,
            BATCH_LEGS_MAX,
        )

    @property
    def names(self) -> list[str]:
        return list(self.addresses)

    def stub(self, bank: str) -> pb_grpc.BankStub:
        try:
            return self._stubs[bank]
        except KeyError:
            raise UnknownBank(
                f"unknown bank {bank[:32]!r}; this gateway knows {', '.join(self.addresses)}"
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
            request_id=_request_id(),
        )
        self.stub(bank)  # UnknownBank now, not inside a batch
        if self.batching:
            return self._batchers[bank].submit(_Leg(request, time.monotonic() + timeout_s))
        metadata = outgoing_metadata()
        return self._senders.submit(self._vote, bank, request, timeout_s, metadata)

    def _vote(self, bank: str, request: pb.PrepareRequest, timeout_s: float, metadata) -> Vote:
        """One unary Prepare; a bank that cannot answer votes NO, with why."""
        try:
            reply = self.stub(bank).Prepare(request, timeout=timeout_s, metadata=metadata)
        except grpc.RpcError as exc:
            return _vote_failed(bank, exc)
        return Vote(reply.vote == pb.VOTE_YES, reply.reason, reply.message)

    def decide(self, bank, txn_id, commit, timeout_s) -> None:
        if not self.batching:
            request = pb.CommitRequest if commit else pb.AbortRequest
            self.call(bank, "Commit" if commit else "Abort", request(txn_id=txn_id), timeout_s)
            return
        decision = pb.LegDecision(
            txn_id=txn_id,
            request_id=_request_id(),
            decision=pb.DECISION_COMMIT if commit else pb.DECISION_ABORT,
        )
        leg = _Leg(decision, time.monotonic() + timeout_s)
        ack = self._batchers[bank].submit(leg, inline=True)  # this thread waits for it anyway
        try:
            failure = ack.result(timeout=timeout_s)
        except futures.TimeoutError:  # still queued or in flight: the redriver sends it again
            raise Unavailable(f"{bank} did not acknowledge in time") from None
        if failure is not None:
            raise failure

    # -- batches ----------------------------------------------------------------

    def _exchange(self, bank: str, legs: list[_Leg]) -> list[Vote | PaykitError | None]:
        """One Exchange of the waiting legs: a Vote per Prepare (NO for one nobody waits for
        any more, which is not sent), and per decision None (applied) or why it was not."""
        now = time.monotonic()
        late = Vote(False, "BANK_TIMEOUT", f"{bank} did not vote in time")
        if len(legs) == 1 and legs[0].deadline > now:  # alone: the unary call, which costs less
            return [self._one(bank, legs[0], max(0.05, legs[0].deadline - now))]
        prepares = [leg for leg in legs if _is_prepare(leg) and leg.deadline > now]
        decisions = [leg for leg in legs if not _is_prepare(leg)]
        answers: dict[int, Vote | PaykitError | None] = {}
        if len(prepares) + len(decisions) == 1:  # the others were late: this one goes alone
            (leg,) = prepares + decisions
            answers[id(leg)] = self._one(bank, leg, max(0.05, leg.deadline - now))
        elif prepares or decisions:
            timeout_s = max(0.05, max(leg.deadline for leg in prepares + decisions) - now)
            request = pb.ExchangeRequest(
                prepares=[leg.request for leg in prepares],
                decisions=[leg.request for leg in decisions],
            )
            reply = self.stub(bank).Exchange(request, timeout=timeout_s)
            for leg, vote in zip(prepares, reply.votes, strict=True):
                answers[id(leg)] = Vote(vote.vote == pb.VOTE_YES, vote.reason, vote.message)
            for leg, ack in zip(decisions, reply.acks, strict=True):
                failed = ack.error_reason and from_reason(ack.error_reason)(ack.error_message)
                answers[id(leg)] = failed or None
        return [answers.get(id(leg), late) for leg in legs]

    def _one(self, bank: str, leg: _Leg, timeout_s: float) -> Vote | PaykitError | None:
        """A batch of one leg, as a unary Prepare, Commit or Abort (the bank answers it the same
        way; a batch of one is what a lone payer sends, and the unary handlers do less work)."""
        stub, rid = self.stub(bank), leg.request.request_id
        metadata = (("x-request-id", rid),) if rid else ()  # as a unary call carries it
        if _is_prepare(leg):  # a failure fails the batch: the batcher makes it a NO vote
            reply = stub.Prepare(leg.request, timeout=timeout_s, metadata=metadata)
            return Vote(reply.vote == pb.VOTE_YES, reply.reason, reply.message)
        commit = leg.request.decision == pb.DECISION_COMMIT
        call, request = (stub.Commit, pb.CommitRequest) if commit else (stub.Abort, pb.AbortRequest)
        try:
            call(request(txn_id=leg.request.txn_id), timeout=timeout_s, metadata=metadata)
        except grpc.RpcError as exc:
            return from_rpc_error(exc)
        return None


def _is_prepare(leg: _Leg) -> bool:
    return isinstance(leg.request, pb.PrepareRequest)


def _leg_failed(bank: str, leg: _Leg, exc: BaseException) -> Vote | PaykitError:
    """A leg's answer when its whole Exchange failed: a NO vote, or the error decide() raises."""
    if _is_prepare(leg):
        return _vote_failed(bank, exc)
    if isinstance(exc, grpc.RpcError):
        return from_rpc_error(exc)
    return Unavailable(f"the decision could not be sent to {bank}: {exc}")


def _request_id() -> str:
    """The x-request-id of the client call being served (for the bank's log), or ""."""
    return dict(outgoing_metadata()).get("x-request-id", "")


def _vote_failed(bank: str, exc: BaseException) -> Vote:
    """The NO vote of a leg whose Prepare (or whole batch) failed."""
    if isinstance(exc, grpc.RpcError) and exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        return Vote(False, "BANK_TIMEOUT", f"{bank} did not vote in time")
    error = from_rpc_error(exc) if isinstance(exc, grpc.RpcError) else exc
    return Vote(False, "BANK_UNAVAILABLE", f"{bank} could not vote: {error}")
