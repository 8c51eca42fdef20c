"""Where each gate lives inside Keras's ``kernel``, ``recurrent_kernel`` and ``bias``.

Keras concatenates the per-gate matrices along the last axis, in a fixed order per layer:

* LSTM: ``i, f, c, o`` (input, forget, cell candidate, output) -> ``4 * units`` columns.
* GRU: ``z, r, h`` (update, reset, candidate) -> ``3 * units`` columns. With
  ``reset_after=True`` the bias has two rows: row 0 is added to the input projection,
  row 1 to the recurrent projection (before the reset gate multiplies it).
* SimpleRNN: one block of ``units`` columns.
* ConvLSTM1D/2D/3D: the LSTM gates ``i, f, c, o`` along the last axis of
  ``(*kernel_size, channels, 4 * filters)`` kernels, ``filters`` wide each.

Every slice in the package is derived from these constants (``GATE_ORDER`` for Keras's
arrays, ``STEP_ORDER`` for the cells' gate-major copies).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

GATE_ORDER: dict[str, tuple[str, ...]] = {
    "lstm": ("i", "f", "c", "o"),
    "gru": ("z", "r", "h"),
    "simple_rnn": ("h",),
}

# The order in which each cell's step stacks its gates (its gate-major copies of the weights,
# its projections, the pre-activations gradients record): a permutation of GATE_ORDER.
# LSTM puts o before c so that the three gates that share ``recurrent_activation`` (i, f, o)
# are adjacent and one call activates them; the candidate c gets ``activation`` on its own.
# GRU and SimpleRNN step in Keras's order. Keras's own weights are never reordered.
STEP_ORDER: dict[str, tuple[str, ...]] = {
    "lstm": ("i", "f", "o", "c"),
    "gru": ("z", "r", "h"),
    "simple_rnn": ("h",),
}


def step_index(kind: str) -> dict[str, int]:
    """Where each gate of ``kind`` sits in its step's gate-major arrays (``STEP_ORDER``)."""
    return {gate: index for index, gate in enumerate(STEP_ORDER[kind])}


def step_span(kind: str, gates: str) -> slice:
    """The slice of a step's gate-major arrays that holds ``gates`` (adjacent in ``STEP_ORDER``)."""
    indices = sorted(step_index(kind)[gate] for gate in gates)
    if indices != list(range(indices[0], indices[0] + len(indices))):
        raise ValueError(f"gates {gates!r} are not adjacent in STEP_ORDER[{kind!r}] = {STEP_ORDER[kind]}")
    return slice(indices[0], indices[-1] + 1)


KERAS_CLASS_NAME = {"lstm": "LSTM", "gru": "GRU", "simple_rnn": "SimpleRNN"}


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


# ---------------------------------------------------------------------------- gate views

GATE_ROLES: dict[str, dict[str, str]] = {
    "lstm": {
        "i": "input gate: how much of the new candidate enters the cell state",
        "f": "forget gate: how much of the previous cell state is kept",
        "c": "cell candidate: the new content proposed for the cell state",
        "o": "output gate: how much of the squashed cell state becomes h",
    },
    "gru": {
        "z": "update gate: how much of the previous h is kept",
        "r": "reset gate: how much of the previous h feeds the candidate",
        "h": "candidate: the new state proposed for h",
    },
    "simple_rnn": {"h": "the new state h (and output)"},
}

