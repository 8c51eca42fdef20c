"""The one time loop shared by every recurrent layer, and the cell/layer plumbing around it.

A cell knows one step. It splits that step into two halves so the loop can hoist work:

* ``input_projection(inputs)``: ``inputs @ kernel (+ input bias)``, for any number of
  leading axes, so many timesteps are projected in one matmul before the loop;
* ``recurrent_step(x_proj_t, states) -> (output, new_states)``: the rest of the step.

Inside a step the gates are *gate-major*: the cell keeps a copy of its Keras weights split
into one ``(rows, units)`` block per gate, stacked in the cell's ``step_order``, so a
projection is ``(gates, ..., units)`` and every gate is a contiguous array (NumPy's
element-wise functions are several times faster on those than on column slices of one
``(batch, gates * units)`` array). The Keras weights themselves are kept unchanged.

``RecurrentLayer`` owns everything Keras's ``RNN`` base layer does: argument checking,
masks, ``go_backwards``, ``initial_state``, ``stateful`` state, ``time_major`` (Keras 2),
and packing ``return_sequences`` / ``return_state`` exactly as the emulated Keras packs
them (a tuple in Keras 3, a list in Keras 2).

Mask semantics, as both Kerases implement them: at a masked step the states keep their
previous value and the output repeats the previous *output* (zeros before the first
unmasked step, never the initial ``h``), or is zero with ``zero_output_for_mask=True``.
Masked steps are selected with ``np.where``, never blended arithmetically, so a NaN fed at
a masked step cannot reach the result.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, ClassVar, Union

import numpy as np

from rnnparity import activations
from rnnparity.activations import ActivationLike
from rnnparity.layout import GATE_ORDER, gate_slice, weight_shapes

ArrayLike = Any
LayerOutput = Union[np.ndarray, tuple, list]

# Arguments that cannot change inference numbers once weights are set. They are accepted
# (so a Keras config can be passed through unchanged), kept for get_config, and ignored.
TRAINING_ONLY_ARGS: dict[str, Any] = {
    "kernel_initializer": "glorot_uniform",
    "recurrent_initializer": "orthogonal",
    "bias_initializer": "zeros",
    "kernel_regularizer": None,
    "recurrent_regularizer": None,
    "bias_regularizer": None,
    "activity_regularizer": None,
    "kernel_constraint": None,
    "recurrent_constraint": None,
    "bias_constraint": None,
    "dropout": 0.0,
    "recurrent_dropout": 0.0,
    "seed": None,
    "implementation": 2,
    "unroll": False,
    "use_cudnn": "auto",
    "name": None,
    "trainable": True,
    "input_shape": None,
    "batch_input_shape": None,
    "batch_size": None,
    "input_dim": None,
    "input_length": None,
    "enable_caching_device": None,
}

SUPPORTED_DTYPES = ("float32", "float64")

# Keras backends whose RNN loop the twins emulate. They differ in one place: at a masked
# step before the first unmasked one, TensorFlow and torch repeat a zero output, JAX and
# NumPy the initial h (their scan loops repeat states[0]; read in keras/src/backend/*/rnn.py
# of Keras 3.15 and measured by `rnnparity check --backend`).
SUPPORTED_BACKENDS = {2: ("tensorflow",), 3: ("tensorflow", "jax", "torch", "numpy")}
REPEATS_INITIAL_H = ("jax", "numpy")


def _check_bool(value: Any, argument: str) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{argument} must be True or False; got {type(value).__name__} {value!r}")


def _check_units(units: Any) -> int:
    if isinstance(units, (bool, np.bool_)) or not isinstance(units, numbers.Integral):
        raise TypeError(f"units must be a positive integer; got {type(units).__name__} {units!r}")
    if units <= 0:
        raise ValueError(f"units must be a positive integer; got {units}")
    return int(units)


def _check_dtype(dtype: Any) -> np.dtype:
    name = dtype
    if isinstance(dtype, dict):  # a Keras 3 serialized DTypePolicy
        name = dtype.get("config", {}).get("name", dtype)
    if hasattr(dtype, "name") and not isinstance(dtype, (str, np.dtype)):
        name = dtype.name  # a Keras DTypePolicy or tf.DType
    if isinstance(name, str) and name.startswith("mixed_"):
        raise ValueError(
            f"dtype={name!r} is a mixed-precision policy, which the NumPy twins do not emulate yet; "
            f"expected one of {SUPPORTED_DTYPES}"
        )
    try:
        resolved = np.dtype(name)
    except TypeError:
        raise TypeError(f"dtype must be one of {SUPPORTED_DTYPES}; got {dtype!r}") from None
    if resolved.name not in SUPPORTED_DTYPES:
        raise ValueError(f"dtype must be one of {SUPPORTED_DTYPES}; got {resolved.name!r}")
    return resolved


def _check_keras_version(keras_version: Any) -> int:
    if keras_version in (2, 3) and not isinstance(keras_version, bool):
        return int(keras_version)
    raise ValueError(f"keras_version must be 2 (tf_keras / tf.keras <= 2.15) or 3 (keras 3); got {keras_version!r}")


def _check_training_args(owner: str, extra: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(extra) - set(TRAINING_ONLY_ARGS))
    if unknown:
        raise TypeError(
            f"{owner} got unexpected keyword argument(s) {unknown}; arguments that do not change "
            f"inference numbers are accepted from {sorted(TRAINING_ONLY_ARGS)}"
        )
    for key in ("dropout", "recurrent_dropout"):
        if key in extra:
            value = extra[key]
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0.0 <= float(value) <= 1.0):
                raise ValueError(f"{key} must be a finite number in [0, 1]; got {value!r}")
    return extra


def _as_float_array(value: ArrayLike, dtype: np.dtype, argument: str) -> np.ndarray:
    """A C-contiguous copy of ``value`` in ``dtype``; refuses non-numeric data clearly."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{argument} must be a numeric array; got {type(value).__name__}")
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"{argument} must be a numeric array; could not convert it: {exc}") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{argument} must hold real numbers; got dtype {array.dtype}")
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf, as Keras casts it
        return np.array(array, dtype=dtype, order="C", copy=True)


