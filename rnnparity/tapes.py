"""The backward pass of each cell's step, for :mod:`rnnparity.backprop`.

A tape holds, for every timestep, what the cell's own ``recurrent_step`` recorded in the
:class:`~rnnparity.cell.StepRecord` it was given (its pre-activations, the ``h`` it started
from, LSTM's ``c`` states), and differentiates that step in reverse. There is no forward
step here: the forward pass is the cell's, run by the layer's time loop.

:class:`ConvLSTMTape` is :class:`LSTMTape` with the two matmuls replaced by convolutions:
the same gate algebra per step, on loop rows ``(batch, filters * prod(S_out))``.
"""

from __future__ import annotations

import math
from typing import Any, Union

import numpy as np

from rnnparity.activation_grads import VJP, vjp_for
from rnnparity.activations import Activation
from rnnparity.cell import Cell, RecurrentCell, StepRecord
from rnnparity.conv_lstm import ConvLSTMCell
from rnnparity.convolution import col2im, im2col
from rnnparity.gru import RECURRENT_CANDIDATE, GRUCell
from rnnparity.layout import gate_slice
from rnnparity.lstm import LSTMCell
from rnnparity.rnn import projection_chunk
from rnnparity.simple_rnn import SimpleRNNCell
from rnnparity.stacked import StackedRNNCells


def _values(function: Any, x: np.ndarray) -> np.ndarray:
    """``function(x)`` in an array of its own (``linear`` returns ``x`` itself, and the
    backward pass overwrites a record's pre-activations with their gradients)."""
    y = function(x)
    return y.copy() if np.shares_memory(x, y) else y


