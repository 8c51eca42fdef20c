"""The ConvLSTM twins' fast convolutions against the plainest possible ones. NumPy only.

The twins compute each convolution as an im2col matmul into buffers reused from step to
step (rnnparity.convolution). Here the same layers are recomputed by a reference that
sums one matmul per kernel offset over a zero-padded input, in float64, with the gates
written out from the equations, on seeded random configurations across ranks, kernel
sizes (even ones too), strides, dilation, padding and data format; the twins must agree
within the dtype's tolerance (rnnparity.compare). Keras parity is test_conv_lstm's job.
"""

from __future__ import annotations

import copy
import math
import pickle
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from conv_lstm_cases import ConvCase, conditioning, describe, draw_case, make_data, twin_outputs

from rnnparity import conv_lstm_cell, rnn
from rnnparity.compare import assert_parity
from rnnparity.convolution import SameColumns, im2col

# The draw_case options that change the convolutions or the gates (masks, go_backwards and
# stateful calls are the time loop's, shared with the dense layers and tested there).
OPTIONS = ("plain", "same", "strides", "dilation", "channels_first", "no_bias", "activations", "initial_state", "return_state")


def _activation(name: str, keras_version: int) -> Any:
    table = {
        "tanh": np.tanh,
        "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
        "hard_sigmoid": (lambda x: np.clip(0.2 * x + 0.5, 0.0, 1.0))
        if keras_version == 2
        else (lambda x: np.clip((x + 3.0) / 6.0, 0.0, 1.0)),
        "softsign": lambda x: x / (1.0 + np.abs(x)),
        "relu": lambda x: np.maximum(x, 0.0),
        "linear": lambda x: x,
        "softmax": lambda x: np.exp(x - x.max(-1, keepdims=True)) / np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True),
    }
    return table[name]


