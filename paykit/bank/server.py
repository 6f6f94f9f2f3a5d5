"""A bank server: the thin gRPC shell around a 2PC participant, plus its in-doubt resolver.

The participant's rules live behind paykit.bank.participant.Participant: by default the
production LedgerParticipant, or a lab student's class (`paykit bank --participant-class
module:Class`). Everything else here (accounts, events, failpoints, asking) is the kit's.

A bank that voted YES never decides alone: a background thread asks the coordinator
(GetDecision) about every transaction still prepared after a moment, across restarts,
and applies the answer; PENDING or no answer means keep the hold and ask again. It asks at the
address the Prepare named, unless the bank was given one (`--coordinator`).
"""

from __future__ import annotations

import threading

import grpc

from paykit.bank.ledger import PrepareLeg, check_batch
from paykit.bank.participant import (
    LedgerParticipant,
    LegStore,
    Participant,
    load_participant_class,
)
from paykit.core import eventlog, failpoints, paging
from paykit.core.config import BankConfig, TLSFiles
from paykit.core.errors import InvalidInput, PaykitError
from paykit.core.twopc import CREDIT, DEBIT, Decision
from paykit.rpc.channels import secure_channel
from paykit.rpc.interceptors import note, request_id
from paykit.rpc.pki import GATEWAY_CN
from paykit.rpc.serving import SERVICE_NAMES, Server
from paykit.rpc.status import from_rpc_error, servicer_method
from paykit.v1 import payment_pb2 as pb
from paykit.v1 import payment_pb2_grpc as pb_grpc

RESOLVE_EVERY_S = 0.5
ACCOUNTS_PAGE_DEFAULT = 500  # ListAccounts' page_size 0
ACCOUNTS_PAGE_MAX = 5000  # a larger page_size is read as this
LEGS = {pb.LEG_DEBIT: DEBIT, pb.LEG_CREDIT: CREDIT}
DECISIONS = {pb.DECISION_COMMIT: Decision.COMMIT, pb.DECISION_ABORT: Decision.ABORT}


