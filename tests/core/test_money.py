"""Money: Decimal parsing of user text into integer minor units, and the limits."""

import pytest

from paykit.core.errors import InvalidAmount
from paykit.core.money import PAYMENT_MAX_MINOR, check_amount_minor, format_minor, parse_amount


@pytest.mark.parametrize(
    ("text", "minor"),
    [
        ("200", 20000),
        ("12.50", 1250),
        ("12.5", 1250),
        ("0.01", 1),
        (" 7 ", 700),
        ("1000000", PAYMENT_MAX_MINOR),
    ],
)
def test_parses_plain_decimals_exactly(text, minor):
    assert parse_amount(text) == minor


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("0", "0.00 is not a payment"),
        ("0.00", "0.00 is not a payment"),
        ("-5", "negative"),
        ("12.345", "more than 2 decimals"),
        ("abc", "not a plain decimal"),
        ("nan", "not a plain decimal"),
        ("inf", "not a plain decimal"),
        ("1e3", "not a plain decimal"),
        ("1,000", "not a plain decimal"),
        ("", "not a plain decimal"),
        ("1000000.01", "over the limit"),
    ],
)
def test_refuses_bad_amounts_with_the_reason(text, why):
    with pytest.raises(InvalidAmount, match=why):
        parse_amount(text)


def test_zero_is_allowed_only_where_asked():
    assert parse_amount("0", allow_zero=True) == 0


def test_wire_amounts_must_be_integers():
    with pytest.raises(InvalidAmount):
        check_amount_minor(12.5)  # a float never becomes money
    with pytest.raises(InvalidAmount):
        check_amount_minor(True)


@pytest.mark.parametrize(
    ("minor", "text"), [(20000, "200.00"), (1, "0.01"), (0, "0.00"), (-5, "-0.05")]
)
def test_formats_minor_units(minor, text):
    assert format_minor(minor) == text