GATE_EQUATIONS: dict[str, dict[str, str]] = {
    "lstm": {
        "i": "i = recurrent_activation(x @ W_i + h_tm1 @ U_i + b_i)",
        "f": "f = recurrent_activation(x @ W_f + h_tm1 @ U_f + b_f)",
        "c": "c = f * c_tm1 + i * activation(x @ W_c + h_tm1 @ U_c + b_c)",
        "o": "o = recurrent_activation(x @ W_o + h_tm1 @ U_o + b_o);  h = o * activation(c)",
    },
    "gru_reset_after": {
        "z": "z = recurrent_activation(x @ W_z + b_z + h_tm1 @ U_z + br_z)",
        "r": "r = recurrent_activation(x @ W_r + b_r + h_tm1 @ U_r + br_r)",
        "h": "hh = activation(x @ W_h + b_h + r * (h_tm1 @ U_h + br_h));  h = z * h_tm1 + (1 - z) * hh",
    },
    "gru_reset_before": {
        "z": "z = recurrent_activation(x @ W_z + b_z + h_tm1 @ U_z)",
        "r": "r = recurrent_activation(x @ W_r + b_r + h_tm1 @ U_r)",
        "h": "hh = activation(x @ W_h + b_h + (r * h_tm1) @ U_h);  h = z * h_tm1 + (1 - z) * hh",
    },
    "simple_rnn": {"h": "h = activation(x @ W + b + h_tm1 @ U)"},
}

KINDS = tuple(GATE_ORDER)

# ConvLSTM1D/2D/3D keep the LSTM gates, in the LSTM order, along the last axis of their
# kernels (*kernel_size, channels, 4 * filters), (*kernel_size, filters, 4 * filters) and of
# their bias (4 * filters,). split_gates and join_gates take these kinds too ("conv_lstm" for
# any rank, or the rank's own name, as explain_conv_lstm_layout names it).
CONV_KINDS = ("conv_lstm", "conv_lstm1d", "conv_lstm2d", "conv_lstm3d")
CONV_GATE_ORDER = GATE_ORDER["lstm"]


def _check_kind(kind: str) -> str:
    if kind not in GATE_ORDER:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    return kind


def _check_gate_kind(kind: str) -> str:
    """A kind split_gates / join_gates take: a layer kind or a ConvLSTM kind."""
    if kind not in GATE_ORDER and kind not in CONV_KINDS:
        raise ValueError(f"kind must be one of {KINDS + CONV_KINDS}; got {kind!r}")
    return kind


def _gate_order(kind: str) -> tuple[str, ...]:
    return CONV_GATE_ORDER if kind in CONV_KINDS else GATE_ORDER[kind]


def _weights_of(layer_or_weights: Any, kind: str | None, reset_after: bool | None) -> tuple[list[Any], str, bool]:
    """(weights, kind, reset_after) from a twin layer/cell or a Keras-layout weight list."""
    cell = getattr(layer_or_weights, "cell", layer_or_weights)
    if hasattr(cell, "get_weights") and hasattr(cell, "kind"):
        return cell.get_weights(), cell.kind, bool(getattr(cell, "reset_after", True))
    if kind is None:
        raise TypeError(f"split_gates needs kind= one of {KINDS + CONV_KINDS} when given a weight list")
    if isinstance(layer_or_weights, (str, bytes, np.ndarray)) or not hasattr(layer_or_weights, "__len__"):
        raise TypeError(
            f"split_gates takes a twin or a list [kernel, recurrent_kernel, (bias)]; got {type(layer_or_weights).__name__}"
        )
    weights = list(layer_or_weights)
    if reset_after is None:
        reset_after = kind == "gru" and len(weights) == 3 and np.ndim(weights[2]) == 2
    return weights, _check_gate_kind(kind), bool(reset_after)


