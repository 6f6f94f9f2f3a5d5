"""Lab C, the idempotency store: the checks that grade a student's IdempotencyStoreBase.

Unit checks run the student's class in this process, inside real SQLite write transactions
(paykit.core.db, the gateway's own), with the store's clock under the grader's control so that
hours pass in no time; the concurrency check sends 16 duplicates from 16 real threads at once.
Whole-cluster checks start banks and a gateway running the student's class (one cluster for the
grade), resend payments over real TLS, crash the gateway at failpoints and restart it, let keys
expire, and run a short seeded chaos test whose invariants must hold.
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

from paykit.core.db import Database
from paykit.core.errors import IdempotencyKeyExpired, IdempotencyKeyReused, InProgress, PaykitError
from paykit.core.twopc import Decision
from paykit.gateway import idempotency, payments
from paykit.gateway.idempotency import Claim
from paykit.gateway.keystore import (
    IdempotencyStoreBase,
    KeyTable,
    PayRequest,
    prune_all,
)
from paykit.gateway.payments import PaymentRecord
from paykit.lab.check import read_gateway
from paykit.lab.grading import Broken, Check, Lab, Run
from paykit.lab.labs import kit
from paykit.v1 import payment_pb2 as pb

HOUR_MS = 3_600_000
RETENTION_S = 24 * 3600.0
DUPLICATES = 16
PARAMS = ("BankA", "ada-acct", "BankB", "bob-acct", 500)


class Keys:
    """The student's store over a real gateway database, as the gateway drives it."""

    def __init__(self, run: Run, name: str = "gateway.db") -> None:
        self.run = run
        self.db = Database(run.workdir / name, payments.SCHEMA + idempotency.SCHEMA)
        self.now = 1_700_000_000_000
        self.store: IdempotencyStoreBase = run.target()

    def clock(self) -> int:
        return self.now

    def claim(self, user: str, key: str, params: tuple = PARAMS) -> Claim:
        """Claims in one write transaction with the payment row, as the gateway does."""
        pid = uuid.uuid4().hex
        request = PayRequest(user, key, idempotency.fingerprint(*params), pid)
        with self.db.write() as conn:
            got = self.store.claim(KeyTable(conn, self.clock), request)
            if not isinstance(got, Claim):
                raise Broken(f"claim must return an idempotency.Claim, not {type(got).__name__}")
            if got.response is None:
                if got.payment_id != pid:
                    raise Broken(
                        "a new claim is Claim(request.new_payment_id, None); a replay carries "
                        "its stored response"
                    )
                payments.insert(
                    conn, PaymentRecord(pid, user, key, *params, created_unix_ms=self.now)
                )
        return got

    def finish(self, user: str, key: str, payment_id: str, decision=Decision.COMMIT, reason=""):
        """Logs the decision and stores the response in one transaction; returns the bytes."""
        from paykit.gateway.server import encode_pay_response

        with self.db.write() as conn:
            payments.log_decision(conn, payment_id, decision, reason, reason.lower())
            decided = payments.get(conn, payment_id)
            response = encode_pay_response(decided)
            self.store.finish(KeyTable(conn, self.clock), decided, response)
        return response

    def paid(self, user: str, key: str) -> tuple[str, bytes]:
        got = self.claim(user, key)
        return got.payment_id, self.finish(user, key, got.payment_id)

    def prune(self, retention_s: float = RETENTION_S) -> int:
        return prune_all(self.db.write, self.store, retention_s, clock=self.clock, batch=100)

    def row(self, user: str, key: str):
        return KeyTable(self.db.read()).get(user, key)

    def payments_for(self, user: str, key: str) -> int:
        return (
            self.db.read()
            .execute(
                "SELECT COUNT(*) FROM payments WHERE username = ? AND idempotency_key = ?",
                (user, key),
            )
            .fetchone()[0]
        )

    def attempt(self, user: str, key: str, params: tuple = PARAMS) -> Claim | PaykitError:
        """The claim, or the paykit error it was refused with."""
        try:
            return self.claim(user, key, params)
        except PaykitError as err:
            return err

    def refusal(self, user: str, key: str, params: tuple = PARAMS) -> PaykitError | None:
        return kit.refusal(lambda: self.claim(user, key, params))

    def close(self) -> None:
        self.db.close()


def _keys_check(fn):
    """A check body of (Keys, Run), with the store's database closed afterwards."""

    def run_it(run: Run) -> None:
        keys = Keys(run)
        try:
            fn(keys, run)
        finally:
            keys.close()

    run_it.__name__ = fn.__name__
    return run_it


def _key() -> str:
    return str(uuid.uuid4())


