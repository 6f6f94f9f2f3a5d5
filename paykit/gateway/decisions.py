"""The coordinator's decision and recovery rules behind an interface (Lab B), over a kit.

The gateway keeps everything around the rules: the idempotency key and the payment row
(claimed before `run`), the client's response, events, failpoints. A `CoordinatorBase` decides:

    run(payment)              collect the votes, decide, log the decision, send it (per request)
    decision_for(payment_id)  what a bank asking GetDecision is told
    recover()                 at start, before serving
    redrive()                 every half second while serving

through a `CoordinatorKit`: `prepare` (both Prepares at once, votes as they come), the durable
decision log (`log_decision`, `logged`, `undecided`, `unsettled`) and `send` (one Commit or
Abort to one bank, its acknowledgement recorded). So the rules are written without SQL or gRPC.
`TwoPhaseRules` is the reference solution; the gateway runs it with `--coordinator-class`
(paykit/lab/labs/coordinator.py grades any other). Without the flag the gateway runs its own
Coordinator (paykit.gateway.coordinator), which follows the same rules with batching and
parallel sends.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import replace

from paykit.core import eventlog, failpoints
from paykit.core.clock import now_ms
from paykit.core.errors import InProgress
from paykit.core.twopc import CREDIT, DEBIT, Decision, Vote, leg_txn_id, payment_of
from paykit.gateway import payments
from paykit.gateway.coordinator import DRIVE_INLINE_S, Coordinator, log_vote
from paykit.gateway.payments import PaymentRecord

DOWN_FOR_S = 0.5  # a bank that did not acknowledge is skipped by `send` this long (redrive only)


class Ballot:
    """The votes of one payment's two Prepares, taken as they arrive, until one deadline."""

    def __init__(self, p: PaymentRecord, votes: dict[Future[Vote], tuple[str, str]], deadline):
        self._p = p
        self._waiting = votes
        self._deadline = deadline

    @property
    def waiting(self) -> int:
        """How many votes have not arrived yet."""
        return len(self._waiting)

    @property
    def silent(self) -> list[str]:
        """The banks whose vote has not arrived."""
        return [bank for _, bank in self._waiting.values()]

    def next_vote(self) -> tuple[str, Vote] | None:
        """The next vote to arrive, as (leg, vote), or None when the deadline passes first (the
        banks still silent did not vote in time). Each call takes one vote."""
        if not self._waiting:
            raise ValueError("every vote is in: there is no next vote")
        left_s = max(0.0, self._deadline - time.monotonic())
        done, _ = wait(self._waiting, left_s, return_when=FIRST_COMPLETED)
        if not done:
            for leg, bank in self._waiting.values():
                log_vote(self._p, leg, bank, Vote(False, "BANK_TIMEOUT"))
            return None
        future = next(iter(done))
        (leg, bank), vote = self._waiting.pop(future), future.result()
        log_vote(self._p, leg, bank, vote)
        return leg, vote


