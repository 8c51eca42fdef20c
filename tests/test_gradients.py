"""rnnparity.gradients on its own (no Keras): finite differences in float64, the recording
forward pass against the twin's forward pass, equivalences, the float32 conditioning
guard, hard_sigmoid's clip edges, errors, and the memory bound."""

from __future__ import annotations

import itertools
import zlib
from typing import Any

import numpy as np
import pytest
from gradient_cases import compare_gradients, default_cases, gradient_tolerance, slow_cases, twin_gradients

import rnnparity
from rnnparity import activation_grads, activations, backprop, rnn
from rnnparity.compare import assert_parity
from rnnparity.rnn import flatten_nested
from rnnparity.suite import bench
from rnnparity.suite.matrix import random_mask, random_states, random_weights

VARIANTS = [("lstm", True), ("gru", True), ("gru", False), ("simple_rnn", True)]
TWIN = {"lstm": rnnparity.LSTM, "gru": rnnparity.GRU, "simple_rnn": rnnparity.SimpleRNN}
CELL = {"lstm": rnnparity.LSTMCell, "gru": rnnparity.GRUCell, "simple_rnn": rnnparity.SimpleRNNCell}
RETURNS = [(False, False), (True, False), (False, True), (True, True)]


def _rng(*key: Any) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _variant_id(kind: str, reset_after: bool) -> str:
    return kind if kind != "gru" else f"gru-{'ra' if reset_after else 'rb'}"


def _layer(kind: str, reset_after: bool, units: int, input_dim: int, rng: np.random.Generator, **options: Any) -> Any:
    if kind == "gru":
        options["reset_after"] = reset_after
    layer = TWIN[kind](units, **options)
    layer.set_weights(random_weights(rng, kind, units, input_dim, options.get("use_bias", True), reset_after, layer.dtype))
    return layer


def _leaves(value: Any) -> list[np.ndarray]:
    return [leaf for leaf in flatten_nested(value) if leaf is not None]


def _random_output_grads(rng: np.random.Generator, result: Any) -> Any:
    if isinstance(result, (list, tuple)):
        return [_random_output_grads(rng, item) for item in result]
    return rng.normal(0.0, 1.0, np.shape(result)).astype(result.dtype)


# --------------------------------------------------------------------------- finite differences
# Central differences of L = sum(output * output_grads) in float64, step 1e-6: truncation
# error ~1e-12 * L''' and rounding ~1e-16 * |L| / 1e-6 ~ 1e-9 here. An entry passes when
# |fd - grad| <= 1e-7 + 1e-6 * |grad| (measured worst: a few 1e-9).
FD_STEP = 1e-6
FD_ATOL, FD_RTOL = 1e-7, 1e-6
FD_SAMPLES = 6  # entries per array, chosen at random (seeded), in arrays larger than:
FD_EVERY_ENTRY_UP_TO = 64  # arrays of at most this many entries are checked entry by entry


def finite_difference_check(
    layer: Any, inputs: np.ndarray, initial_state: Any, mask: Any, rng: np.random.Generator, every_entry: bool = True
) -> float:
    """Compare ``rnnparity.gradients`` with central differences on the inputs, every weight,
    every initial state and (stateful layers) every carried state: every entry of an array of
    at most ``FD_EVERY_ENTRY_UP_TO`` entries, ``FD_SAMPLES`` random ones of a larger array
    (of every array with ``every_entry=False``); returns the worst ``|fd - grad| / (FD_ATOL + FD_RTOL * |grad|)``."""
    saved = None if not getattr(layer, "stateful", False) else layer.states

    def run() -> Any:
        if saved is not None:
            layer.reset_state(saved)
        return layer(inputs, initial_state=initial_state, mask=mask)

    output_grads = _random_output_grads(rng, run())

    def loss() -> float:
        result = run()
        return sum(float(np.sum(o * g)) for o, g in zip(_leaves(result), _leaves(output_grads)))

    if saved is not None:
        layer.reset_state(saved)
    grads = rnnparity.gradients(layer, inputs, output_grads, initial_state=initial_state, mask=mask)
    weights = layer.get_weights()
    targets: list[tuple[np.ndarray, np.ndarray, Any]] = [(inputs, grads["inputs"], None)]
    targets += [(w, g, "weights") for w, g in zip(weights, grads["weights"])]
    if initial_state is not None:
        targets += list(zip(_leaves(initial_state), _leaves(grads["initial_state"]), itertools.repeat(None)))
    if saved is not None:
        # run() restarts from ``saved``, so perturbing its arrays perturbs the carried states.
        assert len(grads["states"]) == len(saved)
        targets += list(zip(saved, grads["states"], itertools.repeat(None)))
    worst = 0.0
    for array, grad, kind in targets:
        assert grad.shape == array.shape
        if every_entry and array.size <= FD_EVERY_ENTRY_UP_TO:
            indices = list(np.ndindex(array.shape))
        else:
            indices = [tuple(int(rng.integers(0, n)) for n in array.shape) for _ in range(FD_SAMPLES)]
        for index in indices:
            original = array[index]
            values = []
            for sign in (1, -1):
                array[index] = original + sign * FD_STEP
                if kind == "weights":
                    layer.set_weights(weights)
                values.append(loss())
            array[index] = original
            if kind == "weights":
                layer.set_weights(weights)
            fd = (values[0] - values[1]) / (2 * FD_STEP)
            worst = max(worst, abs(fd - grad[index]) / (FD_ATOL + FD_RTOL * abs(grad[index])))
    return worst


