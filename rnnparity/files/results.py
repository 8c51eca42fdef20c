"""What ``rnnparity verify`` records: one row per recurrent layer (:class:`LayerResult`), the
whole report (:class:`VerifyReport`), and each captured layer call (:class:`Capture`), which
:mod:`rnnparity.files.export` writes out as test vectors."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class LayerResult:
    """One recurrent layer's row of the verify table."""

    name: str
    type: str
    summary: str
    status: str  # "ok", "MISMATCH", "skipped", "not called"
    max_abs: float | None = None
    max_rel: float | None = None
    tolerance_used: float | None = None
    rtol: float | None = None  # the tolerance the twin was held to: |twin - keras| <= atol + rtol * |keras|
    atol: float | None = None
    detail: str = ""
    calls: int = 0
    file_weights: str = ""  # HDF5 files: whether the weights read without Keras equal Keras's ("identical")
    assumptions: list[str] = field(default_factory=list)  # weights-only files: what the twin assumed


@dataclass
class VerifyReport:
    """What ``rnnparity verify`` found (``--json`` writes :meth:`to_dict`)."""

    model: str
    keras: str
    inputs: list[dict[str, Any]]
    layers: list[LayerResult]
    other_layers: int
    seed: int | None
    exports: list[dict[str, Any]] = field(default_factory=list)
    weights_only: bool = False  # each recurrent layer checked alone; there is no model to run
    drift_hint: str = ""  # the layers that would compute other numbers under the other Keras (rnnparity.files.drift)

    @property
    def ok(self) -> bool:
        return all(layer.status != "MISMATCH" for layer in self.layers)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


@dataclass
class Capture:
    """One call of a Keras recurrent layer as Keras made it, and the twin that redoes it."""

    layer: Any
    twin: Any
    inputs: np.ndarray
    mask: np.ndarray | None
    initial_state: Any
    keras_result: Any = None