def _check_gate_weights(kind: str, weights: list[np.ndarray], reset_after: bool) -> int:
    """The units (filters for a ConvLSTM) of Keras weights of ``kind``; ValueError naming the
    array when the shapes do not fit the layer's layout."""
    order = _gate_order(kind)
    if len(weights) not in (2, 3):
        raise ValueError(f"weights must be [kernel, recurrent_kernel, (bias)] of a {kind}; got {len(weights)} arrays")
    kernel, recurrent = weights[0], weights[1]
    conv = kind in CONV_KINDS
    rank = {"conv_lstm1d": 1, "conv_lstm2d": 2, "conv_lstm3d": 3}.get(kind)
    if conv:
        ranks = (rank + 2,) if rank else (3, 4, 5)
        if recurrent.ndim not in ranks:
            expected = " or ".join(f"{r}-D" for r in ranks)
            raise ValueError(
                f"recurrent_kernel must be {expected} (*kernel_size, filters, 4 * filters) for {kind}; "
                f"got shape {recurrent.shape}"
            )
    elif recurrent.ndim != 2:
        raise ValueError(f"recurrent_kernel must be 2-D (units, {len(order)} * units) for {kind}; got shape {recurrent.shape}")
    width = recurrent.shape[-1]
    units = recurrent.shape[-2]
    if width != len(order) * units:
        what = "filters" if conv else "units"
        raise ValueError(
            f"recurrent_kernel has shape {recurrent.shape}; a {kind} has ({'*kernel_size, ' if conv else ''}{what}, "
            f"{len(order)} * {what}) = last axis {len(order) * units}"
        )
    if conv:
        expected_kernel = "(*kernel_size, channels, 4 * filters)"
        fits = kernel.ndim == recurrent.ndim and kernel.shape[:-2] == recurrent.shape[:-2] and kernel.shape[-1] == width
    else:
        expected_kernel = f"(input_dim, {width})"
        fits = kernel.ndim == 2 and kernel.shape[-1] == width
    if not fits:
        raise ValueError(
            f"kernel has shape {kernel.shape}; with recurrent_kernel {recurrent.shape} a {kind} has {expected_kernel}"
        )
    if len(weights) == 3:
        bias = weights[2]
        expected_bias: tuple[int, ...] = (2, width) if kind == "gru" and reset_after else (width,)
        if bias.shape != expected_bias:
            what = "filters" if conv else "units"
            raise ValueError(f"bias has shape {bias.shape}; a {kind} with {units} {what} has {expected_bias}")
    return int(units)


def split_gates(layer_or_weights: Any, kind: str | None = None, reset_after: bool | None = None) -> dict[str, dict[str, Any]]:
    """Per-gate views of Keras weights: ``{gate: {"kernel", "recurrent_kernel", "bias"[, "recurrent_bias"]}}``.

    ``layer_or_weights`` is a twin (layer or cell, ConvLSTM ones included) or ``[kernel,
    recurrent_kernel, (bias)]`` with ``kind`` (``lstm``, ``gru``, ``simple_rnn``, or
    ``conv_lstm`` for a ConvLSTM1D/2D/3D, whose gates ``i, f, c, o`` lie along the last axis
    of ``(*kernel_size, channels, 4 * filters)`` kernels: each gate's block is then
    ``(*kernel_size, channels, filters)``). For GRU with ``reset_after=True`` the bias has two
    rows: ``bias`` is the input row, ``recurrent_bias`` the recurrent row. Arrays are copies;
    :func:`join_gates` reverses this exactly. Shapes that do not fit ``kind`` raise ``ValueError``.
    """
    weights, kind, reset_after = _weights_of(layer_or_weights, kind, reset_after)
    arrays = [np.asarray(w) for w in weights]
    units = _check_gate_weights(kind, arrays, reset_after)
    kernel, recurrent = arrays[0], arrays[1]
    bias = arrays[2] if len(arrays) > 2 else None
    gates: dict[str, dict[str, Any]] = {}
    for gate in _gate_order(kind):
        cols = gate_slice("lstm" if kind in CONV_KINDS else kind, gate, units)
        view: dict[str, Any] = {"kernel": kernel[..., cols].copy(), "recurrent_kernel": recurrent[..., cols].copy()}
        if bias is not None:
            if kind == "gru" and reset_after:
                view["bias"] = bias[0, cols].copy()
                view["recurrent_bias"] = bias[1, cols].copy()
            else:
                view["bias"] = bias[cols].copy()
        gates[gate] = view
    return gates


