"""``rnnparity export MODEL DIR``: verify a model and write test vectors for other runtimes
(per recurrent-layer call an .npz, the model's inputs and outputs, and index.json)."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from rnnparity.cli import verify
from rnnparity.cli.common import CommandError


def add_parser(commands: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        "export",
        help="write test vectors (inputs, Keras-layout weights, Keras's outputs) for porting a model",
        description="Verify MODEL as `rnnparity verify` does, then write into DIR: per recurrent-layer call an "
        ".npz (input, mask, initial states, weights in Keras layout, every output and state Keras returned), "
        "model.npz (the model's inputs and outputs) and index.json (shapes, dtypes, gate order per weight, the "
        "Keras that produced the numbers, and the tolerance a port should meet). DIR must be new or empty; "
        "--force replaces an earlier export there.",
        epilog=verify.EXIT_CODES,
    )
    verify.add_model_options(parser)
    parser.add_argument("directory", metavar="DIR", help="where to write the vectors (created if absent)")
    parser.add_argument("--force", action="store_true", help="replace an earlier export in DIR (other files are never removed)")
    return parser


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    verify.check_model_options(args)
    verify.check_export_directory("DIR", args.directory, args.force)
    report = verify.run_verify(args, args.directory, args.force)
    verify.write_report(args, report, out)
    if not report.exports:
        raise CommandError(f"{args.model}: no recurrent layer call to export (nothing was written but index.json)")
    out.write(f"test vectors: {len(report.exports)} call(s) written to {args.directory} (index.json)\n")
    return verify.verdict(report, out)
