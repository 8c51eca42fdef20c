"""The ConvLSTM cell (``ConvLSTMCell`` and its 1D/2D/3D forms), the NumPy twin of Keras's
``ConvLSTM{1,2,3}DCell``: one step, the two convolutions, and the buffers they reuse. The layers
around it are :mod:`rnnparity.conv_lstm`.

An LSTM whose two matmuls are convolutions. One step, with ``*`` a convolution, the gates
split from the last kernel axis in Keras's order ``i, f, c, o`` (each ``filters`` wide)::

    z = conv(x_t, kernel; strides, padding, dilation_rate) + bias
        + conv(h_tm1, recurrent_kernel; strides 1, padding "same", dilation 1)
    i = recurrent_activation(z_i)
    f = recurrent_activation(z_f)
    c = f * c_tm1 + i * activation(z_c)
    o = recurrent_activation(z_o)
    h = o * activation(c)                  # new hidden state = output

Shapes (``rank`` = 1, 2 or 3 spatial axes ``S``, ``K`` the kernel size, ``C`` input
channels, ``F`` filters): ``kernel (*K, C, 4F)``, ``recurrent_kernel (*K, F, 4F)``,
``bias (4F,)``; inputs ``(batch, time, *S, C)`` (``channels_last``) or
``(batch, time, C, *S)`` (``channels_first``); ``h`` and ``c`` ``(batch, *S_out, F)`` or
``(batch, F, *S_out)``. ``S_out`` is the input convolution's output size: with ``valid``
padding ``(S - (K - 1) * dilation - 1) // strides + 1``, with ``same`` ``ceil(S / strides)``.
Both Kerases pad ``same`` as TensorFlow does: ``total = max((S_out - 1) * strides +
(K - 1) * dilation + 1 - S, 0)`` zeros, ``total // 2`` before and the rest after. The
recurrent convolution always pads ``same`` with stride 1 and no dilation, so the state
keeps its size.

The two Kerases compute the same step; they differ in the default ``recurrent_activation``
(``sigmoid`` in Keras 3, ``hard_sigmoid`` in Keras 2, whose formulas differ too, see
activations) and in what they return (a tuple in Keras 3, a list in Keras 2).

How it is computed: a convolution is an im2col matmul. The spatial windows of the input
are gathered with ``sliding_window_view`` into ``(positions, C * prod(K))`` rows and
multiplied with the kernel rearranged to ``(C * prod(K), 4F)``. The input convolution of a
chunk of timesteps runs before the loop (rnn.run_time_loop); each step does only
the recurrent convolution and the gates. Both convolutions go a block of images at a time
(:data:`CACHE_BLOCK_BYTES`): a block's columns are copied into a buffer, multiplied, and
its products added to (the bias, ``x_proj``) while they are still in cache; the recurrent
convolution's buffers, a zero-bordered copy of ``h`` whose border is never written and the
columns, are made once and kept by the layer between calls (:class:`Scratch`). Inside the loop a state is one row per batch
entry, ``(batch, F * prod(S_out))`` in ``channels_first`` order (so im2col copies along
contiguous rows and the matmul ``(4F, C * prod(K)) @ (C * prod(K), prod(S_out))`` gives
gate-major blocks without a transpose), so the shared time loop
(masks, ``go_backwards``, output repetition) runs unchanged; the layer
(:mod:`rnnparity.conv_lstm`) converts to and from Keras's layout once per call.

Gradients (``rnnparity.gradients``): the step records what an LSTM step records (its gate
pre-activations, ``h_tm1``, ``c_tm1`` and ``c``, as loop rows), and
:class:`rnnparity.tapes.ConvLSTMTape` reverses it: the LSTM gate algebra, then the
recurrent convolution's adjoint (col2im) for ``h_tm1`` and im2col matmuls over all
timesteps for the kernels, the bias and the inputs.
"""

from __future__ import annotations

import contextlib
import copy
import math
import numbers
import threading
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np