FD_GRID = list(itertools.product(VARIANTS, RETURNS, ("none", "right_padded", "random", "zero_output"), (False, True)))


@pytest.mark.parametrize(
    ("variant", "returns", "mask_style", "go_backwards"),
    FD_GRID,
    ids=[f"{_variant_id(*v)}-seq{int(r[0])}-st{int(r[1])}-{m}-{'back' if b else 'fwd'}" for v, r, m, b in FD_GRID],
)
def test_gradients_equal_finite_differences(
    variant: tuple[str, bool], returns: tuple[bool, bool], mask_style: str, go_backwards: bool
) -> None:
    kind, reset_after = variant
    rng = _rng("fd", variant, returns, mask_style, go_backwards)
    batch, timesteps, input_dim, units = 3, 5, 2, 3
    layer = _layer(
        kind,
        reset_after,
        units,
        input_dim,
        rng,
        return_sequences=returns[0],
        return_state=returns[1],
        go_backwards=go_backwards,
        zero_output_for_mask=mask_style == "zero_output",
        use_bias=bool(rng.random() < 0.75),
        dtype="float64",
    )
    x = rng.normal(0.0, 1.5, (batch, timesteps, input_dim))
    mask = random_mask(rng, "right_padded" if mask_style == "right_padded" else "random", batch, timesteps)
    initial_state = random_states(rng, kind, batch, units, "float64") if rng.random() < 0.5 else None
    # Every entry going forwards; samples going backwards (the grid's cost stays near its old one).
    used = finite_difference_check(layer, x, initial_state, None if mask_style == "none" else mask, rng, not go_backwards)
    assert used <= 1.0, f"finite differences disagree: {used:.3g}x the tolerance"


FD_ACTIVATIONS = sorted(set(activations.KERAS2_ACTIVATIONS) | set(activations.KERAS3_ACTIVATIONS))


@pytest.mark.parametrize("name", FD_ACTIVATIONS)
@pytest.mark.parametrize("role", ["activation", "recurrent_activation"])
def test_every_activation_equals_finite_differences(name: str, role: str) -> None:
    version = 3 if name in activations.KERAS3_ACTIVATIONS else 2
    kinds = [VARIANTS[zlib.crc32(name.encode()) % 4]] if role == "activation" else [VARIANTS[0], VARIANTS[2]]
    for kind, reset_after in kinds:
        rng = _rng("fd-activation", name, role, kind, reset_after)
        options = {role: name, "return_sequences": True, "return_state": True, "dtype": "float64", "keras_version": version}
        layer = _layer(kind, reset_after, 4, 3, rng, **options)
        x = rng.normal(0.0, 1.0, (3, 4, 3))
        used = finite_difference_check(layer, x, None, random_mask(rng, "random", 3, 4), rng)
        assert used <= 1.0, f"{name} as {role} of {kind}: {used:.3g}x the tolerance"


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("variant", VARIANTS, ids=[_variant_id(*v) for v in VARIANTS])
def test_bidirectional_gradients_equal_finite_differences(variant: tuple[str, bool], merge_mode: str | None) -> None:
    kind, reset_after = variant
    rng = _rng("fd-bidirectional", variant, merge_mode)
    inner = _layer(kind, reset_after, 3, 2, rng, return_sequences=True, return_state=True, dtype="float64")
    layer = rnnparity.Bidirectional(inner, merge_mode=merge_mode)
    layer.dtype = np.dtype("float64")
    layer.set_weights(inner.get_weights() + random_weights(rng, kind, 3, 2, True, reset_after, "float64"))
    x = rng.normal(0.0, 1.5, (3, 5, 2))
    initial_state = random_states(rng, kind, 3, 3, "float64") + random_states(rng, kind, 3, 3, "float64")
    used = finite_difference_check(layer, x, initial_state, random_mask(rng, "random", 3, 5), rng)
    assert used <= 1.0, f"{used:.3g}x the tolerance"


