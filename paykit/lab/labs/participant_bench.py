"""The participant lab's bench: one cluster whose banks run the student's class, reused by the
checks, and the hands a check needs on it (a bank called directly as the gateway would, fresh
accounts and payers, waiting for the books to settle).

The cluster starts when the first check asks for it. Each check gets it healed (every server
running and resumed, failpoints disarmed, the network whole) and judges only its own payments
and accounts, with the invariants of paykit.lab.check applied to them. A payment check that
failed may leave decisions no bank will ever acknowledge, which the gateway's redriver then
keeps resending before newer ones: so after such a failure the next payment check gets a fresh
cluster (`renew_after_failure`).
"""

from __future__ import annotations

import itertools
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import grpc

from paykit.client.session import GatewaySession
from paykit.core.errors import AlreadyExists, InvalidInput, PaykitError, Unavailable
from paykit.core.twopc import CREDIT, DEBIT, Decision, TxnState
from paykit.gateway.payments import PaymentRecord
from paykit.lab.check import BankBooks, read_bank, read_gateway
from paykit.lab.cluster import LocalCluster, participant_target
from paykit.lab.grading import Broken, GradeError
from paykit.rpc.channels import secure_channel
from paykit.rpc.pki import GATEWAY_CN, bank_cn, ensure_identity
from paykit.rpc.status import from_rpc_error
from paykit.v1 import payment_pb2 as pb
from paykit.v1 import payment_pb2_grpc as pb_grpc

PASSWORD = "correct horse battery staple 42"
OPENING_MINOR = 100_000
PREPARE_TIMEOUT_S = 4.0  # room for a vote the pending check delays by 2 s
SETTLE_TIMEOUT_S = 15.0  # a healthy recovery takes a few seconds, more on a loaded machine
COMMITTED, ABORTED = TxnState.COMMITTED, TxnState.ABORTED
LEGS = {"debit": pb.LEG_DEBIT, "credit": pb.LEG_CREDIT}
PAYING = ("BankA", "BankB")  # payments run between these; the invariants are about them
BANKS = (*PAYING, "BankC")  # BankC: the bank the rule checks call by hand


