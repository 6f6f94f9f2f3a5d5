"""Lesson 13 (attacks): what an attacker tries against a cluster, and the refusal each meets.

    thief = session_with_token(cluster, stolen)   another device presenting someone's token
    attempt(thief.balance)                        "accepted: ..." or "refused (Class): message"
    certificate_attempts(cluster)                 a forged bank certificate, a genuine one used
                                                  for the wrong role: what each was told
    guesses = guess_passwords(cluster, "ada", duration_s=4)
                                                  an online guesser from another address
    checked_guesses(guesses), plot_guesses(guesses)

Every attempt goes to the real servers over the real network (the cluster's relays); nothing
here bypasses TLS or the gateway's checks. The defences are in docs/security.md.
"""

from __future__ import annotations

import re
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pandas as pd
from matplotlib.axes import Axes

from paykit.core.errors import InvalidInput, PaykitError
from paykit.lab.attack import SourceRelay
from paykit.rpc.channels import secure_channel
from paykit.rpc.pki import CLIENT_CN, GATEWAY_CN, bank_cn, ensure_identity
from paykit.v1 import payment_pb2 as pb
from paykit.v1 import payment_pb2_grpc as pb_grpc

CALL_TIMEOUT_S = 3.0
SHOWN_MAX = 120  # characters of an answer shown
GUESS_PAUSE_S = 0.05  # between two guesses: a guesser that hammers, but not a flood
GUESS_MAX_S = 30.0
HASH_S = 0.025  # about what one sign-in costs the gateway (argon2id, docs/security.md)


_TOKEN = re.compile(r"pk_[A-Za-z0-9_-]{8,}")


def _short(text: str) -> str:
    """At most SHOWN_MAX characters, and never a token (a lesson's output may be shared)."""
    text = _TOKEN.sub("pk_(hidden)", text)
    return text if len(text) <= SHOWN_MAX else text[: SHOWN_MAX - 3] + "..."


def attempt(fn: Callable, *args, **kwargs) -> str:
    """Calls fn(*args, **kwargs): "accepted: <what it returned>", or "refused (<error class>):
    <message>" when paykit refused it."""
    try:
        result = fn(*args, **kwargs)
    except PaykitError as err:
        return _short(f"refused ({type(err).__name__}): {err}")
    return _short(f"accepted: {str(result).strip()}".replace("\n", ", "))


def session_with_token(cluster, token: str):
    """A new connection (another device, the thief's) that presents `token` as its own."""
    session = cluster.session()
    session.token = token
    return session


def forged_token() -> str:
    """A token of the right shape that the gateway never issued."""
    return "pk_" + secrets.token_urlsafe(32)


def _rpc_outcome(call: Callable[[], object]) -> tuple[str, str]:
    """(gRPC status code name, its message): ("OK", "") if the call was accepted."""
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code().name, _short(exc.details() or "")
    return "OK", ""


def _forged_credentials(cluster, folder: Path, common_name: str) -> grpc.ChannelCredentials:
    """A client certificate for `common_name` from a CA of our own making, and the cluster's
    real CA certificate (public) to check the server with: only the forgery can fail."""
    forged = ensure_identity(folder, common_name)
    real_ca = ensure_identity(cluster.pki_dir, CLIENT_CN).ca.read_bytes()
    return grpc.ssl_channel_credentials(
        root_certificates=real_ca,
        private_key=(forged.client_key or forged.key).read_bytes(),
        certificate_chain=(forged.client_cert or forged.cert).read_bytes(),
    )


def _ask_decision_forged(cluster) -> tuple[str, str]:
    with tempfile.TemporaryDirectory(prefix="paykit-forger-") as folder:
        creds = _forged_credentials(cluster, Path(folder), bank_cn("BankA"))
    options = [("grpc.ssl_target_name_override", GATEWAY_CN)]
    with grpc.secure_channel(cluster.gateway_address, creds, options=options) as channel:
        stub = pb_grpc.CoordinatorStub(channel)
        return _rpc_outcome(
            lambda: stub.GetDecision(
                pb.GetDecisionRequest(txn_id="x.debit"), timeout=CALL_TIMEOUT_S
            )
        )


def _prepare_as_client(cluster, bank: str) -> tuple[str, str]:
    tls = ensure_identity(cluster.pki_dir, CLIENT_CN)
    with secure_channel(cluster.bank_address(bank), tls, server_name=bank_cn(bank)) as channel:
        stub = pb_grpc.BankStub(channel)
        return _rpc_outcome(lambda: stub.Prepare(pb.PrepareRequest(), timeout=CALL_TIMEOUT_S))


