"""The cell: what one step of a recurrent layer knows, and what the time loop asks of it.

A cell knows one step. It splits that step into two halves so the loop can hoist work:

* ``input_projection(inputs)``: ``inputs @ kernel (+ input bias)``, for any number of
  leading axes, so many timesteps are projected in one matmul before the loop;
* ``recurrent_step(x_proj_t, states, record=None) -> (output, new_states)``: the rest of the
  step. Given a :class:`StepRecord`, the step also fills it with what its gradient needs
  (its pre-activations, the states it read); ``rnnparity.gradients`` runs the same step this
  way, so there is one copy of each step.

Inside a step the gates are *gate-major*: the cell keeps a copy of its Keras weights split
into one ``(rows, units)`` block per gate, stacked in ``layout.STEP_ORDER``, so a
projection is ``(gates, ..., units)`` and every gate is a contiguous array (NumPy's
element-wise functions are several times faster on those than on column slices of one
``(batch, gates * units)`` array). The Keras weights themselves are kept unchanged.

:class:`RecurrentCell` is the protocol the time loop and the layers rely on; :class:`Cell`
(the base of LSTMCell, GRUCell and SimpleRNNCell) and ``StackedRNNCells`` implement it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

import numpy as np

from rnnparity import activations
from rnnparity.activations import ActivationLike
from rnnparity.checks import (
    TRAINING_ONLY_ARGS,
    ArrayLike,
    as_float_array,
    check_bool,
    check_dtype,
    check_keras_version,
    check_training_args,
    check_units,
)
from rnnparity.layout import GATE_ORDER, STEP_ORDER, gate_slice, weight_shapes

_NO_BUFFER = np.empty(0)  # a stack's record keeps its buffers in its cells' records


class StepRecord:
    """What one step leaves for its backward pass; the step fills it when it is given one.

    The arrays are views of buffers that hold every timestep (``rnnparity.tapes`` makes them):

    * ``pre`` ``(blocks, batch, units)``: the step's pre-activations, gate-major in
      ``STEP_ORDER`` (GRU with ``reset_after`` adds a 4th block, ``h_tm1 @ U_h + br_h``);
    * ``h_tm1`` ``(batch, units)``: the ``h`` the step started from;
    * ``keep(*arrays)``: references to arrays the backward pass reads (LSTM: ``c_tm1`` and
      ``c``), kept in ``kept`` and, when the record was made with one, in ``store[t]``;
    * ``cells`` / ``cell_inputs`` (``StackedRNNCells``): one record per cell, and buffers for
      the input of every cell after the first (the output of the cell before it).

    The record itself is dropped after its step (what it points into outlives it), so it
    costs no memory per timestep.
    """

    __slots__ = ("cell_inputs", "cells", "h_tm1", "kept", "pre", "store", "t")

    def __init__(
        self,
        pre: np.ndarray = _NO_BUFFER,
        h_tm1: np.ndarray = _NO_BUFFER,
        cells: list[StepRecord] | None = None,
        cell_inputs: list[np.ndarray] | None = None,
        store: list[tuple[np.ndarray, ...]] | None = None,
        t: int = 0,
    ) -> None:
        self.pre = pre
        self.h_tm1 = h_tm1
        self.kept: tuple[np.ndarray, ...] = ()
        self.cells: list[StepRecord] = cells or []
        self.cell_inputs: list[np.ndarray] = cell_inputs or []
        self.store = store
        self.t = t

    def keep(self, *arrays: np.ndarray) -> None:
        """Keep references to ``arrays`` (no copy) for the backward pass."""
        self.kept = arrays
        if self.store is not None:
            self.store[self.t] = arrays


class RecurrentCell(Protocol):
    """What the time loop (``rnn.run_time_loop``) and the recurrent layers need from a cell.

    The loop sees states as one flat list of ``(batch, size)`` arrays; ``flatten_states`` /
    ``pack_states`` convert to and from the structure Keras takes and returns."""

    keras_version: int
    dtype: np.dtype
    units: int
    use_bias: bool
    training_only_args: dict[str, Any]

    @property
    def built(self) -> bool: ...
    @property
    def input_dim(self) -> int | None: ...
    @property
    def output_size(self) -> int: ...
    @property
    def projection_width(self) -> int: ...
    @property
    def flat_state_sizes(self) -> list[int]: ...
    @property
    def flat_state_names(self) -> list[str]: ...
    @property
    def output_state_index(self) -> int: ...
    @property
    def dropout_active(self) -> bool: ...
    @property
    def weight_count(self) -> int: ...

    def input_projection(self, inputs: np.ndarray) -> np.ndarray: ...
    def recurrent_step(
        self, x_proj: np.ndarray, states: list[np.ndarray], record: StepRecord | None = None
    ) -> tuple[np.ndarray, list[np.ndarray]]: ...
    def flatten_states(self, states: Any, argument: str) -> tuple[list[Any], Any]: ...
    def pack_states(self, flat: list[np.ndarray], structure: Any = None) -> Any: ...
    def pack_layer_states(self, flat: list[np.ndarray], structure: Any = None) -> list[Any]: ...
    def set_weights(self, weights: Sequence[ArrayLike]) -> None: ...
    def get_weights(self) -> list[np.ndarray]: ...
    def get_config(self) -> dict[str, Any]: ...
    def require_built(self) -> None: ...
    def describe(self) -> str: ...


class Cell:
    """Base of the three cells: weights, checks and config. Subclasses define one step."""

    kind: ClassVar[str]
    n_states: ClassVar[int]
    has_recurrent_activation: ClassVar[bool] = True

    @property
    def step_order(self) -> tuple[str, ...]:
        """The gates in the order the step stacks them: ``layout.STEP_ORDER[kind]``."""
        return STEP_ORDER[self.kind]

    def __init__(
        self,
        units: int,
        activation: ActivationLike = "tanh",
        recurrent_activation: ActivationLike = "sigmoid",
        use_bias: bool = True,
        dtype: Any = "float32",
        keras_version: int = 3,
        **training_only_args: Any,
    ) -> None:
        self.keras_version = check_keras_version(keras_version)
        self.units = check_units(units)
        self.activation_name, self.activation = activations.get(activation, self.keras_version, "activation")
        self._activation_in_place = activations.in_place(self.activation)
        if self.has_recurrent_activation:
            self.recurrent_activation_name, self.recurrent_activation = activations.get(
                recurrent_activation, self.keras_version, "recurrent_activation"
            )
            self._recurrent_activation_in_place = activations.in_place(self.recurrent_activation)
        self.use_bias = check_bool(use_bias, "use_bias")
        self.dtype = check_dtype(dtype)
        self.training_only_args = check_training_args(type(self).__name__, training_only_args)
        self.kernel: np.ndarray | None = None
        self.recurrent_kernel: np.ndarray | None = None
        self.bias: np.ndarray | None = None
        # Gate-major copies of the weights in step_order, derived by set_weights (read-only):
        # (gates, input_dim, units), (gates, units, units), input bias (gates, 1, units).
        self.kernel_gates: np.ndarray | None = None
        self.recurrent_gates: np.ndarray | None = None
        self.input_bias_gates: np.ndarray | None = None

    # ------------------------------------------------------------------ weights
    @property
    def built(self) -> bool:
        return self.kernel is not None

    @property
    def input_dim(self) -> int | None:
        return None if self.kernel is None else int(self.kernel.shape[0])

    @property
    def state_size(self) -> int | list[int]:
        return self.units if self.n_states == 1 else [self.units] * self.n_states

    # The time loop sees states as one flat list of (batch, size) arrays; these four describe
    # that list and convert to and from the structure Keras takes and returns.
    @property
    def record_blocks(self) -> int:
        """How many ``(batch, units)`` pre-activation blocks a :class:`StepRecord` of this step holds."""
        return len(self.step_order)

    @property
    def output_size(self) -> int:
        return self.units

    @property
    def projection_width(self) -> int:
        """Columns of ``input_projection``'s result: ``kernel``'s second axis."""
        return len(GATE_ORDER[self.kind]) * self.units

    @property
    def flat_state_sizes(self) -> list[int]:
        return [self.units] * self.n_states

    @property
    def flat_state_names(self) -> list[str]:
        return ["h", "c"][: self.n_states]

    # Index in the flat states of the h that Keras's JAX loop repeats at a masked step.
    output_state_index: ClassVar[int] = 0

    def flatten_states(self, states: Any, argument: str) -> tuple[list[Any], Any]:
        """``(flat list, structure)`` of states given as Keras takes them: a list/tuple of
        arrays, or one array for a one-state cell. ``structure`` feeds :meth:`pack_states`."""
        if isinstance(states, (list, tuple)):
            return list(states), "list"
        return [states], "single"

    def pack_states(self, flat: list[np.ndarray], structure: Any = None) -> Any:
        """The flat states in the structure Keras returns them in (a list by default)."""
        return flat[0] if structure == "single" else list(flat)

    def pack_layer_states(self, flat: list[np.ndarray], structure: Any = None) -> list[Any]:
        """The states a layer returns after its output: ``output, *these``."""
        return list(flat)

    @property
    def dropout_active(self) -> bool:
        return bool(self.training_only_args.get("dropout") or self.training_only_args.get("recurrent_dropout"))

    def _weight_shapes(self, input_dim: int) -> list[tuple[int, ...]]:
        return weight_shapes(self.kind, self.units, input_dim, self.use_bias, getattr(self, "reset_after", True))

    def describe(self) -> str:
        return f"{type(self).__name__.removesuffix('Cell')}(units={self.units}, use_bias={self.use_bias})"

    def set_weights(self, weights: Sequence[ArrayLike]) -> None:
        """Load ``[kernel, recurrent_kernel, bias]`` (no bias when ``use_bias=False``), in Keras's
        own shapes and gate order. The arrays are copied; the caller's are never modified."""
        names = ["kernel", "recurrent_kernel", "bias"][: 3 if self.use_bias else 2]
        if isinstance(weights, np.ndarray) or not isinstance(weights, Sequence):
            raise TypeError(f"weights must be a list {names}; got {type(weights).__name__}")
        if len(weights) != len(names):
            raise ValueError(f"{self.describe()} expects {len(names)} weights {names}; got {len(weights)}")
        arrays = [as_float_array(w, self.dtype, name) for w, name in zip(weights, names)]
        kernel = arrays[0]
        if kernel.ndim != 2:
            raise ValueError(f"kernel must be 2-D (input_dim, {len(GATE_ORDER[self.kind])} * units); got shape {kernel.shape}")
        input_dim = kernel.shape[0]
        expected = self._weight_shapes(input_dim)
        for name, array, shape in zip(names, arrays, expected):
            if array.shape != shape:
                raise ValueError(f"{name} has shape {array.shape}; {self.describe()} with input_dim {input_dim} expects {shape}")
        self.kernel, self.recurrent_kernel = arrays[0], arrays[1]
        self.bias = arrays[2] if self.use_bias else None
        self._prepare()

    @property
    def weight_count(self) -> int:
        """How many arrays set_weights takes: kernel, recurrent_kernel (and bias)."""
        return 3 if self.use_bias else 2

    def get_weights(self) -> list[np.ndarray]:
        self.require_built()
        assert self.kernel is not None and self.recurrent_kernel is not None
        weights = [self.kernel.copy(), self.recurrent_kernel.copy()]
        if self.bias is not None:
            weights.append(self.bias.copy())
        return weights

    def require_built(self) -> None:
        if self.kernel is None:
            raise ValueError(
                f"{self.describe()} has no weights yet; call set_weights([kernel, recurrent_kernel"
                f"{', bias' if self.use_bias else ''}]) first (or build it with rnnparity.from_keras)"
            )

    def _input_bias(self) -> np.ndarray | None:
        """The part of ``bias`` added to the input projection (all of it, but for GRU)."""
        return self.bias

    def by_gate(self, array: np.ndarray) -> np.ndarray:
        """``array``'s last axis split into its gate blocks, stacked in ``step_order``:
        ``(..., gates * units) -> (gates, ..., units)``, a contiguous copy."""
        return np.stack([array[..., gate_slice(self.kind, gate, self.units)] for gate in self.step_order])

    def _prepare(self) -> None:
        """Derive the gate-major arrays the step uses from the Keras weights (after set_weights)."""
        assert self.kernel is not None and self.recurrent_kernel is not None
        self.kernel_gates = self.by_gate(self.kernel)  # (gates, input_dim, units)
        self.recurrent_gates = self.by_gate(self.recurrent_kernel)  # (gates, units, units)
        input_bias = self._input_bias()
        self.input_bias_gates = None if input_bias is None else self.by_gate(input_bias)[:, None, :]

    # ------------------------------------------------------------------ one step
    def input_projection(self, inputs: np.ndarray) -> np.ndarray:
        """``inputs @ kernel + input bias`` for ``inputs`` of shape ``(..., input_dim)``, gate-major:
        ``(gates, ..., units)`` in ``step_order``. One matmul per gate for all leading axes."""
        assert self.kernel_gates is not None
        leading = inputs.shape[:-1]
        projected = np.matmul(inputs.reshape(-1, inputs.shape[-1]), self.kernel_gates)
        if self.input_bias_gates is not None:
            projected += self.input_bias_gates
        return projected.reshape(len(self.step_order), *leading, self.units)

    def recurrent_step(
        self, x_proj: np.ndarray, states: list[np.ndarray], record: StepRecord | None = None
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """The step after the input projection. ``x_proj`` (``(gates, batch, units)``) is a buffer
        the caller made for this step alone: the step may overwrite it (and never modifies
        ``states``). Given ``record``, the step also fills it (see :class:`StepRecord`); the
        numbers it returns are the same bits either way."""
        raise NotImplementedError

    def __call__(self, inputs: ArrayLike, states: Any) -> tuple[np.ndarray, Any]:
        """One timestep: ``(x_t, states) -> (y_t, new_states)`` (see :func:`call_one_step`)."""
        return call_one_step(self, inputs, states)

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"units": self.units, "activation": self.activation_name}
        if self.has_recurrent_activation:
            config["recurrent_activation"] = self.recurrent_activation_name
        config["use_bias"] = self.use_bias
        config.update(self._extra_config())
        config["dtype"] = dtype_config(self.dtype, self.keras_version)
        for key in _CELL_TRAINING_KEYS[self.keras_version]:
            config[key] = self.training_only_args.get(key, TRAINING_ONLY_ARGS[key])
        if self.keras_version == 2 and self.kind in ("lstm", "gru"):
            config["implementation"] = self.training_only_args.get("implementation", 2)
        return config

    def _extra_config(self) -> dict[str, Any]:
        return {}


