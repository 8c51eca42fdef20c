"""``rnnparity.gradients`` for ConvLSTM1D/2D/3D: parity with ``tf.GradientTape`` over the Keras
layer (Keras 3 and tf_keras), float64 central differences, and negative tests.

Cases are the ConvLSTM forward cases (tests/conv_lstm_cases.py: seeded random kernels,
recurrent kernels and biases scaled so the gates work in their non-linear ranges, never
constant), with the return structure rotated over the four ``return_sequences`` x
``return_state`` combinations, an initial state in some, and seeded random ``output_grads``
for every output. Gradients of the inputs, the initial states, every weight and (stateful
layers) the carried states are compared array by array with
``gradient_cases.compare_gradients`` (the per-dtype tolerances, the absolute floor raised by
``rtol`` times the array's largest entry); a float32 case first has to show that the twin's
float32 gradients agree with its float64 gradients within half of that tolerance.

Where TensorFlow's CPU kernels refuse a ``channels_first`` ConvLSTM (Keras 3, float64, 1-D and
2-D), Keras's ``channels_last`` layer runs on the transposed inputs and its gradients are
transposed back. A kernel 1 wide along a strided axis is widened to 2 (see ``gradient_case``).
tf_keras's stateful ConvLSTM refuses float64, so its stateful cases are float32. ``-m slow``
runs both dtypes of every configuration, with three more seeds.

Reproduce one case: ``python -m pytest tests/test_conv_lstm_gradients.py -n 0 -k "<case id>"``.
"""

from __future__ import annotations

import itertools
import zlib
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from conftest import FLAVOR_MAJOR, flavor_params, keras_handle
from conv_lstm_cases import OPTIONS, ConvCase, ConvData, _layout_moves, draw_case, keras_refuses, make_data
from gradient_cases import compare_gradients
from test_gradients import finite_difference_check

import rnnparity
from rnnparity import backprop, tapes
from rnnparity.compare import Comparison, assert_parity

RANKS = (1, 2, 3)
RETURNS = [(False, False), (True, False), (False, True), (True, True)]


def _rng(*key: Any) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def gradient_case(rank: int, keras_version: int, dtype: str, seed: int, option: str) -> ConvCase:
    """A forward case with ``option`` forced on, the return structure rotated over the four
    combinations (``return_state`` forced by its option), an initial state in about half."""
    case = draw_case(rank, keras_version, dtype, seed, option)
    # TensorFlow 2.21's oneDNN Conv2DBackpropFilter crashed the process (SIGSEGV/abort) on a
    # kernel 1 wide along an axis with stride 2, float32, after other cases had run (alone it
    # passed; with TF_ENABLE_ONEDNN_OPTS=0 it passed): such axes get a kernel 2 wide.
    kernel = tuple(2 if k == 1 and s > 1 else k for k, s in zip(case.kernel_size, case.strides))
    case = replace(case, kernel_size=kernel)
    number = OPTIONS.index(option) + rank + seed
    return_sequences, return_state = RETURNS[number % 4]
    initial_state = case.initial_state or (not case.stateful and _rng("init", rank, seed, option).random() < 0.5)
    if case.stateful and keras_version == 2:
        dtype = "float32"  # tf_keras's stateful ConvLSTM keeps float32 states and refuses float64
    return replace(
        case,
        dtype=dtype,
        return_sequences=return_sequences,
        return_state=return_state or option in ("return_state", "initial_state"),
        initial_state=bool(initial_state),
    )


def _output_grads(case: ConvCase, data: ConvData) -> Any:
    """Seeded random gradients for everything the layer returns (shaped by a twin call)."""
    twin = case.twin()
    twin.set_weights(data.weights)
    result = twin(data.inputs[-1], initial_state=data.initial_state, mask=data.mask)
    rng = _rng("output-grads", case.case_id)
    leaves = list(result) if isinstance(result, (list, tuple)) else [result]
    grads = [rng.standard_normal(np.shape(leaf)).astype(case.dtype) for leaf in leaves]
    return grads if case.return_state else grads[0]


