"""``rnnparity diff OLD.json NEW.json``: the Keras numbers of two ``check --json`` reports,
configuration by configuration; drift grouped by the known difference that explains it."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

import numpy as np

from rnnparity.cli.common import EXIT_MISMATCH, EXIT_OK, CommandError, exit_codes
from rnnparity.cli.table import render

DEFAULT_SHOW = 5

# How to read a case id (rnnparity.suite.matrix.Case.case_id), part by part, in order:
# (as printed, pattern, meaning). A test checks every part of every id in the matrix is here.
CASE_ID_LEGEND: tuple[tuple[str, str, str], ...] = (
    ("bidirectional|rnn|stacked", r"bidirectional|rnn|stacked", "a wrapper case: Bidirectional, RNN(cell), StackedRNNCells"),
    ("conv_lstm1d|2d|3d", r"conv_lstm[123]d", "a ConvLSTM case: ConvLSTM1D, ConvLSTM2D, ConvLSTM3D"),
    ("lstm|gru|simple_rnn", r"lstm|gru|simple_rnn", "the layer (or cell)"),
    ("a+b", r"", "in a wrapper case, the next cell of a stack, or (+bwd) Bidirectional's own backward_layer"),
    ("bwd", r"bwd", "Bidirectional's backward_layer, described after it"),
    ("merge-<mode>", r"merge|concat|sum|mul|ave|None", "Bidirectional's merge_mode"),
    ("ra|rb", r"ra|rb", "GRU reset_after True|False"),
    ("u3-d4-t5-b2", r"[udtb]\d+", "units, input_dim, timesteps, batch"),
    ("filters2-ch3", r"filters\d+|ch\d+", "ConvLSTM filters and input channels"),
    ("in6x5-k3x2", r"(in|k)\d+(x\d+)*", "ConvLSTM input spatial size and kernel_size"),
    ("str1x2|dil2x1", r"(str|dil)\d+(x\d+)*", "ConvLSTM strides or dilation_rate, when not all 1"),
    ("valid|same", r"valid|same", "ConvLSTM padding"),
    ("chfirst", r"chfirst", "ConvLSTM data_format='channels_first'"),
    ("tanh-sigmoid", r"", "activation, then recurrent_activation (LSTM, GRU, ConvLSTM)"),
    ("bias|nobias", r"bias|nobias", "use_bias"),
    ("nufb", r"nufb", "LSTM or ConvLSTM unit_forget_bias=False"),
    ("seq0|seq1", r"seq[01]", "return_sequences"),
    ("st0|st1", r"st[01]", "return_state"),
    ("back", r"back", "go_backwards"),
    ("stateful", r"stateful", "stateful"),
    ("mask-<pattern>", r"mask-\w+", "a mask: right_padded, scattered, ..."),
    ("init", r"init", "initial_state given"),
    ("bare", r"bare", "a lone cell's initial_state given as an array, not a list"),
    ("tmajor", r"tmajor", "time_major (Keras 2)"),
    ("f32|f64", r"f32|f64", "dtype"),
    ("x<scale>", r"x[\d.]+", "input scale when not 1.5"),
    ("s<seed>", r"s\d+", "seed"),
)


def legend() -> str:
    """How to read the case ids printed above it."""
    return "case ids read: " + "; ".join(f"{shown} = {meaning}" for shown, _, meaning in CASE_ID_LEGEND)


def unexplained_parts(case_id: str) -> list[str]:
    """The parts of ``case_id`` the legend does not cover (activations: Keras 2's or 3's names)."""
    from rnnparity.activations import activations_for

    names = set(activations_for(2)) | set(activations_for(3))
    patterns = [pattern for _, pattern, _ in CASE_ID_LEGEND if pattern]
    masks = re.findall(r"mask-[a-z_]+", case_id)
    parts = re.split(r"[-+]", re.sub(r"mask-[a-z_]+", "", case_id)) + masks
    return [part for part in parts if part and part not in names and not any(re.fullmatch(p, part) for p in patterns)]


def add_parser(commands: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        "diff",
        help="compare the Keras numbers of two `check --json` reports",
        description="Compare, configuration by configuration, the Keras outputs recorded in two reports written by "
        "`rnnparity check --json` (e.g. before and after a TensorFlow/Keras upgrade). Changes beyond the "
        "tolerance are drift, grouped by the known difference that explains them; changes within it, and "
        "configurations in one report only, are named with the reason.",
        epilog=exit_codes(
            "no drift (or, with --fail-on unexplained, only drift a known difference explains)",
            "drift",
            "bad options, or a report cannot be read or compared",
        ),
    )
    parser.add_argument("old", metavar="OLD.json")
    parser.add_argument("new", metavar="NEW.json")
    parser.add_argument("--rtol", type=float, default=None, help="relative tolerance (default per dtype: f32 1e-5, f64 1e-10)")
    parser.add_argument("--atol", type=float, default=None, help="absolute tolerance (default per dtype: f32 1e-6, f64 1e-12)")
    parser.add_argument(
        "--show", type=int, default=DEFAULT_SHOW, metavar="N", help=f"configurations listed per group (default {DEFAULT_SHOW})"
    )
    parser.add_argument(
        "--fail-on",
        choices=["any", "unexplained"],
        default="any",
        help="exit 1 on any drift (default), or only on drift no known difference explains",
    )
    return parser


def _more(hidden: int) -> str:
    return f"  ... and {hidden} more (--show N lists N per group)\n"


def _environment_line(label: str, path: str, data: Mapping[str, Any]) -> str:
    env = data["environment"]
    return (
        f"{label}: {path}: {env.get('keras_package')} {env.get('keras_version')} (Keras {env.get('keras_major')}, "
        f"backend {env.get('keras_backend')}), tensorflow {env.get('tensorflow')}, numpy {env.get('numpy')}; "
        f"{len(data['cases'])} configurations\n"
    )


def family_of_id(case_id: str) -> str:
    """The family of a case, read from its id's first part (for records that do not say it)."""
    first = case_id.split("-")[0]
    if first in ("bidirectional", "rnn", "stacked"):
        return "wrapper"
    return "conv" if first.startswith("conv_lstm") else "layer"


