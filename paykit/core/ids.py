"""The identifiers people type or tools send (account ids, ...): their rules and length limits.

Both the gateway (before it forwards a request) and a bank (before it writes) check them
with these functions, so the rule is stated once.
"""

from __future__ import annotations

from paykit.core.errors import InvalidInput

ACCOUNT_ID_MAX_LEN = 64


def check_account_id(account_id: str) -> str:
    if (
        not account_id
        or len(account_id) > ACCOUNT_ID_MAX_LEN
        or not account_id.isprintable()
        or " " in account_id
    ):
        raise InvalidInput(
            f"account id {account_id[:ACCOUNT_ID_MAX_LEN]!r} is not valid: use 1 to "
            f"{ACCOUNT_ID_MAX_LEN} "
            "characters, no spaces"
        )
    return account_id
