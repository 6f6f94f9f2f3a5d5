"""A payment history written straight into a stopped cluster's databases (`paykit bench --preload`).

It goes through the bulk loads of the modules that own each schema (payments, idempotency,
ledger), so the books stay consistent and paykit.lab.check holds on the result.
"""

from __future__ import annotations

import random
import sqlite3
import uuid
from collections import Counter
from typing import TextIO

from paykit.bank import ledger
from paykit.core.clock import now_ms
from paykit.core.twopc import CREDIT, DEBIT, Decision, leg_txn_id
from paykit.gateway import idempotency, payments
from paykit.gateway.payments import PaymentRecord
from paykit.gateway.server import encode_pay_response
from paykit.lab.load import BANKS
from paykit.lab.terminal import on_terminal

PRELOAD_BATCH = 50_000  # rows per executemany: bounded memory however big the preload
PRELOAD_SPAN_MS = 30 * 24 * 3600 * 1000  # the history spreads over the last 30 days
DAY_MS = 24 * 3600 * 1000


def preload(cluster, users: list[tuple[str, str, str]], n: int, out: TextIO | None = None) -> None:
    """Writes n committed payments between `users` into the stopped cluster's databases, through
    the bulk loads of the modules that own each schema (payments, idempotency, ledger).

    Each payment has its gateway row, decided and settled, and a committed leg with its entry at
    each bank; balances move by the net amounts, so paykit.lab.check holds. Keys of the last two
    days are kept (older ones are past the retention: pruning at start deletes them)."""
    gw = sqlite3.connect(cluster.gateway_db())
    banks = {b: sqlite3.connect(cluster.bank_db(b)) for b in cluster.bank_names}
    for conn in (gw, *banks.values()):
        # A bulk load into stopped servers' files: one fsync at each batch's end is enough,
        # a crash here only loses benchmark data.
        conn.execute("PRAGMA synchronous = NORMAL")
    rng, now, done = random.Random(7), now_ms(), 0
    while done < n:
        size = min(PRELOAD_BATCH, n - done)
        rows = _preload_rows(users, done, size, now, rng)
        with gw:
            payments.insert_history(gw, rows["payments"])
            idempotency.insert_answered(gw, rows["keys"])
        for bank, conn in banks.items():
            with conn:
                ledger.insert_history(conn, rows["legs"][bank], rows["net"][bank])
        done += size
        if on_terminal(out):  # progress only on a terminal: a pipe gets bench's result lines
            print(f"\r  preload: {done}/{n} payments", end="", file=out, flush=True)
    for conn in (gw, *banks.values()):
        conn.close()
    if on_terminal(out):
        print(file=out)


def _preload_rows(users, start: int, size: int, now: int, rng: random.Random) -> dict:
    rows = {
        "payments": [],
        "keys": [],
        "legs": {b: [] for b in BANKS},
        "net": {b: Counter() for b in BANKS},
    }
    for k in range(start, start + size):
        (user, fbank, facct), (_, tbank, tacct) = users[k % len(users)], users[(k + 1) % len(users)]
        amount = 1 + k % 97
        ts = now - int(rng.random() * PRELOAD_SPAN_MS)
        pid, key = uuid.uuid4().hex, str(uuid.uuid4())
        rows["payments"].append((pid, user, key, fbank, facct, tbank, tacct, amount, ts))
        if ts > now - 2 * DAY_MS:
            rec = PaymentRecord(
                pid,
                user,
                key,
                fbank,
                facct,
                tbank,
                tacct,
                amount,
                Decision.COMMIT,
                created_unix_ms=ts,
                debit_acked=True,
                credit_acked=True,
            )
            rows["keys"].append(
                (
                    user,
                    key,
                    idempotency.fingerprint(fbank, facct, tbank, tacct, amount),
                    pid,
                    encode_pay_response(rec),
                    ts,
                )
            )
        rows["legs"][fbank].append((leg_txn_id(pid, DEBIT), DEBIT, facct, amount, ts))
        rows["legs"][tbank].append((leg_txn_id(pid, CREDIT), CREDIT, tacct, amount, ts))
        rows["net"][fbank][facct] -= amount
        rows["net"][tbank][tacct] += amount
    return rows


# -- the run --------------------------------------------------------------------
