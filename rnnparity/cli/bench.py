"""``rnnparity bench``: the timing table of :mod:`rnnparity.suite.bench` (which measures),
its options and its output, text or Markdown, and JSON."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, TextIO

from rnnparity.cli.check import KERAS_CHOICES
from rnnparity.cli.common import (
    EXIT_MISMATCH,
    EXIT_OK,
    CommandError,
    check_output_file,
    exit_codes,
    import_tensorflow_quietly,
    text_stream,
    write_json,
)
from rnnparity.cli.layout_text import kind_of
from rnnparity.cli.table import render
from rnnparity.layout import KERAS_CLASS_NAME
from rnnparity.suite import bench

LEFT_COLUMNS = 3  # layer, shape, dtype; the numbers after them are right-aligned


def add_parser(commands: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        "bench",
        help="time the twins against the same Keras layer (eager, predict, tf.function, XLA) and the GEMM floor",
        description="Forward time of each twin against the same Keras layer with the same weights, interleaved, "
        "median of --repeats calls; prints a table, the performance targets met or missed, and optionally JSON. "
        "Run it on a quiet machine.",
        epilog=exit_codes("timed, and every twin matched Keras", "a twin's result did not match Keras's"),
    )
    kinds = ",".join(bench.KINDS)
    parser.add_argument(
        "--kinds", default=kinds, help=f"comma-separated subset of {kinds} (or LSTM, GRU, SimpleRNN; default: all)"
    )
    parser.add_argument(
        "--shapes",
        default=",".join(bench.SHAPES),
        help="comma-separated subset of " + ", ".join(f"{k} ({v.describe()})" for k, v in bench.SHAPES.items()),
    )
    parser.add_argument(
        "--dtypes", default=",".join(bench.DTYPES), help="comma-separated subset of float32,float64 (default: both)"
    )
    parser.add_argument(
        "--contenders",
        default=",".join(bench.CONTENDERS),
        help=f"comma-separated subset of {','.join(bench.CONTENDERS)} (default: all)",
    )
    parser.add_argument(
        "--repeats", type=int, default=10, metavar="N", help="timed calls per contender, median reported (default 10)"
    )
    parser.add_argument("--keras", choices=KERAS_CHOICES, default="auto", help="which Keras to time (default auto)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown (for a README or a PR)")
    parser.add_argument("--no-decode", action="store_true", help=f"skip the {bench.DECODE_STEPS:,}-step decoding loop")
    parser.add_argument(
        "--json",
        dest="json_path",
        metavar="PATH",
        default=None,
        help="also write the results as JSON; '-' writes it to stdout (the text then goes to stderr)",
    )
    return parser


def _shape_cell(result: bench.Result) -> str:
    return f"{result.shape} ({bench.Shape(**result.dims).describe()})"


def format_table(results: list[bench.Result], markdown: bool = False) -> str:
    columns = [c for c in bench.CONTENDERS if any(c in r.median_ms for r in results)]
    ratio_columns = [c for c in ("gemm_floor", "tf_function", "xla") if c in columns and "twin" in columns]
    header = ["layer", "shape", "dtype", *[f"{c} ms" for c in columns], *[f"twin/{c}" for c in ratio_columns]]
    header += ["max abs err", "parity", "twin peak MiB"]
    rows = []
    for r in results:
        row = [KERAS_CLASS_NAME[r.kind], _shape_cell(r), r.dtype]
        row += [f"{r.median_ms[c]:.2f}" if c in r.median_ms else "-" for c in columns]
        row += [f"{r.ratios[f'twin/{c}']:.2f}x" if f"twin/{c}" in r.ratios else "-" for c in ratio_columns]
        parity = {None: "-", True: "ok", False: "MISMATCH" if r.decidable else "f32 rounding"}[r.parity]
        row += ["-" if r.max_abs_error is None else f"{r.max_abs_error:.1e}", parity, f"{r.twin_peak_mib:.1f}"]
        rows.append(row)
    return render(header, rows, right=range(LEFT_COLUMNS, len(header)), markdown=markdown)


def format_phases(results: list[bench.Result], markdown: bool = False) -> str:
    """Where each twin call's time goes, beside the GEMM floor when it was timed."""
    floor = any("gemm_floor" in r.median_ms for r in results)
    header = ["layer", "shape", "dtype", "input projection ms", "recurrent steps ms", "rest ms"]
    header += ["gemm_floor ms"] if floor else []
    rows = []
    for r in results:
        if not r.twin_phases_ms:
            continue
        row = [KERAS_CLASS_NAME[r.kind], _shape_cell(r), r.dtype]
        row += [f"{r.twin_phases_ms[phase]:.2f}" for phase in ("projection", "steps", "rest")]
        row += [f"{r.median_ms['gemm_floor']:.2f}" if "gemm_floor" in r.median_ms else "-"] if floor else []
        rows.append(row)
    return render(header, rows, right=range(LEFT_COLUMNS, len(header)), markdown=markdown) if rows else ""


