"""Lab A: a bank's 2PC participant. The student writes the rules of
paykit.bank.participant.Participant; the kit's bank servers run them, and these checks grade them.

    paykit lab grade participant mylab:MyParticipant
    paykit.lab.grade("participant", "mylab:MyParticipant")

The checks, in the order they run (each names the rule it checks; its hint says which broke):
  the rules alone, on BankC called directly as the gateway would (its link to the coordinator
  cut, so its resolver hears nothing and must keep every hold):
    prepare_votes, commit_applies, abort_releases, duplicate_prepare, duplicate_commit,
    tombstone, decisions_need_prepare
  whole payments between BankA and BankB, through the gateway:
    crash_<point> at every bank failpoint: kill -9 there, restart, every invariant must hold
    asks_after_restart, keeps_hold_in_doubt, pending_keeps_hold: never decide alone
    chaos: a short seeded chaos run on a fresh cluster, every invariant at the end
    model: a hypothesis state machine drives the class in-process against a model of the rules
One cluster (three banks and a gateway, failpoints on) serves the checks; each judges only its
own payments and accounts (see participant_bench).
"""

from __future__ import annotations

import functools
import threading
import time
import traceback
import uuid

from paykit.bank.participant import Participant
from paykit.core.errors import PaykitError
from paykit.lab.chaos import ChaosConfig, run_chaos
from paykit.lab.check import read_gateway
from paykit.lab.grading import Broken, Check, Lab, Run
from paykit.lab.labs.participant_bench import Bench, bench, call, prepare_request, refused
from paykit.v1 import payment_pb2 as pb

DIRECT = "BankC"  # the bank the rule checks call by hand; payments run between BankA and BankB
AMOUNT = 10_000
PAY_TIMEOUT_S = 15.0


# -- the rules alone, on one bank called directly ---------------------------------------------


def _direct(fn):
    """A check on DIRECT, its resolver cut off from the coordinator (no answer: keep holds)."""

    @functools.wraps(fn)
    def check(run: Run) -> None:
        b: Bench = run.fixture
        cluster = b.cluster()
        cluster.cut(f"{DIRECT}->gateway")
        try:
            fn(b, run)
        finally:
            cluster.heal(f"{DIRECT}->gateway")  # only that link: the others' connections stay

    return check


def _txn() -> str:
    return f"{uuid.uuid4().hex}.debit"


def _vote(b: Bench, txn: str, leg: str, account: str, amount: int, what: str) -> pb.PrepareResponse:
    return call(what, b.bank(DIRECT).Prepare, prepare_request(txn, leg, account, amount))


def _expect_books(b: Bench, account: str, want: tuple[int, int], hint: str) -> None:
    got = b.balance(DIRECT, account)
    if got != want:
        raise Broken(f"{hint} (balance, held) is {got}, expected {want}")


@_direct
def _prepare_votes(b: Bench, run: Run) -> None:
    acct = b.new_account(DIRECT, 1_000)
    yes = _vote(b, _txn(), "debit", acct, 600, "Prepare of a covered debit must vote")
    if yes.vote != pb.VOTE_YES:
        raise Broken("a debit the available balance covers must vote YES (1000 available, 600)")
    _expect_books(b, acct, (1_000, 600), "a YES on a debit leg holds its amount:")
    rule = (
        "a debit above the AVAILABLE balance (balance - holds: 400 left, 500 asked) must vote "
        "NO with INSUFFICIENT_FUNDS"
    )
    no = _vote(b, _txn(), "debit", acct, 500, rule)
    if no.vote != pb.VOTE_NO or no.reason != "INSUFFICIENT_FUNDS":
        raise Broken(f"{rule}, got {pb.Vote.Name(no.vote)} {no.reason!r}")
    _expect_books(b, acct, (1_000, 600), "a NO vote places no hold:")
    nobody = _vote(b, _txn(), "debit", "nobody-here", 5, "Prepare on an unknown account")
    if nobody.vote != pb.VOTE_NO or nobody.reason != "UNKNOWN_ACCOUNT":
        raise Broken("a leg on an account the bank does not have must vote NO, UNKNOWN_ACCOUNT")
    credit = _vote(b, _txn(), "credit", acct, 700, "Prepare of a credit must vote")
    if credit.vote != pb.VOTE_YES:
        raise Broken("a credit leg to an existing account must vote YES")
    _expect_books(b, acct, (1_000, 600), "a credit's Prepare changes neither balance nor holds:")


