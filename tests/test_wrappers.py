"""Parity of the compositions: Bidirectional, RNN(cell), StackedRNNCells, against Keras.

Each case builds the Keras object and the twin independently from the same options, loads
the same seeded random weights (never constant) into both, feeds both the same seeded
inputs, masks and initial states, and compares every output and state with the one
tolerance helper. A second path checks that ``from_keras`` builds the same twin.
"""

from __future__ import annotations

import itertools
import zlib
from typing import Any

import numpy as np
import pytest
from conftest import FLAVOR_MAJOR, assert_keras_still_fails, flavor_params, keras_handle

import rnnparity
from rnnparity import assert_parity
from rnnparity.suite import keras_adapter, parity
from rnnparity.suite.keras_adapter import KerasHandle
from rnnparity.suite.known_differences import expected_keras_failure, tolerance_for
from rnnparity.suite.matrix import random_mask, random_states, random_weights

KERAS_LAYER = {"lstm": "LSTM", "gru": "GRU", "simple_rnn": "SimpleRNN"}
TWIN_LAYER = {"lstm": rnnparity.LSTM, "gru": rnnparity.GRU, "simple_rnn": rnnparity.SimpleRNN}
TWIN_CELL = {"lstm": rnnparity.LSTMCell, "gru": rnnparity.GRUCell, "simple_rnn": rnnparity.SimpleRNNCell}
VARIANTS = [("lstm", True), ("gru", True), ("gru", False), ("simple_rnn", True)]
MERGE_MODES = ["concat", "sum", "mul", "ave", None]
RETURNS = [(False, False), (True, False), (False, True), (True, True)]
# plain; mask + initial state; a custom backward layer (different units and activation) +
# mask, in float64.
EXTRAS = ["plain", "mask+initial_state", "backward_layer+mask+float64"]


def _rng(*key: Any) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _options(kind: str, reset_after: bool, **extra: Any) -> dict[str, Any]:
    options = dict(extra)
    if kind == "gru":
        options["reset_after"] = reset_after
    return options


def _all(values: list[tuple], ids: list[str]) -> list:
    return [
        p
        for flavor in FLAVOR_MAJOR
        for p in flavor_params(flavor, [(flavor, *v) for v in values], ids=[f"{flavor}-{i}" for i in ids])
    ]


def _tolerance(handle: KerasHandle, dtype: str) -> dict[str, float]:
    rtol, atol = tolerance_for(dtype, handle.backend)
    return {"rtol": rtol, "atol": atol, "dtype": dtype}


# --------------------------------------------------------------------------- Bidirectional
BIDIRECTIONAL_CASES = list(itertools.product(VARIANTS, MERGE_MODES, RETURNS, EXTRAS))


def _bidirectional_id(case: tuple) -> str:
    (kind, reset_after), merge, (seq, state), extra = case
    gru = "" if kind != "gru" else ("-ra" if reset_after else "-rb")
    return f"{kind}{gru}-{merge}-seq{int(seq)}-state{int(state)}-{extra}"


