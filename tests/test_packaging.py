"""Packaging: environment.yml in step with pyproject.toml, and the public API pinned."""

import re
import tomllib
from pathlib import Path

import paykit

ROOT = Path(__file__).resolve().parent.parent


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = (ROOT / "environment.yml").read_text()
    python = re.search(r"^\s*-\s*python=(\S+)", env, re.M)
    assert python, "environment.yml must pin python"
    assert project["requires-python"] == f">={python.group(1)}", (
        "python version differs from requires-python"
    )
    assert re.search(r"^\s*-\s*pip\s*$", env, re.M), "environment.yml must install pip"
    extras = re.search(r"--editable \.\[([\w,]+)\]", env)
    assert extras, "the pip section must install paykit itself, with its extras"
    assert set(extras.group(1).split(",")) == set(project["optional-dependencies"]), "extras differ"


def test_public_api_is_pinned():
    # A rename of the public API is a decision: change this list on purpose.
    assert sorted(paykit.__all__) == [
        "Balance",
        "LocalCluster",
        "PaykitError",
        "Payment",
        "PaymentClient",
        "Registration",
        "SignIn",
        "format_minor",
        "parse_amount",
    ]
    for name in paykit.__all__:
        assert hasattr(paykit, name)


def test_python_dash_m_works_like_the_script():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "paykit", "--help"], capture_output=True, text=True, check=True
    )
    assert "usage: paykit" in out.stdout