@_direct
def _commit_applies(b: Bench, run: Run) -> None:
    payer, payee = b.new_account(DIRECT, 1_000), b.new_account(DIRECT, 50)
    debit, credit = _txn(), f"{uuid.uuid4().hex}.credit"
    _vote(b, debit, "debit", payer, 300, "Prepare")
    _vote(b, credit, "credit", payee, 300, "Prepare")
    stub = b.bank(DIRECT)
    on_debit = "Commit of a debit takes the amount off the payer and its hold away:"
    call(on_debit, stub.Commit, pb.CommitRequest(txn_id=debit))
    _expect_books(b, payer, (700, 0), on_debit)
    on_credit = "Commit of a credit leg adds the amount to the payee's balance:"
    call(on_credit, stub.Commit, pb.CommitRequest(txn_id=credit))
    _expect_books(b, payee, (350, 0), on_credit)


@_direct
def _abort_releases(b: Bench, run: Run) -> None:
    acct = b.new_account(DIRECT, 1_000)
    first, second = _txn(), _txn()
    _vote(b, first, "debit", acct, 300, "Prepare")
    _vote(b, second, "debit", acct, 200, "Prepare")
    stub = b.bank(DIRECT)
    call("Abort of a prepared leg must succeed", stub.Abort, pb.AbortRequest(txn_id=first))
    _expect_books(b, acct, (1_000, 200), "Abort releases that leg's hold, and only that one:")
    again = "a second Abort is a no-op (apply a decision once):"
    call(again, stub.Abort, pb.AbortRequest(txn_id=first))
    _expect_books(b, acct, (1_000, 200), again)
    if refused(stub.Commit, pb.CommitRequest(txn_id=first)) is None:
        raise Broken("Commit of an aborted leg must be refused (a decision is never changed)")
    call("Abort", stub.Abort, pb.AbortRequest(txn_id=second))
    _expect_books(b, acct, (1_000, 0), "Abort releases the hold:")


@_direct
def _duplicate_prepare(b: Bench, run: Run) -> None:
    acct = b.new_account(DIRECT, 1_000)
    txn = _txn()
    for attempt in ("first", "second"):
        vote = _vote(b, txn, "debit", acct, 400, f"the {attempt} Prepare")
        if vote.vote != pb.VOTE_YES:
            raise Broken(f"a retried Prepare repeats the first vote (YES), the {attempt} said NO")
    _expect_books(b, acct, (1_000, 400), "a retried Prepare places no second hold:")
    call("Abort", b.bank(DIRECT).Abort, pb.AbortRequest(txn_id=txn))


@_direct
def _duplicate_commit(b: Bench, run: Run) -> None:
    payer, payee = b.new_account(DIRECT, 1_000), b.new_account(DIRECT, 0)
    debit, credit = _txn(), f"{uuid.uuid4().hex}.credit"
    _vote(b, debit, "debit", payer, 250, "Prepare")
    _vote(b, credit, "credit", payee, 250, "Prepare")
    stub = b.bank(DIRECT)
    for n in (1, 2, 3):
        call(f"Commit number {n} must be acknowledged", stub.Commit, pb.CommitRequest(txn_id=debit))
        call(
            f"Commit number {n} must be acknowledged",
            stub.Commit,
            pb.CommitRequest(txn_id=credit),
        )
    _expect_books(b, payer, (750, 0), "a duplicate Commit changes nothing (apply it once):")
    _expect_books(b, payee, (250, 0), "a duplicate Commit changes nothing (apply it once):")


@_direct
def _tombstone(b: Bench, run: Run) -> None:
    acct = b.new_account(DIRECT, 1_000)
    txn = _txn()
    call(
        "an Abort before any Prepare must be acknowledged",
        b.bank(DIRECT).Abort,
        pb.AbortRequest(txn_id=txn),
    )
    late = _vote(b, txn, "debit", acct, 300, "the late Prepare")
    if late.vote != pb.VOTE_NO:
        raise Broken(
            "an Abort that arrives before its Prepare leaves a tombstone, so the late Prepare "
            "votes NO (this one voted YES)"
        )
    _expect_books(b, acct, (1_000, 0), "a Prepare after its Abort places no hold:")


