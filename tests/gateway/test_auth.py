"""Passwords, tokens, lockout and per-user authorization at the gateway, over real mutual TLS.

Calls go through a raw stub where the test needs the exact gRPC status code and message.
"""

from __future__ import annotations

import secrets
import sqlite3
import time

import grpc
import pytest
from argon2 import PasswordHasher
from conftest import signed_in

from paykit import PaymentClient
from paykit.core.errors import NotAuthenticated
from paykit.gateway.users import BAD_LOGIN, PASSWORD_MAX_LEN, hash_token
from paykit.lab.check import total_money
from paykit.rpc.channels import secure_channel
from paykit.rpc.pki import CLIENT_CN, ensure_identity
from paykit.v1 import payment_pb2 as pb
from paykit.v1 import payment_pb2_grpc as pb_grpc

FREE_FAILURES = 3
CALL_TIMEOUT_S = 5.0


CLUSTER = {"gateway_args": ("--sign-in-free-failures", str(FREE_FAILURES))}


@pytest.fixture(scope="module")
def stub(shared_cluster):
    with secure_channel(
        shared_cluster.gateway_address, ensure_identity(shared_cluster.pki_dir, CLIENT_CN)
    ) as channel:
        yield pb_grpc.GatewayStub(channel)


def refused(call, request, token: str = "") -> grpc.RpcError:
    """Makes a call that must fail and returns its error."""
    metadata = [("authorization", f"Bearer {token}")] if token else []
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=CALL_TIMEOUT_S, metadata=metadata)
    return caught.value


def new_password() -> str:
    return "pw-" + secrets.token_hex(8)


def balance_minor(client: PaymentClient) -> int:
    return client.balance().balance_minor


# -- what the database holds ------------------------------------------------------------


def test_gateway_database_holds_no_password_and_no_token(shared_cluster):
    password = new_password()
    client = shared_cluster.client()
    client.register("dbcheck", password, "dbcheck-acct", "10", "BankA")
    token = client.authenticate("dbcheck", password).token
    raw = b"".join(p.read_bytes() for p in shared_cluster.gateway_db().parent.glob("gateway.db*"))
    assert password.encode() not in raw
    assert token.encode() not in raw and token.split("_", 1)[1].encode() not in raw
    # What is there instead: the token's SHA-256, and an argon2id hash of the password.
    assert hash_token(token).encode() in raw
    with sqlite3.connect(f"file:{shared_cluster.gateway_db()}?mode=ro", uri=True) as conn:
        salt, digest = conn.execute(
            "SELECT password_salt, password_hash FROM users WHERE username = 'dbcheck'"
        ).fetchone()
    # argon2id with OWASP's parameters; its salt is inside the encoded hash.
    assert salt == b"" and digest.startswith(b"$argon2id$v=19$m=19456,t=2,p=1$")
    assert PasswordHasher().verify(digest, password)


# -- tokens ------------------------------------------------------------------------------


def test_bad_tokens_are_unauthenticated_with_a_clear_message(shared_cluster, stub):
    password = new_password()
    client = signed_in(shared_cluster, "tokens", "tokens-acct", password=password)
    good = client.token
    assert (
        stub.GetBalance(
            pb.GetBalanceRequest(),
            timeout=CALL_TIMEOUT_S,
            metadata=[("authorization", f"Bearer {good}")],
        ).account_id
        == "tokens-acct"
    )
    tampered = good[:-1] + ("A" if good[-1] != "A" else "B")
    forged = "pk_" + secrets.token_urlsafe(32)
    cases = {"": "not signed in", tampered: "not recognised", forged: "not recognised"}
    for token, says in cases.items():
        err = refused(stub.GetBalance, pb.GetBalanceRequest(), token)
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED, token
        assert says in err.details()
        assert not token or token not in err.details()
    # Logout revokes: the same token, good a moment ago, is now refused and says why.
    client.logout()
    err = refused(stub.GetBalance, pb.GetBalanceRequest(), good)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in err.details() and good not in err.details()
    # The client API reports the same thing as a NotAuthenticated error.
    client.token = good
    with pytest.raises(NotAuthenticated, match="revoked"):
        client.balance()


