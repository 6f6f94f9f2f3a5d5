"""The participant lab's bench: one cluster whose banks run the student's class, reused by the
checks, and the hands a check needs on it (a bank called directly as the gateway would, fresh
accounts and payers, waiting for the books to settle).

The cluster starts when the first check asks for it. Each check gets it healed (every server
running and resumed, failpoints disarmed, the network whole, nothing in doubt); a check that
failed may have left broken books behind, so after a failure the next check gets a new cluster.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc

from paykit.client.session import GatewaySession
from paykit.core.errors import PaykitError
from paykit.lab.check import check_invariants, read_bank
from paykit.lab.cluster import LocalCluster
from paykit.lab.grading import Broken
from paykit.rpc.channels import secure_channel
from paykit.rpc.pki import GATEWAY_CN, bank_cn, ensure_identity
from paykit.rpc.status import from_rpc_error
from paykit.v1 import payment_pb2 as pb
from paykit.v1 import payment_pb2_grpc as pb_grpc

PASSWORD = "correct horse battery staple 42"
OPENING_MINOR = 100_000
PREPARE_TIMEOUT_S = 4.0  # room for a vote the pending check delays by 2 s
SETTLE_TIMEOUT_S = 20.0
LEGS = {"debit": pb.LEG_DEBIT, "credit": pb.LEG_CREDIT}
PAYING = ("BankA", "BankB")  # payments run between these; the invariants are about them
BANKS = (*PAYING, "BankC")  # BankC: the bank the rule checks call by hand


class _Paying:
    """The cluster as the invariants see it: the banks payments run between (BankC's hand-made
    legs are no payments of the gateway's, so its books are checked by its own checks)."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.bank_names = PAYING

    def bank_db(self, name: str) -> Path:
        return self.cluster.bank_db(name)

    def gateway_db(self) -> Path:
        return self.cluster.gateway_db()


class Bench:
    def __init__(self, target: type, seed: int, workdir: Path) -> None:
        self.target = target
        self.seed = seed
        self.workdir = workdir
        self._cluster: LocalCluster | None = None
        self._clusters = itertools.count(1)
        self._names = itertools.count(1)
        self.dirty = False
        self.stubs: dict[str, pb_grpc.BankStub] = {}
        self._channels: list = []

    # -- the cluster ---------------------------------------------------------------

    def cluster(self) -> LocalCluster:
        """The cluster, healed; a new one after a failed check."""
        if self._cluster is not None and self.dirty:
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
        if name not in self.stubs:
            cluster = self._cluster
            channel = secure_channel(
                cluster.bank_address(name),
                ensure_identity(cluster.pki_dir, GATEWAY_CN),
                server_name=bank_cn(name),
            )
            self._channels.append(channel)
            self.stubs[name] = pb_grpc.BankStub(channel)
        return self.stubs[name]

    def new_account(self, bank: str, opening_minor: int = OPENING_MINOR) -> str:
        account = f"lab{next(self._names)}-{uuid.uuid4().hex[:6]}"
        self.bank(bank).OpenAccount(
            pb.OpenAccountRequest(account_id=account, opening_balance_minor=opening_minor),
            timeout=10,
        )
        return account

    def balance(self, bank: str, account: str) -> tuple[int, int]:
        """(balance, held) as the bank's own GetBalance reports them."""
        b = self.bank(bank).GetBalance(pb.BankBalanceRequest(account_id=account), timeout=10)
        return b.balance_minor, b.held_minor

    def leg_state(self, bank: str, txn_id: str) -> str | None:
        return read_bank(bank, self._cluster.bank_db(bank)).txn_states.get(txn_id)

    # -- payments through the gateway ----------------------------------------------

    def new_payer(self, bank: str = "BankA", opening_minor: int = OPENING_MINOR) -> GatewaySession:
        name = f"payer{next(self._names)}{uuid.uuid4().hex[:4]}"
        payer = self._cluster.session()
        payer.register(name, PASSWORD, f"{name}-acct", opening_minor, bank)
        payer.authenticate(name, PASSWORD)
        return payer

    def settled(self, timeout_s: float = SETTLE_TIMEOUT_S) -> str:
        """ "" once every invariant holds (nothing in doubt, every decision delivered and applied
        once), or, after `timeout_s`, the first ones still broken."""
        deadline = time.monotonic() + timeout_s
        while True:
            report = check_invariants(_Paying(self._cluster))
            if report.ok:
                return ""
            if time.monotonic() > deadline:
                broken = [(n, report.results[n][1]) for n in report.violations[:2]]
                return "; ".join(f"{n} ({fig[:100]})" for n, fig in broken)
            time.sleep(0.2)


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
    b = Bench(target, seed, workdir)
    try:
        yield b
    finally:
        b.close()
