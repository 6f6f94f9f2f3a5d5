"""Lab A starter: a bank's two-phase-commit participant. Copy this file (say to mylab.py),
fill in the five methods, and grade it:

    paykit lab grade participant mylab:MyParticipant          # from the folder holding mylab.py
    paykit.lab.grade("participant", "mylab:MyParticipant")    # in a notebook

The kit's bank server calls your methods (from several threads at once); your class keeps
nothing it needs in memory: everything goes through `self.store`, a LegStore over the bank's
SQLite file. What the store gives you:

    with self.store.transaction() as tx:     ONE atomic transaction, on disk (fsync) when the
                                             block returns; none of it if the block raises or
                                             the process dies inside it
        tx.leg(txn_id)                       the LegRecord (txn_id, leg, account_id,
                                             amount_minor, state, reason, coordinator,
                                             updated_unix_ms) or None
        tx.account(account_id)               a Balance (balance_minor, held_minor,
                                             available_minor) or None
        tx.record_leg(txn_id, leg, account_id, amount_minor, state, reason="", coordinator="")
        tx.set_state(txn_id, state, reason=None)
        tx.hold(account_id, amount)          held += amount (refused above the balance)
        tx.release(account_id, amount)       held -= amount
        tx.debit(account_id, amount, txn_id) balance -= amount, with its ledger entry
        tx.credit(account_id, amount, txn_id) balance += amount, with its ledger entry
    with self.store.transaction(durable=False) as tx:   the same without the fsync: a power cut
                                             may take it back, so the store refuses holds
                                             and prepared legs there (a Commit may use it)
    self.store.leg(txn_id), self.store.account(account_id)   reads outside a transaction
    self.store.prepared_legs(older_than_ms)  every leg still prepared, oldest first

States are PREPARED, COMMITTED, ABORTED ("prepared", ...); legs are DEBIT and CREDIT. A NO vote
is a value, Vote(False, "INSUFFICIENT_FUNDS", "a message"); errors are raised:
UnknownPayment (no such leg), ProtocolViolation (a decision against the one already applied).
"""

from __future__ import annotations

from paykit.bank.participant import (  # noqa: F401  (what you will need)
    ABORTED,
    COMMITTED,
    CREDIT,
    DEBIT,
    PREPARED,
    Ask,
    Decision,
    Participant,
    PrepareLeg,
    ProtocolViolation,
    UnknownPayment,
    Vote,
)


class MyParticipant(Participant):
    def prepare(self, leg: PrepareLeg) -> Vote:
        """Phase one: vote on `leg` (txn_id, leg, account_id, amount_minor, coordinator).

        Rules:
        - Seen before (a retried Prepare): answer the same vote again; place no second hold.
          An aborted leg (a NO vote, or a tombstone: its Abort came first) votes NO.
        - Unknown account: vote NO, reason "UNKNOWN_ACCOUNT".
        - A debit votes YES only if the AVAILABLE balance (balance - holds) covers it, else NO
          with "INSUFFICIENT_FUNDS". A credit to an existing account votes YES.
        - The leg's record (prepared, with its coordinator; or aborted for a NO) and a YES
          debit's hold are written in ONE store transaction, before you return the vote: a YES
          that is not on disk may be forgotten by a crash while the coordinator commits on it.
        """
        raise NotImplementedError

    def commit(self, txn_id: str) -> str:
        """Phase two, COMMIT: a debit's hold becomes a real debit (release it, debit the
        amount); a credit is applied to the payee. Return COMMITTED.

        Rules: a leg already committed changes nothing (a duplicate Commit is applied once);
        no leg at all is UnknownPayment; an aborted leg is ProtocolViolation. One transaction.
        """
        raise NotImplementedError

    def abort(self, txn_id: str) -> str:
        """Phase two, ABORT: release a prepared debit's hold; the leg becomes aborted.
        Return ABORTED.

        Rules: a second Abort changes nothing; a committed leg is ProtocolViolation; no leg at
        all means the Abort overtook its Prepare: record a tombstone (an aborted leg with leg
        "", amount 0, reason "ABORTED_BEFORE_PREPARE") so that the late Prepare votes NO.
        """
        raise NotImplementedError

    def resolve(self, ask: Ask, older_than_ms: int) -> int:
        """In doubt: the kit calls this every half second (and so right after a restart).
        For every leg still prepared IN THE STORE for at least `older_than_ms`, ask the
        coordinator: `ask(txn_id, coordinator)` returns Decision.COMMIT, Decision.ABORT,
        Decision.PENDING (votes still coming in) or None (no answer). Return how many you
        decided.

        Rules: a participant that voted YES never decides alone. Apply COMMIT or ABORT; on
        PENDING or no answer keep the hold and ask again next time: no timeout of your own,
        no presumed abort (only the coordinator may presume).
        """
        raise NotImplementedError