def _cast(value: Any, dtype: str) -> Any:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [_cast(v, dtype) for v in value]
    return np.asarray(value).astype(dtype)


def twin_gradients(case: ConvCase, data: ConvData, output_grads: Any, dtype: str | None = None) -> dict[str, Any]:
    """``rnnparity.gradients`` on ``case``'s data (a stateful layer after one plain call),
    optionally with the twin in ``dtype``, fed the same numbers."""
    dtype = dtype or case.dtype
    twin = case.twin(dtype=dtype)
    twin.set_weights(_cast(data.weights, dtype))
    if case.stateful:
        twin(_cast(data.inputs[0], dtype), mask=data.mask)
    return rnnparity.gradients(
        twin,
        _cast(data.inputs[-1], dtype),
        _cast(output_grads, dtype),
        initial_state=_cast(data.initial_state, dtype),
        mask=data.mask,
    )


def keras_gradients(handle: Any, case: ConvCase, data: ConvData, output_grads: Any, transposed: bool = False) -> dict[str, Any]:
    """``tf.GradientTape`` over the Keras layer with the case's weights (a stateful layer after
    one plain call). ``transposed``: Keras's ``channels_last`` layer on the transposed
    inputs of a ``channels_first`` case, its gradients transposed back."""
    from rnnparity.suite import keras_adapter

    kwargs = case.layer_kwargs()
    if transposed:
        kwargs["data_format"] = "channels_last"
    to_keras, from_keras = _layout_moves(case, transposed)
    inputs = [to_keras(x, 2) for x in data.inputs]
    layer = getattr(handle.module.layers, f"ConvLSTM{case.rank}D")(**kwargs)
    layer.build(inputs[0].shape if case.stateful else (None, *inputs[0].shape[1:]))
    layer.set_weights(data.weights)
    if case.stateful:
        keras_adapter.call_layer(handle, layer, inputs[0], mask=data.mask)
    initial_state = None if data.initial_state is None else [to_keras(s, 1) for s in data.initial_state]
    sequence_rank = case.rank + 3

    def grads_to_keras(value: Any) -> Any:
        if isinstance(value, list):
            return [grads_to_keras(v) for v in value]
        return to_keras(value, 2 if value.ndim == sequence_rank else 1)

    grads = keras_adapter.keras_gradients(
        handle, layer, inputs[-1], grads_to_keras(output_grads), initial_state, data.mask, watch_states=case.stateful
    )
    grads["inputs"] = from_keras(grads["inputs"], 2)
    for key in ("initial_state", "states"):
        if grads.get(key) is not None:
            grads[key] = [from_keras(s, 1) for s in grads[key]]
    return grads


def check_case(flavor: str, case: ConvCase) -> dict[str, Comparison]:
    """The float32 guard (float32 cases), then the twin's gradients against Keras's; returns
    the comparisons (all passed)."""
    handle = keras_handle(flavor)
    data = make_data(case)
    output_grads = _output_grads(case, data)
    actual = twin_gradients(case, data, output_grads)
    if case.dtype == "float32":
        high = twin_gradients(case, data, output_grads, dtype="float64")
        for key, result in compare_gradients(high, actual, "float32", case.case_id, share=0.5, check_dtype=False).items():
            assert result.ok, f"case cannot decide float32 gradient parity, {key}: {result.message}"
    try:
        expected = keras_gradients(handle, case, data, output_grads)
    except Exception as exc:
        if not (case.data_format == "channels_first" and keras_refuses(exc)):
            raise
        expected = keras_gradients(handle, case, data, output_grads, transposed=True)
    results = compare_gradients(expected, actual, case.dtype, case.case_id)
    for key, result in results.items():
        assert result.ok, f"{key}: {result.message}"
    assert set(results) >= {"inputs", "weights"}
    return results


