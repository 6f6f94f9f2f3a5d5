"""Frozen, keyword-only configs with named defaults, and where run state lives."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

# Ports of `paykit up`, as in the seed.
DEFAULT_GATEWAY_PORT = 50050
DEFAULT_BANK_PORTS = {"BankA": 50051, "BankB": 50052}

PREPARE_TIMEOUT_S = 2.0  # how long the coordinator waits for both votes
TOKEN_TTL_S = 3600.0  # a sign-in lasts an hour
IDEMPOTENCY_RETENTION_S = 24 * 3600.0  # Stripe keeps keys 24 h
LOCKOUT_FAILURES = 5  # failed sign-ins in a row before the account locks
LOCKOUT_S = 60.0  # how long it stays locked
IN_DOUBT_ASK_AFTER_S = 1.0  # a bank asks the coordinator about a prepare this old
CALL_TIMEOUT_S = 5.0  # deadline of one client call
SERVER_WORKERS = 32  # threads per server: bounds concurrent calls


def state_dir() -> Path:
    """Where run state goes: $PAYKIT_HOME, else ./.paykit (git ignores it)."""
    return Path(os.environ.get("PAYKIT_HOME") or Path.cwd() / ".paykit")


@dataclass(frozen=True, kw_only=True)
class TLSFiles:
    """The PEM files one process needs for mutual TLS."""

    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True, kw_only=True)
class BankConfig:
    name: str
    host: str = "127.0.0.1"
    port: int = 0
    data_dir: Path
    tls: TLSFiles
    seed_csv: Path | None = None
    # Where the in-doubt resolver asks for decisions, instead of the address each Prepare names
    # ("" = that one); LocalCluster gives each bank its own relay to the gateway this way.
    coordinator: str = ""
    in_doubt_ask_after_s: float = IN_DOUBT_ASK_AFTER_S
    failpoints: bool = False
    workers: int = SERVER_WORKERS


@dataclass(frozen=True, kw_only=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 0
    # The address banks use to ask for decisions; default host:port (0.0.0.0 -> 127.0.0.1).
    advertise: str = ""
    banks: dict[str, str] = field(default_factory=dict)  # name -> host:port, in order
    data_dir: Path
    tls: TLSFiles
    prepare_timeout_s: float = PREPARE_TIMEOUT_S
    token_ttl_s: float = TOKEN_TTL_S
    idempotency_retention_s: float = IDEMPOTENCY_RETENTION_S
    lockout_failures: int = LOCKOUT_FAILURES
    lockout_s: float = LOCKOUT_S
    # Legs for one bank go in batches (Bank/Exchange); off: one unary call per leg.
    batching: bool = True
    failpoints: bool = False
    workers: int = SERVER_WORKERS