@_keys_check
def new_key(keys: Keys, run: Run) -> None:
    got = keys.claim("ada", _key())
    if got.response is not None:
        raise Broken("a key never seen before claims a new payment: Claim(new_payment_id, None)")


@_keys_check
def replay(keys: Keys, run: Run) -> None:
    first, second = _key(), _key()
    paid = {k: keys.paid("ada", k) for k in (first, second)}
    for store in (keys.store, run.target()):  # the same object, and a new one (a restart)
        keys.store = store
        for k, (pid, response) in paid.items():
            got = keys.attempt("ada", k)
            if not isinstance(got, Claim) or (got.payment_id, got.response) != (pid, response):
                raise Broken(
                    "a finished key replays its own payment and stored response byte for byte, "
                    "read from the table (a new store object, after a restart, must too)"
                )


@_keys_check
def replay_errors(keys: Keys, run: Run) -> None:
    k = _key()
    got = keys.claim("ada", k)
    response = keys.finish("ada", k, got.payment_id, Decision.ABORT, "INSUFFICIENT_FUNDS")
    again = keys.attempt("ada", k)
    if not isinstance(again, Claim) or again.response != response:
        what = kit.reason_of(again) if not isinstance(again, Claim) else "other bytes"
        raise Broken(
            "a failed payment's response is stored and replayed byte for byte too (an error is "
            f"an answer): the retry got {what}"
        )


@_keys_check
def new_key_same_params(keys: Keys, run: Run) -> None:
    a, b = keys.attempt("ada", _key()), keys.attempt("ada", _key())  # same moment and parameters
    fresh = all(isinstance(c, Claim) and c.response is None for c in (a, b))
    if not fresh or a.payment_id == b.payment_id:
        raise Broken(
            "a new key is a new payment, even with the same parameters at the same moment: "
            "deduplicate by key, never by time or parameters"
        )


@_keys_check
def replay_later(keys: Keys, run: Run) -> None:
    k = _key()
    pid, response = keys.paid("ada", k)
    for hours in (1, 6, 23):
        keys.now += hours * HOUR_MS // 2
        keys.prune()
        got = keys.attempt("ada", k)
        if not isinstance(got, Claim) or got.response != response:
            what = kit.reason_of(got) if not isinstance(got, Claim) else "not the stored response"
            raise Broken(
                "a retry hours later, within the retention, still replays: time only prunes "
                f"old keys, it never decides whether a request is a duplicate ({hours} h: {what})"
            )


@_keys_check
def changed_params(keys: Keys, run: Run) -> None:
    k = _key()
    got = keys.claim("ada", k)
    changed = ("BankA", "ada-acct", "BankB", "bob-acct", 501)
    while_running = keys.refusal("ada", k, changed)
    response = keys.finish("ada", k, got.payment_id)
    after = keys.refusal("ada", k, changed)
    for err in (while_running, after):
        if not isinstance(err, IdempotencyKeyReused):
            raise Broken(
                "a key reused with different parameters is refused with IdempotencyKeyReused "
                f"(in progress or done), got {kit.reason_of(err)}"
            )
    again = keys.attempt("ada", k)
    if not isinstance(again, Claim) or again.response != response:
        raise Broken("a refused reuse must change nothing: the key still replays its response")


@_keys_check
def in_progress(keys: Keys, run: Run) -> None:
    k = _key()
    keys.claim("ada", k)
    err = keys.refusal("ada", k)
    if not isinstance(err, InProgress):
        raise Broken(
            "a duplicate of a payment still in progress gets InProgress (retry later), never a "
            f"second payment: got {kit.reason_of(err)}"
        )


@_keys_check
def concurrent_duplicates(keys: Keys, run: Run) -> None:
    k = _key()
    start = threading.Barrier(DUPLICATES)

    def one(_):
        start.wait()
        return kit.refusal(lambda: keys.claim("ada", k))

    with ThreadPoolExecutor(DUPLICATES) as pool:
        answers = list(pool.map(one, range(DUPLICATES)))
    ran = keys.payments_for("ada", k)
    refused = sum(isinstance(a, InProgress) for a in answers)
    if ran != 1 or refused != DUPLICATES - 1:
        raise Broken(
            f"{DUPLICATES} duplicates sent at once ran {ran} payments ({refused} got InProgress): "
            "exactly one may run, every other gets InProgress"
        )


@_keys_check
def per_user(keys: Keys, run: Run) -> None:
    k = _key()
    ada = keys.paid("ada", k)
    other = ("BankB", "bob-acct", "BankA", "ada-acct", 700)
    got = keys.refusal("bob", k, other)
    if got is not None:
        raise Broken(
            f"keys are per user: another user's same key is a new payment, got {got.reason}"
        )
    again = keys.attempt("ada", k)
    if not isinstance(again, Claim) or again.response != ada[1]:
        raise Broken("keys are per user: each user's key replays that user's own response")