def absence_reason(
    config: Mapping[str, Any], case_id: str, other: Mapping[str, Any], other_label: str, family: str | None = None
) -> str:
    """Why a configuration recorded in one report is missing from ``other`` (the other report);
    ``family`` is the family its own report records (by default read from the id)."""
    from rnnparity.activations import activations_for
    from rnnparity.suite.known_differences import expected_keras_difference, expected_keras_failure

    env = other.get("environment", {})
    given = other.get("options")
    options: Mapping[str, Any] = given if isinstance(given, dict) else {}
    major = env.get("keras_major")
    if config.get("time_major") and major not in (None, 2):
        return f"time_major exists in Keras 2 only; the {other_label} report is Keras {major}"
    if major in (2, 3):
        names = activations_for(int(major))
        for key in ("activation", "recurrent_activation"):
            name = config.get(key)
            if isinstance(name, str) and name not in names:
                return f"Keras {major} (the {other_label} report) has no {key} {name!r}"
    failure = expected_keras_failure(config, env)
    if failure is not None:
        return f"Keras in the {other_label} report fails on it (known Keras failure {failure.id}), so check did not run it"
    wrong = expected_keras_difference(config, env)
    if wrong is not None:
        return (
            f"Keras in the {other_label} report may compute other numbers there (known Keras difference {wrong.id}), "
            "so check did not record it"
        )
    select = options.get("select")
    if isinstance(select, str) and select not in case_id:
        return f"the {other_label} report was written with -k {select!r}"
    written = options.get("family")
    if isinstance(written, str) and written != (family or family_of_id(case_id)):
        return f"the {other_label} report was written with --family {written}"
    if options.get("quick"):
        return f"the {other_label} report was written with --quick (about 1 case in 8)"
    return f"not in the matrix of the rnnparity that wrote the {other_label} report ({env.get('rnnparity')})"