def join_gates(gates: dict[str, dict[str, Any]], kind: str, reset_after: bool = True) -> list[np.ndarray]:
    """Keras weights ``[kernel, recurrent_kernel, (bias)]`` from per-gate blocks (inverse of
    split_gates); ``kind`` as for :func:`split_gates` (``conv_lstm`` joins ConvLSTM blocks
    along their last axis)."""
    kind = _check_gate_kind(kind)
    order = _gate_order(kind)
    missing = [g for g in order if g not in gates]
    if missing:
        raise ValueError(f"join_gates for {kind} needs gates {list(order)}; missing {missing}")
    for name in ("kernel", "recurrent_kernel", "bias", "recurrent_bias"):
        shapes = {g: np.shape(gates[g][name]) for g in order if name in gates[g]}
        if len(set(shapes.values())) > 1:
            listed = ", ".join(f"{g} {shape}" for g, shape in shapes.items())
            raise ValueError(f"join_gates: every gate's {name} block must have one shape; got {listed}")
    kernel = np.concatenate([np.asarray(gates[g]["kernel"]) for g in order], axis=-1)
    recurrent = np.concatenate([np.asarray(gates[g]["recurrent_kernel"]) for g in order], axis=-1)
    weights = [kernel, recurrent]
    if all("bias" in gates[g] for g in order):
        bias = np.concatenate([np.asarray(gates[g]["bias"]) for g in order])
        if kind == "gru" and reset_after:
            recurrent_bias = np.concatenate([np.asarray(gates[g]["recurrent_bias"]) for g in order])
            bias = np.stack([bias, recurrent_bias])
        weights.append(bias)
    _check_gate_weights(kind, weights, reset_after)
    return weights


@dataclass(frozen=True)
class GateRow:
    gate: str
    role: str
    kernel: str
    recurrent_kernel: str
    bias: str
    equation: str


def explain_layout(kind: str, units: int, input_dim: int, reset_after: bool = True, use_bias: bool = True) -> dict[str, Any]:
    """Where every gate lives in ``kernel``, ``recurrent_kernel`` and ``bias``, with its equation."""
    kind = _check_kind(kind)
    if units <= 0 or input_dim <= 0:
        raise ValueError(f"units and input_dim must be positive; got units={units}, input_dim={input_dim}")
    shapes = weight_shapes(kind, units, input_dim, use_bias, reset_after)
    key = kind if kind != "gru" else ("gru_reset_after" if reset_after else "gru_reset_before")
    rows = []
    for gate in GATE_ORDER[kind]:
        cols = gate_slice(kind, gate, units)
        span = f"[:, {cols.start}:{cols.stop}]"
        if not use_bias:
            bias = "-"
        elif kind == "gru" and reset_after:
            bias = f"[0, {cols.start}:{cols.stop}] (input), [1, {cols.start}:{cols.stop}] (recurrent)"
        else:
            bias = f"[{cols.start}:{cols.stop}]"
        rows.append(GateRow(gate, GATE_ROLES[kind][gate], span, span, bias, GATE_EQUATIONS[key][gate]))
    return {
        "kind": kind,
        "units": units,
        "input_dim": input_dim,
        "reset_after": reset_after if kind == "gru" else None,
        "use_bias": use_bias,
        "gate_order": list(GATE_ORDER[kind]),
        "shapes": {name: list(shape) for name, shape in zip(("kernel", "recurrent_kernel", "bias"), shapes)},
        "gates": [row.__dict__ for row in rows],
        "equations": [GATE_EQUATIONS[key][gate] for gate in GATE_ORDER[kind]],
    }


CONV_LSTM_EQUATIONS = {
    "i": "i = recurrent_activation(conv(x, W_i) + b_i + conv_same(h_tm1, U_i))",
    "f": "f = recurrent_activation(conv(x, W_f) + b_f + conv_same(h_tm1, U_f))",
    "c": "c = f * c_tm1 + i * activation(conv(x, W_c) + b_c + conv_same(h_tm1, U_c))",
    "o": "o = recurrent_activation(conv(x, W_o) + b_o + conv_same(h_tm1, U_o));  h = o * activation(c)",
}