@pytest.mark.parametrize(
    ("flavor", "variant", "merge_mode", "returns", "extra"),
    _all(BIDIRECTIONAL_CASES, [_bidirectional_id(c) for c in BIDIRECTIONAL_CASES]),
)
def test_bidirectional_matches_keras(
    flavor: str, variant: tuple[str, bool], merge_mode: str | None, returns: tuple[bool, bool], extra: str
) -> None:
    handle = keras_handle(flavor)
    kind, reset_after = variant
    return_sequences, return_state = returns
    dtype = "float64" if "float64" in extra else "float32"
    rng = _rng("bidirectional", kind, reset_after, merge_mode, returns, extra)
    batch, timesteps, input_dim, units = 3, 5, 4, 3
    common = {"return_sequences": return_sequences, "return_state": return_state, "dtype": dtype}
    forward_options = _options(kind, reset_after, units=units, **common)
    backward_options = None
    if "backward_layer" in extra:
        # Keras requires the same units for concat-free merges; concat allows different ones.
        backward_units = units + 2 if merge_mode in ("concat", None) else units
        backward_options = _options(kind, reset_after, units=backward_units, activation="relu", go_backwards=True, **common)

    x = rng.normal(0.0, 1.5, (batch, timesteps, input_dim)).astype(dtype)
    mask = random_mask(rng, "random", batch, timesteps) if "mask" in extra else None
    initial_state = None
    if "initial_state" in extra:
        initial_state = random_states(rng, kind, batch, units, dtype) + random_states(rng, kind, batch, units, dtype)
    weights = random_weights(rng, kind, units, input_dim, True, reset_after, dtype)
    backward_units_ = backward_options["units"] if backward_options else units
    weights += random_weights(rng, kind, backward_units_, input_dim, True, reset_after, dtype)

    keras_layer = keras_adapter.build_bidirectional(
        handle,
        (kind, forward_options),
        merge_mode,
        (kind, backward_options) if backward_options else None,
        dtype,
        (batch, timesteps, input_dim),
        weights,
    )
    expected = keras_adapter.call_layer(handle, keras_layer, x, initial_state, mask)

    version = {"keras_version": handle.keras_version, "backend": handle.backend}
    twin_backward = TWIN_LAYER[kind](**backward_options, **version) if backward_options else None
    twin = rnnparity.Bidirectional(
        TWIN_LAYER[kind](**forward_options, **version), merge_mode=merge_mode, backward_layer=twin_backward, dtype=dtype
    )
    twin.set_weights(weights)
    context = f"{flavor} Bidirectional {_bidirectional_id((variant, merge_mode, returns, extra))}"
    assert_parity(expected, twin(x, initial_state=initial_state, mask=mask), context=context, **_tolerance(handle, dtype))

    converted = rnnparity.from_keras(keras_layer)
    assert_parity(
        expected,
        converted(x, initial_state=initial_state, mask=mask),
        context=f"{context} from_keras",
        **_tolerance(handle, dtype),
    )


@pytest.mark.parametrize("flavor", _all([()], ["mixed-dtypes"]))
def test_bidirectional_wrapper_dtype_differs_from_the_layers(flavor: str) -> None:
    """A float32 wrapper around float64 layers: Keras casts the inputs (Keras 3: also the
    initial states and the merged output) to float32; the states stay float64."""
    handle = keras_handle(flavor)
    rng = _rng("bidirectional-mixed-dtypes")
    options = {"units": 3, "return_sequences": True, "return_state": True, "dtype": "float64"}
    weights = random_weights(rng, "lstm", 3, 2, dtype="float64") + random_weights(rng, "lstm", 3, 2, dtype="float64")
    x = rng.normal(0.0, 1.5, (2, 5, 2))
    initial_state = random_states(rng, "lstm", 2, 3, "float64") + random_states(rng, "lstm", 2, 3, "float64")
    keras_layer = handle.module.layers.Bidirectional(handle.module.layers.LSTM(**options))
    keras_layer.build((2, 5, 2))
    keras_layer.set_weights(weights)
    expected = keras_adapter.call_layer(handle, keras_layer, x, initial_state)
    twin = rnnparity.from_keras(keras_layer)
    assert twin.dtype == np.float32
    actual = twin(x, initial_state=initial_state)
    assert [a.dtype for a in actual] == [e.dtype for e in expected]
    # Same roundings, so float64-tight even for the float32 output (the JAX backend's float64 is
    # float32-accurate in tanh: known_differences.tolerance_for).
    rtol, atol = tolerance_for("float64", handle.backend)
    assert_parity(expected, actual, rtol=1e-10 if rtol is None else rtol, atol=1e-12 if atol is None else atol)


