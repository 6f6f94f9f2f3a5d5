"""Every `--help` is complete: each subcommand and option says what it is for, no constant's name
or argparse's raw dest (RPCS_PER_PAYMENT, PREPARE_TIMEOUT_S) stands in for words, and every
command, tools included, has --version."""

from __future__ import annotations

import argparse
import importlib
import re
import subprocess
import sys

import pytest

from paykit import cli
from paykit.core.commandline import walk_parsers
from paykit.core.version import version

# An ALL_CAPS word with an underscore is a constant or a dest, not something written for a
# reader; environment variables (PAYKIT_HOME) are the one kind a reader types.
RAW_NAME = re.compile(r"\b(?!PAYKIT_)[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")


def tool_parser(name: str) -> argparse.ArgumentParser:
    module = importlib.import_module(f"paykit.lab.{cli.TOOL_MODULES.get(name, name)}")
    return module.build_parser()


def every_parser() -> list[tuple[str, argparse.ArgumentParser]]:
    roots = [("paykit", cli.build_parser())] + [(n, tool_parser(n)) for n in cli.TOOLS]
    return [(p.prog, p) for _, root in roots for p in walk_parsers(root)]


PARSERS = every_parser()


@pytest.mark.parametrize(("prog", "parser"), PARSERS, ids=[p for p, _ in PARSERS])
def test_every_option_and_subcommand_has_help(prog, parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            listed = {a.dest: a.help for a in action._choices_actions}
            for name in action.choices:
                assert listed.get(name), f"{prog} {name}: a subcommand without help"
        else:
            what = "/".join(action.option_strings) or action.dest
            assert action.help, f"{prog} {what}: no help text"


@pytest.mark.parametrize(("prog", "parser"), PARSERS, ids=[p for p, _ in PARSERS])
def test_no_raw_placeholder_leaks_into_help(prog, parser):
    text = parser.format_help()
    assert not RAW_NAME.findall(text), f"{prog} --help shows {RAW_NAME.findall(text)}"
    assert "%(" not in text


@pytest.mark.parametrize(("prog", "parser"), PARSERS, ids=[p for p, _ in PARSERS])
def test_every_command_has_version(prog, parser):
    assert "--version" in parser._option_string_actions, f"{prog} has no --version"


def test_bench_help_gives_the_number_of_rpcs_per_payment():
    from paykit.lab.load import RPCS_PER_PAYMENT

    text = tool_parser("bench").format_help()
    assert "RPCS_PER_PAYMENT" not in text
    assert f"costs {RPCS_PER_PAYMENT} RPCs" in " ".join(text.split())


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bank"],
        ["gateway"],
        ["client"],
        ["up"],
        ["demo"],
        ["pki"],
        ["pki", "export"],
        ["bench"],
        ["chaos"],
        ["lessons"],
        ["lessons", "student"],
        ["lab"],
        ["lab", "grade"],
    ],
    ids=" ".join,
)
def test_version_on_every_command_from_the_real_command(argv):
    result = subprocess.run(
        [sys.executable, "-m", "paykit", *argv, "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    prog = " ".join(["paykit", *argv])
    assert result.stdout.strip() == f"{prog} {version()}"