def explain_conv_lstm_layout(
    rank: int, filters: int, kernel_size: int | tuple[int, ...], input_channels: int, use_bias: bool = True
) -> dict[str, Any]:
    """Where every gate lives in a ConvLSTM{rank}D's ``kernel`` ``(*kernel_size, channels, 4 * filters)``,
    ``recurrent_kernel`` ``(*kernel_size, filters, 4 * filters)`` and ``bias`` ``(4 * filters,)``: the
    LSTM gates ``i, f, c, o`` along the last axis, ``filters`` wide each. ``conv`` uses the layer's
    strides, padding and dilation_rate; ``conv_same`` (the recurrent one) stride 1, ``same``, no dilation."""
    if rank not in (1, 2, 3):
        raise ValueError(f"rank must be 1, 2 or 3 (ConvLSTM1D/2D/3D); got {rank!r}")
    kernel = (kernel_size,) * rank if isinstance(kernel_size, int) else tuple(kernel_size)
    if len(kernel) != rank or min(kernel) <= 0 or filters <= 0 or input_channels <= 0:
        raise ValueError(
            f"filters, input_channels and a {rank}-tuple kernel_size must be positive; got filters={filters}, "
            f"kernel_size={kernel_size!r}, input_channels={input_channels}"
        )
    leading = ", ".join([":"] * (rank + 1))
    rows = []
    for gate in GATE_ORDER["lstm"]:
        cols = gate_slice("lstm", gate, filters)
        span = f"[{leading}, {cols.start}:{cols.stop}]"
        bias = f"[{cols.start}:{cols.stop}]" if use_bias else "-"
        rows.append(GateRow(gate, GATE_ROLES["lstm"][gate], span, span, bias, CONV_LSTM_EQUATIONS[gate]))
    shapes = {
        "kernel": [*kernel, input_channels, 4 * filters],
        "recurrent_kernel": [*kernel, filters, 4 * filters],
        "bias": [4 * filters] if use_bias else None,
    }
    blocks = ", ".join(f"{k}" for k in kernel)
    notes = [
        f"each gate's block is kernel[..., g * {filters}:(g + 1) * {filters}] ({blocks}, {input_channels}, {filters}) "
        f"and recurrent_kernel[..., same] ({blocks}, {filters}, {filters}); rnnparity.layout.split_gates(twin) returns them",
        "conv uses the layer's strides, padding and dilation_rate; conv_same (the recurrent convolution) stride 1, "
        "padding 'same' and no dilation, so h keeps the size of conv's output",
        f"PyTorch: {NO_TORCH_CONV_LSTM}",
    ]
    return {
        "kind": f"conv_lstm{rank}d",
        "filters": filters,
        "kernel_size": list(kernel),
        "input_channels": input_channels,
        "use_bias": use_bias,
        "gate_order": list(GATE_ORDER["lstm"]),
        "shapes": shapes,
        "gates": [row.__dict__ for row in rows],
        "equations": [CONV_LSTM_EQUATIONS[gate] for gate in GATE_ORDER["lstm"]],
        "notes": notes,
    }


# ---------------------------------------------------------------------------- PyTorch

# PyTorch's gate order per Keras kind. LSTM: Keras (i, f, c, o) is PyTorch (i, f, g, o), the same
# order under another name for the candidate. GRU: Keras (z, r, h) is PyTorch (r, z, n).
TORCH_GATE_ORDER: dict[str, tuple[str, ...]] = {"lstm": ("i", "f", "c", "o"), "gru": ("r", "z", "h"), "simple_rnn": ("h",)}
TORCH_MODULE = {"lstm": "torch.nn.LSTM", "gru": "torch.nn.GRU", "simple_rnn": "torch.nn.RNN"}
NO_TORCH_CONV_LSTM = (
    "torch.nn has no ConvLSTM module, so to_torch refuses it. The same step can be written with "
    "torch.nn.functional.conv1d/2d/3d (both compute a cross-correlation): Keras's kernel (*kernel_size, channels, "
    "4 * filters) is the conv weight np.moveaxis(kernel, (-1, -2), (0, 1)) = (4 * filters, channels, *kernel_size), "
    "its output channels the gates i, f, c, o, filters each (recurrent_kernel likewise, with filters input channels); "
    "the recurrent convolution runs with stride 1 and padding 'same'"
)