def _csv(value: str, allowed: Sequence[str], option: str, normalize: Any = None) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if normalize is not None:
        items = [normalize(v) or v for v in items]
    unknown = [v for v in items if v not in allowed]
    if unknown or not items:
        raise CommandError(f"{option} takes a comma-separated subset of {','.join(allowed)}; got {value!r}")
    return items


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    kinds = _csv(args.kinds, bench.KINDS, "--kinds", kind_of)
    shapes = _csv(args.shapes, tuple(bench.SHAPES), "--shapes")
    dtypes = _csv(args.dtypes, bench.DTYPES, "--dtypes")
    contenders = _csv(args.contenders, bench.CONTENDERS, "--contenders")
    if args.repeats < 1:
        raise CommandError(f"--repeats must be a positive integer; got {args.repeats}")
    check_output_file("--json", args.json_path)  # before minutes of timing, not after
    handle = None
    if any(c in bench.KERAS_CONTENDERS for c in contenders):
        from rnnparity.suite import keras_adapter

        import_tensorflow_quietly()
        try:
            handle = keras_adapter.load_keras(args.keras)
        except ImportError as exc:
            raise CommandError(
                f"the Keras contenders need TensorFlow and Keras ({exc}); pip install 'rnnparity[tensorflow]' "
                "or pass --contenders twin,gemm_floor"
            ) from None
        if handle.backend != "tensorflow":
            raise CommandError(
                f"the Keras contenders time TensorFlow (tf.function, XLA); {handle.describe()} runs on "
                f"{handle.backend} (set KERAS_BACKEND=tensorflow, or pass --contenders twin,gemm_floor)"
            )
    report = text_stream(args.json_path, out, err)
    env = bench.environment(handle)  # before timing, so the load average is other work's, not ours
    report.write(f"rnnparity bench: {', '.join(f'{k}={v}' for k, v in env.items())}\n")
    report.write(f"median of {args.repeats} interleaved calls each; Keras returns every timestep (return_sequences=True)\n")
    warning = bench.load_warning(env["load_average_1min"])
    report.write(f"{warning}\n\n" if warning else "\n")
    results: list[bench.Result] = []
    for shape in shapes:
        for kind in kinds:
            for dtype in dtypes:
                result = bench.bench_one(handle, kind, shape, dtype, contenders, args.repeats)
                results.append(result)
                report.write(
                    f"  {kind} {shape} {dtype}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in result.median_ms.items()) + "\n"
                )
    decodes = (
        [] if args.no_decode else [bench.bench_decode(kind, dtype, bench.SHAPES["small"]) for kind in kinds for dtype in dtypes]
    )
    report.write("\n" + format_table(results, markdown=args.markdown) + "\n\n")
    phases = format_phases(results, markdown=args.markdown)
    if phases:
        report.write("where the twin's time goes (separate instrumented calls, medians):\n" + phases + "\n\n")
    for line in bench.target_lines(results, decodes):
        report.write(line + "\n")
    if warning:  # the load seen before timing: the benchmark's own threads raise it later
        report.write(warning + "\n")
    if args.json_path:
        payload = {
            "environment": env,
            "results": [asdict(r) for r in results],
            "decode": [asdict(d) for d in decodes],
            "targets": bench.target_lines(results, decodes),
        }
        write_json("--json", args.json_path, payload, out)
    return EXIT_MISMATCH if any(r.parity is False and r.decidable for r in results) else EXIT_OK