@pytest.mark.parametrize(("flavor", "kind"), _all([(k,) for k in KERAS_LAYER], list(KERAS_LAYER)))
def test_bidirectional_stateful_matches_keras(flavor: str, kind: str) -> None:
    """Two calls carry both directions' states; then reset; carried states compared too."""
    handle = keras_handle(flavor)
    rng = _rng("bidirectional-stateful", kind)
    batch, timesteps, input_dim, units = 2, 4, 3, 3
    options = {"units": units, "return_sequences": True, "stateful": True}
    weights = random_weights(rng, kind, units, input_dim) + random_weights(rng, kind, units, input_dim)
    keras_layer = handle.module.layers.Bidirectional(getattr(handle.module.layers, KERAS_LAYER[kind])(**options))
    keras_layer.build((batch, timesteps, input_dim))
    keras_layer.set_weights(weights)
    twin = rnnparity.Bidirectional(TWIN_LAYER[kind](**options, keras_version=handle.keras_version, backend=handle.backend))
    twin.set_weights(weights)
    for call in range(3):
        if call == 2:
            keras_adapter.reset_layer_state(handle, keras_layer)
            twin.reset_state()
        x = rng.normal(0.0, 1.5, (batch, timesteps, input_dim)).astype(np.float32)
        assert_parity(keras_adapter.call_layer(handle, keras_layer, x), twin(x), context=f"{flavor} {kind} call {call}")
    carried = [
        s for wrapped in (keras_layer.forward_layer, keras_layer.backward_layer) for s in keras_adapter.layer_states(wrapped)
    ]
    assert twin.states is not None
    assert_parity(carried, twin.states, context="carried states", check_container=False)


@pytest.mark.parametrize("flavor", _all([()], ["go_backwards"]))
def test_bidirectional_of_a_backwards_layer(flavor: str) -> None:
    """Keras 2 flips go_backwards for the backward copy; Keras 3 refuses a backwards layer."""
    handle = keras_handle(flavor)
    rng = _rng("bidirectional-go-backwards")
    options = {"units": 3, "return_sequences": True, "go_backwards": True}
    twin_layer = rnnparity.GRU(**options, keras_version=handle.keras_version, backend=handle.backend)
    if handle.keras_version == 3:
        with pytest.raises(ValueError, match="go_backwards"):
            handle.module.layers.Bidirectional(handle.module.layers.GRU(**options))
        with pytest.raises(ValueError, match="opposite directions"):
            rnnparity.Bidirectional(twin_layer)
        return
    weights = random_weights(rng, "gru", 3, 2) + random_weights(rng, "gru", 3, 2)
    keras_layer = handle.module.layers.Bidirectional(handle.module.layers.GRU(**options))
    keras_layer.build((2, 5, 2))
    keras_layer.set_weights(weights)
    twin = rnnparity.Bidirectional(twin_layer)
    twin.set_weights(weights)
    assert twin.backward_layer.go_backwards is False
    x = rng.normal(0.0, 1.5, (2, 5, 2)).astype(np.float32)
    assert_parity(keras_adapter.call_layer(handle, keras_layer, x), twin(x))


@pytest.mark.parametrize("flavor", flavor_params("tf-keras", [("tf-keras",)], ids=["tf-keras-time_major"]))
def test_bidirectional_time_major_keras2(flavor: str) -> None:
    handle = keras_handle(flavor)
    rng = _rng("bidirectional-time-major")
    options = {"units": 3, "return_sequences": True, "return_state": True, "time_major": True}
    weights = random_weights(rng, "lstm", 3, 2) + random_weights(rng, "lstm", 3, 2)
    keras_layer = handle.module.layers.Bidirectional(handle.module.layers.LSTM(**options), merge_mode=None)
    keras_layer.build((6, 2, 2))
    keras_layer.set_weights(weights)
    twin = rnnparity.Bidirectional(rnnparity.LSTM(**options, keras_version=2), merge_mode=None)
    twin.set_weights(weights)
    x = rng.normal(0.0, 1.5, (6, 2, 2)).astype(np.float32)
    mask = random_mask(rng, "right_padded", 2, 6)
    assert mask is not None
    assert_parity(keras_adapter.call_layer(handle, keras_layer, x, mask=mask.T), twin(x, mask=mask.T))