def _torch_compatible(cell: Any) -> None:
    """Raise ValueError unless ``cell`` has an exact PyTorch equivalent."""
    kind = cell.kind
    if kind in CONV_KINDS:
        raise ValueError(f"{cell.describe()} has no PyTorch equivalent: {NO_TORCH_CONV_LSTM}")
    name = KERAS_CLASS_NAME[kind]
    if kind == "simple_rnn":
        if cell.activation_name not in ("tanh", "relu"):
            raise ValueError(
                f"SimpleRNN(activation={cell.activation_name!r}) has no exact PyTorch equivalent: "
                f"torch.nn.RNN supports nonlinearity 'tanh' or 'relu' only"
            )
        return
    if cell.activation_name != "tanh" or cell.recurrent_activation_name != "sigmoid":
        raise ValueError(
            f"{name}(activation={cell.activation_name!r}, recurrent_activation={cell.recurrent_activation_name!r}) "
            f"has no exact PyTorch equivalent: {TORCH_MODULE[kind]} uses tanh and sigmoid only"
        )
    if kind == "gru" and not cell.reset_after:
        raise ValueError(
            "GRU(reset_after=False) has no exact PyTorch equivalent: torch.nn.GRU applies the reset gate after "
            "the recurrent matmul, which is Keras's reset_after=True"
        )


def _reorder(array: np.ndarray, source: tuple[str, ...], target: tuple[str, ...], axis: int) -> np.ndarray:
    blocks = dict(zip(source, np.split(array, len(source), axis=axis)))
    return np.concatenate([blocks[g] for g in target], axis=axis)


def _layer_to_torch(layer: Any, suffix: str) -> dict[str, np.ndarray]:
    cell = getattr(layer, "cell", layer)
    _torch_compatible(cell)
    kind = cell.kind
    keras_order, torch_order = GATE_ORDER[kind], TORCH_GATE_ORDER[kind]
    weights = cell.get_weights()
    state = {
        f"weight_ih_{suffix}": np.ascontiguousarray(_reorder(weights[0], keras_order, torch_order, axis=1).T),
        f"weight_hh_{suffix}": np.ascontiguousarray(_reorder(weights[1], keras_order, torch_order, axis=1).T),
    }
    if cell.use_bias:
        bias = weights[2]
        if kind == "gru":
            input_bias, recurrent_bias = bias[0], bias[1]
        else:
            input_bias, recurrent_bias = bias, np.zeros_like(bias)
        state[f"bias_ih_{suffix}"] = _reorder(input_bias, keras_order, torch_order, axis=0)
        state[f"bias_hh_{suffix}"] = _reorder(recurrent_bias, keras_order, torch_order, axis=0)
    return state


