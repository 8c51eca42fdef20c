"""``rnnparity verify MODEL``: run a saved model and check every recurrent layer's twin
against what Keras computed (a weights-only file: layer by layer)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, TextIO

import rnnparity
from rnnparity.cli.common import (
    EXIT_MISMATCH,
    EXIT_OK,
    CommandError,
    check_output_file,
    exit_codes,
    import_tensorflow_quietly,
    text_stream,
    writable_directory_problem,
    write_json,
)
from rnnparity.cli.table import render

FLAVOR_MAJOR = {"keras3": 3, "tf-keras": 2}
EXIT_CODES = exit_codes(
    "parity holds for every recurrent layer", "a layer's twin mismatched", "bad options, or the file cannot be loaded or run"
)


def add_input_options(parser: argparse.ArgumentParser) -> None:
    """The model file and the inputs it is run on: shared by ``verify``, ``export`` and ``drift``."""
    parser.add_argument(
        "model",
        metavar="MODEL",
        help="a .keras archive, an .h5 model (routed by the Keras that wrote it), or a weights-only .h5 / .weights.h5",
    )
    parser.add_argument(
        "--timesteps", type=int, default=None, metavar="N", help="length of inputs whose time axis has no fixed size (default 8)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, metavar="N", help="batch size when the model does not fix one (default 2)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the random inputs (default 0)")
    parser.add_argument(
        "--inputs",
        metavar="FILE",
        default=None,
        help="use these inputs instead: .npy (one input) or .npz (by input name or in order)",
    )


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """The options ``verify`` and ``export`` share: which model, which inputs, which Keras."""
    add_input_options(parser)
    parser.add_argument(
        "--keras",
        choices=("auto", *FLAVOR_MAJOR),
        default="auto",
        help="which Keras runs it: auto (default: the Keras that wrote the file), keras3 or tf-keras; a whole model "
        "is always loaded by the Keras that wrote it, a weights-only file can be checked against either",
    )
    parser.add_argument(
        "--layer",
        dest="layers",
        action="append",
        metavar="NAME",
        default=None,
        help="weights-only files: check only this recurrent layer (repeatable; default: all)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        metavar="[LAYER:]KEY=VALUE",
        default=None,
        help="weights-only files: a twin setting the file does not store, for every layer or one, e.g. "
        "recurrent_activation=hard_sigmoid, encoder:go_backwards=true (VALUE is JSON, else a string)",
    )


def add_parser(commands: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        "verify",
        help="run a saved model and check every recurrent layer's twin against what Keras computed",
        description="Load a .keras or .h5 model (safely: Lambda layers and unknown classes are refused before "
        "loading), run it on a seeded random batch, and compare each recurrent layer's output and states with its "
        "NumPy twin. A weights-only .h5 / .weights.h5 file is checked layer by layer: each recurrent layer's twin, "
        "built from the file without Keras, against the Keras layer Keras loads the same weights into.",
        epilog=EXIT_CODES,
    )
    add_model_options(parser)
    parser.add_argument(
        "--json",
        dest="json_path",
        metavar="PATH",
        default=None,
        help="write the per-layer report as JSON; '-' writes it to stdout (the text then goes to stderr)",
    )
    parser.add_argument(
        "--export",
        metavar="DIR",
        default=None,
        help="also write test vectors into DIR (as `rnnparity export MODEL DIR` does; DIR must be empty or new)",
    )
    parser.add_argument("--force", action="store_true", help="with --export: replace an earlier export in DIR")
    from rnnparity.cli import against

    against.add_arguments(parser)
    return parser


def parse_overrides(items: Sequence[str] | None) -> dict[str | None, dict[str, object]]:
    """``--set [LAYER:]KEY=VALUE`` items as ``{layer or None: {key: value}}``; VALUE is read
    as JSON (``true``, ``3``, ``null``) and else kept as a string (``hard_sigmoid``)."""
    import json

    overrides: dict[str | None, dict[str, object]] = {}
    for item in items or []:
        target, separator, value = item.partition("=")
        if not separator or not target:
            raise CommandError(f"--set takes [LAYER:]KEY=VALUE; got {item!r}")
        layer, _, key = target.rpartition(":")
        try:
            parsed: object = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        overrides.setdefault(layer or None, {})[key] = parsed
    return overrides


def _overrides_with_keras(args: argparse.Namespace) -> dict[str | None, dict[str, object]]:
    """``--set`` plus ``--keras``. ``--set keras_version=2|3`` (a twin argument) still works,
    as it did before ``--keras`` existed; the two must agree."""
    from rnnparity.files import verify
    from rnnparity.suite.keras_adapter import flavor_for

    overrides = parse_overrides(args.overrides)
    if args.keras == "auto":
        return overrides
    major = FLAVOR_MAJOR[args.keras]
    if not verify.is_weights_only(args.model):
        try:
            written_by = flavor_for(verify.read_model_file(args.model).keras_version)
        except verify.ModelFileError as exc:
            raise CommandError(str(exc)) from None
        if written_by != args.keras:
            raise CommandError(
                f"{args.model} is a whole model written by {written_by}; a model is run by the Keras that wrote it "
                "(--keras chooses only for weights-only files)"
            )
        return overrides
    given = overrides.get(None, {}).get("keras_version")
    if given is not None and given != major:
        raise CommandError(f"--keras {args.keras} is Keras {major}, but --set keras_version={given}; give one of them")
    overrides.setdefault(None, {})["keras_version"] = major
    return overrides


def check_model_options(args: argparse.Namespace) -> None:
    for name in ("timesteps", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise CommandError(f"--{name.replace('_', '-')} must be a positive integer; got {value}")
    if args.seed is not None and args.seed < 0:
        raise CommandError(f"--seed must be a non-negative integer; got {args.seed}")
    if args.inputs and any(v is not None for v in (args.timesteps, args.batch_size, args.seed)):
        raise CommandError("--inputs gives the inputs; --timesteps, --batch-size and --seed shape random ones")


def check_export_directory(option: str, directory: str, force: bool) -> None:
    from rnnparity.files.export import directory_problem

    if problem := writable_directory_problem(directory):
        raise CommandError(f"cannot write {option} {directory}: {problem}")
    if problem := directory_problem(directory, force):
        raise CommandError(f"cannot write {option} {directory}: {problem}")


def run_verify(args: argparse.Namespace, export_dir: str | None, force: bool) -> Any:
    """The ``VerifyReport`` for ``args`` (``CommandError`` when the file cannot be verified)."""
    from rnnparity.files import verify
    from rnnparity.files.export import clear_previous_export

    overrides = _overrides_with_keras(args)
    import_tensorflow_quietly()
    if export_dir is not None and force:
        clear_previous_export(export_dir)
    try:
        report = verify.verify(
            args.model,
            inputs_path=args.inputs,
            batch_size=args.batch_size or verify.DEFAULT_BATCH_SIZE,
            timesteps=args.timesteps or verify.DEFAULT_TIMESTEPS,
            seed=verify.DEFAULT_SEED if args.seed is None else args.seed,
            export_dir=export_dir,
            layers=args.layers,
            overrides=overrides,
        )
    except verify.ModelFileError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:  # writing the export failed after all (disk full, a race)
        raise CommandError(f"cannot write test vectors into {export_dir}: {exc.strerror or exc}") from None
    return report


def layer_table(report: Any) -> str:
    """One row per recurrent layer: errors, the tolerance they are held to, the share of it used."""
    with_file = any(row.file_weights for row in report.layers)
    header = ["layer", "type", "config", "max abs err", "max rel err", "tolerance (rtol, atol)", "used"]
    header += ["file weights"] if with_file else []
    header.append("status")
    rows = []
    for row in report.layers:
        cells = [
            row.name,
            row.type,
            row.summary,
            "-" if row.max_abs is None else f"{row.max_abs:.3g}",
            "-" if row.max_rel is None else f"{row.max_rel:.3g}",
            "-" if row.rtol is None or row.atol is None else f"{row.rtol:.0e}, {row.atol:.0e}",
            "-" if row.tolerance_used is None or row.status != "ok" else f"{row.tolerance_used * 100:.2g}%",
        ]
        cells += [row.file_weights.split(" (")[0] or "-"] if with_file else []
        cells.append(row.status + (f" ({row.detail})" if row.status == "skipped" and row.detail else ""))
        rows.append(cells)
    return render(header, rows)


TOLERANCE_NOTE = (
    "a layer passes when every |twin - keras| <= atol + rtol * |keras|; 'used' is the largest share of that bound "
    "(a large relative error where |keras| is tiny is covered by atol)"
)


def write_report(args: argparse.Namespace, report: Any, text: TextIO) -> None:
    text.write(f"rnnparity {rnnparity.__version__} verify {report.model}\n")
    text.write(f"Keras: {report.keras}\n")
    if report.weights_only:
        text.write("weights only: each recurrent layer runs alone, twin against the Keras layer Keras loads the weights into\n")
    described = ", ".join(f"{i['name']} {tuple(i['shape'])} {i['dtype']}" for i in report.inputs)
    source = f"seed {report.seed}" if report.seed is not None else f"from {args.inputs}"
    if report.weights_only:
        source += "; per layer, called without and with a right-padded mask"
    text.write(f"inputs ({source}): {described}\n\n")
    if report.layers:
        text.write(layer_table(report) + "\n" + TOLERANCE_NOTE + "\n")
    else:
        text.write(f"the {'file' if report.weights_only else 'model'} has no recurrent layers: nothing to verify\n")
    for row in report.layers:
        if row.status == "MISMATCH":
            text.write(f"\n{row.name}: {row.detail}\n")
    if report.weights_only:
        for row in report.layers:
            if row.assumptions:
                twin, *notes = row.assumptions
                text.write(f"\n{row.name}: twin {twin}; it assumes (--set changes what the file does not fix):\n")
                text.write("".join(f"  - {note}\n" for note in notes))
        text.write(f"\n{report.other_layers} other layers with weights in the file (not run: a weights file has no model).\n")
    else:
        text.write(f"\n{report.other_layers} other layers run by Keras only (no twin needed).\n")


def verdict(report: Any, text: TextIO) -> int:
    if report.drift_hint:
        text.write(report.drift_hint + "\n")
    if report.ok:
        verified = [row for row in report.layers if row.status == "ok"]
        skipped = [row for row in report.layers if row.status != "ok"]
        text.write(f"PARITY HOLDS for {len(verified)} recurrent layer(s)")
        text.write(f"; {len(skipped)} not verified (listed above)\n" if skipped else "\n")
        return EXIT_OK
    mismatched = [row.name for row in report.layers if row.status == "MISMATCH"]
    text.write(f"PARITY FAILS for {len(mismatched)} layer(s): {', '.join(mismatched)}\n")
    return EXIT_MISMATCH


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import rnnparity
    from rnnparity.cli import against

    if problem := against.misplaced_option(args):
        raise CommandError(problem)
    check_model_options(args)
    if args.against:
        if args.json_path and args.json_path != "-":
            check_output_file("--json", args.json_path)
        return against.run_against(args, out, err, rnnparity.__version__)
    # Output paths are checked before the model is loaded and run, not after.
    check_output_file("--json", args.json_path)
    if args.export:
        check_export_directory("--export", args.export, args.force)
    elif args.force:
        raise CommandError("--force replaces an earlier --export; there is no --export")
    text = text_stream(args.json_path, out, err)
    report = run_verify(args, args.export, args.force)
    write_report(args, report, text)
    if args.export:
        text.write(f"test vectors: {len(report.exports)} call(s) written to {args.export} (index.json)\n")
    if args.json_path:
        write_json("--json", args.json_path, report.to_dict(), out)
    return verdict(report, text)
