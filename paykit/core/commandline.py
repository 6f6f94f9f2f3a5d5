"""What every paykit option parser gets (the `paykit` command's and each tool's): --version on
the parser and each subcommand, and placeholders a reader understands instead of argparse's
upper-cased dest (`--data-dir DIR`, not `--data-dir DATA_DIR`)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from paykit.core.version import version


def walk_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parser and every subcommand's parser under it, depth first."""
    yield parser
    for action in parser._actions:  # argparse keeps subcommands only here
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases map to one parser
                yield from walk_parsers(sub)


def placeholder(action: argparse.Action) -> str | None:
    """A placeholder for an option argparse would show as its dest (PREPARE_TIMEOUT_S): by what
    the value is. None keeps argparse's own (a one-word dest reads fine: --port PORT)."""
    if action.metavar or action.choices or action.nargs == 0 or "_" not in action.dest:
        return None
    if action.dest.endswith("_dir"):
        return "DIR"
    if action.dest.endswith("_s") and action.type is float:
        return "SECONDS"
    if action.type is int:
        return "N"
    return action.dest.split("_")[-1].upper()


def finish_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds --version to the parser and its subcommands and gives options readable
    placeholders; returns the parser."""
    for p in walk_parsers(parser):
        p.add_argument(
            "--version",
            action="version",
            version=f"%(prog)s {version()}",
            help="print the version and exit",
        )
        for action in p._actions:
            if action.option_strings:
                action.metavar = placeholder(action) or action.metavar
    return parser