def to_torch(layers: Any, as_tensors: bool = False) -> dict[str, Any]:
    """A state dict for ``torch.nn.LSTM`` / ``GRU`` / ``RNN`` from twins with Keras weights.

    ``layers`` is one twin (layer or cell), a list of them (``num_layers``), and any entry may
    be a ``(forward, backward)`` pair (``bidirectional=True``; the backward twin is the one
    Keras's ``Bidirectional`` runs with ``go_backwards=True``) or a :class:`Bidirectional`
    twin; an ``RNN`` over ``StackedRNNCells`` gives one PyTorch layer per cell. Keras's single LSTM/SimpleRNN
    bias becomes ``bias_ih`` with a zero ``bias_hh``; GRU's two bias rows map to the two.
    Configurations with no exact PyTorch equivalent raise ``ValueError`` saying why. Arrays
    are NumPy unless ``as_tensors=True``.
    """
    stack = list(layers) if isinstance(layers, list) else [layers]
    if len(stack) == 1 and hasattr(getattr(stack[0], "cell", None), "cells"):
        stack = list(stack[0].cell.cells)  # RNN(StackedRNNCells): one PyTorch layer per cell
    # A Bidirectional twin is its (forward, backward) pair.
    stack = [(e.forward_layer, e.backward_layer) if hasattr(e, "forward_layer") else e for e in stack]
    if not stack:
        raise ValueError("to_torch needs at least one layer")
    state: dict[str, Any] = {}
    kinds = set()
    for index, entry in enumerate(stack):
        pair = entry if isinstance(entry, tuple) else (entry,)
        if len(pair) not in (1, 2) or (len(stack) > 1 and len(pair) != (2 if isinstance(stack[0], tuple) else 1)):
            raise ValueError("to_torch: every stacked entry must be a single layer, or every entry a (forward, backward) pair")
        for direction, layer in enumerate(pair):
            kinds.add(getattr(layer, "cell", layer).kind)
            state.update(_layer_to_torch(layer, f"l{index}" + ("_reverse" if direction else "")))
    if len(kinds) != 1:
        raise ValueError(f"to_torch: all layers must be of one kind for one PyTorch module; got {sorted(kinds)}")
    if as_tensors:
        import torch

        return {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in state.items()}
    return state


