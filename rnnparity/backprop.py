"""Backpropagation through time: ``rnnparity.gradients``, what ``tf.GradientTape`` gives.

``gradients(layer, inputs, output_grads, initial_state=None, mask=None)`` runs the twin's
forward pass once, recording per step what the backward pass needs, then walks the steps in
reverse. ``output_grads`` has the structure of what the layer returns (an array, or
``output, *states`` with ``return_state``; two outputs for ``Bidirectional(merge_mode=None)``;
``None`` for an output no gradient reaches), so gradients can flow in through the output
sequence, the last output and every returned state, as in an encoder-decoder. The result::

    grads["inputs"]         shaped like inputs
    grads["initial_state"]  like initial_state (None when not given)
    grads["weights"]        like layer.get_weights(): kernel, recurrent_kernel(, bias) per cell
    grads["states"]         stateful layers only: w.r.t. the carried states the call started from

The forward pass is the layer's own call (``RecurrentLayer.prepare_call`` and ``run_call``,
the one time loop), with a recorder: each cell's own ``recurrent_step`` fills a
:class:`~rnnparity.cell.StepRecord`, so masks, ``go_backwards``, the state rules and every
bit are the call's. The backward pass (:mod:`rnnparity.tapes`, one tape per cell kind)
differentiates it the way TensorFlow differentiates Keras's loop:

* a masked step selects (``tf.where``): for a masked row the cell gets no gradient, the
  state gradients pass to the previous states unchanged, and the output's gradient flows
  to the previous step's output (nowhere with ``zero_output_for_mask``, nor before the
  first step, whose "previous output" is a constant zero);
* activation derivatives at kinks and clip edges are TensorFlow's (see
  :mod:`rnnparity.activation_grads`): Keras 3's ``hard_sigmoid`` has gradient 0 at ``±3``,
  Keras 2's has 0.2 at ``±2.5``;
* ``go_backwards`` outputs are in processing order, and so are their gradients.

A stateful layer reads and advances its carried states exactly as the call
``layer(inputs, initial_state, mask)`` would, as the Keras call inside a tape does.
``grads["states"]`` is the gradient w.r.t. the carried states the call started from, zeros
when the call used ``initial_state`` instead; when Keras 2 ignores a given ``initial_state``
(carried states non-zero), ``grads["initial_state"]`` is zeros. Gradients are in the layer's
dtype, but for a ``Bidirectional`` whose dtype differs from its layers': Keras casts the
inputs (Keras 3: and the initial states) to the wrapper's dtype, so their gradients are
rounded to it and, as ``tf.GradientTape`` gives them, in the dtype of the NumPy arrays given.
Only the TensorFlow backends' conventions are emulated (``backend="jax"`` is refused).

Memory. The forward pass keeps per timestep only what the backward pass reads, in buffers
allocated for all ``T`` steps: the gates' pre-activations and the ``h`` each step started
from (LSTM: and references to its ``c`` states), ``P`` arrays of ``(batch, units)`` — LSTM 6
(4 gates, ``h_tm1``, ``c``; 7 at a partly masked step, where the new ``c`` is not the next
step's ``c_tm1``), GRU 5 with ``reset_after`` (3 gates, the recurrent candidate
``h_tm1 @ U_h + br_h``, ``h_tm1``) else 4, SimpleRNN 2. The reverse loop overwrites each
step's pre-activations with their gradients; then the weights' and the inputs' gradients are
matmuls over all timesteps, a projection chunk of them at a time (as the forward pass
projects its inputs). With ``itemsize`` bytes per number the peak is at most, within
per-step temporaries that do not grow with ``T``::

    itemsize * T * batch * (P * units + input_dim)     # the tape, and grads["inputs"]
    + T * ~0.5 KiB                                     # each step's Python objects
    + 2 * rnn.PROJECTION_CHUNK_BYTES                   # 2 * 16 MiB at most

(the time loop still holds one chunk of projected inputs while it projects the next; the
backward pass's temporaries stay within one chunk), plus copies of ``inputs`` and
``output_grads`` when they are not already in the layer's dtype. The output sequence is
not kept, but for ``Bidirectional(merge_mode="mul")``, which needs it (``+ itemsize * T *
batch * units`` per direction). A ``StackedRNNCells`` keeps
each cell's ``P`` and the input each later cell reads (``T * batch * its input_dim``); a
``Bidirectional`` keeps both directions' tapes.

ConvLSTM1D/2D/3D run the same way on the time loop's rows (``units`` = ``filters *
prod(S_out)``, ``input_dim`` = ``channels * prod(S)``): their tape is an LSTM's (``P`` = 6),
``output_grads`` and the gradients of the inputs and states are in Keras's layout, and the
backward pass's convolutions are im2col matmuls and their adjoint (see
:class:`rnnparity.tapes.ConvLSTMTape`), a chunk of timesteps at a time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rnnparity import threads
from rnnparity.bidirectional import Bidirectional
from rnnparity.checks import as_float_array, as_float_array_or_self, cast_nested, flatten_nested
from rnnparity.conv_lstm import ConvLSTM, ConvLSTMCell
from rnnparity.rnn import LayerCall, RecurrentLayer, step_macs
from rnnparity.stacked import StackedRNNCells
from rnnparity.tapes import Tape, tape_for


class _Run:
    """One call of a RecurrentLayer (checked by the layer), and the tape its steps record on."""

    def __init__(self, layer: RecurrentLayer, call: LayerCall) -> None:
        self.layer = layer
        self.call = call
        self.cell = layer.call_cell(call)  # a ConvLSTM's cell bound to the inputs' spatial size
        self.tape: Tape = tape_for(self.cell)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.layer.call_output_shape(self.call)

    @property
    def conv_cell(self) -> ConvLSTMCell | None:
        """A ConvLSTM's cell bound to this call: its loop works in rows, not in Keras's layout
        (every other layer's loop already works in Keras's layout)."""
        return self.layer.call_cell(self.call) if isinstance(self.layer, ConvLSTM) else None

    @property
    def state_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """``(name, shape)`` of each state the layer returns, in Keras's layout."""
        cell = self.conv_cell
        batch = self.call.inputs.shape[1]
        shapes = [s.shape if cell is None else cell.state_shape(batch) for s in self.call.states]
        return list(zip(self.layer.cell.flat_state_names, shapes))

    def to_rows(self, array: np.ndarray) -> np.ndarray:
        """A gradient in Keras's layout -> the time loop's rows."""
        cell = self.conv_cell
        return array if cell is None else cell.to_rows(array)

    def from_rows(self, array: np.ndarray) -> np.ndarray:
        """The time loop's rows of a state or an output -> Keras's layout."""
        cell = self.conv_cell
        return array if cell is None else cell.from_rows(array)

    def inputs_from_rows(self, array: np.ndarray) -> np.ndarray:
        cell = self.conv_cell
        return array if cell is None else cell.inputs_from_rows(array)

    def keras_output(self) -> np.ndarray:
        """The output the call kept (``keep_output``), in Keras's layout."""
        assert self.call.output is not None
        if self.conv_cell is None:
            return self.call.output
        output = self.from_rows(self.call.output)
        return output.swapaxes(0, 1) if self.layer.return_sequences else output  # time-major rows for a sequence