@pytest.mark.parametrize("variant", VARIANTS, ids=[_variant_id(*v) for v in VARIANTS])
def test_stateful_bidirectional_gradients_equal_finite_differences(variant: tuple[str, bool]) -> None:
    """Every carried state of both directions is a source too (its gradient included)."""
    kind, reset_after = variant
    rng = _rng("fd-bidirectional-stateful", variant)
    inner = _layer(kind, reset_after, 3, 2, rng, return_sequences=True, stateful=True, dtype="float64")
    layer = rnnparity.Bidirectional(inner, merge_mode="concat")
    layer.dtype = np.dtype("float64")
    layer.set_weights(inner.get_weights() + random_weights(rng, kind, 3, 2, True, reset_after, "float64"))
    layer(rng.normal(0.0, 1.5, (2, 4, 2)))  # carried states are now non-zero
    assert layer.states is not None and all(np.any(s != 0) for s in layer.states)
    used = finite_difference_check(layer, rng.normal(0.0, 1.5, (2, 4, 2)), None, random_mask(rng, "random", 2, 4), rng)
    assert used <= 1.0, f"{used:.3g}x the tolerance"


STACKS = {
    "lstm": [("lstm", 3, {})],
    "lstm+gru": [("lstm", 3, {}), ("gru", 2, {"reset_after": True})],
    "gru_rb+simple+lstm": [("gru", 4, {"reset_after": False}), ("simple_rnn", 2, {"activation": "relu"}), ("lstm", 3, {})],
}


def _stack(name: str, rng: np.random.Generator, input_dim: int, dtype: str = "float64", **options: Any) -> Any:
    cells, weights = [], []
    dim = input_dim
    for kind, units, cell_options in STACKS[name]:
        cells.append(CELL[kind](units, dtype=dtype, **cell_options))
        weights += random_weights(rng, kind, units, dim, True, cell_options.get("reset_after", True), dtype)
        dim = units
    layer = rnnparity.RNN(cells if len(cells) > 1 else cells[0], **options)
    layer.set_weights(weights)
    return layer


@pytest.mark.parametrize("name", list(STACKS))
@pytest.mark.parametrize("returns", RETURNS, ids=[f"seq{int(s)}-st{int(t)}" for s, t in RETURNS])
def test_rnn_and_stacked_cells_equal_finite_differences(name: str, returns: tuple[bool, bool]) -> None:
    rng = _rng("fd-stack", name, returns)
    layer = _stack(name, rng, 2, return_sequences=returns[0], return_state=returns[1], go_backwards=bool(rng.random() < 0.5))
    x = rng.normal(0.0, 1.5, (3, 5, 2))
    states = [random_states(rng, kind, 3, units, "float64") for kind, units, _ in STACKS[name]]
    initial_state = states[0] if len(states) == 1 else states
    used = finite_difference_check(layer, x, initial_state, random_mask(rng, "random", 3, 5), rng)
    assert used <= 1.0, f"{used:.3g}x the tolerance"


@pytest.mark.parametrize("keras_version", [2, 3])
@pytest.mark.parametrize("variant", VARIANTS, ids=[_variant_id(*v) for v in VARIANTS])
def test_stateful_and_time_major_gradients_equal_finite_differences(variant: tuple[str, bool], keras_version: int) -> None:
    kind, reset_after = variant
    rng = _rng("fd-stateful", variant, keras_version)
    options = {"return_sequences": True, "return_state": True, "stateful": True, "dtype": "float64"}
    layer = _layer(kind, reset_after, 3, 2, rng, keras_version=keras_version, **options)
    layer(rng.normal(0.0, 1.5, (2, 4, 2)))  # carried states are now non-zero
    assert finite_difference_check(layer, rng.normal(0.0, 1.5, (2, 4, 2)), None, None, rng) <= 1.0
    if keras_version == 2:
        time_major = _layer(kind, reset_after, 3, 2, rng, keras_version=2, time_major=True, **{**options, "stateful": False})
        x = rng.normal(0.0, 1.5, (4, 2, 2))
        mask = random_mask(rng, "random", 2, 4)
        assert mask is not None
        assert finite_difference_check(time_major, x, random_states(rng, kind, 2, 3, "float64"), mask.T, rng) <= 1.0


# --------------------------------------------------------------------------- the recording pass
RECORDING_GRID = list(
    itertools.product(VARIANTS, ("float32", "float64"), ("tanh", "relu", "softmax"), ("sigmoid", "hard_sigmoid"))
)


