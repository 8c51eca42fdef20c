"""``rnnparity check``: the parity matrix against the installed Keras, a summary table per
layer and dtype, and optionally a versioned JSON report for ``rnnparity diff``."""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

import rnnparity
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
from rnnparity.cli.table import render

if TYPE_CHECKING:
    from rnnparity.suite.keras_adapter import KerasHandle
    from rnnparity.suite.parity import CaseResult

KERAS_CHOICES = ("auto", "keras3", "tf-keras")
KERAS_HELP = "which Keras: keras3 (the keras package), tf-keras (Keras 2), or auto (what tf.keras resolves to; default)"
# The families of rnnparity.suite.check_matrix (named here so that parsing imports no suite module).
FAMILIES = ("layer", "wrapper", "conv")


def add_parser(commands: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        "check",
        help="run the parity matrix against the installed Keras",
        description="Run every configuration of the parity matrix (layer kinds, options, masks, dtypes; seeded "
        "random weights and inputs) through Keras and through the NumPy twin, and compare them with the "
        "per-dtype tolerances. Prints a table per layer and dtype and the first mismatches.",
        epilog=exit_codes("parity holds for every configuration run", "at least one configuration mismatched"),
    )
    parser.add_argument("--keras", choices=KERAS_CHOICES, default="auto", help=KERAS_HELP)
    parser.add_argument("--quick", action="store_true", help="a smaller matrix (about 1 case in 8)")
    parser.add_argument(
        "--family",
        choices=FAMILIES,
        default=None,
        help="only single-layer cases (layer), Bidirectional / RNN(cell) / stacked-cell cases (wrapper) or "
        "ConvLSTM1D/2D/3D cases (conv); default all",
    )
    parser.add_argument(
        "-k", dest="select", metavar="TEXT", default=None, help="only cases whose id contains TEXT (e.g. lstm, hard_sigmoid, f64)"
    )
    parser.add_argument(
        "--show-failures", type=int, default=10, metavar="N", help="print the first N mismatches in full (default 10)"
    )
    parser.add_argument(
        "--json",
        dest="json_path",
        metavar="PATH",
        default=None,
        help="write a versioned report (environment, checksums, Keras output samples, parity) for `rnnparity diff`; "
        "'-' writes it to stdout (the text then goes to stderr)",
    )
    from rnnparity.cli import backends

    backends.add_arguments(parser)
    return parser


def environment_lines(handle: KerasHandle) -> list[str]:
    from rnnparity.suite.report import tensorflow_version

    lines = [f"python {platform.python_version()}, numpy {np.__version__}, rnnparity {rnnparity.__version__}"]
    tensorflow = tensorflow_version()
    lines.append(f"tensorflow {tensorflow}" if tensorflow else "tensorflow not installed")
    lines.append(f"checking against {handle.describe()}")
    return lines


class Progress:
    """A bar on a terminal; a line per tenth of the cases otherwise."""

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


