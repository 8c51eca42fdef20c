"""What ``rnnparity check`` runs: each family of matrix cases, with the runner that checks it.

A family is a name, a function giving its cases for one Keras version (``quick``: about one
in eight), and a runner ``(case, handle) -> CaseResult``. Each case says its family in a
``family`` class attribute; reports record the families their rnnparity ran, so ``diff``
can tell "written by a version without these cases" from "missing". To add a family (as
``conv`` did): a NumPy-only case description with ``family``, ``case_id``, ``kind``, ``dtype``,
``keras_version``, ``seed`` and ``to_dict()``, a seeded ``make_data``-like function, a
runner returning :class:`~rnnparity.suite.parity.CaseResult` with the Keras outputs and the
data checksums, and one :class:`Family` line in :data:`FAMILIES`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rnnparity.suite import conv_matrix, matrix, parity, wrapper_matrix
from rnnparity.suite.keras_adapter import KerasHandle
from rnnparity.suite.matrix import CaseData


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    cases: Callable[[int, bool], Sequence[Any]]
    make_data: Callable[[Any], CaseData]
    run: Callable[[Any, KerasHandle], parity.CaseResult]


FAMILIES: tuple[Family, ...] = (
    Family("layer", "single-layer (LSTM, GRU, SimpleRNN)", matrix.all_cases, matrix.make_data, parity.run_case),
    Family(
        "wrapper",
        "wrapper (Bidirectional, RNN(cell), stacked cells)",
        wrapper_matrix.wrapper_cases,
        wrapper_matrix.make_wrapper_data,
        parity.run_wrapper_case,
    ),
    Family(
        "conv",
        "ConvLSTM (ConvLSTM1D, ConvLSTM2D, ConvLSTM3D)",
        conv_matrix.conv_cases,
        conv_matrix.make_conv_data,
        parity.run_conv_case,
    ),
)
_BY_NAME = {family.name: family for family in FAMILIES}


def family_names() -> list[str]:
    return [family.name for family in FAMILIES]


def all_cases(keras_version: int, quick: bool = False) -> list[Any]:
    """Every family's cases for one Keras version, family by family."""
    return [case for family in FAMILIES for case in family.cases(keras_version, quick)]


def run(case: Any, handle: KerasHandle) -> parity.CaseResult:
    """Check one case of any family against ``handle``'s Keras."""
    return _BY_NAME[case.family].run(case, handle)


def make_data(case: Any) -> CaseData:
    """The seeded data of one case of any family."""
    return _BY_NAME[case.family].make_data(case)


def describe_counts(cases: Sequence[Any]) -> str:
    """How many of ``cases`` each family has, e.g. ``1252 single-layer (...), 320 wrapper (...)``."""
    counts = {family.name: 0 for family in FAMILIES}
    for case in cases:
        counts[case.family] += 1
    return ", ".join(f"{counts[f.name]} {f.description}" for f in FAMILIES if counts[f.name])
