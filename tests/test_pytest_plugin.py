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
"""


@pytest.mark.skipif(not flavor_available("keras3"), reason="keras 3 is not installed")
def test_plugin_fixtures_and_header(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist")
    result.stdout.fnmatch_lines(["rnnparity *: numpy *, tensorflow *, keras *"])
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*MISMATCH: max abs err 0.001*"])