def summary_table(groups: dict[tuple[str, str], list[CaseResult]]) -> str:
    header = ("layer", "dtype", "configurations", "passed", "failed", "worst abs err", "worst rel err", "tolerance used")
    rows = []
    for (kind, dtype), results in sorted(groups.items()):
        passed = sum(1 for r in results if r.ok)
        rows.append(
            (
                kind,
                dtype,
                len(results),
                passed,
                len(results) - passed,
                f"{max(r.max_abs for r in results):.2e}",
                f"{max(r.max_rel for r in results):.2e}",
                f"{max(r.tolerance_used for r in results) * 100:.2g}%",
            )
        )
    return render(header, rows)


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from rnnparity.suite import check_matrix, keras_adapter, parity, report
    from rnnparity.suite.known_differences import expected_keras_difference, expected_keras_failure

    if args.show_failures < 0:
        raise CommandError(f"--show-failures must be 0 or more; got {args.show_failures}")
    if args.backend is not None and os.environ.get("KERAS_BACKEND", "tensorflow") != args.backend:
        from rnnparity.cli import backends

        return backends.run_check_on_backend(args, out, err)
    check_output_file("--json", args.json_path)  # before TensorFlow is imported: a bad path fails at once
    text = text_stream(args.json_path, out, err)
    import_tensorflow_quietly()
    try:
        handle = keras_adapter.load_keras(args.keras)
    except ImportError as exc:
        raise CommandError(str(exc)) from None
    for line in environment_lines(handle):
        text.write(line + "\n")
    cases = check_matrix.all_cases(handle.keras_version, quick=args.quick)
    if args.family:
        cases = [c for c in cases if c.family == args.family]
    if args.select:
        cases = [c for c in cases if args.select in c.case_id]
    if not cases:
        raise CommandError(f"no case id contains {args.select!r}")
    text.write(f"{len(cases)} configurations: {check_matrix.describe_counts(cases)}\n")
    text.flush()

    progress = Progress(len(cases), err)
    groups: dict[tuple[str, str], list[CaseResult]] = defaultdict(list)
    failures: list[CaseResult] = []
    records: list[dict[str, object]] = []
    known_failures: list[str] = []
    known_wrong: list[str] = []  # Keras computes other numbers (or fails) by a known Keras bug
    stale: list[str] = []
    start = time.perf_counter()
    for done, case in enumerate(cases, 1):
        expected = expected_keras_failure(case.to_dict(), handle.environment)
        wrong = expected_keras_difference(case.to_dict(), handle.environment)
        try:
            result = check_matrix.run(case, handle)
        except Exception as exc:
            if expected is not None and expected.matches_error(exc):
                known_failures.append(f"{case.case_id} ({expected.id})")
                progress.update(done, len(failures))
                continue
            result = parity.CaseResult(case, False, float("inf"), float("inf"), f"[{case.case_id}] error: {exc!r}", float("inf"))
        if wrong is not None and not result.ok:
            known_wrong.append(f"{case.case_id} ({wrong.id})")
            progress.update(done, len(failures))
            continue
        if expected is not None:
            stale.append(f"{expected.id}: {case.case_id}")
        groups[(case.kind, case.dtype)].append(result)
        if args.json_path:
            records.append(report.case_record(result, result.checksums or report.data_checksums(check_matrix.make_data(case))))
        if not result.ok:
            failures.append(result)
        progress.update(done, len(failures))
    elapsed = time.perf_counter() - start

    text.write("\n" + summary_table(groups) + "\n")
    for result in failures[: args.show_failures]:
        text.write(result.message + "\n")
    if len(failures) > args.show_failures:
        text.write(f"... and {len(failures) - args.show_failures} more mismatches (--show-failures N prints more)\n")
    if known_failures:
        text.write(
            f"{len(known_failures)} configurations not run: Keras itself fails on them (known_differences), "
            f"e.g. {known_failures[0]}\n"
        )
    if known_wrong:
        text.write(
            f"{len(known_wrong)} configurations where Keras computes other numbers than the twins by a known Keras bug "
            f"(known_differences), e.g. {known_wrong[0]}\n"
        )
    for entry in stale:
        text.write(f"known Keras failure no longer happens, the table entry may be stale: {entry}\n")
    if args.json_path:
        options = {"keras": args.keras, "quick": args.quick, "select": args.select, "family": args.family}
        payload = report.build_report(report.environment(handle), records, options, check_matrix.family_names())
        write_json("--json", args.json_path, payload, out, indent=1)
        if args.json_path != "-":
            text.write(f"report written to {args.json_path}\n")
    verdict = "PARITY HOLDS" if not failures else "PARITY BROKEN"
    passed = len(cases) - len(failures) - len(known_failures) - len(known_wrong)
    text.write(f"{verdict}: {passed} passed, {len(failures)} failed in {elapsed:.1f} s\n")
    return EXIT_OK if not failures else EXIT_MISMATCH