@_direct
def _decisions_need_prepare(b: Bench, run: Run) -> None:
    acct = b.new_account(DIRECT, 100)
    stub = b.bank(DIRECT)
    err = refused(stub.Commit, pb.CommitRequest(txn_id=_txn()))
    if err is None or err.reason != "UNKNOWN_PAYMENT":
        raise Broken(
            "a Commit for a leg never prepared must be refused as UNKNOWN_PAYMENT (NOT_FOUND), "
            f"not acknowledged; got {'an ack' if err is None else err.reason}"
        )
    declined = _txn()
    _vote(b, declined, "debit", acct, 500, "Prepare beyond the balance")
    if refused(stub.Commit, pb.CommitRequest(txn_id=declined)) is None:
        raise Broken("a leg that voted NO is aborted: a Commit for it must be refused")
    _expect_books(b, acct, (100, 0), "a refused Commit changes nothing:")


# -- whole payments: crashes and silence ------------------------------------------------------


def _on_cluster(fn):
    """A check on the payment cluster, healed (a fresh one after a failed check)."""

    @functools.wraps(fn)
    def check(run: Run) -> None:
        b: Bench = run.fixture
        b.cluster()
        try:
            fn(b, run)
        except BaseException:
            b.dirty = True
            raise

    return check


def _pay(payer, payee: str, key: str):
    try:
        return payer.pay("BankB", payee, AMOUNT, key, timeout_s=PAY_TIMEOUT_S)
    except PaykitError as err:
        return err


def _paying(b: Bench, payer, payee: str, key: str) -> threading.Thread:
    b.keys.add(key)
    t = threading.Thread(target=_pay, args=(payer, payee, key), daemon=True)
    t.start()
    return t


def _settle(b: Bench, rule: str, when: str) -> None:
    broken = b.settled()
    if broken:
        raise Broken(f"{rule}; {when}, these invariants never came to hold: {broken}")


def _decision(b: Bench, key: str):
    found = [p for p in read_gateway(b.cluster_now().gateway_db()) if p.idempotency_key == key]
    return found[0].decision if found else None


