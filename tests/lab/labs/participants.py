"""Participants for the participant lab's tests: one written as a student would (over the
LegStore only), and buggy ones, each a classic mistake with the check that must catch it.

The bank servers the grader starts import this module by its dotted name
(tests.lab.labs.participants), from the checkout's root on PYTHONPATH."""

from __future__ import annotations

from paykit.bank.participant import (
    ABORTED,
    COMMITTED,
    DEBIT,
    PREPARED,
    Decision,
    Participant,
    PrepareLeg,
    ProtocolViolation,
    UnknownPayment,
    Vote,
)


class StudentParticipant(Participant):
    """Every rule, written over the store's primitives (what the lab sheet's solution is)."""

    def prepare(self, leg: PrepareLeg) -> Vote:
        with self.store.transaction() as tx:
            seen = tx.leg(leg.txn_id)
            if seen is not None:  # a retry, or a Prepare after its Abort (a tombstone)
                if seen.state == ABORTED:
                    return Vote(False, seen.reason or "ABORTED", "already aborted")
                return Vote(True)
            vote = self.vote(tx, leg)
            state = PREPARED if vote.yes else ABORTED
            tx.record_leg(
                leg.txn_id,
                leg.leg,
                leg.account_id,
                leg.amount_minor,
                state,
                vote.reason,
                leg.coordinator,
            )
            if vote.yes and leg.leg == DEBIT:
                self.place_hold(tx, leg)
        return vote

    def vote(self, tx, leg: PrepareLeg) -> Vote:
        account = tx.account(leg.account_id)
        if account is None:
            return Vote(False, "UNKNOWN_ACCOUNT", f"no account {leg.account_id}")
        if leg.leg == DEBIT and account.available_minor < leg.amount_minor:
            return Vote(False, "INSUFFICIENT_FUNDS", "insufficient funds")
        return Vote(True)

    def place_hold(self, tx, leg: PrepareLeg) -> None:
        tx.hold(leg.account_id, leg.amount_minor)

    def commit(self, txn_id: str) -> str:
        with self.store.transaction() as tx:
            leg = tx.leg(txn_id)
            if leg is None:
                raise UnknownPayment(f"{self.bank} has no prepared transaction {txn_id}")
            if leg.state == COMMITTED:
                return COMMITTED
            if leg.state == ABORTED:
                raise ProtocolViolation(f"{txn_id} was aborted")
            self.apply(tx, leg)
            tx.set_state(txn_id, COMMITTED)
        return COMMITTED

    def apply(self, tx, leg) -> None:
        if leg.leg == DEBIT:
            tx.release(leg.account_id, leg.amount_minor)
            tx.debit(leg.account_id, leg.amount_minor, leg.txn_id)
        else:
            tx.credit(leg.account_id, leg.amount_minor, leg.txn_id)

    def abort(self, txn_id: str) -> str:
        with self.store.transaction() as tx:
            leg = tx.leg(txn_id)
            if leg is None:  # the Abort overtook its Prepare: leave a tombstone
                tx.record_leg(txn_id, "", "", 0, ABORTED, "ABORTED_BEFORE_PREPARE")
                return ABORTED
            if leg.state == ABORTED:
                return ABORTED
            if leg.state == COMMITTED:
                raise ProtocolViolation(f"{txn_id} was committed")
            if leg.leg == DEBIT:
                tx.release(leg.account_id, leg.amount_minor)
            tx.set_state(txn_id, ABORTED, "COORDINATOR_ABORTED")
        return ABORTED

    def resolve(self, ask, older_than_ms: int) -> int:
        decided = 0
        for leg in self.in_doubt(older_than_ms):
            answer = ask(leg.txn_id, leg.coordinator)
            if answer == Decision.COMMIT:
                self.commit(leg.txn_id)
            elif answer == Decision.ABORT:
                self.abort(leg.txn_id)
            else:  # PENDING or no answer: keep the hold, ask again next round
                continue
            decided += 1
        return decided

    def in_doubt(self, older_than_ms: int):
        return self.store.prepared_legs(older_than_ms)


# -- the classic mistakes: (class, the check that catches it, words its hint must hold) ----------