class CoordinatorKit:
    """What the rules are given: the banks, and the gateway's durable decision log."""

    def __init__(self, gateway: PluggedCoordinator) -> None:
        self._gw = gateway
        self.prepare_timeout_s = gateway.prepare_timeout_s
        # How long one send may retry at most, and how long a bank that did not acknowledge is
        # skipped by redrive sends: the grader shortens both to run many scenarios quickly.
        self.retry_cap_s = DRIVE_INLINE_S
        self.down_for_s = DOWN_FOR_S
        self._down: dict[str, float] = {}  # bank -> when it last failed to acknowledge

    def prepare(self, p: PaymentRecord) -> Ballot:
        """Sends Prepare to the payer's bank (DEBIT) and the payee's (CREDIT) at once; the
        ballot's deadline is prepare_timeout_s from now."""
        deadline = time.monotonic() + self.prepare_timeout_s
        votes = {}
        for leg, bank, account in (
            (DEBIT, p.from_bank, p.from_account),
            (CREDIT, p.to_bank, p.to_account),
        ):
            eventlog.event(
                "2pc.prepare_sent",
                txn_id=p.payment_id,
                bank=bank,
                leg=leg,
                amount_minor=p.amount_minor,
            )
            future = self._gw.participants.prepare(
                bank,
                leg_txn_id(p.payment_id, leg),
                leg,
                account,
                p.amount_minor,
                self._gw.advertise,
                self.prepare_timeout_s,
            )
            votes[future] = (leg, bank)
        return Ballot(p, votes, deadline)

    def log_decision(
        self, p: PaymentRecord, decision: Decision, reason: str = "", message: str = ""
    ) -> bool:
        """Writes the decision (and the client's response) durably, once: True when this call
        wrote it, False if a decision was logged already (a logged decision never changes)."""
        if decision not in (Decision.COMMIT, Decision.ABORT):
            raise ValueError(f"a logged decision is commit or abort, not {decision!r}")
        failpoints.hit("gateway.before_decision")
        response = self._gw._decide(p, Decision(decision), reason, message)
        if response:
            with self._gw._deciding_lock:
                self._gw._responses[p.payment_id] = response
        return bool(response)

    def logged(self, payment_id: str) -> PaymentRecord | None:
        """The payment as the log has it (decision None: votes still being collected), or None
        if the gateway has no record of it."""
        return payments.get(self._gw.db.read(), payment_id)

    def undecided(self) -> list[PaymentRecord]:
        """Payments with no logged decision that no request is deciding now."""
        return [p for p in payments.undecided(self._gw.db.read()) if not self._gw.busy(p)]

    def unsettled(self) -> list[PaymentRecord]:
        """Decided payments some bank has not acknowledged (debit_acked/credit_acked say which),
        except those a request is still sending."""
        found = payments.unsettled(self._gw.db.read(), now_ms(), limit=1000)
        return [p for p in found if not self._gw.busy(p)]

    def send(self, p: PaymentRecord, leg: str, commit: bool, *, retry_s: float = 0.0) -> bool:
        """Sends Commit (or Abort) for one leg of `p`, retrying for up to `retry_s`; records the
        acknowledgement and returns True if the bank acknowledged. With retry_s=0 a bank that did
        not acknowledge in the last half second is skipped (False at once)."""
        bank = p.from_bank if leg == DEBIT else p.to_bank
        retry_s = min(retry_s, self.retry_cap_s)
        since_s = time.monotonic() - self._down.get(bank, -self.down_for_s)
        if retry_s == 0 and since_s < self.down_for_s:
            return False
        if not self._gw._send_decision(bank, leg_txn_id(p.payment_id, leg), commit, retry_s):
            self._down[bank] = time.monotonic()
            return False
        self._down.pop(bank, None)
        eventlog.event(
            "2pc.ack",
            txn_id=p.payment_id,
            bank=bank,
            leg=leg,
            decision="commit" if commit else "abort",
        )
        with self._gw.db.write(durable=False) as conn:
            payments.record_acks(conn, p.payment_id, debit=leg == DEBIT, credit=leg == CREDIT)
        if leg == DEBIT and commit:
            failpoints.hit("gateway.between_commits")
        return True


class CoordinatorBase(ABC):
    """The coordinator's rules (Lab B). `self.kit` is the CoordinatorKit."""

    def __init__(self, kit: CoordinatorKit) -> None:
        self.kit = kit

    @abstractmethod
    def run(self, payment: PaymentRecord) -> None:
        """One payment, its key claimed and its row written (undecided): collect the votes,
        decide, log the decision, then send it to both banks."""

    @abstractmethod
    def decision_for(self, payment_id: str) -> Decision:
        """COMMIT or ABORT as logged, PENDING while votes are being collected; a payment the
        gateway has no record of was never decided: presumed abort."""

    @abstractmethod
    def recover(self) -> None:
        """At start, before serving: every payment without a logged decision is decided."""

    @abstractmethod
    def redrive(self) -> None:
        """Every half second: each logged decision goes on to every bank that has not
        acknowledged it, whenever it was decided (before a restart too)."""