def _ask_decision_as_client(cluster) -> tuple[str, str]:
    tls = ensure_identity(cluster.pki_dir, CLIENT_CN)
    with secure_channel(cluster.gateway_address, tls, server_name=GATEWAY_CN) as channel:
        stub = pb_grpc.CoordinatorStub(channel)
        return _rpc_outcome(
            lambda: stub.GetDecision(
                pb.GetDecisionRequest(txn_id="x.debit"), timeout=CALL_TIMEOUT_S
            )
        )


def certificate_attempts(cluster, bank: str = "BankA") -> pd.DataFrame:
    """Three calls no legitimate process makes, and what each was told: a certificate for
    `bank` forged with another CA asking the coordinator for a decision; the genuine client
    certificate (every app has it) calling a bank's Prepare; and asking GetDecision with it."""
    rows = [
        ("forged: BankA's name, another CA", "Coordinator/GetDecision",
         *_ask_decision_forged(cluster)),
        ("the genuine client certificate", f"{bank}: Bank/Prepare",
         *_prepare_as_client(cluster, bank)),
        ("the genuine client certificate", "Coordinator/GetDecision",
         *_ask_decision_as_client(cluster)),
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["certificate", "calls", "code", "message"])


def _sign_in(stub, username: str, password: str) -> tuple[str, str]:
    try:
        stub.Authenticate(
            pb.AuthenticateRequest(username=username, password=password), timeout=CALL_TIMEOUT_S
        )
    except grpc.RpcError as exc:
        return exc.code().name, exc.details() or ""
    return "OK", ""


def guess_passwords(
    cluster, username: str, *, duration_s: float, source: str = "127.0.0.2"
) -> pd.DataFrame:
    """An online guesser: wrong passwords for `username`, one every GUESS_PAUSE_S for
    `duration_s`, from the local address `source` (127.0.0.2: another machine, as the gateway
    sees it; "127.0.0.1" is the notebook's own). One row per guess: t_s, code (UNAUTHENTICATED:
    checked and wrong; RESOURCE_EXHAUSTED: refused unchecked), message, checked."""
    if not 0 < duration_s <= GUESS_MAX_S:
        raise InvalidInput(f"duration_s must be more than 0 and at most {GUESS_MAX_S} s")
    relay = None if source == "127.0.0.1" else SourceRelay(cluster.gateway_address, source)
    tls = ensure_identity(cluster.pki_dir, CLIENT_CN)
    address = relay.address if relay else cluster.gateway_address
    rows = []
    try:
        with secure_channel(address, tls, server_name=GATEWAY_CN) as channel:
            stub = pb_grpc.GatewayStub(channel)
            started = time.monotonic()
            while (t := time.monotonic() - started) < duration_s:
                code, message = _sign_in(stub, username, f"guess-{len(rows)}")
                rows.append({"t_s": round(t, 3), "code": code, "message": _short(message)})
                time.sleep(GUESS_PAUSE_S)
    finally:
        if relay is not None:
            relay.close()
    guesses = pd.DataFrame(rows, columns=["t_s", "code", "message"])
    guesses["checked"] = guesses["code"].isin(["OK", "UNAUTHENTICATED"])
    return guesses


def checked_guesses(guesses: pd.DataFrame) -> int:
    """How many of the guesses the gateway checked against the password (the rest it refused
    before hashing anything)."""
    return int(guesses["checked"].sum())


def plot_guesses(guesses: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Guesses checked against the password over time, against what a guesser would get
    checked with no throttle (one per hash, HASH_S) and what this one sent."""
    import matplotlib.pyplot as plt

    ax = ax if ax is not None else plt.subplots(figsize=(7, 4))[1]
    t = guesses["t_s"]
    ax.step(t, guesses["checked"].cumsum(), where="post", color="tab:green", label="checked")
    ax.plot(t, range(1, len(t) + 1), color="tab:orange", linestyle="--", label="sent")
    ax.plot(t, 1 + t / HASH_S, color="tab:red", linestyle=":", label="checked with no throttle")
    ax.set_yscale("log")
    ax.set_title("An online guesser, throttled")
    ax.set_xlabel("time since the first guess (s)")
    ax.set_ylabel("guesses")
    ax.legend()
    return ax
