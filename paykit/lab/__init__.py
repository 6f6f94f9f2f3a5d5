"""paykit.lab: the tools for teaching and testing, in one place for notebooks.

Lessons import only from `paykit` and `paykit.lab`, so a module can move without a
notebook changing. Names load lazily (PEP 562): `from paykit.lab import check_answer`
does not import pandas or matplotlib until a name that needs them is used.

    LocalCluster, check_invariants, total_money        a cluster and its invariants
    Relays, LinkState                                  the network between its processes
    read_logs, rpc_calls, twopc_events, ...            every process's log as a DataFrame
    charts                                             matplotlib charts of those logs
    run_chaos, FAILPOINTS                              faults on purpose
    check_answer, check_hashed, wait_until, books, ...  small lesson helpers (paykit.lab.lessons)
    sequence_diagram, sequence_steps                   one payment drawn from the logs
    table, Progress                                    what a lesson shows (paykit.lab.display)
    race_payments, race_debits, check_debit, ...       the racing-payments lesson
    HoldWatch, crash_coordinator, blocking_window_s    the coordinator-crash lesson
    links_table, fault_trial, leg_state, ...           the network lesson (paykit.lab.network)
    sweep_prepare_timeout, plot_sweep, ...             the timeouts lesson (paykit.lab.timeouts)
    attempt, certificate_attempts, guess_passwords     the attacks lesson (paykit.lab.threats)
    time_split, payers_curve, plot_curve, ...          the performance lesson (paykit.lab.perf)
    PaymentForm                                        the ipywidgets payment form
    grade                                              grade a lab (paykit.lab.grading)
    participant                                        Lab A's interface (paykit.bank.participant)
    check_lab                                          a lab sheet's graded cell: ✓, or ✗ + hints
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> module that defines it (a module's own name maps to the module itself).
_EXPORTS: dict[str, str] = {
    "LocalCluster": "paykit.lab.cluster",
    "Relays": "paykit.lab.relay",
    "LinkState": "paykit.lab.relay",
    "check_invariants": "paykit.lab.check",
    "total_money": "paykit.lab.check",
    "read_bank": "paykit.lab.check",
    "run_chaos": "paykit.lab.chaos",
    "read_logs": "paykit.lab.logs",
    "rpc_calls": "paykit.lab.logs",
    "twopc_events": "paykit.lab.logs",
    "retried_requests": "paykit.lab.logs",
    "charts": "paykit.lab.charts",
    "FAILPOINTS": "paykit.core.failpoints",
    "PaymentForm": "paykit.client.widgets",
    "grade": "paykit.lab.grading",
    "participant": "paykit.bank.participant",  # Lab A: Participant, LegStore, Vote, states
    "check_lab": "paykit.lab.labs.kit",
    "sequence_diagram": "paykit.lab.diagram",
    "sequence_steps": "paykit.lab.diagram",
    "table": "paykit.lab.display",
    "Progress": "paykit.lab.display",
    "race_payments": "paykit.lab.race",
    "race_debits": "paykit.lab.race",
    "race_table": "paykit.lab.race",
    "naive_debit": "paykit.lab.race",
    "check_debit": "paykit.lab.race",
    "HoldWatch": "paykit.lab.blocking",
    "blocking_window_s": "paykit.lab.blocking",
    "gateway_down_s": "paykit.lab.blocking",
    "crash_coordinator": "paykit.lab.blocking",
    "links_table": "paykit.lab.network",
    "fault_trial": "paykit.lab.network",
    "leg_state": "paykit.lab.network",
    "unanswered_questions": "paykit.lab.network",
    "timeout_payers": "paykit.lab.timeouts",
    "sweep_prepare_timeout": "paykit.lab.timeouts",
    "plot_sweep": "paykit.lab.timeouts",
    "shortest_clean_timeout": "paykit.lab.timeouts",
    "attempt": "paykit.lab.threats",
    "session_with_token": "paykit.lab.threats",
    "forged_token": "paykit.lab.threats",
    "certificate_attempts": "paykit.lab.threats",
    "guess_passwords": "paykit.lab.threats",
    "checked_guesses": "paykit.lab.threats",
    "plot_guesses": "paykit.lab.threats",
    "fsync_ms": "paykit.lab.perf",
    "curve_gateway_args": "paykit.lab.perf",
    "time_split": "paykit.lab.perf",
    "plot_time_split": "paykit.lab.perf",
    "payers_curve": "paykit.lab.perf",
    "plot_curve": "paykit.lab.perf",
    "speedup": "paykit.lab.perf",
    "slowest_phase": "paykit.lab.perf",
    "bank_rpcs_per_payment": "paykit.lab.perf",
    "IdempotencyKeyReused": "paykit.core.errors",
    "InProgress": "paykit.core.errors",
    "NotAuthenticated": "paykit.core.errors",
    "PaykitError": "paykit.core.errors",
    **{
        name: "paykit.lab.lessons"
        for name in (
            "accepted_with_certificate",
            "answer_digest",
            "ask_decision",
            "books",
            "check_answer",
            "check_hashed",
            "in_background",
            "in_doubt",
            "make_traffic",
            "pay_concurrently",
            "payment_id_of",
            "pid_alive",
            "refused_with_stranger_certificate",
            "refused_without_certificate",
            "second_copy",
            "servers",
            "servers_running_under",
            "wait_recovered",
            "wait_until",
        )
    },
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'paykit.lab' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if module_name.rsplit(".", 1)[-1] == name else getattr(module, name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return __all__
