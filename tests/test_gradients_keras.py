"""Gradient parity: ``rnnparity.gradients`` against ``tf.GradientTape`` over the Keras layer
with the same weights, for each installed Keras flavour.

Every case feeds seeded random (never constant) weights, inputs, masks, initial states and
output gradients to both, and compares the gradients of the inputs, the initial states,
every weight and (stateful layers) the carried states, array by array with
:func:`gradient_cases.gradient_tolerance`: the per-dtype defaults with the absolute floor
raised by ``rtol`` times the array's largest entry (a gradient entry is a sum over
timesteps and rows; see that function for the measurements). Reproduce one case with
``pytest -k <case id>``.
"""

from __future__ import annotations

import itertools
import zlib
from typing import Any

import numpy as np
import pytest
from conftest import FLAVOR_MAJOR, flavor_params, keras_handle
from gradient_cases import RETURNS, VARIANTS, compare_gradients, default_cases, run_gradient_case, slow_cases

import rnnparity
from rnnparity import activation_grads, activations, tapes
from rnnparity.compare import compare
from rnnparity.suite import keras_adapter
from rnnparity.suite.matrix import random_mask, random_states, random_weights

KERAS_LAYER = {"lstm": "LSTM", "gru": "GRU", "simple_rnn": "SimpleRNN"}
TWIN_LAYER = {"lstm": rnnparity.LSTM, "gru": rnnparity.GRU, "simple_rnn": rnnparity.SimpleRNN}


def _rng(*key: Any) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _all(values: list[tuple], ids: list[str], slow: bool = False) -> list:
    params = [
        p
        for flavor in FLAVOR_MAJOR
        for p in flavor_params(flavor, [(flavor, *v) for v in values], ids=[f"{flavor}-{i}" for i in ids])
    ]
    return [pytest.param(*p.values, marks=[*p.marks, pytest.mark.slow], id=p.id) for p in params] if slow else params


def _matrix_params(cases_for: Any, slow: bool = False) -> list:
    params = []
    for flavor, major in FLAVOR_MAJOR.items():
        cases = cases_for(major)
        params += flavor_params(flavor, [(flavor, c) for c in cases], [f"{flavor}-{c.case_id}" for c in cases])
    if slow:
        params = [pytest.param(*p.values, marks=[*p.marks, pytest.mark.slow], id=p.id) for p in params]
    return params


def _assert_gradients(
    expected: dict[str, Any], actual: dict[str, Any], dtype: str, context: str, check_dtype: bool = True
) -> None:
    for key, result in compare_gradients(expected, actual, dtype, context, check_dtype=check_dtype).items():
        assert result.ok, f"{key}: {result.message}"


def _output_grads(rng: np.random.Generator, result: Any) -> Any:
    if isinstance(result, (list, tuple)):
        return [_output_grads(rng, item) for item in result]
    return rng.normal(0.0, 1.0, np.shape(result)).astype(np.asarray(result).dtype)


# --------------------------------------------------------------------------- the matrix
@pytest.mark.parametrize(("flavor", "case"), _matrix_params(default_cases))
def test_gradients_match_keras(flavor: str, case: Any) -> None:
    result = run_gradient_case(case, keras_handle(flavor))
    assert result.ok, result.message


@pytest.mark.parametrize(("flavor", "case"), _matrix_params(slow_cases, slow=True))
def test_gradients_match_keras_wide(flavor: str, case: Any) -> None:
    result = run_gradient_case(case, keras_handle(flavor))
    assert result.ok, result.message


WIDE_SAMPLE_SIZE = 6  # per flavour, evenly spread over the wide matrix (which runs with -m slow)