def from_torch(state_dict: dict[str, Any], kind: str) -> Any:
    """Keras weights from a ``torch.nn.LSTM`` / ``GRU`` / ``RNN`` state dict (inverse of to_torch).

    Returns ``[kernel, recurrent_kernel, (bias)]`` for a one-layer, one-direction module; a
    list of those per layer for ``num_layers > 1``; and ``(forward, backward)`` pairs in
    place of each for ``bidirectional=True``. LSTM and SimpleRNN biases are summed
    (``bias_ih + bias_hh``); GRU keeps them as its two bias rows (``reset_after=True``).
    """
    kind = _check_kind(kind)
    arrays = {
        name: np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
        for name, value in state_dict.items()
    }
    layers = sorted({int(name.split("_l")[1].split("_")[0]) for name in arrays if name.startswith("weight_ih_l")})
    if not layers:
        raise ValueError(f"from_torch: no weight_ih_l* entries in the state dict (keys: {sorted(arrays)[:6]})")
    bidirectional = any(name.endswith("_reverse") for name in arrays)
    keras_order, torch_order = GATE_ORDER[kind], TORCH_GATE_ORDER[kind]
    gates = len(keras_order)

    def one(suffix: str) -> list[np.ndarray]:
        try:
            w_ih, w_hh = arrays[f"weight_ih_{suffix}"], arrays[f"weight_hh_{suffix}"]
        except KeyError as exc:
            raise ValueError(f"from_torch: state dict lacks {exc.args[0]}") from None
        if w_ih.shape[0] % gates or w_hh.shape != (w_ih.shape[0], w_ih.shape[0] // gates):
            raise ValueError(
                f"from_torch: weight_ih_{suffix} {w_ih.shape} and weight_hh_{suffix} {w_hh.shape} do not fit "
                f"{TORCH_MODULE[kind]} ({gates} gates)"
            )
        weights = [
            _reorder(w_ih.T, torch_order, keras_order, axis=1),
            _reorder(w_hh.T, torch_order, keras_order, axis=1),
        ]
        if f"bias_ih_{suffix}" in arrays:
            b_ih = _reorder(arrays[f"bias_ih_{suffix}"], torch_order, keras_order, axis=0)
            b_hh = _reorder(arrays[f"bias_hh_{suffix}"], torch_order, keras_order, axis=0)
            weights.append(np.stack([b_ih, b_hh]) if kind == "gru" else b_ih + b_hh)
        return [np.ascontiguousarray(w) for w in weights]

    result = [(one(f"l{k}"), one(f"l{k}_reverse")) if bidirectional else one(f"l{k}") for k in layers]
    return result[0] if len(result) == 1 else result


# ---------------------------------------------------------------------------- cuDNN (Keras 2)

# Keras 2's GPU-only layers and the plain layer that computes the same function on any device.
CUDNN_CLASSES = {"CuDNNLSTM": "lstm", "CuDNNGRU": "gru"}
CUDNN_EQUIVALENT = {
    "CuDNNLSTM": "LSTM(activation='tanh', recurrent_activation='sigmoid')",
    "CuDNNGRU": "GRU(activation='tanh', recurrent_activation='sigmoid', reset_after=True)",
}


def from_cudnn(weights: Any, kind: str) -> list[np.ndarray]:
    """Keras weights of a plain ``LSTM`` / ``GRU(reset_after=True)`` from those of Keras 2's
    ``CuDNNLSTM`` / ``CuDNNGRU``, exactly as Keras converts them when it loads such weights
    into the plain layer (same values, bit for bit; the arrays keep their dtype).

    The cuDNN layers keep Keras's shapes and gate order (LSTM ``i, f, c, o``; GRU ``z, r, h``)
    but hand cuDNN the raw buffer of each gate's block, which cuDNN reads as a row-major
    ``(units, rows)`` matrix ``W`` and applies as ``W @ x``. The plain layer computes
    ``x @ K``, so each block becomes ``W.T``:

    * a kernel block ``(input_dim, units)`` is its own numbers re-read as ``(units, input_dim)``,
      then transposed — a reshuffle, not a plain transpose, unless ``input_dim == units``;
    * a recurrent block ``(units, units)`` is transposed;
    * ``CuDNNLSTM``'s bias ``(8 * units,)`` holds an input bias and a recurrent bias for the
      four gates; ``LSTM`` has one bias, their sum (rounded in the stored dtype);
    * ``CuDNNGRU``'s bias ``(6 * units,)`` is ``GRU(reset_after=True)``'s ``(2, 3 * units)``
      read row by row: row 0 the input bias, row 1 the recurrent bias.
    """
    kind = _check_kind(kind)
    if kind not in ("lstm", "gru"):
        raise ValueError(f"kind must be 'lstm' (CuDNNLSTM) or 'gru' (CuDNNGRU); got {kind!r}")
    name = "CuDNNLSTM" if kind == "lstm" else "CuDNNGRU"
    if isinstance(weights, np.ndarray) or not isinstance(weights, (list, tuple)) or len(weights) != 3:
        given = f"{len(weights)} arrays" if isinstance(weights, (list, tuple)) else type(weights).__name__
        raise ValueError(f"weights must be [kernel, recurrent_kernel, bias] of a {name} (it always has a bias); got {given}")
    kernel, recurrent, bias = (np.asarray(w) for w in weights)
    gates = len(GATE_ORDER[kind])
    if recurrent.ndim != 2 or recurrent.shape[1] != gates * recurrent.shape[0]:
        raise ValueError(f"recurrent_kernel has shape {recurrent.shape}; a {name} has (units, {gates} * units)")
    units = recurrent.shape[0]
    if kernel.ndim != 2 or kernel.shape[1] != gates * units:
        raise ValueError(f"kernel has shape {kernel.shape}; a {name} with units={units} has (input_dim, {gates * units})")
    if bias.shape != (2 * gates * units,):
        raise ValueError(f"bias has shape {bias.shape}; a {name} with units={units} has ({2 * gates * units},)")
    input_dim = kernel.shape[0]
    kernel_blocks, recurrent_blocks = [], []
    for gate in GATE_ORDER[kind]:
        cols = gate_slice(kind, gate, units)
        kernel_blocks.append(np.ascontiguousarray(kernel[:, cols]).reshape(units, input_dim).T)
        recurrent_blocks.append(recurrent[:, cols].T)
    width = gates * units
    plain_bias = bias[:width] + bias[width:] if kind == "lstm" else bias.reshape(2, width)
    return [
        np.ascontiguousarray(np.concatenate(kernel_blocks, axis=1)),
        np.ascontiguousarray(np.concatenate(recurrent_blocks, axis=1)),
        np.ascontiguousarray(plain_bias),
    ]
