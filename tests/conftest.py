"""Shared fixtures and helpers: real clusters on 127.0.0.1 (port 0), real TLS, real SQLite, in
tmp folders."""

from __future__ import annotations

import itertools
import os
import signal
from collections.abc import Iterator

import pytest

# Tests leave nothing behind: a run that leaves paykit-* temp folders fails (tests/leftovers.py).
from leftovers import pytest_configure, pytest_sessionfinish  # noqa: F401

from paykit import LocalCluster, PaymentClient
from paykit.client.session import GatewaySession
from paykit.lab.check import read_bank

PASSWORD = "password123"
OPENING_MINOR = 100_000  # what new_payer() opens with
_payers = itertools.count(1)


@pytest.fixture(autouse=True, scope="session")
def _state_in_tmp(tmp_path_factory):
    """Run state that defaults to $PAYKIT_HOME (outboxes, a default PKI) goes to a tmp folder,
    never into the checkout, and no test sees another run's leftovers."""
    home = tmp_path_factory.mktemp("paykit-home")
    saved = os.environ.get("PAYKIT_HOME")
    os.environ["PAYKIT_HOME"] = str(home)
    yield home
    if saved is None:
        del os.environ["PAYKIT_HOME"]
    else:
        os.environ["PAYKIT_HOME"] = saved


@pytest.fixture
def make_cluster(tmp_path):
    """A factory: make_cluster(**LocalCluster kwargs) -> a started cluster, stopped at teardown."""
    started: list[LocalCluster] = []

    def make(**kwargs) -> LocalCluster:
        kwargs.setdefault("data_dir", tmp_path / f"cluster{len(started)}")
        cluster = LocalCluster(**kwargs).start()
        started.append(cluster)
        return cluster

    yield make
    for cluster in started:
        cluster.stop()


@pytest.fixture
def cluster(make_cluster) -> LocalCluster:
    return make_cluster()


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory, request) -> Iterator[LocalCluster]:
    """One cluster for a whole test module, whose tests only add users and payments to it (or
    heal what they broke). A module sets its LocalCluster options with CLUSTER = {...}."""
    options = getattr(request.module, "CLUSTER", {})
    folder = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    cluster = LocalCluster(data_dir=folder / "cluster", **options).start()
    yield cluster
    cluster.stop()


def signed_in(
    cluster: LocalCluster,
    username: str,
    account: str,
    opening: str = "1000",
    bank: str = "BankA",
    password: str = PASSWORD,
    **client_options,
) -> PaymentClient:
    """A client with a freshly registered, signed-in user (options go to cluster.client)."""
    client = cluster.client(**client_options)
    client.register(username, password, account, opening, bank)
    client.authenticate(username, password)
    return client


def new_payer(cluster: LocalCluster) -> GatewaySession:
    """A fresh user at BankA; each call is one send (the client's retries are the test's)."""
    name = f"payer{next(_payers)}"
    payer = cluster.session()
    payer.register(name, PASSWORD, f"{name}-acct", OPENING_MINOR, "BankA")
    payer.authenticate(name, PASSWORD)
    return payer


def leg_states(cluster: LocalCluster, payment_id: str) -> tuple[str | None, str | None]:
    """The states of a BankA -> BankB payment's debit and credit legs, read from the banks'
    files."""
    return (
        read_bank("BankA", cluster.bank_db("BankA")).txn_states.get(f"{payment_id}.debit"),
        read_bank("BankB", cluster.bank_db("BankB")).txn_states.get(f"{payment_id}.credit"),
    )


def ctrl_c_as_in_a_terminal() -> None:
    """SIGINT as a terminal's foreground job has it: a suite run in the background (`make test
    &`) starts with SIGINT ignored, and a child would inherit that and never see Ctrl+C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
