"""Money as integer minor units: parsing user text with Decimal, formatting, limits.

No float ever touches a balance: amounts travel as `int` minor units (cents) and
are parsed from text with `decimal.Decimal`, which is exact.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from paykit.core.errors import InvalidAmount
from paykit.core.ids import prefix

MINOR_PER_MAJOR = 100
# Largest single payment: 1,000,000.00. A named limit so a typo cannot move a fortune.
PAYMENT_MAX_MINOR = 1_000_000 * MINOR_PER_MAJOR
# Largest opening balance a test-mode account can be registered with.
OPENING_BALANCE_MAX_MINOR = 10_000_000 * MINOR_PER_MAJOR

# Plain decimal numbers only: no exponent ("1e3"), no sign, no "nan" or "inf",
# no thousands separators, ASCII digits only ("١٠٠" is not 100). At most two decimals.
_AMOUNT_RE = re.compile(r"[0-9]{1,15}(\.[0-9]{1,2})?")
AMOUNT_TEXT_MAX_CHARS = 32


def parse_amount(text: str, *, allow_zero: bool = False, max_minor: int = PAYMENT_MAX_MINOR) -> int:
    """Parses user text like "200" or "12.50" into minor units (20000, 1250).

    Raises InvalidAmount with a message that says what was wrong.
    """
    raw = str(text).strip()
    if len(raw) > AMOUNT_TEXT_MAX_CHARS or not _AMOUNT_RE.fullmatch(raw):
        if raw.startswith("-"):
            problem = "it is negative"
        elif re.fullmatch(r"[0-9]*\.[0-9]{3,}", raw):
            problem = "it has more than 2 decimals"
        else:
            problem = "it is not a plain decimal number (ASCII digits 0-9)"
        raise InvalidAmount(
            f"amount {prefix(raw)!r} is not valid: {problem}; write it like 200 or 12.50"
        )
    try:
        minor = int(Decimal(raw) * MINOR_PER_MAJOR)
    except InvalidOperation as exc:  # the regex makes this unreachable; kept as a guard
        raise InvalidAmount(f"amount {prefix(raw)!r} is not a number") from exc
    check_amount_minor(minor, allow_zero=allow_zero, max_minor=max_minor)
    return minor


def check_amount_minor(
    amount_minor: int, *, allow_zero: bool = False, max_minor: int = PAYMENT_MAX_MINOR
) -> int:
    """Checks an amount already in minor units (from the wire) against the limits."""
    if not isinstance(amount_minor, int) or isinstance(amount_minor, bool):
        raise InvalidAmount(
            f"amount must be an integer number of minor units, got {prefix(repr(amount_minor))}"
        )
    if amount_minor < 0:
        raise InvalidAmount(
            f"amount {format_minor(amount_minor)} is negative; amounts must be positive"
        )
    if amount_minor == 0 and not allow_zero:
        raise InvalidAmount("amount 0.00 is not a payment; send more than 0")
    if amount_minor > max_minor:
        raise InvalidAmount(
            f"amount {format_minor(amount_minor)} is over the limit of {format_minor(max_minor)}"
        )
    return amount_minor


def format_minor(amount_minor: int) -> str:
    """Formats minor units for people: 20000 -> "200.00", -5 -> "-0.05"."""
    sign = "-" if amount_minor < 0 else ""
    major, minor = divmod(abs(int(amount_minor)), MINOR_PER_MAJOR)
    return f"{sign}{major}.{minor:02d}"
