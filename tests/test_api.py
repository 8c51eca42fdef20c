"""Public API: return structures, config, weights round trip, and clear errors on bad input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import rnnparity
from rnnparity import GRU, LSTM, GRUCell, LSTMCell, SimpleRNN, SimpleRNNCell
from rnnparity.suite import matrix


def _weights(kind: str, units: int = 3, input_dim: int = 2, **kwargs) -> list[np.ndarray]:
    return matrix.make_data(matrix.Case(kind, 3, units=units, input_dim=input_dim, **kwargs)).weights


def _lstm(**kwargs) -> LSTM:
    layer = LSTM(3, **kwargs)
    layer.set_weights(_weights("lstm"))
    return layer


X = np.random.default_rng(0).normal(size=(2, 4, 2)).astype(np.float32)


def test_import_does_not_load_tensorflow() -> None:
    code = (
        "import sys, rnnparity; sys.exit(int(any(m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras') for m in sys.modules)))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize(("keras_version", "container"), [(3, tuple), (2, list)])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_return_structure(keras_version: int, container: type, return_sequences: bool) -> None:
    for cls, kind, n_states in ((LSTM, "lstm", 2), (GRU, "gru", 1), (SimpleRNN, "simple_rnn", 1)):
        layer = cls(3, return_sequences=return_sequences, return_state=True, keras_version=keras_version)
        layer.set_weights(_weights(kind))
        out = layer(X)
        assert type(out) is container and len(out) == 1 + n_states
        assert out[0].shape == ((2, 4, 3) if return_sequences else (2, 3))
        assert all(s.shape == (2, 3) and s.dtype == np.float32 for s in out[1:])
        plain = cls(3, return_sequences=return_sequences, keras_version=keras_version)
        plain.set_weights(_weights(kind))
        assert isinstance(plain(X), np.ndarray)


def test_weights_round_trip_and_copy() -> None:
    weights = _weights("gru", reset_after=True)
    before = [w.copy() for w in weights]
    layer = GRU(3)
    layer.set_weights(weights)
    got = layer.get_weights()
    for a, b in zip(got, weights):
        np.testing.assert_array_equal(a, b)
    got[0][:] = 0
    weights[1][:] = 0
    assert layer.get_weights()[0].any() and layer.get_weights()[1].any()
    np.testing.assert_array_equal(before[0], weights[0])


def test_inputs_are_never_modified() -> None:
    layer = _lstm(return_sequences=True, return_state=True)
    x = X.copy()
    x.flags.writeable = False
    init = [np.ones((2, 3), np.float32), np.ones((2, 3), np.float32)]
    mask = np.ones((2, 4), bool)
    layer(x, initial_state=init, mask=mask)
    np.testing.assert_array_equal(x, X)
    assert all((s == 1).all() for s in init)


def test_fortran_and_strided_inputs_give_the_same_numbers() -> None:
    layer = _lstm(return_sequences=True)
    reference = layer(X)
    np.testing.assert_array_equal(layer(np.asfortranarray(X)), reference)
    wide = np.zeros((2, 8, 2), np.float32)
    wide[:, ::2] = X
    np.testing.assert_array_equal(layer(wide[:, ::2]), reference)
    np.testing.assert_array_equal(layer(X.tolist()), reference)


def test_float64_weights_are_cast_to_the_layer_dtype() -> None:
    layer = LSTM(3, dtype="float64")
    layer.set_weights(_weights("lstm"))
    assert layer(X).dtype == np.float64


def test_reset_state_and_reset_states() -> None:
    layer = _lstm(stateful=True)
    assert layer.states is None
    layer(X)
    assert any(s.any() for s in layer.states)
    layer.reset_states()
    assert not any(s.any() for s in layer.states)
    layer(X)
    layer.reset_state()
    assert not any(s.any() for s in layer.states)
    layer.reset_state([np.ones((2, 3)), np.ones((2, 3))])
    assert all((s == 1).all() for s in layer.states)


@pytest.mark.parametrize("keras_version", [2, 3])
def test_config_keys_follow_the_emulated_version(keras_version: int) -> None:
    config = _lstm(keras_version=keras_version).get_config()
    assert config["units"] == 3 and config["recurrent_activation"] == "sigmoid"
    if keras_version == 3:
        assert "seed" in config and "zero_output_for_mask" in config and "time_major" not in config
    else:
        assert "time_major" in config and "implementation" in config and "seed" not in config


def test_hard_sigmoid_formulas_differ_as_documented() -> None:
    from rnnparity.activations import hard_sigmoid_keras2, hard_sigmoid_keras3

    x = np.array([-3.0, -2.5, -1.0, 0.0, 1.0, 2.5, 3.0])
    np.testing.assert_allclose(hard_sigmoid_keras2(x), np.clip(0.2 * x + 0.5, 0, 1))
    np.testing.assert_allclose(hard_sigmoid_keras3(x), np.clip(x / 6 + 0.5, 0, 1))
    assert hard_sigmoid_keras2(np.array([2.5]))[0] == 1.0 and hard_sigmoid_keras3(np.array([2.5]))[0] < 1.0


def test_cells_step_with_list_or_single_state() -> None:
    cell = GRUCell(3)
    cell.set_weights(_weights("gru"))
    h = np.zeros((2, 3), np.float32)
    y, new = cell(X[:, 0], h)
    assert isinstance(new, np.ndarray)
    y2, new2 = cell(X[:, 0], [h])
    assert isinstance(new2, list)
    np.testing.assert_array_equal(y, y2)
    lstm = LSTMCell(3)
    lstm.set_weights(_weights("lstm"))
    _, (h1, c1) = lstm(X[:, 0], [h, h])
    assert h1.shape == c1.shape == (2, 3)
    simple = SimpleRNNCell(3, activation="relu")
    simple.set_weights(_weights("simple_rnn"))
    assert (simple(X[:, 0], [h])[0] >= 0).all()


# ------------------------------------------------------------------ errors

ERRORS = [
    (lambda: LSTM(3).set_weights(_weights("lstm")[:2]), ValueError, "expects 3 weights"),
    (lambda: LSTM(3).set_weights(_weights("lstm", units=4)), ValueError, "kernel has shape (2, 16)"),
    (
        lambda: LSTM(3).set_weights([np.zeros((2, 12)), np.zeros((12, 3)), np.zeros(12)]),
        ValueError,
        "recurrent_kernel has shape (12, 3); LSTM(units=3, use_bias=True) with input_dim 2 expects (3, 12)",
    ),
    (
        lambda: LSTM(3).set_weights([np.zeros((2, 10)), np.zeros((3, 12)), np.zeros(12)]),
        ValueError,
        "kernel has shape (2, 10); LSTM(units=3, use_bias=True) with input_dim 2 expects (2, 12)",
    ),
    (lambda: GRU(3, reset_after=True).set_weights(_weights("gru", reset_after=False)), ValueError, "bias has shape (9,)"),
    (lambda: LSTM(3, use_bias=False).set_weights(_weights("lstm")), ValueError, "expects 2 weights"),
    (lambda: LSTM(3).set_weights(np.zeros(3)), TypeError, "weights must be a list"),
    (lambda: LSTM(3).set_weights(["a", "b", "c"]), TypeError, "kernel must be a numeric array"),
    (lambda: LSTM(3)(X), ValueError, "has no weights yet"),
    (lambda: _lstm()(X[0]), ValueError, "inputs must be rank 3"),
    (lambda: _lstm()(np.zeros((2, 4, 5))), ValueError, "inputs have input_dim 5"),
    (lambda: _lstm()(np.zeros((2, 0, 2))), ValueError, "0 timesteps"),
    (lambda: _lstm()(np.array([["a"]])), TypeError, "inputs must hold real numbers"),
    (lambda: _lstm()(X, mask=np.ones((4, 2), bool)), ValueError, "mask must have shape (batch, timesteps) = (2, 4)"),
    (lambda: _lstm()(X, mask=np.ones((2, 4), object)), TypeError, "mask must be booleans"),
    (lambda: _lstm()(X, initial_state=[np.zeros((2, 3))]), ValueError, "initial_state must hold 2 array(s)"),
    (
        lambda: _lstm()(X, initial_state=[np.zeros((2, 3)), np.zeros((3, 3))]),
        ValueError,
        "initial_state (c) must have shape (2, 3); got (3, 3)",
    ),
    (lambda: LSTM(3, activation="tanhh"), ValueError, "activation='tanhh' is not an activation of Keras 3"),
    (lambda: LSTM(3, recurrent_activation="celu", keras_version=2), ValueError, "exists in Keras 3 only"),
    (lambda: LSTM(3, activation="glu"), ValueError, "halves the last axis"),
    (lambda: LSTM(3, activation=5), TypeError, "activation must be an activation name"),
    (lambda: LSTM(0), ValueError, "units must be a positive integer"),
    (lambda: LSTM(float("nan")), TypeError, "units must be a positive integer"),
    (lambda: LSTM(3, dropout=float("inf")), ValueError, "dropout must be a finite number in [0, 1]"),
    (lambda: LSTM(3, dtype="mixed_float16"), ValueError, "mixed-precision policy"),
    (lambda: LSTM(3, dtype="int32"), ValueError, "dtype must be one of"),
    (lambda: LSTM(3, keras_version=4), ValueError, "keras_version must be 2"),
    (lambda: LSTM(3, time_major=True), ValueError, "time_major=True exists in Keras 2 only"),
    (lambda: LSTM(3, return_sequences="yes"), TypeError, "return_sequences must be True or False"),
    (lambda: LSTM(3, bogus=1), TypeError, "unexpected keyword argument(s) ['bogus']"),
    (lambda: _lstm(dropout=0.5)(X, training=True), ValueError, "training=True with dropout > 0"),
    (lambda: _lstm().reset_state(), ValueError, "reset_state() is for stateful layers"),
    (lambda: LSTM(3, backend="mlx"), ValueError, "backend must be one of ('tensorflow', 'jax', 'torch', 'numpy') for Keras 3"),
    (lambda: LSTM(3, backend="jax", keras_version=2), ValueError, "backend must be one of ('tensorflow',) for Keras 2"),
]


@pytest.mark.parametrize(("action", "error", "text"), ERRORS, ids=[e[2][:40] for e in ERRORS])
def test_bad_input_raises_a_clear_error(action, error, text) -> None:
    with pytest.raises(error) as info:
        action()
    assert text in str(info.value)


def test_stateful_batch_size_is_fixed_after_first_call() -> None:
    layer = _lstm(stateful=True)
    layer(X)
    with pytest.raises(ValueError, match="batch size 2; got inputs with batch size 1"):
        layer(X[:1])


def test_training_only_arguments_are_accepted_and_kept() -> None:
    layer = LSTM(
        3,
        kernel_initializer="he_normal",
        dropout=0.25,
        recurrent_dropout=0.1,
        seed=7,
        unroll=True,
        name="encoder",
        implementation=1,
        use_cudnn=False,
    )
    config = layer.get_config()
    assert config["kernel_initializer"] == "he_normal" and config["dropout"] == 0.25 and config["name"] == "encoder"


def test_version_is_exposed() -> None:
    assert rnnparity.__version__


def test_known_differences_table_is_complete() -> None:
    from rnnparity.suite.known_differences import KNOWN_DIFFERENCES

    ids = [d.id for d in KNOWN_DIFFERENCES]
    assert len(ids) == len(set(ids))
    assert all(d.reason and d.handling and d.versions for d in KNOWN_DIFFERENCES)


def test_both_gelu_forms_agree_to_1e8_and_differ_in_float64() -> None:
    from rnnparity.activations import gelu, gelu_erf_form

    x = np.linspace(-4, 4, 101)
    assert np.max(np.abs(gelu(x) - gelu_erf_form(x))) < 2e-8
    assert not np.array_equal(gelu(x), gelu_erf_form(x))
    assert LSTM(3, activation=gelu_erf_form).get_config()["activation"] == "gelu"


def test_jax_backend_repeats_the_initial_h_before_the_first_unmasked_step() -> None:
    init = [np.full((2, 3), 0.25, np.float32), np.full((2, 3), -0.5, np.float32)]
    mask = np.array([[False, False, True, True], [True, True, True, True]])
    outputs = {}
    for backend in ("tensorflow", "jax"):
        layer = _lstm(return_sequences=True, backend=backend)
        outputs[backend] = layer(X, initial_state=init, mask=mask)
    np.testing.assert_array_equal(outputs["tensorflow"][0, :2], 0.0)
    np.testing.assert_array_equal(outputs["jax"][0, :2], 0.25)
    np.testing.assert_array_equal(outputs["jax"][:, 2:], outputs["tensorflow"][:, 2:])
    np.testing.assert_array_equal(outputs["jax"][1], outputs["tensorflow"][1])
