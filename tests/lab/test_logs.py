"""paykit.lab.logs: the logs of every process of a real cluster as one pandas DataFrame, with proper
dtypes."""

from __future__ import annotations

import sys
import uuid

import pandas as pd  # the lessons extra: these tests need it (no skip)
import pytest
from conftest import signed_in

from paykit.core.errors import InvalidInput
from paykit.lab.logs import COLUMNS, log_files, read_logs, retried_requests, rpc_calls, twopc_events
from paykit.v1 import payment_pb2 as pb


@pytest.fixture(scope="module")
def cluster(shared_cluster):
    """The module's cluster after a payment, a declined one and a retried request."""
    c = shared_cluster
    ada = signed_in(c, "ada", "ada-acct", "100", "BankA")
    c.paid = ada.pay("BankB", "recipient123", "12.50")
    c.declined = ada.pay("BankB", "recipient123", "1000")  # insufficient funds
    key, request_id = str(uuid.uuid4()), uuid.uuid4().hex
    request = pb.PayRequest(
        idempotency_key=key, to_bank="BankB", to_account="recipient123", amount_minor=1
    )
    for attempt in (1, 2):
        ada.session.call("Pay", request, attempt=attempt, request_id=request_id, key=key)
    c.retried_request_id = request_id
    ada.close()
    return c


@pytest.fixture(scope="module")
def df(cluster):
    return read_logs(cluster)


def test_one_frame_of_every_process_with_proper_dtypes(df):
    assert set(df["source"].astype(str)) >= {"gateway", "BankA", "BankB"}
    assert any(s.startswith("client-") for s in df["source"].astype(str))
    assert list(df.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert str(df["ts"].dtype) == "datetime64[ns, UTC]"
    assert df["ts"].is_monotonic_increasing
    assert df["latency_ms"].dtype == "float64"
    assert df["attempt"].dtype == "Int64" and df["amount_minor"].dtype == "Int64"
    for column in ("service", "method", "code", "event"):
        assert isinstance(df[column].dtype, pd.CategoricalDtype), column
    # Values survive exactly: 12.50 is 1250 minor units, not a float.
    pays = df[
        (df["event"] == "rpc")
        & (df["method"] == "/paykit.v1.Gateway/Pay")
        & (df["service"] == "gateway")
    ]
    assert 1250 in set(pays["amount_minor"].dropna())


def test_the_same_frame_from_a_folder_and_from_paths(cluster, df):
    by_folder = read_logs(cluster.data_dir)
    by_paths = read_logs([str(p) for p in log_files(cluster)])
    assert len(by_folder) == len(by_paths) == len(df)
    assert by_folder["ts"].tolist() == df["ts"].tolist()


def test_rpc_calls_has_both_sides(df):
    calls = rpc_calls(df)
    assert set(calls["side"].astype(str)) == {"server", "client"}
    latency = calls.groupby(["side", "rpc"], observed=True)["latency_ms"].median()
    assert latency[("client", "Gateway/Pay")] > 0 and latency[("server", "Bank/Prepare")] > 0
    assert set(calls["code"].dropna().astype(str)) >= {"OK"}


def test_twopc_events_join_both_banks_by_payment(cluster, df):
    steps = twopc_events(df)
    paid = steps[steps["payment_id"] == cluster.paid.payment_id]
    assert set(paid["source"].astype(str)) == {"gateway", "BankA", "BankB"}
    assert set(paid["event"].astype(str)) >= {
        "2pc.begin",
        "2pc.prepare_sent",
        "2pc.vote",
        "2pc.voted",
        "2pc.decision",
        "2pc.ack",
        "2pc.committed",
    }
    decisions = steps[steps["event"] == "2pc.decision"].set_index("payment_id")["decision"]
    assert decisions[cluster.paid.payment_id] == "commit"
    assert decisions[cluster.declined.payment_id] == "abort"


def test_retried_requests(cluster, df):
    retried = retried_requests(df)
    row = retried[retried["request_id"] == cluster.retried_request_id].iloc[0]
    assert (row["rpc"], row["attempts"], row["last_code"]) == ("Gateway/Pay", 2, "OK")


def test_a_torn_last_line_is_skipped(cluster, tmp_path):
    # A process killed mid-write leaves half a line; the rest of its log still reads.
    gateway_log = cluster.procs["gateway"].data_dir / "gateway.jsonl"
    copy = tmp_path / "gateway.jsonl"
    copy.write_text(gateway_log.read_text() + '{"ts": 17958, "service": "gatew')
    frame = read_logs(copy)
    assert len(frame) == len(gateway_log.read_text().splitlines())


def test_bad_sources_say_what_is_wrong(tmp_path):
    with pytest.raises(InvalidInput, match="no log folder or file"):
        read_logs(tmp_path / "nowhere")
    with pytest.raises(InvalidInput, match="not found"):
        read_logs([tmp_path / "missing.jsonl"])
    with pytest.raises(InvalidInput, match="cannot read logs from a int"):
        read_logs(42)
    empty = read_logs(tmp_path)  # a folder with no logs yet: an empty frame with the columns
    assert len(empty) == 0 and list(empty.columns) == list(COLUMNS)


def test_without_pandas_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    # `import pandas` now fails, as without the extra
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="lessons"):
        read_logs(tmp_path)
