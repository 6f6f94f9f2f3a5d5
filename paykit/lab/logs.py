"""Reads the JSON-lines logs of every paykit process (servers, clients) into one pandas DataFrame.

    df = read_logs(cluster)            # or a folder, or a list of .jsonl files
    calls = rpc_calls(df)              # one row per call: server side and client side
    calls.groupby("rpc", observed=True).latency_ms.describe()
    twopc_events(df)                   # prepare_sent, vote, decision, ack, ... by payment

pandas is an optional extra (`pip install -e '.[lessons]'`), imported only when used.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paykit.core.errors import InvalidInput

if TYPE_CHECKING:
    import pandas as pd

# Columns every frame has, in this order (absent from a line = missing value), and their dtypes.
COLUMNS: dict[str, str] = {
    "ts": "datetime64[ns, UTC]",
    "source": "category",  # the log file's name without .jsonl: gateway, BankA, client-1, ...
    "service": "category",
    "event": "category",
    "method": "category",
    "peer": "string",
    "user": "string",
    "request_id": "string",
    "idempotency_key": "string",
    "attempt": "Int64",
    "txn_id": "string",
    "amount_minor": "Int64",
    "code": "category",
    "error": "string",
    "latency_ms": "float64",
}
RPC_EVENTS = ("rpc", "rpc.client")  # server side, client side
LEG_SUFFIXES = (".debit", ".credit")  # a bank's txn id is <payment id>.<leg>


def _pandas():
    try:
        import pandas
    except ImportError as exc:
        raise ImportError(
            "paykit.logs needs pandas, which is an optional extra: pip install -e '.[lessons]' (or "
            "pip install pandas)"
        ) from exc
    return pandas


def log_files(source: Any) -> list[Path]:
    """The .jsonl files of a LocalCluster (servers and its clients), a folder (searched
    recursively), one file, or a list of files."""
    if hasattr(source, "log_paths") and hasattr(source, "data_dir"):  # a LocalCluster
        paths = list(source.log_paths()) + sorted(Path(source.data_dir).rglob("clients/*.jsonl"))
        return [p for p in dict.fromkeys(paths) if p.exists()]
    if isinstance(source, str | Path):
        path = Path(source)
        if path.is_dir():
            return sorted(path.rglob("*.jsonl"))
        if path.is_file():
            return [path]
        raise InvalidInput(
            f"no log folder or file at {path}; give a LocalCluster, a folder or .jsonl paths"
        )
    if isinstance(source, Iterable):
        paths = [Path(p) for p in source]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise InvalidInput(f"log files not found: {', '.join(missing)}")
        return paths
    raise InvalidInput(
        f"cannot read logs from a {type(source).__name__}; give a LocalCluster, a folder or .jsonl "
        "paths"
    )


def _records(paths: list[Path]) -> list[dict]:
    records = []
    for path in paths:
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                if not line.startswith("{"):
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the last line of a process killed mid-write (kill -9)
                record["source"] = path.stem
                records.append(record)
    return records


def read_logs(source: Any) -> pd.DataFrame:
    """Every event of every process, oldest first, one row per JSON line, with proper dtypes.

    ts is datetime64 UTC; latency_ms float; attempt and amount_minor nullable Int64;
    service, event, method, code categorical; other fields (vote, decision, bank, leg,
    reason, ...) are kept as they are."""
    pd = _pandas()
    # dtype=object keeps Python ints exact until they become Int64 (no detour through float).
    df = pd.DataFrame(_records(log_files(source)), dtype=object)
    for column in COLUMNS:
        if column not in df.columns:
            df[column] = None
    df["ts"] = pd.to_datetime(df["ts"].astype("float64"), unit="s", utc=True)
    df["latency_ms"] = pd.to_numeric(df["latency_ms"], errors="coerce").astype("float64")
    for column, dtype in COLUMNS.items():
        if dtype in ("Int64", "category", "string"):
            df[column] = df[column].astype(dtype)
    extra = [c for c in df.columns if c not in COLUMNS]
    df = df[list(COLUMNS) + extra].copy()
    df[extra] = df[extra].infer_objects()
    return df.sort_values("ts", kind="stable").reset_index(drop=True)


def rpc_calls(df: pd.DataFrame) -> pd.DataFrame:
    """Only the calls: `side` is server (what a server received) or client (what a client
    sent, one row per attempt); `rpc` is the short name, e.g. Gateway/Pay."""
    calls = df[df["event"].isin(RPC_EVENTS)].copy()
    calls["side"] = (
        calls["event"].astype(str).map({"rpc": "server", "rpc.client": "client"})
    ).astype("category")
    calls["rpc"] = calls["method"].astype(str).str.rsplit(".", n=1).str[-1].astype("category")
    return calls.reset_index(drop=True)


def twopc_events(df: pd.DataFrame) -> pd.DataFrame:
    """Only the two-phase commit events, with `payment_id` (a bank's txn id without its leg)."""
    steps = df[df["event"].astype(str).str.startswith("2pc.")].copy()
    txn = steps["txn_id"].astype("string")
    for suffix in LEG_SUFFIXES:
        txn = txn.str.removesuffix(suffix)
    steps["payment_id"] = txn
    return steps.reset_index(drop=True)


def retried_requests(df: pd.DataFrame) -> pd.DataFrame:
    """One row per client request that needed more than one attempt: request id, method,
    attempts, and the code of the last attempt."""
    client = rpc_calls(df)
    client = client[client["side"] == "client"]
    grouped = client.sort_values("ts").groupby("request_id", observed=True)
    summary = grouped.agg(
        rpc=("rpc", "last"), attempts=("attempt", "max"), last_code=("code", "last")
    )
    return summary[summary["attempts"] > 1].reset_index()