class ReleasesOnTimeout(StudentParticipant):
    """Gives up on a leg prepared for more than 2 s that has no COMMIT, as a 'hold timeout'."""

    def resolve(self, ask, older_than_ms: int) -> int:
        for leg in self.in_doubt(older_than_ms):
            answer = ask(leg.txn_id, leg.coordinator)
            if answer == Decision.COMMIT:
                self.commit(leg.txn_id)
            elif answer == Decision.ABORT or self._age_ms(leg) > 2_000:
                self.abort(leg.txn_id)
        return 0

    @staticmethod
    def _age_ms(leg) -> int:
        from paykit.core.clock import now_ms

        return now_ms() - leg.updated_unix_ms


class PresumesAbort(StudentParticipant):
    """No answer from the coordinator? Abort: only the coordinator may presume abort."""

    def resolve(self, ask, older_than_ms: int) -> int:
        for leg in self.in_doubt(older_than_ms):
            answer = ask(leg.txn_id, leg.coordinator)
            if answer == Decision.COMMIT:
                self.commit(leg.txn_id)
            elif answer in (Decision.ABORT, None):
                self.abort(leg.txn_id)
        return 0


class PendingMeansAbort(StudentParticipant):
    """Reads PENDING as 'not committed', so aborts while the votes are still coming in."""

    def resolve(self, ask, older_than_ms: int) -> int:
        for leg in self.in_doubt(older_than_ms):
            answer = ask(leg.txn_id, leg.coordinator)
            if answer == Decision.COMMIT:
                self.commit(leg.txn_id)
            elif answer in (Decision.ABORT, Decision.PENDING):
                self.abort(leg.txn_id)
        return 0


class VotesBeforeHoldIsDurable(StudentParticipant):
    """Records the YES in one transaction and places the hold in a second one: a crash between
    the two leaves a prepared leg with no hold behind it."""

    def place_hold(self, tx, leg: PrepareLeg) -> None:
        self._later = leg

    def prepare(self, leg: PrepareLeg) -> Vote:
        self._later = None
        vote = super().prepare(leg)
        if self._later is not None:
            with self.store.transaction() as tx:
                tx.hold(leg.account_id, leg.amount_minor)
        return vote


class CommitsTwice(StudentParticipant):
    """Applies every Commit it gets: the resent one captures the money again."""

    def commit(self, txn_id: str) -> str:
        with self.store.transaction() as tx:
            leg = tx.leg(txn_id)
            if leg is None:
                raise UnknownPayment(f"no leg {txn_id}")
            if leg.state == ABORTED:
                raise ProtocolViolation(f"{txn_id} was aborted")
            if leg.leg == DEBIT and leg.state == PREPARED:
                tx.release(leg.account_id, leg.amount_minor)
            if leg.leg == DEBIT:
                tx.debit(leg.account_id, leg.amount_minor, txn_id)
            else:
                tx.credit(leg.account_id, leg.amount_minor, txn_id)
            tx.set_state(txn_id, COMMITTED)
        return COMMITTED


class IgnoresTombstone(StudentParticipant):
    """An Abort for a leg it never saw is simply acknowledged: nothing remembers it."""

    def abort(self, txn_id: str) -> str:
        if self.store.leg(txn_id) is None:
            return ABORTED
        return super().abort(txn_id)


class ForgetsOnRestart(StudentParticipant):
    """Keeps the legs it is in doubt about in memory: after a restart it never asks about them."""

    def __init__(self, store) -> None:
        super().__init__(store)
        self.pending: set[str] = set()

    def prepare(self, leg: PrepareLeg) -> Vote:
        vote = super().prepare(leg)
        if vote.yes:
            self.pending.add(leg.txn_id)
        return vote

    def in_doubt(self, older_than_ms: int):
        legs = [self.store.leg(t) for t in sorted(self.pending)]
        return [leg for leg in legs if leg is not None and leg.state == PREPARED]


class CommitsWithoutPrepare(StudentParticipant):
    """Acknowledges a Commit for a leg it has no record of (the coordinator thinks it applied)."""

    def commit(self, txn_id: str) -> str:
        if self.store.leg(txn_id) is None:
            return COMMITTED
        return super().commit(txn_id)


class HoldsTwice(StudentParticipant):
    """A retried Prepare is prepared again: a second hold on the same money."""

    def prepare(self, leg: PrepareLeg) -> Vote:
        seen = self.store.leg(leg.txn_id)
        if seen is not None and seen.state == PREPARED and leg.leg == DEBIT:
            with self.store.transaction() as tx:
                tx.hold(leg.account_id, leg.amount_minor)
            return Vote(True)
        return super().prepare(leg)


