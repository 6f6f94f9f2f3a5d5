"""Lab B, the coordinator's decision and recovery: the checks that grade a CoordinatorBase.

Unit checks run the student's rules inside the gateway's own Coordinator (PluggedCoordinator)
over a real SQLite decision log, against in-memory banks behind the coordinator's Participants
interface: each bank votes what the check says (at once, late, never), may refuse decisions,
and notes what the log held when each decision reached it. A "restart" is a new coordinator
(and a new rules object) on the same log. Whole-cluster checks start banks and a gateway running
the student's class, crash the gateway at every failpoint of the decision's path with kill -9
and restart it, and run a short seeded chaos test whose invariants must hold.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import Future

from paykit.core.db import Database
from paykit.core.errors import PaykitError, Unavailable
from paykit.core.twopc import CREDIT, DEBIT, Decision, Vote, leg_txn_id
from paykit.gateway import idempotency, payments
from paykit.gateway.decisions import CoordinatorBase, PluggedCoordinator
from paykit.gateway.payments import PaymentRecord
from paykit.lab.check import read_gateway
from paykit.lab.grading import Broken, Check, Lab, Run
from paykit.lab.labs import kit
from paykit.v1 import payment_pb2 as pb

PREPARE_TIMEOUT_S = 0.6
FIRST_NO_WITHIN_S = 0.3  # a NO decides at once: well before the prepare timeout
REDRIVE_WITHIN_S = 4.0


class Banks:
    """In-memory banks behind the Participants interface. `votes[bank]`: a Vote, None (never
    answers) or a Future the check resolves; banks in `down` refuse decisions. `sent` holds
    (bank, txn id, commit, the decision the log held when it arrived)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.votes: dict[str, Vote | Future | None] = {}
        self.down: set[str] = set()
        self.sent: list[tuple[str, str, bool, Decision | None]] = []
        self._lock = threading.Lock()

    def prepare(self, bank, txn_id, leg, account_id, amount_minor, coordinator, timeout_s):
        answer = self.votes.get(bank, Vote(True))
        if isinstance(answer, Future):
            return answer
        vote: Future[Vote] = Future()
        if answer is not None:
            vote.set_result(answer)
        return vote

    def decide(self, bank, txn_id, commit, timeout_s):
        if bank in self.down:
            raise Unavailable(f"{bank} is down")
        record = payments.get(self.db.read(), txn_id.rsplit(".", 1)[0])
        with self._lock:
            self.sent.append((bank, txn_id, commit, record.decision if record else None))

    def told(self, payment_id: str) -> list[tuple[str, bool]]:
        """(bank, commit) of every decision sent for the payment, in order."""
        with self._lock:
            return [(b, c) for b, t, c, _ in self.sent if t.rsplit(".", 1)[0] == payment_id]


class Gateway:
    """The student's rules in the gateway's coordinator, over a real log, with fake banks."""

    def __init__(
        self, run: Run, name: str = "gateway.db", prepare_timeout_s: float = PREPARE_TIMEOUT_S
    ) -> None:
        self.run = run
        self.prepare_timeout_s = prepare_timeout_s
        self.db = Database(run.workdir / name, payments.SCHEMA + idempotency.SCHEMA)
        self.banks = Banks(self.db)
        self.coordinator = self._coordinator()

    def _coordinator(self) -> PluggedCoordinator:
        from paykit.gateway.server import encode_pay_response

        coordinator = PluggedCoordinator(
            self.db,
            self.banks,
            advertise="127.0.0.1:1",
            prepare_timeout_s=self.prepare_timeout_s,
            encode_response=encode_pay_response,
            retention_s=3600.0,
            rules=self.run.target,
        )
        if self.prepare_timeout_s < PREPARE_TIMEOUT_S:  # the model's quick scenarios
            coordinator.rules.kit.retry_cap_s = coordinator.rules.kit.down_for_s = 0.2
        return coordinator

    def pay(self, key: str | None = None) -> tuple[str, pb.Payment]:
        _, response = self.coordinator.pay(
            username="ada",
            from_bank="BankA",
            from_account="ada-acct",
            to_bank="BankB",
            to_account="bob-acct",
            amount_minor=500,
            key=key or str(uuid.uuid4()),
        )
        payment = pb.PayResponse.FromString(response).payment
        return payment.payment_id, payment

    def logged(self, payment_id: str) -> PaymentRecord | None:
        return payments.get(self.db.read(), payment_id)

    def restart(self) -> None:
        """A new coordinator and rules object on the same log, recovered before serving."""
        self.coordinator = self._coordinator()
        self.coordinator.recover()

    def redrive_until(self, done, hint: str) -> None:
        deadline = time.monotonic() + REDRIVE_WITHIN_S
        while not done():
            if time.monotonic() > deadline:
                raise Broken(hint)
            self.coordinator.redrive(min_age_s=0)
            time.sleep(0.1)

    def undecided(self) -> PaymentRecord:
        """A payment the log holds without a decision: a gateway died while votes came in."""
        p = PaymentRecord(
            uuid.uuid4().hex,
            "ada",
            str(uuid.uuid4()),
            "BankA",
            "ada-acct",
            "BankB",
            "bob-acct",
            300,
        )
        with self.db.write() as conn:
            payments.insert(conn, p)
        return p

    def close(self) -> None:
        self.db.close()