class Cell:
    """Base of the three cells: weights, checks and config. Subclasses define one step."""

    kind: ClassVar[str]
    n_states: ClassVar[int]
    # The gates in the order the step stacks them (a permutation of layout.GATE_ORDER).
    step_order: ClassVar[tuple[str, ...]]
    has_recurrent_activation: ClassVar[bool] = True

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
        self.keras_version = _check_keras_version(keras_version)
        self.units = _check_units(units)
        self.activation_name, self.activation = activations.get(activation, self.keras_version, "activation")
        self._activation_in_place = activations.in_place(self.activation)
        if self.has_recurrent_activation:
            self.recurrent_activation_name, self.recurrent_activation = activations.get(
                recurrent_activation, self.keras_version, "recurrent_activation"
            )
            self._recurrent_activation_in_place = activations.in_place(self.recurrent_activation)
        self.use_bias = _check_bool(use_bias, "use_bias")
        self.dtype = _check_dtype(dtype)
        self.training_only_args = _check_training_args(type(self).__name__, training_only_args)
        self.kernel: np.ndarray | None = None
        self.recurrent_kernel: np.ndarray | None = None
        self.bias: np.ndarray | None = None
        self._kernel_gates: np.ndarray | None = None
        self._recurrent_gates: np.ndarray | None = None
        self._input_bias_gates: np.ndarray | None = None

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

    def _describe(self) -> str:
        return f"{type(self).__name__.removesuffix('Cell')}(units={self.units}, use_bias={self.use_bias})"

    def set_weights(self, weights: Sequence[ArrayLike]) -> None:
        """Load ``[kernel, recurrent_kernel, bias]`` (no bias when ``use_bias=False``), in Keras's
        own shapes and gate order. The arrays are copied; the caller's are never modified."""
        names = ["kernel", "recurrent_kernel", "bias"][: 3 if self.use_bias else 2]
        if isinstance(weights, np.ndarray) or not isinstance(weights, Sequence):
            raise TypeError(f"weights must be a list {names}; got {type(weights).__name__}")
        if len(weights) != len(names):
            raise ValueError(f"{self._describe()} expects {len(names)} weights {names}; got {len(weights)}")
        arrays = [_as_float_array(w, self.dtype, name) for w, name in zip(weights, names)]
        kernel = arrays[0]
        if kernel.ndim != 2:
            raise ValueError(f"kernel must be 2-D (input_dim, {len(GATE_ORDER[self.kind])} * units); got shape {kernel.shape}")
        input_dim = kernel.shape[0]
        expected = self._weight_shapes(input_dim)
        for name, array, shape in zip(names, arrays, expected):
            if array.shape != shape:
                raise ValueError(f"{name} has shape {array.shape}; {self._describe()} with input_dim {input_dim} expects {shape}")
        self.kernel, self.recurrent_kernel = arrays[0], arrays[1]
        self.bias = arrays[2] if self.use_bias else None
        self._prepare()

    @property
    def weight_count(self) -> int:
        """How many arrays set_weights takes: kernel, recurrent_kernel (and bias)."""
        return 3 if self.use_bias else 2

    def get_weights(self) -> list[np.ndarray]:
        self._require_built()
        assert self.kernel is not None and self.recurrent_kernel is not None
        weights = [self.kernel.copy(), self.recurrent_kernel.copy()]
        if self.bias is not None:
            weights.append(self.bias.copy())
        return weights

    def _require_built(self) -> None:
        if self.kernel is None:
            raise ValueError(
                f"{self._describe()} has no weights yet; call set_weights([kernel, recurrent_kernel"
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
        self._kernel_gates = self.by_gate(self.kernel)  # (gates, input_dim, units)
        self._recurrent_gates = self.by_gate(self.recurrent_kernel)  # (gates, units, units)
        input_bias = self._input_bias()
        self._input_bias_gates = None if input_bias is None else self.by_gate(input_bias)[:, None, :]

    # ------------------------------------------------------------------ one step
    def input_projection(self, inputs: np.ndarray) -> np.ndarray:
        """``inputs @ kernel + input bias`` for ``inputs`` of shape ``(..., input_dim)``, gate-major:
        ``(gates, ..., units)`` in ``step_order``. One matmul per gate for all leading axes."""
        assert self._kernel_gates is not None
        leading = inputs.shape[:-1]
        projected = np.matmul(inputs.reshape(-1, inputs.shape[-1]), self._kernel_gates)
        if self._input_bias_gates is not None:
            projected += self._input_bias_gates
        return projected.reshape(len(self.step_order), *leading, self.units)

    def recurrent_step(self, x_proj: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """The step after the input projection. ``x_proj`` (``(gates, batch, units)``) is a buffer
        the caller made for this step alone: the step may overwrite it (and never modifies
        ``states``)."""
        raise NotImplementedError

    def __call__(self, inputs: ArrayLike, states: Any) -> tuple[np.ndarray, Any]:
        """One timestep: ``(x_t, states) -> (y_t, new_states)``; ``x_t`` is ``(batch, input_dim)``.

        ``states`` is a list (or a single array for one-state cells); ``new_states`` comes back
        in the same form.
        """
        self._require_built()
        x = _as_float_array(inputs, self.dtype, "inputs")
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"inputs must have shape (batch, {self.input_dim}); got {x.shape}")
        state_list, structure = self.flatten_states(states, "states")
        checked = _check_states(state_list, self, x.shape[0], "states")
        with np.errstate(over="ignore", invalid="ignore"):
            output, new_states = self.recurrent_step(self.input_projection(x), checked)
        return output, self.pack_states(new_states, structure)

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"units": self.units, "activation": self.activation_name}
        if self.has_recurrent_activation:
            config["recurrent_activation"] = self.recurrent_activation_name
        config["use_bias"] = self.use_bias
        config.update(self._extra_config())
        config["dtype"] = _dtype_config(self.dtype, self.keras_version)
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


