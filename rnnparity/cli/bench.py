"""``rnnparity bench``: the timing table of :mod:`rnnparity.suite.bench` (which measures),
its options and its output, text or Markdown, and JSON."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, TextIO

from rnnparity import threads
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
from rnnparity.suite import bench, contention

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
    parser.add_argument(
        "--contention",
        type=int,
        default=0,
        metavar="N",
        help="run N busy processes (one core each) beside the benchmark for its whole duration, as on a shared "
        "CI runner; the JSON records N (default 0)",
    )
    parser.add_argument(
        "--contention-work",
        choices=contention.BUSY_KINDS,
        default="python",
        help="what the busy processes do: a pure-Python loop or NumPy element-wise work (default python)",
    )
    parser.add_argument(
        "--blas-threads",
        default=None,
        metavar="SETTING",
        help="BLAS threads of the twins' calls: auto, keep (as the process has them) or a number "
        f"(default: ${threads.ENV_VAR}, else auto)",
    )
    parser.add_argument(
        "--gradients",
        action="store_true",
        help="also time rnnparity.gradients against tf.GradientTape (in tf.function) at the medium and large shapes chosen",
    )
    parser.add_argument("--gradients-only", action="store_true", help="time the gradients only (implies --gradients)")
    parser.add_argument(
        "--conv",
        action="store_true",
        help=f"also time a ConvLSTM2D ({bench.CONV_SHAPE.describe()}, padding same and valid) against the same Keras layer",
    )
    parser.add_argument("--conv-only", action="store_true", help="time the ConvLSTM2D only (implies --conv)")
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


def _shape_cell(result: bench.Result | bench.GradientResult) -> str:
    shape = bench.ConvShape(**result.dims) if result.kind == bench.CONV_KIND else bench.Shape(**result.dims)
    return f"{result.shape} ({shape.describe()})"


def _layer_name(kind: str) -> str:
    return "ConvLSTM2D" if kind == bench.CONV_KIND else KERAS_CLASS_NAME[kind]


def format_table(results: list[bench.Result], markdown: bool = False) -> str:
    columns = [c for c in bench.CONTENDERS if any(c in r.median_ms for r in results)]
    ratio_columns = [c for c in ("gemm_floor", "tf_function", "xla") if c in columns and "twin" in columns]
    header = ["layer", "shape", "dtype", *[f"{c} ms" for c in columns], *[f"twin/{c}" for c in ratio_columns]]
    header += ["max abs err", "parity", "twin peak MiB"]
    rows = []
    for r in results:
        row = [_layer_name(r.kind), _shape_cell(r), r.dtype]
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
        row = [_layer_name(r.kind), _shape_cell(r), r.dtype]
        row += [f"{r.twin_phases_ms[phase]:.2f}" for phase in ("projection", "steps", "rest")]
        row += [f"{r.median_ms['gemm_floor']:.2f}" if "gemm_floor" in r.median_ms else "-"] if floor else []
        rows.append(row)
    return render(header, rows, right=range(LEFT_COLUMNS, len(header)), markdown=markdown) if rows else ""


def format_gradients(results: list[bench.GradientResult], markdown: bool = False) -> str:
    """rnnparity.gradients against tf.GradientTape in tf.function."""
    header = ["layer", "shape", "dtype", "twin ms", "tape_tf_function ms", "twin/tape", "max abs err", "parity"]
    rows = []
    for r in results:
        parity = {None: "-", True: "ok", False: "MISMATCH" if r.decidable else "f32 rounding"}[r.parity]
        rows.append(
            [
                KERAS_CLASS_NAME[r.kind],
                _shape_cell(r),
                r.dtype,
                f"{r.median_ms['twin']:.2f}",
                f"{r.median_ms['tape_tf_function']:.2f}",
                f"{r.ratios['twin/tape_tf_function']:.2f}x",
                "-" if r.max_abs_error is None else f"{r.max_abs_error:.1e}",
                parity,
            ]
        )
    return render(header, rows, right=range(LEFT_COLUMNS, len(header)), markdown=markdown)


def _times(medians: dict[str, float]) -> str:
    return ", ".join(f"{name} {ms:.2f} ms" for name, ms in medians.items())


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
    if args.contention < 0:
        raise CommandError(f"--contention must be 0 or a positive number of busy processes; got {args.contention}")
    try:
        blas_setting = (
            threads.current_setting() if args.blas_threads is None else threads.parse_setting(args.blas_threads, "--blas-threads")
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    gradients = args.gradients or args.gradients_only
    gradient_shapes = [s for s in shapes if s != "small"] if gradients else []
    if gradients and not gradient_shapes:
        raise CommandError("--gradients times the medium and large shapes; --shapes chose neither")
    conv = args.conv or args.conv_only
    if args.conv_only and gradients:
        raise CommandError("--conv-only times the ConvLSTM2D forward pass only; drop --gradients/--gradients-only")
    forward = not args.gradients_only and not args.conv_only
    check_output_file("--json", args.json_path)  # before minutes of timing, not after
    handle = None
    if gradients or ((forward or conv) and any(c in bench.KERAS_CONTENDERS for c in contenders)):
        from rnnparity.suite import keras_adapter

        import_tensorflow_quietly()
        try:
            handle = keras_adapter.load_keras(args.keras)
        except ImportError as exc:
            raise CommandError(
                f"the Keras contenders and --gradients need TensorFlow and Keras ({exc}); pip install "
                "'rnnparity[tensorflow]' or pass --contenders twin,gemm_floor"
            ) from None
        if handle.backend != "tensorflow":
            raise CommandError(
                f"the Keras contenders time TensorFlow (tf.function, XLA); {handle.describe()} runs on "
                f"{handle.backend} (set KERAS_BACKEND=tensorflow, or pass --contenders twin,gemm_floor)"
            )
    report = text_stream(args.json_path, out, err)
    env = bench.environment(handle)  # before timing, so the load average is other work's, not ours
    env["contention"] = args.contention
    env["contention_work"] = args.contention_work if args.contention else None
    env["blas_threads_setting"] = blas_setting
    report.write(f"rnnparity bench: {', '.join(f'{k}={v}' for k, v in env.items())}\n")
    report.write(f"median of {args.repeats} interleaved calls each; Keras returns every timestep (return_sequences=True)\n")
    if args.contention:
        report.write(f"with {args.contention} busy process(es) ({args.contention_work}) running beside the benchmark\n")
    warning = bench.load_warning(env["load_average_1min"])
    report.write(f"{warning}\n\n" if warning else "\n")
    results: list[bench.Result] = []
    gradient_results: list[bench.GradientResult] = []
    with contention.busy_processes(args.contention, args.contention_work), threads.blas_threads(blas_setting):
        for shape in shapes if forward else []:
            for kind in kinds:
                for dtype in dtypes:
                    result = bench.bench_one(handle, kind, shape, dtype, contenders, args.repeats)
                    results.append(result)
                    report.write(
                        f"  {kind} {shape} {dtype}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in result.median_ms.items()) + "\n"
                    )
        conv_contenders = [c for c in contenders if c in bench.CONV_CONTENDERS]
        for padding in bench.CONV_PADDINGS if conv and conv_contenders else ():
            for dtype in dtypes:
                result = bench.bench_conv(handle, padding, dtype, conv_contenders, args.repeats)
                results.append(result)
                report.write(
                    f"  ConvLSTM2D {padding} {dtype}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in result.median_ms.items()) + "\n"
                )
        for shape in gradient_shapes:
            for kind in kinds:
                for dtype in dtypes:
                    grad = bench.bench_gradients(handle, kind, shape, dtype, args.repeats)
                    gradient_results.append(grad)
                    report.write(
                        f"  gradients {kind} {shape} {dtype}: "
                        + ", ".join(f"{k} {v:.2f} ms" for k, v in grad.median_ms.items())
                        + "\n"
                    )
        decodes = (
            []
            if args.no_decode or not forward
            else [bench.bench_decode(kind, dtype, bench.SHAPES["small"]) for kind in kinds for dtype in dtypes]
        )
    if results:
        report.write("\n" + format_table(results, markdown=args.markdown) + "\n\n")
    phases = format_phases(results, markdown=args.markdown)
    if phases:
        report.write("where the twin's time goes (separate instrumented calls, medians):\n" + phases + "\n\n")
    if gradient_results:
        report.write("gradients (inputs and weights), twin against tf.GradientTape in tf.function:\n")
        report.write(format_gradients(gradient_results, markdown=args.markdown) + "\n\n")
    targets = bench.target_lines(results, decodes, gradient_results, args.contention)
    for line in targets:
        report.write(line + "\n")
    if warning:  # the load seen before timing: the benchmark's own threads raise it later
        report.write(warning + "\n")
    if args.json_path:
        payload = {
            "environment": env,
            "results": [asdict(r) for r in results],
            "gradients": [asdict(g) for g in gradient_results],
            "decode": [asdict(d) for d in decodes],
            "targets": targets,
        }
        write_json("--json", args.json_path, payload, out)
    rows: list[bench.Result | bench.GradientResult] = [*results, *gradient_results]
    broken = [r for r in rows if r.parity is False and r.decidable]
    return EXIT_MISMATCH if broken else EXIT_OK