# --------------------------------------------------------------------------- RNN(cell) and stacks
STACKS: dict[str, list[tuple[str, int, dict[str, Any]]]] = {
    "lstm": [("lstm", 4, {})],
    "gru": [("gru", 3, {"reset_after": True})],
    "simple_rnn": [("simple_rnn", 5, {"activation": "relu"})],
    "lstm+gru": [("lstm", 4, {}), ("gru", 3, {"reset_after": True})],
    "gru_rb+simple+lstm": [
        ("gru", 5, {"reset_after": False}),
        ("simple_rnn", 2, {}),
        ("lstm", 3, {"recurrent_activation": "hard_sigmoid"}),
    ],
    "stack_of_one": [("lstm", 3, {})],
}
STACK_EXTRAS = ["plain", "mask", "initial_state", "initial_state_bare", "mask+float64", "float64"]
STACK_CASES = list(itertools.product(STACKS, RETURNS, STACK_EXTRAS))


def _stack_id(case: tuple) -> str:
    name, (seq, state), extra = case
    return f"{name}-seq{int(seq)}-state{int(state)}-{extra}"


def _keras_cell(handle: KerasHandle, kind: str, units: int, options: dict[str, Any], dtype: str) -> Any:
    return keras_adapter.keras_cell(handle, kind, {"units": units, **options}, dtype)


def _twin_cell(handle: KerasHandle, kind: str, units: int, options: dict[str, Any], dtype: str) -> Any:
    return TWIN_CELL[kind](units, dtype=dtype, keras_version=handle.keras_version, **options)


def _stack_inputs(
    rng: np.random.Generator, spec: list[tuple[str, int, dict[str, Any]]], input_dim: int, batch: int, dtype: str, bare: bool
) -> tuple[list[np.ndarray], list[Any]]:
    weights: list[np.ndarray] = []
    states: list[Any] = []
    dim = input_dim
    for kind, units, options in spec:
        weights += random_weights(rng, kind, units, dim, True, options.get("reset_after", True), dtype)
        cell_states = random_states(rng, kind, batch, units, dtype)
        states.append(cell_states[0] if bare and len(cell_states) == 1 else cell_states)
        dim = units
    return weights, states


def _check_stack_twin_alone(
    handle: KerasHandle, spec: Any, single: bool, options: dict[str, Any], weights: Any, x: Any, state: Any, mask: Any, dtype: str
) -> None:
    """The RNN(cells) twin in float32 and in float64 on the same data agree (parity.dtype_self_check)."""
    results = {}
    for run_dtype in ("float32", "float64"):
        cells = [_twin_cell(handle, kind, units, cell_options, run_dtype) for kind, units, cell_options in spec]
        twin = rnnparity.RNN(cells[0] if single else rnnparity.StackedRNNCells(cells), **options, backend=handle.backend)
        twin.set_weights(weights)
        results[run_dtype] = twin(x, initial_state=state, mask=mask)
    result = parity.dtype_self_check(results["float32"], results["float64"], dtype, context="twin alone")
    assert result.ok, result.message