def reference_conv(
    x: np.ndarray, kernel: np.ndarray, strides: tuple[int, ...], dilation: tuple[int, ...], padding: str
) -> np.ndarray:
    """``x`` ``(batch, *S, C)`` convolved with ``kernel`` ``(*K, C, O)``: for each kernel offset,
    the input positions it meets (a strided slice of the padded input) times that offset's
    ``(C, O)`` matrix, summed. TensorFlow's ``same``: the odd zero goes after."""
    rank = kernel.ndim - 2
    sizes, kernel_size = x.shape[1:-1], kernel.shape[:rank]
    if padding == "same":
        out = [-(-s // st) for s, st in zip(sizes, strides)]
        spans = [(k - 1) * d + 1 for k, d in zip(kernel_size, dilation)]
        totals = [max((o - 1) * st + span - s, 0) for s, span, st, o in zip(sizes, spans, strides, out)]
        pads = [(t // 2, t - t // 2) for t in totals]
    else:
        out = [(s - (k - 1) * d - 1) // st + 1 for s, k, st, d in zip(sizes, kernel_size, strides, dilation)]
        pads = [(0, 0)] * rank
    padded = np.pad(x, [(0, 0), *pads, (0, 0)])
    result = np.zeros((x.shape[0], *out, kernel.shape[-1]))
    for offset in np.ndindex(*kernel_size):
        where = tuple(slice(k * d, k * d + (n - 1) * st + 1, st) for k, d, n, st in zip(offset, dilation, out, strides))
        result += padded[(slice(None), *where, slice(None))] @ kernel[offset]
    return result


def reference_layer(case: ConvCase, weights: list[np.ndarray], x: np.ndarray, initial: list[np.ndarray] | None) -> Any:
    """What the layer of ``case`` returns for ``x``, from the equations, in float64
    (no masks, go_backwards or stateful calls)."""
    first = case.data_format == "channels_first"
    if first and "softmax" in (case.activation, case.recurrent_activation):
        raise ValueError("the reference applies activations in channels_last layout: no softmax with channels_first")
    kernel, recurrent = (w.astype(np.float64) for w in weights[:2])
    bias = weights[2].astype(np.float64) if case.use_bias else np.zeros(kernel.shape[-1])
    act = _activation(case.activation, case.keras_version)
    gate = _activation(case.recurrent_activation, case.keras_version)
    frames = np.moveaxis(x.astype(np.float64), 2, -1) if first else x.astype(np.float64)  # (batch, time, *S, C)
    ones = (1,) * case.rank
    outputs = []
    if initial is None:
        state_shape = reference_conv(frames[:, 0], kernel, case.strides, case.dilation_rate, case.padding).shape[:-1]
        h = c = np.zeros((*state_shape, case.filters))
    else:
        h, c = (np.moveaxis(s.astype(np.float64), 1, -1) if first else s.astype(np.float64) for s in initial)
    for t in range(frames.shape[1]):
        z = reference_conv(frames[:, t], kernel, case.strides, case.dilation_rate, case.padding) + bias
        z = z + reference_conv(h, recurrent, ones, ones, "same")
        z_i, z_f, z_c, z_o = np.split(z, 4, axis=-1)  # Keras's gate order i, f, c, o
        c = gate(z_f) * c + gate(z_i) * act(z_c)
        h = gate(z_o) * act(c)
        outputs.append(h)
    sequence = np.stack(outputs, axis=1)
    if first:
        sequence, h, c = np.moveaxis(sequence, -1, 2), np.moveaxis(h, -1, 1), np.moveaxis(c, -1, 1)
    output = sequence if case.return_sequences else sequence[:, -1]
    if not case.return_state:
        return output
    packed = [output, h, c]
    return tuple(packed) if case.keras_version == 3 else packed


def _wide_case(seed: int) -> ConvCase:
    """A random configuration wider than draw_case's: larger frames, even and odd kernels,
    strides or dilation up to 3, either padding and layout, more filters and batch rows."""
    rng = np.random.default_rng([seed, 4242])
    rank = int(rng.integers(1, 4))
    kernel = tuple(int(k) for k in rng.integers(1, 5, size=rank))
    strided = bool(rng.integers(2))
    strides = tuple(int(s) for s in rng.integers(1, 4, size=rank)) if strided else (1,) * rank
    dilation = (1,) * rank if strided else tuple(int(d) for d in rng.integers(1, 4, size=rank))
    padding = str(rng.choice(["valid", "same"]))
    largest = (16, 10, 7)[rank - 1]
    spans = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    spatial = tuple(int(rng.integers(span, max(span, largest) + 1)) for span in spans)
    case = replace(
        draw_case(rank, int(rng.choice([2, 3])), str(rng.choice(["float32", "float64"])), seed),
        kernel_size=kernel,
        strides=strides,
        dilation_rate=dilation,
        padding=padding,
        data_format=str(rng.choice(["channels_last", "channels_first"])),
        spatial=spatial,
        filters=int(rng.integers(1, 9)),
        channels=int(rng.integers(1, 5)),
        batch=int(rng.integers(1, 5)),
        timesteps=int(rng.integers(2, 5)),
        initial_state=bool(rng.integers(2)),
        return_state=True,
    )
    return case


def _check(case: ConvCase) -> None:
    if case.dtype == "float32":
        conditioned = conditioning(case)
        if not conditioned.ok:
            pytest.skip(f"float32 cannot decide this case ({describe(case)}): {conditioned.message}")
    data = make_data(case)
    (twin,) = twin_outputs(case, data)
    expected = reference_layer(case, data.weights, data.inputs[0], data.initial_state)
    assert_parity(expected, twin, dtype=case.dtype, check_dtype=False, context=f"{case.case_id}: {describe(case)}")


_DRAWN = [
    draw_case(rank, version, dtype, seed, option)
    for rank in (1, 2, 3)
    for version in (2, 3)
    for dtype in ("float32", "float64")
    for option in OPTIONS
    for seed in (0, 1)
]


@pytest.mark.parametrize("case", _DRAWN, ids=[c.case_id for c in _DRAWN])
def test_twin_equals_the_offset_by_offset_reference(case: ConvCase) -> None:
    _check(case)


@pytest.mark.parametrize("seed", range(40))
def test_twin_equals_the_reference_on_wider_configurations(seed: int) -> None:
    _check(_wide_case(seed))


def test_the_reference_catches_a_wrong_twin() -> None:
    """The reference is not blind: a twin with its recurrent kernel's spatial axes flipped
    (a correlation turned convolution) disagrees with it."""
    case = replace(draw_case(2, 3, "float64", 0), kernel_size=(3, 2), spatial=(6, 5), padding="same", timesteps=3)
    data = make_data(case)
    twin = case.twin()
    twin.set_weights([data.weights[0], data.weights[1][::-1, ::-1].copy(), *data.weights[2:]])
    expected = reference_layer(case, data.weights, data.inputs[0], None)
    with pytest.raises(AssertionError):
        assert_parity(expected, twin(data.inputs[0]), dtype=case.dtype)


@pytest.mark.parametrize("seed", range(12))
def test_same_columns_equal_im2col_bit_for_bit(seed: int) -> None:
    """The reused buffers give exactly im2col's columns, call after call (the border stays zero)."""
    rng = np.random.default_rng([seed, 99])
    rank = int(rng.integers(1, 4))
    kernel = tuple(int(k) for k in rng.integers(1, 6, size=rank))
    spatial = tuple(int(s) for s in rng.integers(1, 9, size=rank))
    block, channels = int(rng.integers(1, 4)), int(rng.integers(1, 5))
    pads = tuple(conv_lstm_cell.same_padding(s, k, 1, 1) for s, k in zip(spatial, kernel))
    dtype = np.dtype(str(rng.choice(["float32", "float64"])))
    columns = SameColumns(block, channels, spatial, kernel, pads, dtype)
    ones = (1,) * rank
    for n in (block, 1, block, max(1, block - 1)):
        x = rng.standard_normal((n, channels, *spatial)).astype(dtype)
        np.testing.assert_array_equal(columns(x), im2col(x, kernel, ones, ones, pads))


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_steps_return_fresh_states_and_batch_changes_rebuild_the_buffers(rank: int) -> None:
    """A step's ``h`` and ``c`` are its own arrays (later steps reuse only internal buffers),
    and one bound cell serves calls of different batch sizes."""
    case = replace(draw_case(rank, 3, "float64", 3), padding="same", kernel_size=(3,) * rank, timesteps=2)
    data = make_data(case)
    twin = case.twin()
    twin.set_weights(data.weights)
    bound = twin.conv_cell.bind(case.spatial)
    rng = np.random.default_rng(5)
    width = bound.output_size
    for batch in (2, 3, 2):
        states = [rng.standard_normal((batch, width)) for _ in range(2)]
        projected = bound.input_projection(rng.standard_normal((1, batch, case.channels * math.prod(case.spatial))))
        h1, (_, c1) = bound.recurrent_step(projected[:, 0].copy(), states)
        kept = h1.copy(), c1.copy()
        images = states[0].reshape(batch, case.filters, *case.spatial)
        ones = (1,) * rank
        columns = im2col(images, case.kernel_size, ones, ones, bound.geometry.recurrent_pads)
        expected_z = np.matmul(bound._recurrent_gates, columns)
        np.testing.assert_array_equal(bound._recurrent_conv(states[0]), np.moveaxis(expected_z.reshape(batch, 4, -1), 1, 0))
        bound.recurrent_step(projected[:, 0].copy(), [h1, c1])
        np.testing.assert_array_equal(h1, kept[0])
        np.testing.assert_array_equal(c1, kept[1])


@pytest.mark.parametrize("budget", [1, 4000])
@pytest.mark.parametrize("seed", range(8))
def test_blocks_of_any_size_give_the_same_bits(seed: int, budget: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The convolutions run a block of images at a time (conv_lstm_cell.CACHE_BLOCK_BYTES); any
    block size gives the same bits (each image is its own matmul), and the reference's values."""
    case = replace(_wide_case(seed), batch=3 + seed % 3)
    data = make_data(case)
    (whole,) = twin_outputs(case, data)
    monkeypatch.setattr(conv_lstm_cell, "CACHE_BLOCK_BYTES", budget)
    (blocked,) = twin_outputs(case, data)
    for expected, got in zip(whole, blocked):
        np.testing.assert_array_equal(got, expected)
    reference = reference_layer(case, data.weights, data.inputs[0], data.initial_state)
    assert_parity(reference, blocked, dtype=case.dtype, check_dtype=False, context=describe(case))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_several_blocks_at_the_default_size(dtype: str) -> None:
    """Frames large enough that the default CACHE_BLOCK_BYTES splits the batch into blocks."""
    case = replace(
        draw_case(2, 3, dtype, 5),
        kernel_size=(3, 3),
        padding="same",
        spatial=(24, 24),
        filters=8,
        channels=3,
        batch=5,
        timesteps=3,
        return_sequences=True,
    )
    rows, width = 8 * 9, 4 * 8
    per_image = (rows + width) * 24 * 24 * np.dtype(dtype).itemsize
    assert 1 < conv_lstm_cell.CACHE_BLOCK_BYTES // per_image < case.batch, "the case no longer needs several blocks"
    _check(case)


def _layer_and_inputs(rank: int, dtype: str, seed: int, size: int = 9) -> tuple[Any, list[np.ndarray]]:
    """A ConvLSTM layer of ``rank`` and inputs of several batch sizes, lengths and frame sizes."""
    case = replace(draw_case(rank, 3, dtype, seed), padding="same", kernel_size=(3,) * rank, return_sequences=True)
    data = make_data(case)
    layer = case.twin()
    layer.set_weights(data.weights)
    rng = np.random.default_rng([seed, 17])
    shapes = [(3, 4, (size,) * rank), (1, 2, (size,) * rank), (2, 5, (size - 3,) * rank), (3, 4, (size,) * rank)]
    inputs = [rng.standard_normal((b, t, *s, case.channels)).astype(dtype) for b, t, s in shapes]
    return layer, inputs


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_calls_reusing_the_layer_buffers_equal_calls_of_fresh_layers(rank: int) -> None:
    """One layer called on inputs of changing batch, length and frame size (its kept buffers
    reused, grown, rebuilt) returns, call after call, the bits of a fresh copy of the layer."""
    layer, inputs = _layer_and_inputs(rank, "float64", rank)
    for x in inputs:
        fresh = copy.deepcopy(layer)
        assert not fresh.conv_cell.scratch.arrays, "a copy of a layer must start without buffers"
        np.testing.assert_array_equal(layer(x), fresh(x))
    assert layer.conv_cell.scratch.arrays, "the layer kept no buffers between calls"


def test_concurrent_calls_of_one_layer_do_not_share_buffers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two threads call one layer in lockstep (a barrier before every step, after both have
    projected their inputs): each gets its own result."""
    layer, inputs = _layer_and_inputs(2, "float32", 4, size=12)
    pair = [inputs[0], inputs[3][::-1].copy()]  # the same shape, different values
    expected = [layer(x) for x in pair]
    barrier = threading.Barrier(2, timeout=60)
    step = conv_lstm_cell.ConvLSTMCell.recurrent_step

    def in_lockstep(self: Any, *args: Any, **kwargs: Any) -> Any:
        barrier.wait()
        return step(self, *args, **kwargs)

    monkeypatch.setattr(conv_lstm_cell.ConvLSTMCell, "recurrent_step", in_lockstep)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(layer, pair))
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)


def test_pickled_layer_starts_with_empty_buffers() -> None:
    layer, inputs = _layer_and_inputs(1, "float32", 6)
    expected = layer(inputs[0])
    restored = pickle.loads(pickle.dumps(layer))
    assert not restored.conv_cell.scratch.arrays
    np.testing.assert_array_equal(restored(inputs[0]), expected)


def test_step_macs_count_the_recurrent_convolution() -> None:
    """The BLAS thread choice (rnn.step_macs) sees the multiply-adds one step's recurrent
    convolution does: one (4F, F * prod(K)) by (F * prod(K), prod(S_out)) matmul per batch row."""
    case = replace(draw_case(2, 3, "float32", 0), padding="valid", spatial=(9, 7), kernel_size=(3, 2), filters=4)
    layer = case.twin()
    layer.set_weights(make_data(case).weights)
    bound = layer.conv_cell.bind(case.spatial)
    width, depth = bound._recurrent_gates.shape
    positions = math.prod(bound.geometry.spatial_out)
    assert rnn.step_macs(bound, 5) == 5 * width * depth * positions
