"""Versioned JSON reports of what an installed Keras computes, and the diff of two reports.

A report holds, per configuration: its id and full config, the seed, SHA-256 checksums of
the inputs (inputs, masks, initial states) and of the weights it was fed, the checksum of
the Keras outputs and an evenly spaced sample of them (exact float64 values, enough to
measure a change), and the parity result of the twin. ``diff_reports`` compares the Keras
numbers of two reports and refuses to compare configurations fed different numbers.

Format versions: 1 held single-layer cases only. 2 adds the families of cases
(:mod:`rnnparity.suite.check_matrix`): the report lists the families its rnnparity ran
(``families``) and each case names its own (``family``). A new family (``conv``, the
ConvLSTM cases) needs no new version: its records have the same keys, and a version 2 report
whose ``families`` lack it was written by an rnnparity without it. Version 1 reports are
read as reports of the ``layer`` family; other versions are refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

import rnnparity
from rnnparity.compare import compare_arrays
from rnnparity.rnn import flatten_nested
from rnnparity.suite import known_differences
from rnnparity.suite.keras_adapter import package_version, tensorflow_gelu_form, tensorflow_version
from rnnparity.suite.matrix import CaseData

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "READABLE_VERSIONS",
    "DiffResult",
    "Drift",
    "ReportError",
    "build_report",
    "case_record",
    "checksum",
    "data_checksums",
    "diff_reports",
    "environment",
    "load_report",
    "package_version",  # from keras_adapter, for the pytest plugin's header
    "sample",
    "tensorflow_version",  # from keras_adapter: one way to find the version
    "write_report",
]

FORMAT = "rnnparity-check-report"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
SAMPLE_SIZE = 256


class ReportError(ValueError):
    """A report that cannot be read or compared; the message is one line for the user."""


def checksum(arrays: Iterable[np.ndarray | None]) -> str:
    """SHA-256 over dtype, shape and bytes of each array (None counts as an explicit marker)."""
    digest = hashlib.sha256()
    for array in arrays:
        if array is None:
            digest.update(b"none;")
            continue
        contiguous = np.ascontiguousarray(array)
        digest.update(f"{contiguous.dtype.str}{contiguous.shape};".encode())
        digest.update(contiguous.tobytes())
    return digest.hexdigest()


def data_checksums(data: CaseData) -> dict[str, str]:
    inputs: list[np.ndarray | None] = []
    for call in data.calls:
        inputs.append(call.inputs)
        inputs.append(call.mask)
        # Nested (a stack's per-cell states) flattened; a flat list gives the same bytes as before.
        inputs.extend(flatten_nested(call.initial_state) if call.initial_state is not None else [None])
    return {"inputs_sha256": checksum(inputs), "weights_sha256": checksum(data.weights)}


def sample(outputs: Sequence[np.ndarray], size: int = SAMPLE_SIZE) -> dict[str, Any]:
    """Up to ``size`` evenly spaced values of all outputs, flattened, as exact floats."""
    flat = np.concatenate([np.asarray(o, dtype=np.float64).ravel() for o in outputs]) if outputs else np.zeros(0)
    if flat.size == 0:
        return {"total": 0, "indices": [], "values": []}
    indices = np.unique(np.linspace(0, flat.size - 1, min(size, flat.size)).round().astype(int))
    return {"total": int(flat.size), "indices": indices.tolist(), "values": [float(v) for v in flat[indices]]}


def environment(handle: Any) -> dict[str, Any]:
    """Versions that decide the Keras numbers, for the report header.

    The keys are the report format's, kept from its first version so that older reports stay
    comparable: ``keras_version`` holds the release string (the handle's ``keras_release``)
    and ``keras_major`` the 2 or 3 (the handle's and the twins' ``keras_version``).
    """
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "rnnparity": rnnparity.__version__,
        "tensorflow": tensorflow_version(),
        "keras_package": handle.package,
        "keras_version": handle.keras_release,
        "keras_major": handle.keras_version,
        "keras_backend": handle.backend,
        "keras_flavor": handle.flavor,
        "gelu_form": None,
        "jax_x64": handle.environment["jax_x64"],
    }
    if handle.backend == "tensorflow":
        env["gelu_form"] = tensorflow_gelu_form()
    return env


def case_record(result: Any, checksums: dict[str, str]) -> dict[str, Any]:
    """One configuration's entry, from a ``parity.CaseResult``."""
    case = result.case
    return {
        "id": case.case_id,
        "family": case.family,
        "config": case.to_dict(),
        "seed": case.seed,
        **checksums,
        "outputs_sha256": checksum(result.keras_outputs),
        "outputs_sample": sample(result.keras_outputs),
        "parity": {
            "ok": result.ok,
            "max_abs_err": _json_float(result.max_abs),
            "max_rel_err": _json_float(result.max_rel),
            "tolerance_used": _json_float(result.tolerance_used),
            "message": result.message,
        },
    }


def _json_float(value: float) -> float | str:
    return value if math.isfinite(value) else repr(value)


def build_report(
    env: dict[str, Any], records: list[dict[str, Any]], options: dict[str, Any], families: Sequence[str] | None = None
) -> dict[str, Any]:
    """A report of ``records``; ``families``: the families of cases the writing rnnparity
    has (default: those of the records), so ``diff`` can tell a family an older version did
    not have from cases left out by ``-k``."""
    records = [r if "family" in r else {**r, "family": "layer"} for r in records]  # records older code built
    known = list(families) if families is not None else sorted({r["family"] for r in records})
    per_family = {name: sum(1 for r in records if r["family"] == name) for name in known}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": env,
        "options": options,
        "families": known,
        "summary": {
            "configurations": len(records),
            "failed": sum(1 for r in records if not r["parity"]["ok"]),
            "per_family": per_family,
        },
        "cases": records,
    }


