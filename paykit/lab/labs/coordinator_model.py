"""Lab B's model check: hypothesis draws scenarios (each bank's vote: YES or NO, on time or
late, or none; the payee's bank refusing decisions for a while; a restart after the payment)
and the student's rules must do what two-phase commit says: COMMIT exactly when both voted YES
in time, every decision logged before it is sent and never contradicted, delivered to both
banks by redrive (after a restart too), and GetDecision answering what the log holds."""

from __future__ import annotations

import threading
from concurrent.futures import Future

from paykit.core.twopc import DEBIT, Decision, Vote, leg_txn_id
from paykit.lab.grading import Broken, Run, model_settings

VOTES = ("yes", "no", "none", "late yes", "late no")
LATE_S = 0.05
PREPARE_TIMEOUT_S = 0.2
EXAMPLES = 10
EXPLICIT = [
    [("yes", "yes", False, False)],
    [("late yes", "no", False, False)],
    [("yes", "none", False, True)],
    [("yes", "late yes", True, True)],
    [("no", "yes", True, False), ("yes", "yes", True, True)],
]


def _vote(kind: str) -> Vote | Future | None:
    if kind == "none":
        return None
    vote = Vote(True) if kind.endswith("yes") else Vote(False, "INSUFFICIENT_FUNDS", "no money")
    if not kind.startswith("late"):
        return vote
    late: Future[Vote] = Future()
    threading.Timer(LATE_S, late.set_result, [vote]).start()
    return late


def _one(gw, a: str, b: str, down: bool, restart: bool) -> None:
    told = f"votes {a}/{b}" + (", BankB refusing decisions" if down else "")
    told += ", then a restart" if restart else ""
    gw.banks.votes = {"BankA": _vote(a), "BankB": _vote(b)}
    gw.banks.down = {"BankB"} if down else set()
    pid, _ = gw.pay()
    want = Decision.COMMIT if {a, b} <= {"yes", "late yes"} else Decision.ABORT
    logged = gw.logged(pid).decision
    if logged != want:
        raise Broken(f"the model check ({told}) found {logged} logged; the rules say {want}")
    for bank, txn, commit, at_send in list(gw.banks.sent):
        sent = Decision.COMMIT if commit else Decision.ABORT
        if txn.startswith(pid) and (at_send != sent or sent != logged):
            raise Broken(
                f"the model check ({told}) saw {bank} told {sent} while the log held {at_send}: "
                "log the decision first, and never send another one"
            )
    if restart:
        gw.restart()
    gw.banks.down = set()
    commit = logged == Decision.COMMIT
    gw.redrive_until(
        lambda: {("BankA", commit), ("BankB", commit)} <= set(gw.banks.told(pid)),
        f"the model check ({told}): the logged {logged} never reached both banks (redrive)",
    )
    if gw.coordinator.decision_for(leg_txn_id(pid, DEBIT)) != logged:
        raise Broken(f"the model check ({told}): GetDecision does not answer the logged {logged}")


def model_check(run: Run, gateway_factory) -> None:
    from hypothesis import example, given
    from hypothesis import strategies as st
    from hypothesis.configuration import set_hypothesis_home_dir

    examples = iter(range(10**6))
    payment = st.tuples(
        st.sampled_from(VOTES), st.sampled_from(VOTES), st.booleans(), st.booleans()
    )

    def explicit(test):
        for payments in EXPLICIT:
            test = example(payments=payments)(test)
        return test

    @model_settings(EXAMPLES)
    @explicit
    @given(payments=st.lists(payment, min_size=1, max_size=2))
    def scenarios(payments) -> None:
        gw = gateway_factory(run, f"model-{next(examples)}.db", PREPARE_TIMEOUT_S)
        try:
            for a, b, down, restart in payments:
                _one(gw, a, b, down, restart)
        finally:
            gw.close()

    set_hypothesis_home_dir(run.workdir / "hypothesis")  # its cache stays in the run's folder
    try:
        scenarios()
    finally:
        set_hypothesis_home_dir(None)