from rnnparity import activations
from rnnparity.activations import Activation, ActivationLike
from rnnparity.cell import Cell, StepRecord, dtype_config
from rnnparity.checks import as_float_array, check_bool
from rnnparity.convolution import Geometry, SameColumns, conv_output_size, images_per_block, same_padding, windows
from rnnparity.rnn import ArrayLike

GATES = ("i", "f", "c", "o")  # Keras's order along the last kernel axis
STEP_ORDER = ("i", "f", "o", "c")  # the recurrent_activation gates first, adjacent
PADDINGS = ("valid", "same")
DATA_FORMATS = ("channels_last", "channels_first")

# The convolutions run a block of images at a time, a block's im2col columns and products
# taking at most this many bytes (at least one image), so that each block's matmul reads
# columns just copied and its products are added to while they are still in cache.
CACHE_BLOCK_BYTES = 2**20

# Activations that act on each element alone; any other (softmax over the last axis, a
# custom callable) is applied to the state in Keras's own layout.
_ELEMENTWISE = {
    function
    for table in (activations.KERAS2_ACTIVATIONS, activations.KERAS3_ACTIVATIONS)
    for name, function in table.items()
    if name not in ("softmax", "log_softmax", "sparsemax")
}

KERAS_DEFAULT = "keras_default"  # recurrent_activation: sigmoid in Keras 3, hard_sigmoid in Keras 2


class Scratch:
    """Arrays that the calls of one ConvLSTM layer reuse from call to call, lent to one call
    at a time. Fresh memory costs a page fault per page when first written, and a call of a
    twin that allocated its large work arrays anew each time paid hundreds to thousands; the
    buffers kept here (the recurrent convolution's columns and products, the input
    convolution's, the projected inputs of a chunk of timesteps) are written over instead.
    A copy of a layer (``copy.deepcopy``, pickling) starts with an empty one."""

    def __init__(self) -> None:
        self.arrays: dict[str, Any] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def lend(self) -> Iterator[dict[str, Any]]:
        """The kept arrays, for one call; a call made while another has them (another Python
        thread) gets an empty dict of its own, so that no two calls share a buffer."""
        if not self._lock.acquire(blocking=False):
            yield {}
            return
        try:
            yield self.arrays
        finally:
            self._lock.release()

    def __deepcopy__(self, memo: dict[int, Any]) -> Scratch:
        return Scratch()

    def __reduce__(self) -> tuple[type[Scratch], tuple[()]]:
        return (Scratch, ())


def _check_tuple(value: Any, rank: int, argument: str) -> tuple[int, ...]:
    """An int or a sequence of ``rank`` positive ints, as Keras accepts them."""
    items = [value] * rank if isinstance(value, numbers.Integral) and not isinstance(value, bool) else value
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence) or len(items) != rank:
        raise ValueError(f"{argument} must be a positive integer or a tuple of {rank} positive integers; got {value!r}")
    checked = []
    for item in items:
        if isinstance(item, (bool, np.bool_)) or not isinstance(item, numbers.Integral) or item <= 0:
            raise ValueError(f"{argument} must be a positive integer or a tuple of {rank} positive integers; got {value!r}")
        checked.append(int(item))
    return tuple(checked)


def _check_choice(value: Any, choices: tuple[str, ...], argument: str) -> str:
    if isinstance(value, str) and value.lower() in choices:
        return value.lower()
    raise ValueError(f"{argument} must be one of {choices}; got {value!r}")


