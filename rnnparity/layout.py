"""Where each gate lives inside Keras's ``kernel``, ``recurrent_kernel`` and ``bias``.

Keras concatenates the per-gate matrices along the last axis, in a fixed order per layer:

* LSTM: ``i, f, c, o`` (input, forget, cell candidate, output) -> ``4 * units`` columns.
* GRU: ``z, r, h`` (update, reset, candidate) -> ``3 * units`` columns. With
  ``reset_after=True`` the bias has two rows: row 0 is added to the input projection,
  row 1 to the recurrent projection (before the reset gate multiplies it).
* SimpleRNN: one block of ``units`` columns.

Every slice in the package is derived from these constants.
"""

from __future__ import annotations

GATE_ORDER: dict[str, tuple[str, ...]] = {
    "lstm": ("i", "f", "c", "o"),
    "gru": ("z", "r", "h"),
    "simple_rnn": ("h",),
}


def gate_slice(kind: str, gate: str, units: int) -> slice:
    """Columns of ``gate`` in a ``kernel``/``recurrent_kernel``/``bias`` of layer ``kind``."""
    order = GATE_ORDER[kind]
    k = order.index(gate)
    return slice(k * units, (k + 1) * units)


def weight_shapes(
    kind: str, units: int, input_dim: int, use_bias: bool = True, reset_after: bool = True
) -> list[tuple[int, ...]]:
    """Shapes of the Keras weight list ``[kernel, recurrent_kernel, (bias)]``."""
    width = len(GATE_ORDER[kind]) * units
    shapes: list[tuple[int, ...]] = [(input_dim, width), (units, width)]
    if use_bias:
        shapes.append((2, width) if kind == "gru" and reset_after else (width,))
    return shapes
