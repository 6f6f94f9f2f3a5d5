"""Invariants any test or lesson can check on a cluster's databases (read-only).

    money conserved       sum of balances == sum of opening deposits, at every bank together
    no negative           no balance and no available balance below zero
    ledger matches        each balance == its opening deposit + its ledger entries
    nothing in doubt      no prepared transaction and no hold left at any bank
    agreement             every decided payment is in the same final state at both banks
    one payment per key   each (user, idempotency key) gave at most one payment
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path


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

    @property
    def total_minor(self) -> int:
        return sum(self.balances.values())


def read_bank(name: str, db_path: Path) -> BankBooks:
    with _ro(db_path) as conn:
        accounts = conn.execute("SELECT account_id, balance_minor, held_minor, opening_minor FROM accounts").fetchall()
        sums = dict(conn.execute("SELECT account_id, SUM(delta_minor) FROM entries GROUP BY account_id").fetchall())
        states = dict(conn.execute("SELECT txn_id, state FROM txns").fetchall())
    return BankBooks(
        name,
        {r["account_id"]: r["balance_minor"] for r in accounts},
        {r["account_id"]: r["held_minor"] for r in accounts},
        {r["account_id"]: r["opening_minor"] for r in accounts},
        sums,
        states,
    )


@dataclass
class Report:
    """Each invariant's name -> (holds?, a figure that shows it)."""

    results: dict[str, tuple[bool, str]] = field(default_factory=dict)

    def add(self, name: str, ok: bool, figure: str) -> None:
        self.results[name] = (ok, figure)

    @property
    def ok(self) -> bool:
        return all(ok for ok, _ in self.results.values())

    def __str__(self) -> str:
        return "\n".join(f"{'ok  ' if ok else 'FAIL'} {name:22} {fig}" for name, (ok, fig) in self.results.items())

    def assert_ok(self) -> None:
        assert self.ok, f"invariants violated:\n{self}"


def total_money(cluster) -> int:
    """Sum of every balance at every bank of the cluster, in minor units."""
    return sum(read_bank(b, cluster.bank_db(b)).total_minor for b in cluster.bank_names)


def check_invariants(cluster) -> Report:
    banks = {b: read_bank(b, cluster.bank_db(b)) for b in cluster.bank_names}
    report = Report()
    total = sum(bk.total_minor for bk in banks.values())
    opened = sum(sum(bk.opening.values()) for bk in banks.values())
    report.add("money conserved", total == opened, f"total {total} == opened {opened} (minor units)")
    negative = [(b, a) for b, bk in banks.items() for a, v in bk.balances.items() if v < 0 or v - bk.held[a] < 0]
    report.add("no negative", not negative, f"{len(negative)} accounts below zero {negative[:3]}")
    mismatched = [(b, a) for b, bk in banks.items() for a, v in bk.balances.items() if bk.entry_sums.get(a, 0) != v]
    report.add("ledger matches", not mismatched, f"{len(mismatched)} balances differ from their ledger {mismatched[:3]}")
    in_doubt = [(b, t) for b, bk in banks.items() for t, s in bk.txn_states.items() if s == "prepared"]
    holds = sum(sum(bk.held.values()) for bk in banks.values())
    report.add("nothing in doubt", not in_doubt and holds == 0, f"{len(in_doubt)} prepared, {holds} held")
    with _ro(cluster.gateway_db()) as conn:
        rows = conn.execute("SELECT payment_id, from_bank, to_bank, decision FROM payments").fetchall()
        dup_keys = conn.execute(
            "SELECT COUNT(*) FROM (SELECT username, idempotency_key FROM payments "
            "GROUP BY username, idempotency_key HAVING COUNT(*) > 1)"
        ).fetchone()[0]
    disagree = []
    for r in rows:
        legs = (banks[r["from_bank"]].txn_states.get(f"{r['payment_id']}.debit"),
                banks[r["to_bank"]].txn_states.get(f"{r['payment_id']}.credit"))
        want = {"commit": {"committed"}, "abort": {"aborted", None}, None: {"aborted", None}}[r["decision"]]
        if not set(legs) <= want:
            disagree.append((r["payment_id"][:8], r["decision"], legs))
    report.add("agreement", not disagree, f"{len(rows)} payments, {len(disagree)} disagree {disagree[:3]}")
    report.add("one payment per key", dup_keys == 0, f"{dup_keys} keys with more than one payment")
    return report
