"""NumPy-only checks of the composition twins: bad input, and equivalences that need no Keras."""

from __future__ import annotations

import numpy as np
import pytest

import rnnparity
from rnnparity import assert_parity
from rnnparity.rnn import flatten_nested
from rnnparity.suite.matrix import random_states, random_weights


def _stack(keras_version: int = 3, dtype: str = "float32") -> rnnparity.StackedRNNCells:
    rng = np.random.default_rng(7)
    cells = [
        rnnparity.LSTMCell(4, dtype=dtype, keras_version=keras_version),
        rnnparity.GRUCell(3, dtype=dtype, keras_version=keras_version),
    ]
    stack = rnnparity.StackedRNNCells(cells)
    stack.set_weights(random_weights(rng, "lstm", 4, 2, dtype=dtype) + random_weights(rng, "gru", 3, 4, dtype=dtype))
    return stack


def test_stacked_cells_refuse_bad_input() -> None:
    with pytest.raises(ValueError, match="at least one cell"):
        rnnparity.StackedRNNCells([])
    with pytest.raises(TypeError, match=r"cells\[1\] must be an rnnparity cell"):
        rnnparity.StackedRNNCells([rnnparity.LSTMCell(2), "gru"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="same dtype"):
        rnnparity.StackedRNNCells([rnnparity.LSTMCell(2), rnnparity.GRUCell(2, dtype="float64")])
    with pytest.raises(ValueError, match="same Keras"):
        rnnparity.StackedRNNCells([rnnparity.LSTMCell(2), rnnparity.GRUCell(2, keras_version=2)])
    stack = rnnparity.StackedRNNCells([rnnparity.LSTMCell(4), rnnparity.GRUCell(3)])
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"expects 6 weights \(3 \+ 3 per cell\); got 5"):
        stack.set_weights(random_weights(rng, "lstm", 4, 2) + random_weights(rng, "gru", 3, 4)[:2])
    with pytest.raises(ValueError, match=r"cells\[1\] has input_dim 5, but cells\[0\] outputs 4 units"):
        stack.set_weights(random_weights(rng, "lstm", 4, 2) + random_weights(rng, "gru", 3, 5))
    built = _stack()
    with pytest.raises(ValueError, match="one entry per cell"):
        built(np.zeros((2, 2), np.float32), [np.zeros((2, 4), np.float32)])
    with pytest.raises(ValueError, match=r"states\[0\] must hold 2 array\(s\) \['h', 'c'\]"):
        built(np.zeros((2, 2), np.float32), [[np.zeros((2, 4), np.float32)], [np.zeros((2, 3), np.float32)]])
    with pytest.raises(ValueError, match=r"states \(cell 1 h\) must have shape \(2, 3\); got \(2, 4\)"):
        built(np.zeros((2, 2), np.float32), [[np.zeros((2, 4), np.float32)] * 2, [np.zeros((2, 4), np.float32)]])


def test_rnn_refuses_bad_input() -> None:
    with pytest.raises(TypeError, match="cell must be an rnnparity cell"):
        rnnparity.RNN("lstm")
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['units'\]"):
        rnnparity.RNN(rnnparity.LSTMCell(3), units=3)
    with pytest.raises(ValueError, match="differs from the cell's dtype"):
        rnnparity.RNN(rnnparity.LSTMCell(3), dtype="float64")
    layer = rnnparity.RNN(_stack())
    with pytest.raises(ValueError, match="inputs have input_dim 3"):
        layer(np.zeros((1, 2, 3), np.float32))


def test_bidirectional_refuses_bad_input() -> None:
    with pytest.raises(TypeError, match="layer must be an rnnparity recurrent layer"):
        rnnparity.Bidirectional(rnnparity.LSTMCell(3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"merge_mode must be one of .*; got 'max'"):
        rnnparity.Bidirectional(rnnparity.LSTM(3), merge_mode="max")
    with pytest.raises(ValueError, match="same return_sequences"):
        rnnparity.Bidirectional(rnnparity.LSTM(3), backward_layer=rnnparity.LSTM(3, go_backwards=True, return_sequences=True))
    with pytest.raises(ValueError, match="opposite directions"):
        rnnparity.Bidirectional(rnnparity.LSTM(3), backward_layer=rnnparity.LSTM(3))
    layer = rnnparity.Bidirectional(rnnparity.GRU(3))
    with pytest.raises(ValueError, match=r"expects 6 weights \(3 forward, then 3 backward\); got 3"):
        layer.set_weights(random_weights(np.random.default_rng(0), "gru", 3, 2))
    layer.set_weights(random_weights(np.random.default_rng(0), "gru", 3, 2) * 2)
    with pytest.raises(ValueError, match="an even count"):
        layer(np.zeros((1, 2, 2), np.float32), initial_state=[np.zeros((1, 3), np.float32)] * 3)


@pytest.mark.parametrize("keras_version", [2, 3])
def test_stacked_step_by_step_equals_whole_sequence(keras_version: int) -> None:
    """One call per timestep with the nested states carried equals one whole-sequence call."""
    rng = np.random.default_rng(11)
    stack = _stack(keras_version, "float64")
    layer = rnnparity.RNN(stack, return_sequences=True, return_state=True)
    x = rng.normal(0, 1.5, (3, 5, 2))
    states = [random_states(rng, "lstm", 3, 4, "float64"), random_states(rng, "gru", 3, 3, "float64")]
    whole = layer(x, initial_state=states)
    stepped = []
    carried = states
    for t in range(x.shape[1]):
        output, carried = stack(x[:, t], carried)
        stepped.append(output)
    assert_parity(whole[0], np.stack(stepped, axis=1))
    # (Keras 2 returns a one-state cell's state bare from a step but as given from a layer.)
    assert_parity(flatten_nested(list(whole[1:])), flatten_nested(carried), check_container=False)


def test_bidirectional_is_forward_plus_reversed_backward() -> None:
    """merge_mode=None returns the forward layer's sequence and the backward layer's run on
    the reversed input, flipped back into input order."""
    rng = np.random.default_rng(5)
    weights = random_weights(rng, "lstm", 3, 2, dtype="float64") + random_weights(rng, "lstm", 3, 2, dtype="float64")
    wrapped = rnnparity.Bidirectional(rnnparity.LSTM(3, return_sequences=True, dtype="float64"), merge_mode=None, dtype="float64")
    wrapped.set_weights(weights)
    x = rng.normal(0, 1.5, (2, 6, 2))
    y, y_rev = wrapped(x)
    forward = rnnparity.LSTM(3, return_sequences=True, dtype="float64")
    forward.set_weights(weights[:3])
    backward = rnnparity.LSTM(3, return_sequences=True, dtype="float64")
    backward.set_weights(weights[3:])
    assert_parity(forward(x), y)
    assert_parity(np.flip(backward(np.flip(x, axis=1)), axis=1), y_rev)
    summed = rnnparity.Bidirectional(rnnparity.LSTM(3, return_sequences=True, dtype="float64"), merge_mode="ave", dtype="float64")
    summed.set_weights(weights)
    assert_parity((y + y_rev) / 2, summed(x))
