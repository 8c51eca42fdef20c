"""The one time loop shared by every recurrent layer, and the RNN-layer plumbing around it.

``run_time_loop`` runs any :class:`~rnnparity.cell.RecurrentCell` over a sequence: it
projects a chunk of timesteps' inputs at a time and calls the cell's ``recurrent_step``
once per timestep. ``RecurrentLayer.run_call`` is the one layer-run function around it: a
layer call and ``rnnparity.gradients`` both run through it (the gradients with a recorder,
so the same step fills the records the backward pass reads).

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

import copy
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

import numpy as np

from rnnparity import threads
from rnnparity.cell import Cell, RecurrentCell, StepRecord, check_states, dtype_config
from rnnparity.checks import (
    TRAINING_ONLY_ARGS,
    ArrayLike,
    as_float_array,
    as_float_array_or_self,
    check_bool,
    check_dtype,
    flatten_nested,
)
from rnnparity.stacked import StackedRNNCells

LayerOutput = Union[np.ndarray, tuple, list]

# Gives the record a step fills at timestep t (rnnparity.gradients passes one; a call does not).
Recorder = Callable[[int], StepRecord]

# Keras backends whose RNN loop the twins emulate. They differ in one place: at a masked
# step before the first unmasked one, TensorFlow and torch repeat a zero output, JAX and
# NumPy the initial h (their scan loops repeat states[0]; read in keras/src/backend/*/rnn.py
# of Keras 3.15 and measured by `rnnparity check --backend`).
SUPPORTED_BACKENDS = {2: ("tensorflow",), 3: ("tensorflow", "jax", "torch", "numpy")}
REPEATS_INITIAL_H = ("jax", "numpy")

__all__ = [
    "PROJECTION_CHUNK_BYTES",
    "RNN",
    "SUPPORTED_BACKENDS",
    "TRAINING_ONLY_ARGS",
    "ArrayLike",
    "Cell",
    "LayerCall",
    "LayerOutput",
    "RecurrentLayer",
    "SPLITTABLE_KINDS",
    "flatten_nested",
    "projection_chunk",
    "run_time_loop",
    "step_macs",
]


# Cells whose batch rows never interact in a step, so that a forward call may run slices of
# its batch in parallel (rnnparity.threads decides when).
SPLITTABLE_KINDS = ("lstm", "gru", "simple_rnn")

# The input projection of all timesteps is one matmul per chunk of timesteps; a chunk holds
# at most this many bytes of projected inputs, so memory stays bounded for long sequences.
PROJECTION_CHUNK_BYTES = 16 * 2**20


def projection_chunk(timesteps: int, batch: int, width: int, itemsize: int, limit: int | None = None) -> int:
    """How many timesteps the loop projects per matmul (at least 1, at most ``timesteps``):
    at most ``limit`` bytes of projected inputs (default :data:`PROJECTION_CHUNK_BYTES`)."""
    per_step = max(1, batch * width * itemsize)
    return max(1, min(timesteps, (PROJECTION_CHUNK_BYTES if limit is None else limit) // per_step))


def step_macs(cell: RecurrentCell, batch: int) -> int:
    """Multiply-adds of one step's recurrent matmul (what decides the BLAS threads, see :mod:`rnnparity.threads`).
    A cell whose recurrent product is no dense matmul (ConvLSTM: a convolution) counts its
    own with ``recurrent_macs(batch)``."""
    own = getattr(cell, "recurrent_macs", None)
    if own is not None:
        return int(own(batch))
    return batch * cell.projection_width * cell.output_size


def run_time_loop(
    cell: RecurrentCell,
    inputs: np.ndarray,
    states: list[np.ndarray],
    mask: np.ndarray | None,
    go_backwards: bool,
    zero_output_for_mask: bool,
    outputs: np.ndarray | None,
    backend: str = "tensorflow",
    recorder: Recorder | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Run ``cell`` over time-major ``inputs`` of shape ``(T, batch, input_dim)``.

    ``mask`` is time-major ``(T, batch)`` booleans or None. ``outputs``, when given, is a
    time-major ``(T, batch, output_size)`` array (often a transposed view of the caller's
    batch-major result) that receives the output of every step in processing order (so
    reversed when ``go_backwards``). ``recorder``, when given, returns the record each
    step fills (``recorder(t)``, ``t`` the timestep). Returns ``(last_output, final_states)``.

    The input projection ``x_t @ kernel + input_bias`` is hoisted out of the loop: it is
    computed for a chunk of timesteps at a time (one matmul, see ``projection_chunk``), so
    the loop itself does only the recurrent matmul and the gates. The loop runs on the BLAS
    threads :mod:`rnnparity.threads` chooses for it; the process's count is restored after.

    A masked step repeats the previous output. Before the first unmasked step that is zeros
    on the TensorFlow and torch backends and the initial ``h`` on the JAX and NumPy backends
    (their loops repeat ``states[0]``, which equals the output at every later step).
    """
    timesteps, batch, _ = inputs.shape
    splittable = recorder is None and getattr(cell, "kind", None) in SPLITTABLE_KINDS
    plan = threads.choose(threads.current_setting(), step_macs(cell, batch), batch, splittable)
    if plan.workers > 1:
        return _split_batch(plan.workers, cell, inputs, states, mask, go_backwards, zero_output_for_mask, outputs, backend)
    zeros = np.zeros((batch, cell.output_size), dtype=cell.dtype)
    previous_output = states[cell.output_state_index] if backend in REPEATS_INITIAL_H else zeros
    # A cell may project fewer bytes at a time (ConvLSTM keeps the chunk's buffer between calls).
    limit = getattr(cell, "projection_chunk_bytes", None)
    chunk = projection_chunk(timesteps, batch, cell.projection_width, cell.dtype.itemsize, limit)
    projected = np.empty((0, 0))  # (gates, steps, batch, units): the current chunk
    first = 0  # the timestep that projected[:, 0] belongs to
    order = range(timesteps - 1, -1, -1) if go_backwards else range(timesteps)
    with threads.limited(plan.blas_threads):
        for k, t in enumerate(order):
            if not first <= t < first + projected.shape[1]:
                first = max(0, t - chunk + 1) if go_backwards else t
                del projected  # so that at most one chunk is alive while the next is computed
                projected = cell.input_projection(np.ascontiguousarray(inputs[first : first + chunk]))
            x_proj = projected[:, t - first]
            if recorder is None:
                output, new_states = cell.recurrent_step(x_proj, states)
            else:
                output, new_states = cell.recurrent_step(x_proj, states, recorder(t))
            if mask is not None and not mask[t].all():
                keep = mask[t][:, None]
                new_states = [np.where(keep, new, old) for new, old in zip(new_states, states)]
                output = np.where(keep, output, zeros if zero_output_for_mask else previous_output)
            states = new_states
            previous_output = output
            if outputs is not None:
                outputs[k] = output
    return previous_output, states


