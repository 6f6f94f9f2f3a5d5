"""However late a resend comes, no payment is applied twice (docs/correctness.md: keys after
retention).

The gateway keeps a key's stored answer for its retention (24 h; here 1 s), its payments for
ever. An outbox that was offline for longer than the retention resends a payment the gateway
committed but never answered: the gateway refuses the old key, naming the payment, and the
client looks its outcome up instead of paying again.
"""

from __future__ import annotations

import time

from conftest import signed_in

from paykit.lab.check import check_invariants, read_gateway

RETENTION_S = 1.0
DEADLINE_S = 20.0


def test_a_resend_after_the_retention_is_looked_up_not_paid_again(make_cluster, tmp_path):
    cluster = make_cluster(
        failpoints=True, gateway_args=("--idempotency-retention-s", str(RETENTION_S))
    )
    ada = signed_in(cluster, "ada", "ada-acct", "1000", outbox_dir=tmp_path / "ada")
    cluster.arm("gateway", "gateway.before_reply")  # COMMIT logged and sent, then SIGKILL
    queued = ada.pay("BankB", "recipient123", "40")
    assert queued.queued  # no answer came back: the outbox will resend it with its key
    cluster.wait_dead("gateway")
    time.sleep(RETENTION_S * 2)  # offline for longer than the gateway keeps the key's answer
    cluster.restart("gateway")  # it prunes old keys when it starts
    ended = next(ada.completions(timeout_s=DEADLINE_S))
    assert ended.succeeded and ended.outbox_id == queued.outbox_id
    (payment,) = read_gateway(cluster.gateway_db())  # one payment: the resend ran nothing
    assert ended.payment_id == payment.payment_id
    assert ada.balance().balance_minor == 100_000 - 4_000
    check_invariants(cluster).assert_ok()
    ada.close()
