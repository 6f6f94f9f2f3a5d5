"""Invariants any test, lesson or the chaos run can check on a cluster's databases (read-only).

    money conserved       sum of balances == sum of opening deposits, at every bank together
    no negative           no balance and no available balance below zero
    ledger matches        each balance == its opening deposit + its ledger entries
    nothing in doubt      no prepared transaction and no hold left at any bank
    decisions delivered   every payment decided at the gateway, and acknowledged by both banks
    agreement             every decided payment is in the same final state at both banks
    applied once          a committed payment has exactly one entry per leg, an aborted one none
    books match payments  each balance == opening + credits - debits of its committed payments
    one payment per key   each (user, idempotency key) gave at most one payment
    client view           (given what clients were told) succeeded -> committed, failed -> aborted

No import of grpc: this reads SQLite files only, so it works on a stopped cluster too.
"""

from __future__ import annotations

import html
import sqlite3
from collections import Counter
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from paykit.core.twopc import CREDIT, DEBIT, Decision, PaymentStatus, TxnState, leg_txn_id
from paykit.gateway.payments import PaymentRecord

SUCCEEDED, FAILED = PaymentStatus.SUCCEEDED, PaymentStatus.FAILED


def _ro(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    return conn


@dataclass
class BankBooks:
    name: str
    balances: dict[str, int]
    held: dict[str, int]
    opening: dict[str, int]
    entry_sums: dict[str, int]
    txn_states: dict[str, str]
    # txn id -> number of ledger entries
    entries_per_txn: dict[str, int] = field(default_factory=dict)

    @property
    def total_minor(self) -> int:
        return sum(self.balances.values())


def read_bank(name: str, db_path: Path) -> BankBooks:
    with closing(_ro(db_path)) as conn:
        accounts = conn.execute(
            "SELECT account_id, balance_minor, held_minor, opening_minor FROM accounts"
        ).fetchall()
        sums = dict(
            conn.execute(
                "SELECT account_id, SUM(delta_minor) FROM entries GROUP BY account_id"
            ).fetchall()
        )
        states = dict(conn.execute("SELECT txn_id, state FROM txns").fetchall())
        per_txn = dict(
            conn.execute(
                "SELECT txn_id, COUNT(*) FROM entries WHERE txn_id IS NOT NULL GROUP BY txn_id"
            ).fetchall()
        )
    return BankBooks(
        name,
        {r["account_id"]: r["balance_minor"] for r in accounts},
        {r["account_id"]: r["held_minor"] for r in accounts},
        {r["account_id"]: r["opening_minor"] for r in accounts},
        sums,
        states,
        per_txn,
    )


def read_gateway(db_path: Path) -> list[PaymentRecord]:
    """The gateway's payments, as the gateway itself reads them."""
    with closing(_ro(db_path)) as conn:
        return [PaymentRecord.from_row(r) for r in conn.execute("SELECT * FROM payments")]


@dataclass
class Report:
    """Each invariant's name -> (holds?, a figure that shows it)."""

    results: dict[str, tuple[bool, str]] = field(default_factory=dict)

    def add(self, name: str, ok: bool, figure: str) -> None:
        self.results[name] = (ok, figure)

    @property
    def ok(self) -> bool:
        return all(ok for ok, _ in self.results.values())

    @property
    def violations(self) -> list[str]:
        return [name for name, (ok, _) in self.results.items() if not ok]

    def __str__(self) -> str:
        return "\n".join(
            f"{'ok  ' if ok else 'FAIL'} {name:22} {fig}"
            for name, (ok, fig) in self.results.items()
        )

    def assert_ok(self) -> None:
        assert self.ok, f"invariants violated:\n{self}"

    def _repr_html_(self) -> str:
        """A notebook view: one row per invariant, a tick or a red cross, and its figure."""
        rows = "".join(
            f'<tr style="color:{"inherit" if ok else "#b00020"}"><td>{"✓" if ok else "✗"}</td>'
            f'<td style="text-align:left">{html.escape(name)}</td>'
            f'<td style="text-align:left">{html.escape(figure)}</td></tr>'
            for name, (ok, figure) in self.results.items()
        )
        verdict = (
            "every invariant holds"
            if self.ok
            else f"violated: {', '.join(self.violations) or 'no checks ran'}"
        )
        return f"<table><caption>Invariants: {html.escape(verdict)}</caption>{rows}</table>"


def total_money(cluster) -> int:
    """Sum of every balance at every bank of the cluster, in minor units."""
    return sum(read_bank(b, cluster.bank_db(b)).total_minor for b in cluster.bank_names)


def read_books(cluster) -> tuple[dict[str, BankBooks], list[PaymentRecord]]:
    """Every bank's books, then the gateway's payments (read in that order)."""
    banks = {b: read_bank(b, cluster.bank_db(b)) for b in cluster.bank_names}
    return banks, read_gateway(cluster.gateway_db())


def money_sample(cluster) -> tuple[int, int]:
    """(sum of balances, money in flight) right now, in minor units.

    In flight: captured at the payer's bank, not yet credited at the payee's (the
    moment between the two Commits), less credits applied before their debit. Each bank's
    balances move only by its committed legs, so reading one bank's balances and legs in
    ONE snapshot makes (its balances + its legs in flight) equal its opening deposits,
    whatever the other banks do meanwhile: the sum is exact, and a chart of it is flat."""
    total = in_flight = 0
    for b in cluster.bank_names:
        with closing(_ro(cluster.bank_db(b))) as conn:
            conn.execute("BEGIN")  # one read snapshot for both queries
            total += conn.execute(
                "SELECT COALESCE(SUM(balance_minor), 0) FROM accounts"
            ).fetchone()[0]
            in_flight += conn.execute(
                "SELECT COALESCE(SUM(CASE leg WHEN 'debit' THEN amount_minor ELSE -amount_minor "
                "END), 0) "
                "FROM txns WHERE state = 'committed'"
            ).fetchone()[0]
    return total, in_flight


def _leg_states(banks: Mapping[str, BankBooks], p: PaymentRecord) -> tuple[str | None, str | None]:
    return (
        banks[p.from_bank].txn_states.get(leg_txn_id(p.payment_id, DEBIT)),
        banks[p.to_bank].txn_states.get(leg_txn_id(p.payment_id, CREDIT)),
    )


def _leg_entries(banks: Mapping[str, BankBooks], p: PaymentRecord) -> tuple[int, int]:
    return (
        banks[p.from_bank].entries_per_txn.get(leg_txn_id(p.payment_id, DEBIT), 0),
        banks[p.to_bank].entries_per_txn.get(leg_txn_id(p.payment_id, CREDIT), 0),
    )


def _check_money(report: Report, banks: Mapping[str, BankBooks]) -> None:
    total = sum(bk.total_minor for bk in banks.values())
    opened = sum(sum(bk.opening.values()) for bk in banks.values())
    report.add(
        "money conserved", total == opened, f"total {total} == opened {opened} (minor units)"
    )
    negative = [
        (b, a)
        for b, bk in banks.items()
        for a, v in bk.balances.items()
        if v < 0 or v - bk.held[a] < 0
    ]
    report.add("no negative", not negative, f"{len(negative)} accounts below zero {negative[:3]}")
    mismatched = [
        (b, a)
        for b, bk in banks.items()
        for a, v in bk.balances.items()
        if bk.entry_sums.get(a, 0) != v
    ]
    report.add(
        "ledger matches",
        not mismatched,
        f"{len(mismatched)} balances differ from opening + their ledger {mismatched[:3]}",
    )
    in_doubt = [
        (b, t) for b, bk in banks.items() for t, s in bk.txn_states.items() if s == "prepared"
    ]
    holds = sum(sum(bk.held.values()) for bk in banks.values())
    report.add(
        "nothing in doubt", not in_doubt and holds == 0, f"{len(in_doubt)} prepared, {holds} held"
    )


def _check_payments(
    report: Report, banks: Mapping[str, BankBooks], rows: list[PaymentRecord]
) -> None:
    undecided = sum(p.decision is None for p in rows)
    unsettled = sum(p.decision is not None and not p.settled for p in rows)
    report.add(
        "decisions delivered",
        undecided == 0 and unsettled == 0,
        f"{undecided} undecided, {unsettled} decided but not acknowledged by both banks",
    )
    disagree, twice = [], []
    expected = {b: dict(bk.opening) for b, bk in banks.items()}
    for p in rows:
        legs = _leg_states(banks, p)
        want = {
            Decision.COMMIT: {TxnState.COMMITTED},
            Decision.ABORT: {TxnState.ABORTED, None},
            None: {TxnState.ABORTED, None},
        }[p.decision]
        if not set(legs) <= want:
            disagree.append((p.payment_id[:8], p.decision, legs))
        if _leg_entries(banks, p) != ((1, 1) if p.decision == Decision.COMMIT else (0, 0)):
            twice.append((p.payment_id[:8], p.decision, _leg_entries(banks, p)))
        if p.decision == Decision.COMMIT:
            debit, credit = expected[p.from_bank], expected[p.to_bank]
            debit[p.from_account] = debit.get(p.from_account, 0) - p.amount_minor
            credit[p.to_account] = credit.get(p.to_account, 0) + p.amount_minor
    report.add(
        "agreement", not disagree, f"{len(rows)} payments, {len(disagree)} disagree {disagree[:3]}"
    )
    committed = sum(p.decision == Decision.COMMIT for p in rows)
    report.add(
        "applied once",
        not twice,
        f"{committed} committed with one entry per leg, {len(twice)} applied wrongly {twice[:3]}",
    )
    off = [
        (b, a, v, expected[b].get(a))
        for b, bk in banks.items()
        for a, v in bk.balances.items()
        if expected[b].get(a) != v
    ]
    report.add(
        "books match payments",
        not off,
        f"{len(off)} balances differ from opening + committed payments {off[:3]}",
    )
    dup_keys = sum(n > 1 for n in Counter((p.username, p.idempotency_key) for p in rows).values())
    report.add("one payment per key", dup_keys == 0, f"{dup_keys} keys with more than one payment")


def check_client_view(
    report: Report, rows: list[PaymentRecord], told: Mapping[tuple[str, str], str]
) -> None:
    """`told`: (username, idempotency key) -> 'succeeded' | 'failed', the final answer a client
    got."""
    by_key = {(p.username, p.idempotency_key): p for p in rows}
    want = {SUCCEEDED: Decision.COMMIT, FAILED: Decision.ABORT}
    wrong = [
        (
            user,
            key[:8],
            outcome,
            by_key[(user, key)].decision if (user, key) in by_key else "no payment",
        )
        for (user, key), outcome in told.items()
        if (user, key) not in by_key or by_key[(user, key)].decision != want[outcome]
    ]
    counts = Counter(told.values())
    report.add(
        "client view",
        not wrong,
        f"{counts[SUCCEEDED]} told succeeded, {counts[FAILED]} told failed; {len(wrong)} "
        "contradicted "
        f"{wrong[:3]}",
    )


def check_invariants(cluster, *, told: Mapping[tuple[str, str], str] | None = None) -> Report:
    """Every invariant above on the cluster's files; `told` adds the client-view check."""
    banks, rows = read_books(cluster)
    report = Report()
    _check_money(report, banks)
    _check_payments(report, banks, rows)
    if told is not None:
        check_client_view(report, rows, told)
    return report