def wide_sample(keras_version: int) -> list[Any]:
    cases = slow_cases(keras_version)
    return cases[:: max(1, len(cases) // WIDE_SAMPLE_SIZE)][:WIDE_SAMPLE_SIZE]


@pytest.mark.parametrize(("flavor", "case"), _matrix_params(wide_sample))
def test_gradients_match_keras_wide_sample(flavor: str, case: Any) -> None:
    result = run_gradient_case(case, keras_handle(flavor))
    assert result.ok, result.message


# --------------------------------------------------------------------------- activations
@pytest.mark.parametrize(("flavor", "dtype"), _all([("float32",), ("float64",)], ["float32", "float64"]))
def test_every_activation_derivative_matches_tensorflow(flavor: str, dtype: str) -> None:
    """Each activation's vector-Jacobian product against tf.GradientTape over Keras's own
    activation, on random points and on every kink and clip edge any of them has."""
    import tensorflow as tf

    handle = keras_handle(flavor)
    rng = _rng("activation-derivatives", flavor, dtype)
    edges = np.array([-6.0, -3.0, -2.5, -1.0, -0.5, 0.0, 0.5, 1.0, 2.5, 3.0, 6.0])
    x = np.concatenate([rng.normal(0.0, 3.0, (6, edges.size)), edges[None]]).astype(dtype)
    dy = rng.normal(size=x.shape).astype(dtype)
    for name, function in activations.activations_for(handle.keras_version).items():
        keras_function = handle.module.activations.get(name)
        tensor = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(tensor)
            y = keras_function(tensor)
        expected = tape.gradient(y, tensor, output_gradients=tf.constant(dy)).numpy()
        got = activation_grads.vjp_for(function, name)(x, function(x), dy)
        result = compare(expected, got, dtype=dtype, context=f"{flavor} {name} {dtype}")
        assert result.ok, result.message
        at_edges = compare(expected[-1], got[-1], dtype=dtype, context=f"{flavor} {name} {dtype} edges")
        assert at_edges.tolerance_used <= 0.5, f"{name} at {edges.tolist()}: {at_edges.message}"


# --------------------------------------------------------------------------- hard_sigmoid edges
def _edge_weights(kind: str, keras_version: int, dtype: str) -> tuple[list[np.ndarray], np.ndarray]:
    """Seeded random weights, except that at the first step (zero initial state, the input a
    unit vector picking kernel row 0) two units of the first recurrent_activation gate get
    pre-activations exactly on hard_sigmoid's clip edges (kernel + bias sum exactly)."""
    edge = 3.0 if keras_version == 3 else 2.5
    rng = _rng("edge", kind, keras_version, dtype)
    units, input_dim = 3, 2
    weights = random_weights(rng, kind, units, input_dim, True, True, dtype)
    kernel, bias = weights[0], weights[2]
    input_bias = bias[0] if bias.ndim == 2 else bias
    input_bias[0:2] = 0.5
    if bias.ndim == 2:
        bias[1, 0:2] = 0.25  # GRU reset_after: the recurrent bias adds to the same gate
        kernel[0, 0:2] = [edge - 0.75, -edge - 0.75]
    else:
        kernel[0, 0:2] = [edge - 0.5, -edge - 0.5]
    x = np.zeros((2, 3, input_dim), dtype)
    x[0, 0, 0] = 1.0
    x[1] = rng.normal(0.0, 1.5, (3, input_dim))
    x[0, 1:] = rng.normal(0.0, 1.5, (2, input_dim))
    return weights, x


EDGE_CASES = list(itertools.product(["lstm", "gru"], ["float32", "float64"]))


@pytest.mark.parametrize(("flavor", "kind", "dtype"), _all(EDGE_CASES, [f"{k}-{d}" for k, d in EDGE_CASES]))
def test_hard_sigmoid_gradients_at_the_clip_edges_match_keras(flavor: str, kind: str, dtype: str) -> None:
    """Keras 3 gives gradient 0 at x = +-3 (relu6), Keras 2 gives 0.2 at x = +-2.5
    (clip_by_value); the twin gives each its own, and the other convention fails."""
    handle = keras_handle(flavor)
    weights, x = _edge_weights(kind, handle.keras_version, dtype)
    options = {"units": 3, "recurrent_activation": "hard_sigmoid", "return_sequences": True, "dtype": dtype}
    layer = keras_adapter.build_layer(handle, kind, options, x.shape, weights)
    twin = rnnparity.from_keras(layer)
    output_grads = _rng("edge-grads", kind).normal(size=(2, 3, 3)).astype(dtype)
    expected = keras_adapter.keras_gradients(handle, layer, x, output_grads)
    actual = rnnparity.gradients(twin, x, output_grads)
    _assert_gradients(expected, actual, dtype, f"{flavor} {kind} edges")
    edge = 3.0 if handle.keras_version == 3 else 2.5
    kernel, bias = weights[0], weights[2]
    pre_activation = kernel[0, 0:2] + (bias[0, 0:2] + bias[1, 0:2] if bias.ndim == 2 else bias[0:2])
    assert pre_activation.tolist() == [edge, -edge]

    # The other convention at the edges must fail: Keras 3's rule for a Keras 2 layer and back.
    def other(x_: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
        if handle.keras_version == 3:
            s = x_ + x_.dtype.type(3)
            return np.where((s >= 0) & (s <= 6), dy / x_.dtype.type(6), x_.dtype.type(0))
        u = x_ * x_.dtype.type(0.2) + x_.dtype.type(0.5)
        return np.where((u > 0) & (u < 1), dy, x_.dtype.type(0)) * x_.dtype.type(0.2)

    function = twin.cell.recurrent_activation
    original = activation_grads._VJPS[function]
    try:
        activation_grads._VJPS[function] = other
        wrong = rnnparity.gradients(twin, x, output_grads)
    finally:
        activation_grads._VJPS[function] = original
    assert not all(r.ok for r in compare_gradients(expected, wrong, dtype, "other convention").values())


# --------------------------------------------------------------------------- Bidirectional
MERGE_MODES = ["concat", "sum", "mul", "ave", None]
BIDIRECTIONAL_CASES = list(itertools.product(VARIANTS, MERGE_MODES, RETURNS))


def _bidirectional_id(case: tuple) -> str:
    (kind, reset_after), merge, (seq, state) = case
    gru = "" if kind != "gru" else ("-ra" if reset_after else "-rb")
    return f"{kind}{gru}-{merge}-seq{int(seq)}-state{int(state)}"


@pytest.mark.parametrize(
    ("flavor", "variant", "merge_mode", "returns"),
    _all(BIDIRECTIONAL_CASES, [_bidirectional_id(c) for c in BIDIRECTIONAL_CASES]),
)
def test_bidirectional_gradients_match_keras(
    flavor: str, variant: tuple[str, bool], merge_mode: str | None, returns: tuple[bool, bool]
) -> None:
    """Every layer kind x merge mode x return structure; a mask and initial states in half the
    cases, float64 in the other half, a backward layer of its own (more units, relu) in a third."""
    handle = keras_handle(flavor)
    kind, reset_after = variant
    rng = _rng("bidirectional-grads", variant, merge_mode, returns)
    masked = bool(rng.random() < 0.5)
    dtype = "float32" if masked else "float64"
    own_backward = merge_mode in ("concat", None) and rng.random() < 0.35
    batch, timesteps, input_dim, units = 3, 5, 2, 3
    common: dict[str, Any] = {"return_sequences": returns[0], "return_state": returns[1], "dtype": dtype}
    if kind == "gru":
        common["reset_after"] = reset_after
    backward_options = {**common, "units": units + 2, "activation": "relu", "go_backwards": True} if own_backward else None
    weights = random_weights(rng, kind, units, input_dim, True, reset_after, dtype)
    weights += random_weights(rng, kind, units + 2 if own_backward else units, input_dim, True, reset_after, dtype)
    x = rng.normal(0.0, 1.5, (batch, timesteps, input_dim)).astype(dtype)
    mask = random_mask(rng, "random", batch, timesteps) if masked else None
    initial_state = None
    if masked and not own_backward:
        initial_state = random_states(rng, kind, batch, units, dtype) + random_states(rng, kind, batch, units, dtype)

    layers = handle.module.layers
    cls = getattr(layers, KERAS_LAYER[kind])
    keras_layer = layers.Bidirectional(
        cls(units, **common),
        merge_mode=merge_mode,
        backward_layer=cls(**backward_options) if backward_options else None,
        dtype=dtype,
    )
    keras_layer.build((batch, timesteps, input_dim))
    keras_layer.set_weights(weights)
    twin = rnnparity.from_keras(keras_layer)
    output_grads = _output_grads(rng, twin(x, initial_state=initial_state, mask=mask))
    expected = keras_adapter.keras_gradients(handle, keras_layer, x, output_grads, initial_state, mask)
    actual = rnnparity.gradients(twin, x, output_grads, initial_state=initial_state, mask=mask)
    _assert_gradients(expected, actual, dtype, f"{flavor} Bidirectional {_bidirectional_id((variant, merge_mode, returns))}")


# The dtypes a caller gives the inputs and the initial states of a float32 Bidirectional around
# float64 LSTMs (tf_keras refuses initial states in another dtype than its layers').
MIXED_GIVEN = [("float32", "float64"), ("float64", "float64")]


@pytest.mark.parametrize(
    ("flavor", "inputs_dtype", "states_dtype"),
    _all(MIXED_GIVEN, [f"mixed-dtypes-inputs-{x}-states-{s}" for x, s in MIXED_GIVEN]),
)
def test_bidirectional_gradients_with_a_wrapper_dtype_of_its_own(flavor: str, inputs_dtype: str, states_dtype: str) -> None:
    """A float32 wrapper around float64 layers: the casts Keras inserts are differentiated too,
    and every gradient has Keras's dtype: the weights' the layers' float64; the inputs' (and in
    Keras 3, whose wrapper casts them too, the initial states') rounded to float32 and in the
    dtype the caller gave (``tf.GradientTape`` returns a source's gradient in its own dtype)."""
    handle = keras_handle(flavor)
    rng = _rng("bidirectional-mixed-grads")
    options = {"units": 3, "return_sequences": True, "return_state": True, "dtype": "float64"}
    weights = random_weights(rng, "lstm", 3, 2, dtype="float64") + random_weights(rng, "lstm", 3, 2, dtype="float64")
    x = rng.normal(0.0, 1.5, (2, 5, 2)).astype(inputs_dtype)
    initial_state = random_states(rng, "lstm", 2, 3, states_dtype) + random_states(rng, "lstm", 2, 3, states_dtype)
    keras_layer = handle.module.layers.Bidirectional(handle.module.layers.LSTM(**options), merge_mode="mul")
    keras_layer.build((2, 5, 2))
    keras_layer.set_weights(weights)
    twin = rnnparity.from_keras(keras_layer)
    output_grads = _output_grads(rng, twin(x, initial_state=initial_state))
    expected = keras_adapter.keras_gradients(handle, keras_layer, x, output_grads, initial_state)
    actual = rnnparity.gradients(twin, x, output_grads, initial_state=initial_state)
    _assert_gradients(expected, actual, "float32", f"{flavor} mixed dtypes, inputs {inputs_dtype}, states {states_dtype}")
    assert actual["inputs"].dtype == np.dtype(inputs_dtype)
    assert {g.dtype for g in actual["initial_state"]} == {np.dtype(states_dtype)}
    assert {g.dtype for g in actual["weights"]} == {np.dtype("float64")}
    # Through the wrapper's float32: float32 values only, as Keras's (Keras 2 does not cast the states).
    through_float32 = [actual["inputs"], *(actual["initial_state"] if handle.keras_version == 3 else [])]
    assert all(np.array_equal(g, g.astype(np.float32)) for g in through_float32)


class _CarriedStatesOf:
    """A Keras Bidirectional seen by keras_gradients with ``states`` = its layers' carried
    states, forward then backward (tf_keras's wrapper has no ``states`` of its own)."""

    def __init__(self, wrapper: Any) -> None:
        self.wrapper = wrapper
        self.trainable_weights = wrapper.trainable_weights
        self.states = [*wrapper.forward_layer.states, *wrapper.backward_layer.states]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.wrapper(*args, **kwargs)


@pytest.mark.parametrize("flavor", _all([()], ["stateful"]))
def test_bidirectional_stateful_gradients_match_keras(flavor: str) -> None:
    handle = keras_handle(flavor)
    rng = _rng("bidirectional-stateful-grads")
    options = {"units": 3, "return_sequences": True, "stateful": True, "dtype": "float64"}
    weights = random_weights(rng, "gru", 3, 2, dtype="float64") + random_weights(rng, "gru", 3, 2, dtype="float64")
    keras_layer = handle.module.layers.Bidirectional(handle.module.layers.GRU(**options), dtype="float64")
    keras_layer.build((2, 4, 2))
    keras_layer.set_weights(weights)
    twin = rnnparity.from_keras(keras_layer)
    first = rng.normal(0.0, 1.5, (2, 4, 2))
    keras_adapter.call_layer(handle, keras_layer, first)
    twin(first)
    x = rng.normal(0.0, 1.5, (2, 4, 2))
    output_grads = rng.normal(size=(2, 4, 6))
    # The gradient w.r.t. the carried states too: the wrapper's own ``states`` where Keras has
    # them (Keras 3), else (tf_keras) its two layers' states, forward first, as the twin's.
    expected = keras_adapter.keras_gradients(handle, _CarriedStatesOf(keras_layer), x, output_grads, watch_states=True)
    actual = rnnparity.gradients(twin, x, output_grads)
    assert len(actual["states"]) == len(expected["states"]) == 2
    assert not any(np.all(g == 0) for g in actual["states"])
    _assert_gradients(expected, actual, "float64", f"{flavor} Bidirectional stateful")
    carried = [s for w in (keras_layer.forward_layer, keras_layer.backward_layer) for s in keras_adapter.layer_states(w)]
    assert twin.states is not None
    assert compare(carried, twin.states, check_container=False).ok


# --------------------------------------------------------------------------- RNN(cell), stacks
STACKS: dict[str, list[tuple[str, int, dict[str, Any]]]] = {
    "lstm": [("lstm", 4, {})],
    "lstm+gru": [("lstm", 4, {}), ("gru", 3, {"reset_after": True})],
    "gru_rb+simple+lstm": [
        ("gru", 5, {"reset_after": False}),
        ("simple_rnn", 2, {"activation": "relu"}),
        ("lstm", 3, {"recurrent_activation": "hard_sigmoid"}),
    ],
}
STACK_CASES = list(itertools.product(STACKS, [(True, True), (False, True)], ["mask", "initial_state+float64"]))


@pytest.mark.parametrize(
    ("flavor", "stack", "returns", "extra"),
    _all(STACK_CASES, [f"{s}-seq{int(r[0])}-st{int(r[1])}-{e}" for s, r, e in STACK_CASES]),
)
def test_rnn_of_cells_gradients_match_keras(flavor: str, stack: str, returns: tuple[bool, bool], extra: str) -> None:
    handle = keras_handle(flavor)
    spec = STACKS[stack]
    single = len(spec) == 1
    dtype = "float64" if "float64" in extra else "float32"
    rng = _rng("rnn-grads", stack, returns, extra)
    batch, timesteps, input_dim = 3, 5, 4
    layers = handle.module.layers
    keras_cells, weights, states = [], [], []
    dim = input_dim
    for kind, units, options in spec:
        keras_cells.append(getattr(layers, f"{KERAS_LAYER[kind]}Cell")(units, dtype=dtype, **options))
        weights += random_weights(rng, kind, units, dim, True, options.get("reset_after", True), dtype)
        states.append(random_states(rng, kind, batch, units, dtype))
        dim = units
    cell = keras_cells[0] if single else layers.StackedRNNCells(keras_cells, dtype=dtype)
    keras_layer = layers.RNN(cell, return_sequences=returns[0], return_state=returns[1], dtype=dtype)
    keras_layer.build((batch, timesteps, input_dim))
    keras_layer.set_weights(weights)
    twin = rnnparity.from_keras(keras_layer)
    x = rng.normal(0.0, 1.5, (batch, timesteps, input_dim)).astype(dtype)
    mask = random_mask(rng, "random", batch, timesteps) if "mask" in extra else None
    initial_state = (states[0] if single else states) if "initial_state" in extra else None
    output_grads = _output_grads(rng, twin(x, initial_state=initial_state, mask=mask))
    expected = keras_adapter.keras_gradients(handle, keras_layer, x, output_grads, initial_state, mask)
    actual = rnnparity.gradients(twin, x, output_grads, initial_state=initial_state, mask=mask)
    _assert_gradients(expected, actual, dtype, f"{flavor} RNN {stack} {extra}")


# --------------------------------------------------------------------------- encoder-decoder
@pytest.mark.parametrize("flavor", _all([()], ["encoder-decoder"]))
def test_encoder_decoder_gradients_match_keras(flavor: str) -> None:
    """Gradients flow into the encoder only through the h and c it returns."""
    import tensorflow as tf

    handle = keras_handle(flavor)
    rng = _rng("encoder-decoder-grads")
    layers = handle.module.layers
    encoder = layers.LSTM(4, return_state=True, dtype="float64")
    decoder = layers.LSTM(4, return_sequences=True, dtype="float64")
    encoder.build((2, 6, 3))
    decoder.build((2, 5, 2))
    encoder.set_weights(random_weights(rng, "lstm", 4, 3, dtype="float64"))
    decoder.set_weights(random_weights(rng, "lstm", 4, 2, dtype="float64"))
    source, target, d_out = rng.normal(size=(2, 6, 3)), rng.normal(size=(2, 5, 2)), rng.normal(size=(2, 5, 4))
    source_t = tf.constant(source)
    with tf.GradientTape() as tape:
        tape.watch(source_t)
        _, h, c = encoder(source_t)
        output = decoder(tf.constant(target), initial_state=[h, c])
    weights = [getattr(w, "value", w) if handle.keras_version == 3 else w for w in encoder.trainable_weights]
    expected = tape.gradient(output, [source_t, *weights], output_gradients=tf.constant(d_out))

    twin_encoder, twin_decoder = rnnparity.from_keras(encoder), rnnparity.from_keras(decoder)
    _, h, c = twin_encoder(source)
    d_decoder = rnnparity.gradients(twin_decoder, target, d_out, initial_state=[h, c])
    d_encoder = rnnparity.gradients(twin_encoder, source, [None, *d_decoder["initial_state"]])
    got = [d_encoder["inputs"], *d_encoder["weights"]]
    for name, e, g in zip(["inputs", "kernel", "recurrent_kernel", "bias"], expected, got):
        assert compare(e.numpy(), g, context=name).ok, compare(e.numpy(), g, context=name).message


# --------------------------------------------------------------------------- the check can fail
@pytest.mark.parametrize("flavor", _all([()], ["negative"]))
def test_gradient_parity_catches_deliberate_errors(flavor: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Gate gradients in the wrong columns, a masked step that lets the gradient through,
    ignoring go_backwards, and the i/f gates swapped in the backward pass must each fail."""
    handle = keras_handle(flavor)
    rng = _rng("gradient-negative")
    batch, timesteps, input_dim, units = 3, 6, 2, 3
    weights = random_weights(rng, "lstm", units, input_dim)
    options = {"units": units, "return_sequences": True, "return_state": True}
    layer = keras_adapter.build_layer(handle, "lstm", options, (batch, timesteps, input_dim), weights)
    x = rng.normal(0.0, 1.5, (batch, timesteps, input_dim)).astype(np.float32)
    mask = random_mask(rng, "random", batch, timesteps)
    twin = rnnparity.from_keras(layer)
    output_grads = _output_grads(rng, twin(x, mask=mask))
    expected = keras_adapter.keras_gradients(handle, layer, x, output_grads, mask=mask)

    def fails(actual: dict[str, Any]) -> bool:
        return not all(r.ok for r in compare_gradients(expected, actual, "float32", "negative").values())

    assert not fails(rnnparity.gradients(twin, x, output_grads, mask=mask))
    assert fails(rnnparity.gradients(twin, x, output_grads))  # the mask ignored
    backwards = rnnparity.from_keras(layer)
    backwards.go_backwards = True
    assert fails(rnnparity.gradients(backwards, x, output_grads, mask=mask))

    with monkeypatch.context() as patch:  # weight gradients left in step order (i, f, o, c)
        patch.setattr(tapes.CellTape, "_keras_layout", lambda self, gates: np.concatenate(list(gates), axis=-1))
        assert fails(rnnparity.gradients(twin, x, output_grads, mask=mask))

    original = tapes.LSTMTape.backward

    def swapped_if(self: Any, t: int, d_output: Any, d_states: Any) -> Any:
        pre = self.pre[:, t]
        pre[[0, 1]] = pre[[1, 0]]  # differentiate as if i and f were swapped
        return original(self, t, d_output, d_states)

    with monkeypatch.context() as patch:
        patch.setattr(tapes.LSTMTape, "backward", swapped_if)
        assert fails(rnnparity.gradients(twin, x, output_grads, mask=mask))


@pytest.mark.parametrize("flavor", _all([()], ["nan-at-a-masked-step"]))
def test_a_nan_at_a_masked_step_reaches_the_gradients_as_in_keras(flavor: str) -> None:
    """A NaN fed at a masked step never reaches the outputs, but tf.where's gradient sends
    zero through the masked branch and 0 * NaN is NaN: in Keras it reaches the weights'
    gradients and that row's input gradients. The twin gives the same NaNs, and the same
    numbers everywhere else."""
    handle = keras_handle(flavor)
    rng = _rng("nan-masked")
    weights = random_weights(rng, "lstm", 3, 2)
    layer = keras_adapter.build_layer(handle, "lstm", {"units": 3, "return_sequences": True}, (2, 4, 2), weights)
    x = rng.normal(size=(2, 4, 2)).astype(np.float32)
    x[1, 2] = np.nan
    mask = np.ones((2, 4), bool)
    mask[1, 2] = False
    output_grads = rng.normal(size=(2, 4, 3)).astype(np.float32)
    expected = keras_adapter.keras_gradients(handle, layer, x, output_grads, mask=mask)
    actual = rnnparity.gradients(rnnparity.from_keras(layer), x, output_grads, mask=mask)
    assert np.isnan(expected["weights"][0]).any() and np.isnan(expected["inputs"][1]).any()
    assert not np.isnan(expected["inputs"][0]).any()
    _assert_gradients(expected, actual, "float32", f"{flavor} NaN at a masked step")
