"""Lab B starter: the coordinator's decision and recovery rules. Copy this file
(cp coordinator_starter.py mycoordinator.py), fill in the methods, and grade it:

    paykit lab grade coordinator mycoordinator:MyCoordinator

The gateway does everything around your rules: it claims the idempotency key and writes the
payment row (undecided) before `run`, answers the client with the response logged with the
decision, serves GetDecision with `decision_for`, calls `recover` once at start and `redrive`
every half second. You reach the banks and the durable log through `self.kit`
(paykit.gateway.decisions.CoordinatorKit):

    ballot = self.kit.prepare(payment)   Prepare to both banks at once, one deadline
        ballot.waiting                   how many votes have not arrived yet
        ballot.next_vote()               (leg, Vote) as they arrive, or None once the deadline
                                         passed; a Vote has .yes, .reason, .message
        ballot.silent                    the banks that have not voted
    self.kit.log_decision(payment, decision, reason="", message="") -> bool
                                         durable, once (False: one was logged already, and it
                                         stands); the client's answer is logged with it
    self.kit.logged(payment_id)          the payment as logged (.decision None: undecided), or
                                         None if the gateway has no record of it
    self.kit.undecided()                 logged payments without a decision
    self.kit.unsettled()                 decided payments a bank has not acknowledged
                                         (.debit_acked / .credit_acked say which)
    self.kit.send(payment, leg, commit, retry_s=0.0) -> bool
                                         Commit or Abort for one leg (DEBIT: the payer's bank,
                                         CREDIT: the payee's); True when acknowledged
"""

from __future__ import annotations

from paykit.core.twopc import CREDIT, DEBIT, Decision
from paykit.gateway.coordinator import DRIVE_INLINE_S
from paykit.gateway.decisions import CoordinatorBase
from paykit.gateway.payments import PaymentRecord

__all__ = ["CREDIT", "DEBIT", "DRIVE_INLINE_S", "Decision", "MyCoordinator"]


class MyCoordinator(CoordinatorBase):
    def run(self, payment: PaymentRecord) -> None:
        """One payment: collect the votes, decide, log the decision, send it.

        1. Decide only on all votes: COMMIT only when both banks voted YES before the
           deadline. The first NO decides ABORT at once, with that vote's reason; a vote
           missing at the deadline counts as NO (ABORT, reason BANK_TIMEOUT).
        2. Log the decision before sending it (kit.log_decision): a bank told Commit must be
           able to learn the same decision from the log after any crash.
        3. Then send it to both banks (kit.send, retry_s=DRIVE_INLINE_S). A logged decision
           stands: a bank that does not acknowledge gets the same decision again later (by
           redrive), never the other one.
        """
        raise NotImplementedError("run: see the rules in its docstring")

    def decision_for(self, payment_id: str) -> Decision:
        """What a bank asking GetDecision is told: the logged COMMIT or ABORT; PENDING while
        the votes are being collected (the payment is logged, its decision is not yet);
        ABORT for a payment the gateway has no record of (presumed abort)."""
        raise NotImplementedError("decision_for: see the rules in its docstring")

    def recover(self) -> None:
        """At start, before serving: every payment without a logged decision was interrupted
        while its votes came in. Decide each ABORT and log it (presumed abort); redrive then
        tells the banks."""
        raise NotImplementedError("recover: see the rule in its docstring")

    def redrive(self) -> None:
        """Every half second: send each logged decision, COMMIT or ABORT, to every bank that
        has not acknowledged it, whenever it was decided (before a restart too: read them
        from the log, kit.unsettled(), never from memory)."""
        raise NotImplementedError("redrive: see the rule in its docstring")