def _gateway_check(fn):
    def run_it(run: Run) -> None:
        gw = Gateway(run)
        try:
            fn(gw)
        finally:
            gw.close()

    run_it.__name__ = fn.__name__
    return run_it


def _outcome(gw: Gateway, payment_id: str) -> Decision | None:
    record = gw.logged(payment_id)
    return record.decision if record else None


@_gateway_check
def all_yes_commits(gw: Gateway) -> None:
    pid, payment = gw.pay()
    if payment.status != pb.PAYMENT_STATUS_SUCCEEDED or _outcome(gw, pid) != Decision.COMMIT:
        raise Broken("when both banks vote YES in time the decision is COMMIT, logged")
    if sorted(gw.banks.told(pid)) != [("BankA", True), ("BankB", True)]:
        raise Broken("a logged COMMIT is sent to both banks (each leg once is enough)")


@_gateway_check
def no_vote_aborts(gw: Gateway) -> None:
    gw.banks.votes["BankB"] = Vote(False, "UNKNOWN_ACCOUNT", "no account bob-acct")
    pid, payment = gw.pay()
    if _outcome(gw, pid) != Decision.ABORT or any(c for _, c in gw.banks.told(pid)):
        raise Broken("one NO vote decides ABORT: never commit on a NO")
    if payment.failure_reason != "UNKNOWN_ACCOUNT":
        raise Broken("an ABORT on a NO vote carries the NO's own reason (vote.reason)")


@_gateway_check
def first_no_decides(gw: Gateway) -> None:
    gw.banks.votes["BankA"] = None  # silent
    gw.banks.votes["BankB"] = Vote(False, "UNKNOWN_ACCOUNT", "no account bob-acct")
    started = time.monotonic()
    pid, _ = gw.pay()
    if _outcome(gw, pid) != Decision.ABORT:
        raise Broken("one NO vote decides ABORT, whatever the other bank does")
    if time.monotonic() - started > PREPARE_TIMEOUT_S * 0.8:
        raise Broken("the first NO decides at once: take votes as they come (ballot.next_vote)")


@_gateway_check
def missing_vote_aborts(gw: Gateway) -> None:
    gw.banks.votes["BankB"] = None  # never answers
    pid, payment = gw.pay()
    if _outcome(gw, pid) != Decision.ABORT or any(c for _, c in gw.banks.told(pid)):
        raise Broken(
            "a vote missing at the deadline (next_vote() is None) counts as NO: ABORT, never "
            "commit on a missing vote"
        )
    if payment.failure_reason != "BANK_TIMEOUT":
        raise Broken("an ABORT for a silent bank says BANK_TIMEOUT")


@_gateway_check
def waits_for_every_vote(gw: Gateway) -> None:
    late: Future[Vote] = Future()
    gw.banks.votes["BankB"] = late
    threading.Timer(0.2, late.set_result, [Vote(False, "INSUFFICIENT_FUNDS", "no")]).start()
    pid, _ = gw.pay()
    if _outcome(gw, pid) != Decision.ABORT or any(c for _, c in gw.banks.told(pid)):
        raise Broken(
            "decide only when every vote is in: COMMIT after the first YES, the second bank "
            "then voted NO"
        )


@_gateway_check
def logs_before_sending(gw: Gateway) -> None:
    pid, _ = gw.pay()
    gw.banks.votes["BankB"] = Vote(False, "UNKNOWN_ACCOUNT", "no")
    pid2, _ = gw.pay()
    sent = [s for s in gw.banks.sent if s[1].rsplit(".", 1)[0] in (pid, pid2)]
    if not sent:
        raise Broken("the decision must be sent to the banks")
    for bank, _txn, commit, logged in sent:
        if logged != (Decision.COMMIT if commit else Decision.ABORT):
            raise Broken(
                "log the decision before sending it: a "
                f"{'Commit' if commit else 'Abort'} reached {bank} while the log held {logged}"
            )


