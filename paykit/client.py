"""PaymentClient: the Python API of the gateway, for scripts, notebooks, the CLI and tests.

Every call carries a request id and an attempt number in metadata, so retries are
visible in the servers' logs. A payment's idempotency key is made once per intended
payment and reused on every retry, so a retry can never pay twice.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Self

import grpc

from paykit.client_log import open_client_log
from paykit.config import CALL_TIMEOUT_S, TLSFiles, state_dir
from paykit.errors import InProgress, InvalidAmount, InvalidInput, NotAuthenticated, Unavailable
from paykit.money import OPENING_BALANCE_MAX_MINOR, check_amount_minor, parse_amount
from paykit.pki import CLIENT_CN, ensure_identity
from paykit.rpc import from_rpc_error, secure_channel
from paykit.v1 import payment_pb2 as pb
from paykit.v1 import payment_pb2_grpc as pb_grpc

PAY_ATTEMPTS = 4  # first send + 3 retries with the same key
RETRY_FIRST_S = 0.2
STATUS_NAMES = {pb.PAYMENT_STATUS_PENDING: "pending", pb.PAYMENT_STATUS_SUCCEEDED: "succeeded",
                pb.PAYMENT_STATUS_FAILED: "failed"}
STATUS_VALUES = {v: k for k, v in STATUS_NAMES.items()}
# Errors after which the payment's outcome is unknown: retry with the same key.
RETRYABLE = (Unavailable, InProgress)


@dataclass(frozen=True)
class Balance:
    bank: str
    account_id: str
    balance_minor: int
    held_minor: int
    available_minor: int


@dataclass(frozen=True)
class Payment:
    """One payment as the gateway reports it. status: pending | succeeded | failed."""

    payment_id: str
    status: str
    from_bank: str
    from_account: str
    to_bank: str
    to_account: str
    amount_minor: int
    failure_reason: str = ""
    failure_message: str = ""
    created_unix_ms: int = 0
    idempotency_key: str = ""
    settled: bool = False

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @classmethod
    def from_pb(cls, p: pb.Payment) -> Payment:
        return cls(p.payment_id, STATUS_NAMES.get(p.status, "pending"), p.from_bank, p.from_account, p.to_bank,
                   p.to_account, p.amount_minor, p.failure_reason, p.failure_message, p.created_unix_ms,
                   p.idempotency_key, p.settled)


def to_minor(amount: str | Decimal | int | None, amount_minor: int | None, *, opening: bool = False) -> int:
    """Amounts from Python: text or Decimal in major units, or amount_minor=. Never float."""
    limit = {"allow_zero": True, "max_minor": OPENING_BALANCE_MAX_MINOR} if opening else {}
    if amount_minor is not None:
        if amount is not None:
            raise InvalidAmount("give amount or amount_minor, not both")
        return check_amount_minor(amount_minor, **limit)
    if isinstance(amount, float):
        raise InvalidAmount("amounts are never floats: pass text like '12.50', a Decimal, or amount_minor=1250")
    if amount is None:
        raise InvalidAmount("an amount is needed")
    return parse_amount(str(amount), **limit)


class PaymentClient:
    """A signed-in session with one gateway, over mutual TLS."""

    def __init__(self, gateway: str, *, tls: TLSFiles | None = None, pki_dir: Path | None = None,
                 timeout_s: float = CALL_TIMEOUT_S, interceptors: tuple = (), log_path: Path | None = None) -> None:
        self.gateway = gateway
        self.timeout_s = timeout_s
        self.tls = tls or ensure_identity(Path(pki_dir) if pki_dir else state_dir() / "pki", CLIENT_CN)
        channel = secure_channel(gateway, self.tls)
        # log_path: one `rpc.client` JSON line per call attempt (see paykit.client_log).
        self._log = open_client_log(log_path, target=gateway) if log_path else None
        interceptors = (*interceptors, self._log) if self._log else interceptors
        self.channel = grpc.intercept_channel(channel, *interceptors) if interceptors else channel
        self._raw_channel = channel
        self.stub = pb_grpc.GatewayStub(self.channel)
        self.token = ""
        self.username = ""

    # -- plumbing ---------------------------------------------------------------

    def _call(self, method: str, request, *, attempt: int = 1, request_id: str = "", key: str = "",
              timeout_s: float | None = None):
        metadata = [("x-request-id", request_id or uuid.uuid4().hex), ("x-attempt", str(attempt))]
        if self.token:
            metadata.append(("authorization", f"Bearer {self.token}"))
        if key:
            metadata.append(("idempotency-key", key))
        try:
            return getattr(self.stub, method)(request, timeout=timeout_s or self.timeout_s, metadata=metadata)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None

    def _retrying(self, method: str, request, *, key: str = "", attempts: int = PAY_ATTEMPTS):
        """Sends, and on an uncertain outcome resends the same request (same key, same id)."""
        request_id, pause_s = uuid.uuid4().hex, RETRY_FIRST_S
        for attempt in range(1, attempts + 1):
            try:
                return self._call(method, request, attempt=attempt, request_id=request_id, key=key)
            except RETRYABLE:
                if attempt == attempts:
                    raise
            time.sleep(pause_s)
            pause_s *= 2
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._raw_channel.close()
        if self._log:
            self._log.log.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the API ----------------------------------------------------------------

    def register(self, username: str, password: str, account_id: str, opening_balance: str | Decimal | int | None = None,
                 bank: str = "", *, opening_balance_minor: int | None = None) -> pb.RegisterResponse:
        minor = to_minor(opening_balance, opening_balance_minor, opening=True)
        return self._call("Register", pb.RegisterRequest(username=username, password=password, account_id=account_id,
                                                         opening_balance_minor=minor, bank=bank))

    def authenticate(self, username: str, password: str) -> pb.AuthenticateResponse:
        reply = self._call("Authenticate", pb.AuthenticateRequest(username=username, password=password))
        self.token, self.username = reply.token, reply.username
        return reply

    def logout(self) -> None:
        self._require_auth()
        self._call("Logout", pb.LogoutRequest())
        self.token = ""

    def balance(self) -> Balance:
        self._require_auth()
        r = self._retrying("GetBalance", pb.GetBalanceRequest())
        return Balance(r.bank, r.account_id, r.balance_minor, r.held_minor, r.available_minor)

    def pay(self, to_bank: str, to_account: str, amount: str | Decimal | int | None = None, *,
            amount_minor: int | None = None, key: str | None = None) -> Payment:
        """Pays from your own account. Retries with the same key until the outcome is known."""
        self._require_auth()
        minor = to_minor(amount, amount_minor)
        key = key or str(uuid.uuid4())
        request = pb.PayRequest(idempotency_key=key, to_bank=to_bank, to_account=to_account, amount_minor=minor)
        return Payment.from_pb(self._retrying("Pay", request, key=key).payment)

    def get_payment(self, payment_id: str) -> Payment:
        self._require_auth()
        return Payment.from_pb(self._retrying("GetPayment", pb.GetPaymentRequest(payment_id=payment_id)))

    def search(self, *, status: str = "", counterparty: str = "", min_amount: str | None = None,
               max_amount: str | None = None, since_unix_ms: int = 0, until_unix_ms: int = 0,
               limit: int = 0) -> list[Payment]:
        self._require_auth()
        if status and status not in STATUS_VALUES:
            raise InvalidInput(f"status {status!r} is not one of {', '.join(STATUS_VALUES)}")
        request = pb.SearchPaymentsRequest(
            status=STATUS_VALUES.get(status, pb.PAYMENT_STATUS_UNSPECIFIED), counterparty=counterparty,
            min_amount_minor=parse_amount(min_amount) if min_amount else 0,
            max_amount_minor=parse_amount(max_amount) if max_amount else 0,
            since_unix_ms=since_unix_ms, until_unix_ms=until_unix_ms, limit=limit,
        )
        return [Payment.from_pb(p) for p in self._retrying("SearchPayments", request).payments]

    def _require_auth(self) -> None:
        if not self.token:
            raise NotAuthenticated("not signed in: run auth USER PASSWORD first")