def test_expired_token_is_unauthenticated(make_cluster):
    short = make_cluster(gateway_args=("--token-ttl-s", "1"))
    client = signed_in(short, "expiry", "expiry-acct")
    assert client.balance().account_id == "expiry-acct"  # valid at first
    deadline = time.monotonic() + 5
    while True:
        try:
            client.balance()
        except NotAuthenticated as err:
            assert "expired" in str(err) and client.token not in str(err)
            break
        assert time.monotonic() < deadline, "the token did not expire within 5 s of a 1 s lifetime"
        time.sleep(0.1)


# -- passwords, lockout, names -------------------------------------------------------------


def test_unknown_user_and_wrong_password_get_the_same_reply(shared_cluster, stub):
    signed_in(shared_cluster, "samereply", "samereply-acct")
    wrong = refused(
        stub.Authenticate, pb.AuthenticateRequest(username="samereply", password="not-the-password")
    )
    unknown = refused(
        stub.Authenticate,
        pb.AuthenticateRequest(username="nobody-here", password="not-the-password"),
    )
    assert (wrong.code(), wrong.details()) == (unknown.code(), unknown.details())
    assert (wrong.code(), wrong.details()) == (grpc.StatusCode.UNAUTHENTICATED, BAD_LOGIN)


def test_failures_make_the_next_attempt_wait_then_the_password_works(shared_cluster, stub):
    password = new_password()
    signed_in(shared_cluster, "locky", "locky-acct", password=password)
    for _ in range(FREE_FAILURES):
        err = refused(
            stub.Authenticate, pb.AuthenticateRequest(username="locky", password="wrong-password")
        )
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    # Now an attempt must wait (1 s after the third failure), even with the right password,
    # and the reply says for how long; it is not counted, so it does not lengthen the wait.
    err = refused(stub.Authenticate, pb.AuthenticateRequest(username="locky", password=password))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "try again in 1 s" in err.details()
    waited_from = time.monotonic()
    deadline = waited_from + 5
    while True:
        try:
            reply = stub.Authenticate(
                pb.AuthenticateRequest(username="locky", password=password), timeout=CALL_TIMEOUT_S
            )
            break
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert time.monotonic() < deadline, "still refused long after the wait"
            time.sleep(0.1)
    assert reply.username == "locky" and reply.token
    assert time.monotonic() - waited_from >= 0.5  # it really had to wait


def test_over_long_password_and_username_are_refused_quickly(shared_cluster, stub):
    huge = "x" * 200_000  # far over the limit, still under gRPC's 1 MiB message cap
    started = time.monotonic()
    err = refused(stub.Authenticate, pb.AuthenticateRequest(username="anyone", password=huge))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "too long" in err.details()
    err = refused(
        stub.Register,
        pb.RegisterRequest(
            username="longpw",
            password=huge,
            account_id="longpw-acct",
            opening_balance_minor=1,
            bank="BankA",
        ),
    )
    assert (
        err.code() == grpc.StatusCode.INVALID_ARGUMENT
        and f"at most {PASSWORD_MAX_LEN}" in err.details()
    )
    err = refused(
        stub.Register,
        pb.RegisterRequest(
            username="u" * 100_000,
            password="password123",
            account_id="longname-acct",
            opening_balance_minor=1,
            bank="BankA",
        ),
    )
    assert (
        err.code() == grpc.StatusCode.INVALID_ARGUMENT and "username is too long" in err.details()
    )
    assert huge not in err.details()
    # Three refusals, none of which ran scrypt on 200 kB: well under a second together.
    assert time.monotonic() - started < 1.0