@pytest.mark.parametrize(("flavor", "stack", "returns", "extra"), _all(STACK_CASES, [_stack_id(c) for c in STACK_CASES]))
def test_rnn_of_cells_matches_keras(flavor: str, stack: str, returns: tuple[bool, bool], extra: str) -> None:
    """RNN(cell) for one cell; RNN(StackedRNNCells([...])) for the others, nested states and all."""
    handle = keras_handle(flavor)
    spec = STACKS[stack]
    single = len(spec) == 1 and stack != "stack_of_one"
    dtype = "float64" if "float64" in extra else "float32"
    return_sequences, return_state = returns
    rng = _rng("rnn", stack, returns, extra)
    batch, timesteps, input_dim = 3, 6, 4
    weights, states = _stack_inputs(rng, spec, input_dim, batch, dtype, bare="bare" in extra)
    x = rng.normal(0.0, 1.5, (batch, timesteps, input_dim)).astype(dtype)
    mask = random_mask(rng, "random", batch, timesteps) if "mask" in extra else None
    initial_state: Any = None
    if "initial_state" in extra:
        initial_state = states[0] if single else states

    options = {"return_sequences": return_sequences, "return_state": return_state}
    keras_cells = [(kind, {"units": units, **cell_options}) for kind, units, cell_options in spec]
    keras_layer = keras_adapter.build_rnn(handle, keras_cells, not single, options, dtype, (batch, timesteps, input_dim), weights)
    twin_cells = [_twin_cell(handle, kind, units, cell_options, dtype) for kind, units, cell_options in spec]
    twin_cell = twin_cells[0] if single else rnnparity.StackedRNNCells(twin_cells)
    twin = rnnparity.RNN(twin_cell, **options, backend=handle.backend)
    twin.set_weights(weights)

    context = f"{flavor} RNN {_stack_id((stack, returns, extra))}"
    config = {
        "stacked_cells": None if single else len(spec),
        "cells": [f"{kind}:{cell_options.get('activation', 'tanh')}" for kind, _, cell_options in spec],
        "dtype": dtype,
        "mask": "random" if mask is not None else "none",
    }
    failure = expected_keras_failure(config, handle.environment)
    if failure is not None:
        # A known Keras bug is data: Keras must still fail here, or the entry is stale; the
        # twin, which Keras cannot check here, must agree with its own float64 run.
        assert_keras_still_fails(failure, handle, lambda: keras_adapter.call_layer(handle, keras_layer, x, initial_state, mask))
        _check_stack_twin_alone(handle, spec, single, options, weights, x, initial_state, mask, dtype)
        return
    expected = keras_adapter.call_layer(handle, keras_layer, x, initial_state, mask)
    tolerance = _tolerance(handle, dtype)
    assert_parity(expected, twin(x, initial_state=initial_state, mask=mask), context=context, **tolerance)
    converted = rnnparity.from_keras(keras_layer)
    assert_parity(expected, converted(x, initial_state=initial_state, mask=mask), context=f"{context} from_keras", **tolerance)


@pytest.mark.parametrize("flavor", _all([()], ["stacked-stateful"]))
def test_stacked_stateful_matches_keras(flavor: str) -> None:
    handle = keras_handle(flavor)
    spec = STACKS["lstm+gru"]
    rng = _rng("rnn-stateful")
    batch, timesteps, input_dim = 2, 4, 3
    weights, _ = _stack_inputs(rng, spec, input_dim, batch, "float32", bare=False)
    keras_layer = handle.module.layers.RNN(
        handle.module.layers.StackedRNNCells([_keras_cell(handle, k, u, o, "float32") for k, u, o in spec]),
        stateful=True,
        return_state=True,
    )
    keras_layer.build((batch, timesteps, input_dim))
    keras_layer.set_weights(weights)
    twin = rnnparity.RNN([_twin_cell(handle, k, u, o, "float32") for k, u, o in spec], stateful=True, return_state=True)
    twin.set_weights(weights)
    for call in range(2):
        x = rng.normal(0.0, 1.5, (batch, timesteps, input_dim)).astype(np.float32)
        assert_parity(keras_adapter.call_layer(handle, keras_layer, x), twin(x), context=f"call {call}")
    assert twin.states is not None
    assert_parity(keras_adapter.layer_states(keras_layer), twin.states, context="carried", check_container=False)
    continued = rnnparity.from_keras(keras_layer)
    x = rng.normal(0.0, 1.5, (batch, timesteps, input_dim)).astype(np.float32)
    assert_parity(keras_adapter.call_layer(handle, keras_layer, x), continued(x), context="from_keras continues")