@pytest.mark.parametrize(
    ("variant", "dtype", "activation", "recurrent_activation"),
    RECORDING_GRID,
    ids=[f"{_variant_id(*v)}-{d}-{a}-{r}" for v, d, a, r in RECORDING_GRID],
)
def test_recording_forward_pass_computes_the_twins_bits(
    variant: tuple[str, bool], dtype: str, activation: str, recurrent_activation: str
) -> None:
    """The backward pass differentiates exactly the numbers the twin computes: the recorded
    forward pass reproduces its outputs and states bit for bit (masks, go_backwards)."""
    kind, reset_after = variant
    rng = _rng("recording", variant, dtype, activation, recurrent_activation)
    options: dict[str, Any] = {"activation": activation, "return_sequences": True, "return_state": True, "dtype": dtype}
    if kind != "simple_rnn":
        options["recurrent_activation"] = recurrent_activation
    for go_backwards in (False, True):
        layer = _layer(kind, reset_after, 5, 3, rng, go_backwards=go_backwards, **options)
        x = rng.normal(0.0, 2.0, (4, 7, 3)).astype(dtype)
        mask = random_mask(rng, "random", 4, 7)
        init = random_states(rng, kind, 4, 5, dtype)
        expected = layer(x, initial_state=init, mask=mask)
        run = backprop._prepare(layer, x, init, mask, None)
        backprop._forward(run, keep_output=True)
        np.testing.assert_array_equal(run.call.output, expected[0])
        for state, expected_state in zip(run.call.final_states, expected[1:]):
            np.testing.assert_array_equal(state, expected_state)


def test_recording_forward_pass_of_a_stack_computes_the_twins_bits() -> None:
    rng = _rng("recording-stack")
    layer = _stack("gru_rb+simple+lstm", rng, 3, dtype="float32", return_sequences=True, return_state=True)
    x = rng.normal(0.0, 2.0, (3, 6, 3)).astype(np.float32)
    mask = random_mask(rng, "random", 3, 6)
    expected = layer(x, mask=mask)
    run = backprop._prepare(layer, x, None, mask, None)
    backprop._forward(run, keep_output=True)
    np.testing.assert_array_equal(run.call.output, expected[0])
    for state, expected_state in zip(run.call.final_states, flatten_nested(expected[1:])):
        np.testing.assert_array_equal(state, expected_state)


# --------------------------------------------------------------------------- equivalences
@pytest.mark.parametrize("variant", VARIANTS, ids=[_variant_id(*v) for v in VARIANTS])
def test_gradient_equivalences(variant: tuple[str, bool]) -> None:
    """go_backwards == reversed inputs (and reversed output gradients); an all-True mask == no
    mask; time-major == batch-major; RNN(cell) == the layer; a stateful call from carried
    states == a call given them as initial_state."""
    kind, reset_after = variant
    rng = _rng("equivalences", variant)
    weights = random_weights(rng, kind, 3, 2, True, reset_after, "float64")
    x = rng.normal(0.0, 1.5, (3, 6, 2))
    init = random_states(rng, kind, 3, 3, "float64")

    def build(**options: Any) -> Any:
        if kind == "gru":
            options["reset_after"] = reset_after
        layer = TWIN[kind](3, return_sequences=True, return_state=True, dtype="float64", **options)
        layer.set_weights(weights)
        return layer

    forward = build()
    output_grads = _random_output_grads(rng, forward(x, initial_state=init))
    given = [a.copy() for a in [x, *init, *output_grads]]
    plain = rnnparity.gradients(forward, x, output_grads, initial_state=init)
    for before, after in zip(given, [x, *init, *output_grads]):
        np.testing.assert_array_equal(before, after)  # the caller's arrays are never modified

    backwards = rnnparity.gradients(build(go_backwards=True), x[:, ::-1], output_grads, initial_state=init)
    assert_parity(plain["inputs"], backwards["inputs"][:, ::-1], context="go_backwards inputs")
    assert_parity(plain["weights"], backwards["weights"], context="go_backwards weights")
    assert_parity(plain["initial_state"], backwards["initial_state"], context="go_backwards states")

    all_true = rnnparity.gradients(forward, x, output_grads, initial_state=init, mask=np.ones((3, 6), bool))
    for key in ("inputs", "weights", "initial_state"):
        np.testing.assert_array_equal(
            np.concatenate([np.ravel(a) for a in _leaves(plain[key])]),
            np.concatenate([np.ravel(a) for a in _leaves(all_true[key])]),
        )

    time_major = TWIN[kind](
        3,
        return_sequences=True,
        return_state=True,
        dtype="float64",
        keras_version=2,
        time_major=True,
        **({"reset_after": reset_after} if kind == "gru" else {}),
    )
    time_major.set_weights(weights)
    tm_grads = [output_grads[0].transpose(1, 0, 2), *output_grads[1:]]
    transposed = rnnparity.gradients(time_major, x.transpose(1, 0, 2), tm_grads, initial_state=init)
    assert_parity(plain["inputs"], transposed["inputs"].transpose(1, 0, 2), context="time_major inputs")
    assert_parity(plain["weights"], transposed["weights"], context="time_major weights")

    cell_options = {"reset_after": reset_after} if kind == "gru" else {}
    generic = rnnparity.RNN(CELL[kind](3, dtype="float64", **cell_options), return_sequences=True, return_state=True)
    generic.set_weights(weights)
    via_rnn = rnnparity.gradients(generic, x, output_grads, initial_state=init)
    for key in ("inputs", "weights", "initial_state"):
        assert_parity(plain[key], via_rnn[key], context=f"RNN(cell) {key}")

    stateful = build(stateful=True)
    stateful.reset_state(init)
    carried = rnnparity.gradients(stateful, x, output_grads)
    assert carried["initial_state"] is None
    assert_parity(plain["initial_state"], carried["states"], context="carried states")
    assert_parity(plain["weights"], carried["weights"], context="stateful weights")
    assert_parity(list(forward(x, initial_state=init)[1:]), stateful.states, context="gradients advance the carried states")