class ConvLSTMCell(Cell):
    """One ConvLSTM step: ``(x_t, [h_tm1, c_tm1]) -> (h, [h, c])`` with arrays in Keras's
    layout (see the module docstring). ``rank`` is the number of spatial axes (1, 2 or 3).

    ``recurrent_activation`` defaults to each Keras's own default: ``sigmoid`` for
    ``keras_version=3``, ``hard_sigmoid`` (the Keras 2 formula) for ``keras_version=2``."""

    kind = "conv_lstm"
    n_states = 2
    step_order = STEP_ORDER
    # The time loop projects the inputs of at most this many bytes' worth of timesteps at a
    # time (at least one), into a buffer the layer keeps between calls (Scratch): measured,
    # one 2 MiB step at a time costs no more than 16 MiB chunks, and keeps 8x less memory.
    projection_chunk_bytes: ClassVar[int] = 2**21

    def __init__(
        self,
        rank: int,
        filters: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] = 1,
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: int | Sequence[int] = 1,
        activation: ActivationLike = "tanh",
        recurrent_activation: ActivationLike = KERAS_DEFAULT,
        use_bias: bool = True,
        unit_forget_bias: bool = True,
        dtype: Any = "float32",
        keras_version: int = 3,
        **training_only_args: Any,
    ) -> None:
        if rank not in (1, 2, 3) or isinstance(rank, bool):
            raise ValueError(f"rank must be 1, 2 or 3 (ConvLSTM1D/2D/3D); got {rank!r}")
        if isinstance(filters, (bool, np.bool_)) or not isinstance(filters, numbers.Integral) or filters <= 0:
            raise ValueError(f"filters must be a positive integer; got {filters!r}")
        if isinstance(recurrent_activation, str) and recurrent_activation == KERAS_DEFAULT:
            recurrent_activation = "sigmoid" if keras_version == 3 else "hard_sigmoid"
        super().__init__(int(filters), activation, recurrent_activation, use_bias, dtype, keras_version, **training_only_args)
        self.rank: int = int(rank)
        self.filters: int = int(filters)
        self.kernel_size: tuple[int, ...] = _check_tuple(kernel_size, self.rank, "kernel_size")
        self.strides: tuple[int, ...] = _check_tuple(strides, self.rank, "strides")
        self.padding: str = _check_choice(padding, PADDINGS, "padding")
        self.data_format: str = _check_choice(
            "channels_last" if data_format is None else data_format, DATA_FORMATS, "data_format"
        )
        self.dilation_rate: tuple[int, ...] = _check_tuple(dilation_rate, self.rank, "dilation_rate")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                f"strides > 1 together with dilation_rate > 1 is refused by Keras (and TensorFlow); "
                f"got strides={self.strides}, dilation_rate={self.dilation_rate}"
            )
        self.unit_forget_bias: bool = check_bool(unit_forget_bias, "unit_forget_bias")
        self.geometry: Geometry | None = None  # set on the per-call copies made by bind()
        self.scratch: Scratch = Scratch()  # lent to the layer's calls (shared by the bound copies)
        # The work arrays of one call, kept by the bound copy made for the call (bind()):
        # its own, or the layer's Scratch.arrays while the layer's call has them lent.
        self._arrays: dict[str, Any] = {}
        self._reuse_projection: bool = False  # only the layer's own time loop lets the projection reuse a buffer

    # ------------------------------------------------------------------ description
    def describe(self) -> str:
        return f"ConvLSTM{self.rank}D(filters={self.filters}, kernel_size={self.kernel_size}, use_bias={self.use_bias})"

    @property
    def input_dim(self) -> int | None:
        """Input channels, from the kernel's second-to-last axis."""
        return None if self.kernel is None else int(self.kernel.shape[-2])

    def _weight_shapes(self, input_dim: int) -> list[tuple[int, ...]]:
        return [
            (*self.kernel_size, input_dim, 4 * self.filters),
            (*self.kernel_size, self.filters, 4 * self.filters),
            (4 * self.filters,),
        ]

    # ------------------------------------------------------------------ weights
    def set_weights(self, weights: Sequence[ArrayLike]) -> None:
        """Load ``[kernel, recurrent_kernel, bias]`` (no bias when ``use_bias=False``) in
        Keras's shapes ``(*kernel_size, channels, 4 * filters)``, ``(*kernel_size, filters,
        4 * filters)``, ``(4 * filters,)`` and gate order ``i, f, c, o``. Copied."""
        names = ["kernel", "recurrent_kernel", "bias"][: 3 if self.use_bias else 2]
        if isinstance(weights, np.ndarray) or not isinstance(weights, Sequence):
            raise TypeError(f"weights must be a list {names}; got {type(weights).__name__}")
        if len(weights) != len(names):
            raise ValueError(f"{self.describe()} expects {len(names)} weights {names}; got {len(weights)}")
        arrays = [as_float_array(w, self.dtype, name) for w, name in zip(weights, names)]
        kernel = arrays[0]
        if kernel.ndim != self.rank + 2:
            raise ValueError(
                f"kernel must be {self.rank + 2}-D (*kernel_size, channels, 4 * filters) for {self.describe()}; "
                f"got shape {kernel.shape}"
            )
        input_dim = int(kernel.shape[-2])
        for name, array, shape in zip(names, arrays, self._weight_shapes(input_dim)):
            if array.shape != shape:
                raise ValueError(
                    f"{name} has shape {array.shape}; {self.describe()} with {input_dim} input channels expects {shape}"
                )
        self.kernel, self.recurrent_kernel = arrays[0], arrays[1]
        self.bias = arrays[2] if self.use_bias else None
        self._prepare()

    def gate_block(self, array: np.ndarray, gate: str) -> np.ndarray:
        """The ``gate`` block of a Keras ConvLSTM weight (its last axis)."""
        index = GATES.index(gate)
        block: np.ndarray = array[..., index * self.filters : (index + 1) * self.filters]
        return block

    def _im2col_kernel(self, kernel: np.ndarray) -> np.ndarray:
        """``(*K, C, 4F)`` -> ``(4F, C * prod(K))``: one row per output channel, the gate
        blocks in step_order, the columns in im2col's ``(channel, *kernel)`` order."""
        blocks = [self.gate_block(kernel, gate) for gate in self.step_order]  # each (*K, C, F)
        stacked = np.concatenate(blocks, axis=-1)  # (*K, C, 4F) in step_order
        axes = (self.rank + 1, self.rank, *range(self.rank))  # -> (4F, C, *K)
        return np.ascontiguousarray(stacked.transpose(axes).reshape(stacked.shape[-1], -1))

    def keras_weight(self, rows: np.ndarray) -> np.ndarray:
        """The inverse of the im2col rearrangement, for the weights' gradients: ``(4F, ch * prod(K))``
        (or a bias ``(4F,)``) with the gate blocks in step_order -> Keras's ``(*K, ch, 4F)`` (``(4F,)``)
        in Keras's gate order."""
        if rows.ndim == 2:
            shaped = rows.reshape(rows.shape[0], -1, *self.kernel_size)  # (4F, ch, *K)
            rows = shaped.transpose(*range(2, self.rank + 2), 1, 0)  # (*K, ch, 4F)
        keras = np.empty_like(rows)
        for index, gate in enumerate(self.step_order):
            keras[..., GATES.index(gate) * self.filters : (GATES.index(gate) + 1) * self.filters] = rows[
                ..., index * self.filters : (index + 1) * self.filters
            ]
        return keras

    @property
    def kernel_rows(self) -> np.ndarray:
        """``kernel`` as the input convolution uses it: ``(4F, C * prod(K))``, gates in step_order (read-only)."""
        assert self._kernel_gates is not None
        return self._kernel_gates

    @property
    def recurrent_rows(self) -> np.ndarray:
        """``recurrent_kernel`` as the recurrent convolution uses it: ``(4F, F * prod(K))`` (read-only)."""
        assert self._recurrent_gates is not None
        return self._recurrent_gates

    def _prepare(self) -> None:
        assert self.kernel is not None and self.recurrent_kernel is not None
        self._kernel_gates = self._im2col_kernel(self.kernel)
        self._recurrent_gates = self._im2col_kernel(self.recurrent_kernel)
        self._input_bias_gates = None
        if self.bias is not None:
            self._input_bias_gates = np.concatenate([self.gate_block(self.bias, gate) for gate in self.step_order])[:, None]

    # ------------------------------------------------------------------ geometry
    def bind(self, spatial_in: tuple[int, ...]) -> ConvLSTMCell:
        """A shallow copy of this cell (weights shared) fixed to inputs of spatial size
        ``spatial_in``, which the time loop can run. Raises if the convolution is empty."""
        if len(spatial_in) != self.rank:
            raise ValueError(f"{self.describe()} needs {self.rank} spatial axes; got {spatial_in}")
        out = tuple(
            conv_output_size(s, k, st, d, self.padding)
            for s, k, st, d in zip(spatial_in, self.kernel_size, self.strides, self.dilation_rate)
        )
        if min(out) <= 0:
            raise ValueError(
                f"inputs with spatial size {spatial_in} are smaller than kernel_size={self.kernel_size} with "
                f"dilation_rate={self.dilation_rate} and padding='valid'; the convolution would be empty (Keras refuses it too)"
            )
        if self.padding == "same":
            input_pads = tuple(
                same_padding(s, k, st, d) for s, k, st, d in zip(spatial_in, self.kernel_size, self.strides, self.dilation_rate)
            )
        else:
            input_pads = tuple((0, 0) for _ in spatial_in)
        recurrent_pads = tuple(same_padding(s, k, 1, 1) for s, k in zip(out, self.kernel_size))
        bound = copy.copy(self)
        bound.geometry = Geometry(tuple(spatial_in), out, input_pads, recurrent_pads)
        bound._arrays, bound._reuse_projection = {}, False
        return bound

    def _geometry(self) -> Geometry:
        if self.geometry is None:
            raise ValueError(f"{self.describe()} has no spatial size yet: call it on inputs (or bind() it) first")
        return self.geometry

    @property
    def output_size(self) -> int:
        """Length of one flat state row in the loop: ``filters * prod(S_out)``."""
        return math.prod(self._geometry().spatial_out) * self.filters

    @property
    def projection_width(self) -> int:
        return 4 * self.output_size

    def recurrent_macs(self, batch: int) -> int:
        """Multiply-adds of one step's recurrent convolution (``rnn.step_macs``, which decides
        the BLAS threads): ``batch * prod(S_out) * 4F * F * prod(K)``."""
        return batch * math.prod(self._geometry().spatial_out) * 4 * self.filters * self.filters * math.prod(self.kernel_size)

    @property
    def flat_state_sizes(self) -> list[int]:
        return [self.output_size] * 2

    @property
    def state_size(self) -> list[int]:
        return [self.filters, self.filters]

    def state_shape(self, batch: int) -> tuple[int, ...]:
        """The Keras shape of ``h`` and ``c`` for a bound cell."""
        out = self._geometry().spatial_out
        return (batch, self.filters, *out) if self.data_format == "channels_first" else (batch, *out, self.filters)

    def input_shape(self, batch: int) -> tuple[int, ...]:
        """The Keras shape of one timestep of the inputs for a bound cell."""
        spatial = self._geometry().spatial_in
        channels = self.input_dim or 0
        return (batch, channels, *spatial) if self.data_format == "channels_first" else (batch, *spatial, channels)

    # ------------------------------------------------------------------ layout conversions
    def to_rows(self, array: np.ndarray) -> np.ndarray:
        """Keras layout ``(..., *S, ch)`` / ``(..., ch, *S)`` -> loop rows ``(..., ch * prod(S))``,
        channels first (a view for ``channels_first``)."""
        lead = array.ndim - self.rank - 1
        if self.data_format == "channels_last":
            array = np.moveaxis(array, -1, lead)
        return array.reshape(*array.shape[:lead], -1)

    def from_rows(self, rows: np.ndarray) -> np.ndarray:
        """Loop rows ``(..., F * prod(S_out))`` -> the Keras layout of a state / output."""
        return self._keras_layout(rows, self.filters, self._geometry().spatial_out)

    def inputs_from_rows(self, rows: np.ndarray) -> np.ndarray:
        """Input rows ``(..., C * prod(S))`` -> the Keras layout of inputs (for their gradient)."""
        return self._keras_layout(rows, self.input_dim or 0, self._geometry().spatial_in)

    def _keras_layout(self, rows: np.ndarray, channels: int, spatial: tuple[int, ...]) -> np.ndarray:
        array = rows.reshape(*rows.shape[:-1], channels, *spatial)
        if self.data_format == "channels_last":
            array = np.moveaxis(array, rows.ndim - 1, -1)
        return np.ascontiguousarray(array)

    def elementwise(self, function: Activation) -> bool:
        """Whether ``function`` acts on each element alone (else the step applies it in Keras's layout)."""
        return function in _ELEMENTWISE

    def check_state(self, value: Any, batch: int, argument: str) -> np.ndarray:
        """One state given in Keras's layout, checked, as loop rows ``(batch, F * prod(S_out))``."""
        array = as_float_array(value, self.dtype, argument)
        expected = self.state_shape(batch)
        if array.shape != expected:
            layout = "(batch, filters, *spatial)" if self.data_format == "channels_first" else "(batch, *spatial, filters)"
            raise ValueError(f"{argument} must have shape {layout} = {expected} for {self.describe()}; got {array.shape}")
        return np.ascontiguousarray(self.to_rows(array))

    def check_states(self, states: Any, batch: int, argument: str) -> list[np.ndarray]:
        if not isinstance(states, (list, tuple)) or len(states) != 2:
            raise ValueError(
                f"{argument} must be a list [h, c] of 2 arrays for {self.describe()}; got {type(states).__name__}"
                + (f" of {len(states)}" if isinstance(states, (list, tuple)) else "")
            )
        return [self.check_state(s, batch, f"{argument} ({name})") for s, name in zip(states, ("h", "c"))]

    # ------------------------------------------------------------------ one step
    def input_projection(self, inputs: np.ndarray) -> np.ndarray:
        """The input convolution (plus bias) of loop rows ``(steps, batch, C * prod(S))``:
        ``(gates, steps, batch, F * prod(S_out))`` in step_order: a view of a new array, or, in
        the layer's own time loop, of a buffer the next projection overwrites (the loop is done
        with a chunk when it projects the next).

        One matmul per image of im2col columns, a block of images at a time: each block's
        columns are copied into one reused buffer and its bias added while its products are
        in cache (:data:`CACHE_BLOCK_BYTES`); the numbers are those of one im2col of all images."""
        assert self._kernel_gates is not None
        geometry = self._geometry()
        leading = inputs.shape[:-1]
        images = inputs.reshape(-1, inputs.shape[-1] // math.prod(geometry.spatial_in), *geometry.spatial_in)
        if any(p for pair in geometry.input_pads for p in pair):
            images = np.pad(images, ((0, 0), (0, 0), *geometry.input_pads))
        view = windows(images, self.kernel_size, self.strides, self.dilation_rate)  # (n, C, *K, *out)
        count, positions = images.shape[0], math.prod(geometry.spatial_out)
        rows, width = self._kernel_gates.shape[1], self._kernel_gates.shape[0]
        dtype = self._kernel_gates.dtype
        shape = (count, width, positions)
        projected = self._buffer("projected", shape, dtype) if self._reuse_projection else np.empty(shape, dtype)
        block = images_per_block((rows + width) * positions * projected.itemsize, count, CACHE_BLOCK_BYTES)
        columns = self._buffer("input_columns", (block, rows, positions), dtype)
        for start in range(0, count, block):
            stop = min(count, start + block)
            part, out = columns[: stop - start], projected[start:stop]
            np.copyto(part.reshape(view[start:stop].shape), view[start:stop])
            np.matmul(self._kernel_gates, part, out=out)
            if self._input_bias_gates is not None:
                out += self._input_bias_gates
        gates = len(self.step_order)
        return np.moveaxis(projected.reshape(*leading, gates, -1), -2, 0)

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """An uninitialized array of ``shape``, the start of a buffer kept under ``name`` in
        this call's work arrays (grown when too small)."""
        size = math.prod(shape)
        flat = self._arrays.get(name)
        if not isinstance(flat, np.ndarray) or flat.dtype != dtype or flat.size < size:
            flat = self._arrays[name] = np.empty(size, dtype)
        return flat[:size].reshape(shape)

    def _recurrent_blocks(self, h_tm1: np.ndarray) -> Iterator[tuple[slice, np.ndarray]]:
        """``conv(h_tm1, recurrent_kernel)`` (stride 1, ``same``) of rows ``(batch, F * prod(S_out))``,
        a block of batch rows at a time: yields ``(rows, product)``, ``product`` the block's
        ``(gates, len(rows), F * prod(S_out))`` in step_order. ``product`` is a view of a
        buffer that the next block overwrites; the blocks are small enough for their columns
        and products to stay in cache (:data:`CACHE_BLOCK_BYTES`), and the buffers (a
        :class:`~rnnparity.convolution.SameColumns` and the products) are made once per call."""
        assert self._recurrent_gates is not None
        geometry = self._geometry()
        batch = h_tm1.shape[0]
        images = h_tm1.reshape(batch, self.filters, *geometry.spatial_out)
        width, rows = self._recurrent_gates.shape
        positions = math.prod(geometry.spatial_out)
        block = images_per_block((rows + width) * positions * h_tm1.itemsize, batch, CACHE_BLOCK_BYTES)
        key = (block, self.filters, geometry.spatial_out, self.kernel_size, geometry.recurrent_pads, h_tm1.dtype)
        same = self._arrays.get("recurrent_columns")
        if not isinstance(same, SameColumns) or same.key != key:
            same = self._arrays["recurrent_columns"] = SameColumns(*key)
        products = self._buffer("recurrent_products", (block, width, positions), h_tm1.dtype)
        gates = len(self.step_order)
        for start in range(0, batch, block):
            stop = min(batch, start + block)
            out = products[: stop - start]
            np.matmul(self._recurrent_gates, same(images[start:stop]), out=out)  # (n, 4F, prod(S_out))
            yield slice(start, stop), np.moveaxis(out.reshape(stop - start, gates, -1), 1, 0)

    def _recurrent_conv(self, h_tm1: np.ndarray) -> np.ndarray:
        """``conv(h_tm1, recurrent_kernel)`` (stride 1, ``same``) for rows ``(batch, F * prod(S_out))``:
        the recurrent pre-activations ``(gates, batch, F * prod(S_out))`` in step_order (a new array)."""
        z = np.empty((len(self.step_order), *h_tm1.shape), dtype=h_tm1.dtype)
        for rows, product in self._recurrent_blocks(h_tm1):
            z[:, rows] = product
        return z

    def _apply(self, function: Activation, x: np.ndarray, in_place: bool) -> np.ndarray:
        """An activation of loop rows ``x`` (any leading axes): element-wise ones directly
        (``in_place``: into ``x``), the others on the array in Keras's layout."""
        if self.elementwise(function):
            if in_place:
                return activations.in_place(function)(x)
            return function(x)
        keras_layout = self.from_rows(x)
        result = np.asarray(function(keras_layout), dtype=x.dtype)
        rows = self.to_rows(result)
        if in_place:
            x[...] = rows
            return x
        return np.ascontiguousarray(rows)

    def recurrent_step(
        self, x_proj: np.ndarray, states: list[np.ndarray], record: StepRecord | None = None
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """The step after the input convolution: ``x_proj`` ``(gates, batch, F * prod(S_out))``
        may be overwritten; ``states`` are rows and are never modified. Given ``record``, the
        step fills it as an LSTM step does: the pre-activations ``z`` (step_order), ``h_tm1``,
        and references to ``c_tm1`` and ``c``."""
        h_tm1, c_tm1 = states
        # z = x_proj + conv(h_tm1) (the step owns x_proj): the same sum as conv + x_proj, added
        # a block of batch rows at a time, right after the block's matmul.
        z = x_proj
        for rows, product in self._recurrent_blocks(h_tm1):
            z[:, rows] += product
        if record is not None:
            record.pre[...] = z
            record.h_tm1[...] = h_tm1
        i, f, o = self._apply(self.recurrent_activation, z[:3], in_place=True)
        candidate = self._apply(self.activation, z[3], in_place=True)
        c = f * c_tm1
        c += np.multiply(i, candidate, out=i)
        h = o * self._apply(self.activation, c, in_place=False)
        if record is not None:
            record.keep(c_tm1, c)
        return h, [h, c]

    def __call__(self, inputs: ArrayLike, states: Any) -> tuple[np.ndarray, Any]:
        """One timestep in Keras's layout: ``x_t`` ``(batch, *S, C)`` (or ``(batch, C, *S)``),
        ``states`` ``[h, c]``; returns ``(h, [h, c])``."""
        self.require_built()
        x = as_float_array(inputs, self.dtype, "inputs")
        if x.ndim != self.rank + 2:
            raise ValueError(f"inputs of one step must be rank {self.rank + 2} for {self.describe()}; got shape {x.shape}")
        channel_axis = 1 if self.data_format == "channels_first" else -1
        if x.shape[channel_axis] != self.input_dim:
            raise ValueError(
                f"inputs have {x.shape[channel_axis]} channels (axis {channel_axis}, {self.data_format}); "
                f"{self.describe()} was given weights for {self.input_dim}"
            )
        spatial = x.shape[2:] if self.data_format == "channels_first" else x.shape[1:-1]
        bound = self.bind(tuple(spatial))
        rows = bound.check_states(states, x.shape[0], "states")
        with np.errstate(over="ignore", invalid="ignore"):
            projected = bound.input_projection(bound.to_rows(x)[None])[:, 0]
            h, (_, c) = bound.recurrent_step(projected, rows)
        new_h = bound.from_rows(h)
        return new_h, [new_h.copy(), bound.from_rows(c)]

    # ------------------------------------------------------------------ config
    def _extra_config(self) -> dict[str, Any]:
        return {"unit_forget_bias": self.unit_forget_bias}

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "data_format": self.data_format,
            "dilation_rate": self.dilation_rate,
            "activation": self.activation_name,
            "recurrent_activation": self.recurrent_activation_name,
            "use_bias": self.use_bias,
            "unit_forget_bias": self.unit_forget_bias,
            "dtype": dtype_config(self.dtype, self.keras_version),
        }
        for key in ("dropout", "recurrent_dropout"):
            config[key] = self.training_only_args.get(key, 0.0)
        return config


class ConvLSTM1DCell(ConvLSTMCell):
    """:class:`ConvLSTMCell` with ``rank=1``."""

    def __init__(self, filters: int, kernel_size: int | Sequence[int], **kwargs: Any) -> None:
        super().__init__(1, filters, kernel_size, **kwargs)


class ConvLSTM2DCell(ConvLSTMCell):
    """:class:`ConvLSTMCell` with ``rank=2``."""

    def __init__(self, filters: int, kernel_size: int | Sequence[int], **kwargs: Any) -> None:
        super().__init__(2, filters, kernel_size, **kwargs)


class ConvLSTM3DCell(ConvLSTMCell):
    """:class:`ConvLSTMCell` with ``rank=3``."""

    def __init__(self, filters: int, kernel_size: int | Sequence[int], **kwargs: Any) -> None:
        super().__init__(3, filters, kernel_size, **kwargs)