class BankServicer(pb_grpc.BankServicer):
    def __init__(self, participant: Participant) -> None:
        self.participant = participant
        self.ledger = participant.store.ledger  # accounts and balances are the kit's

    def _balance(self, account_id: str) -> pb.BankGetBalanceResponse:
        b = self.ledger.balance(account_id)
        return pb.BankGetBalanceResponse(
            bank=self.ledger.bank,
            account_id=account_id,
            balance_minor=b.balance_minor,
            held_minor=b.held_minor,
            available_minor=b.available_minor,
        )

    @servicer_method
    def ListAccounts(self, request, context):
        size = paging.page_size(
            request.page_size, default=ACCOUNTS_PAGE_DEFAULT, maximum=ACCOUNTS_PAGE_MAX
        )
        found = self.ledger.accounts(after=request.start_after_account_id, limit=size)
        return pb.BankListAccountsResponse(
            accounts=[
                pb.Account(
                    bank=self.ledger.bank,
                    account_id=b.account_id,
                    balance_minor=b.balance_minor,
                    held_minor=b.held_minor,
                    available_minor=b.available_minor,
                )
                for b in found
            ]
        )

    @servicer_method
    def OpenAccount(self, request, context):
        if self.ledger.open_account(
            request.account_id, request.opening_balance_minor, request.opened_for
        ):
            eventlog.event(
                "account.opened",
                account_id=request.account_id,
                amount_minor=request.opening_balance_minor,
            )
        else:
            eventlog.event("account.open_retried", account_id=request.account_id)
        return pb.OpenAccountResponse(bank=self.ledger.bank, account_id=request.account_id)

    @servicer_method
    def GetBalance(self, request, context):
        return self._balance(request.account_id)

    @servicer_method
    def Prepare(self, request, context):
        note(txn_id=request.txn_id, amount_minor=request.amount_minor)
        leg = _prepare_leg(request)
        leg.check()  # bad input is refused before the participant sees it
        vote = self.participant.prepare(leg)
        eventlog.event(
            "2pc.voted",
            txn_id=request.txn_id,
            vote="yes" if vote.yes else "no",
            reason=vote.reason or None,
            request_id=request_id(),
        )
        if vote.yes:
            failpoints.hit("bank.after_vote_yes_before_reply")
            context.add_callback(lambda: failpoints.hit("bank.after_reply_yes"))
        return _vote_pb(vote)

    @servicer_method
    def Exchange(self, request, context):
        """Many legs in one transaction: the decisions, then the Prepares; an answer per leg."""
        prepares, decisions = request.prepares, request.decisions
        note(legs=len(prepares) + len(decisions))
        check_batch(len(prepares) + len(decisions))
        acks: list[pb.LegAck | None] = [None] * len(decisions)
        todo = []  # (index, txn id, commit) of the decisions that can be applied
        for i, leg in enumerate(decisions):
            if leg.decision in (pb.DECISION_COMMIT, pb.DECISION_ABORT):
                todo.append((i, leg.txn_id, leg.decision == pb.DECISION_COMMIT))
            else:
                acks[i] = pb.LegAck(
                    error_reason=InvalidInput.reason,
                    error_message="a leg's decision must be COMMIT or ABORT",
                )
        results, votes = self.participant.apply_batch(
            [(txn, commit) for _, txn, commit in todo], [_prepare_leg(leg) for leg in prepares]
        )
        for (i, txn_id, commit), result in zip(todo, results, strict=True):
            acks[i] = _ack(txn_id, commit, result, decisions[i].request_id)
        for leg, vote in zip(prepares, votes, strict=True):
            eventlog.event(
                "2pc.voted",
                txn_id=leg.txn_id,
                vote="yes" if vote.yes else "no",
                reason=vote.reason or None,
                request_id=leg.request_id or None,
            )
        _after_batch(context, any(v.yes for v in votes), any(c for _, _, c in todo))
        return pb.ExchangeResponse(votes=[_vote_pb(vote) for vote in votes], acks=acks)

    @servicer_method
    def Commit(self, request, context):
        note(txn_id=request.txn_id)
        state = self.participant.commit(request.txn_id)
        eventlog.event("2pc.committed", txn_id=request.txn_id, request_id=request_id())
        failpoints.hit("bank.after_commit_before_ack")
        return pb.CommitResponse(state=state)

    @servicer_method
    def Abort(self, request, context):
        note(txn_id=request.txn_id)
        state = self.participant.abort(request.txn_id)
        eventlog.event("2pc.aborted", txn_id=request.txn_id, request_id=request_id())
        return pb.AbortResponse(state=state)


def _prepare_leg(leg: pb.PrepareRequest) -> PrepareLeg:
    return PrepareLeg(
        leg.txn_id, LEGS.get(leg.leg, ""), leg.account_id, leg.amount_minor, leg.coordinator
    )


def _vote_pb(vote) -> pb.PrepareResponse:
    return pb.PrepareResponse(
        vote=pb.VOTE_YES if vote.yes else pb.VOTE_NO, reason=vote.reason, message=vote.message
    )


def _after_batch(context, voted_yes: bool, committed: bool) -> None:
    """The failpoints of the unary calls, at the same moments of a batch."""
    if committed:
        failpoints.hit("bank.after_commit_before_ack")
    if voted_yes:
        failpoints.hit("bank.after_vote_yes_before_reply")
        context.add_callback(lambda: failpoints.hit("bank.after_reply_yes"))


def _ack(txn_id: str, commit: bool, result, request_id: str) -> pb.LegAck:
    """A leg's ack, and its event (the same events as the unary Commit and Abort)."""
    if isinstance(result, PaykitError):
        return pb.LegAck(error_reason=result.reason, error_message=result.message)
    event = "2pc.committed" if commit else "2pc.aborted"
    eventlog.event(event, txn_id=txn_id, request_id=request_id or None)
    return pb.LegAck(state=result)