@pytest.mark.parametrize("variant", VARIANTS, ids=[_variant_id(*v) for v in VARIANTS])
def test_bidirectional_gradients_are_its_two_layers_gradients(variant: tuple[str, bool]) -> None:
    kind, reset_after = variant
    rng = _rng("bidirectional-parts", variant)
    inner = _layer(kind, reset_after, 3, 2, rng, return_sequences=True, return_state=True, dtype="float64")
    wrapper = rnnparity.Bidirectional(inner, merge_mode="sum", dtype="float64")
    wrapper.set_weights(inner.get_weights() + random_weights(rng, kind, 3, 2, True, reset_after, "float64"))
    x = rng.normal(0.0, 1.5, (3, 5, 2))
    mask = random_mask(rng, "random", 3, 5)
    output_grads = _random_output_grads(rng, wrapper(x, mask=mask))
    grads = rnnparity.gradients(wrapper, x, output_grads, mask=mask)
    n = len(output_grads[1:]) // 2
    forward = rnnparity.gradients(wrapper.forward_layer, x, [output_grads[0], *output_grads[1 : 1 + n]], mask=mask)
    backward = rnnparity.gradients(wrapper.backward_layer, x, [output_grads[0][:, ::-1], *output_grads[1 + n :]], mask=mask)
    assert_parity(forward["inputs"] + backward["inputs"], grads["inputs"])
    assert_parity(forward["weights"] + backward["weights"], grads["weights"])


def test_encoder_decoder_gradients_flow_through_the_states() -> None:
    """The decoder's initial-state gradients are the encoder's state gradients."""
    rng = _rng("encoder-decoder")
    encoder = _layer("lstm", True, 4, 3, rng, return_state=True, dtype="float64")
    decoder = _layer("lstm", True, 4, 2, rng, return_sequences=True, dtype="float64")
    source, target = rng.normal(size=(2, 6, 3)), rng.normal(size=(2, 5, 2))
    d_out = rng.normal(size=(2, 5, 4))

    def loss(src: np.ndarray) -> float:
        _, h, c = encoder(src)
        return float(np.sum(decoder(target, initial_state=[h, c]) * d_out))

    _, h, c = encoder(source)
    d_decoder = rnnparity.gradients(decoder, target, d_out, initial_state=[h, c])
    d_encoder = rnnparity.gradients(encoder, source, [None, *d_decoder["initial_state"]])
    step = np.zeros_like(source)
    step[1, 2, 0] = FD_STEP
    fd = (loss(source + step) - loss(source - step)) / (2 * FD_STEP)
    assert abs(fd - d_encoder["inputs"][1, 2, 0]) <= FD_ATOL + FD_RTOL * abs(fd)


# --------------------------------------------------------------------------- float32 decidability
FLOAT32 = [c for v in (2, 3) for c in default_cases(v) if c.dtype == "float32"]