def _dtype_config(dtype: np.dtype, keras_version: int) -> Any:
    if keras_version == 2:
        return dtype.name
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": dtype.name}, "registered_name": None}


def flatten_nested(value: Any) -> list[Any]:
    """The leaves of nested lists/tuples, in order (Keras's nested state structures)."""
    if isinstance(value, (list, tuple)):
        return [leaf for item in value for leaf in flatten_nested(item)]
    return [value]


def _check_states(states: list[Any], cell: Cell, batch: int, argument: str) -> list[np.ndarray]:
    """``states`` (flat) as arrays of ``cell``'s dtype, each checked against its shape."""
    names = cell.flat_state_names
    if len(states) != len(names):
        raise ValueError(f"{argument} must hold {len(names)} array(s) {names} for {cell._describe()}; got {len(states)}")
    checked = []
    for name, size, state in zip(names, cell.flat_state_sizes, states):
        array = _as_float_array(state, cell.dtype, f"{argument} ({name})")
        if array.shape != (batch, size):
            raise ValueError(f"{argument} ({name}) must have shape {(batch, size)}; got {array.shape}")
        checked.append(array)
    return checked


# The input projection of all timesteps is one matmul per chunk of timesteps; a chunk holds
# at most this many bytes of projected inputs, so memory stays bounded for long sequences.
PROJECTION_CHUNK_BYTES = 16 * 2**20


