"""paykit.lab.threats (lesson 13): a stolen token before and after logout, forged and tampered
tokens, a forged certificate and a genuine one in the wrong role, and a throttled guesser, all
against a real cluster."""

from __future__ import annotations

import uuid

import matplotlib
import pandas as pd
import pytest
from conftest import signed_in

from paykit.core.errors import InvalidInput
from paykit.lab.threats import (
    attempt,
    certificate_attempts,
    checked_guesses,
    forged_token,
    guess_passwords,
    plot_guesses,
    session_with_token,
)

matplotlib.use("Agg")


def test_a_stolen_token_works_until_its_owner_logs_out(shared_cluster):
    owner = signed_in(shared_cluster, "victim", "victim-acct")
    thief = session_with_token(shared_cluster, owner.token)
    try:
        assert attempt(thief.balance).startswith('accepted: bank: "BankA"')
        paid = attempt(thief.pay, "BankB", "recipient123", 100, str(uuid.uuid4()))
        assert paid.startswith("accepted: payment_id")
        owner.logout()
        assert "revoked by logout" in attempt(thief.balance)
        assert "not recognised" in attempt(
            session_with_token(shared_cluster, forged_token()).balance
        )
    finally:
        thief.close()
        owner.close()


def test_attempt_never_shows_a_token(shared_cluster):
    client = shared_cluster.client()
    client.register("shown", "password123", "shown-acct", "10", "BankA")
    client.authenticate("shown", "password123")
    said = attempt(lambda: f"signed in with {client.token}")
    client.close()
    assert said == "accepted: signed in with pk_(hidden)"
    assert client.token not in said


def test_a_forged_certificate_fails_the_handshake_and_a_wrong_role_the_access_table(
    shared_cluster,
):
    tried = certificate_attempts(shared_cluster)
    assert list(tried.code) == ["UNAVAILABLE", "PERMISSION_DENIED", "PERMISSION_DENIED"]
    assert "may not call /paykit.v1.Bank/Prepare" in tried.message[1]


def test_a_guesser_elsewhere_is_throttled_and_the_owner_signs_in(shared_cluster):
    owner = signed_in(shared_cluster, "guessed", "guessed-acct")
    guesses = guess_passwords(shared_cluster, "guessed", duration_s=2.0)
    assert len(guesses) >= 10
    assert 3 <= checked_guesses(guesses) <= 5  # 3 free, then waits of 1 s, 2 s, ...
    refused = guesses[~guesses.checked]
    assert (refused.code == "RESOURCE_EXHAUSTED").all()
    assert refused.message.str.contains("try again in").all()
    assert owner.authenticate("guessed", "password123").username == "guessed"
    owner.close()


def test_a_guess_run_is_bounded():
    with pytest.raises(InvalidInput, match="duration_s"):
        guess_passwords(None, "x", duration_s=3600)


def test_the_guesses_chart_has_three_lines():
    guesses = pd.DataFrame({"t_s": [0.0, 0.1, 0.2], "checked": [True, True, False]})
    ax = plot_guesses(guesses)
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    assert [line.get_label() for line in ax.get_lines()] == [
        "checked",
        "sent",
        "checked with no throttle",
    ]
    assert list(ax.get_lines()[0].get_ydata()) == [1, 2, 2]


def test_lesson_2s_stranger_certificate_leaves_no_folder_behind(
    shared_cluster, tmp_path, monkeypatch
):
    import tempfile

    from paykit.lab.lessons import refused_with_stranger_certificate

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where mkdtemp and friends write
    assert refused_with_stranger_certificate(shared_cluster).startswith("refused")
    assert list(tmp_path.iterdir()) == []
