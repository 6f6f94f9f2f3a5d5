"""A student's class named on the gateway's command line: loaded when it is right, refused
clearly (before the gateway starts) when it is not."""

from __future__ import annotations

import subprocess
import sys

import pytest

from paykit.core import plugins
from paykit.core.errors import InvalidInput
from paykit.gateway.decisions import CoordinatorBase, TwoPhaseRules
from paykit.gateway.keystore import IdempotencyStoreBase, SqlKeys


def test_a_right_class_loads():
    assert plugins.load_class("paykit.gateway.keystore:SqlKeys", IdempotencyStoreBase) is SqlKeys
    assert plugins.load_class("paykit.gateway.decisions:TwoPhaseRules", CoordinatorBase) is (
        TwoPhaseRules
    )


@pytest.mark.parametrize(
    ("dotted", "message"),
    [
        ("x" * 300, "at most 200"),
        ("no_colon", "module:Class"),
        ("no_such_module_zz:X", "cannot import 'no_such_module_zz'"),
        ("paykit.gateway.keystore:Missing", "is not a subclass"),
        ("paykit.gateway.keystore:SqlKeys", "is not a subclass of paykit.gateway.decisions"),
    ],
)
def test_a_wrong_class_is_refused_saying_why(dotted, message):
    with pytest.raises(InvalidInput, match=message):
        plugins.load_class(dotted, CoordinatorBase)


def test_the_gateway_refuses_a_class_that_does_not_load_before_starting(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "paykit",
            "gateway",
            "--data-dir",
            str(tmp_path / "gw"),
            "--pki-dir",
            str(tmp_path / "pki"),
            "--bank",
            "BankA=127.0.0.1:1",
            "--coordinator-class",
            "no_such_module_zz:Mine",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "cannot import 'no_such_module_zz'" in done.stderr
    assert not (tmp_path / "gw").exists()  # refused before anything was made