def _payment_id(b: Bench, key: str, timeout_s: float = 10.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for p in read_gateway(b.cluster_now().gateway_db()):
            if p.idempotency_key == key:
                return p.payment_id
        time.sleep(0.05)
    raise Broken("the gateway never recorded the payment (a bank may not have started)")


CRASHES = {
    "bank.after_hold_before_commit": (
        "BankA",
        "a Prepare's hold and its prepared record are ONE store transaction, written before "
        "the vote",
    ),
    "bank.batch_between_legs": (
        "BankA",
        "each leg of a batch is applied whole or not at all, and a YES is durable before it "
        "is sent",
    ),
    "bank.after_vote_yes_before_reply": (
        "BankA",
        "a YES vote is durable before it is sent: after a restart the leg is still prepared, "
        "with its hold",
    ),
    "bank.after_reply_yes": (
        "BankB",
        "a leg that voted YES survives a restart and is decided by the coordinator's answer",
    ),
    "bank.after_commit_before_ack": (
        "BankA",
        "a Commit is applied once: the one resent after a restart changes nothing",
    ),
}


def _crash_check(failpoint: str):
    server, rule = CRASHES[failpoint]

    @_on_cluster
    def check(b: Bench, run: Run) -> None:
        cluster = b.cluster_now()
        payee = b.new_account("BankB")
        if failpoint == "bank.batch_between_legs":
            _batch_crash(b, payee)
        else:
            payer = b.new_payer("BankA")
            cluster.arm(server, failpoint)
            t = _paying(b, payer, payee, str(uuid.uuid4()))
            if not cluster.died_within(server, 10.0):
                raise Broken(f"{server} never reached {failpoint}; {rule}")
            cluster.restart(server)
            _holds_behind_legs(b, server, rule)
            t.join(PAY_TIMEOUT_S)
        _settle(b, rule, f"after a kill -9 at {failpoint} and a restart")

    return check


def _batch_crash(b: Bench, payee: str) -> None:
    """Three payments from BankA: the first in flight to a paused BankA, the next two wait at
    the gateway and go as one batch, which crashes BankA between its legs."""
    cluster = b.cluster_now()
    payers = [b.new_payer("BankA") for _ in range(3)]
    cluster.pause("BankA")
    threads = [_paying(b, payers[0], payee, str(uuid.uuid4()))]
    time.sleep(0.5)
    threads += [_paying(b, p, payee, str(uuid.uuid4())) for p in payers[1:]]
    time.sleep(0.5)
    cluster.arm("BankA", "bank.batch_between_legs")
    cluster.resume("BankA")
    if not cluster.died_within("BankA", 10.0):
        raise Broken("BankA never reached bank.batch_between_legs (batches not applied leg by leg)")
    cluster.restart("BankA")
    _holds_behind_legs(b, "BankA", CRASHES["bank.batch_between_legs"][1])
    for t in threads:
        t.join(PAY_TIMEOUT_S)


def _holds_behind_legs(b: Bench, bank: str, rule: str) -> None:
    """Right after a restart: every prepared debit leg has its hold, and no hold is without one."""
    for account, held, prepared in b.holds(bank):
        if held != prepared:
            raise Broken(
                f"{rule}; after the restart {account} at {bank} holds {held} while its prepared "
                f"debit legs add up to {prepared}"
            )


ASK_RULE = (
    "after a restart, a participant asks the coordinator about every leg still prepared IN THE "
    "STORE (resolve) and applies COMMIT or ABORT"
)


@_on_cluster
def _asks_after_restart(b: Bench, run: Run) -> None:
    cluster = b.cluster_now()
    payer, payee = b.new_payer("BankA"), b.new_account("BankB")
    key = str(uuid.uuid4())
    cluster.arm("BankB", "bank.after_reply_yes")
    t = _paying(b, payer, payee, key)
    if not cluster.died_within("BankB", 10.0):
        raise Broken("BankB never voted YES (check prepare_votes first)")
    # The gateway can no longer bring BankB the decision: BankB must ask for it.
    cluster.partition("gateway->BankB")
    cluster.restart("BankB")
    payment = _payment_id(b, key)
    deadline = time.monotonic() + 6.0
    while b.leg_state("BankB", f"{payment}.credit") == "prepared":
        if time.monotonic() > deadline:
            raise Broken(f"{ASK_RULE}; BankB's credit leg stayed prepared 6 s after its restart")
        time.sleep(0.1)
    cluster.heal()
    t.join(PAY_TIMEOUT_S)
    _settle(b, ASK_RULE, "after the restart")


ALONE_RULE = "a participant that voted YES never decides alone: while the coordinator is silent"


def _held(b: Bench, bank: str, payment: str, leg: str, account: str | None) -> str:
    """Why a leg is not prepared with its hold any more, or "" if it is."""
    state = b.leg_state(bank, f"{payment}.{leg}")
    if state != "prepared":
        return f"{bank}'s {leg} leg is {state}"
    if account is not None and b.balance(bank, account)[1] != AMOUNT:
        return f"{bank}'s hold is {b.balance(bank, account)[1]}, not {AMOUNT}"
    return ""


@_on_cluster
def _keeps_hold_in_doubt(b: Bench, run: Run) -> None:
    cluster = b.cluster_now()
    payer, payee = b.new_payer("BankA"), b.new_account("BankB")
    key = str(uuid.uuid4())
    # The gateway logs COMMIT and hangs before sending it: both banks are in doubt, unanswered.
    cluster.arm("gateway", "gateway.after_commit_logged", "pause")
    t = _paying(b, payer, payee, key)
    payment = _payment_id(b, key)
    try:
        time.sleep(3.5)  # > ask-after (1 s) + a few unanswered asks (1 s each)
        gone = _held(b, "BankA", payment, "debit", f"{payer.username}-acct")
        gone = gone or _held(b, "BankB", payment, "credit", None)
        if gone:
            raise Broken(
                f"{ALONE_RULE} (no answer, or a timeout) keep the hold and ask again; {gone} "
                "3.5 s into the silence, and the coordinator had logged COMMIT"
            )
    finally:
        cluster.resume("gateway")
    t.join(PAY_TIMEOUT_S)
    _settle(b, ALONE_RULE, "after the coordinator came back")


PENDING_RULE = "PENDING means the coordinator is still collecting votes: keep the hold, ask again"


@_on_cluster
def _pending_keeps_hold(b: Bench, run: Run) -> None:
    cluster = b.cluster_now()
    payer, payee = b.new_payer("BankA"), b.new_account("BankB")
    key = str(uuid.uuid4())
    # A first payment opens the gateway's connection to BankB: a paused bank cannot finish a
    # new TLS handshake, and the gateway would call it unavailable and abort at once.
    warm = str(uuid.uuid4())
    b.keys.add(warm)
    _pay(payer, payee, warm)
    # BankB hangs for 2.5 s before it votes: meanwhile BankA asks and hears PENDING.
    cluster.pause("BankB")
    try:
        t = _paying(b, payer, payee, key)
        payment = _payment_id(b, key)
        deadline = time.monotonic() + 5.0
        while b.leg_state("BankA", f"{payment}.debit") is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(2.5)  # BankA has asked (after 1 s) and heard PENDING, maybe twice
        state = b.leg_state("BankA", f"{payment}.debit")
        # Read after the bank: if the coordinator is still undecided now, it was then too (on a
        # loaded machine its 4 s timeout may have decided ABORT by now, and that is no fault).
        if state != "prepared" and _decision(b, key) is None:
            raise Broken(
                f"{PENDING_RULE}; BankA's debit leg was {state} while votes were coming in"
            )
    finally:
        cluster.resume("BankB")  # its YES arrives before the 4 s prepare timeout: COMMIT
    t.join(PAY_TIMEOUT_S)
    _settle(b, PENDING_RULE, "once every vote was in")


# -- chaos and the model ----------------------------------------------------------------------

CHAOS_RULE = "every rule at once, under kill -9, pauses, failpoints and partitions"


def _chaos(run: Run) -> None:
    report = run_chaos(
        ChaosConfig(
            seed=run.seed,
            duration_s=5.0,
            banks=2,
            accounts=4,
            payers=2,
            fault_every_s=1.0,
            recover_timeout_s=15.0,
            data_dir=run.workdir / "chaos",
            participant=run.target,
        ),
        progress=None,
    )
    if not report.ok:
        broken = ", ".join(report.invariants.violations) or "no invariant could be checked"
        raise Broken(f"{CHAOS_RULE}: after a seeded chaos run these broke: {broken}")


def _model(run: Run) -> None:
    from paykit.lab.labs.participant_model import run_model

    problem = run_model(run.target, run.seed, run.workdir)
    if problem:
        raise Broken(f"the rules against a model of them, in-process: {problem}")


def _check(name: str, rule: str, fn, points: int = 1) -> Check:
    """A Check whose unexpected errors (the student's code raised, a bank it broke would not
    start) still name the rule: "<rule>; your code raised KeyError: ... (prepare, line 12)"."""

    @functools.wraps(fn)
    def run(r: Run) -> None:
        try:
            fn(r)
        except Broken:
            raise
        except Exception as exc:
            where = traceback.extract_tb(exc.__traceback__)[-1]
            raise Broken(
                f"{rule}; your code raised {type(exc).__name__}: {str(exc)[:160]} "
                f"({where.name}, line {where.lineno})"
            ) from exc

    return Check(name, rule, run, points)


CHECKS = [
    _check(*spec)
    for spec in [
        (
            "prepare_votes",
            "vote YES only when the available balance covers a debit; hold it",
            _prepare_votes,
        ),
        ("commit_applies", "Commit captures a debit's hold, applies a credit", _commit_applies),
        (
            "abort_releases",
            "Abort releases the hold; a second Abort changes nothing",
            _abort_releases,
        ),
        ("duplicate_prepare", "a retried Prepare repeats its vote, holds once", _duplicate_prepare),
        ("duplicate_commit", "a duplicate Commit is applied once", _duplicate_commit),
        (
            "tombstone",
            "an Abort before its Prepare leaves a tombstone: the late Prepare votes NO",
            _tombstone,
        ),
        ("decisions_need_prepare", "no Commit without a prepared leg", _decisions_need_prepare),
        *(
            (
                f"crash_{fp.removeprefix('bank.')}",
                f"kill -9 at {fp}: recovers exactly once",
                _crash_check(fp),
                2,
            )
            for fp in CRASHES
        ),
        (
            "asks_after_restart",
            "after a restart, ask the coordinator about prepared legs",
            _asks_after_restart,
            2,
        ),
        (
            "keeps_hold_in_doubt",
            "a YES voter never decides alone: no answer keeps the hold",
            _keeps_hold_in_doubt,
            2,
        ),
        ("pending_keeps_hold", "PENDING keeps the hold", _pending_keeps_hold, 2),
        ("model", "a hypothesis model of the rules agrees with the class", _model, 2),
        ("chaos", "a short seeded chaos run keeps every invariant", _chaos, 3),
    ]
]

LAB = Lab(
    "participant",
    Participant,
    CHECKS,
    reference="paykit.bank.participant:LedgerParticipant",
    shared=bench,
)