class InDoubtResolver:
    """Every RESOLVE_EVERY_S, lets the participant resolve what it is in doubt about; `ask` is
    its way to the coordinator (GetDecision), None when no answer came."""

    def __init__(
        self, participant: Participant, tls: TLSFiles, ask_after_s: float, coordinator: str = ""
    ) -> None:
        self.participant = participant
        self.tls = tls
        self.ask_after_ms = int(ask_after_s * 1000)
        self.coordinator = coordinator  # overrides the address in each Prepare when set
        self._stubs: dict[str, pb_grpc.CoordinatorStub] = {}
        self._stop = threading.Event()

    def _stub(self, address: str) -> pb_grpc.CoordinatorStub:
        if address not in self._stubs:
            self._stubs[address] = pb_grpc.CoordinatorStub(
                secure_channel(address, self.tls, server_name=GATEWAY_CN)
            )
        return self._stubs[address]

    def ask(self, txn_id: str, named: str) -> Decision | None:
        coordinator = self.coordinator or named
        if not coordinator:
            return None
        try:
            answer = self._stub(coordinator).GetDecision(
                pb.GetDecisionRequest(txn_id=txn_id), timeout=1.0
            )
        except grpc.RpcError as exc:
            eventlog.event("2pc.in_doubt", txn_id=txn_id, error=str(from_rpc_error(exc)))
            return None
        return DECISIONS.get(answer.decision, Decision.PENDING)

    def resolve_once(self) -> int:
        final: dict[str, Decision] = {}

        def ask(txn_id: str, coordinator: str) -> Decision | None:
            answer = self.ask(txn_id, coordinator)
            if answer in (Decision.COMMIT, Decision.ABORT):
                final[txn_id] = answer
            return answer

        resolved = self.participant.resolve(ask, self.ask_after_ms)
        store = self.participant.store
        for txn_id, answer in final.items():  # the answers the participant has applied
            leg = store.leg(txn_id)
            if leg is not None and leg.state != "prepared":
                eventlog.event("2pc.resolved", txn_id=txn_id, decision=f"DECISION_{answer.name}")
        return resolved

    def run(self) -> None:
        while not self._stop.wait(RESOLVE_EVERY_S):
            try:
                self.resolve_once()
            except Exception as exc:  # keep asking: a hold must never be forgotten
                eventlog.event("2pc.resolver_error", error=repr(exc))

    def start(self) -> None:
        threading.Thread(target=self.run, name="in-doubt", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


def serve(cfg: BankConfig, *, exit_on_stdin_eof: bool = False) -> None:
    """Runs a bank until SIGTERM/SIGINT (or its parent's death)."""
    # A student's class that does not load is refused before anything starts.
    cls = load_participant_class(cfg.participant_class) if cfg.participant_class else None
    server = Server(
        name=cfg.name,
        host=cfg.host,
        port=cfg.port,
        data_dir=cfg.data_dir,
        tls=cfg.tls,
        workers=cfg.workers,
        failpoints_enabled=cfg.failpoints,
    )
    store = LegStore(cfg.data_dir / f"{cfg.name}.db", bank=cfg.name)
    participant = (cls or LedgerParticipant)(store)
    if cls is not None:
        eventlog.event("bank.participant", cls=cfg.participant_class)
    if cfg.seed_csv:
        opened = store.ledger.seed_from_csv(cfg.seed_csv)
        eventlog.event("bank.seeded", accounts=opened, source=cfg.seed_csv.name)
    server.add_services(
        [(pb_grpc.add_BankServicer_to_server, BankServicer(participant), SERVICE_NAMES["Bank"])]
    )
    server.start()
    resolver = InDoubtResolver(participant, cfg.tls, cfg.in_doubt_ask_after_s, cfg.coordinator)
    resolver.start()
    server.ready()
    server.serve_until_stopped(exit_on_stdin_eof=exit_on_stdin_eof)
    resolver.stop()
    participant.close()