def write_report(path: str, report: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=1, allow_nan=True)
        handle.write("\n")


def load_report(path: str) -> dict[str, Any]:
    """Read and validate a report; raises ``ReportError`` with a one-line reason."""
    try:
        with open(path, encoding="utf-8") as handle:
            report = json.load(handle)
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ReportError(f"{path}: is a directory, not a report") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: cannot be read ({exc.__class__.__name__}: {exc})") from None
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(report, dict) or report.get("format") != FORMAT:
        raise ReportError(f"{path}: not an rnnparity check report (reports come from `rnnparity check --json REPORT.json`)")
    version = report.get("format_version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        readable = " and ".join(str(v) for v in READABLE_VERSIONS)
        raise ReportError(
            f"{path}: report format version {version!r}; this rnnparity reads versions {readable} "
            f"(a newer rnnparity wrote it? upgrade, or write both reports with this one)"
        )
    cases = report.get("cases")
    if not isinstance(cases, list) or not isinstance(report.get("environment"), dict):
        raise ReportError(f"{path}: report has no 'cases' list or no 'environment'")
    if version == 1:
        # Version 1 predates families: every case is a single-layer one.
        report["families"] = ["layer"]
        for record in cases:
            if isinstance(record, dict):
                record.setdefault("family", "layer")
    families = report.get("families")
    if not isinstance(families, list) or not all(isinstance(f, str) for f in families):
        raise ReportError(f"{path}: report format version 2 needs a 'families' list of names")
    required = ("id", "family", "config", "inputs_sha256", "weights_sha256", "outputs_sha256", "outputs_sample")
    seen: set[str] = set()
    for index, record in enumerate(cases):
        if not isinstance(record, dict) or any(key not in record for key in required):
            raise ReportError(f"{path}: case #{index} lacks one of {list(required)}")
        problem = _record_problem(record)
        if problem:
            raise ReportError(f"{path}: case #{index} is malformed: {problem}")
        if record["id"] in seen:
            raise ReportError(f"{path}: case id {record['id']!r} appears twice")
        seen.add(record["id"])
    return report


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _record_problem(record: dict[str, Any]) -> str | None:
    """What is wrong with the types of one case record (None if nothing): everything diff reads."""
    if not isinstance(record["id"], str):
        return f"'id' must be a string; got {type(record['id']).__name__}"
    if not isinstance(record["family"], str):
        return f"'family' must be a string; got {type(record['family']).__name__}"
    if not isinstance(record["config"], dict):
        return f"'config' must be an object; got {type(record['config']).__name__}"
    for key in ("inputs_sha256", "weights_sha256", "outputs_sha256"):
        if not isinstance(record[key], str):
            return f"{key!r} must be a string; got {type(record[key]).__name__}"
    dtype = record["config"].get("dtype", "float32")
    if dtype not in ("float32", "float64"):
        return f"config 'dtype' must be 'float32' or 'float64'; got {dtype!r}"
    sample = record["outputs_sample"]
    if not isinstance(sample, dict) or any(key not in sample for key in ("total", "indices", "values")):
        return "'outputs_sample' must be an object with 'total', 'indices' and 'values'"
    total, indices, values = sample["total"], sample["indices"], sample["values"]
    if not isinstance(total, int) or isinstance(total, bool) or total < 0:
        return f"'outputs_sample.total' must be a non-negative integer; got {total!r}"
    if not isinstance(indices, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
        return "'outputs_sample.indices' must be a list of integers"
    if not isinstance(values, list) or not all(_is_number(v) for v in values) or len(values) != len(indices):
        return "'outputs_sample.values' must be a list of numbers, one per index"
    return None


@dataclass
class Drift:
    case_id: str
    config: dict[str, Any]
    max_change: float
    tolerance_used: float
    causes: list[str]


@dataclass
class DiffResult:
    identical: int = 0
    within_tolerance: int = 0
    changed_within: list[Drift] = field(default_factory=list)  # the within_tolerance configurations, named
    drifted: list[Drift] = field(default_factory=list)
    only_old: list[str] = field(default_factory=list)
    only_new: list[str] = field(default_factory=list)
    # Cases of a family the other report's rnnparity did not have, per family: ids.
    family_not_in_old: dict[str, list[str]] = field(default_factory=dict)
    family_not_in_new: dict[str, list[str]] = field(default_factory=dict)
    shared_per_family: dict[str, int] = field(default_factory=dict)
    incompatible: list[str] = field(default_factory=list)
    not_observed: list[tuple[str, int]] = field(default_factory=list)

    @property
    def groups(self) -> dict[str, list[Drift]]:
        groups: dict[str, list[Drift]] = {}
        for drift in self.drifted:
            groups.setdefault(" + ".join(drift.causes) or "unexplained", []).append(drift)
        return groups


def diff_reports(old: dict[str, Any], new: dict[str, Any], rtol: float | None = None, atol: float | None = None) -> DiffResult:
    """Compare the Keras numbers of two reports, configuration by configuration."""
    old_cases = {r["id"]: r for r in old["cases"]}
    new_cases = {r["id"]: r for r in new["cases"]}
    result = DiffResult()
    for here, there, there_families, only, by_family in (
        (old_cases, new_cases, new.get("families", ["layer"]), result.only_old, result.family_not_in_new),
        (new_cases, old_cases, old.get("families", ["layer"]), result.only_new, result.family_not_in_old),
    ):
        for case_id in sorted(set(here) - set(there)):
            family = here[case_id].get("family", "layer")
            if family in there_families:
                only.append(case_id)
            else:
                by_family.setdefault(family, []).append(case_id)
    shared = [case_id for case_id in old_cases if case_id in new_cases]
    for case_id in shared:
        family = new_cases[case_id].get("family", "layer")
        result.shared_per_family[family] = result.shared_per_family.get(family, 0) + 1
    for case_id in shared:
        a, b = old_cases[case_id], new_cases[case_id]
        if a["inputs_sha256"] != b["inputs_sha256"] or a["weights_sha256"] != b["weights_sha256"]:
            result.incompatible.append(case_id)
    if result.incompatible:
        return result

    old_env, new_env = old["environment"], new["environment"]
    expected: dict[str, int] = {}
    observed: set[str] = set()
    for case_id in shared:
        a, b = old_cases[case_id], new_cases[case_id]
        config = a["config"]
        explaining = [d.id for d in known_differences.explain(config, old_env, new_env)]
        for entry in explaining:
            expected[entry] = expected.get(entry, 0) + 1
        if a["outputs_sha256"] == b["outputs_sha256"]:
            result.identical += 1
            continue
        change, used = _sample_change(a["outputs_sample"], b["outputs_sample"], config.get("dtype", "float32"), rtol, atol)
        if used <= 1.0:
            result.within_tolerance += 1
            result.changed_within.append(Drift(case_id, config, change, used, explaining))
            continue
        observed.update(explaining)
        result.drifted.append(Drift(case_id, config, change, used, explaining))
    result.not_observed = sorted((entry, count) for entry, count in expected.items() if entry not in observed)
    result.drifted.sort(key=lambda d: -d.max_change)
    return result


def _sample_change(
    a: dict[str, Any], b: dict[str, Any], dtype: str, rtol: float | None, atol: float | None
) -> tuple[float, float]:
    """(largest absolute change, share of the tolerance used) between two stored samples."""
    if a["total"] != b["total"] or a["indices"] != b["indices"]:
        return math.inf, math.inf
    old = np.asarray(a["values"], dtype=np.float64)
    new = np.asarray(b["values"], dtype=np.float64)
    result = compare_arrays(old, new, dtype=dtype, rtol=rtol, atol=atol)
    return result.max_abs, result.tolerance_used