@_keys_check
def prune_old(keys: Keys, run: Run) -> None:
    old = _key()
    keys.paid("ada", old)
    keys.now += 2 * HOUR_MS
    young = _key()
    keys.paid("ada", young)
    keys.now += int(RETENTION_S * 1000) - HOUR_MS  # old is 25 h old, young 23 h
    pruned = keys.prune()
    if keys.row("ada", old) is not None or pruned < 1:
        raise Broken("pruning forgets finished keys older than the retention (keys must expire)")
    if keys.row("ada", young) is None:
        raise Broken("pruning keeps keys younger than the retention")


@_keys_check
def prune_in_progress(keys: Keys, run: Run) -> None:
    k = _key()
    keys.claim("ada", k)
    keys.now += 2 * int(RETENTION_S * 1000)
    keys.prune()
    err = keys.refusal("ada", k)
    if not isinstance(err, InProgress):
        raise Broken(
            "pruning never forgets a key still in progress: a duplicate must still get "
            f"InProgress, got {kit.reason_of(err)}"
        )


@_keys_check
def expired(keys: Keys, run: Run) -> None:
    k = _key()
    pid, _ = keys.paid("ada", k)
    keys.now += 2 * int(RETENTION_S * 1000)
    keys.prune()
    err = keys.refusal("ada", k)
    if not isinstance(err, IdempotencyKeyExpired) or err.metadata.get("payment_id") != pid:
        raise Broken(
            "a pruned key whose payment exists (table.earlier_payment) is refused with "
            "IdempotencyKeyExpired naming the payment (metadata payment_id), never run again: "
            f"got {kit.reason_of(err)}"
        )
    changed = ("BankA", "ada-acct", "BankB", "bob-acct", 999)
    if not isinstance(keys.refusal("ada", k, changed), IdempotencyKeyReused):
        raise Broken("a pruned key reused with different parameters is IdempotencyKeyReused")
    if keys.payments_for("ada", k) != 1:
        raise Broken("a pruned key must never start a second payment")


def model(run: Run) -> None:
    """The hypothesis model: random sequences against a dict model of the rules."""
    from paykit.lab.labs.idempotency_model import model_check

    model_check(run, Keys)


# -- whole-cluster checks -------------------------------------------------------------------


def _cluster(run: Run):
    return kit.cluster(run, idempotency=kit.dotted(run.target), failpoints=True)


def gateway_replay(run: Run) -> None:
    c = _cluster(run)
    ada, _ = kit.payer(c)
    _, bob = kit.payer(c, bank="BankB")
    k = _key()
    first = ada.pay_bytes("BankB", bob, 1_000, k)
    if ada.pay_bytes("BankB", bob, 1_000, k) != first:
        raise Broken("through the gateway, a resent Pay replays the first answer byte for byte")
    err = kit.refusal(lambda: ada.pay_bytes("BankB", bob, 2_000, k))
    if kit.reason_of(err) != "IDEMPOTENCY_KEY_REUSED":
        raise Broken(
            f"through the gateway, a changed amount is KEY_REUSED, got {kit.reason_of(err)}"
        )
    k2 = _key()
    failed = ada.pay_bytes("BankB", bob, 10 * kit.OPENING_MINOR, k2)  # insufficient funds
    if ada.pay_bytes("BankB", bob, 10 * kit.OPENING_MINOR, k2) != failed:
        raise Broken("through the gateway, a failed payment's answer replays byte for byte")
    k3 = _key()
    with ThreadPoolExecutor(8) as pool:  # eight sends of one payment at once
        list(
            pool.map(lambda _: kit.refusal(lambda: ada.pay_bytes("BankB", bob, 300, k3)), range(8))
        )
    ran = sum(p.idempotency_key == k3 for p in read_gateway(c.gateway_db()))
    if ran != 1:
        raise Broken(f"eight concurrent sends of one key ran {ran} payments; exactly one may run")
    kit.settled(c, "after the replays the books do not add up")


def crash_then_retry(run: Run) -> None:
    """The gateway dies after deciding but before answering (after logging COMMIT, before its
    reply) and after claiming but before deciding: the retry after the restart replays the
    decided answer, exactly once."""
    c = _cluster(run)
    ada, _ = kit.payer(c)
    _, bob = kit.payer(c, bank="BankB")
    _crash_and_retry(c, ada, bob, "gateway.before_reply", pb.PAYMENT_STATUS_SUCCEEDED)
    _crash_and_retry(c, ada, bob, "gateway.after_commit_logged", pb.PAYMENT_STATUS_SUCCEEDED)
    _crash_and_retry(c, ada, bob, "gateway.before_decision", pb.PAYMENT_STATUS_FAILED)
    kit.settled(c, "after the crashes the books do not add up")


