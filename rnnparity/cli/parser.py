"""The ``rnnparity`` parser and ``main``: one module per subcommand registers its options
(``add_parser``) and does its work (``run``); refusals are one line and exit 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

import rnnparity
from rnnparity.cli import bench, check, diff, drift, explain, export, verify
from rnnparity.cli.common import EXIT_ERROR, CommandError, exit_codes

SUBCOMMANDS: dict[str, ModuleType] = {
    "check": check,
    "diff": diff,
    "verify": verify,
    "drift": drift,
    "explain": explain,
    "export": export,
    "bench": bench,
}


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block): ``rnnparity verify: error: ... (see
    rnnparity verify --help)`` and exit code 2. Subcommand parsers inherit it."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="rnnparity",
        description="Prove that the NumPy twins compute what the installed Keras computes, and that a saved "
        "or converted model computes what Keras computes. `rnnparity COMMAND --help` describes each command.",
        epilog=exit_codes("the check passed", "it found a difference (a mismatch, drift)"),
    )
    parser.add_argument("--version", action="version", version=f"rnnparity {rnnparity.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS.values():
        module.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The ``rnnparity`` command; returns the exit code."""
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    command = args.command
    if extras:
        # Name the command the stray arguments were given to, not just "rnnparity".
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        commands.choices[command].error(f"unrecognized arguments: {' '.join(extras)}")
    try:
        return int(SUBCOMMANDS[command].run(args, sys.stdout, sys.stderr))
    except CommandError as exc:
        sys.stdout.flush()
        sys.stderr.write(f"rnnparity {command}: {exc}\n")
        return EXIT_ERROR