@pytest.mark.parametrize("chunk", range(4))
def test_float32_gradient_cases_are_well_conditioned(chunk: int) -> None:
    """A float32 gradient case proves parity only if float32 rounding cannot explain a
    mismatch: the twin's float32 gradients agree with its float64 gradients (same numbers)
    within half the gradient tolerance, leaving the other half for Keras's rounding."""
    for case in FLOAT32[chunk::4]:
        low, high = twin_gradients(case), twin_gradients(case, dtype="float64")
        for key, result in compare_gradients(high, low, "float32", case.case_id, share=0.5, check_dtype=False).items():
            assert result.ok, f"{key}: {result.message}"


@pytest.mark.slow
def test_float32_wide_gradient_cases_are_well_conditioned() -> None:
    for case in [c for v in (2, 3) for c in slow_cases(v) if c.dtype == "float32"]:
        low, high = twin_gradients(case), twin_gradients(case, dtype="float64")
        for key, result in compare_gradients(high, low, "float32", case.case_id, share=0.5, check_dtype=False).items():
            assert result.ok, f"{key}: {result.message}"


def test_gradient_tolerance_raises_the_floor_by_the_largest_entry() -> None:
    assert gradient_tolerance(np.array([0.02, -3.0], np.float32), "float32") == pytest.approx((1e-5, 1e-6 + 3e-5))
    assert gradient_tolerance(np.array([np.inf, 0.5]), "float64") == pytest.approx((1e-10, 1e-12 + 0.5e-10))


# --------------------------------------------------------------------------- hard_sigmoid edges
def _edge_lstm(keras_version: int, edge: float, dtype: str = "float64") -> tuple[Any, np.ndarray]:
    """An LSTM whose input-gate pre-activations at the first step are exactly ``edge`` and
    ``-edge`` (units 0 and 1): zero initial state, the input a unit vector picking kernel
    row 0, and kernel + bias summing exactly. Everything else is seeded random."""
    rng = _rng("edge-lstm", keras_version, edge)
    layer = rnnparity.LSTM(3, recurrent_activation="hard_sigmoid", keras_version=keras_version, dtype=dtype)
    kernel, recurrent, bias = random_weights(rng, "lstm", 3, 2, dtype=dtype)
    bias[0:2] = 0.5  # the i gate's units 0 and 1
    kernel[0, 0:2] = [edge - 0.5, -edge - 0.5]
    layer.set_weights([kernel, recurrent, bias])
    x = np.zeros((2, 1, 2), dtype)
    x[0, 0, 0] = 1.0  # row 0 picks kernel row 0 (the edges); row 1 picks the random row 1
    x[1, 0, 1] = 1.0
    return layer, x