@pytest.mark.parametrize("flavor", _all([()], ["stacked-cell-step"]))
def test_stacked_cells_one_step_matches_keras(flavor: str) -> None:
    handle = keras_handle(flavor)
    spec = STACKS["gru_rb+simple+lstm"]
    rng = _rng("stacked-step")
    weights, states = _stack_inputs(rng, spec, 4, 3, "float32", bare=False)
    keras_stack = handle.module.layers.StackedRNNCells([_keras_cell(handle, k, u, o, "float32") for k, u, o in spec])
    keras_stack.build((3, 4))
    keras_stack.set_weights(weights)
    x = rng.normal(0.0, 1.5, (3, 4)).astype(np.float32)
    y, new_states = keras_adapter.call_cell(handle, keras_stack, x, states)
    twin = rnnparity.from_keras(keras_stack)
    assert isinstance(twin, rnnparity.StackedRNNCells)
    twin_y, twin_states = twin(x, states)
    assert_parity(y, twin_y, context="stack output")
    assert_parity(new_states, twin_states, context="stack states", check_container=False)


# --------------------------------------------------------------------------- the checks can fail
@pytest.mark.parametrize("flavor", _all([()], ["negative"]))
def test_wrapper_parity_catches_deliberate_errors(flavor: str) -> None:
    """Swapped directions, an unflipped backward sequence, masked steps not zeroed, and
    stacked cells in the wrong order must each fail the comparison."""
    handle = keras_handle(flavor)
    rng = _rng("wrapper-negative")
    batch, timesteps, input_dim, units = 3, 6, 2, 3
    options = {"units": units, "return_sequences": True}
    weights = random_weights(rng, "lstm", units, input_dim) + random_weights(rng, "lstm", units, input_dim)
    keras_layer = handle.module.layers.Bidirectional(handle.module.layers.LSTM(**options))
    keras_layer.build((batch, timesteps, input_dim))
    keras_layer.set_weights(weights)
    x = rng.normal(0.0, 1.5, (batch, timesteps, input_dim)).astype(np.float32)
    mask = random_mask(rng, "random", batch, timesteps)
    expected = keras_adapter.call_layer(handle, keras_layer, x, mask=mask)

    def twin() -> rnnparity.Bidirectional:
        built = rnnparity.Bidirectional(rnnparity.LSTM(**options, keras_version=handle.keras_version))
        built.set_weights(weights)
        return built

    assert rnnparity.compare(expected, twin()(x, mask=mask)).ok
    swapped = twin()
    swapped.set_weights(weights[3:] + weights[:3])
    assert not rnnparity.compare(expected, swapped(x, mask=mask)).ok
    unzeroed = twin()
    unzeroed.forward_layer.zero_output_for_mask = unzeroed.backward_layer.zero_output_for_mask = False
    assert not rnnparity.compare(expected, unzeroed(x, mask=mask)).ok
    unflipped = twin()
    forward = unflipped.forward_layer(x, mask=mask)
    backward = unflipped.backward_layer(x, mask=mask)
    assert not rnnparity.compare(expected, np.concatenate([forward, backward], axis=-1)).ok

    cells: list[tuple[str, int, dict[str, Any]]] = [("gru", 3, {}), ("gru", 3, {})]
    x3 = rng.normal(0.0, 1.5, (batch, timesteps, 3)).astype(np.float32)
    stack_weights, _ = _stack_inputs(rng, cells, 3, batch, "float32", bare=False)
    keras_rnn = handle.module.layers.RNN([_keras_cell(handle, k, u, o, "float32") for k, u, o in cells], return_sequences=True)
    keras_rnn.build((batch, timesteps, 3))
    keras_rnn.set_weights(stack_weights)
    stack_expected = keras_adapter.call_layer(handle, keras_rnn, x3)
    assert rnnparity.compare(stack_expected, rnnparity.from_keras(keras_rnn)(x3)).ok
    reordered = rnnparity.RNN([_twin_cell(handle, k, u, o, "float32") for k, u, o in cells], return_sequences=True)
    reordered.set_weights(stack_weights[3:] + stack_weights[:3])  # same shapes, cells swapped
    assert not rnnparity.compare(stack_expected, reordered(x3)).ok