class Bench:
    def __init__(self, target: type, seed: int, workdir: Path) -> None:
        self.target = target
        self.seed = seed
        self.workdir = workdir
        self._cluster: LocalCluster | None = None
        self._clusters = itertools.count(1)
        self._names = itertools.count(1)
        self.dirty = False  # a payment check failed on this cluster
        self.renew_after_failure = True
        self.keys: set[str] = set()  # this check's payments (idempotency keys) ...
        self.accounts: list[tuple[str, str]] = []  # ... and accounts (bank, account id)
        self.stubs: dict[str, tuple[pb_grpc.BankStub, str]] = {}  # name -> (stub, its address)
        self._channels: list = []

    # -- the cluster ---------------------------------------------------------------

    def cluster(self) -> LocalCluster:
        """The cluster, healed, for a new check (whose payments and accounts it starts to note)."""
        self.keys, self.accounts = set(), []
        if self.dirty and self.renew_after_failure:
            self._stop()
        self.dirty = False
        if self._cluster is None:
            self._cluster = LocalCluster(
                BANKS,
                data_dir=self.workdir / f"cluster{next(self._clusters)}",
                failpoints=True,
                prepare_timeout_s=PREPARE_TIMEOUT_S,
                seed_csv=None,
                relay_seed=self.seed,
                participant=self.target,
            ).start()
            return self._cluster
        self._heal(self._cluster)
        return self._cluster

    def cluster_now(self) -> LocalCluster:
        """The running cluster, as it is (a check's own steps, after cluster())."""
        return self._cluster

    @staticmethod
    def _heal(cluster: LocalCluster) -> None:
        cluster.heal()
        for name, proc in cluster.procs.items():
            cluster.disarm(name)
            if not proc.running:
                cluster.restart(name)
            elif proc.paused:
                cluster.resume(name)

    def _stop(self) -> None:
        for channel in self._channels:
            channel.close()
        self._channels.clear()
        self.stubs.clear()
        if self._cluster is not None:
            self._cluster.stop()
            self._cluster = None

    def close(self) -> None:
        self._stop()

    # -- a bank, called as the gateway calls it ------------------------------------

    def bank(self, name: str) -> pb_grpc.BankStub:
        cluster = self._cluster
        address = cluster.bank_address(name)  # a restarted bank may be on a new port
        if self.stubs.get(name, (None, ""))[1] != address:
            channel = secure_channel(
                address,
                ensure_identity(cluster.pki_dir, GATEWAY_CN),
                server_name=bank_cn(name),
            )
            self._channels.append(channel)
            self.stubs[name] = (pb_grpc.BankStub(channel), address)
        return self.stubs[name][0]

    def new_account(self, bank: str, opening_minor: int = OPENING_MINOR) -> str:
        account = f"lab{next(self._names)}-{uuid.uuid4().hex[:6]}"
        self.accounts.append((bank, account))
        self.bank(bank).OpenAccount(
            pb.OpenAccountRequest(account_id=account, opening_balance_minor=opening_minor),
            timeout=10,
            wait_for_ready=True,  # the bank may have just restarted
        )
        return account

    def balance(self, bank: str, account: str) -> tuple[int, int]:
        """(balance, held) as the bank's own GetBalance reports them."""
        b = self.bank(bank).GetBalance(
            pb.BankGetBalanceRequest(account_id=account), timeout=10, wait_for_ready=True
        )
        return b.balance_minor, b.held_minor

    def holds(self, bank: str) -> list[tuple[str, int, int]]:
        """(account, held, sum of its prepared debit legs) of this check's accounts at `bank`."""
        mine = [a for b, a in self.accounts if b == bank]
        with closing(sqlite3.connect(f"file:{self._cluster.bank_db(bank)}?mode=ro", uri=True)) as c:
            return [
                (
                    account,
                    c.execute(
                        "SELECT COALESCE(MAX(held_minor), 0) FROM accounts WHERE account_id = ?",
                        (account,),
                    ).fetchone()[0],
                    c.execute(
                        "SELECT COALESCE(SUM(amount_minor), 0) FROM txns WHERE account_id = ? "
                        "AND state = 'prepared' AND leg = 'debit'",
                        (account,),
                    ).fetchone()[0],
                )
                for account in mine
            ]

    def leg_state(self, bank: str, txn_id: str) -> str | None:
        return read_bank(bank, self._cluster.bank_db(bank)).txn_states.get(txn_id)

    # -- payments through the gateway ----------------------------------------------

    def new_payer(self, bank: str = "BankA", opening_minor: int = OPENING_MINOR) -> GatewaySession:
        name = f"payer{next(self._names)}{uuid.uuid4().hex[:4]}"
        payer = self._cluster.session()
        for attempt in range(1, 4):  # a connection reset by a restart or a heal just before
            try:
                payer.register(name, PASSWORD, f"{name}-acct", opening_minor, bank)
                break
            except AlreadyExists:  # an earlier attempt registered it; its reply was lost
                break
            except Unavailable:
                if attempt == 3:
                    raise
                time.sleep(0.5)
        payer.authenticate(name, PASSWORD)
        self.accounts.append((bank, f"{name}-acct"))
        return payer

    def settled(self, timeout_s: float = SETTLE_TIMEOUT_S) -> str:
        """ "" once this check's payments and accounts keep every invariant (decided, delivered,
        both legs in the decided state, applied once, balances as the payments give, no hold
        left), or, after `timeout_s`, the first few still broken."""
        deadline = time.monotonic() + timeout_s
        while True:
            problems = self.problems()
            if not problems:
                return ""
            if time.monotonic() > deadline:
                return "; ".join(problems[:3])
            time.sleep(0.2)

    def problems(self) -> list[str]:
        cluster = self._cluster
        banks = {n: read_bank(n, cluster.bank_db(n)) for n in PAYING}
        rows = [p for p in read_gateway(cluster.gateway_db()) if p.idempotency_key in self.keys]
        found: list[str] = []
        moved: dict[tuple[str, str], int] = {}
        for p in rows:
            found += _payment_problems(banks, p)
            if p.decision == Decision.COMMIT:
                moved[(p.from_bank, p.from_account)] = (
                    moved.get((p.from_bank, p.from_account), 0) - p.amount_minor
                )
                moved[(p.to_bank, p.to_account)] = (
                    moved.get((p.to_bank, p.to_account), 0) + p.amount_minor
                )
        for bank, account in self.accounts:
            books = banks[bank]
            want = books.opening.get(account, 0) + moved.get((bank, account), 0)
            balance, held = books.balances.get(account), books.held.get(account, 0)
            if balance != want:
                found.append(f"{account} at {bank} has {balance}, its payments give {want}")
            if held:
                found.append(f"{account} at {bank} still holds {held}")
            if balance is not None and books.entry_sums.get(account, 0) != balance:
                found.append(f"{account} at {bank}: its ledger entries do not add up to it")
        return found