def _params(seeds: list[int], both_dtypes: bool) -> list:
    params = []
    for flavor, major in FLAVOR_MAJOR.items():
        cases = []
        for rank, option, seed in itertools.product(RANKS, OPTIONS, seeds):
            if not both_dtypes and (major, rank, option) == (3, 3, "channels_first"):
                continue  # Keras 3 compiles it with XLA (13-17 s here, most of the default run): -m slow runs it
            dtypes = ("float32", "float64") if both_dtypes else (("float32", "float64")[(OPTIONS.index(option) + rank) % 2],)
            cases += [gradient_case(rank, major, dtype, seed, option) for dtype in dtypes]
        cases = list(dict.fromkeys(cases))  # (stateful tf_keras cases are float32 either way)
        params += flavor_params(flavor, [(flavor, c) for c in cases], [f"{flavor}-grad-{c.case_id}" for c in cases])
    return params


@pytest.mark.parametrize(("flavor", "case"), _params([0], both_dtypes=False))
def test_conv_lstm_gradients_match_keras(flavor: str, case: ConvCase) -> None:
    check_case(flavor, case)


@pytest.mark.slow
@pytest.mark.parametrize(("flavor", "case"), _params([1, 2, 3], both_dtypes=True))
def test_conv_lstm_gradients_match_keras_more_seeds(flavor: str, case: ConvCase) -> None:
    check_case(flavor, case)


# --------------------------------------------------------------------------- the check can fail
def _negative_case(keras_version: int) -> ConvCase:
    """ConvLSTM2D, a 3x3 kernel, strides (2, 1) and ``same`` padding on 6 x 5 frames: the input
    convolution pads one zero after the first axis and none before (an asymmetric SAME)."""
    case = draw_case(2, keras_version, "float64", 5, "same")
    return replace(
        case,
        kernel_size=(3, 3),
        strides=(2, 1),
        spatial=(6, 5),
        filters=3,
        channels=2,
        timesteps=4,
        batch=2,
        return_sequences=True,
        return_state=True,
        initial_state=True,
        mask=True,
    )


HONEST_WEIGHTS = tapes.ConvLSTMTape._weights


def _mistakes() -> dict[str, Any]:
    """Deliberate errors in the backward pass, each as a patch of tapes.ConvLSTMTape or col2im:
    the recurrent kernel's or the input kernel's spatial axes swapped (a transposed kernel),
    and SAME padding's zeros mirrored (before <-> after) when summing columns back."""

    def transposed_recurrent(self: Any) -> None:
        HONEST_WEIGHTS(self)
        swapped = np.swapaxes(self.cell.recurrent_kernel, 0, 1)
        self.recurrent_t = self.cell._im2col_kernel(swapped).T

    def transposed_input(self: Any) -> None:
        HONEST_WEIGHTS(self)
        swapped = np.swapaxes(self.cell.kernel, 0, 1)
        self.kernel_t = self.cell._im2col_kernel(swapped).T

    honest_col2im = tapes.col2im

    def mirrored_padding(columns: Any, shape: Any, kernel_size: Any, strides: Any, dilation: Any, pads: Any) -> Any:
        return honest_col2im(columns, shape, kernel_size, strides, dilation, tuple(p[::-1] for p in pads))

    return {
        "recurrent-kernel-transposed": ("_weights", transposed_recurrent),
        "input-kernel-transposed": ("_weights", transposed_input),
        "same-padding-mirrored-in-col2im": ("col2im", mirrored_padding),
    }


MISTAKES = list(_mistakes())


