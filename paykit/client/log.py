"""The client's side of the monitoring log: one `rpc.client` JSON line per call attempt.

The servers log what they received; this logs what the client sent and what came back,
including calls that never reached a server (gateway down, TLS refused, deadline), so a
lesson can put retries (attempt 1, 2, ...) next to the gateway's view of the same
request id. The line holds the metadata the client already sends (x-request-id,
x-attempt, idempotency-key) and never the authorization header, a token or a password.
"""

from __future__ import annotations

import time
from pathlib import Path

import grpc

from paykit.core.eventlog import EventLog

CLIENT_EVENT = "rpc.client"
# Metadata keys copied into the log line, and the field each becomes.
_LOGGED_METADATA = {
    "x-request-id": "request_id",
    "idempotency-key": "idempotency_key",
    "x-attempt": "attempt",
}


def _metadata_fields(metadata) -> dict:
    fields: dict = {}
    for key, value in metadata or ():
        name = _LOGGED_METADATA.get(key)
        if name is None or not isinstance(value, str):
            continue  # "authorization" and anything unknown stay out of the log
        fields[name] = int(value) if name == "attempt" and value.isdigit() else value
    return fields


class ClientLogInterceptor(grpc.UnaryUnaryClientInterceptor):
    """Writes one `rpc.client` event per unary call attempt through an EventLog."""

    def __init__(self, log: EventLog, *, target: str = "") -> None:
        self.log = log
        self.target = target

    def intercept_unary_unary(self, continuation, client_call_details, request):
        started = time.perf_counter()
        method = client_call_details.method
        record = {
            "method": method.decode() if isinstance(method, bytes) else method,
            "peer": self.target or None,
            **_metadata_fields(client_call_details.metadata),
        }
        amount_minor = getattr(request, "amount_minor", None)
        if isinstance(amount_minor, int) and amount_minor:
            record["amount_minor"] = amount_minor
        outcome = continuation(client_call_details, request)

        def done(outcome) -> None:
            # A failed blocking call comes back wrapped; its exception() is the real RpcError
            # (the wrapper's own code() always says INTERNAL).
            exc = outcome.exception()
            if exc is None:
                code, details = outcome.code() or grpc.StatusCode.OK, ""
            elif isinstance(exc, grpc.Call):
                code, details = exc.code() or grpc.StatusCode.UNKNOWN, exc.details()
            else:
                code, details = grpc.StatusCode.UNKNOWN, f"{type(exc).__name__}: {exc}"
            record["code"] = code.name
            if code != grpc.StatusCode.OK:
                record["error"] = details or None
            record["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
            self.log.event(CLIENT_EVENT, **record)

        # A blocking call's outcome is already complete, so the callback runs at once;
        # a .future() call logs when it finishes.
        outcome.add_done_callback(done)
        return outcome


def open_client_log(
    path: Path, *, target: str = "", service: str = "client"
) -> ClientLogInterceptor:
    """An interceptor appending to the JSON-lines file at `path` (made if missing)."""
    return ClientLogInterceptor(EventLog(Path(path), service=service), target=target)
