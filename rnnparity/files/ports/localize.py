"""Which port tensor holds each recurrent layer's result, and the first layer that diverges.

Each recurrent layer's Keras results (output, then states) are looked for among the port's
intermediate tensors by shape and value with the one tolerance helper, in the layouts runtimes
use (batch-major, time-major, ONNX's ``(time, directions, batch, units)``, size-1 axes), never by
name: a fused ONNX ``LSTM`` or a TFLite ``WHILE`` output carries no layer name. A layer whose
output shape is found but whose values are not *differs*; the first such layer is named.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rnnparity.files.ports.common import KerasSide, Port


@dataclass
class LayerMatch:
    name: str
    type: str
    status: str  # "matches", "differs", "not found", "not probed"
    tensor: str = ""
    kernel: str = ""
    max_abs: float | None = None
    detail: str = ""


def _views(port_array: np.ndarray, shape: tuple[int, ...]) -> Iterator[tuple[str, np.ndarray]]:
    """The ways a port may lay out a Keras array of ``shape``: as is, time-major, ONNX's
    ``(time, directions, batch, units)``, ``(directions, batch, units)``, extra unit axes."""
    if port_array.size != int(np.prod(shape)):
        return
    if port_array.shape == shape:
        yield "", port_array
    if port_array.ndim == 3 and len(shape) == 3 and port_array.shape[1::-1] + port_array.shape[2:] == shape:
        yield "time-major", port_array.transpose(1, 0, 2)
    if port_array.ndim == 4 and len(shape) == 3:
        steps, directions, batch, units = port_array.shape
        if (batch, steps, directions * units) == shape:
            yield "(time, directions, batch, units)", port_array.transpose(2, 0, 1, 3).reshape(shape)
    if port_array.ndim == 3 and len(shape) == 2:
        directions, batch, units = port_array.shape
        if (batch, directions * units) == shape:
            yield "(directions, batch, units)", port_array.transpose(1, 0, 2).reshape(shape)
    squeezed = np.squeeze(port_array)
    if squeezed.shape == shape and port_array.shape != shape and 1 not in shape:
        yield "size-1 axes dropped", squeezed


def match_layers(
    keras: KerasSide,
    layer_results: dict[str, list[np.ndarray]],
    port: Port,
    tensors: list[tuple[str, np.ndarray]],
    dtype: str,
) -> list[LayerMatch]:
    """For each recurrent layer, the port tensor holding its output (or a state), if any."""
    from rnnparity.compare import compare_arrays

    rows = []
    kernels = {name: port.kernel_of(name) for name, array in tensors if array.dtype.kind == "f"}
    # Tensors a recurrent kernel computed come first: a fused TFLite LSTM also leaves its final
    # state in an input tensor (a variable), and other ops may share the shape by chance.
    floating = sorted(
        ((name, array) for name, array in tensors if array.dtype.kind == "f"), key=lambda item: not kernels[item[0]]
    )
    for info in keras.recurrent:
        row = LayerMatch(info.name, info.type, "not probed")
        results = layer_results.get(info.name)
        if not results:
            rows.append(row)
            continue
        closest: tuple[tuple[int, float], str, float, str] | None = None
        for which, reference in enumerate(results):
            for name, array in floating:
                for layout, view in _views(array, reference.shape):
                    result = compare_arrays(reference, view.astype(reference.dtype), dtype=dtype)
                    if result.ok:
                        row.status, row.tensor, row.max_abs = "matches", name, result.max_abs
                        row.kernel = kernels[name]
                        row.detail = f"its {'output' if which == 0 else f'state {which}'} is port tensor {name!r}" + (
                            f" ({layout})" if layout else ""
                        )
                        break
                    # The closest candidate, preferring tensors a recurrent kernel computed over
                    # constants and other ops that merely share the shape.
                    rank = (0 if kernels[name] else 1, result.tolerance_used)
                    if which == 0 and (closest is None or rank < closest[0]):
                        closest = (rank, name, result.max_abs, layout)
                if row.status == "matches":
                    break
            if row.status == "matches":
                break
        if row.status != "matches":
            if closest is None:
                row.status, row.detail = "not found", "no port tensor has the shape of its output"
            else:
                _, name, max_abs, layout = closest
                row.status, row.tensor, row.max_abs = "differs", name, max_abs
                row.kernel = kernels[name]
                row.detail = f"closest port tensor of its output's shape, {name!r}" + (f" ({layout})" if layout else "")
                row.detail += f", is off by up to {max_abs:.3g}"
        rows.append(row)
    return rows


def localize(rows: list[LayerMatch]) -> str:
    """The sentence naming the first diverging recurrent layer, or why there is none."""
    for row in rows:
        if row.status == "differs":
            return f"first diverging recurrent layer: {row.name} ({row.type}); {row.detail}"
    unmatched = [row.name for row in rows if row.status != "matches"]
    if not rows:
        return "localization not possible: the model has no recurrent layer"
    if unmatched:
        return (
            f"localization not possible: no port tensor could be matched to {', '.join(unmatched)}; "
            "the layers that could be matched agree with Keras"
        )
    return "every recurrent layer's output is found in the port and agrees; the divergence comes after them"