def projection_chunk(timesteps: int, batch: int, width: int, itemsize: int) -> int:
    """How many timesteps the loop projects per matmul (at least 1, at most ``timesteps``)."""
    per_step = max(1, batch * width * itemsize)
    return max(1, min(timesteps, PROJECTION_CHUNK_BYTES // per_step))


def run_time_loop(
    cell: Cell,
    inputs: np.ndarray,
    states: list[np.ndarray],
    mask: np.ndarray | None,
    go_backwards: bool,
    zero_output_for_mask: bool,
    outputs: np.ndarray | None,
    backend: str = "tensorflow",
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Run ``cell`` over time-major ``inputs`` of shape ``(T, batch, input_dim)``.

    ``mask`` is time-major ``(T, batch)`` booleans or None. ``outputs``, when given, is a
    time-major ``(T, batch, output_size)`` array (often a transposed view of the caller's
    batch-major result) that receives the output of every step in processing order (so
    reversed when ``go_backwards``). Returns ``(last_output, final_states)``.

    The input projection ``x_t @ kernel + input_bias`` is hoisted out of the loop: it is
    computed for a chunk of timesteps at a time (one matmul, see ``projection_chunk``), so
    the loop itself does only the recurrent matmul and the gates.

    A masked step repeats the previous output. Before the first unmasked step that is zeros
    on the TensorFlow and torch backends and the initial ``h`` on the JAX and NumPy backends
    (their loops repeat ``states[0]``, which equals the output at every later step).
    """
    timesteps, batch, _ = inputs.shape
    zeros = np.zeros((batch, cell.output_size), dtype=cell.dtype)
    previous_output = states[cell.output_state_index] if backend in REPEATS_INITIAL_H else zeros
    chunk = projection_chunk(timesteps, batch, cell.projection_width, cell.dtype.itemsize)
    projected = np.empty((0, 0))  # (gates, steps, batch, units): the current chunk
    first = 0  # the timestep that projected[:, 0] belongs to
    order = range(timesteps - 1, -1, -1) if go_backwards else range(timesteps)
    for k, t in enumerate(order):
        if not first <= t < first + projected.shape[1]:
            first = max(0, t - chunk + 1) if go_backwards else t
            del projected  # so that at most one chunk is alive while the next is computed
            projected = cell.input_projection(np.ascontiguousarray(inputs[first : first + chunk]))
        output, new_states = cell.recurrent_step(projected[:, t - first], states)
        if mask is not None and not mask[t].all():
            keep = mask[t][:, None]
            new_states = [np.where(keep, new, old) for new, old in zip(new_states, states)]
            output = np.where(keep, output, zeros if zero_output_for_mask else previous_output)
        states = new_states
        previous_output = output
        if outputs is not None:
            outputs[k] = output
    return previous_output, states


class RecurrentLayer:
    """Base of LSTM, GRU and SimpleRNN: the Keras ``RNN`` layer around one cell."""

    cell_class: ClassVar[type[Cell]]

    def __init__(
        self,
        cell: Cell,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        zero_output_for_mask: bool = False,
        time_major: bool = False,
        backend: str = "tensorflow",
    ) -> None:
        self.cell = cell
        self.keras_version = cell.keras_version
        self.dtype = cell.dtype
        self.return_sequences = _check_bool(return_sequences, "return_sequences")
        self.return_state = _check_bool(return_state, "return_state")
        self.go_backwards = _check_bool(go_backwards, "go_backwards")
        self.stateful = _check_bool(stateful, "stateful")
        self.zero_output_for_mask = _check_bool(zero_output_for_mask, "zero_output_for_mask")
        self.time_major = _check_bool(time_major, "time_major")
        if self.time_major and self.keras_version != 2:
            raise ValueError("time_major=True exists in Keras 2 only (tf_keras); Keras 3 layers have no time_major argument")
        if backend not in SUPPORTED_BACKENDS[self.keras_version]:
            raise ValueError(
                f"backend must be one of {SUPPORTED_BACKENDS[self.keras_version]} for Keras {self.keras_version} "
                f"(the backends whose recurrent semantics rnnparity has verified); got {backend!r}"
            )
        self.backend = backend
        self._states: list[np.ndarray] | None = None
        self._expected_batch_size: int | None = None

    # ------------------------------------------------------------------ attributes
    @property
    def units(self) -> int:
        return self.cell.units

    @property
    def use_bias(self) -> bool:
        return self.cell.use_bias

    @property
    def activation(self) -> str:
        return self.cell.activation_name

    @property
    def built(self) -> bool:
        return self.cell.built

    @property
    def states(self) -> list[np.ndarray] | None:
        """Copies of the carried states of a stateful layer (None before its first call)."""
        return None if self._states is None else [s.copy() for s in self._states]

    def set_weights(self, weights: Sequence[ArrayLike]) -> None:
        """Load Keras weights ``[kernel, recurrent_kernel, bias]`` unchanged (copied)."""
        self.cell.set_weights(weights)

    def get_weights(self) -> list[np.ndarray]:
        return self.cell.get_weights()

    # ------------------------------------------------------------------ state
    def reset_state(self, states: Any = None) -> None:
        """Zero the carried states of a stateful layer, or set them to ``states``."""
        if not self.stateful:
            raise ValueError("reset_state() is for stateful layers; this layer was built with stateful=False")
        if states is None:
            if self._states is not None:
                self._states = [np.zeros_like(s) for s in self._states]
            return
        state_list, _ = self.cell.flatten_states(states, "states")
        batch = self._expected_batch_size
        if batch is None:
            first = np.asarray(state_list[0]) if state_list else np.zeros((0, 0))
            batch = first.shape[0] if first.ndim == 2 else -1
        self._states = _check_states(state_list, self.cell, batch, "states")
        self._expected_batch_size = batch

    def reset_states(self, states: Any = None) -> None:
        """Keras 2 name of :meth:`reset_state`."""
        self.reset_state(states)

    # ------------------------------------------------------------------ call
    def __call__(
        self,
        inputs: ArrayLike,
        initial_state: Any = None,
        mask: ArrayLike | None = None,
        training: bool | None = None,
    ) -> LayerOutput:
        """Run the layer; returns exactly what the emulated Keras returns."""
        self.cell._require_built()
        if training and self.cell.dropout_active:
            raise ValueError(
                "training=True with dropout > 0 draws random masks that a twin cannot reproduce; call with training=False"
            )
        x = self._time_major_inputs(_as_float_array(inputs, self.dtype, "inputs"))
        timesteps, batch, _ = x.shape
        time_mask = self._check_mask(mask, batch, timesteps)
        states, structure = self._initial_states(initial_state, batch)

        outputs = None
        if self.return_sequences:
            # Allocated in the layout the caller gets; the loop writes through a time-major view.
            shape = (timesteps, batch, self.cell.output_size)
            outputs = np.empty(shape if self.time_major else (batch, timesteps, shape[2]), dtype=self.dtype)
        with np.errstate(over="ignore", invalid="ignore"):
            last_output, final_states = run_time_loop(
                self.cell,
                x,
                states,
                time_mask,
                self.go_backwards,
                self.zero_output_for_mask,
                None if outputs is None else (outputs if self.time_major else outputs.transpose(1, 0, 2)),
                self.backend,
            )
        if self.stateful:
            self._states = [s.copy() for s in final_states]
            self._expected_batch_size = batch

        output = outputs if outputs is not None else last_output
        if not self.return_state:
            return output
        packed = [output, *self.cell.pack_layer_states(final_states, structure)]
        return tuple(packed) if self.keras_version == 3 else packed

    def _time_major_inputs(self, x: np.ndarray) -> np.ndarray:
        """``x`` (an array in the layer's dtype) checked against the layer, as a time-major view."""
        if x.ndim != 3:
            layout = "(timesteps, batch, input_dim)" if self.time_major else "(batch, timesteps, input_dim)"
            raise ValueError(f"inputs must be rank 3 {layout}; got shape {x.shape}")
        time_major = x if self.time_major else x.transpose(1, 0, 2)
        timesteps, _, input_dim = time_major.shape
        if input_dim != self.cell.input_dim:
            raise ValueError(
                f"inputs have input_dim {input_dim} (last axis); {self.cell._describe()} was given weights for "
                f"input_dim {self.cell.input_dim}"
            )
        if timesteps == 0:
            raise ValueError(f"inputs have 0 timesteps (shape {x.shape}); Keras refuses an empty sequence too")
        return time_major

    def _check_mask(self, mask: ArrayLike | None, batch: int, timesteps: int) -> np.ndarray | None:
        if mask is None:
            return None
        array = np.asarray(mask)
        if array.dtype.kind not in "biuf":
            raise TypeError(f"mask must be booleans (or 0/1 numbers); got dtype {array.dtype}")
        expected = (timesteps, batch) if self.time_major else (batch, timesteps)
        if array.shape != expected:
            layout = "(timesteps, batch)" if self.time_major else "(batch, timesteps)"
            raise ValueError(f"mask must have shape {layout} = {expected}; got {array.shape}")
        boolean = array.astype(bool) if array.dtype.kind == "b" else array != 0
        return boolean if self.time_major else boolean.T

    def _initial_states(self, initial_state: Any, batch: int) -> tuple[list[np.ndarray], Any]:
        """The flat states this call starts from, and the structure the result is packed in."""
        if self.stateful:
            if self._expected_batch_size is not None and batch != self._expected_batch_size:
                raise ValueError(
                    f"this stateful layer carries states for batch size {self._expected_batch_size}; "
                    f"got inputs with batch size {batch} (call reset_state() does not change it; build a new layer)"
                )
        if initial_state is not None:
            state_list, structure = self.cell.flatten_states(initial_state, "initial_state")
            given = _check_states(state_list, self.cell, batch, "initial_state")
            if self.stateful and self._states is not None and self.keras_version == 2:
                # Keras 2 uses the carried states instead whenever any of them is non-zero.
                if any(np.count_nonzero(s) for s in self._states):
                    return [s.copy() for s in self._states], structure
            return given, structure
        if self.stateful and self._states is not None:
            return [s.copy() for s in self._states], None
        return [np.zeros((batch, size), dtype=self.dtype) for size in self.cell.flat_state_sizes], None

    # ------------------------------------------------------------------ config
    def _rnn_config(self, name: Any, trainable: Any, unroll: Any) -> dict[str, Any]:
        """The keys of Keras's ``RNN`` base layer config, in the emulated version."""
        config: dict[str, Any] = {
            "name": name,
            "trainable": trainable,
            "dtype": _dtype_config(self.dtype, self.keras_version),
            "return_sequences": self.return_sequences,
            "return_state": self.return_state,
            "go_backwards": self.go_backwards,
            "stateful": self.stateful,
            "unroll": unroll,
        }
        if self.keras_version == 3:
            config["zero_output_for_mask"] = self.zero_output_for_mask
        else:
            config["time_major"] = self.time_major
            if self.zero_output_for_mask:
                config["zero_output_for_mask"] = True
        return config

    def get_config(self) -> dict[str, Any]:
        """The Keras ``get_config()`` keys of the emulated version."""
        args = self.cell.training_only_args
        config = self._rnn_config(args.get("name"), args.get("trainable", True), args.get("unroll", False))
        cell_config = self.cell.get_config()
        for key in ("name", "trainable", "dtype"):
            cell_config.pop(key, None)
        if self.cell.kind == "simple_rnn":
            cell_config.pop("seed", None)  # Keras 3's SimpleRNN layer (not its cell) has no seed key
        config.update(cell_config)
        config["activity_regularizer"] = self.cell.training_only_args.get("activity_regularizer")
        return config

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(units={self.units}, keras_version={self.keras_version}, "
            f"dtype={self.dtype.name!r}, return_sequences={self.return_sequences}, "
            f"return_state={self.return_state})"
        )


_RNN_LAYER_ARGS = ("name", "trainable", "dtype", "input_shape", "batch_input_shape", "batch_size")


class RNN(RecurrentLayer):
    """NumPy twin of ``keras.layers.RNN(cell)``: the generic recurrent layer around a twin
    cell, a :class:`~rnnparity.stacked.StackedRNNCells`, or a list of cells (stacked, as
    Keras does). Returns ``output`` or ``output, *states`` with the cell's state structure
    (nested per cell for a stack)."""

    def __init__(
        self,
        cell: Any,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        zero_output_for_mask: bool = False,
        time_major: bool = False,
        backend: str = "tensorflow",
        **layer_args: Any,
    ) -> None:
        if isinstance(cell, (list, tuple)):
            from rnnparity.stacked import StackedRNNCells

            cell = StackedRNNCells(cell)
        if not isinstance(cell, Cell):
            raise TypeError(
                "cell must be an rnnparity cell (LSTMCell, GRUCell, SimpleRNNCell, StackedRNNCells) or a list of them; "
                f"got {type(cell).__name__}"
            )
        unknown = sorted(set(layer_args) - set(_RNN_LAYER_ARGS))
        if unknown:
            raise TypeError(f"RNN got unexpected keyword argument(s) {unknown}; it also accepts {list(_RNN_LAYER_ARGS)}")
        if layer_args.get("dtype") is not None and _check_dtype(layer_args["dtype"]) != cell.dtype:
            raise ValueError(
                f"dtype={layer_args['dtype']!r} differs from the cell's dtype {cell.dtype.name!r}; set it on the cell"
            )
        self.unroll = _check_bool(unroll, "unroll")
        self.layer_args = layer_args
        super().__init__(cell, return_sequences, return_state, go_backwards, stateful, zero_output_for_mask, time_major, backend)

    def get_config(self) -> dict[str, Any]:
        """The Keras ``RNN.get_config()`` keys of the emulated version, with the cell nested."""
        config = self._rnn_config(self.layer_args.get("name"), self.layer_args.get("trainable", True), self.unroll)
        config["cell"] = {"class_name": type(self.cell).__name__, "config": self.cell.get_config()}
        return config

    def __repr__(self) -> str:
        return (
            f"RNN({self.cell._describe()}, keras_version={self.keras_version}, dtype={self.dtype.name!r}, "
            f"return_sequences={self.return_sequences}, return_state={self.return_state})"
        )