class CellTape:
    """One cell's recorded steps and their reverse.

    The records live in buffers allocated for all ``T`` steps, time-major and indexed by each
    step's timestep ``t``: ``pre[:, t]`` holds the step's gate pre-activations, gate-major in
    the cell's ``step_order`` (``(blocks, T, batch, units)``), and ``h_tm1[t]`` the ``h`` the
    step started from. The reverse step overwrites ``pre[:, t]`` with the gradients of those
    pre-activations and returns the gradients of the states the step started from; after the
    loop, :meth:`finish` turns the buffers into the weights' (and the inputs') gradients with
    matmuls over all timesteps, a chunk of them at a time, as the forward pass projects inputs.
    """

    # (gates, blocks): which blocks of ``pre`` hold the gradient of ``h_tm1 @ recurrent_kernel``
    # (plus recurrent bias) for which gates of the recurrent kernel.
    recurrent_blocks: tuple[tuple[slice, slice], ...]

    def __init__(self, cell: Cell) -> None:
        self.cell = cell
        cell.require_built()
        self.gates = len(cell.step_order)
        self.blocks = cell.record_blocks  # pre-activation blocks per step (GRU: and its recurrent candidate)
        self.d_recurrent_bias: np.ndarray | None = None
        self._weights()
        self.act: VJP = vjp_for(cell.activation, cell.activation_name, "activation")
        if cell.has_recurrent_activation:
            self.rec_act: VJP = vjp_for(cell.recurrent_activation, cell.recurrent_activation_name, "recurrent_activation")
        self.pre = self.h_tm1 = np.empty((0, 0, 0, 0))
        self.kept: list[tuple[np.ndarray, ...]] = []  # per timestep, what a step kept (LSTM: c_tm1, c)

    def _weights(self) -> None:
        """The transposed weights the reverse step reads, and zeroed buffers for their gradients."""
        cell = self.cell
        assert cell.kernel_gates is not None and cell.recurrent_gates is not None
        self.kernel_t = cell.kernel_gates.transpose(0, 2, 1)  # (gates, units, input_dim)
        self.recurrent_t = cell.recurrent_gates.transpose(0, 2, 1)
        self.d_kernel = np.zeros_like(cell.kernel_gates)
        self.d_recurrent = np.zeros_like(cell.recurrent_gates)
        self.d_input_bias = None if cell.input_bias_gates is None else np.zeros_like(cell.input_bias_gates[:, 0])

    def _activate(self, function: Activation, x: np.ndarray) -> np.ndarray:
        """``function(x)`` as the step computed it, in an array of its own (see :func:`_values`)."""
        return _values(function, x)

    def allocate(self, timesteps: int, batch: int) -> None:
        units, dtype = self.cell.output_size, self.cell.dtype
        self.pre = np.empty((self.blocks, timesteps, batch, units), dtype=dtype)
        self.h_tm1 = np.empty((timesteps, batch, units), dtype=dtype)
        self.kept = [()] * timesteps

    def record_step(self, t: int) -> StepRecord:
        """The record the cell's step fills at timestep ``t``: views of this tape's buffers."""
        return StepRecord(pre=self.pre[:, t], h_tm1=self.h_tm1[t], store=self.kept, t=t)

    def backward(self, t: int, d_output: np.ndarray, d_states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
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


class LSTMTape(CellTape):
    """Pre-activations of ``i, f, o, c`` (step order); each step keeps ``c_tm1`` and ``c``.
    (:class:`ConvLSTMTape` reuses :meth:`backward`: it reads only the cell's activations.)"""

    recurrent_blocks = ((slice(0, 4), slice(0, 4)),)

    def backward(self, t: int, d_output: np.ndarray, d_states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        cell = self.cell
        (c_tm1, c), self.kept[t] = self.kept[t], ()
        pre = self.pre[:, t]
        ifo = self._activate(cell.recurrent_activation, pre[:3])
        i, f, o = ifo
        candidate = self._activate(cell.activation, pre[3])
        activated_c = self._activate(cell.activation, c)
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


class ConvLSTMTape(LSTMTape):
    """A ConvLSTM cell bound to one call's spatial size: :meth:`LSTMTape.backward` on loop
    rows ``(batch, F * prod(S_out))``, its matmuls replaced by convolutions.

    The recurrent convolution's gradient w.r.t. ``h_tm1`` is the transposed convolution:
    ``recurrent_rows.T`` times the gates' gradients, summed back into the image by
    :func:`~rnnparity.convolution.col2im` (stride 1, ``same``). After the loop, the kernels'
    gradients are the gates' gradients times the im2col columns of the inputs (of the
    ``h_tm1`` for ``recurrent_kernel``) over all timesteps, and the inputs' gradient is
    ``kernel_rows.T`` times them, summed back with the input convolution's strides, dilation
    and padding. Activations that do not act element by element (``softmax``) are applied and
    differentiated in Keras's layout, as the step applies them."""

    cell: ConvLSTMCell

    def __init__(self, cell: Cell) -> None:
        assert isinstance(cell, ConvLSTMCell) and cell.geometry is not None
        self.geometry = cell.geometry
        super().__init__(cell)
        if not cell.elementwise(cell.activation):
            self.act = self._in_keras_layout(self.act)
        if not cell.elementwise(cell.recurrent_activation):
            self.rec_act = self._in_keras_layout(self.rec_act)

    def _weights(self) -> None:
        cell = self.cell
        self.kernel_t = cell.kernel_rows.T  # (C * prod(K), 4F)
        self.recurrent_t = cell.recurrent_rows.T  # (F * prod(K), 4F)
        self.d_kernel = np.zeros_like(cell.kernel_rows)
        self.d_recurrent = np.zeros_like(cell.recurrent_rows)
        self.d_input_bias = None if cell.bias is None else np.zeros(4 * cell.filters, dtype=cell.dtype)

    def _activate(self, function: Activation, x: np.ndarray) -> np.ndarray:
        if self.cell.elementwise(function):
            return _values(function, x)
        return self.cell._apply(function, x, in_place=False)  # a new array, computed in Keras's layout

    def _in_keras_layout(self, vjp: VJP) -> VJP:
        cell = self.cell

        def in_keras_layout(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
            dx = vjp(cell.from_rows(x), cell.from_rows(y), cell.from_rows(dy))
            return np.ascontiguousarray(cell.to_rows(np.asarray(dx, dtype=x.dtype)))

        return in_keras_layout

    def _by_channel(self, d: np.ndarray) -> np.ndarray:
        """Gate-major row gradients ``(4, n, F * P)`` as the im2col matmul's ``(n, 4F, P)`` (a copy)."""
        gates, n = d.shape[:2]
        filters = self.cell.filters
        return np.moveaxis(d.reshape(gates, n, filters, -1), 0, 1).reshape(n, gates * filters, -1)

    def _d_h_tm1(self, pre: np.ndarray) -> np.ndarray:
        """The gradient reaching ``h_tm1`` through the recurrent convolution (its transpose)."""
        cell, geometry = self.cell, self.geometry
        columns = np.matmul(self.recurrent_t, self._by_channel(pre))  # (batch, F * prod(K), P)
        ones = (1,) * cell.rank
        images = col2im(columns, (cell.filters, *geometry.spatial_out), cell.kernel_size, ones, ones, geometry.recurrent_pads)
        return images.reshape(pre.shape[1], -1)

    def finish(self, inputs: np.ndarray, d_inputs: np.ndarray | None) -> None:
        """The weights' gradients and ``d_inputs[:] =`` the inputs' (time-major rows
        ``(T, batch, C * prod(S))``), a chunk of timesteps at a time: per step the im2col
        columns of the inputs and of ``h_tm1`` and the gates' gradients are alive."""
        cell, geometry = self.cell, self.geometry
        timesteps, batch, _ = inputs.shape
        channels, filters, window = cell.input_dim or 0, cell.filters, math.prod(cell.kernel_size)
        positions = math.prod(geometry.spatial_out)
        width = (2 * channels * window + filters * window + 4 * filters) * positions
        chunk = projection_chunk(timesteps, batch, width, cell.dtype.itemsize)
        ones = (1,) * cell.rank
        for start in range(0, timesteps, chunk):
            steps = slice(start, start + chunk)
            count = len(range(timesteps)[steps])
            d = self._by_channel(self.pre[: self.gates, steps].reshape(self.gates, count * batch, -1))  # (n, 4F, P)
            images = np.ascontiguousarray(inputs[steps]).reshape(count * batch, channels, *geometry.spatial_in)
            columns = im2col(images, cell.kernel_size, cell.strides, cell.dilation_rate, geometry.input_pads)
            self.d_kernel += np.tensordot(d, columns, axes=([0, 2], [0, 2]))
            del columns
            if self.d_input_bias is not None:
                self.d_input_bias += d.sum(axis=(0, 2))
            h_images = self.h_tm1[steps].reshape(count * batch, filters, *geometry.spatial_out)
            h_columns = im2col(h_images, cell.kernel_size, ones, ones, geometry.recurrent_pads)
            self.d_recurrent += np.tensordot(d, h_columns, axes=([0, 2], [0, 2]))
            del h_columns
            if d_inputs is not None:
                d_columns = np.matmul(self.kernel_t, d)  # (n, C * prod(K), P)
                shape = (channels, *geometry.spatial_in)
                d_images = col2im(d_columns, shape, cell.kernel_size, cell.strides, cell.dilation_rate, geometry.input_pads)
                d_inputs[steps] = d_images.reshape(count, batch, -1)

    def weight_grads(self) -> list[np.ndarray]:
        """``kernel``, ``recurrent_kernel`` (and ``bias``) gradients in Keras's shapes and gate order."""
        grads = [self.cell.keras_weight(self.d_kernel), self.cell.keras_weight(self.d_recurrent)]
        if self.d_input_bias is not None:
            grads.append(self.cell.keras_weight(self.d_input_bias))
        return grads


class GRUTape(CellTape):
    """Pre-activations of ``z, r, h`` and, with ``reset_after``, the recurrent candidate
    ``h_tm1 @ U_h + br_h`` before the reset gate multiplies it (a 4th block)."""

    cell: GRUCell

    def __init__(self, cell: Cell) -> None:
        assert isinstance(cell, GRUCell)
        # reset_before: the candidate's recurrent input is r * h_tm1, handled per step.
        both = (slice(0, 2), slice(0, 2))
        candidate = (slice(2, 3), slice(RECURRENT_CANDIDATE, RECURRENT_CANDIDATE + 1))
        self.recurrent_blocks = (both, candidate) if cell.reset_after else (both,)
        super().__init__(cell)
        if cell.reset_after and self.d_input_bias is not None:
            self.d_recurrent_bias = np.zeros_like(self.d_input_bias)

    def backward(self, t: int, d_output: np.ndarray, d_states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
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


class SimpleRNNTape(CellTape):
    """The pre-activation of ``h``."""

    cell: SimpleRNNCell
    recurrent_blocks = ((slice(0, 1), slice(0, 1)),)

    def backward(self, t: int, d_output: np.ndarray, d_states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        pre = self.pre[:, t]
        pre[0] = self.act(pre[0], self.cell.activation(pre[0]), d_output + d_states[0])
        return pre, [self._d_h_tm1(pre)]


class StackTape:
    """``StackedRNNCells``: every cell's tape, and the input each later cell reads (the
    output of the cell before it), which its kernel's gradient needs."""

    def __init__(self, stack: StackedRNNCells) -> None:
        self.cell = stack
        self.tapes = [tape_for(cell) for cell in stack.cells]
        self.counts = [len(cell.flat_state_sizes) for cell in stack.cells]
        self.inputs: list[np.ndarray] = []

    def allocate(self, timesteps: int, batch: int) -> None:
        for tape in self.tapes:
            tape.allocate(timesteps, batch)
        self.inputs = [np.empty((timesteps, batch, tape.cell.output_size), dtype=self.cell.dtype) for tape in self.tapes[:-1]]

    @property
    def kernel_t(self) -> np.ndarray:
        """The first cell's transposed gate-major kernel: the stack's inputs go through it."""
        return self.tapes[0].kernel_t

    def record_step(self, t: int) -> StepRecord:
        """A record per cell, and the slots for each later cell's input, at timestep ``t``."""
        return StepRecord(cells=[tape.record_step(t) for tape in self.tapes], cell_inputs=[x[t] for x in self.inputs])

    def backward(self, t: int, d_output: np.ndarray, d_states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        d_previous: list[np.ndarray] = []
        offset = sum(self.counts)
        for index in range(len(self.tapes) - 1, -1, -1):
            tape, count = self.tapes[index], self.counts[index]
            offset -= count
            d_x_proj, d_cell = tape.backward(t, d_output, d_states[offset : offset + count])
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


Tape = Union[CellTape, StackTape]


def tape_for(cell: RecurrentCell) -> Tape:
    """The tape that differentiates ``cell``'s step."""
    if isinstance(cell, StackedRNNCells):
        return StackTape(cell)
    tapes: tuple[tuple[type[Cell], type[CellTape]], ...] = (
        (ConvLSTMCell, ConvLSTMTape),
        (LSTMCell, LSTMTape),
        (GRUCell, GRUTape),
        (SimpleRNNCell, SimpleRNNTape),
    )
    for cell_class, tape_class in tapes:
        if isinstance(cell, cell_class):
            return tape_class(cell)
    raise TypeError(f"gradients support LSTMCell, GRUCell, SimpleRNNCell and StackedRNNCells; got {type(cell).__name__}")