# --------------------------------------------------------------------------- encoder-decoder
@pytest.mark.parametrize(("flavor", "kind"), _all([("lstm",), ("gru",)], ["lstm", "gru"]))
def test_encoder_decoder_step_by_step_equals_teacher_forced(flavor: str, kind: str) -> None:
    """Encoder return_state -> decoder initial_state. Keras's teacher-forced decoder output
    equals the twin decoder fed one timestep per call with its states carried."""
    handle = keras_handle(flavor)
    rng = _rng("encoder-decoder", kind)
    batch, source_len, target_len, source_dim, target_dim, units = 3, 7, 5, 4, 6, 5
    encoder_weights = random_weights(rng, kind, units, source_dim)
    decoder_weights = random_weights(rng, kind, units, target_dim)
    source = rng.normal(0.0, 1.5, (batch, source_len, source_dim)).astype(np.float32)
    target = rng.normal(0.0, 1.5, (batch, target_len, target_dim)).astype(np.float32)
    source_mask = random_mask(rng, "right_padded", batch, source_len)

    layers = handle.module.layers
    keras_encoder = getattr(layers, KERAS_LAYER[kind])(units, return_state=True)
    keras_decoder = getattr(layers, KERAS_LAYER[kind])(units, return_sequences=True)
    keras_encoder.build((batch, source_len, source_dim))
    keras_decoder.build((batch, target_len, target_dim))
    keras_encoder.set_weights(encoder_weights)
    keras_decoder.set_weights(decoder_weights)
    encoded = keras_adapter.call_layer(handle, keras_encoder, source, mask=source_mask)
    teacher_forced = keras_adapter.call_layer(handle, keras_decoder, target, initial_state=list(encoded[1:]))

    version = {"keras_version": handle.keras_version, "backend": handle.backend}
    encoder = TWIN_LAYER[kind](units, return_state=True, **version)
    encoder.set_weights(encoder_weights)
    decoder = TWIN_LAYER[kind](units, return_sequences=True, return_state=True, **version)
    decoder.set_weights(decoder_weights)
    _, *states = encoder(source, mask=source_mask)
    assert_parity(list(encoded[1:]), states, check_container=False, context="encoder states")
    steps = []
    for t in range(target_len):
        step_output, *states = decoder(target[:, t : t + 1], initial_state=states)
        steps.append(step_output[:, 0])
    assert_parity(teacher_forced, np.stack(steps, axis=1), context=f"{flavor} {kind} step-by-step decoder")


@pytest.mark.parametrize("flavor", _all([()], ["unsupported"]))
def test_from_keras_names_what_is_unsupported_and_where(flavor: str) -> None:
    handle = keras_handle(flavor)
    layers = handle.module.layers

    def custom(x: Any) -> Any:
        return x * 0.5

    stack = layers.RNN(layers.StackedRNNCells([layers.GRUCell(2), layers.LSTMCell(2, activation=custom)]), name="outer")
    stack.build((1, 3, 2))
    with pytest.raises(ValueError, match=r"LSTMCell '.*' \(in RNN 'outer' > StackedRNNCells '.*'\) uses a custom activation"):
        rnnparity.from_keras(stack)


@pytest.mark.parametrize("flavor", _all([()], ["rnn-config"]))
def test_rnn_config_keys_match_keras(flavor: str) -> None:
    """The twin RNN's get_config has Keras's RNN keys and values; the cell is nested under "cell"."""
    handle = keras_handle(flavor)
    layers = handle.module.layers
    keras_layer = layers.RNN(layers.StackedRNNCells([layers.LSTMCell(3), layers.GRUCell(2)]), go_backwards=True)
    keras_layer.build((2, 4, 3))
    keras_config = keras_layer.get_config()
    twin_config = rnnparity.from_keras(keras_layer).get_config()
    assert set(twin_config) == set(keras_config)
    for key in ("return_sequences", "return_state", "go_backwards", "stateful", "unroll", "zero_output_for_mask", "time_major"):
        assert twin_config.get(key) == keras_config.get(key), key
    assert twin_config["cell"]["class_name"] == "StackedRNNCells"
    assert [c["config"]["units"] for c in twin_config["cell"]["config"]["cells"]] == [3, 2]
