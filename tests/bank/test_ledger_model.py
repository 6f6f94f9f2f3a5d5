"""A hypothesis state machine drives paykit.ledger.Ledger and a dict model side by side.

Rules are the participant's whole life: prepare a debit or a credit, commit (twice),
abort, abort before prepare followed by the late prepare, and reopen the database as a
restart would. After every step the real books must match the model, and the ledger's
own invariants must hold (no negative balance or available, balance == its entries).
"""

from __future__ import annotations

import itertools
import sqlite3
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from paykit.bank.ledger import ABORTED, COMMITTED, PREPARED, Ledger
from paykit.core.errors import ProtocolViolation
from paykit.core.twopc import CREDIT, DEBIT

ACCOUNTS = ("acct-a", "acct-b", "acct-c")
OPENING_MINOR = {"acct-a": 5_000, "acct-b": 0, "acct-c": 300}
amounts = st.integers(min_value=1, max_value=4_000)


class LedgerModel(RuleBasedStateMachine):
    prepared = Bundle("prepared")
    finished = Bundle("finished")

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory(prefix="paykit-ledger-model-")
        self.path = Path(self.dir.name) / "bank.db"
        self.ledger = Ledger(self.path, bank="BankM")
        self.ids = itertools.count(1)
        self.balance = dict(OPENING_MINOR)
        self.held = dict.fromkeys(ACCOUNTS, 0)
        self.state: dict[str, str] = {}  # txn id -> prepared | committed | aborted
        self.txns: dict[str, tuple[str, str, int]] = {}  # txn id -> (leg, account, amount)
        for account, opening in OPENING_MINOR.items():
            self.ledger.open_account(account, opening)

    def teardown(self) -> None:
        self.ledger.close()
        self.dir.cleanup()

    def _new_id(self) -> str:
        return f"pay{next(self.ids)}.leg"

    # -- phase one -------------------------------------------------------------

    @rule(target=prepared, account=st.sampled_from(ACCOUNTS), amount=amounts)
    def prepare_debit(self, account: str, amount: int) -> str:
        txn = self._new_id()
        vote = self.ledger.prepare(txn, DEBIT, account, amount, "gw:1")
        # The model's rule: YES exactly when the available balance covers the amount.
        can = self.balance[account] - self.held[account] >= amount
        assert vote.yes == can, (vote, self.balance[account], self.held[account], amount)
        if can:
            self.held[account] += amount
            self.state[txn] = PREPARED
            self.txns[txn] = (DEBIT, account, amount)
        else:
            assert vote.reason == "INSUFFICIENT_FUNDS"
            self.state[txn] = ABORTED
        return txn

    @rule(target=prepared, account=st.sampled_from(ACCOUNTS), amount=amounts)
    def prepare_credit(self, account: str, amount: int) -> str:
        txn = self._new_id()
        # a credit is not spendable yet
        assert self.ledger.prepare(txn, CREDIT, account, amount, "gw:1").yes
        self.state[txn] = PREPARED
        self.txns[txn] = (CREDIT, account, amount)
        return txn

    @rule(amount=amounts)
    def prepare_unknown_account(self, amount: int) -> None:
        txn = self._new_id()
        vote = self.ledger.prepare(txn, DEBIT, "nobody", amount, "gw:1")
        assert not vote.yes and vote.reason == "UNKNOWN_ACCOUNT"
        self.state[txn] = ABORTED

    @rule(txn=prepared)
    def prepare_again(self, txn: str) -> None:
        # A retried Prepare repeats the first vote and places no second hold.
        vote = self.ledger.prepare(txn, *self.txns.get(txn, (DEBIT, ACCOUNTS[0], 1)), "gw:1")
        assert vote.yes == (self.state[txn] != ABORTED)

    # -- phase two -------------------------------------------------------------

    @rule(target=finished, txn=consumes(prepared))
    def commit(self, txn: str) -> str:
        if self.state[txn] == ABORTED:  # a NO vote can never be committed
            try:
                self.ledger.commit(txn)
            except ProtocolViolation:
                return txn
            raise AssertionError(f"commit of aborted {txn} was accepted")
        assert self.ledger.commit(txn) == COMMITTED
        leg, account, amount = self.txns[txn]
        if leg == DEBIT:
            self.held[account] -= amount
            self.balance[account] -= amount
        else:
            self.balance[account] += amount
        self.state[txn] = COMMITTED
        return txn

    @rule(target=finished, txn=consumes(prepared))
    def abort(self, txn: str) -> str:
        assert self.ledger.abort(txn) == ABORTED
        if self.state[txn] == PREPARED and self.txns[txn][0] == DEBIT:
            self.held[self.txns[txn][1]] -= self.txns[txn][2]
        self.state[txn] = ABORTED
        return txn

    @rule(txn=finished)
    def decide_again(self, txn: str) -> None:
        # A duplicate of the same decision is a no-op; the opposite one is refused.
        if self.state[txn] == COMMITTED:
            assert self.ledger.commit(txn) == COMMITTED
            try:
                self.ledger.abort(txn)
            except ProtocolViolation:
                pass
            else:
                raise AssertionError(f"abort after commit of {txn} was accepted")
        else:
            assert self.ledger.abort(txn) == ABORTED

    @rule(account=st.sampled_from(ACCOUNTS), amount=amounts, leg=st.sampled_from((DEBIT, CREDIT)))
    def abort_before_prepare(self, account: str, amount: int, leg: str) -> None:
        # The Abort overtook its Prepare: it leaves a tombstone, so the late Prepare votes NO.
        txn = self._new_id()
        assert self.ledger.abort(txn) == ABORTED
        vote = self.ledger.prepare(txn, leg, account, amount, "gw:1")
        assert not vote.yes and vote.reason == "ABORTED_BEFORE_PREPARE"
        self.state[txn] = ABORTED

    @rule()
    def reopen(self) -> None:
        # A restart: everything the ledger said is durable must still be there.
        self.ledger.close()
        self.ledger = Ledger(self.path, bank="BankM")

    @precondition(lambda self: any(s == PREPARED for s in self.state.values()))
    @rule()
    def in_doubt_lists_every_prepared(self) -> None:
        listed = {txn for txn, _ in self.ledger.in_doubt(older_than_ms=0, limit=10_000)}
        assert listed == {t for t, s in self.state.items() if s == PREPARED}

    # -- invariants ------------------------------------------------------------

    @invariant()
    def books_match_model(self) -> None:
        for account in ACCOUNTS:
            b = self.ledger.balance(account)
            assert (b.balance_minor, b.held_minor) == (self.balance[account], self.held[account]), (
                account
            )
            assert b.balance_minor >= 0 and b.available_minor >= 0

    @invariant()
    def states_match_model(self) -> None:
        for txn, state in self.state.items():
            assert self.ledger.txn_state(txn) == state, txn

    @invariant()
    def ledger_sums_to_balance(self) -> None:
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            sums = dict(
                conn.execute("SELECT account_id, SUM(delta_minor) FROM entries GROUP BY account_id")
            )
            captured = dict(
                conn.execute(
                    "SELECT txn_id, COUNT(*) FROM entries WHERE txn_id IS NOT NULL GROUP BY txn_id"
                )
            )
        finally:
            conn.close()
        assert sums == self.balance
        # Exactly one entry per committed transaction, none for any other.
        assert captured == {t: 1 for t, s in self.state.items() if s == COMMITTED}


LedgerModel.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLedgerModel = LedgerModel.TestCase