class TwoPhaseRules(CoordinatorBase):
    """The reference solution of Lab B."""

    def run(self, payment: PaymentRecord) -> None:
        decision, reason, message = self.collect(payment)
        self.kit.log_decision(payment, decision, reason, message)  # durable before any send
        logged = self.kit.logged(payment.payment_id)  # the decision that stands
        self.send_all(logged, retry_s=DRIVE_INLINE_S)

    def collect(self, payment: PaymentRecord) -> tuple[Decision, str, str]:
        """COMMIT only when both banks voted YES in time; the first NO decides at once."""
        ballot = self.kit.prepare(payment)
        while ballot.waiting:
            got = ballot.next_vote()
            if got is None:
                late = " and ".join(ballot.silent)
                return Decision.ABORT, "BANK_TIMEOUT", f"{late} did not vote in time"
            _, vote = got
            if not vote.yes:
                return Decision.ABORT, vote.reason, vote.message
        return Decision.COMMIT, "", ""

    def send_all(self, p: PaymentRecord, *, retry_s: float = 0.0) -> None:
        commit = p.decision == Decision.COMMIT
        for leg, acked in ((DEBIT, p.debit_acked), (CREDIT, p.credit_acked)):
            if not acked:
                self.kit.send(p, leg, commit, retry_s=retry_s)

    def decision_for(self, payment_id: str) -> Decision:
        p = self.kit.logged(payment_id)
        if p is None:
            return Decision.ABORT  # presumed abort: never logged, never committed
        return p.decision or Decision.PENDING

    def recover(self) -> None:
        for p in self.kit.undecided():
            self.kit.log_decision(
                p, Decision.ABORT, "GATEWAY_RESTARTED", "the gateway restarted before deciding"
            )

    def redrive(self) -> None:
        for p in self.kit.unsettled():
            self.send_all(p)


class PluggedCoordinator(Coordinator):
    """The gateway's Coordinator with the decision and recovery rules of a CoordinatorBase."""

    def __init__(self, *args, rules: type[CoordinatorBase], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # payment id -> its response, from the decision's log until the reply (_deciding_lock)
        self._responses: dict[str, bytes] = {}
        self.rules = rules(CoordinatorKit(self))

    def busy(self, p: PaymentRecord) -> bool:
        with self._deciding_lock:
            return p.payment_id in self._deciding

    def pay(
        self,
        *,
        username: str,
        from_bank: str,
        from_account: str,
        to_bank: str,
        to_account: str,
        amount_minor: int,
        key: str,
    ) -> tuple[str, bytes]:
        parties = (from_bank, from_account, to_bank, to_account)
        record = self._new_payment(username, key, parties, amount_minor)
        try:
            replayed = self._begin(record)
            if replayed is not None:
                return replayed
            self.rules.run(replace(record))
        finally:
            with self._deciding_lock:  # one lock owns both: what is being decided, and answers
                self._deciding.discard(record.payment_id)
                response = self._responses.pop(record.payment_id, b"")
        if not response:
            raise InProgress("this payment was not decided yet; retry with the same key")
        failpoints.hit("gateway.before_reply")
        return record.payment_id, response

    def decision_for(self, txn_id: str) -> Decision:
        return self.rules.decision_for(payment_of(txn_id))

    def recover(self) -> int:
        before = len(payments.undecided(self.db.read()))
        self.rules.recover()
        aborted = before - len(payments.undecided(self.db.read()))
        eventlog.event("2pc.recovered", aborted=aborted)
        return aborted

    def redrive(self, min_age_s: float) -> int:
        self.rules.redrive()
        return 0
