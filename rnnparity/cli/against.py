"""``rnnparity verify MODEL --against PORT``: the options and the output of a port check.

The work is done by :mod:`rnnparity.files.ports`; this module adds the options to verify's
parser and prints the report.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from rnnparity.cli.common import EXIT_ERROR, EXIT_MISMATCH, EXIT_OK
from rnnparity.cli.table import render

PORT_ONLY = ("calls", "pad", "dtype")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The port options of ``rnnparity verify``."""
    parser.add_argument(
        "--against",
        metavar="PORT",
        default=None,
        help="check a port of MODEL instead of the twins: a .onnx file (onnxruntime), a .tflite file (LiteRT) or a "
        "Keras 3 backend (jax, torch, numpy, tensorflow: the same .keras file run in a subprocess); every model output "
        "is compared and the first diverging recurrent layer named",
    )
    parser.add_argument(
        "--calls",
        type=int,
        default=None,
        metavar="N",
        help="with --against: N consecutive calls with fresh inputs, state carried (default 1; 3 when the model has a "
        "stateful layer)",
    )
    parser.add_argument(
        "--pad",
        choices=["right", "left", "none"],
        default=None,
        help="with --against, for models with Masking or Embedding(mask_zero): where padded steps go (default right)",
    )
    parser.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default=None,
        help="with --against: the dtype of the float inputs and of the tolerance (default: the model's input dtype)",
    )


def misplaced_option(args: argparse.Namespace) -> str | None:
    """The error for a port option given without --against, or a twin option given with it."""
    if args.against is None:
        given = [name for name in PORT_ONLY if getattr(args, name, None) is not None]
        return f"--{given[0]} applies to port checks only (with --against PORT)" if given else None
    for name, flag in (("layers", "--layer"), ("overrides", "--set"), ("export", "--export")):
        if getattr(args, name, None):
            return f"{flag} does not apply with --against (it checks twins, not ports)"
    return None


def run_against(args: argparse.Namespace, out: TextIO, err: TextIO, version: str) -> int:
    """Check the port, print the report, write ``--json``; the exit code."""
    from rnnparity.files.ports import verify_against
    from rnnparity.files.verify import ModelFileError

    prog = "rnnparity verify"
    if args.calls is not None and args.calls < 1:
        err.write(f"{prog}: --calls must be a positive integer; got {args.calls}\n")
        return EXIT_ERROR
    try:
        report = verify_against(
            args.model,
            args.against,
            calls=args.calls,
            pad=args.pad,
            inputs_path=args.inputs,
            batch_size=args.batch_size,
            timesteps=args.timesteps,
            seed=args.seed,
            dtype=args.dtype,
        )
    except (ModelFileError, ValueError) as exc:  # PortError is a ModelFileError
        err.write(f"{prog}: {exc}\n")
        return EXIT_ERROR
    code = EXIT_OK if report.ok else EXIT_MISMATCH
    text = json.dumps(report.to_dict(), indent=2) + "\n"
    if args.json_path == "-":  # stdout carries the JSON only, for piping
        out.write(text)
        return code
    out.write(f"rnnparity {version} verify {report.model} --against {report.port}\n")
    out.write(format_report(report) + "\n")
    if args.json_path:
        try:
            with open(args.json_path, "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as exc:
            err.write(f"{prog}: cannot write --json {args.json_path}: {exc.strerror or exc}\n")
            return EXIT_ERROR
    if report.ok:
        out.write(f"PORT AGREES: {len(report.outputs)} output comparison(s) over {report.calls} call(s) within tolerance\n")
        return EXIT_OK
    failing = sorted({f"{row.output} (call {row.call})" for row in report.outputs if row.status != "ok"})
    out.write(f"PORT DIFFERS: {', '.join(failing)}\n")
    return EXIT_MISMATCH


def format_report(report: Any) -> str:
    """The text the CLI prints: per call and output, then per recurrent layer, then the verdict."""
    header = ("call", "output", "max abs err", "max rel err", "of tolerance", "status")
    rows = [
        (str(row.call), row.output, f"{row.max_abs:.3g}", f"{row.max_rel:.3g}", f"{row.tolerance_used:.3g}x", row.status)
        for row in report.outputs
    ]
    lines = [f"port: {report.port} ({report.runtime})", f"Keras: {report.keras}"]
    described = ", ".join(f"{i['name']} {tuple(i['shape'])} {i['dtype']}" for i in report.inputs)
    source = f"seed {report.seed}" if report.seed is not None else "from --inputs"
    lines.append(f"inputs ({source}, padding {report.pad}): {described}")
    lines.append(f"calls: {report.calls_note}")
    if report.kernels:
        lines.append(f"recurrent kernels in the port: {report.kernels}")
    lines.append("")
    lines.append(render(header, rows, right=(0, 2, 3, 4)))
    if report.layers:
        lines.append("")
        layer_rows = [(layer.name, layer.type, layer.status, layer.kernel or "-", layer.detail) for layer in report.layers]
        lines.append(render(("layer", "type", "in the port", "kernel", "detail"), layer_rows))
    for row in report.outputs:
        if row.status != "ok":
            lines.append(f"\n{row.detail}")
            break
    if report.localization:
        lines.append(report.localization)
    if report.state_note:
        lines.append(report.state_note)
    return "\n".join(lines)