def test_look_alike_usernames_cannot_register_twice(shared_cluster, stub):
    signed_in(shared_cluster, "Carol", "carol-acct")
    # The last is fullwidth "Ｃａｒｏｌ".
    for look_alike in ("carol", "CAROL", "\uff23\uff41\uff52\uff4f\uff4c"):
        err = refused(
            stub.Register,
            pb.RegisterRequest(
                username=look_alike,
                password="password123",
                account_id="carol-other",
                opening_balance_minor=1,
                bank="BankA",
            ),
        )
        assert err.code() == grpc.StatusCode.ALREADY_EXISTS, look_alike
    # The refused registrations opened no account; the look-alike signs in as the one user.
    with sqlite3.connect(f"file:{shared_cluster.bank_db('BankA')}?mode=ro", uri=True) as conn:
        assert (
            conn.execute(
                "SELECT COUNT(*) FROM accounts WHERE account_id = 'carol-other'"
            ).fetchone()[0]
            == 0
        )
    reply = stub.Authenticate(
        pb.AuthenticateRequest(username="\uff23\uff41\uff52\uff4f\uff4c", password="password123"),
        timeout=CALL_TIMEOUT_S,
    )
    assert reply.username == "carol"


# -- a user acts only on their own account ---------------------------------------------------


@pytest.fixture(scope="module")
def alice_and_bob(shared_cluster):
    alice = signed_in(shared_cluster, "alice", "alice-acct", "500", "BankA")
    bob = signed_in(shared_cluster, "bob", "bob-acct", "700", "BankB")
    bob.pay("BankA", "alice-acct", "7")  # so bob has a history to peek at
    return alice, bob


def test_cannot_read_another_users_balance(shared_cluster, stub, alice_and_bob):
    alice, bob = alice_and_bob
    bobs_balance = str(balance_minor(bob))
    for request in (
        pb.GetBalanceRequest(bank="BankB", account_id="bob-acct"),
        pb.GetBalanceRequest(account_id="bob-acct"),
    ):
        err = refused(stub.GetBalance, request, alice.token)
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "own balance" in err.details()
        assert bobs_balance not in err.details()  # no figure leaks


def test_cannot_search_another_users_history(shared_cluster, stub, alice_and_bob):
    alice, bob = alice_and_bob
    for name in ("bob", "BOB"):
        err = refused(stub.SearchPayments, pb.SearchPaymentsRequest(username=name), alice.token)
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "own payments" in err.details()
    # Nor fetch one of bob's payments by id (alice is neither payer nor payee of this one).
    bobs = bob.search()[0]
    carol_pay = bob.pay("BankA", "bank123", "1")
    err = refused(
        stub.GetPayment, pb.GetPaymentRequest(payment_id=carol_pay.payment_id), alice.token
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert bobs.to_account == "alice-acct"  # she may see the one she received
    assert alice.get_payment(bobs.payment_id).amount_minor == 700


def test_cannot_pay_from_another_users_account(shared_cluster, stub, alice_and_bob):
    alice, bob = alice_and_bob
    before = (
        balance_minor(alice),
        balance_minor(bob),
        total_money(shared_cluster),
        len(bob.search()),
        len(alice.search()),
    )
    request = pb.PayRequest(
        idempotency_key="5f0e8c1a-0000-4000-8000-000000000001",
        to_bank="BankA",
        to_account="alice-acct",
        amount_minor=100,
        from_account="bob-acct",
    )
    err = refused(stub.Pay, request, alice.token)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "your own account" in err.details()
    # Nothing changed: balances, the money in the system, either user's history.
    after = (
        balance_minor(alice),
        balance_minor(bob),
        total_money(shared_cluster),
        len(bob.search()),
        len(alice.search()),
    )
    assert after == before
    # And the refused key was not consumed: alice may use it for a payment of her own.
    assert alice.pay("BankB", "bob-acct", amount_minor=100, key=request.idempotency_key).succeeded