def _split_batch(
    workers: int,
    cell: RecurrentCell,
    inputs: np.ndarray,
    states: list[np.ndarray],
    mask: np.ndarray | None,
    go_backwards: bool,
    zero_output_for_mask: bool,
    outputs: np.ndarray | None,
    backend: str,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """``run_time_loop`` over ``workers`` slices of the batch at once, one Python thread and
    one BLAS thread each (rows never interact, and NumPy releases the GIL in its matmuls
    and element-wise functions). Each slice writes its rows of ``outputs``; the results
    are the rows of the slices, in order: the same bits as one loop over the whole batch."""
    bounds = np.linspace(0, inputs.shape[1], workers + 1).astype(int)
    errors = np.geterr()  # the caller's floating-point error handling, which new threads do not inherit

    def run(rows: slice) -> tuple[np.ndarray, list[np.ndarray]]:
        # The slice's own loop: one BLAS thread, not split again.
        with threads.blas_threads(1), np.errstate(**errors):
            return run_time_loop(
                cell,
                inputs[:, rows],
                [s[rows] for s in states],
                None if mask is None else mask[:, rows],
                go_backwards,
                zero_output_for_mask,
                None if outputs is None else outputs[:, rows],
                backend,
            )

    with ThreadPoolExecutor(workers, thread_name_prefix="rnnparity-batch") as pool:
        slices = list(pool.map(run, [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]))
    last_output = np.concatenate([last for last, _ in slices])
    return last_output, [np.concatenate(parts) for parts in zip(*(final for _, final in slices))]


@dataclass
class LayerCall:
    """One call of a recurrent layer: its checked arguments, then (after ``run_call``) its result."""

    inputs: np.ndarray  # time-major (T, batch, input_dim), the layer's dtype
    input_shape: tuple[int, ...]  # as given (batch-major unless time_major)
    mask: np.ndarray | None  # time-major (T, batch) booleans
    states: list[np.ndarray]  # the flat states the call starts from
    structure: Any  # how initial_state was given (for packing states like it)
    used_initial_state: bool  # the call starts from the given initial_state
    output: np.ndarray | None = None
    final_states: list[np.ndarray] = field(default_factory=list)


class RecurrentLayer:
    """Base of LSTM, GRU and SimpleRNN: the Keras ``RNN`` layer around one cell."""

    cell_class: ClassVar[type[Cell]]

    def __init__(
        self,
        cell: Cell | StackedRNNCells,
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
        self.return_sequences = check_bool(return_sequences, "return_sequences")
        self.return_state = check_bool(return_state, "return_state")
        self.go_backwards = check_bool(go_backwards, "go_backwards")
        self.stateful = check_bool(stateful, "stateful")
        self.zero_output_for_mask = check_bool(zero_output_for_mask, "zero_output_for_mask")
        self.time_major = check_bool(time_major, "time_major")
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
        if isinstance(self.cell, StackedRNNCells):
            raise AttributeError("a StackedRNNCells has an activation per cell: read layer.cell.cells[i].activation_name")
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
        self._states = check_states(state_list, self.cell, batch, "states")
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
        call = self.prepare_call(inputs, initial_state, mask, training)
        self.run_call(call)
        return self.pack_result(call)

    def prepare_call(
        self,
        inputs: ArrayLike,
        initial_state: Any = None,
        mask: ArrayLike | None = None,
        training: bool | None = None,
        copy_inputs: bool = True,
    ) -> LayerCall:
        """The call ``layer(inputs, initial_state, mask, training)`` checked, not yet run.
        ``inputs`` is copied into the layer's dtype (with ``copy_inputs=False``, only when it
        is not an array of that dtype already)."""
        self.cell.require_built()
        if training and self.cell.dropout_active:
            raise ValueError(
                "training=True with dropout > 0 draws random masks that a twin cannot reproduce; call with training=False"
            )
        convert = as_float_array if copy_inputs else as_float_array_or_self
        array = convert(inputs, self.dtype, "inputs")
        x = self._time_major_inputs(array)
        timesteps, batch, _ = x.shape
        time_mask = self._check_mask(mask, batch, timesteps)
        states, structure, used_initial_state = self._initial_states(initial_state, batch)
        return LayerCall(x, array.shape, time_mask, states, structure, used_initial_state)

    @property
    def zeroes_masked_output(self) -> bool:
        """Whether the time loop outputs zeros at masked steps: ``zero_output_for_mask``, as
        the emulated Keras applies it (the backward pass follows the same rule)."""
        return self.zero_output_for_mask

    def run_call(self, call: LayerCall, recorder: Recorder | None = None, keep_sequence: bool = True) -> None:
        """Run ``call`` through the time loop: sets ``call.output`` (the output sequence only
        with ``return_sequences`` and ``keep_sequence``, else the last output) and
        ``call.final_states``, and advances a stateful layer's carried states. ``recorder``
        is passed to the loop (see :func:`run_time_loop`)."""
        timesteps, batch, _ = call.inputs.shape
        outputs = None
        if self.return_sequences and keep_sequence:
            # Allocated in the layout the caller gets; the loop writes through a time-major view.
            shape = (timesteps, batch, self.cell.output_size)
            outputs = np.empty(shape if self.time_major else (batch, timesteps, shape[2]), dtype=self.dtype)
        with np.errstate(over="ignore", invalid="ignore"):
            last_output, call.final_states = run_time_loop(
                self.cell,
                call.inputs,
                call.states,
                call.mask,
                self.go_backwards,
                self.zeroes_masked_output,
                None if outputs is None else (outputs if self.time_major else outputs.transpose(1, 0, 2)),
                self.backend,
                recorder,
            )
        call.output = outputs if outputs is not None else last_output
        if self.stateful:
            self._states = [s.copy() for s in call.final_states]
            self._expected_batch_size = batch

    def call_cell(self, call: LayerCall) -> RecurrentCell:
        """The cell that runs ``call``: the layer's (a ConvLSTM's is bound to the inputs' spatial size per call)."""
        return self.cell

    def pack_result(self, call: LayerCall) -> LayerOutput:
        """What the emulated Keras returns for a call that has run."""
        assert call.output is not None
        if not self.return_state:
            return call.output
        packed = [call.output, *self.cell.pack_layer_states(call.final_states, call.structure)]
        return tuple(packed) if self.keras_version == 3 else packed

    def call_output_shape(self, call: LayerCall) -> tuple[int, ...]:
        """The shape of the output ``call`` returns (before it has run)."""
        timesteps, batch, _ = call.inputs.shape
        units = self.cell.output_size
        if not self.return_sequences:
            return (batch, units)
        return (timesteps, batch, units) if self.time_major else (batch, timesteps, units)

    def fresh_copy(self) -> RecurrentLayer:
        """A deep copy of this layer without carried states."""
        twin = copy.deepcopy(self)
        twin._states = None
        twin._expected_batch_size = None
        return twin

    def _time_major_inputs(self, x: np.ndarray) -> np.ndarray:
        """``x`` (an array in the layer's dtype) checked against the layer, as a time-major view."""
        if x.ndim != 3:
            layout = "(timesteps, batch, input_dim)" if self.time_major else "(batch, timesteps, input_dim)"
            raise ValueError(f"inputs must be rank 3 {layout}; got shape {x.shape}")
        time_major = x if self.time_major else x.transpose(1, 0, 2)
        timesteps, _, input_dim = time_major.shape
        if input_dim != self.cell.input_dim:
            raise ValueError(
                f"inputs have input_dim {input_dim} (last axis); {self.cell.describe()} was given weights for "
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

    def _initial_states(self, initial_state: Any, batch: int) -> tuple[list[np.ndarray], Any, bool]:
        """The flat states this call starts from, the structure the result is packed in, and
        whether they are the given ``initial_state``."""
        if self.stateful:
            if self._expected_batch_size is not None and batch != self._expected_batch_size:
                raise ValueError(
                    f"this stateful layer carries states for batch size {self._expected_batch_size}; "
                    f"got inputs with batch size {batch} (call reset_state() does not change it; build a new layer)"
                )
        if initial_state is not None:
            state_list, structure = self.cell.flatten_states(initial_state, "initial_state")
            given = check_states(state_list, self.cell, batch, "initial_state")
            if self.stateful and self._states is not None and self.keras_version == 2:
                # Keras 2 uses the carried states instead whenever any of them is non-zero.
                if any(np.count_nonzero(s) for s in self._states):
                    return [s.copy() for s in self._states], structure, False
            return given, structure, True
        if self.stateful and self._states is not None:
            return [s.copy() for s in self._states], None, False
        return [np.zeros((batch, size), dtype=self.dtype) for size in self.cell.flat_state_sizes], None, False

    # ------------------------------------------------------------------ config
    def _rnn_config(self, name: Any, trainable: Any, unroll: Any) -> dict[str, Any]:
        """The keys of Keras's ``RNN`` base layer config, in the emulated version."""
        config: dict[str, Any] = {
            "name": name,
            "trainable": trainable,
            "dtype": dtype_config(self.dtype, self.keras_version),
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
            cell = StackedRNNCells(cell)
        if not isinstance(cell, (Cell, StackedRNNCells)):
            raise TypeError(
                "cell must be an rnnparity cell (LSTMCell, GRUCell, SimpleRNNCell, StackedRNNCells) or a list of them; "
                f"got {type(cell).__name__}"
            )
        unknown = sorted(set(layer_args) - set(_RNN_LAYER_ARGS))
        if unknown:
            raise TypeError(f"RNN got unexpected keyword argument(s) {unknown}; it also accepts {list(_RNN_LAYER_ARGS)}")
        if layer_args.get("dtype") is not None and check_dtype(layer_args["dtype"]) != cell.dtype:
            raise ValueError(
                f"dtype={layer_args['dtype']!r} differs from the cell's dtype {cell.dtype.name!r}; set it on the cell"
            )
        self.unroll = check_bool(unroll, "unroll")
        self.layer_args = layer_args
        super().__init__(cell, return_sequences, return_state, go_backwards, stateful, zero_output_for_mask, time_major, backend)

    def get_config(self) -> dict[str, Any]:
        """The Keras ``RNN.get_config()`` keys of the emulated version, with the cell nested."""
        config = self._rnn_config(self.layer_args.get("name"), self.layer_args.get("trainable", True), self.unroll)
        config["cell"] = {"class_name": type(self.cell).__name__, "config": self.cell.get_config()}
        return config

    def __repr__(self) -> str:
        return (
            f"RNN({self.cell.describe()}, keras_version={self.keras_version}, dtype={self.dtype.name!r}, "
            f"return_sequences={self.return_sequences}, return_state={self.return_state})"
        )
