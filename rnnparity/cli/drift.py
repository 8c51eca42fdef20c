"""``rnnparity drift MODEL --to keras3|tf-keras``: the command-line face of :func:`rnnparity.files.drift.drift`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import rnnparity
from rnnparity.cli.common import EXIT_ERROR, exit_codes

PROG = "rnnparity drift"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``drift`` on the CLI's subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "drift",
        help="will a saved model's predictions change under the other Keras? (predicted by the twins, checked where possible)",
        description="Load a .keras or .h5 model as verify does (Lambda layers and unknown classes are refused before "
        "loading), run it in the Keras that wrote it, then again with every recurrent layer's result replaced by its "
        "twin under the target Keras's semantics (hard_sigmoid formula, stateful initial_state rule, ...), the rest of "
        "the model still run by Keras. Reports each recurrent layer's change with the known differences that cause "
        "it, and each model output's change (argmax flips, crossings of 0.5). Where the target Keras is installed and "
        "can load the file, it runs the same inputs and must agree with the prediction. A weights-only file gets the "
        "per-layer part only.",
        epilog=exit_codes(
            "nothing changes beyond the tolerance",
            "drift (or the target Keras disagrees with the prediction)",
            "the file cannot be loaded or run, or bad options",
        ),
    )
    from rnnparity.cli.verify import add_input_options

    add_input_options(parser)
    parser.add_argument(
        "--to", required=True, choices=["keras3", "tf-keras"], help="the Keras to predict for (Keras 3, or tf_keras = Keras 2)"
    )
    parser.add_argument("--json", dest="json_path", metavar="PATH", default=None, help="write the report as JSON ('-': stdout)")
    parser.add_argument(
        "--predictions",
        metavar="FILE.npz",
        default=None,
        help="write before/<output name> (the installed Keras) and after/<output name> (predicted for the target), "
        "and actual/<output name> when the target Keras ran",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        metavar="[LAYER:]KEY=VALUE",
        default=None,
        help="weights-only files: a setting the file does not store (as verify --set)",
    )
    parser.add_argument(
        "--no-actual",
        dest="actual",
        action="store_false",
        help="do not run the target Keras itself (a subprocess that imports it); give the prediction alone",
    )
    return parser


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run ``drift`` for parsed ``args``; returns the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    from rnnparity.files import drift, verify

    def fail(message: str) -> int:
        err.write(f"{PROG}: {message}\n")
        return EXIT_ERROR

    from rnnparity.cli.common import CommandError
    from rnnparity.cli.verify import check_model_options

    try:
        check_model_options(args)  # the same input options, refused the same way as verify's
    except CommandError as exc:
        return fail(str(exc))
    for option, path in (("--json", args.json_path), ("--predictions", args.predictions)):
        if path and path != "-" and (problem := _writable_file_problem(path)):
            return fail(f"cannot write {option} {path}: {problem}")
    if args.predictions == "-":
        return fail("--predictions needs a file name (.npz), not stdout")
    try:
        overrides = _parse_overrides(args.overrides)
        report = drift.drift(
            args.model,
            to=args.to,
            inputs=args.inputs,
            batch_size=args.batch_size or verify.DEFAULT_BATCH_SIZE,
            timesteps=args.timesteps or verify.DEFAULT_TIMESTEPS,
            seed=verify.DEFAULT_SEED if args.seed is None else args.seed,
            actual=args.actual,
            overrides=overrides,
        )
    except (verify.ModelFileError, ValueError, TypeError) as exc:
        return fail(str(exc))
    text = out if args.json_path != "-" else err
    text.write(format_report(report, args) + "\n")
    try:
        if args.predictions:
            report.save_predictions(args.predictions)
        if args.json_path == "-":
            out.write(json.dumps(report.to_dict(), indent=2) + "\n")
        elif args.json_path:
            with open(args.json_path, "w", encoding="utf-8") as handle:
                json.dump(report.to_dict(), handle, indent=2)
                handle.write("\n")
    except OSError as exc:
        return fail(f"cannot write the output: {exc.strerror or exc}")
    return report.exit_code


def _writable_file_problem(path: str) -> str | None:
    from rnnparity.cli.common import writable_file_problem

    return writable_file_problem(path)


def _parse_overrides(items: list[str] | None) -> dict[str | None, dict[str, object]]:
    from rnnparity.cli.verify import parse_overrides

    return parse_overrides(items)


def _table(rows: Sequence[Sequence[str]]) -> str:
    from rnnparity.cli.table import render

    return render(rows[0], rows[1:])


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def format_report(report: Any, args: argparse.Namespace | None = None) -> str:
    """The human-readable drift report: layers, outputs, the target Keras's own run, the verdict."""
    from rnnparity.suite.known_differences import KNOWN_DIFFERENCES

    lines = [f"rnnparity {rnnparity.__version__} drift {report.model} --to {report.to}", f"before: {report.keras}"]
    described = ", ".join(f"{i['name']} {tuple(i['shape'])} {i['dtype']}" for i in report.inputs)
    source = f"seed {report.seed}" if report.seed is not None else f"from {getattr(args, 'inputs', None) or 'the caller'}"
    if report.weights_only:
        lines.append("weights only: each recurrent layer alone, its twin as the writer's Keras computes it against the target's")
        source += "; per layer, called without and with a right-padded mask"
    elif report.calls > 1:
        source += f"; {report.calls} model calls in a row (stateful layers carry their states)"
    lines.append(f"inputs ({source}): {described}")
    lines.append("")
    if report.layers:
        rows: list[tuple[str, ...]] = [("layer", "type", "max abs change", "max rel change", "status", "caused by")]
        for layer in report.layers:
            status = {"drifts": "DRIFTS", "breaks": "BREAKS"}.get(layer.status, layer.status)
            rows.append(
                (layer.name, layer.type, _number(layer.max_abs), _number(layer.max_rel), status, ", ".join(layer.causes) or "-")
            )
        lines.append(_table(rows))
        for layer in report.layers:
            if layer.detail and layer.status != "same":
                lines.append(f"{layer.name}: {layer.detail}")
    else:
        lines.append("no recurrent layers: nothing can drift through them")
    causes = sorted({cause for layer in report.layers for cause in layer.causes})
    reasons = {d.id: d.reason for d in KNOWN_DIFFERENCES}
    for cause in causes:
        if cause in reasons:
            lines.append(f"  known difference {cause}: {reasons[cause]}")
        elif cause == "unexplained":
            lines.append("  unexplained: no known difference applies; the twins still predict the change (please report it)")
    if report.outputs:
        lines.append("")
        output_rows: list[tuple[str, ...]] = [
            ("output", "shape", "predicted change", "actual change", "argmax flips", "cross 0.5", "prediction vs actual")
        ]
        for output in report.outputs:
            flips = "-" if output.argmax_flips is None else f"{output.argmax_flips} of {output.rows}"
            crossings = "-" if output.crossings is None else f"{output.crossings} of {output.rows}"
            if output.agrees is None:
                agreement = "-"
            else:
                agreement = f"{'agrees' if output.agrees else 'DISAGREES'} (max abs {_number(output.agreement_max_abs)})"
            output_rows.append(
                (
                    output.name,
                    str(tuple(output.shape)),
                    _number(output.max_abs),
                    _number(output.actual_max_abs),
                    flips,
                    crossings,
                    agreement,
                )
            )
        lines.append(_table(output_rows))
        for output in report.outputs:
            if output.agrees is False:
                lines.append(f"{output.name}: {output.agreement}")
    lines.append("")
    lines.append(f"target Keras itself: {report.actual}")
    lines.append(report.verdict)
    return "\n".join(lines)
