"""from_keras, config keys and return types, checked against the installed Keras itself."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FLAVOR_MAJOR, flavor_params, keras_handle

import rnnparity
from rnnparity import assert_parity
from rnnparity.suite import keras_adapter, matrix, parity

CLASSES = [("LSTM", "lstm"), ("GRU", "gru"), ("SimpleRNN", "simple_rnn")]


def _all(values: list[tuple]) -> list:
    return [p for flavor in FLAVOR_MAJOR for p in flavor_params(flavor, [(flavor, *v) for v in values])]


def _x(batch: int = 3, timesteps: int = 5, dim: int = 4) -> np.ndarray:
    return np.random.default_rng(1).normal(0, 1.5, (batch, timesteps, dim)).astype(np.float32)


@pytest.mark.parametrize(("flavor", "cls", "kind"), _all(CLASSES))
def test_from_keras_with_keras_initialized_weights(flavor: str, cls: str, kind: str) -> None:
    """Keras's own initialization (glorot/orthogonal kernels; unit_forget_bias for LSTM)."""
    handle = keras_handle(flavor)
    extra = {"unit_forget_bias": True} if kind == "lstm" else {}
    layer = getattr(handle.module.layers, cls)(5, return_sequences=True, return_state=True, **extra)
    x = _x()
    expected = keras_adapter.call_layer(handle, layer, x)
    twin = rnnparity.from_keras(layer)
    assert twin.keras_version == handle.keras_version
    if kind == "lstm":
        np.testing.assert_array_equal(twin.get_weights()[2][5:10], 1.0)
    assert_parity(expected, twin(x), context=f"{flavor} {cls}")


@pytest.mark.parametrize(("flavor", "cls", "kind"), _all(CLASSES))
def test_config_keys_match_keras(flavor: str, cls: str, kind: str) -> None:
    handle = keras_handle(flavor)
    options = {"recurrent_activation": "hard_sigmoid"} if kind != "simple_rnn" else {}
    layer = getattr(handle.module.layers, cls)(4, go_backwards=True, **options)
    layer.build((2, 3, 2))
    twin = rnnparity.from_keras(layer)
    keras_config, twin_config = layer.get_config(), twin.get_config()
    assert set(twin_config) == set(keras_config)
    cell = getattr(handle.module.layers, f"{cls}Cell")(4)
    cell.build((2, 2))
    assert set(rnnparity.from_keras(cell).get_config()) == set(cell.get_config())
    for key in (
        "units",
        "activation",
        "recurrent_activation",
        "use_bias",
        "go_backwards",
        "return_sequences",
        "return_state",
        "stateful",
        "reset_after",
        "unit_forget_bias",
        "time_major",
        "zero_output_for_mask",
    ):
        if key in keras_config:
            assert twin_config[key] == keras_config[key], key


@pytest.mark.parametrize(
    ("flavor", "cls", "kind"), _all([("LSTMCell", "lstm"), ("GRUCell", "gru"), ("SimpleRNNCell", "simple_rnn")])
)
def test_from_keras_cells_step_like_keras(flavor: str, cls: str, kind: str) -> None:
    handle = keras_handle(flavor)
    cell = getattr(handle.module.layers, cls)(4)
    cell.build((3, 2))
    data = matrix.make_data(matrix.Case(kind, handle.keras_version, units=4, input_dim=2, seed=3))
    cell.set_weights(data.weights)
    x = np.random.default_rng(2).normal(size=(3, 2)).astype(np.float32)
    states = [np.random.default_rng(s).normal(size=(3, 4)).astype(np.float32) for s in range(2 if kind == "lstm" else 1)]
    y, new = keras_adapter.call_cell(handle, cell, x, states)
    twin = rnnparity.from_keras(cell)
    ty, tnew = twin(x, states)
    assert_parity(np.asarray(y), ty, context="cell output")
    assert_parity([np.asarray(s) for s in new], tnew, context="cell states", check_container=False)


@pytest.mark.parametrize(("flavor", "cls", "kind"), _all(CLASSES))
def test_from_keras_copies_carried_state(flavor: str, cls: str, kind: str) -> None:
    handle = keras_handle(flavor)
    layer = getattr(handle.module.layers, cls)(3, stateful=True, return_sequences=True)
    x = _x(batch=2)
    keras_adapter.call_layer(handle, layer, x)
    twin = rnnparity.from_keras(layer)
    assert_parity(keras_adapter.layer_states(layer), twin.states, check_container=False)
    assert_parity(keras_adapter.call_layer(handle, layer, x), twin(x), context="continued call")


@pytest.mark.parametrize(("flavor",), _all([()]))
def test_from_keras_refuses_what_it_cannot_twin(flavor: str) -> None:
    handle = keras_handle(flavor)
    with pytest.raises(TypeError, match="from_keras supports"):
        rnnparity.from_keras(handle.module.layers.Dense(3))
    with pytest.raises(ValueError, match="not built yet"):
        rnnparity.from_keras(handle.module.layers.LSTM(3))
    custom = handle.module.layers.SimpleRNN(3, activation=lambda t: t * 2)
    custom.build((1, 2, 2))
    with pytest.raises(ValueError, match="uses a custom activation"):
        rnnparity.from_keras(custom)


@pytest.mark.parametrize(("flavor", "kind"), _all([("lstm",), ("gru",), ("simple_rnn",)]))
def test_nan_at_a_masked_step_matches_keras(flavor: str, kind: str) -> None:
    handle = keras_handle(flavor)
    case = matrix.Case(
        kind, handle.keras_version, units=3, input_dim=4, timesteps=5, batch=3, return_sequences=True, return_state=True, seed=21
    )
    data = matrix.make_data(case)
    x = data.calls[0].inputs.copy()
    x[0, 2] = np.nan
    x[1, 4] = np.inf
    mask = np.ones((3, 5), bool)
    mask[0, 2] = False
    mask[1, 4] = False
    layer = keras_adapter.build_layer(handle, kind, case.layer_kwargs(), x.shape, data.weights)
    twin = parity.twin_for(case, backend=handle.backend)
    expected = keras_adapter.call_layer(handle, layer, x, mask=mask)
    assert np.isfinite(np.asarray(expected[0])).all()
    assert_parity(expected, twin(x, mask=mask))


@pytest.mark.parametrize(("flavor", "kind"), _all([("lstm",), ("gru",)]))
def test_subnormal_and_huge_inputs_match_keras(flavor: str, kind: str) -> None:
    """TensorFlow flushes subnormals to zero; the absolute floor of the tolerance covers it."""
    handle = keras_handle(flavor)
    case = matrix.Case(kind, handle.keras_version, units=3, input_dim=4, timesteps=4, batch=4, return_sequences=True, seed=22)
    data = matrix.make_data(case)
    x = data.calls[0].inputs.copy()
    x[0] = 1e-40
    x[1] = -1e4
    x[2] = 1e4
    layer = keras_adapter.build_layer(handle, kind, case.layer_kwargs(), x.shape, data.weights)
    twin = parity.twin_for(case, backend=handle.backend)
    assert_parity(keras_adapter.call_layer(handle, layer, x), twin(x))
