"""Lesson 8 (the network is not a crash): a payment sent through a network fault, and what each
bank held and doubted while the fault lasted.

    links_table(cluster)                      the links, their state and traffic, as a DataFrame
    fault_trial(cluster, client, ("gateway", "BankA"), after_yes=True)
                                              pay through the fault, look while it lasts, heal
    unanswered_questions(cluster, bank, txn)  how often a bank asked GetDecision in vain

The faults are LocalCluster's (paykit.lab.relay, docs/network.md). A trial pays as the client it
is given, so a payment whose reply is lost stays in that client's outbox and is resent with its
key after the heal, as a real app would.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd

from paykit.client.models import Payment, html_view
from paykit.core.errors import InvalidInput
from paykit.lab.check import read_bank
from paykit.lab.lessons import books, in_background, in_doubt, payment_id_of, wait_until
from paykit.lab.logs import read_logs
from paykit.lab.relay import BOTH, DIRECTIONS, REPLIES

LINK_COLUMNS = ["link", "service", "state", "connections", "request_bytes", "reply_bytes",
                "dropped_bytes"]  # fmt: skip
SETTLE_TIMEOUT_S = 30.0


def links_table(cluster) -> pd.DataFrame:
    """One row per link of `cluster`: its name, the service called over it, its state, open
    connections and the bytes forwarded and lost so far (the columns a lesson reads)."""
    return pd.DataFrame(cluster.links(), columns=LINK_COLUMNS)


@dataclass
class FaultTrial:
    """One payment sent while a network fault lasted, and what the banks held meanwhile."""

    fault: str  # e.g. "partition gateway<->BankB, replies dropped"
    told_first: Payment  # what pay() returned while the fault lasted
    told_finally: Payment  # the payment's final state, after the heal
    in_doubt_during: list[tuple[str, str]]  # (bank, leg) prepared, undecided, during the fault
    held_during_minor: int  # money held at the banks during the fault
    payment_id: str

    def as_row(self) -> dict[str, object]:
        first = self.told_first
        return {
            "fault": self.fault,
            "told at first": f"{first.status} {first.failure_reason or first.queued_reason}",
            "told in the end": f"{self.told_finally.status} {self.told_finally.failure_reason}",
            "in doubt during the fault": ", ".join(b for b, _ in self.in_doubt_during) or "-",
            "held during the fault": f"{self.held_during_minor / 100:.2f}",
        }

    def _repr_html_(self) -> str:
        return html_view("A payment through a network fault", self.as_row())


def _held_minor(cluster) -> int:
    return int(books(cluster).held_minor.sum())


def fault_trial(
    cluster, client, pair: tuple[str, ...], drop: str = BOTH, *, after_yes: bool = False,
    amount: str = "10", to_bank: str = "BankB", look_after_s: float = 1.0,
) -> FaultTrial:  # fmt: skip
    """Partitions `pair` (two process names, or one link's name) dropping `drop` ("both",
    "requests" or "replies") and has `client` pay `amount` to `to_bank`/recipient123. With
    `after_yes`, only the replies are dropped until the pair's bank has prepared its leg (its
    YES is lost), then `drop`. Looks at the banks `look_after_s` after pay() answered, heals, and
    waits until the payment is final and nothing is held or in doubt."""
    if drop not in (BOTH, *DIRECTIONS):
        raise InvalidInput(f"drop must be one of both, requests, replies, not {str(drop)[:20]!r}")
    bank = next((name for name in pair if name in cluster.bank_names), None)
    if after_yes and bank is None:
        raise InvalidInput("after_yes needs a bank in the pair (whose YES is lost)")
    known = set(in_doubt(cluster))
    cluster.partition(*pair, drop=REPLIES if after_yes else drop)
    try:
        paying = in_background(client.pay, to_bank, "recipient123", amount)
        if after_yes:
            wait_until(lambda: {(b, t) for b, t in in_doubt(cluster) if b == bank} - known,
                       SETTLE_TIMEOUT_S, what=f"{bank}'s prepared leg", every_s=0.02)  # fmt: skip
            cluster.partition(*pair, drop=drop)
        first = paying.result(timeout=SETTLE_TIMEOUT_S)
        time.sleep(look_after_s)
        doubt, held = in_doubt(cluster), _held_minor(cluster)
    finally:
        cluster.heal()
    payment_id = first.payment_id or _wait_for_id(cluster, client, first)
    final = wait_until(
        lambda: (p := client.get_payment(payment_id)).status != "queued" and p.settled and p,
        SETTLE_TIMEOUT_S,
        what="the payment settled after the heal",
        every_s=0.2,
    )
    wait_until(lambda: not in_doubt(cluster) and not _held_minor(cluster), SETTLE_TIMEOUT_S)
    name = "<->".join(pair) if len(pair) == 2 else pair[0]
    fault = f"partition {name}" + ("" if drop == BOTH else f", {drop} dropped")
    return FaultTrial(fault + (" after the YES" if after_yes else ""), first, final, doubt, held,
                      payment_id)  # fmt: skip


def _wait_for_id(cluster, client, queued: Payment) -> str:
    """The id of the payment a queued payment's key made, once the outbox's resend got in."""
    return wait_until(
        lambda: payment_id_of(cluster.data_dir, client.username, queued.idempotency_key),
        SETTLE_TIMEOUT_S,
        what="the outbox's resend to reach the gateway",
        every_s=0.2,
    )


def unanswered_questions(cluster, bank: str, txn_id: str) -> int:
    """How many times `bank`'s in-doubt resolver asked the coordinator about leg `txn_id` and got
    no answer (its 2pc.in_doubt lines)."""
    df = read_logs(cluster)
    mine = (df["source"].astype(str) == bank) & (df["event"].astype(str) == "2pc.in_doubt")
    return int((mine & (df["txn_id"].astype("string") == txn_id)).sum())


def leg_state(cluster, bank: str, txn_id: str) -> str | None:
    """The state of leg `txn_id` in `bank`'s database (prepared, committed, aborted), or None
    if the bank never heard of it; read from the file, so it works while the bank is cut off."""
    return read_bank(bank, cluster.bank_db(bank)).txn_states.get(txn_id)