@_gateway_check
def pending_while_voting(gw: Gateway) -> None:
    late: Future[Vote] = Future()
    gw.banks.votes["BankB"] = late
    gw.coordinator.prepare_timeout_s = 5.0
    gw.coordinator.rules.kit.prepare_timeout_s = 5.0
    done: list = []
    paying = threading.Thread(target=lambda: done.append(gw.pay()), daemon=True)
    paying.start()
    pid = kit.eventually(
        lambda: next((p.payment_id for p in payments.undecided(gw.db.read())), None),
        3,
        "the payment row must exist while votes are collected",
    )
    answers = {gw.coordinator.decision_for(leg_txn_id(pid, leg)) for leg in (DEBIT, CREDIT)}
    late.set_result(Vote(True))
    paying.join(5)
    if answers != {Decision.PENDING}:
        raise Broken(
            "while votes are being collected GetDecision answers PENDING (the bank must wait), "
            f"not {sorted(answers)}"
        )
    if gw.coordinator.decision_for(leg_txn_id(pid, DEBIT)) != Decision.COMMIT:
        raise Broken("once COMMIT is logged, GetDecision answers COMMIT")


@_gateway_check
def presumed_abort(gw: Gateway) -> None:
    unknown = leg_txn_id(uuid.uuid4().hex, DEBIT)
    if gw.coordinator.decision_for(unknown) != Decision.ABORT:
        raise Broken(
            "presumed abort: a payment the log does not know was never committed, so GetDecision "
            "answers ABORT"
        )
    gw.banks.votes["BankB"] = Vote(False, "UNKNOWN_ACCOUNT", "no")
    pid, _ = gw.pay()
    if gw.coordinator.decision_for(leg_txn_id(pid, CREDIT)) != Decision.ABORT:
        raise Broken("GetDecision answers what the log holds: ABORT")


@_gateway_check
def commit_stands(gw: Gateway) -> None:
    gw.banks.down.add("BankB")  # acknowledges nothing for now
    pid, payment = gw.pay()
    wrong = [bank for bank, commit in gw.banks.told(pid) if not commit]
    if (
        _outcome(gw, pid) != Decision.COMMIT
        or wrong
        or payment.status != pb.PAYMENT_STATUS_SUCCEEDED
    ):
        raise Broken(
            "a logged COMMIT stands: a bank that does not acknowledge is sent Commit again "
            "later, never Abort (no deciding ABORT on a timeout after logging COMMIT)"
        )
    gw.banks.down.clear()
    gw.redrive_until(
        lambda: ("BankB", True) in gw.banks.told(pid),
        "redrive: a logged decision goes on to every bank that has not acknowledged it",
    )


@_gateway_check
def redrive_after_restart(gw: Gateway) -> None:
    gw.banks.down.add("BankB")
    pid, _ = gw.pay()
    gw.restart()
    gw.banks.down.clear()
    gw.redrive_until(
        lambda: ("BankB", True) in gw.banks.told(pid),
        "after a restart, redrive still sends every logged decision some bank has not "
        "acknowledged (read them from the log: kit.unsettled())",
    )


@_gateway_check
def log_survives_restart(gw: Gateway) -> None:
    pid, _ = gw.pay()
    gw.restart()
    answer = gw.coordinator.decision_for(leg_txn_id(pid, CREDIT))
    if answer != Decision.COMMIT:
        raise Broken(
            "decisions live in the durable log: after a restart GetDecision still answers COMMIT "
            f"for a committed payment, not {answer}"
        )


@_gateway_check
def recover_aborts(gw: Gateway) -> None:
    stranded = gw.undecided()
    gw.restart()
    if _outcome(gw, stranded.payment_id) != Decision.ABORT:
        raise Broken(
            "recover: at start, a payment with no logged decision is decided ABORT (its votes "
            "are lost; presumed abort)"
        )
    gw.redrive_until(
        lambda: sorted(gw.banks.told(stranded.payment_id)) == [("BankA", False), ("BankB", False)],
        "after recovery the ABORT goes to both banks (redrive), so they release their holds",
    )