@pytest.mark.parametrize(
    ("flavor", "mistake"),
    [p for f in FLAVOR_MAJOR for p in flavor_params(f, [(f, m) for m in MISTAKES], [f"{f}-{m}" for m in MISTAKES])],
)
def test_gradient_mistakes_are_caught(flavor: str, mistake: str, monkeypatch: pytest.MonkeyPatch) -> None:
    case = _negative_case(FLAVOR_MAJOR[flavor])
    data = make_data(case)
    output_grads = _output_grads(case, data)
    expected = keras_gradients(keras_handle(flavor), case, data, output_grads)
    honest = compare_gradients(expected, twin_gradients(case, data, output_grads), case.dtype, case.case_id)
    assert all(r.ok for r in honest.values()), [r.message for r in honest.values() if not r.ok]
    name, patch = _mistakes()[mistake]
    if name == "col2im":
        monkeypatch.setattr(tapes, "col2im", patch)
    else:
        monkeypatch.setattr(tapes.ConvLSTMTape, name, patch)
    wrong = compare_gradients(expected, twin_gradients(case, data, output_grads), case.dtype, case.case_id)
    assert not all(r.ok for r in wrong.values()), f"{mistake} went unnoticed"


# --------------------------------------------------------------------------- finite differences (no Keras)
FD_CONFIGS: dict[str, dict[str, Any]] = {
    # name: layer options and call (every array of at most 64 entries is checked entry by entry)
    "1d-strides-valid-mask-init": {
        "rank": 1, "filters": 2, "kernel_size": 3, "strides": 2, "spatial": (5,), "channels": 2, "batch": 2, "timesteps": 3,
        "return_sequences": True, "return_state": True, "mask": True, "initial_state": True,
    },
    "1d-dilation-same-first-backwards-softmax": {
        "rank": 1, "filters": 2, "kernel_size": 2, "dilation_rate": 2, "padding": "same", "data_format": "channels_first",
        "spatial": (5,), "channels": 2, "batch": 2, "timesteps": 3, "go_backwards": True, "activation": "softmax",
        "return_state": True,
    },
    "2d-same-strides-hard-sigmoid-keras2": {
        "rank": 2, "filters": 2, "kernel_size": (2, 3), "strides": (1, 2), "padding": "same", "spatial": (4, 5),
        "channels": 1, "batch": 1, "timesteps": 3, "keras_version": 2, "return_state": True, "initial_state": True,
    },
    "2d-first-valid-dilation-nobias-zero-output": {
        "rank": 2, "filters": 1, "kernel_size": (2, 2), "dilation_rate": (2, 1), "data_format": "channels_first",
        "spatial": (5, 4), "channels": 2, "batch": 2, "timesteps": 3, "use_bias": False, "mask": True,
        "zero_output_for_mask": True, "return_sequences": True, "activation": "relu",
    },
    "3d-same-backwards": {
        "rank": 3, "filters": 1, "kernel_size": 2, "padding": "same", "spatial": (3, 3, 3), "channels": 1, "batch": 1,
        "timesteps": 2, "go_backwards": True, "return_sequences": True, "initial_state": True,
    },
    "3d-strides-valid-linear": {
        "rank": 3, "filters": 2, "kernel_size": (2, 1, 2), "strides": (2, 1, 1), "spatial": (4, 2, 3), "channels": 1,
        "batch": 1, "timesteps": 2, "activation": "linear", "recurrent_activation": "hard_sigmoid", "return_state": True,
    },
    "2d-stateful": {
        "rank": 2, "filters": 1, "kernel_size": 2, "padding": "same", "spatial": (3, 4), "channels": 1, "batch": 2,
        "timesteps": 2, "stateful": True, "return_state": True,
    },
}  # fmt: skip

_CALL_KEYS = ("rank", "spatial", "channels", "batch", "timesteps", "mask", "initial_state")


