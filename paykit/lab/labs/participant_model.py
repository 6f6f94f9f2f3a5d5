"""The participant lab's model check: a hypothesis state machine drives the student's class
in-process (over a real LegStore in a scratch folder) and a dict model of the rules side by side.

Steps: prepare a debit or a credit, prepare again, commit, abort, decide again, abort before
prepare, resolve with the coordinator answering COMMIT / ABORT / PENDING / nothing, and restart
(a new instance of the class over the reopened store: what it kept in memory is gone). After
every step the books must match the model. The seed makes the run repeatable.
"""

from __future__ import annotations

import itertools
import random
import sqlite3
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)

from paykit.bank.participant import (
    ABORTED,
    COMMITTED,
    PREPARED,
    LegStore,
    PrepareLeg,
)
from paykit.core.errors import PaykitError
from paykit.core.twopc import CREDIT, DEBIT, Decision

ACCOUNTS = ("acct-a", "acct-b", "acct-c")
OPENING_MINOR = {"acct-a": 5_000, "acct-b": 0, "acct-c": 300}
ANSWERS = (Decision.COMMIT, Decision.ABORT, Decision.PENDING, None)
amounts = st.integers(min_value=1, max_value=4_000)
EXAMPLES = 15
STEPS = 20


def machine(target: type, folder: Path) -> type[RuleBasedStateMachine]:
    """The state machine class for `target`, each run in its own file under `folder`."""
    runs = itertools.count(1)

    class ParticipantModel(RuleBasedStateMachine):
        prepared = Bundle("prepared")
        finished = Bundle("finished")

        def __init__(self) -> None:
            super().__init__()
            self.path = folder / f"model{next(runs)}.db"
            self.store = LegStore(self.path, bank="BankM")
            for account, opening in OPENING_MINOR.items():
                self.store.ledger.open_account(account, opening)
            self.p = target(self.store)
            self.ids = itertools.count(1)
            self.balance = dict(OPENING_MINOR)
            self.held = dict.fromkeys(ACCOUNTS, 0)
            self.state: dict[str, str] = {}
            self.txns: dict[str, tuple[str, str, int]] = {}

        def teardown(self) -> None:
            self.store.close()

        def _new_id(self) -> str:
            return f"pay{next(self.ids)}.leg"

        @rule(target=prepared, account=st.sampled_from(ACCOUNTS), amount=amounts)
        def prepare_debit(self, account: str, amount: int) -> str:
            txn = self._new_id()
            vote = self.p.prepare(PrepareLeg(txn, DEBIT, account, amount, "gw:1"))
            can = self.balance[account] - self.held[account] >= amount
            assert vote.yes == can, (
                f"prepare of a {amount} debit with {self.balance[account] - self.held[account]} "
                f"available voted {'YES' if vote.yes else 'NO'}"
            )
            self.txns[txn] = (DEBIT, account, amount)
            if can:
                self.held[account] += amount
                self.state[txn] = PREPARED
            else:
                self.state[txn] = ABORTED
            return txn

        @rule(target=prepared, account=st.sampled_from(ACCOUNTS), amount=amounts)
        def prepare_credit(self, account: str, amount: int) -> str:
            txn = self._new_id()
            vote = self.p.prepare(PrepareLeg(txn, CREDIT, account, amount, "gw:1"))
            assert vote.yes, "a credit leg to an existing account must vote YES"
            self.state[txn] = PREPARED
            self.txns[txn] = (CREDIT, account, amount)
            return txn

        @rule(leg=st.sampled_from((DEBIT, CREDIT)), amount=amounts)
        def prepare_unknown_account(self, leg: str, amount: int) -> None:
            vote = self.p.prepare(PrepareLeg(self._new_id(), leg, "nobody", amount, "gw:1"))
            assert not vote.yes, f"a {leg} leg on an account the bank does not have must vote NO"

        @rule(txn=prepared)
        def prepare_again(self, txn: str) -> None:
            vote = self.p.prepare(PrepareLeg(txn, *self.txns[txn], "gw:1"))
            assert vote.yes == (self.state[txn] != ABORTED), "a retried Prepare repeats its vote"

        def _apply(self, txn: str, state: str) -> None:
            if self.state[txn] == PREPARED:
                leg, account, amount = self.txns[txn]
                if leg == DEBIT:
                    self.held[account] -= amount
                    if state == COMMITTED:
                        self.balance[account] -= amount
                elif state == COMMITTED:
                    self.balance[account] += amount
            self.state[txn] = state

        def _refused(self, decide, txn: str, what: str) -> None:
            try:
                decide(txn)
            except PaykitError:
                return
            raise AssertionError(f"{what} was accepted (a decision is never changed)")

        @rule(target=finished, txn=consumes(prepared))
        def commit(self, txn: str) -> str:
            if self.state[txn] == ABORTED:  # voted NO, or resolved ABORT
                self._refused(self.p.commit, txn, "a Commit of an aborted leg")
                return txn
            assert self.p.commit(txn) == COMMITTED, "commit returns 'committed'"
            self._apply(txn, COMMITTED)
            return txn

        @rule(target=finished, txn=consumes(prepared))
        def abort(self, txn: str) -> str:
            if self.state[txn] == COMMITTED:  # resolved COMMIT already
                self._refused(self.p.abort, txn, "an Abort of a committed leg")
                return txn
            assert self.p.abort(txn) == ABORTED, "abort returns 'aborted'"
            self._apply(txn, ABORTED)
            return txn

        @rule(txn=finished)
        def decide_again(self, txn: str) -> None:
            if self.state[txn] == COMMITTED:
                assert self.p.commit(txn) == COMMITTED, "a second Commit is acknowledged"
            else:
                assert self.p.abort(txn) == ABORTED, "a second Abort is acknowledged"

        @rule(account=st.sampled_from(ACCOUNTS), amount=amounts)
        def abort_before_prepare(self, account: str, amount: int) -> None:
            txn = self._new_id()
            assert self.p.abort(txn) == ABORTED, "an Abort before its Prepare is acknowledged"
            vote = self.p.prepare(PrepareLeg(txn, DEBIT, account, amount, "gw:1"))
            assert not vote.yes, "a Prepare after its Abort (a tombstone) must vote NO"
            self.txns[txn] = (DEBIT, account, amount)
            self.state[txn] = ABORTED

        @rule(answer=st.sampled_from(ANSWERS))
        def resolve(self, answer: Decision | None) -> None:
            asked: list[str] = []

            def ask(txn_id: str, coordinator: str) -> Decision | None:
                asked.append(txn_id)
                return answer

            self.p.resolve(ask, 0)
            doubt = {t for t, s in self.state.items() if s == PREPARED}
            assert doubt <= set(asked), "resolve must ask about every prepared leg in the store"
            if answer in (Decision.COMMIT, Decision.ABORT):
                for txn in doubt:
                    self._apply(txn, COMMITTED if answer == Decision.COMMIT else ABORTED)

        @rule()
        def restart(self) -> None:
            self.store.close()
            self.store = LegStore(self.path, bank="BankM")
            self.p = target(self.store)

        @invariant()
        def books_match_model(self) -> None:
            for account in ACCOUNTS:
                b = self.store.account(account)
                got, want = (
                    (b.balance_minor, b.held_minor),
                    (self.balance[account], self.held[account]),
                )
                assert got == want, f"{account}: (balance, held) is {got}, the rules give {want}"

        @invariant()
        def states_match_model(self) -> None:
            for txn, state in self.state.items():
                leg = self.store.leg(txn)
                got = leg.state if leg else None
                assert got == state, f"leg {txn} is {got}, the rules give {state}"

        @invariant()
        def one_entry_per_commit(self) -> None:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            try:
                entries = dict(
                    conn.execute(
                        "SELECT txn_id, COUNT(*) FROM entries WHERE txn_id IS NOT NULL "
                        "GROUP BY txn_id"
                    )
                )
            finally:
                conn.close()
            want = {t: 1 for t, s in self.state.items() if s == COMMITTED}
            assert entries == want, "each committed leg has exactly one ledger entry, others none"

    return ParticipantModel


def run_model(target: type, seed: int, folder: Path) -> str:
    """ "" when the class agrees with the model, else what went wrong first (shrunk)."""
    random.seed(seed)  # hypothesis draws its own seed from here: the run's seed repeats it
    try:
        run_state_machine_as_test(
            machine(target, folder),
            settings=settings(
                max_examples=EXAMPLES,
                stateful_step_count=STEPS,
                deadline=None,
                database=None,
                print_blob=False,
                phases=(Phase.generate,),  # the first failure is hint enough: no shrinking
                suppress_health_check=list(HealthCheck),
            ),
        )
    except AssertionError as err:
        return str(err).splitlines()[0][:300] if str(err) else "an assertion failed"
    except PaykitError as err:
        return f"the class raised {type(err).__name__}: {err.message[:160]}"
    return ""
