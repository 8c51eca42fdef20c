"""The explain table as text, Markdown or JSON, from :func:`rnnparity.layout.explain_layout`
data. Shared by ``rnnparity explain`` and the generated docs page (:mod:`rnnparity.cli.docs`)."""

from __future__ import annotations

import json
from typing import Any

from rnnparity.cli.table import render
from rnnparity.layout import KERAS_CLASS_NAME, KINDS

FORMATS = ("text", "markdown", "json")
_KIND_OF_CLASS = {name.lower(): kind for kind, name in KERAS_CLASS_NAME.items()}


def conv_rank_of(name: str) -> int | None:
    """The rank of a ConvLSTM kind or Keras class name, any case: ``conv_lstm2d``, ``ConvLSTM2D``
    -> 2 (None when it is neither)."""
    lowered = name.lower()
    for rank in (1, 2, 3):
        if lowered in (f"conv_lstm{rank}d", f"convlstm{rank}d"):
            return rank
    return None


def kind_of(name: str) -> str | None:
    """The layout kind for a kind or a Keras class name, any case: ``lstm``, ``LSTM``,
    ``SimpleRNN``, ``simple_rnn`` (None when it is neither)."""
    lowered = name.lower()
    if lowered in KINDS:
        return lowered
    return _KIND_OF_CLASS.get(lowered)


def render_explain(data: dict[str, Any], fmt: str) -> str:
    """The explain table in ``fmt`` (text, markdown or json)."""
    if fmt == "json":
        return json.dumps(data, indent=2)
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}; got {fmt!r}")
    gates = data["gates"]
    if "filters" in data:  # a ConvLSTM (rnnparity.layout.explain_conv_lstm_layout)
        size = "x".join(str(k) for k in data["kernel_size"])
        title = f"{data['kind']} filters={data['filters']} kernel_size={size} input_channels={data['input_channels']}"
    else:
        title = f"{data['kind']} units={data['units']} input_dim={data['input_dim']}"
    if data["kind"] == "gru":
        title += f" reset_after={data['reset_after']}"
    header = ("gate", "kernel", "recurrent_kernel", "bias", "role")
    rows = [(g["gate"], g["kernel"], g["recurrent_kernel"], g["bias"], g["role"]) for g in gates]
    shape_line = ", ".join(f"{name} {tuple(shape)}" for name, shape in data["shapes"].items() if shape is not None)
    equations = list(data["equations"])
    notes = list(data.get("notes", []))  # ConvLSTM: the gate blocks, the two convolutions, PyTorch
    if fmt == "markdown":
        quoted = [tuple(f"`{c}`" if i < 4 else c for i, c in enumerate(row)) for row in rows]
        lines = [f"### {title}", "", f"Shapes: {shape_line}. Gate order: {', '.join(data['gate_order'])}.", ""]
        lines.append(render(header, quoted, markdown=True))
        lines += ["", "Equations, in order:", ""] + [f"    {e}" for e in equations]
        if notes:
            lines += ["", *(f"- {note}" for note in notes)]
        return "\n".join(lines)
    lines = [title, shape_line, "", render(header, rows, rule=False)]
    lines += ["", "equations, in order:"] + [f"  {e}" for e in equations]
    if notes:
        lines += ["", "notes:"] + [f"  - {note}" for note in notes]
    return "\n".join(lines)
