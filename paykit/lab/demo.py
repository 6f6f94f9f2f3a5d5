"""`paykit demo`: a scripted tour on free ports, printed in the seed's format."""

from __future__ import annotations

import sys
import time

from paykit.client.shell import Shell
from paykit.lab.cluster import LocalCluster

# (who types it, the command). alice banks at BankA, bob at BankB.
TOUR = [
    ("alice", "register alice password123 alice-acct 1000 BankA"),
    ("bob", "register bob hunter2hunter2 bob-acct 50 BankB"),
    ("alice", "auth alice password123"),
    ("alice", "balance"),
    ("alice", "pay BankB bob-acct 200"),
    ("alice", "pay BankB bob-acct 5000"),
    ("alice", "balance"),
    ("bob", "auth bob hunter2hunter2"),
    ("bob", "balance"),
    ("alice", "search"),
    ("alice", "search status=failed"),
]


def run_demo() -> int:
    started = time.monotonic()
    print(
        "[demo] starting BankA, BankB and the gateway on free ports (mutual TLS, SQLite)...",
        flush=True,
    )
    with LocalCluster() as cluster:
        for row in cluster.status():
            print(f"[demo]   {row['name']:8} pid {row['pid']:<7} port {row['port']}")
        shells = {}
        for who in ("alice", "bob"):
            shells[who] = Shell(cluster.client(), sys.stdout)
        for who, line in TOUR:
            print(f"{who}> {line}", flush=True)
            shells[who].run_line(line)
        for shell in shells.values():
            shell.client.close()
        print("[demo] stopping the cluster...", flush=True)
    print(f"[demo] done in {time.monotonic() - started:.1f} s; every server stopped.")
    return 0
