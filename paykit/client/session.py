"""GatewaySession: the client's transport and session core, one mutual-TLS channel and one token.

Each method is one call, sent once: no outbox, no retries of its own (reads may ask for a
few with `retrying`). PaymentClient builds on it; the chaos payers, the benchmark and the
fault tests use it bare, so that what a client "was told" is exactly one call's answer.
Every call carries a request id and an attempt number in metadata, so retries are visible
in the servers' logs.
"""

from __future__ import annotations

import time
import uuid
from typing import Self

import grpc

from paykit.client.bundle import diagnose_tls
from paykit.core.clock import Backoff
from paykit.core.config import CALL_TIMEOUT_S, TLSFiles
from paykit.core.errors import ConnectFailed, InProgress, NotAuthenticated, TLSFailure, Unavailable
from paykit.rpc.channels import secure_channel
from paykit.rpc.pki import GATEWAY_CN
from paykit.rpc.status import SOCKET_CLOSED, from_rpc_error
from paykit.v1 import payment_pb2 as pb
from paykit.v1 import payment_pb2_grpc as pb_grpc

READ_ATTEMPTS = 4  # a read is sent once and retried 3 times (payments retry through the outbox)
READ_BACKOFF = Backoff(first_s=0.2, max_s=1.6)
# Errors after which a call's outcome is unknown: retry (a payment with the same key).
RETRYABLE = (Unavailable, InProgress)
# The gateway closed the connection while we connected this many times in a row: it refuses our
# certificate (TLS 1.3 reports that only after the client's side of the handshake is done).
TLS_SUSPECT_CLOSES = 3
PAY_METHOD = "/paykit.v1.Gateway/Pay"


class GatewaySession:
    """A session with one gateway: `call` sends one request; the helpers below name each RPC."""

    def __init__(
        self,
        address: str,
        tls: TLSFiles,
        *,
        timeout_s: float = CALL_TIMEOUT_S,
        interceptors: tuple = (),
    ) -> None:
        self.address = address
        self.tls = tls
        self.timeout_s = timeout_s
        # only the real gateway
        self.raw_channel = secure_channel(address, tls, server_name=GATEWAY_CN)
        self.channel = (
            grpc.intercept_channel(self.raw_channel, *interceptors)
            if interceptors
            else self.raw_channel
        )
        self.stub = pb_grpc.GatewayStub(self.channel)
        # No deserializer: the reply arrives as the exact bytes the gateway sent (stored replies).
        self._pay_raw = self.channel.unary_unary(
            PAY_METHOD, request_serializer=pb.PayRequest.SerializeToString
        )
        self.token = ""
        self.username = ""
        self._closed_in_a_row = 0

    def call(
        self,
        method: str,
        request,
        *,
        attempt: int = 1,
        request_id: str = "",
        key: str = "",
        timeout_s: float | None = None,
        raw: bool = False,
    ):
        """One call of `method` (a Gateway RPC name); paykit errors on failure."""
        metadata = [("x-request-id", request_id or uuid.uuid4().hex), ("x-attempt", str(attempt))]
        if self.token:
            metadata.append(("authorization", f"Bearer {self.token}"))
        if key:
            metadata.append(("idempotency-key", key))
        send = self._pay_raw if raw else getattr(self.stub, method)
        try:
            reply = send(request, timeout=timeout_s or self.timeout_s, metadata=metadata)
        except grpc.RpcError as exc:
            raise self._suspect_tls(from_rpc_error(exc)) from None
        self._closed_in_a_row = 0
        return reply

    def _suspect_tls(self, err):
        """A failed handshake, or a connection closed while connecting, is probed once to say
        which certificate was refused (paykit.client.bundle); connections closed again and again
        without a verdict also mean the gateway refuses us."""
        closed = isinstance(err, ConnectFailed) and err.metadata.get("cause") == SOCKET_CLOSED
        if closed or isinstance(err, TLSFailure):
            why = diagnose_tls(self.address, self.tls, GATEWAY_CN)
            if why is not None:
                return TLSFailure(why)
        self._closed_in_a_row = self._closed_in_a_row + 1 if closed else 0
        if self._closed_in_a_row < TLS_SUSPECT_CLOSES:
            return err
        return TLSFailure(
            f"the gateway closed the connection during the TLS handshake {self._closed_in_a_row} "
            f"times in a row: it does not accept this client's certificate (one from another CA?); "
            f"{err.message}"
        )

    def retrying(self, method: str, request, *, attempts: int = READ_ATTEMPTS):
        """Sends a read, and on an uncertain outcome resends it (same request id, next attempt)."""
        request_id = uuid.uuid4().hex
        for attempt in range(1, attempts + 1):
            try:
                return self.call(method, request, attempt=attempt, request_id=request_id)
            except RETRYABLE:
                if attempt == attempts:
                    raise
            time.sleep(READ_BACKOFF.delay_s(attempt))
        raise AssertionError("unreachable")

    # -- the RPCs -----------------------------------------------------------------

    def register(
        self,
        username: str,
        password: str,
        account_id: str,
        opening_balance_minor: int,
        bank: str = "",
    ) -> pb.RegisterResponse:
        return self.call(
            "Register",
            pb.RegisterRequest(
                username=username,
                password=password,
                account_id=account_id,
                opening_balance_minor=opening_balance_minor,
                bank=bank,
            ),
        )

    def authenticate(self, username: str, password: str) -> pb.AuthenticateResponse:
        reply = self.call(
            "Authenticate", pb.AuthenticateRequest(username=username, password=password)
        )
        self.token, self.username = reply.token, reply.username
        return reply

    def logout(self) -> None:
        self.require_auth()
        self.call("Logout", pb.LogoutRequest())
        self.token = ""

    def pay_bytes(
        self,
        to_bank: str,
        to_account: str,
        amount_minor: int,
        key: str,
        *,
        attempt: int = 1,
        request_id: str = "",
        timeout_s: float | None = None,
    ) -> bytes:
        """One Pay, answered with the gateway's PayResponse bytes exactly as sent."""
        request = pb.PayRequest(
            idempotency_key=key, to_bank=to_bank, to_account=to_account, amount_minor=amount_minor
        )
        return self.call(
            "Pay",
            request,
            attempt=attempt,
            request_id=request_id,
            key=key,
            timeout_s=timeout_s,
            raw=True,
        )

    def pay(
        self, to_bank: str, to_account: str, amount_minor: int, key: str, **kwargs
    ) -> pb.Payment:
        """One Pay; returns the gateway's Payment message (status SUCCEEDED or FAILED)."""
        return pb.PayResponse.FromString(
            self.pay_bytes(to_bank, to_account, amount_minor, key, **kwargs)
        ).payment

    def balance(self) -> pb.GetBalanceResponse:
        return self.call("GetBalance", pb.GetBalanceRequest())

    def require_auth(self) -> None:
        if not self.token:
            raise NotAuthenticated("not signed in")

    def close(self) -> None:
        self.raw_channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
