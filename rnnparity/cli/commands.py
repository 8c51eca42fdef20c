"""Command line: ``check`` (the parity matrix against the installed Keras), ``diff`` (two
reports), ``explain`` (the weight layout) and ``verify`` (a saved model, layer by layer)."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

import numpy as np

import rnnparity

if TYPE_CHECKING:
    from rnnparity.suite.keras_adapter import KerasHandle
    from rnnparity.suite.parity import CaseResult

EXIT_OK, EXIT_MISMATCH, EXIT_ERROR = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block): ``rnnparity verify: error: ... (see
    rnnparity verify --help)`` and exit code 2. Subcommand parsers inherit it."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def writable_file_problem(path: str) -> str | None:
    """Why ``path`` cannot be written as a file (None if it can). Creates it empty if absent,
    as the command will write it anyway; never truncates an existing file."""
    if os.path.isdir(path):
        return "it is a directory"
    try:
        open(path, "a", encoding="utf-8").close()
    except OSError as exc:
        return str(exc.strerror or exc)
    return None


def writable_directory_problem(path: str) -> str | None:
    """Why ``path`` cannot be used (or created) as an output directory (None if it can)."""
    if os.path.exists(path):
        if not os.path.isdir(path):
            return "it exists and is not a directory"
        return None if os.access(path, os.W_OK) else "the directory is not writable"
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"{parent} is not a directory"
    return None if os.access(parent, os.W_OK) else f"{parent} is not writable"


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rnnparity",
        description="Prove that the NumPy twins compute what the installed Keras computes.",
    )
    parser.add_argument("--version", action="version", version=f"rnnparity {rnnparity.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="run the parity matrix against the installed Keras")
    check.add_argument(
        "--keras",
        choices=["auto", "keras3", "tf-keras"],
        default="auto",
        help="which Keras to check: keras3 (the keras package), tf-keras (Keras 2), or auto (what tf.keras resolves to; default)",
    )
    check.add_argument("--quick", action="store_true", help="a smaller matrix (about 1 case in 8)")
    check.add_argument(
        "-k", dest="select", metavar="TEXT", default=None, help="only cases whose id contains TEXT (e.g. lstm, hard_sigmoid, f64)"
    )
    check.add_argument(
        "--show-failures", type=int, default=10, metavar="N", help="print the first N mismatches in full (default 10)"
    )
    check.add_argument(
        "--json",
        dest="json_path",
        metavar="PATH",
        default=None,
        help="write a versioned report (environment, checksums, Keras output samples, parity) for `rnnparity diff`",
    )

    diff = commands.add_parser("diff", help="compare the Keras numbers of two `check --json` reports")
    diff.add_argument("old", metavar="OLD.json")
    diff.add_argument("new", metavar="NEW.json")
    diff.add_argument("--rtol", type=float, default=None, help="relative tolerance (default per dtype: f32 1e-5, f64 1e-10)")
    diff.add_argument("--atol", type=float, default=None, help="absolute tolerance (default per dtype: f32 1e-6, f64 1e-12)")
    diff.add_argument("--show", type=int, default=5, metavar="N", help="configurations listed per group (default 5)")
    diff.add_argument(
        "--fail-on",
        choices=["any", "unexplained"],
        default="any",
        help="exit 1 on any drift (default), or only on drift no known difference explains",
    )
    explain = commands.add_parser("explain", help="where each gate lives in kernel, recurrent_kernel and bias")
    explain.add_argument(
        "kind",
        metavar="KIND|MODEL",
        help="lstm, gru or simple_rnn; or a saved .keras/.h5 model, to explain each of its recurrent layers",
    )
    explain.add_argument("--units", type=int, default=4, help="units (default 4)")
    explain.add_argument("--input-dim", type=int, default=3, help="input dim (default 3)")
    explain.add_argument("--reset-after", choices=["true", "false"], default="true", help="GRU only (default true)")
    explain.add_argument("--no-bias", action="store_true", help="use_bias=False")
    explain.add_argument("--format", choices=["text", "markdown", "json"], default="text")
    explain.add_argument(
        "--plot",
        metavar="PATH",
        default=None,
        help="also draw kernel, recurrent_kernel and bias as coloured gate blocks (PNG/SVG/PDF by suffix; needs "
        "matplotlib, the [plot] extra); for a model, one file per cell: PATH's name plus -NN-<layer>",
    )

    verify = commands.add_parser(
        "verify",
        help="run a saved model and check every recurrent layer's twin against what Keras computed",
        description="Load a .keras or .h5 model (safely: Lambda layers and unknown classes are refused before "
        "loading), run it on a seeded random batch, and compare each recurrent layer's output and states with its "
        "NumPy twin. A weights-only .h5 / .weights.h5 file is checked layer by layer: each recurrent layer's twin, "
        "built from the file without Keras, against the Keras layer Keras loads the same weights into. "
        "Exit 0: parity holds; 1: a mismatch; 2: the file cannot be loaded or run.",
    )
    verify.add_argument(
        "model",
        metavar="MODEL",
        help="a .keras archive, an .h5 model (routed by the Keras that wrote it), or a weights-only .h5 / .weights.h5",
    )
    verify.add_argument(
        "--timesteps",
        type=int,
        default=None,
        metavar="N",
        help="length of inputs whose time axis has no fixed size (default 8)",
    )
    verify.add_argument(
        "--batch-size", type=int, default=None, metavar="N", help="batch size when the model does not fix one (default 2)"
    )
    verify.add_argument("--seed", type=int, default=None, help="seed of the random inputs (default 0)")
    verify.add_argument(
        "--inputs",
        metavar="FILE",
        default=None,
        help="use these inputs instead: .npy (one input) or .npz (by input name or in order)",
    )
    verify.add_argument(
        "--layer",
        dest="layers",
        action="append",
        metavar="NAME",
        default=None,
        help="weights-only files: check only this recurrent layer (repeatable; default: all)",
    )
    verify.add_argument(
        "--set",
        dest="overrides",
        action="append",
        metavar="[LAYER:]KEY=VALUE",
        default=None,
        help="weights-only files: a setting the file does not store, for every layer or one, e.g. "
        "recurrent_activation=hard_sigmoid, encoder:go_backwards=true, keras_version=3 (VALUE is JSON, else a string)",
    )
    verify.add_argument("--json", dest="json_path", metavar="PATH", default=None, help="write the per-layer report as JSON")
    verify.add_argument(
        "--export",
        metavar="DIR",
        default=None,
        help="write test vectors: per recurrent-layer call an .npz (input, mask, initial states, Keras-layout weights, "
        "every output and state) and an index.json",
    )
    bench = commands.add_parser(
        "bench",
        help="time the twins against the same Keras layer (eager, predict, tf.function, XLA) and the GEMM floor",
        description="Forward time of each twin against the same Keras layer with the same weights, interleaved, "
        "median of --repeats calls; prints a table, the performance targets met or missed, and optionally JSON.",
    )
    from rnnparity.suite import bench as bench_module

    bench_module.add_arguments(bench)
    return parser


def parse_overrides(items: Sequence[str] | None) -> dict[str | None, dict[str, object]]:
    """``--set [LAYER:]KEY=VALUE`` items as ``{layer or None: {key: value}}``; VALUE is read
    as JSON (``true``, ``3``, ``null``) and else kept as a string (``hard_sigmoid``)."""
    import json

    overrides: dict[str | None, dict[str, object]] = {}
    for item in items or []:
        target, separator, value = item.partition("=")
        if not separator or not target:
            raise ValueError(f"--set takes [LAYER:]KEY=VALUE; got {item!r}")
        layer, _, key = target.rpartition(":")
        try:
            parsed: object = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        overrides.setdefault(layer or None, {})[key] = parsed
    return overrides


def run_verify(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import json

    from rnnparity.files import verify

    for name in ("timesteps", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            err.write(f"rnnparity verify: --{name.replace('_', '-')} must be a positive integer; got {value}\n")
            return EXIT_ERROR
    if args.seed is not None and args.seed < 0:
        err.write(f"rnnparity verify: --seed must be a non-negative integer; got {args.seed}\n")
        return EXIT_ERROR
    if args.inputs and any(v is not None for v in (args.timesteps, args.batch_size, args.seed)):
        err.write("rnnparity verify: --inputs gives the inputs; --timesteps, --batch-size and --seed shape random ones\n")
        return EXIT_ERROR
    # Output paths are checked before the model is loaded and run, not after.
    if args.json_path and (problem := writable_file_problem(args.json_path)):
        err.write(f"rnnparity verify: cannot write --json {args.json_path}: {problem}\n")
        return EXIT_ERROR
    if args.export and (problem := writable_directory_problem(args.export)):
        err.write(f"rnnparity verify: cannot write --export {args.export}: {problem}\n")
        return EXIT_ERROR
    try:
        overrides = parse_overrides(args.overrides)
    except ValueError as exc:
        err.write(f"rnnparity verify: {exc}\n")
        return EXIT_ERROR
    try:
        report = verify.verify(
            args.model,
            inputs_path=args.inputs,
            batch_size=args.batch_size or verify.DEFAULT_BATCH_SIZE,
            timesteps=args.timesteps or verify.DEFAULT_TIMESTEPS,
            seed=verify.DEFAULT_SEED if args.seed is None else args.seed,
            export_dir=args.export,
            layers=args.layers,
            overrides=overrides,
        )
    except verify.ModelFileError as exc:
        err.write(f"rnnparity verify: {exc}\n")
        return EXIT_ERROR
    except OSError as exc:  # writing --export failed after all (disk full, a race)
        err.write(f"rnnparity verify: cannot write --export {args.export}: {exc.strerror or exc}\n")
        return EXIT_ERROR
    out.write(f"rnnparity {rnnparity.__version__} verify {report.model}\n")
    out.write(f"Keras: {report.keras}\n")
    if report.weights_only:
        out.write("weights only: each recurrent layer runs alone, twin against the Keras layer Keras loads the weights into\n")
    described = ", ".join(f"{i['name']} {tuple(i['shape'])} {i['dtype']}" for i in report.inputs)
    source = f"seed {report.seed}" if report.seed is not None else f"from {args.inputs}"
    if report.weights_only:
        source += "; per layer, called without and with a right-padded mask"
    out.write(f"inputs ({source}): {described}\n\n")
    if report.layers:
        out.write(verify.format_table(report) + "\n")
    else:
        out.write(f"the {'file' if report.weights_only else 'model'} has no recurrent layers: nothing to verify\n")
    for row in report.layers:
        if row.status == "MISMATCH":
            out.write(f"\n{row.name}: {row.detail}\n")
    if report.weights_only:
        for row in report.layers:
            if row.assumptions:
                twin, *notes = row.assumptions
                out.write(f"\n{row.name}: twin {twin}; it assumes (--set changes what the file does not fix):\n")
                out.write("".join(f"  - {note}\n" for note in notes))
        out.write(f"\n{report.other_layers} other layers with weights in the file (not run: a weights file has no model).\n")
    else:
        out.write(f"\n{report.other_layers} other layers run by Keras only (no twin needed).\n")
    if args.export:
        out.write(f"test vectors: {len(report.exports)} call(s) written to {args.export} (index.json)\n")
    if args.json_path:
        try:
            with open(args.json_path, "w", encoding="utf-8") as handle:
                json.dump(report.to_dict(), handle, indent=2)
                handle.write("\n")
        except OSError as exc:
            err.write(f"rnnparity verify: cannot write --json {args.json_path}: {exc.strerror or exc}\n")
            return EXIT_ERROR
    verified = [row for row in report.layers if row.status == "ok"]
    if report.ok:
        out.write(f"PARITY HOLDS for {len(verified)} recurrent layer(s)")
        skipped = [row for row in report.layers if row.status != "ok"]
        out.write(f"; {len(skipped)} not verified (listed above)\n" if skipped else "\n")
        return EXIT_OK
    mismatched = [row.name for row in report.layers if row.status == "MISMATCH"]
    out.write(f"PARITY FAILS for {len(mismatched)} layer(s): {', '.join(mismatched)}\n")
    return EXIT_MISMATCH


def render_explain(data: dict[str, object], fmt: str) -> str:
    """The explain table in ``fmt`` (text, markdown or json), from layout.explain_layout data."""
    import json

    if fmt == "json":
        return json.dumps(data, indent=2)
    gates = data["gates"]
    assert isinstance(gates, list)
    shapes = data["shapes"]
    assert isinstance(shapes, dict)
    title = f"{data['kind']} units={data['units']} input_dim={data['input_dim']}"
    if data["kind"] == "gru":
        title += f" reset_after={data['reset_after']}"
    header = ("gate", "kernel", "recurrent_kernel", "bias", "role")
    rows = [(g["gate"], g["kernel"], g["recurrent_kernel"], g["bias"], g["role"]) for g in gates]
    shape_line = ", ".join(f"{name} {tuple(shape)}" for name, shape in shapes.items())
    equations = data["equations"]
    assert isinstance(equations, list)
    if fmt == "markdown":
        lines = [f"### {title}", "", f"Shapes: {shape_line}. Gate order: {', '.join(data['gate_order'])}.", ""]  # type: ignore[arg-type]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        lines += ["| " + " | ".join(f"`{c}`" if i < 4 else c for i, c in enumerate(row)) + " |" for row in rows]
        lines += ["", "Equations, in order:", ""] + [f"    {e}" for e in equations]
        return "\n".join(lines)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [title, shape_line, ""]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    lines += ["", "equations, in order:"] + [f"  {e}" for e in equations]
    return "\n".join(lines)


EXPLAIN_KINDS = ("lstm", "gru", "simple_rnn")


def run_explain(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from rnnparity.layout import explain_layout

    if args.kind not in EXPLAIN_KINDS:
        if not args.kind.endswith((".keras", ".h5", ".hdf5")) and not os.path.exists(args.kind):
            err.write(f"rnnparity explain: expected one of {EXPLAIN_KINDS} or a saved model file; got {args.kind!r}\n")
            return EXIT_ERROR
        return _explain_model(args, out, err)
    try:
        data = explain_layout(args.kind, args.units, args.input_dim, args.reset_after == "true", not args.no_bias)
    except ValueError as exc:
        err.write(f"rnnparity explain: {exc}\n")
        return EXIT_ERROR
    out.write(render_explain(data, args.format) + "\n")
    return _plot(args, [(args.plot, data)], err)


def _plot(args: argparse.Namespace, pictures: list[tuple[str, dict[str, object]]], err: TextIO) -> int:
    if not args.plot:
        return EXIT_OK
    from rnnparity.cli.plot import draw_layout

    for path, data in pictures:
        try:
            draw_layout(data, path)
        except ImportError as exc:
            err.write(f"rnnparity explain: {exc}\n")
            return EXIT_ERROR
        except (OSError, ValueError) as exc:
            err.write(f"rnnparity explain: cannot write --plot {path}: {exc}\n")
            return EXIT_ERROR
        err.write(f"picture written to {path}\n")
    return EXIT_OK


def _explain_model(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Explain every recurrent layer of a saved model (loaded as safely as ``verify`` does).
    An HDF5 file is read without Keras (:mod:`rnnparity.files.legacy`)."""
    import json

    from rnnparity.files import legacy, verify
    from rnnparity.layout import explain_layout

    if os.path.isfile(args.kind) and legacy.is_hdf5(args.kind):
        return _explain_hdf5(args, out, err)
    try:
        _, model = verify.load_model(verify.read_model_file(args.kind))
    except verify.ModelFileError as exc:
        err.write(f"rnnparity explain: {exc}\n")
        return EXIT_ERROR
    parts = verify.explained_cells(model)
    pictures = []
    if args.plot:
        base, suffix = os.path.splitext(args.plot)
        from rnnparity.files.export import safe_filename

        for number, (layer, _, settings) in enumerate(parts):
            pictures.append((f"{base}-{number:02d}-{safe_filename(layer)}{suffix or '.png'}", explain_layout(*settings)))
    if args.format == "json":
        listing = [
            {"layer": layer, "part": part, "explain": explain_layout(kind, units, input_dim, reset_after, use_bias)}
            for layer, part, (kind, units, input_dim, reset_after, use_bias) in parts
        ]
        out.write(json.dumps({"model": args.kind, "layers": listing}, indent=2) + "\n")
        return _plot(args, pictures, err)
    if not parts:
        out.write(f"{args.kind}: no recurrent layers with a twin\n")
    heading = "## " if args.format == "markdown" else ""
    for layer, part, (kind, units, input_dim, reset_after, use_bias) in parts:
        out.write(f"{heading}{layer}: {part}\n\n")
        out.write(render_explain(explain_layout(kind, units, input_dim, reset_after, use_bias), args.format) + "\n\n")
    return _plot(args, pictures, err)


