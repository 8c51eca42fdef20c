"""The pytest11 plugin as a user's suite sees it."""

from __future__ import annotations

import pytest
from conftest import flavor_available

USER_TEST = """
import numpy as np
import keras


def test_my_lstm(rnnparity_twin, assert_parity):
    layer = keras.layers.LSTM(4, return_sequences=True, return_state=True)
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    assert_parity(layer(x), rnnparity_twin(layer)(x))


def test_my_gru(check_parity):
    layer = keras.layers.GRU(3, recurrent_activation="hard_sigmoid", return_sequences=True)
    x = np.random.default_rng(1).normal(size=(2, 4, 2)).astype("float32")
    mask = np.array([[True, True, False, True], [True, False, False, False]])
    layer(x)
    check_parity(layer, x, mask=mask)


def test_a_broken_port_fails(assert_parity):
    assert_parity(np.zeros((2, 3), "float32"), np.full((2, 3), 1e-3, "float32"))


def test_an_unbuilt_layer_is_built_from_the_inputs(check_parity):
    keras.utils.set_random_seed(4)
    layer = keras.layers.LSTM(3, return_sequences=True, return_state=True)
    x = np.random.default_rng(2).normal(size=(2, 6, 5)).astype("float32")
    comparison = check_parity(layer, x)
    assert comparison.ok and layer.built


def _model():
    keras.utils.set_random_seed(5)
    return keras.Sequential(
        [
            keras.Input((None, 3)),
            keras.layers.GRU(4, return_sequences=True, name="gru"),
            keras.layers.SimpleRNN(2, name="simple_rnn"),
            keras.layers.Dense(1),
        ]
    )


def test_a_whole_model(check_parity, rnnparity_twin):
    model = _model()
    x = np.random.default_rng(3).normal(size=(2, 7, 3)).astype("float32")
    comparison = check_parity(model, x)
    assert comparison.ok and "gru (GRU): ok" in comparison.message and "simple_rnn (SimpleRNN): ok" in comparison.message
    try:
        rnnparity_twin(model)
    except TypeError as exc:
        assert "check_parity(model, inputs)" in str(exc)
    else:
        raise AssertionError("rnnparity_twin accepted a whole model")


def test_a_whole_model_with_a_broken_twin_fails(check_parity, monkeypatch):
    import rnnparity

    def wrong_candidate(self, x_proj, states):  # the candidate with the reset gate's weights
        x_proj[2] = x_proj[1]
        return original(self, x_proj, states)

    original = rnnparity.GRUCell.recurrent_step
    monkeypatch.setattr(rnnparity.GRUCell, "recurrent_step", wrong_candidate)
    check_parity(_model(), np.random.default_rng(3).normal(size=(2, 7, 3)).astype("float32"))
"""


@pytest.mark.skipif(not flavor_available("keras3"), reason="keras 3 is not installed")
def test_plugin_fixtures_and_header(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist")
    result.stdout.fnmatch_lines(["rnnparity *: numpy *, tensorflow *, keras *"])
    result.assert_outcomes(passed=4, failed=2)
    result.stdout.fnmatch_lines(["*MISMATCH: max abs err 0.001*"])
    result.stdout.fnmatch_lines(["*AssertionError: [[]sequential*] gru (GRU): MISMATCH*"])
    result.stdout.fnmatch_lines(["FAILED test_user.py::test_a_whole_model_with_a_broken_twin_fails*"])
