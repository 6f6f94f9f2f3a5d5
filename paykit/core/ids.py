"""The identifiers people type or tools send (account ids, ...): their rules and length limits,
and how much of a refused value an error may echo.

Both the gateway (before it forwards a request) and a bank (before it writes) check them
with these functions, so the rule is stated once. Account ids follow the usernames' rule
(paykit.gateway.users): ASCII lowercase letters, digits, '_', '.', '-', so no look-alike from
another script, no combining accent and no '/' can stand beside a real id.
"""

from __future__ import annotations

import re

from paykit.core.errors import InvalidInput

ACCOUNT_ID_MAX_LEN = 64
ECHO_MAX_CHARS = 32  # of a refused value, in any error message (and so in the logs)
# The longest text each request field may carry, checked by the servers before any handler
# runs (paykit.rpc.interceptors); a test walks every request message so none is missing. The
# handlers' own rules are stricter (a username is 1 to 32 characters once normalised, ...).
FIELD_MAX_CHARS: dict[str, int] = {
    "username": 128,  # raw: NFKC may shorten it (paykit.gateway.users)
    "password": 128,
    "opened_for": 32,
    "account_id": ACCOUNT_ID_MAX_LEN,
    "to_account": ACCOUNT_ID_MAX_LEN,
    "from_account": ACCOUNT_ID_MAX_LEN,
    "bank": 32,
    "to_bank": 32,
    "idempotency_key": 64,
    "payment_id": 64,
    "txn_id": 80,  # <payment id>.debit
    "counterparty": 100,  # BANK/ACCOUNT
    "coordinator": 300,  # host:port
    "request_id": 64,  # a client's x-request-id, carried by a batched leg
    "page_token": 200,  # paykit.core.paging: at most about 170 characters
    "start_after_account_id": ACCOUNT_ID_MAX_LEN,
}
FIELD_MAX_CHARS_OTHER = 64  # a field this table does not name (a test keeps it complete)
_ACCOUNT_ID_RE = re.compile(r"[a-z0-9][a-z0-9_.-]*")


def prefix(value: object, limit: int = ECHO_MAX_CHARS) -> str:
    """At most `limit` characters of `value` for an error message: a refused value may be huge,
    and the message travels in a reply trailer and into the logs."""
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[:limit] + "..."


def too_long(fields: dict[str, str]) -> tuple[str, int] | None:
    """(field, limit) of the first text field over its limit, else None."""
    for name, value in fields.items():
        limit = FIELD_MAX_CHARS.get(name, FIELD_MAX_CHARS_OTHER)
        if len(value) > limit:
            return name, limit
    return None


def check_account_id(account_id: str) -> str:
    if not account_id or len(account_id) > ACCOUNT_ID_MAX_LEN:
        raise InvalidInput(f"account id must have 1 to {ACCOUNT_ID_MAX_LEN} characters")
    if not _ACCOUNT_ID_RE.fullmatch(account_id):
        raise InvalidInput(
            f"account id {prefix(account_id)!r} is not valid: use lowercase letters a-z, digits, "
            "'_', '.', '-', starting with a letter or digit"
        )
    return account_id
