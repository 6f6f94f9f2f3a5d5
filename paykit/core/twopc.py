"""The vocabulary of two-phase commit that the coordinator, the banks and the tools share.

The protocol says prepare / commit / abort (Decision); the ledger says hold / capture /
release. Each payment is two participant transactions, one per leg: `<payment id>.debit` at
the payer's bank and `<payment id>.credit` at the payee's, so a payment between two accounts
of one bank works like any other. The enums are `str`, so they are stored and logged as their
values ("commit", "debit", ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Leg(StrEnum):
    DEBIT = "debit"  # the payer's side: Prepare places a hold, Commit captures it
    CREDIT = "credit"  # the payee's side: Prepare records the expected credit, Commit applies it


DEBIT, CREDIT = Leg.DEBIT, Leg.CREDIT
BATCH_LEGS_MAX = 256  # legs (Prepares and decisions) in one Exchange call, at most


class Decision(StrEnum):
    """What the coordinator answers about a payment: logged COMMIT or ABORT, or PENDING while it
    is still collecting votes. No record at all means ABORT (presumed abort)."""

    COMMIT = "commit"
    ABORT = "abort"
    PENDING = "pending"


class TxnState(StrEnum):
    """A participant transaction at a bank."""

    PREPARED = "prepared"  # voted YES: the hold stays until the decision arrives
    COMMITTED = "committed"
    ABORTED = "aborted"  # voted NO, told to abort, or a tombstone (Abort before Prepare)


class PaymentStatus(StrEnum):
    """A payment as its payer sees it."""

    PENDING = "pending"  # no decision logged yet
    SUCCEEDED = "succeeded"  # COMMIT logged
    FAILED = "failed"  # ABORT logged, with a reason


STATUS_OF_DECISION = {
    None: PaymentStatus.PENDING,
    Decision.COMMIT: PaymentStatus.SUCCEEDED,
    Decision.ABORT: PaymentStatus.FAILED,
}


@dataclass(frozen=True)
class Vote:
    """A participant's answer to Prepare. NO is an expected outcome, with a stable reason
    (INSUFFICIENT_FUNDS, UNKNOWN_ACCOUNT, BANK_TIMEOUT, ...) and a message for people."""

    yes: bool
    reason: str = ""
    message: str = ""


def leg_txn_id(payment_id: str, leg: str) -> str:
    """A leg's participant transaction id."""
    return f"{payment_id}.{leg}"


def payment_of(txn_id: str) -> str:
    """The payment a participant transaction id belongs to."""
    return txn_id.rsplit(".", 1)[0]
