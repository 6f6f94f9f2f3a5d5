"""Shared fixtures: real clusters on 127.0.0.1 (port 0), real TLS, real SQLite, in tmp folders."""

from __future__ import annotations

import os

import pytest

from paykit import LocalCluster, PaymentClient

PASSWORD = "password123"


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


def signed_in(cluster: LocalCluster, username: str, account: str, opening: str = "1000", bank: str = "BankA",
              password: str = PASSWORD) -> PaymentClient:
    """A client with a freshly registered, signed-in user."""
    client = cluster.client()
    client.register(username, password, account, opening, bank)
    client.authenticate(username, password)
    return client
