"""What the proto says about a Pay reply holds on real servers: `settled` is false in it (the
reply is stored at the decision and replayed byte for byte), GetPayment says when it settled,
and the idempotency key that counts is the one in the body, not the `idempotency-key` header."""

from __future__ import annotations

import uuid

from conftest import PASSWORD, signed_in

from paykit.lab.lessons import wait_until
from paykit.v1 import payment_pb2 as pb

CLUSTER = {"banks": ("BankA", "BankB")}
TIMEOUT_S = 10.0


def pay(session, key: str, header: str | None, amount_minor: int = 100) -> bytes:
    metadata = [("authorization", f"Bearer {session.token}")]
    if header is not None:
        metadata.append(("idempotency-key", header))
    request = pb.PayRequest(
        idempotency_key=key, to_bank="BankB", to_account="recipient123", amount_minor=amount_minor
    )
    return session._pay_raw(request, timeout=TIMEOUT_S, metadata=metadata)


def test_a_pay_reply_says_settled_false_and_get_payment_says_when(shared_cluster):
    signed_in(shared_cluster, "xia", "xia-acct", "100", "BankA").close()
    session = shared_cluster.session()
    session.authenticate("xia", PASSWORD)
    key = str(uuid.uuid4())
    first = pay(session, key, key)
    reply = pb.PayResponse.FromString(first).payment
    assert reply.status == pb.PAYMENT_STATUS_SUCCEEDED and reply.settled is False
    settled = wait_until(
        lambda: (
            session.call("GetPayment", pb.GetPaymentRequest(payment_id=reply.payment_id)).settled
        ),
        TIMEOUT_S,
        what="both banks acknowledging",
    )
    assert settled
    assert pay(session, key, key) == first  # the replay: the same bytes, settled still false
    session.close()


def test_the_key_in_the_body_counts_and_the_header_is_not_needed(shared_cluster):
    signed_in(shared_cluster, "yan", "yan-acct", "100", "BankA").close()
    session = shared_cluster.session()
    session.authenticate("yan", PASSWORD)
    key = str(uuid.uuid4())
    first = pb.PayResponse.FromString(pay(session, key, None)).payment  # no header at all
    assert first.status == pb.PAYMENT_STATUS_SUCCEEDED and first.idempotency_key == key
    # The same body key with another header key: the same payment, not a second one.
    again = pb.PayResponse.FromString(pay(session, key, str(uuid.uuid4()))).payment
    assert again.payment_id == first.payment_id
    # Another body key with the first key in the header: a new payment.
    other = pb.PayResponse.FromString(pay(session, str(uuid.uuid4()), key)).payment
    assert other.payment_id != first.payment_id
    assert session.balance().balance_minor == 10_000 - 2 * 100
    session.close()
