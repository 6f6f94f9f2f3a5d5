"""Lab C's model check: a hypothesis state machine drives the student's store and a dict model
side by side, through random claims, finishes, hours passing and prunes, and every answer must
be the model's (new, replay of the same bytes, KEY_REUSED, IN_PROGRESS, KEY_EXPIRED)."""

from __future__ import annotations

import uuid

from paykit.core.errors import IdempotencyKeyExpired, IdempotencyKeyReused, InProgress
from paykit.core.twopc import Decision
from paykit.gateway.idempotency import Claim, fingerprint
from paykit.lab.grading import Broken, Run, model_settings

USERS = ("ada", "bob")
PARAMS = (("BankA", "a-acct", "BankB", "b-acct", 500), ("BankA", "a-acct", "BankB", "b-acct", 900))
RETENTION_H = 24
EXAMPLES = 40
STEPS = 12


def _kind(answer) -> tuple:
    if isinstance(answer, Claim):
        return ("new",) if answer.response is None else ("replay", answer.payment_id)
    if isinstance(answer, IdempotencyKeyExpired):
        return ("expired", answer.metadata.get("payment_id"))
    for kind, error in (("reused", IdempotencyKeyReused), ("in progress", InProgress)):
        if isinstance(answer, error):
            return (kind,)
    return ("error", type(answer).__name__)


class Model:
    """The rules as a dict, next to the student's store (a Keys), one sequence of steps."""

    def __init__(self, keys) -> None:
        self.keys = keys
        self.names = [str(uuid.UUID(int=i + 1)) for i in range(2)]
        self.rows: dict[tuple[str, str], list] = {}  # -> [fp, payment id, response, created]
        self.paid: dict[tuple[str, str], tuple[str, str]] = {}  # -> (payment id, fp)
        self.steps: list[str] = []

    def broken(self, what: str) -> Broken:
        return Broken(f"the model check found a sequence where {what}: {'; '.join(self.steps)}")

    def expect(self, user: str, key: str, fp: str) -> tuple:
        row = self.rows.get((user, key))
        if row is None:
            earlier = self.paid.get((user, key))
            if earlier is None:
                return ("new",)
            return ("reused",) if earlier[1] != fp else ("expired", earlier[0])
        if row[0] != fp:
            return ("reused",)
        return ("in progress",) if row[2] is None else ("replay", row[1])

    def claim(self, user: str, k: int, p: int, then: str | None) -> None:
        key, params = self.names[k], PARAMS[p]
        fp = fingerprint(*params)
        want = self.expect(user, key, fp)
        self.steps.append(f"claim({user}, key{k}, amount {params[-1]})")
        got = self.keys.attempt(user, key, params)
        if _kind(got) != want:
            raise self.broken(f"the store answers {_kind(got)[0]} and the rules say {want[0]}")
        if want[0] == "replay" and got.response != self.rows[(user, key)][2]:
            raise self.broken("a replay is not the stored bytes")
        if want[0] == "new":
            self.rows[(user, key)] = [fp, got.payment_id, None, self.keys.now]
            self.paid[(user, key)] = (got.payment_id, fp)
            if then is not None:
                self.finish((user, key), then == "abort")

    def finish(self, user_key: tuple[str, str], failed: bool) -> None:
        row = self.rows[user_key]
        decision = Decision.ABORT if failed else Decision.COMMIT
        self.steps.append(f"finish({user_key[0]}, key{self.names.index(user_key[1])}, {decision})")
        reason = "INSUFFICIENT_FUNDS" if failed else ""
        row[2] = self.keys.finish(*user_key, row[1], decision, reason)

    def finish_one(self, i: int, failed: bool) -> None:
        running = sorted(
            (k for k, row in self.rows.items() if row[2] is None),
            key=lambda k: (k[0], self.names.index(k[1])),
        )
        if running:
            self.finish(running[i % len(running)], failed)

    def later(self, hours: int, prune: bool) -> None:
        self.steps.append(f"{hours} h pass" + (", prune" if prune else ""))
        self.keys.now += hours * 3_600_000
        if prune:
            cutoff = self.keys.now - RETENTION_H * 3_600_000
            for k in [k for k, row in self.rows.items() if row[2] is not None and row[3] < cutoff]:
                del self.rows[k]
            self.keys.prune(RETENTION_H * 3600.0)


def _steps():
    from hypothesis import strategies as st

    # Weighted towards one user, one key and the same parameters, so sequences revisit a key.
    claim = st.tuples(
        st.just("claim"),
        st.sampled_from((*USERS[:1] * 3, *USERS[1:])),
        st.sampled_from((0, 0, 1)),
        st.sampled_from((0, 0, 0, 1)),
        st.sampled_from((None, "commit", "abort")),
    )
    finish = st.tuples(st.just("finish_one"), st.integers(0, 3), st.booleans())
    later = st.tuples(st.just("later"), st.sampled_from((1, 30)), st.booleans())
    return st.lists(st.one_of(claim, finish, later), min_size=3, max_size=STEPS)


# Sequences every store is tried on first: a key finished, a day and more, a prune, a resend; a
# key in progress over the same; a failed payment's resend.
EXPLICIT = [
    [("claim", "ada", 0, 0, "commit"), ("later", 30, True), ("claim", "ada", 0, 0, None)],
    [("claim", "ada", 0, 0, None), ("later", 30, True), ("claim", "ada", 0, 0, None)],
    [("claim", "ada", 0, 0, "abort"), ("claim", "ada", 0, 0, None)],
    [
        ("claim", "ada", 0, 0, "commit"),
        ("claim", "ada", 1, 0, "commit"),
        ("later", 1, True),
        ("claim", "ada", 0, 0, None),
    ],
]


def model_check(run: Run, keys_factory) -> None:
    """Random sequences of steps, each on a fresh database: the store must answer as the model."""
    from hypothesis import example, given
    from hypothesis.configuration import set_hypothesis_home_dir

    examples = iter(range(10**6))

    def explicit(test):
        for steps in EXPLICIT:
            test = example(steps=steps)(test)
        return test

    @model_settings(EXAMPLES)
    @explicit
    @given(steps=_steps())
    def sequences(steps) -> None:
        keys = keys_factory(run, f"model-{next(examples)}.db")
        model = Model(keys)
        try:
            for name, *args in steps:
                getattr(model, name)(*args)
        finally:
            keys.close()

    # Hypothesis caches what it learns in a folder; the run's own, so a grade leaves nothing.
    set_hypothesis_home_dir(run.workdir / "hypothesis")
    try:
        sequences()
    finally:
        set_hypothesis_home_dir(None)