def _one_sided(label: str, ids: list[str], mine: Mapping[str, Any], other: Mapping[str, Any], other_label: str, show: int) -> str:
    records = {r["id"]: r for r in mine["cases"]}
    by_reason: dict[str, list[str]] = {}
    for case_id in ids:
        record = records[case_id]
        family = record.get("family") if isinstance(record.get("family"), str) else None
        reason = absence_reason(record["config"], case_id, other, other_label, family)
        by_reason.setdefault(reason, []).append(case_id)
    text = f"\nonly in {label} report: {len(ids)} configurations\n"
    for reason, members in sorted(by_reason.items(), key=lambda item: -len(item[1])):
        text += f"  {len(members)}: {reason}\n"
        text += "".join(f"    {case_id}\n" for case_id in members[:show])
        if len(members) > show:
            text += "  " + _more(len(members) - show)
    return text


def _changes(drifts: Iterable[Any], show: int) -> str:
    listed = list(drifts)
    rows = [(d.case_id, f"{d.max_change:.3g}", f"{d.tolerance_used:.3g}x") for d in listed[:show]]
    text = "".join(
        f"  {line}\n" for line in render(("configuration", "largest change", "of tolerance"), rows, right=(1, 2)).splitlines()
    )
    if len(listed) > show:
        text += _more(len(listed) - show)
    return text


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from rnnparity.suite import report
    from rnnparity.suite.known_differences import KNOWN_DIFFERENCES

    for name in ("rtol", "atol"):
        value = getattr(args, name)
        if value is not None and not (np.isfinite(value) and value >= 0):
            raise CommandError(f"--{name} must be a finite number >= 0; got {value}")
    if args.show < 0:
        raise CommandError(f"--show must be 0 or more; got {args.show}")
    try:
        old, new = report.load_report(args.old), report.load_report(args.new)
    except report.ReportError as exc:
        raise CommandError(str(exc)) from None
    out.write(_environment_line("old", args.old, old))
    out.write(_environment_line("new", args.new, new))
    result = report.diff_reports(old, new, rtol=args.rtol, atol=args.atol)
    if result.incompatible:
        raise CommandError(
            f"{len(result.incompatible)} configurations were fed different inputs or weights in the two reports "
            f"(first: {result.incompatible[0]}); refusing to compare them — were they written by different "
            "rnnparity versions?"
        )
    shared = result.identical + result.within_tolerance + len(result.drifted)
    per_family = ", ".join(f"{count} {name}" for name, count in sorted(result.shared_per_family.items()))
    out.write(
        f"{shared} shared configurations{f' ({per_family})' if per_family else ''}: {result.identical} identical, "
        f"{result.within_tolerance} changed within tolerance, {len(result.drifted)} drifted\n"
    )
    printed_ids = False
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
        out.write(_changes(drifts, args.show))
        printed_ids = printed_ids or args.show > 0
    if result.changed_within:
        within = sorted(result.changed_within, key=lambda d: -d.tolerance_used)
        out.write(f"\nchanged within tolerance: {len(within)} configurations (not drift)\n")
        out.write(_changes(within, len(within)))
        printed_ids = True
    for entry, count in result.not_observed:
        out.write(
            f"\nknown difference {entry} should apply to {count} shared configurations between these versions, "
            f"but none drifted: the table entry may no longer apply\n"
        )
    for label, ids, mine, other, other_label in (
        ("old", result.only_old, old, new, "new"),
        ("new", result.only_new, new, old, "old"),
    ):
        if ids:
            out.write(_one_sided(label, ids, mine, other, other_label, args.show))
            printed_ids = printed_ids or args.show > 0
    for label, missing, data in (("old", result.family_not_in_old, old), ("new", result.family_not_in_new, new)):
        for family, ids in sorted(missing.items()):
            out.write(
                f"\nnot in the {label} report: {len(ids)} {family} configurations: written by a version without "
                f"{family} cases (report format {data['format_version']})\n"
            )
    if printed_ids:
        out.write("\n" + legend() + "\n")
    unexplained = [d for d in result.drifted if not d.causes]
    if not result.drifted:
        out.write("\nNO DRIFT\n")
    else:
        out.write(f"\nDRIFT in {len(result.drifted)} configurations ({len(unexplained)} unexplained)\n")
    failing = unexplained if args.fail_on == "unexplained" else result.drifted
    return EXIT_OK if not failing else EXIT_MISMATCH
