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
SIGN_IN_FREE_FAILURES = 3  # failed sign-ins of a name from an address before waits (1, 2, 4 s...)
SIGN_IN_PEER_PER_MIN = 20  # failed sign-ins an address may make a minute, over all names
REGISTRATIONS_PER_HOUR = 100  # registrations one address may make an hour
# Opening balances (test-mode deposits: new money) one address may register an hour:
# 20,000,000.00, two of the largest openings (paykit.core.money.OPENING_BALANCE_MAX_MINOR).
OPENING_MINOR_PER_HOUR = 2_000_000_000
IN_DOUBT_ASK_AFTER_S = 1.0  # a bank asks the coordinator about a prepare this old
CALL_TIMEOUT_S = 5.0  # deadline of one client call
SERVER_WORKERS = 32  # threads per server running calls whose request has arrived
# Threads of the gateway's sign-in pool (Register, Authenticate: they hash passwords). Two on a
# 2-core machine: a flood of sign-ins queues there and leaves a core to payments.
SIGN_IN_WORKERS = 2


def state_dir() -> Path:
    """Where run state goes: $PAYKIT_HOME, else ./.paykit (git ignores it)."""
    return Path(os.environ.get("PAYKIT_HOME") or Path.cwd() / ".paykit")


@dataclass(frozen=True, kw_only=True)
class TLSFiles:
    """The PEM files one process needs for mutual TLS: the CA certificate, the identity it
    serves with, and (a server that also calls others) the client identity it calls with."""

    ca: Path
    cert: Path
    key: Path
    client_cert: Path | None = None
    client_key: Path | None = None


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
    # "module:Class" of a Participant subclass (a lab's student code); "" = the production one.
    participant_class: str = ""


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
    sign_in_free_failures: int = SIGN_IN_FREE_FAILURES
    sign_in_peer_per_min: int = SIGN_IN_PEER_PER_MIN
    registrations_per_hour: int = REGISTRATIONS_PER_HOUR
    opening_minor_per_hour: int = OPENING_MINOR_PER_HOUR
    # Legs for one bank go in batches (Bank/Exchange); off: one unary call per leg.
    batching: bool = True
    failpoints: bool = False
    workers: int = SERVER_WORKERS
    # "module:Class" of a student's rules (the labs); empty: the gateway's own.
    coordinator_class: str = ""
    idempotency_class: str = ""