def _prepare(layer: RecurrentLayer, inputs: Any, initial_state: Any, mask: Any, training: bool | None) -> _Run:
    """Check the call ``layer(inputs, initial_state, mask)`` as the layer does, without running it."""
    layer.cell.require_built()
    if layer.backend != "tensorflow":
        raise ValueError(
            f"gradients follow TensorFlow's gradient conventions (kinks, masked steps); this twin emulates "
            f"backend={layer.backend!r}, which rnnparity does not differentiate"
        )
    if training and layer.cell.dropout_active:
        raise ValueError(
            "training=True with dropout > 0: Keras's gradients would go through random dropout masks that a twin cannot "
            "reproduce; use training=False (or a layer without dropout)"
        )
    return _Run(layer, layer.prepare_call(inputs, initial_state, mask, copy_inputs=False))


def _forward(run: _Run, keep_output: bool = False) -> None:
    """Run the call as the layer runs it, each step filling its record on the tape; a
    stateful layer's carried states advance as the call advances them. The output sequence
    is kept only when ``keep_output``."""
    timesteps, batch, _ = run.call.inputs.shape
    run.tape.allocate(timesteps, batch)
    run.layer.run_call(run.call, recorder=run.tape.record_step, keep_sequence=keep_output)


def _backward(run: _Run, d_output: np.ndarray, d_states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Walk ``run``'s steps in reverse. ``d_output`` is shaped like the layer's output and
    ``d_states`` like its flat final states (arrays of the layer's dtype). Returns the
    gradients of the inputs and of the states the call started from; the weights'
    gradients are on ``run.tape``."""
    layer, tape, x, mask = run.layer, run.tape, run.call.inputs, run.call.mask
    timesteps, batch, _ = x.shape
    zeros = np.zeros((batch, run.cell.output_size), dtype=layer.dtype)
    d_sequence = None
    if layer.return_sequences:
        d_sequence = d_output if layer.time_major else d_output.transpose(1, 0, 2)  # (T, batch, units), processing order
        d_out = zeros
    else:
        d_out = d_output
    d_inputs = np.empty(run.call.input_shape, dtype=layer.dtype)
    d_inputs_tm = d_inputs if layer.time_major else d_inputs.transpose(1, 0, 2)
    d_s = list(d_states)
    # The BLAS threads as the forward loop chooses them (rnnparity.threads), restored after.
    with np.errstate(over="ignore", invalid="ignore"), threads.for_call(step_macs(run.cell, batch)):
        for k in range(timesteps - 1, -1, -1):
            t = timesteps - 1 - k if layer.go_backwards else k
            if d_sequence is not None:
                d_out = d_out + d_sequence[k]
            if mask is not None and not mask[t].all():
                keep = mask[t][:, None]
                d_step_output = np.where(keep, d_out, 0)
                d_out = zeros if layer.zeroes_masked_output else np.where(keep, 0, d_out)
                d_step_states = [np.where(keep, d, 0) for d in d_s]
                carried: list[np.ndarray] | None = [np.where(keep, 0, d) for d in d_s]
            else:
                d_step_output, d_out = d_out, zeros
                d_step_states, carried = d_s, None
            _, d_s = tape.backward(t, d_step_output, d_step_states)
            if carried is not None:
                d_s = [a + b for a, b in zip(d_s, carried)]
        tape.finish(x, d_inputs_tm)
    return d_inputs, d_s


# ============================================================================ output_grads
def _describe_layer(layer: Any) -> str:
    if isinstance(layer, Bidirectional):
        inner = layer.forward_layer
        return (
            f"Bidirectional({inner.cell.describe()}, merge_mode={layer.merge_mode!r}, "
            f"return_sequences={inner.return_sequences}, return_state={inner.return_state})"
        )
    return f"{layer.cell.describe()} with return_sequences={layer.return_sequences}, return_state={layer.return_state}"


def _parse_output_grads(
    output_grads: Any, owner: Any, expected: list[tuple[str, tuple[int, ...]]], single: bool, dtype: np.dtype
) -> list[np.ndarray]:
    """``output_grads`` flattened and checked against what ``owner`` returns, ``expected``
    (``(name, shape)`` in return order); a ``None`` leaf means no gradient (zeros)."""
    names = [name for name, _ in expected]
    if single:
        if isinstance(output_grads, (list, tuple)):
            raise TypeError(
                f"output_grads must be one array shaped like the output of {_describe_layer(owner)}, "
                f"{expected[0][1]}; got a {type(output_grads).__name__} of {len(output_grads)}"
            )
        leaves = [output_grads]
    else:
        if not isinstance(output_grads, (list, tuple)):
            raise TypeError(
                f"output_grads must be a list or tuple like what {_describe_layer(owner)} returns: "
                f"{len(expected)} arrays ({', '.join(names)}); got {type(output_grads).__name__}"
            )
        leaves = flatten_nested(output_grads)
        if len(leaves) != len(expected):
            raise ValueError(
                f"output_grads holds {len(leaves)} array(s); {_describe_layer(owner)} returns {len(expected)} "
                f"({', '.join(names)})"
            )
    arrays = []
    for index, (leaf, (name, shape)) in enumerate(zip(leaves, expected)):
        label = "output_grads" if single else f"output_grads[{index}] ({name})"
        if leaf is None:
            arrays.append(np.zeros(shape, dtype=dtype))
            continue
        array = as_float_array_or_self(leaf, dtype, label)
        if array.shape != shape:
            raise ValueError(f"{label} has shape {array.shape}; expected {shape}, the shape of the layer's {name}")
        arrays.append(array)
    return arrays


def _state_grads(run: _Run, d_initial: list[np.ndarray], given: bool) -> dict[str, Any]:
    """``initial_state`` (packed like it was given) and, for a stateful layer, ``states``."""
    cell, used_initial_state = run.layer.cell, run.call.used_initial_state
    zeros = [np.zeros_like(d) for d in d_initial]
    result: dict[str, Any] = {"initial_state": None}
    if given:
        flat = d_initial if used_initial_state else zeros
        if isinstance(cell, StackedRNNCells):
            result["initial_state"] = cell.pack_layer_states(flat, run.call.structure)
        else:
            result["initial_state"] = cell.pack_states(flat, run.call.structure)
    if run.layer.stateful:
        result["states"] = zeros if used_initial_state else d_initial
    return result


def _layer_gradients(
    layer: RecurrentLayer, inputs: Any, output_grads: Any, initial_state: Any, mask: Any, training: bool | None
) -> dict[str, Any]:
    """The gradients of one layer's call; ``output_grads`` and the results in Keras's layout
    (a ConvLSTM's loop works in rows: they are converted on the way in and out)."""
    run = _prepare(layer, inputs, initial_state, mask, training)
    expected = [("output", run.output_shape), *(run.state_shapes if layer.return_state else [])]
    given = _parse_output_grads(output_grads, layer, expected, not layer.return_state, layer.dtype)
    arrays = [run.to_rows(a) for a in given]
    d_states = arrays[1:] if layer.return_state else [np.zeros_like(s) for s in run.call.states]
    _forward(run)
    d_rows, d_initial = _backward(run, arrays[0], d_states)
    d_initial = [run.from_rows(d) for d in d_initial]
    return {
        "inputs": run.inputs_from_rows(d_rows),
        **_state_grads(run, d_initial, initial_state is not None),
        "weights": run.tape.weight_grads(),
    }


# ============================================================================ Bidirectional
def _bidirectional_gradients(
    wrapper: Bidirectional, inputs: Any, output_grads: Any, initial_state: Any, mask: Any, training: bool | None
) -> dict[str, Any]:
    forward_layer, backward_layer = wrapper.forward_layer, wrapper.backward_layer
    # Keras casts the inputs (Keras 3: and initial states) to the wrapper's dtype when it differs.
    cast_to_wrapper = wrapper.dtype != forward_layer.dtype
    given_inputs, given_states = inputs, initial_state
    if cast_to_wrapper:
        inputs = as_float_array(inputs, wrapper.dtype, "inputs")
        if initial_state is not None and wrapper.keras_version == 3:
            initial_state = cast_nested(initial_state, wrapper.dtype)
    forward_state = backward_state = None
    if initial_state is not None:
        forward_state, backward_state = wrapper.split_states(initial_state, "initial_state")
    run_f = _prepare(forward_layer, inputs, forward_state, mask, training)
    run_b = _prepare(backward_layer, inputs, backward_state, mask, training)

    expected, n_outputs = _bidirectional_returns(wrapper, run_f, run_b)
    merged_dtype = wrapper.dtype if wrapper.keras_version == 3 else forward_layer.dtype
    single = wrapper.merge_mode is not None and not wrapper.return_state
    arrays = _parse_output_grads(output_grads, wrapper, expected, single, merged_dtype)
    merged, d_returned_states = arrays[:n_outputs], arrays[n_outputs:]

    keep = wrapper.merge_mode == "mul"
    _forward(run_f, keep_output=keep)
    _forward(run_b, keep_output=keep)
    d_y, d_y_rev = _unmerge(wrapper, run_f, run_b, merged, merged_dtype)

    n_forward = len(run_f.call.states)
    if wrapper.return_state:
        d_states_f = [run_f.to_rows(s.astype(forward_layer.dtype, copy=False)) for s in d_returned_states[:n_forward]]
        d_states_b = [run_b.to_rows(s.astype(backward_layer.dtype, copy=False)) for s in d_returned_states[n_forward:]]
    else:
        d_states_f = [np.zeros_like(s) for s in run_f.call.states]
        d_states_b = [np.zeros_like(s) for s in run_b.call.states]
    d_rows_f, d_initial_f = _backward(run_f, run_f.to_rows(d_y), d_states_f)
    d_rows_b, d_initial_b = _backward(run_b, run_b.to_rows(d_y_rev), d_states_b)
    d_inputs_f, d_inputs_b = run_f.inputs_from_rows(d_rows_f), run_b.inputs_from_rows(d_rows_b)
    d_initial_f = [run_f.from_rows(d) for d in d_initial_f]
    d_initial_b = [run_b.from_rows(d) for d in d_initial_b]

    d_inputs = d_inputs_f + d_inputs_b.astype(d_inputs_f.dtype, copy=False)
    if cast_to_wrapper:
        d_inputs = _through_cast(d_inputs, given_inputs, wrapper.dtype)
    result: dict[str, Any] = {"inputs": d_inputs, "initial_state": None}
    states_f = _state_grads(run_f, d_initial_f, forward_state is not None)
    states_b = _state_grads(run_b, d_initial_b, backward_state is not None)
    if initial_state is not None:
        both = [*_as_list(states_f["initial_state"]), *_as_list(states_b["initial_state"])]
        if cast_to_wrapper and wrapper.keras_version == 3:
            both = _through_cast(both, given_states, wrapper.dtype)
        result["initial_state"] = both
    if wrapper.stateful:
        result["states"] = [*states_f["states"], *states_b["states"]]
    result["weights"] = [*run_f.tape.weight_grads(), *run_b.tape.weight_grads()]
    return result


def _bidirectional_returns(wrapper: Bidirectional, run_f: _Run, run_b: _Run) -> tuple[list[tuple[str, tuple[int, ...]]], int]:
    """``(name, shape)`` of everything ``wrapper`` returns, and how many of those are outputs."""
    shape_f, shape_b = run_f.output_shape, run_b.output_shape
    if wrapper.merge_mode is None:
        expected = [("forward output", shape_f), ("backward output", shape_b)]
    elif wrapper.merge_mode == "concat":
        expected = [("output", (*shape_f[:-1], shape_f[-1] + shape_b[-1]))]
    else:
        expected = [("output", shape_f)]
    n_outputs = len(expected)
    if wrapper.return_state:
        expected += [(f"forward {name}", shape) for name, shape in run_f.state_shapes]
        expected += [(f"backward {name}", shape) for name, shape in run_b.state_shapes]
    return expected, n_outputs


def _unmerge(
    wrapper: Bidirectional, run_f: _Run, run_b: _Run, merged: list[np.ndarray], merged_dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray]:
    """The gradients of the forward layer's output and of the backward layer's (in its own
    processing order, each in its layer's dtype), from those of the merged output(s)."""
    forward_layer, backward_layer = wrapper.forward_layer, wrapper.backward_layer
    time_axis = 0 if forward_layer.time_major else 1
    g = merged[0]
    if wrapper.merge_mode is None:
        d_y, d_y_rev = merged
    elif wrapper.merge_mode == "concat":
        width = run_f.output_shape[-1]
        d_y, d_y_rev = g[..., :width], g[..., width:]
    elif wrapper.merge_mode == "sum":
        d_y, d_y_rev = g, g
    elif wrapper.merge_mode == "ave":  # (y + y_rev) / 2
        d_y = d_y_rev = g / g.dtype.type(2)
    else:  # mul: y * y_rev, both as merged (Keras 3 casts them to the wrapper's dtype first)
        y = run_f.keras_output().astype(merged_dtype, copy=False)
        y_rev = run_b.keras_output().astype(merged_dtype, copy=False)
        if wrapper.return_sequences:
            y_rev = np.flip(y_rev, axis=time_axis)
        d_y, d_y_rev = g * y_rev, g * y
    if wrapper.return_sequences:
        d_y_rev = np.flip(d_y_rev, axis=time_axis)
    return np.ascontiguousarray(d_y, dtype=forward_layer.dtype), np.ascontiguousarray(d_y_rev, dtype=backward_layer.dtype)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _through_cast(gradient: Any, given: Any, cast_dtype: np.dtype) -> Any:
    """The gradient of what the caller gave (``given``: an array, or nested lists of them) when
    Keras cast it to ``cast_dtype`` before the layers cast it on to theirs: rounded to
    ``cast_dtype`` (the gradient of the second cast), then in the dtype of the array given
    when that is a floating NumPy array (``tf.GradientTape`` returns a source's gradient in
    the source's dtype), else left in ``cast_dtype``."""
    if isinstance(gradient, (list, tuple)):
        return [_through_cast(g, x, cast_dtype) for g, x in zip(gradient, given)]
    rounded = gradient.astype(cast_dtype)
    if isinstance(given, np.ndarray) and given.dtype.kind == "f":
        return rounded.astype(given.dtype, copy=False)
    return rounded


# ============================================================================ public
def gradients(
    layer: RecurrentLayer | Bidirectional,
    inputs: Any,
    output_grads: Any,
    initial_state: Any = None,
    mask: Any = None,
    training: bool | None = None,
) -> dict[str, Any]:
    """Gradients of ``layer(inputs, initial_state=initial_state, mask=mask)`` given the
    gradients ``output_grads`` arriving at what it returns (see the module docstring).

    Returns ``{"inputs": ..., "initial_state": ... or None, "weights": [...]}`` (and
    ``"states"`` for a stateful layer), the values ``tf.GradientTape`` gives over the Keras
    layer with the same weights: ``tape.gradient(outputs, sources, output_gradients=output_grads)``.
    """
    if isinstance(layer, Bidirectional):
        return _bidirectional_gradients(layer, inputs, output_grads, initial_state, mask, training)
    if isinstance(layer, RecurrentLayer):
        return _layer_gradients(layer, inputs, output_grads, initial_state, mask, training)
    raise TypeError(
        "layer must be an rnnparity LSTM, GRU, SimpleRNN, RNN, ConvLSTM1D/2D/3D or Bidirectional twin; "
        f"got {type(layer).__name__} (a single cell step is the layer's one-timestep call)"
    )


__all__ = ["gradients"]