def model(run: Run) -> None:
    """The hypothesis model: random vote, refusal and restart scenarios."""
    from paykit.lab.labs.coordinator_model import model_check

    model_check(run, Gateway)


# -- whole-cluster checks -------------------------------------------------------------------

# failpoint -> the payment's final status after a crash there and a restart
CRASHES = {
    "gateway.before_decision": pb.PAYMENT_STATUS_FAILED,
    "gateway.decision_write": pb.PAYMENT_STATUS_FAILED,
    "gateway.after_commit_logged": pb.PAYMENT_STATUS_SUCCEEDED,
    "gateway.between_commits": pb.PAYMENT_STATUS_SUCCEEDED,
    "gateway.before_reply": pb.PAYMENT_STATUS_SUCCEEDED,
}


def crash_points(run: Run) -> None:
    """kill -9 of the gateway at each point of the decision's path, a restart, and the books
    must settle: recovery decides what was undecided, redrive delivers what was logged."""
    c = kit.cluster(run, coordinator=kit.dotted(run.target), failpoints=True, prepare_timeout_s=2.0)
    ada, _ = kit.payer(c)
    _, bob = kit.payer(c, bank="BankB")
    ada.close()
    for failpoint, status in CRASHES.items():
        with kit.open_session(c, ada) as payer:
            _crash_at(c, payer, bob, failpoint, status)


def _crash_at(c, payer, bob: str, failpoint: str, status: int) -> None:
    key = str(uuid.uuid4())
    c.arm("gateway", failpoint)
    if kit.refusal(lambda: payer.pay("BankB", bob, 600, key, timeout_s=5)) is None:
        raise Broken(f"the gateway should have crashed at {failpoint}")
    c.wait_dead("gateway")
    c.restart("gateway")
    kit.settled(
        c,
        f"after a crash at {failpoint} and a restart, the banks do not agree with the log "
        "(recover decides the undecided, redrive delivers every logged decision)",
    )
    final = {p.idempotency_key: p.status for p in read_gateway(c.gateway_db())}.get(key)
    want = "succeeded" if status == pb.PAYMENT_STATUS_SUCCEEDED else "failed"
    if final != want:
        raise Broken(f"after a crash at {failpoint} the payment must be {want}, not {final}")


def chaos(run: Run) -> None:
    """A short seeded chaos run: kills and failpoint crashes of the gateway and banks, lost
    replies; every invariant must hold afterwards."""
    kit.gateway_chaos(run, "atomic commitment", coordinator=kit.dotted(run.target))


def _safe(fn):
    """Unit checks raise PaykitError when the gateway refuses (a student's run that decided
    nothing): say so as a hint."""

    def run_it(run: Run) -> None:
        try:
            fn(run)
        except PaykitError as err:
            raise Broken(
                f"the payment was answered {err.reason}: run() must log a decision "
                "(kit.log_decision) for every payment"
            ) from err

    run_it.__name__ = fn.__name__
    return run_it


LAB = Lab(
    name="coordinator",
    interface=CoordinatorBase,
    reference="paykit.gateway.decisions:TwoPhaseRules",
    checks=[
        Check("all_yes", "both YES in time: COMMIT, logged, sent to both", _safe(all_yes_commits)),
        Check("no_vote", "one NO vote: ABORT with its reason", _safe(no_vote_aborts)),
        Check("first_no", "the first NO decides at once", _safe(first_no_decides)),
        Check("missing_vote", "a vote missing at the deadline is a NO", _safe(missing_vote_aborts)),
        Check("all_votes", "decide only when every vote is in", _safe(waits_for_every_vote)),
        Check("log_first", "log the decision before sending it", _safe(logs_before_sending)),
        Check(
            "pending", "GetDecision says PENDING while votes come in", _safe(pending_while_voting)
        ),
        Check("presumed_abort", "no record: presumed abort", _safe(presumed_abort)),
        Check("commit_stands", "a logged COMMIT is never turned into ABORT", _safe(commit_stands)),
        Check("redrive_restart", "redrive after a restart", _safe(redrive_after_restart)),
        Check("log_survives", "the decision log survives a restart", _safe(log_survives_restart)),
        Check(
            "recover", "recovery aborts the undecided and tells the banks", _safe(recover_aborts)
        ),
        Check("model", "random votes, refusals and restarts: 2PC's outcome", _safe(model), 2),
        Check("crash_points", "kill -9 at each gateway failpoint, restart", crash_points, points=3),
        Check("chaos", "a short chaos run keeps every invariant", chaos, points=2),
    ],
)