def fd_layer(name: str, dtype: str = "float64", **overrides: Any) -> tuple[Any, np.ndarray, Any, Any, np.random.Generator]:
    """A ConvLSTM (float64 unless ``dtype``) with seeded random weights for FD_CONFIGS[name]
    updated with ``overrides``, and its inputs, initial state and mask; a stateful layer has
    made one call (its carried states non-zero)."""
    config = {**FD_CONFIGS[name], **overrides}
    rng = _rng("fd", name)
    rank, spatial, channels, batch, timesteps = (config.pop(k) for k in _CALL_KEYS[:5])
    masked, with_init = config.pop("mask", False), config.pop("initial_state", False)
    layer = {1: rnnparity.ConvLSTM1D, 2: rnnparity.ConvLSTM2D, 3: rnnparity.ConvLSTM3D}[rank](dtype=dtype, **config)
    window = int(np.prod(layer.kernel_size))
    four = 4 * layer.filters
    weights = [
        rng.standard_normal((*layer.kernel_size, channels, four)) * 1.2 / np.sqrt(window * channels),
        rng.standard_normal((*layer.kernel_size, layer.filters, four)) * 1.2 / np.sqrt(window * layer.filters),
    ]
    if layer.use_bias:
        weights.append(rng.standard_normal(four) * 0.5)
    layer.set_weights(weights)
    first = layer.data_format == "channels_first"
    shape = (batch, timesteps, channels, *spatial) if first else (batch, timesteps, *spatial, channels)
    x = rng.standard_normal(shape).astype(dtype)
    if layer.stateful:
        layer(rng.standard_normal(shape))
        assert layer.states is not None and all(np.any(s != 0) for s in layer.states)
    mask = None
    if masked:
        mask = rng.random((batch, timesteps)) < 0.6
        mask[0, 0] = False
    initial_state = None
    if with_init:
        state = layer.cell.bind(spatial).state_shape(batch)
        initial_state = [(rng.standard_normal(state) * 0.5).astype(dtype) for _ in range(2)]
    return layer, x, initial_state, mask, rng


@pytest.mark.parametrize("name", list(FD_CONFIGS))
def test_conv_lstm_gradients_equal_finite_differences(name: str) -> None:
    layer, x, initial_state, mask, rng = fd_layer(name)
    used = finite_difference_check(layer, x, initial_state, mask, rng)
    assert used <= 1.0, f"finite differences disagree: {used:.3g}x the tolerance"


# --------------------------------------------------------------------------- equivalences, errors (no Keras)
def test_conv_lstm_gradients_of_channels_first_are_the_transposed_channels_last_ones() -> None:
    case = replace(gradient_case(2, 3, "float64", 4, "strides"), return_state=True, initial_state=True, mask=True)
    data = make_data(case)
    output_grads = _output_grads(case, data)
    last = twin_gradients(case, data, output_grads)
    first_case = replace(case, data_format="channels_first")

    def move(a: np.ndarray, axis: int) -> np.ndarray:
        return np.ascontiguousarray(np.moveaxis(a, -1, axis))

    assert data.initial_state is not None
    first_data = ConvData(data.weights, [move(x, 2) for x in data.inputs], [move(s, 1) for s in data.initial_state], data.mask)
    out_axis = 2 if case.return_sequences else 1
    first_grads = [move(g, out_axis if n == 0 else 1) for n, g in enumerate(output_grads)]
    first = twin_gradients(first_case, first_data, first_grads)
    assert_parity(move(last["inputs"], 2), first["inputs"], context="inputs")
    assert_parity([move(s, 1) for s in last["initial_state"]], first["initial_state"], context="initial_state")
    assert_parity(last["weights"], first["weights"], context="weights")


