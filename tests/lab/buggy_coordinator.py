"""Classic mistakes of a 2PC coordinator, one per class, for tests/lab/test_lab_coordinator.py.

Each is the reference (TwoPhaseRules) with one rule broken. A module of its own, not a test
file: the whole-cluster checks start a gateway that imports these classes by name.
"""

from __future__ import annotations

import threading
from dataclasses import replace

from paykit.core.twopc import CREDIT, DEBIT, Decision
from paykit.gateway.coordinator import DRIVE_INLINE_S
from paykit.gateway.decisions import TwoPhaseRules


class SendsBeforeLogging(TwoPhaseRules):
    """Sends Commit or Abort first and logs the decision after."""

    def run(self, payment):
        decision, reason, message = self.collect(payment)
        self.send_all(replace(payment, decision=decision), retry_s=DRIVE_INLINE_S)
        self.kit.log_decision(payment, decision, reason, message)


class AbortsAfterCommitTimeout(TwoPhaseRules):
    """Logs COMMIT, and when a bank does not acknowledge in time, gives up: Abort to both."""

    def run(self, payment):
        decision, reason, message = self.collect(payment)
        self.kit.log_decision(payment, decision, reason, message)
        commit = decision == Decision.COMMIT
        acked = [
            self.kit.send(payment, leg, commit, retry_s=DRIVE_INLINE_S) for leg in (DEBIT, CREDIT)
        ]
        if commit and not all(acked):
            self.kit.log_decision(payment, Decision.ABORT, "BANK_TIMEOUT", "no ack")
            for leg in (DEBIT, CREDIT):
                self.kit.send(payment, leg, False)


class NeverRedrivesAfterRestart(TwoPhaseRules):
    """Redrives only the payments this process decided: after a restart nothing is resent."""

    def __init__(self, kit):
        super().__init__(kit)
        self.mine: set[str] = set()
        self.lock = threading.Lock()

    def run(self, payment):
        with self.lock:
            self.mine.add(payment.payment_id)
        super().run(payment)

    def redrive(self):
        with self.lock:
            mine = set(self.mine)
        for p in self.kit.unsettled():
            if p.payment_id in mine:
                self.send_all(p)


class AbortWhilePending(TwoPhaseRules):
    """Answers GetDecision with ABORT while the votes are still coming in."""

    def decision_for(self, payment_id):
        p = self.kit.logged(payment_id)
        return p.decision if p is not None and p.decision else Decision.ABORT


class CommitsOnNo(TwoPhaseRules):
    """Counts votes, not YES votes: commits once both banks have answered, whatever they said."""

    def collect(self, payment):
        ballot = self.kit.prepare(payment)
        while ballot.waiting:
            if ballot.next_vote() is None:
                return Decision.ABORT, "BANK_TIMEOUT", "late"
        return Decision.COMMIT, "", ""


class CommitsOnMissingVote(TwoPhaseRules):
    """Takes a bank that has not voted by the deadline as a YES."""

    def collect(self, payment):
        ballot = self.kit.prepare(payment)
        while ballot.waiting:
            got = ballot.next_vote()
            if got is None:
                break
            if not got[1].yes:
                return Decision.ABORT, got[1].reason, got[1].message
        return Decision.COMMIT, "", ""


class DecidesOnFirstYes(TwoPhaseRules):
    """Commits on the first YES, without waiting for the other vote."""

    def collect(self, payment):
        got = self.kit.prepare(payment).next_vote()
        if got is None or not got[1].yes:
            return Decision.ABORT, "BANK_TIMEOUT" if got is None else got[1].reason, ""
        return Decision.COMMIT, "", ""


class WaitsOutTheDeadline(TwoPhaseRules):
    """Waits for every vote before deciding, so a NO waits for a silent bank's deadline."""

    def collect(self, payment):
        ballot = self.kit.prepare(payment)
        votes = []
        while ballot.waiting:
            got = ballot.next_vote()
            if got is None:
                return Decision.ABORT, "BANK_TIMEOUT", "late"
            votes.append(got[1])
        no = next((v for v in votes if not v.yes), None)
        return (Decision.ABORT, no.reason, no.message) if no else (Decision.COMMIT, "", "")


class ForgetsLogOnRestart(TwoPhaseRules):
    """Answers GetDecision from memory: after a restart it presumes abort for a committed one."""

    def __init__(self, kit):
        super().__init__(kit)
        self.decided: dict[str, Decision] = {}

    def run(self, payment):
        super().run(payment)
        logged = self.kit.logged(payment.payment_id)
        self.decided[payment.payment_id] = logged.decision

    def decision_for(self, payment_id):
        if payment_id in self.decided:
            return self.decided[payment_id]
        p = self.kit.logged(payment_id)
        return Decision.PENDING if p is not None and p.decision is None else Decision.ABORT


class PresumesCommit(TwoPhaseRules):
    """Presumes commit: a payment the log does not know is answered COMMIT."""

    def decision_for(self, payment_id):
        if self.kit.logged(payment_id) is None:
            return Decision.COMMIT
        return super().decision_for(payment_id)


class RecoverCommits(TwoPhaseRules):
    """At restart, commits what was undecided (the banks had probably voted YES...)."""

    def recover(self):
        for p in self.kit.undecided():
            self.kit.log_decision(p, Decision.COMMIT)


class RedrivesOnlyCommits(TwoPhaseRules):
    """Redrives commits only: an ABORT that did not reach a bank leaves its hold in place."""

    def redrive(self):
        for p in self.kit.unsettled():
            if p.decision == Decision.COMMIT:
                self.send_all(p)