def _explain_hdf5(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``rnnparity explain FILE.h5``: every recurrent layer of a Keras HDF5 file (a model or
    weights only, any Keras from 2.0), read with h5py: name, class as saved, units and input
    dim from the shapes, who wrote the file, what the twin assumes, and its gate layout."""
    import json

    from rnnparity.files import legacy
    from rnnparity.files.export import safe_filename
    from rnnparity.layout import explain_layout

    try:
        file = legacy.read_weights_file(args.kind)
        plans = [legacy.plan_twin(file, layer) for layer in file.layers]
    except (ValueError, TypeError) as exc:
        err.write(f"rnnparity explain: {exc}\n")
        return EXIT_ERROR
    entries: list[dict[str, Any]] = []
    for plan in plans:
        layer = plan.layer
        if layer.class_name == "Bidirectional":
            parts = [("forward", layer.cells[0], plan.cell_settings[0]), ("backward", layer.cells[1], plan.cell_settings[1])]
        elif layer.class_name == "RNN":
            parts = [(f"cell {i}", cell, s) for i, (cell, s) in enumerate(zip(layer.cells, plan.cell_settings))]
        else:
            parts = [("", layer.cells[0], plan.settings)]
        described: list[dict[str, Any]] = []
        for part, cell, settings in parts:
            reset_after = bool(settings.get("reset_after", True))
            described.append(
                {
                    "part": part,
                    "stored": {"path": "/".join(cell.paths[0].split("/")[:-1]), "shapes": [list(s) for s in cell.shapes]},
                    "explain": explain_layout(cell.kind, cell.units, cell.input_dim, reset_after, cell.use_bias),
                }
            )
        entries.append(
            {
                "name": layer.name,
                "saved_class": layer.saved_class,
                "class": layer.class_name,
                "class_source": layer.class_source,
                "units": layer.units,
                "input_dim": layer.input_dim,
                "twin": plan.description,
                "assumptions": plan.assumptions,
                "parts": described,
            }
        )
    header = {
        "file": args.kind,
        "layout": file.layout,
        "keras_version": file.keras_version,
        "backend": file.backend,
        "written_by": file.writer.source,
    }
    pictures: list[tuple[str, dict[str, object]]] = []
    if args.plot:
        base, suffix = os.path.splitext(args.plot)
        for entry in entries:
            for part in entry["parts"]:
                label = f"{entry['name']}-{part['part']}" if part["part"] else str(entry["name"])
                pictures.append((f"{base}-{len(pictures):02d}-{safe_filename(label)}{suffix or '.png'}", part["explain"]))
    if args.format == "json":
        listing = {**header, "layers": entries, "no_twin": file.no_twin, "other_layers": sorted(file.others)}
        out.write(json.dumps(listing, indent=2) + "\n")
        return _plot(args, pictures, err)
    heading = "## " if args.format == "markdown" else ""
    out.write(f"{args.kind}: {file.describe()}; read with h5py, no Keras\n")
    out.write(
        f"{len(entries)} recurrent layer(s) with a twin; {len(file.others)} other layer(s) with weights"
        + (f"; {len(file.no_twin)} recurrent layer(s) without a twin" if file.no_twin else "")
        + "\n\n"
    )
    for entry, plan in zip(entries, plans):
        if entry["saved_class"]:
            saved = f"{entry['saved_class']} (the class saved in the model config)"
        else:
            saved = f"{entry['class']} (not saved in a weights-only file; {entry['class_source']})"
        out.write(f"{heading}{entry['name']}: {saved}; units {entry['units']}, input_dim {entry['input_dim']}\n")
        out.write(f"twin: {entry['twin']}\n")
        out.write("the twin assumes:\n" + "".join(f"  - {note}\n" for note in entry["assumptions"]))
        for part in entry["parts"]:
            stored = part["stored"]
            shapes = ", ".join(str(tuple(s)) for s in stored["shapes"])
            label = f"{part['part']}: " if part["part"] else ""
            converted = (
                " (the gate table shows the twin's layout, after the cuDNN conversion)" if plan.layer.has_cudnn_weights else ""
            )
            out.write(f"\n{label}stored in {stored['path']}: {shapes}{converted}\n")
            out.write(render_explain(part["explain"], args.format) + "\n")
        out.write("\n")
    for name, reason in file.no_twin.items():
        out.write(f"{heading}{name}: no twin: {reason}\n")
    return _plot(args, pictures, err)


def environment_lines(handle: KerasHandle) -> list[str]:
    lines = [f"python {platform.python_version()}, numpy {np.__version__}, rnnparity {rnnparity.__version__}"]
    from rnnparity.suite.report import tensorflow_version

    tensorflow = tensorflow_version()
    lines.append(f"tensorflow {tensorflow}" if tensorflow else "tensorflow not installed")
    lines.append(f"checking against {handle.describe()}")
    return lines


class _Progress:
    def __init__(self, total: int, stream: TextIO) -> None:
        self.total, self.stream = total, stream
        self.interactive = stream.isatty()
        self.last_report = -1

    def update(self, done: int, failed: int) -> None:
        if self.interactive:
            width = 30
            filled = int(width * done / max(self.total, 1))
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} failed {failed}")
            if done == self.total:
                self.stream.write("\n")
            self.stream.flush()
            return
        decile = 10 * done // max(self.total, 1)
        if decile != self.last_report:
            self.last_report = decile
            self.stream.write(f"{done}/{self.total} cases, {failed} failed\n")
            self.stream.flush()


def run_check(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from rnnparity.suite import check_matrix, keras_adapter, parity, report
    from rnnparity.suite.known_differences import expected_keras_failure

    if args.show_failures < 0:
        err.write(f"rnnparity check: --show-failures must be 0 or more; got {args.show_failures}\n")
        return EXIT_ERROR
    # Checked before TensorFlow is imported: a bad path fails at once, in one line.
    if args.json_path and (problem := writable_file_problem(args.json_path)):
        err.write(f"rnnparity check: cannot write --json {args.json_path}: {problem}\n")
        return EXIT_ERROR
    try:
        handle = keras_adapter.load_keras(args.keras)
    except ImportError as exc:
        err.write(f"rnnparity check: {exc}\n")
        return EXIT_ERROR
    for line in environment_lines(handle):
        out.write(line + "\n")
    cases = check_matrix.all_cases(handle.major, quick=args.quick)
    if args.select:
        cases = [c for c in cases if args.select in c.case_id]
    if not cases:
        err.write(f"rnnparity check: no case id contains {args.select!r}\n")
        return EXIT_ERROR
    out.write(f"{len(cases)} configurations: {check_matrix.describe_counts(cases)}\n")
    out.flush()

    progress = _Progress(len(cases), err)
    groups: dict[tuple[str, str], list[CaseResult]] = defaultdict(list)
    failures: list[parity.CaseResult] = []
    records: list[dict[str, object]] = []
    start = time.perf_counter()
    known_failures: list[str] = []
    stale: list[str] = []
    for done, case in enumerate(cases, 1):
        expected = expected_keras_failure(case.to_dict(), handle.environment)
        try:
            result = check_matrix.run(case, handle)
        except Exception as exc:
            if expected is not None and expected.matches_error(exc):
                known_failures.append(f"{case.case_id} ({expected.id})")
                progress.update(done, len(failures))
                continue
            result = parity.CaseResult(case, False, float("inf"), float("inf"), f"[{case.case_id}] error: {exc!r}", float("inf"))
        if expected is not None:
            stale.append(f"{expected.id}: {case.case_id}")
        groups[(case.kind, case.dtype)].append(result)
        if args.json_path:
            records.append(report.case_record(result, result.checksums or report.data_checksums(check_matrix.make_data(case))))
        if not result.ok:
            failures.append(result)
        progress.update(done, len(failures))
    elapsed = time.perf_counter() - start

    out.write("\n" + _summary_table(groups) + "\n")
    for result in failures[: args.show_failures]:
        out.write(result.message + "\n")
    if len(failures) > args.show_failures:
        out.write(f"... and {len(failures) - args.show_failures} more mismatches\n")
    if known_failures:
        out.write(
            f"{len(known_failures)} configurations not run: Keras itself fails on them (known_differences), "
            f"e.g. {known_failures[0]}\n"
        )
    for entry in stale:
        out.write(f"known Keras failure no longer happens, the table entry may be stale: {entry}\n")
    if args.json_path:
        options = {"keras": args.keras, "quick": args.quick, "select": args.select}
        try:
            families = check_matrix.family_names()
            report.write_report(args.json_path, report.build_report(report.environment(handle), records, options, families))
        except OSError as exc:
            err.write(f"rnnparity check: cannot write --json {args.json_path}: {exc.strerror or exc}\n")
            return EXIT_ERROR
        out.write(f"report written to {args.json_path}\n")
    verdict = "PARITY HOLDS" if not failures else "PARITY BROKEN"
    passed = len(cases) - len(failures) - len(known_failures)
    out.write(f"{verdict}: {passed} passed, {len(failures)} failed in {elapsed:.1f} s\n")
    return EXIT_OK if not failures else EXIT_MISMATCH


def _summary_table(groups: dict[tuple[str, str], list[CaseResult]]) -> str:
    header = ("layer", "dtype", "configurations", "passed", "failed", "worst abs err", "worst rel err", "tolerance used")
    rows = [header]
    for (kind, dtype), results in sorted(groups.items()):
        passed = sum(1 for r in results if r.ok)
        worst_abs = max(r.max_abs for r in results)
        worst_rel = max(r.max_rel for r in results)
        used = max(r.tolerance_used for r in results)
        rows.append(
            (
                kind,
                dtype,
                str(len(results)),
                str(passed),
                str(len(results) - passed),
                f"{worst_abs:.2e}",
                f"{worst_rel:.2e}",
                f"{used * 100:.2g}%",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def run_diff(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from rnnparity.suite import report
    from rnnparity.suite.known_differences import KNOWN_DIFFERENCES

    for name in ("rtol", "atol"):
        value = getattr(args, name)
        if value is not None and not (np.isfinite(value) and value >= 0):
            err.write(f"rnnparity diff: --{name} must be a finite number >= 0; got {value}\n")
            return EXIT_ERROR
    if args.show < 0:
        err.write(f"rnnparity diff: --show must be 0 or more; got {args.show}\n")
        return EXIT_ERROR
    try:
        old, new = report.load_report(args.old), report.load_report(args.new)
    except report.ReportError as exc:
        err.write(f"rnnparity diff: {exc}\n")
        return EXIT_ERROR
    for label, path, data in (("old", args.old, old), ("new", args.new, new)):
        env = data["environment"]
        out.write(
            f"{label}: {path}: {env.get('keras_package')} {env.get('keras_version')} (Keras {env.get('keras_major')}, "
            f"backend {env.get('keras_backend')}), tensorflow {env.get('tensorflow')}, numpy {env.get('numpy')}; "
            f"{len(data['cases'])} configurations\n"
        )
    result = report.diff_reports(old, new, rtol=args.rtol, atol=args.atol)
    if result.incompatible:
        err.write(
            f"rnnparity diff: {len(result.incompatible)} configurations were fed different inputs or weights in the two "
            f"reports (first: {result.incompatible[0]}); refusing to compare them — were they written by different "
            f"rnnparity versions?\n"
        )
        return EXIT_ERROR
    shared = result.identical + result.within_tolerance + len(result.drifted)
    per_family = ", ".join(f"{count} {name}" for name, count in sorted(result.shared_per_family.items()))
    out.write(
        f"{shared} shared configurations{f' ({per_family})' if per_family else ''}: {result.identical} identical, "
        f"{result.within_tolerance} changed within tolerance, {len(result.drifted)} drifted\n"
    )
    reasons = {d.id: d.reason for d in KNOWN_DIFFERENCES}
    for cause, drifts in sorted(result.groups.items(), key=lambda item: -len(item[1])):
        worst = drifts[0]
        out.write(
            f"\nDRIFT [{cause}] {len(drifts)} configurations, largest change {worst.max_change:.3g} "
            f"({worst.tolerance_used:.3g}x the tolerance) in {worst.case_id}\n"
        )
        for part in cause.split(" + "):
            if part in reasons:
                out.write(f"  known difference {part}: {reasons[part]}\n")
        if cause == "unexplained":
            out.write("  no known difference explains these: a real change in Keras's numbers\n")
        for drift in drifts[: args.show]:
            out.write(f"  {drift.case_id}  (change {drift.max_change:.3g})\n")
        if len(drifts) > args.show:
            out.write(f"  ... and {len(drifts) - args.show} more\n")
    for entry, count in result.not_observed:
        out.write(
            f"\nknown difference {entry} should apply to {count} shared configurations between these versions, "
            f"but none drifted: the table entry may no longer apply\n"
        )
    for label, ids in (("old", result.only_old), ("new", result.only_new)):
        if ids:
            shown = ", ".join(ids[: args.show])
            more = f", ... and {len(ids) - args.show} more" if len(ids) > args.show else ""
            out.write(f"\nonly in {label} report: {len(ids)} configurations: {shown}{more}\n")
    for label, missing, data in (("old", result.family_not_in_old, old), ("new", result.family_not_in_new, new)):
        for family, ids in sorted(missing.items()):
            out.write(
                f"\nnot in the {label} report: {len(ids)} {family} configurations: written by a version without "
                f"{family} cases (report format {data['format_version']})\n"
            )
    unexplained = [d for d in result.drifted if not d.causes]
    if not result.drifted:
        out.write("\nNO DRIFT\n")
    else:
        out.write(f"\nDRIFT in {len(result.drifted)} configurations ({len(unexplained)} unexplained)\n")
    failing = unexplained if args.fail_on == "unexplained" else result.drifted
    return EXIT_OK if not failing else EXIT_MISMATCH


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        # Name the command the stray arguments were given to, not just "rnnparity".
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        commands.choices[args.command].error(f"unrecognized arguments: {' '.join(extras)}")
    if args.command == "check":
        return run_check(args, sys.stdout, sys.stderr)
    if args.command == "diff":
        return run_diff(args, sys.stdout, sys.stderr)
    if args.command == "explain":
        return run_explain(args, sys.stdout, sys.stderr)
    if args.command == "verify":
        return run_verify(args, sys.stdout, sys.stderr)
    if args.command == "bench":
        from rnnparity.suite import bench

        return bench.run(args, sys.stdout, sys.stderr)
    parser.error(f"unknown command {args.command!r}")
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
