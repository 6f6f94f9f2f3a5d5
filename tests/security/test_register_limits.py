"""Registration cannot print money, and cannot be used to list names fast (issue 13,
Medium 8 and 5).

The attack: 138 registrations in 10 s took BankA from 5,056.49 to 1,380,005,056.49.
"""

from __future__ import annotations

from conftest import PASSWORD

from paykit.core.errors import RateLimited
from paykit.lab.check import total_money

BUDGET_MINOR = 500_000  # 5,000.00 of opening balances an hour from one address
REGISTRATIONS = 12  # an hour from one address
CLUSTER = {
    "gateway_args": (
        "--opening-minor-per-hour", str(BUDGET_MINOR),
        "--registrations-per-hour", str(REGISTRATIONS),
    )
}  # fmt: skip


def test_opening_balances_are_capped_per_address(shared_cluster):
    session = shared_cluster.session()
    before = total_money(shared_cluster)
    opened = 0
    for i in range(4):  # 2,000.00 each: the third goes over 5,000.00
        try:
            session.register(f"rich{i}", PASSWORD, f"rich{i}-acct", 200_000, "BankA")
            opened += 200_000
        except RateLimited as err:
            assert "opening balances from one address are limited" in err.message
            assert "try again in" in err.message
    assert opened == 400_000
    assert total_money(shared_cluster) - before == opened  # nothing more was created
    # A zero opening balance still registers (it creates no money).
    session.register("poor1", PASSWORD, "poor1-acct", 0, "BankA")
    session.close()


def test_registrations_are_counted_per_address_even_for_taken_names(shared_cluster):
    # Register must say a name is taken (the user has to learn it), so how fast anyone can ask
    # is limited instead: taken names count like new ones.
    session = shared_cluster.session()
    answers = []
    for _ in range(REGISTRATIONS + 2):
        try:
            session.register("poor1", PASSWORD, "poor1-acct", 0, "BankA")
        except Exception as err:  # AlreadyExists, then RateLimited
            answers.append(type(err).__name__)
    assert answers[0] == "AlreadyExists" and answers[-1] == "RateLimited", answers
    session.close()