def _payment_problems(banks: dict[str, BankBooks], p: PaymentRecord) -> list[str]:
    pid = p.payment_id[:8]
    if p.decision is None:
        return [f"payment {pid} undecided"]
    debit, credit = f"{p.payment_id}.{DEBIT}", f"{p.payment_id}.{CREDIT}"
    legs = (banks[p.from_bank].txn_states.get(debit), banks[p.to_bank].txn_states.get(credit))
    entries = (
        banks[p.from_bank].entries_per_txn.get(debit, 0),
        banks[p.to_bank].entries_per_txn.get(credit, 0),
    )
    found = []
    committed = p.decision == Decision.COMMIT
    if committed and legs != (COMMITTED, COMMITTED):
        found.append(f"payment {pid}: the coordinator decided COMMIT, the legs are {legs}")
    if not committed and not set(legs) <= {ABORTED, None}:
        found.append(f"payment {pid}: the coordinator decided ABORT, the legs are {legs}")
    if entries != ((1, 1) if committed else (0, 0)):
        found.append(f"payment {pid} ({p.decision}) was applied {entries} times (debit, credit)")
    if not p.settled:
        found.append(f"payment {pid}: its decision was not acknowledged by both banks")
    return found


def call(what: str, fn, *args, **kwargs):
    """A direct call to a bank; its error becomes the Broken hint `what` (with the error's name)."""
    try:
        return fn(*args, timeout=10, **kwargs)
    except Exception as exc:  # a gRPC error from the student's code, or a bank that died
        err = from_rpc_error(exc) if isinstance(exc, grpc.RpcError) else exc
        raise Broken(f"{what} (the bank answered {_name(err)})") from None


def _name(err) -> str:
    if isinstance(err, PaykitError):
        return f"{err.reason}: {err.message[:80]}"
    return f"{type(err).__name__}: {str(err)[:80]}"


def refused(fn, *args, **kwargs) -> PaykitError | None:
    """The error a direct call was refused with, or None when it was accepted."""
    try:
        fn(*args, timeout=10, **kwargs)
    except Exception as exc:
        return from_rpc_error(exc) if isinstance(exc, grpc.RpcError) else PaykitError(str(exc))
    return None


def prepare_request(txn_id: str, leg: str, account: str, amount: int) -> pb.PrepareRequest:
    return pb.PrepareRequest(txn_id=txn_id, leg=LEGS[leg], account_id=account, amount_minor=amount)


@contextmanager
def bench(target: type, seed: int, workdir: Path) -> Iterator[Bench]:
    """The lab's `shared`: one bench per grade, its cluster stopped at the end."""
    try:  # the banks' processes must be able to import the class: say so before any check
        participant_target(target)
    except InvalidInput as err:
        raise GradeError(str(err)) from None
    b = Bench(target, seed, workdir)
    try:
        yield b
    finally:
        b.close()
