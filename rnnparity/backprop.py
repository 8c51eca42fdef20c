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

The forward pass is the twin's own time loop (:func:`rnnparity.rnn.run_time_loop`) driven
through a recording cell, so masks, ``go_backwards`` and the state rules are the forward
pass's, and each step computes the twin's bits. The backward pass differentiates it the
way TensorFlow differentiates Keras's loop:

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
dtype. Only the TensorFlow backends' conventions are emulated (``backend="jax"`` is refused).

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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from rnnparity.activation_grads import vjp_for
from rnnparity.bidirectional import Bidirectional, _cast_nested
from rnnparity.gru import GRUCell
from rnnparity.layout import gate_slice
from rnnparity.lstm import LSTMCell
from rnnparity.rnn import Cell, RecurrentLayer, _as_float_array, flatten_nested, projection_chunk, run_time_loop
from rnnparity.simple_rnn import SimpleRNNCell
from rnnparity.stacked import StackedRNNCells

Record = Any


def _values(function: Any, x: np.ndarray) -> np.ndarray:
    """``function(x)`` in an array of its own (``linear`` returns ``x`` itself, and the
    backward pass overwrites a record's pre-activations with their gradients)."""
    y = function(x)
    return y.copy() if np.shares_memory(x, y) else y


# ============================================================================ per-cell steps
class _CellTape:
    """One cell's recorded steps and their reverse.

    The record lives in buffers allocated for all ``T`` steps, time-major and indexed by each
    step's timestep ``t``: ``pre[:, t]`` holds the step's gate pre-activations, gate-major in
    the cell's ``step_order`` (``(blocks, T, batch, units)``), and ``h_tm1[t]`` the ``h`` the
    step started from. The reverse step overwrites ``pre[:, t]`` with the gradients of those
    pre-activations and returns the gradients of the states the step started from; after the
    loop, :meth:`finish` turns the buffers into the weights' (and the inputs') gradients with
    matmuls over all timesteps, a chunk of them at a time, as the forward pass projects inputs.
    """

    blocks: int  # pre-activation blocks recorded per step (the gates, and GRU's recurrent candidate)
    # (gates, blocks): which blocks of ``pre`` hold the gradient of ``h_tm1 @ recurrent_kernel``
    # (plus recurrent bias) for which gates of the recurrent kernel.
    recurrent_blocks: tuple[tuple[slice, slice], ...]

    def __init__(self, cell: Cell) -> None:
        self.cell = cell
        cell._require_built()
        assert cell._kernel_gates is not None and cell._recurrent_gates is not None
        self.gates = len(cell.step_order)
        self.recurrent: np.ndarray = cell._recurrent_gates  # (gates, units, units)
        self.kernel_t = cell._kernel_gates.transpose(0, 2, 1)  # (gates, units, input_dim)
        self.recurrent_t = cell._recurrent_gates.transpose(0, 2, 1)
        self.d_kernel = np.zeros_like(cell._kernel_gates)
        self.d_recurrent = np.zeros_like(cell._recurrent_gates)
        self.d_input_bias = None if cell._input_bias_gates is None else np.zeros_like(cell._input_bias_gates[:, 0])
        self.d_recurrent_bias: np.ndarray | None = None
        self.act = vjp_for(cell.activation, cell.activation_name, "activation")
        if cell.has_recurrent_activation:
            self.rec_act = vjp_for(cell.recurrent_activation, cell.recurrent_activation_name, "recurrent_activation")
        self.pre = self.h_tm1 = np.empty((0, 0, 0, 0))

    def allocate(self, timesteps: int, batch: int) -> None:
        units, dtype = self.cell.units, self.cell.dtype
        self.pre = np.empty((self.blocks, timesteps, batch, units), dtype=dtype)
        self.h_tm1 = np.empty((timesteps, batch, units), dtype=dtype)

    def forward(self, t: int, x_proj: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray], Record]:
        """The cell's step (its operations, in its order: the same bits), recorded at ``t``."""
        raise NotImplementedError

    def backward(
        self, t: int, record: Record, d_output: np.ndarray, d_states: list[np.ndarray]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """``(d x_proj, d states the step started from)``; ``d x_proj`` is ``pre[:gates, t]``."""
        raise NotImplementedError

    def _d_h_tm1(self, pre: np.ndarray) -> np.ndarray:
        """The gradient reaching ``h_tm1`` through ``h_tm1 @ recurrent_kernel``."""
        parts = [np.matmul(pre[blocks], self.recurrent_t[gates]).sum(axis=0) for gates, blocks in self.recurrent_blocks]
        return parts[0] if len(parts) == 1 else sum(parts[1:], parts[0])

    def finish(self, inputs: np.ndarray, d_inputs: np.ndarray | None) -> None:
        """After the reverse loop: the weights' gradients, and ``d_inputs[:] =`` the gradient
        of ``inputs`` (both time-major ``(T, batch, input_dim)``) when it is given. A chunk of
        timesteps at a time, so the temporaries (a contiguous copy of the inputs, the gradient
        and one gate's share of it) stay within one projection chunk."""
        timesteps, batch, input_dim = inputs.shape
        units = self.cell.units
        chunk = projection_chunk(timesteps, batch, 3 * input_dim, self.cell.dtype.itemsize)
        for start in range(0, timesteps, chunk):
            steps = slice(start, start + chunk)
            x = np.ascontiguousarray(inputs[steps]).reshape(-1, input_dim)
            d_x_proj = self.pre[: self.gates, steps].reshape(self.gates, -1, units)
            self.d_kernel += np.matmul(x.T, d_x_proj)
            if self.d_input_bias is not None:
                self.d_input_bias += d_x_proj.sum(axis=1)
            h_tm1 = self.h_tm1[steps].reshape(-1, units)
            for gates, blocks in self.recurrent_blocks:
                d_inner = self.pre[blocks, steps].reshape(blocks.stop - blocks.start, -1, units)
                self.d_recurrent[gates] += np.matmul(h_tm1.T, d_inner)
                if self.d_recurrent_bias is not None:
                    self.d_recurrent_bias[gates] += d_inner.sum(axis=1)
            if d_inputs is not None:
                d_x = np.matmul(d_x_proj[0], self.kernel_t[0])
                for gate in range(1, self.gates):
                    d_x += np.matmul(d_x_proj[gate], self.kernel_t[gate])
                d_inputs[steps] = d_x.reshape(-1, batch, input_dim)

    def _keras_layout(self, gates: np.ndarray) -> np.ndarray:
        """Gate-major ``(gates, ..., units)`` back to Keras's ``(..., gates * units)`` columns."""
        cell = self.cell
        out = np.empty((*gates.shape[1:-1], gates.shape[0] * cell.units), dtype=gates.dtype)
        for index, gate in enumerate(cell.step_order):
            out[..., gate_slice(cell.kind, gate, cell.units)] = gates[index]
        return out

    def weight_grads(self) -> list[np.ndarray]:
        grads = [self._keras_layout(self.d_kernel), self._keras_layout(self.d_recurrent)]
        if self.d_input_bias is not None:
            bias = self._keras_layout(self.d_input_bias)
            if self.d_recurrent_bias is not None:  # GRU reset_after: rows input, recurrent
                bias = np.stack([bias, self._keras_layout(self.d_recurrent_bias)])
            grads.append(bias)
        return grads


class _LSTMTape(_CellTape):
    """Pre-activations of ``i, f, o, c`` (step order); the record keeps ``c_tm1`` and ``c``."""

    cell: LSTMCell
    blocks = 4
    recurrent_blocks = ((slice(0, 4), slice(0, 4)),)

    def forward(self, t: int, x_proj: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray], Record]:
        cell = self.cell
        h_tm1, c_tm1 = states
        self.h_tm1[t] = h_tm1
        z = np.matmul(h_tm1, self.recurrent)
        z += x_proj
        self.pre[:, t] = z
        i, f, o = cell._recurrent_activation_in_place(z[:3])
        candidate = cell._activation_in_place(z[3])
        c = f * c_tm1
        c += np.multiply(i, candidate, out=i)
        h = o * cell.activation(c)
        return h, [h, c], (c_tm1, c)

    def backward(
        self, t: int, record: Record, d_output: np.ndarray, d_states: list[np.ndarray]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        cell = self.cell
        c_tm1, c = record
        pre = self.pre[:, t]
        ifo = _values(cell.recurrent_activation, pre[:3])
        i, f, o = ifo
        candidate = _values(cell.activation, pre[3])
        activated_c = cell.activation(c)
        # h = o * activation(c), c = f * c_tm1 + i * candidate
        dh = d_output + d_states[0]
        dc = d_states[1] + self.act(c, activated_c, dh * o)
        d_ifo = np.empty_like(ifo)
        np.multiply(dc, candidate, out=d_ifo[0])
        np.multiply(dc, c_tm1, out=d_ifo[1])
        np.multiply(dh, activated_c, out=d_ifo[2])
        d_candidate = dc * i
        pre[:3] = self.rec_act(pre[:3], ifo, d_ifo)
        pre[3] = self.act(pre[3], candidate, d_candidate)
        return pre, [self._d_h_tm1(pre), dc * f]


class _GRUTape(_CellTape):
    """Pre-activations of ``z, r, h`` and, with ``reset_after``, the recurrent candidate
    ``h_tm1 @ U_h + br_h`` before the reset gate multiplies it (a 4th block)."""

    cell: GRUCell

    def __init__(self, cell: Cell) -> None:
        assert isinstance(cell, GRUCell)
        self.blocks = 4 if cell.reset_after else 3
        # reset_before: the candidate's recurrent input is r * h_tm1, handled per step.
        both = (slice(0, 2), slice(0, 2))
        self.recurrent_blocks = (both, (slice(2, 3), slice(3, 4))) if cell.reset_after else (both,)
        super().__init__(cell)
        if cell.reset_after and self.d_input_bias is not None:
            self.d_recurrent_bias = np.zeros_like(self.d_input_bias)

    def forward(self, t: int, x_proj: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray], Record]:
        cell = self.cell
        (h_tm1,) = states
        self.h_tm1[t] = h_tm1
        pre = self.pre[:, t]
        recurrent = self.recurrent
        activation, recurrent_activation = cell._activation_in_place, cell._recurrent_activation_in_place
        # GRUCell.recurrent_step's operations, in its order, with the pre-activations kept.
        if cell.reset_after:
            inner = np.matmul(h_tm1, recurrent)
            if cell._recurrent_bias_gates is not None:
                inner += cell._recurrent_bias_gates
            zr = np.add(x_proj[:2], inner[:2], out=x_proj[:2])
            pre[:2] = zr
            pre[3] = inner[2]
            z, r = recurrent_activation(zr)
            x_h = np.add(x_proj[2], np.multiply(r, inner[2], out=inner[2]), out=x_proj[2])
        else:
            zr = np.add(x_proj[:2], np.matmul(h_tm1, recurrent[:2]), out=x_proj[:2])
            pre[:2] = zr
            z, r = recurrent_activation(zr)
            x_h = np.add(x_proj[2], (r * h_tm1) @ recurrent[2], out=x_proj[2])
        pre[2] = x_h
        hh = activation(x_h)
        h = z * h_tm1
        h += np.multiply(1 - z, hh, out=hh)
        return h, [h], None

    def backward(
        self, t: int, record: Record, d_output: np.ndarray, d_states: list[np.ndarray]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        cell = self.cell
        h_tm1, pre = self.h_tm1[t], self.pre[:, t]
        zr = _values(cell.recurrent_activation, pre[:2])
        z, r = zr
        hh = _values(cell.activation, pre[2])
        # h = z * h_tm1 + (1 - z) * hh
        dh = d_output + d_states[0]
        d_zr = np.empty_like(zr)
        np.subtract(dh * h_tm1, dh * hh, out=d_zr[0])
        dz_h = self.act(pre[2], hh, dh * (1 - z))
        dh_tm1 = dh * z
        if cell.reset_after:
            # hh = activation(x_h + r * inner_h), inner_h = h_tm1 @ U_h + br_h
            np.multiply(dz_h, pre[3], out=d_zr[1])
            pre[3] = dz_h * r
        else:
            # hh = activation(x_h + (r * h_tm1) @ U_h)
            d_reset_h = dz_h @ self.recurrent_t[2]
            self.d_recurrent[2] += (r * h_tm1).T @ dz_h
            np.multiply(d_reset_h, h_tm1, out=d_zr[1])
            dh_tm1 += d_reset_h * r
        pre[:2] = self.rec_act(pre[:2], zr, d_zr)
        pre[2] = dz_h
        dh_tm1 += self._d_h_tm1(pre)
        return pre[:3], [dh_tm1]


class _SimpleRNNTape(_CellTape):
    """The pre-activation of ``h``."""

    cell: SimpleRNNCell
    blocks = 1
    recurrent_blocks = ((slice(0, 1), slice(0, 1)),)

    def forward(self, t: int, x_proj: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray], Record]:
        (h_tm1,) = states
        self.h_tm1[t] = h_tm1
        h = h_tm1 @ self.recurrent[0]
        h += x_proj[0]
        self.pre[0, t] = h
        return self.cell._activation_in_place(h), [h], None

    def backward(
        self, t: int, record: Record, d_output: np.ndarray, d_states: list[np.ndarray]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        pre = self.pre[:, t]
        pre[0] = self.act(pre[0], self.cell.activation(pre[0]), d_output + d_states[0])
        return pre, [self._d_h_tm1(pre)]


class _StackTape:
    """``StackedRNNCells``: every cell's tape, and the input each later cell reads (the
    output of the cell before it), which its kernel's gradient needs."""

    def __init__(self, stack: StackedRNNCells) -> None:
        self.cell = stack
        self.tapes = [_tape_for(cell) for cell in stack.cells]
        self.counts = [len(cell.flat_state_sizes) for cell in stack.cells]
        self.inputs: list[np.ndarray] = []

    def allocate(self, timesteps: int, batch: int) -> None:
        for tape in self.tapes:
            tape.allocate(timesteps, batch)
        self.inputs = [np.empty((timesteps, batch, tape.cell.output_size), dtype=self.cell.dtype) for tape in self.tapes[:-1]]

    def forward(self, t: int, x_proj: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray], Record]:
        records, new_states = [], []
        output = x_proj
        offset = 0
        for index, (tape, count) in enumerate(zip(self.tapes, self.counts)):
            projected = x_proj
            if index:
                self.inputs[index - 1][t] = output
                projected = tape.cell.input_projection(output)
            output, cell_states, record = tape.forward(t, projected, states[offset : offset + count])
            records.append(record)
            new_states.extend(cell_states)
            offset += count
        return output, new_states, records

    def backward(
        self, t: int, record: Record, d_output: np.ndarray, d_states: list[np.ndarray]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        d_previous: list[np.ndarray] = []
        offset = sum(self.counts)
        for index in range(len(self.tapes) - 1, -1, -1):
            tape, count = self.tapes[index], self.counts[index]
            offset -= count
            d_x_proj, d_cell = tape.backward(t, record[index], d_output, d_states[offset : offset + count])
            d_previous = d_cell + d_previous
            if index:  # back through the projection of the previous cell's output
                d_output = np.matmul(d_x_proj, tape.kernel_t).sum(axis=0)
        return d_x_proj, d_previous

    def finish(self, inputs: np.ndarray, d_inputs: np.ndarray | None) -> None:
        self.tapes[0].finish(inputs, d_inputs)
        for tape, cell_inputs in zip(self.tapes[1:], self.inputs):
            tape.finish(cell_inputs, None)

    def weight_grads(self) -> list[np.ndarray]:
        return [grad for tape in self.tapes for grad in tape.weight_grads()]


Tape = Any  # a _CellTape or a _StackTape


def _tape_for(cell: Cell) -> Tape:
    if isinstance(cell, StackedRNNCells):
        return _StackTape(cell)
    tapes: tuple[tuple[type[Cell], type[_CellTape]], ...] = (
        (LSTMCell, _LSTMTape),
        (GRUCell, _GRUTape),
        (SimpleRNNCell, _SimpleRNNTape),
    )
    for cell_class, tape_class in tapes:
        if isinstance(cell, cell_class):
            return tape_class(cell)
    raise TypeError(f"gradients support LSTMCell, GRUCell, SimpleRNNCell and StackedRNNCells; got {type(cell).__name__}")


class _RecordingCell:
    """What ``run_time_loop`` needs of a cell, with each step recorded on the tape."""

    def __init__(self, tape: Tape, timesteps: int, go_backwards: bool) -> None:
        cell = tape.cell
        self.tape = tape
        self.timesteps, self.go_backwards = timesteps, go_backwards
        self.dtype = cell.dtype
        self.output_size = cell.output_size
        self.projection_width = cell.projection_width
        self.output_state_index = cell.output_state_index
        self.records: list[Record] = []

    def input_projection(self, inputs: np.ndarray) -> np.ndarray:
        return self.tape.cell.input_projection(inputs)

    def recurrent_step(self, x_proj: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        k = len(self.records)  # the loop steps in processing order
        t = self.timesteps - 1 - k if self.go_backwards else k
        output, new_states, record = self.tape.forward(t, x_proj, states)
        self.records.append(record)
        return output, new_states


# ============================================================================ one layer
@dataclass
class _Run:
    """One call of a RecurrentLayer: its checked arguments, then its recorded forward pass."""

    layer: RecurrentLayer
    inputs: np.ndarray  # time-major (T, batch, input_dim)
    input_shape: tuple[int, ...]  # as given (batch-major unless time_major)
    mask: np.ndarray | None  # time-major (T, batch)
    states: list[np.ndarray]  # the states the call starts from
    structure: Any  # how initial_state was given (for packing its gradient)
    used_initial_state: bool  # the call starts from the given initial_state
    tape: Tape = None
    records: list[Record] = field(default_factory=list)
    output: np.ndarray | None = None  # the layer's output (kept only when asked for)
    final_states: list[np.ndarray] = field(default_factory=list)

    @property
    def output_shape(self) -> tuple[int, ...]:
        timesteps, batch, _ = self.inputs.shape
        units = self.layer.cell.output_size
        if not self.layer.return_sequences:
            return (batch, units)
        return (timesteps, batch, units) if self.layer.time_major else (batch, timesteps, units)

    @property
    def state_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        return [(name, s.shape) for name, s in zip(self.layer.cell.flat_state_names, self.states)]


def _numeric(value: Any, dtype: np.dtype, argument: str) -> np.ndarray:
    """``value`` as an array of ``dtype``, copied only when it is not one already."""
    if isinstance(value, np.ndarray) and value.dtype == dtype:
        return value
    return _as_float_array(value, dtype, argument)


def _prepare(layer: RecurrentLayer, inputs: Any, initial_state: Any, mask: Any, training: bool | None) -> _Run:
    """Check the call ``layer(inputs, initial_state, mask)`` as the layer does, without running it."""
    layer.cell._require_built()
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
    x = _numeric(inputs, layer.dtype, "inputs")
    time_major = layer._time_major_inputs(x)
    timesteps, batch, _ = time_major.shape
    time_mask = layer._check_mask(mask, batch, timesteps)
    carried = layer._states
    states, structure = layer._initial_states(initial_state, batch)
    # The rule RecurrentLayer._initial_states applies: Keras 2 keeps non-zero carried states.
    used_initial_state = initial_state is not None and not (
        layer.stateful and carried is not None and layer.keras_version == 2 and any(np.count_nonzero(s) for s in carried)
    )
    return _Run(layer, time_major, x.shape, time_mask, states, structure, used_initial_state)


def _forward(run: _Run, keep_output: bool = False) -> None:
    """Run the call, recording every step; a stateful layer's carried states advance as the
    call advances them."""
    layer = run.layer
    timesteps, batch, _ = run.inputs.shape
    run.tape = _tape_for(layer.cell)
    run.tape.allocate(timesteps, batch)
    recorder = _RecordingCell(run.tape, timesteps, layer.go_backwards)
    outputs = None
    if keep_output and layer.return_sequences:
        shape = (timesteps, batch, layer.cell.output_size)
        outputs = np.empty(shape if layer.time_major else (batch, timesteps, shape[2]), dtype=layer.dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        last_output, run.final_states = run_time_loop(
            cast(Cell, recorder),  # duck-typed: the loop only projects and steps
            run.inputs,
            run.states,
            run.mask,
            layer.go_backwards,
            layer.zero_output_for_mask,
            None if outputs is None else (outputs if layer.time_major else outputs.transpose(1, 0, 2)),
            layer.backend,
        )
    run.records = recorder.records
    if keep_output:
        run.output = outputs if outputs is not None else last_output
    if layer.stateful:
        layer._states = [s.copy() for s in run.final_states]
        layer._expected_batch_size = batch


def _backward(run: _Run, d_output: np.ndarray, d_states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Walk ``run``'s steps in reverse. ``d_output`` is shaped like the layer's output and
    ``d_states`` like its flat final states (arrays of the layer's dtype). Returns the
    gradients of the inputs and of the states the call started from; the weights'
    gradients are on ``run.tape``."""
    layer, tape, x, mask = run.layer, run.tape, run.inputs, run.mask
    timesteps, batch, _ = x.shape
    zeros = np.zeros((batch, layer.cell.output_size), dtype=layer.dtype)
    d_sequence = None
    if layer.return_sequences:
        d_sequence = d_output if layer.time_major else d_output.transpose(1, 0, 2)  # (T, batch, units), processing order
        d_out = zeros
    else:
        d_out = d_output
    d_inputs = np.empty(run.input_shape, dtype=layer.dtype)
    d_inputs_tm = d_inputs if layer.time_major else d_inputs.transpose(1, 0, 2)
    d_s = list(d_states)
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(timesteps - 1, -1, -1):
            t = timesteps - 1 - k if layer.go_backwards else k
            if d_sequence is not None:
                d_out = d_out + d_sequence[k]
            record, run.records[k] = run.records[k], None
            if mask is not None and not mask[t].all():
                keep = mask[t][:, None]
                d_step_output = np.where(keep, d_out, 0)
                d_out = zeros if layer.zero_output_for_mask else np.where(keep, 0, d_out)
                d_step_states = [np.where(keep, d, 0) for d in d_s]
                carried: list[np.ndarray] | None = [np.where(keep, 0, d) for d in d_s]
            else:
                d_step_output, d_out = d_out, zeros
                d_step_states, carried = d_s, None
            _, d_s = tape.backward(t, record, d_step_output, d_step_states)
            if carried is not None:
                d_s = [a + b for a, b in zip(d_s, carried)]
        tape.finish(x, d_inputs_tm)
    return d_inputs, d_s


# ============================================================================ output_grads
def _describe_layer(layer: Any) -> str:
    if isinstance(layer, Bidirectional):
        inner = layer.forward_layer
        return (
            f"Bidirectional({inner.cell._describe()}, merge_mode={layer.merge_mode!r}, "
            f"return_sequences={inner.return_sequences}, return_state={inner.return_state})"
        )
    return f"{layer.cell._describe()} with return_sequences={layer.return_sequences}, return_state={layer.return_state}"


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
        array = _numeric(leaf, dtype, label)
        if array.shape != shape:
            raise ValueError(f"{label} has shape {array.shape}; expected {shape}, the shape of the layer's {name}")
        arrays.append(array)
    return arrays


def _state_grads(run: _Run, d_initial: list[np.ndarray], given: bool) -> dict[str, Any]:
    """``initial_state`` (packed like it was given) and, for a stateful layer, ``states``."""
    cell = run.layer.cell
    zeros = [np.zeros_like(d) for d in d_initial]
    result: dict[str, Any] = {"initial_state": None}
    if given:
        flat = d_initial if run.used_initial_state else zeros
        if isinstance(cell, StackedRNNCells):
            result["initial_state"] = cell.pack_layer_states(flat, run.structure)
        else:
            result["initial_state"] = cell.pack_states(flat, run.structure)
    if run.layer.stateful:
        result["states"] = zeros if run.used_initial_state else d_initial
    return result


def _layer_gradients(
    layer: RecurrentLayer, inputs: Any, output_grads: Any, initial_state: Any, mask: Any, training: bool | None
) -> dict[str, Any]:
    run = _prepare(layer, inputs, initial_state, mask, training)
    expected = [("output", run.output_shape), *(run.state_shapes if layer.return_state else [])]
    arrays = _parse_output_grads(output_grads, layer, expected, not layer.return_state, layer.dtype)
    d_states = arrays[1:] if layer.return_state else [np.zeros_like(s) for s in run.states]
    _forward(run)
    d_inputs, d_initial = _backward(run, arrays[0], d_states)
    return {"inputs": d_inputs, **_state_grads(run, d_initial, initial_state is not None), "weights": run.tape.weight_grads()}


# ============================================================================ Bidirectional
def _bidirectional_gradients(
    wrapper: Bidirectional, inputs: Any, output_grads: Any, initial_state: Any, mask: Any, training: bool | None
) -> dict[str, Any]:
    forward_layer, backward_layer = wrapper.forward_layer, wrapper.backward_layer
    # Keras casts the inputs (Keras 3: and initial states) to the wrapper's dtype when it differs.
    cast_to_wrapper = wrapper.dtype != forward_layer.dtype
    if cast_to_wrapper:
        inputs = _as_float_array(inputs, wrapper.dtype, "inputs")
        if initial_state is not None and wrapper.keras_version == 3:
            initial_state = _cast_nested(initial_state, wrapper.dtype)
    forward_state = backward_state = None
    if initial_state is not None:
        forward_state, backward_state = wrapper._halves(initial_state, "initial_state")
    run_f = _prepare(forward_layer, inputs, forward_state, mask, training)
    run_b = _prepare(backward_layer, inputs, backward_state, mask, training)

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
    merged_dtype = wrapper.dtype if wrapper.keras_version == 3 else forward_layer.dtype
    single = wrapper.merge_mode is not None and not wrapper.return_state
    arrays = _parse_output_grads(output_grads, wrapper, expected, single, merged_dtype)
    merged, d_returned_states = arrays[:n_outputs], arrays[n_outputs:]

    keep = wrapper.merge_mode == "mul"
    _forward(run_f, keep_output=keep)
    _forward(run_b, keep_output=keep)

    time_axis = 0 if forward_layer.time_major else 1
    g = merged[0]
    if wrapper.merge_mode is None:
        d_y, d_y_rev = merged
    elif wrapper.merge_mode == "concat":
        d_y, d_y_rev = g[..., : shape_f[-1]], g[..., shape_f[-1] :]
    elif wrapper.merge_mode == "sum":
        d_y, d_y_rev = g, g
    elif wrapper.merge_mode == "ave":  # (y + y_rev) / 2
        d_y = d_y_rev = g / g.dtype.type(2)
    else:  # mul: y * y_rev, both as merged (Keras 3 casts them to the wrapper's dtype first)
        assert run_f.output is not None and run_b.output is not None
        y = run_f.output.astype(merged_dtype, copy=False)
        y_rev = run_b.output.astype(merged_dtype, copy=False)
        if wrapper.return_sequences:
            y_rev = np.flip(y_rev, axis=time_axis)
        d_y, d_y_rev = g * y_rev, g * y
    if wrapper.return_sequences:
        d_y_rev = np.flip(d_y_rev, axis=time_axis)
    d_y = np.ascontiguousarray(d_y, dtype=forward_layer.dtype)
    d_y_rev = np.ascontiguousarray(d_y_rev, dtype=backward_layer.dtype)

    n_forward = len(run_f.states)
    if wrapper.return_state:
        d_states_f = [s.astype(forward_layer.dtype, copy=False) for s in d_returned_states[:n_forward]]
        d_states_b = [s.astype(backward_layer.dtype, copy=False) for s in d_returned_states[n_forward:]]
    else:
        d_states_f = [np.zeros_like(s) for s in run_f.states]
        d_states_b = [np.zeros_like(s) for s in run_b.states]
    d_inputs_f, d_initial_f = _backward(run_f, d_y, d_states_f)
    d_inputs_b, d_initial_b = _backward(run_b, d_y_rev, d_states_b)

    d_inputs = d_inputs_f + d_inputs_b.astype(d_inputs_f.dtype, copy=False)
    if cast_to_wrapper:
        d_inputs = d_inputs.astype(wrapper.dtype)
    result: dict[str, Any] = {"inputs": d_inputs, "initial_state": None}
    states_f = _state_grads(run_f, d_initial_f, forward_state is not None)
    states_b = _state_grads(run_b, d_initial_b, backward_state is not None)
    if initial_state is not None:
        both = [*_as_list(states_f["initial_state"]), *_as_list(states_b["initial_state"])]
        result["initial_state"] = _cast_nested(both, wrapper.dtype) if cast_to_wrapper and wrapper.keras_version == 3 else both
    if wrapper.stateful:
        result["states"] = [*states_f["states"], *states_b["states"]]
    result["weights"] = [*run_f.tape.weight_grads(), *run_b.tape.weight_grads()]
    return result


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


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
        "layer must be an rnnparity LSTM, GRU, SimpleRNN, RNN or Bidirectional twin; "
        f"got {type(layer).__name__} (a single cell step is the layer's one-timestep call)"
    )


__all__ = ["gradients"]
