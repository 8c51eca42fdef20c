"""The port check's report: per call and output, per recurrent layer, and its text form."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rnnparity.files.ports.localize import LayerMatch


@dataclass
class OutputResult:
    call: int
    output: str
    status: str  # "ok" or "MISMATCH"
    max_abs: float
    max_rel: float
    tolerance_used: float
    detail: str = ""


@dataclass
class PortReport:
    model: str
    port: str
    runtime: str
    keras: str
    inputs: list[dict[str, Any]]
    calls: int
    calls_note: str
    pad: str
    seed: int | None
    outputs: list[OutputResult] = field(default_factory=list)
    layers: list[LayerMatch] = field(default_factory=list)
    kernels: str = ""
    localization: str = ""
    state_note: str = ""

    @property
    def ok(self) -> bool:
        return all(row.status == "ok" for row in self.outputs)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data