def _crash_and_retry(c, ada, bob: str, failpoint: str, status: int) -> None:
    k = _key()
    c.arm("gateway", failpoint)
    if kit.refusal(lambda: ada.pay("BankB", bob, 700, k, timeout_s=5)) is None:
        raise Broken(f"the gateway should have crashed at {failpoint}")
    c.wait_dead("gateway")
    c.restart("gateway")
    with kit.open_session(c, ada) as again:
        kit.eventually(
            lambda: kit.refusal(lambda: again.pay("BankB", bob, 700, k)) is None,
            10,
            f"after a crash at {failpoint} and a restart, the retry of the same key keeps "
            "being refused: the decided payment's answer must replay",
        )
        payment = again.pay("BankB", bob, 700, k)
    if payment.status != status:
        want, got = (pb.PaymentStatus.Name(s) for s in (status, payment.status))
        raise Broken(
            f"after a crash at {failpoint}, the retry must replay the payment's decided "
            f"outcome ({want}), got {got}"
        )
    ran = sum(p.idempotency_key == k for p in read_gateway(c.gateway_db()))
    if ran != 1:
        raise Broken(f"after a crash at {failpoint}, the retry ran {ran} payments, not one")


def retention(run: Run) -> None:
    """With a one-second retention the gateway prunes keys while serving: a late resend is
    refused with IDEMPOTENCY_KEY_EXPIRED, and pays nothing."""
    c = _cluster(run)
    saved = c.gateway_args
    c.gateway_args = (*saved, "--idempotency-retention-s", "1")
    try:
        c.restart("gateway")
        ada, _ = kit.payer(c)
        _, bob = kit.payer(c, bank="BankB")
        k = _key()
        paid = ada.pay("BankB", bob, 400, k)
        err = kit.eventually(
            lambda: kit.refusal(lambda: ada.pay("BankB", bob, 400, k)),
            8,
            "with a 1 s retention, a resend 8 s later still replays: keys must expire",
        )
        if kit.reason_of(err) != "IDEMPOTENCY_KEY_EXPIRED":
            raise Broken(
                f"a resend after the retention is IDEMPOTENCY_KEY_EXPIRED, got {kit.reason_of(err)}"
            )
        if err.metadata.get("payment_id") != paid.payment_id:
            raise Broken("IDEMPOTENCY_KEY_EXPIRED names the payment (metadata payment_id)")
        ran = sum(p.idempotency_key == k for p in read_gateway(c.gateway_db()))
        if ran != 1:
            raise Broken(f"a resend after the retention ran {ran} payments; it must run none")
    finally:
        c.gateway_args = saved
        c.restart("gateway")


def chaos(run: Run) -> None:
    """A short seeded chaos run: gateway kills and failpoint crashes, lost replies; clients
    resend with their keys, and every invariant must hold."""
    kit.gateway_chaos(run, "exactly-once", idempotency=kit.dotted(run.target))


LAB = Lab(
    name="idempotency",
    interface=IdempotencyStoreBase,
    reference="paykit.gateway.keystore:SqlKeys",
    checks=[
        Check("new_key", "a key never seen claims a new payment", new_key),
        Check("replay", "a finished key replays its response byte for byte", replay),
        Check("replay_errors", "a failed payment's response is replayed too", replay_errors),
        Check(
            "same_params",
            "a new key is a new payment, whatever its parameters",
            new_key_same_params,
        ),
        Check("replay_later", "time never decides a duplicate; it only prunes", replay_later),
        Check("changed_params", "a key reused with other parameters is KEY_REUSED", changed_params),
        Check("in_progress", "a duplicate of a running payment gets IN_PROGRESS", in_progress),
        Check("concurrent", "16 duplicates at once run one payment", concurrent_duplicates),
        Check("per_user", "keys are per user", per_user),
        Check("prune", "finished keys older than the retention are pruned", prune_old),
        Check("prune_in_progress", "a key in progress is never pruned", prune_in_progress),
        Check("expired", "a pruned key is KEY_EXPIRED, never run again", expired),
        Check("model", "random claims, finishes, hours and prunes: as the rules say", model, 2),
        Check("gateway_replay", "replays through a real gateway", gateway_replay, points=2),
        Check(
            "crash_retry", "a retry after a gateway crash replays, once", crash_then_retry, points=2
        ),
        Check("retention", "a late resend through the gateway is KEY_EXPIRED", retention, points=2),
        Check("chaos", "a short chaos run keeps every invariant", chaos, points=2),
    ],
)