_KERAS2_CELL_TRAINING_KEYS = (
    "name",
    "trainable",
    "kernel_initializer",
    "recurrent_initializer",
    "bias_initializer",
    "kernel_regularizer",
    "recurrent_regularizer",
    "bias_regularizer",
    "kernel_constraint",
    "recurrent_constraint",
    "bias_constraint",
    "dropout",
    "recurrent_dropout",
)
_CELL_TRAINING_KEYS = {2: _KERAS2_CELL_TRAINING_KEYS, 3: (*_KERAS2_CELL_TRAINING_KEYS, "seed")}


def dtype_config(dtype: np.dtype, keras_version: int) -> Any:
    if keras_version == 2:
        return dtype.name
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": dtype.name}, "registered_name": None}


def check_states(states: list[Any], cell: RecurrentCell, batch: int, argument: str) -> list[np.ndarray]:
    """``states`` (flat) as arrays of ``cell``'s dtype, each checked against its shape."""
    names = cell.flat_state_names
    if len(states) != len(names):
        raise ValueError(f"{argument} must hold {len(names)} array(s) {names} for {cell.describe()}; got {len(states)}")
    checked = []
    for name, size, state in zip(names, cell.flat_state_sizes, states):
        array = as_float_array(state, cell.dtype, f"{argument} ({name})")
        if array.shape != (batch, size):
            raise ValueError(f"{argument} ({name}) must have shape {(batch, size)}; got {array.shape}")
        checked.append(array)
    return checked


def call_one_step(cell: RecurrentCell, inputs: ArrayLike, states: Any) -> tuple[np.ndarray, Any]:
    """A cell's call: one timestep ``(x_t, states) -> (y_t, new_states)``, ``x_t`` of shape
    ``(batch, input_dim)``. ``states`` is a list (or a single array for one-state cells);
    ``new_states`` comes back in the same form."""
    cell.require_built()
    x = as_float_array(inputs, cell.dtype, "inputs")
    if x.ndim != 2 or x.shape[1] != cell.input_dim:
        raise ValueError(f"inputs must have shape (batch, {cell.input_dim}); got {x.shape}")
    state_list, structure = cell.flatten_states(states, "states")
    checked = check_states(state_list, cell, x.shape[0], "states")
    with np.errstate(over="ignore", invalid="ignore"):
        output, new_states = cell.recurrent_step(cell.input_projection(x), checked)
    return output, cell.pack_states(new_states, structure)
