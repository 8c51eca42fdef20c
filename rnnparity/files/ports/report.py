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


def format_report(report: PortReport) -> str:
    """The text the CLI prints: per call and output, then per recurrent layer, then the verdict."""
    header = ("call", "output", "max abs err", "max rel err", "of tolerance", "status")
    rows: list[tuple[str, ...]] = [header]
    for row in report.outputs:
        rows.append(
            (str(row.call), row.output, f"{row.max_abs:.3g}", f"{row.max_rel:.3g}", f"{row.tolerance_used:.3g}x", row.status)
        )
    lines = [f"port: {report.port} ({report.runtime})", f"Keras: {report.keras}"]
    described = ", ".join(f"{i['name']} {tuple(i['shape'])} {i['dtype']}" for i in report.inputs)
    source = f"seed {report.seed}" if report.seed is not None else "from --inputs"
    lines.append(f"inputs ({source}, padding {report.pad}): {described}")
    lines.append(f"calls: {report.calls_note}")
    if report.kernels:
        lines.append(f"recurrent kernels in the port: {report.kernels}")
    lines.append("")
    lines.extend(_table(rows))
    if report.layers:
        lines.append("")
        layer_rows: list[tuple[str, ...]] = [("layer", "type", "in the port", "kernel", "detail")]
        for layer in report.layers:
            layer_rows.append((layer.name, layer.type, layer.status, layer.kernel or "-", layer.detail))
        lines.extend(_table(layer_rows))
    for row in report.outputs:
        if row.status != "ok":
            lines.append(f"\n{row.detail}")
            break
    if report.localization:
        lines.append(report.localization)
    if report.state_note:
        lines.append(report.state_note)
    return "\n".join(lines)


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)] + [0]
    lines = ["  ".join(value.ljust(width) for value, width in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths[:-1]) + "  ------")
    return lines