@pytest.mark.parametrize("name", ["1d-dilation-same-first-backwards-softmax", "2d-first-valid-dilation-nobias-zero-output"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_recording_forward_pass_computes_the_twins_bits(name: str, dtype: str) -> None:
    """The backward pass differentiates exactly the numbers the layer computes: the forward
    pass that records the steps returns the call's outputs and states bit for bit."""
    layer, x, initial_state, mask, _ = fd_layer(name, dtype, return_sequences=True, return_state=True)
    expected = layer(x, initial_state=initial_state, mask=mask)
    run = backprop._prepare(layer, x, initial_state, mask, None)
    backprop._forward(run, keep_output=True)
    got = layer.pack_result(run.call)
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(e, g)


def test_conv_lstm_gradients_advance_the_carried_states_as_a_call_does() -> None:
    layer, x, _, _, rng = fd_layer("2d-stateful")
    saved = layer.states
    result = layer(x)
    expected_states = layer.states
    layer.reset_state(saved)
    grads = rnnparity.gradients(layer, x, [rng.standard_normal(np.shape(r)) for r in result])
    assert_parity(expected_states, layer.states, context="carried states after gradients")
    assert grads["initial_state"] is None and len(grads["states"]) == 2 and all(np.any(g != 0) for g in grads["states"])


def test_conv_lstm_gradient_errors_name_the_argument() -> None:
    layer, x, _, _, rng = fd_layer("2d-same-strides-hard-sigmoid-keras2")
    state = layer.cell.bind((4, 5)).state_shape(1)
    assert state == (1, 4, 3, 2)
    with pytest.raises(ValueError, match=r"output_grads\[1\] \(h\) has shape \(1, 4, 5, 2\); expected \(1, 4, 3, 2\)"):
        rnnparity.gradients(layer, x, [np.ones(state), np.ones((1, 4, 5, 2)), np.ones(state)])
    with pytest.raises(TypeError, match=r"output_grads must be a list or tuple like what ConvLSTM2D\(filters=2"):
        rnnparity.gradients(layer, x, np.ones(state))
    custom = rnnparity.ConvLSTM1D(2, 2, activation=lambda z: np.tanh(z) * 2)
    custom.set_weights([rng.standard_normal((2, 1, 8)), rng.standard_normal((2, 2, 8)), rng.standard_normal(8)])
    with pytest.raises(NotImplementedError, match=r"activation='<lambda>' is a custom function"):
        rnnparity.gradients(custom, np.ones((1, 2, 4, 1), "float32"), np.ones((1, 3, 2), "float32"))
    jax = rnnparity.ConvLSTM1D(2, 2, backend="jax")
    jax.set_weights(custom.get_weights())
    with pytest.raises(ValueError, match="backend='jax'"):
        rnnparity.gradients(jax, np.ones((1, 2, 4, 1), "float32"), np.ones((1, 3, 2), "float32"))


def test_backward_memory_is_the_per_step_tape_and_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Peak memory of gradients() on a long sequence: per timestep the LSTM tape's 6 arrays of
    (batch, filters * prod(S_out)) and a record's Python objects, copies of the inputs and of
    output_grads in rows and in Keras's layout, and chunk-sized temporaries that do not grow with T."""
    from rnnparity import rnn
    from rnnparity.suite import bench

    batch, timesteps, spatial, channels, filters = 2, 600, 8, 2, 4
    from rnnparity.conv_lstm import ConvLSTMCell

    monkeypatch.setattr(rnn, "PROJECTION_CHUNK_BYTES", 32 * 2**10)
    monkeypatch.setattr(ConvLSTMCell, "projection_chunk_bytes", 32 * 2**10)  # the ConvLSTM forward's own chunk
    rng = _rng("memory")
    layer = rnnparity.ConvLSTM1D(filters, 3, padding="same", return_sequences=True, dtype="float64")
    layer.set_weights(
        [
            rng.standard_normal((3, channels, 4 * filters)) * 0.4,
            rng.standard_normal((3, filters, 4 * filters)) * 0.3,
            rng.standard_normal(4 * filters) * 0.5,
        ]
    )
    x = rng.standard_normal((batch, timesteps, spatial, channels))
    output_grads = rng.standard_normal((batch, timesteps, spatial, filters))
    peak = bench.peak_memory_mib(lambda: rnnparity.gradients(layer, x, output_grads)) * 2**20
    tape = 6 * timesteps * batch * filters * spatial * 8
    copies = 3 * x.nbytes + 2 * output_grads.nbytes
    bound = tape + 640 * timesteps + copies + 6 * rnn.PROJECTION_CHUNK_BYTES + 64 * 2**10
    assert tape <= peak <= bound, f"peak {peak:.0f} B, tape {tape} B, bound {bound} B"