class DebitsThePayee(StudentParticipant):
    """Applies every leg as a debit: the payee's credit leg takes money off the payee."""

    def apply(self, tx, leg) -> None:
        if leg.leg == DEBIT:
            tx.release(leg.account_id, leg.amount_minor)
        tx.debit(leg.account_id, leg.amount_minor, leg.txn_id)


class IgnoresHolds(StudentParticipant):
    """Checks the balance, not what is available (balance - holds): two payments can promise
    the same money (the store refuses the second hold, so the Prepare fails instead of NO)."""

    def vote(self, tx, leg: PrepareLeg) -> Vote:
        account = tx.account(leg.account_id)
        if account is None:
            return Vote(False, "UNKNOWN_ACCOUNT", "no such account")
        if leg.leg == DEBIT and account.balance_minor < leg.amount_minor:
            return Vote(False, "INSUFFICIENT_FUNDS", "insufficient funds")
        return Vote(True)


class AbortReleasesTwice(StudentParticipant):
    """A second Abort releases the hold again, taking another payment's hold with it."""

    def abort(self, txn_id: str) -> str:
        leg = self.store.leg(txn_id)
        if leg is not None and leg.state == ABORTED and leg.leg == DEBIT:
            with self.store.transaction() as tx:
                tx.release(leg.account_id, leg.amount_minor)
            return ABORTED
        return super().abort(txn_id)


class YesToUnknownAccounts(StudentParticipant):
    """Votes YES for a credit to an account it does not have."""

    def vote(self, tx, leg: PrepareLeg) -> Vote:
        if leg.leg != DEBIT:
            return Vote(True)
        return super().vote(tx, leg)


BUGGY = [
    (ReleasesOnTimeout, "keeps_hold_in_doubt", "never decides alone"),
    (PresumesAbort, "keeps_hold_in_doubt", "never decides alone"),
    (PendingMeansAbort, "pending_keeps_hold", "PENDING"),
    (VotesBeforeHoldIsDurable, "crash_after_hold_before_commit", "ONE store transaction"),
    (CommitsTwice, "duplicate_commit", "apply it once"),
    (IgnoresTombstone, "tombstone", "tombstone"),
    (ForgetsOnRestart, "asks_after_restart", "IN THE STORE"),
    (CommitsWithoutPrepare, "decisions_need_prepare", "UNKNOWN_PAYMENT"),
    (HoldsTwice, "duplicate_prepare", "no second hold"),
    (DebitsThePayee, "commit_applies", "adds the amount to the payee"),
    (IgnoresHolds, "prepare_votes", "AVAILABLE balance"),
    (AbortReleasesTwice, "abort_releases", "second Abort is a no-op"),
    (YesToUnknownAccounts, "model", "must vote NO"),
]


# -- one cluster for every class: the banks load Switch, which plays the class the test names ----

SWITCH_FILE_ENV = "PAYKIT_TEST_PARTICIPANT_FILE"


class Switch(Participant):
    """Plays the class whose name is in the file $PAYKIT_TEST_PARTICIPANT_FILE, read on every
    call, so one cluster's banks can play each buggy class in turn without a restart. Each class
    gets its own instance (its memory) over the same store."""

    def __init__(self, store) -> None:
        super().__init__(store)
        self._played: dict[str, Participant] = {}

    def _now(self) -> Participant:
        import os
        from pathlib import Path

        from paykit.bank.participant import LedgerParticipant

        name = Path(os.environ[SWITCH_FILE_ENV]).read_text().strip()
        if name not in self._played:
            cls = LedgerParticipant if name == "LedgerParticipant" else globals()[name]
            self._played[name] = cls(self.store)
        return self._played[name]

    def prepare(self, leg):
        return self._now().prepare(leg)

    def commit(self, txn_id):
        return self._now().commit(txn_id)

    def abort(self, txn_id):
        return self._now().abort(txn_id)

    def resolve(self, ask, older_than_ms):
        return self._now().resolve(ask, older_than_ms)

    def apply_batch(self, decisions, prepares):
        return self._now().apply_batch(decisions, prepares)