@pytest.mark.parametrize(("keras_version", "edge", "slope"), [(3, 3.0, 0.0), (2, 2.5, 0.2)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_hard_sigmoid_gradient_at_its_clip_edges(keras_version: int, edge: float, slope: float, dtype: str) -> None:
    """Keras 3 (relu6): gradient 0 at x = +-3; Keras 2 (clip_by_value): 0.2 at x = +-2.5."""
    layer, x = _edge_lstm(keras_version, edge, dtype)
    output_grads = np.ones((2, 3), dtype)
    grads = rnnparity.gradients(layer, x, output_grads)
    kernel = layer.get_weights()[0]
    z_i = x[0, 0] @ kernel[:, :2] + layer.get_weights()[2][:2]
    np.testing.assert_array_equal(z_i, [edge, -edge])
    # d output / d z_i = dh * o * activation'(c) * candidate * hard_sigmoid'(z_i)
    cell = layer.cell
    z = x[0, 0] @ kernel + layer.get_weights()[2]
    units = 3
    o = cell.recurrent_activation(z[3 * units :])
    candidate = np.tanh(z[2 * units : 3 * units])
    i = cell.recurrent_activation(z[:units])
    c = i * candidate  # zero initial c
    expected = (1 - np.tanh(c) ** 2) * o * candidate * slope
    assert_parity(expected[:2], grads["weights"][0][0, :2], dtype=dtype)
    if slope == 0.0:
        assert np.all(grads["weights"][0][0, :2] == 0)


def test_hard_sigmoid_edge_conventions_differ_only_at_the_edges() -> None:
    x = np.array([-3.0, -2.5, -1.0, 0.0, 1.0, 2.5, 3.0, 3.5])
    dy = np.ones_like(x)
    keras3 = activation_grads.hard_sigmoid_keras3(x, activations.hard_sigmoid_keras3(x), dy)
    keras2 = activation_grads.hard_sigmoid_keras2(x, activations.hard_sigmoid_keras2(x), dy)
    np.testing.assert_array_equal(keras3, np.array([0, 1, 1, 1, 1, 1, 0, 0]) / 6)
    np.testing.assert_allclose(keras2, [0, 0.2, 0.2, 0.2, 0.2, 0.2, 0, 0])


KINKS = {  # name: (x, TensorFlow's gradient there)
    "relu": (0.0, 0.0),
    "relu6": ([0.0, 6.0], [0.0, 0.0]),
    "leaky_relu": (0.0, float(np.float32(0.2))),
    "elu": (0.0, 1.0),
    "selu": (0.0, 1.0507009873554805),
    "celu": (0.0, 2.0),
    "hard_tanh": ([-1.0, 1.0], [1.0, 1.0]),
    "hard_shrink": ([-0.5, 0.5], [0.0, 0.0]),
    "soft_shrink": ([-0.5, 0.5], [0.0, 0.0]),
    "sparse_sigmoid": ([-1.0, 1.0], [0.0, 0.0]),
    "sparse_plus": ([-1.0, 1.0], [0.0, 1.0]),
    "hard_silu": ([-3.0, 3.0], [0.0, 1.0]),
}


@pytest.mark.parametrize("name", list(KINKS))
def test_derivatives_at_kinks_take_tensorflows_values(name: str) -> None:
    """The values tests/test_gradients_keras.py checks against TensorFlow, pinned here."""
    x, expected = (np.atleast_1d(np.asarray(v, np.float64)) for v in KINKS[name])
    function = activations.KERAS3_ACTIVATIONS[name]
    got = activation_grads.vjp_for(function, name)(x, function(x), np.ones_like(x))
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("name", FD_ACTIVATIONS)
def test_activation_derivatives_equal_finite_differences(name: str) -> None:
    function = activations.KERAS3_ACTIVATIONS.get(name) or activations.KERAS2_ACTIVATIONS[name]
    rng = _rng("activation-fd", name)
    x = rng.normal(0.0, 2.0, (5, 6))
    dy = rng.normal(size=x.shape)
    vjp = activation_grads.vjp_for(function, name)(x, function(x), dy)
    h = 1e-6
    fd = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = h
        fd[index] = np.sum((function(x + step) - function(x - step)) * dy) / (2 * h)
    np.testing.assert_allclose(vjp, fd, rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------- errors
def test_bad_arguments_raise_naming_the_argument() -> None:
    rng = _rng("errors")
    layer = _layer("lstm", True, 3, 2, rng, return_sequences=True, return_state=True)
    x = rng.normal(size=(2, 4, 2)).astype(np.float32)
    good = [np.ones((2, 4, 3), np.float32), np.ones((2, 3), np.float32), np.ones((2, 3), np.float32)]
    with pytest.raises(
        TypeError,
        match=r"output_grads must be a list or tuple like what LSTM\(units=3, use_bias=True\) .* "
        r"returns: 3 arrays \(output, h, c\); got ndarray",
    ):
        rnnparity.gradients(layer, x, good[0])
    with pytest.raises(ValueError, match=r"output_grads holds 2 array\(s\); .* returns 3 \(output, h, c\)"):
        rnnparity.gradients(layer, x, good[:2])
    with pytest.raises(
        ValueError, match=r"output_grads\[2\] \(c\) has shape \(2, 4\); expected \(2, 3\), the shape of the layer's c"
    ):
        rnnparity.gradients(layer, x, [good[0], good[1], np.ones((2, 4))])
    with pytest.raises(ValueError, match=r"output_grads\[0\] \(output\) has shape \(2, 3\); expected \(2, 4, 3\)"):
        rnnparity.gradients(layer, x, [good[1], good[1], good[2]])
    single = _layer("gru", True, 3, 2, rng)
    with pytest.raises(
        TypeError, match=r"output_grads must be one array shaped like the output of GRU.*\(2, 3\); got a list of 2"
    ):
        rnnparity.gradients(single, x, [good[1], good[1]])
    with pytest.raises(TypeError, match="output_grads must be a numeric array"):
        rnnparity.gradients(single, x, "zeros")
    with pytest.raises(ValueError, match=r"inputs have input_dim 5 \(last axis\)"):
        rnnparity.gradients(single, np.ones((2, 4, 5)), good[1])
    with pytest.raises(ValueError, match=r"mask must have shape \(batch, timesteps\) = \(2, 4\); got \(4, 2\)"):
        rnnparity.gradients(single, x, good[1], mask=np.ones((4, 2), bool))
    with pytest.raises(ValueError, match=r"initial_state \(h\) must have shape \(2, 3\); got \(2, 5\)"):
        rnnparity.gradients(single, x, good[1], initial_state=[np.ones((2, 5))])
    with pytest.raises(
        TypeError,
        match="layer must be an rnnparity LSTM, GRU, SimpleRNN, RNN, ConvLSTM1D/2D/3D or Bidirectional twin; got GRUCell",
    ):
        rnnparity.gradients(single.cell, x[:, 0], good[1])

    dropout = _layer("gru", True, 3, 2, rng, dropout=0.5)
    with pytest.raises(ValueError, match="training=True with dropout > 0"):
        rnnparity.gradients(dropout, x, good[1], training=True)
    rnnparity.gradients(dropout, x, good[1], training=False)  # inference: no dropout, as in Keras

    custom = rnnparity.SimpleRNN(3, activation=lambda z: np.tanh(z) * 2)
    custom.set_weights(random_weights(rng, "simple_rnn", 3, 2))
    with pytest.raises(NotImplementedError, match=r"activation='<lambda>' is a custom function whose derivative"):
        rnnparity.gradients(custom, x, good[1])
    jax = rnnparity.GRU(3, backend="jax")
    jax.set_weights(single.get_weights())
    with pytest.raises(ValueError, match="backend='jax'"):
        rnnparity.gradients(jax, x, good[1])


def test_refused_output_grads_leave_a_stateful_layer_alone() -> None:
    rng = _rng("errors-stateful")
    layer = _layer("gru", True, 3, 2, rng, stateful=True)
    x = rng.normal(size=(2, 4, 2))
    layer(x)
    before = layer.states
    with pytest.raises(ValueError, match="output_grads"):
        rnnparity.gradients(layer, x, np.ones((2, 5)))
    assert before is not None and layer.states is not None
    np.testing.assert_array_equal(before[0], layer.states[0])


def test_bidirectional_output_grads_errors() -> None:
    rng = _rng("errors-bidirectional")
    inner = _layer("lstm", True, 3, 2, rng, return_sequences=True)
    wrapper = rnnparity.Bidirectional(inner, merge_mode=None)
    wrapper.set_weights(inner.get_weights() * 2)
    x = rng.normal(size=(2, 4, 2)).astype(np.float32)
    with pytest.raises(TypeError, match=r"output_grads must be a list or tuple like what Bidirectional\(LSTM.*merge_mode=None"):
        rnnparity.gradients(wrapper, x, np.ones((2, 4, 6), np.float32))
    concat = rnnparity.Bidirectional(inner)
    concat.set_weights(inner.get_weights() * 2)
    with pytest.raises(ValueError, match=r"output_grads has shape \(2, 4, 3\); expected \(2, 4, 6\)"):
        rnnparity.gradients(concat, x, np.ones((2, 4, 3), np.float32))
    grads = rnnparity.gradients(wrapper, x, [np.ones((2, 4, 3), np.float32), None])
    assert grads["inputs"].shape == x.shape and len(grads["weights"]) == 6


# --------------------------------------------------------------------------- memory
@pytest.mark.parametrize(
    ("kind", "reset_after", "per_step"), [("lstm", True, 6), ("gru", True, 5), ("gru", False, 4), ("simple_rnn", True, 2)]
)
def test_backward_memory_is_the_per_step_tape_and_the_input_gradient(
    kind: str, reset_after: bool, per_step: int, monkeypatch
) -> None:
    """Peak memory of gradients() on a long sequence stays within the documented formula:
    per timestep ``per_step`` arrays of (batch, units) (the tape) and its Python objects, the
    input gradient, two projection chunks, and per-step temporaries that do not grow with T."""
    batch, timesteps, input_dim, units = 4, 1200, 2, 16
    itemsize, record_objects = 8, 640  # bytes: a record's Python objects (tuple, array headers)
    monkeypatch.setattr(rnn, "PROJECTION_CHUNK_BYTES", 32 * 2**10)
    rng = _rng("memory", kind)
    layer = _layer(kind, reset_after, units, input_dim, rng, return_sequences=True, return_state=True, dtype="float64")
    x = rng.normal(size=(batch, timesteps, input_dim))
    output_grads = _random_output_grads(rng, layer(x))
    peak = bench.peak_memory_mib(lambda: rnnparity.gradients(layer, x, output_grads)) * 2**20
    tape = per_step * timesteps * batch * units * itemsize
    d_inputs = timesteps * batch * input_dim * itemsize
    slack = 64 * 2**10  # per-step temporaries, weights and their gradients
    bound = tape + record_objects * timesteps + d_inputs + 2 * rnn.PROJECTION_CHUNK_BYTES + slack
    assert peak <= bound, f"peak {peak:.0f} B, bound {bound} B"
    assert peak >= tape  # the formula counts what is really kept
