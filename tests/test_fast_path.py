"""The time loop's speed measures must not change a number: in-place gate activations,
chunked input projection, outputs written through a transposed view, steps that reuse
their projection buffer. NumPy-only; Keras parity is test_parity's job."""

from __future__ import annotations

import numpy as np
import pytest

import rnnparity
from rnnparity import activations, compare, rnn
from rnnparity.layout import GATE_ORDER
from rnnparity.suite.matrix import random_states, random_weights

# Every activation function either Keras offers, once each (hard_sigmoid twice: two formulas).
_BY_FUNCTION = {fn: f"{name}-keras{v}" for v in (2, 3) for name, fn in activations.activations_for(v).items()}
ALL_ACTIVATIONS = [(name, fn) for fn, name in _BY_FUNCTION.items()]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name_function", ALL_ACTIVATIONS, ids=[name for name, _ in ALL_ACTIVATIONS])
def test_in_place_activations_equal_the_functions_on_every_gate_view(name_function, dtype) -> None:
    """Bit for bit, on each gate block of a (batch, gates * units) buffer, neighbours untouched
    (a NumPy 2.4 in-place negation bug on one-column views was found this way)."""
    _, function = name_function
    in_place = activations.in_place(function)
    rng = np.random.default_rng(7)
    for units in (1, 2, 3, 5, 8):
        for gates in (1, 3, 4):
            for rows in (1, 2, 5):
                buffer = (rng.normal(size=(rows, gates * units)) * 4).astype(dtype)
                for g in range(gates):
                    work = buffer.copy()
                    view = work[:, g * units : (g + 1) * units]
                    with np.errstate(over="ignore", invalid="ignore"):
                        expected = function(view.copy())
                        returned = in_place(view)
                    assert returned.dtype == np.dtype(dtype)
                    np.testing.assert_array_equal(view, expected, err_msg=f"units={units} gates={gates} gate={g}")
                    outside = np.ones(work.shape, bool)
                    outside[:, g * units : (g + 1) * units] = False
                    np.testing.assert_array_equal(work[outside], buffer[outside])


def test_custom_activations_work_in_place_too() -> None:
    def clipped(x: np.ndarray) -> np.ndarray:
        return np.clip(x, -0.5, 0.5)

    x = np.linspace(-2, 2, 12).reshape(3, 4)
    expected = clipped(x.copy())
    assert activations.in_place(clipped)(x) is x
    np.testing.assert_array_equal(x, expected)


def _layer(kind: str, dtype: str, **config):
    cls = {"lstm": rnnparity.LSTM, "gru": rnnparity.GRU, "simple_rnn": rnnparity.SimpleRNN}[kind]
    layer = cls(5, dtype=dtype, **config)
    rng = np.random.default_rng(11)
    layer.set_weights(random_weights(rng, kind, 5, 3, reset_after=config.get("reset_after", True), dtype=dtype))
    return layer


CONFIGS = [
    ("lstm", {}),
    ("gru", {"reset_after": True}),
    ("gru", {"reset_after": False}),
    ("simple_rnn", {}),
    ("lstm", {"activation": "linear", "recurrent_activation": "hard_sigmoid"}),
    ("gru", {"activation": "relu", "recurrent_activation": "hard_sigmoid", "reset_after": False}),
]


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("kind_config", CONFIGS, ids=lambda kc: f"{kc[0]}-{'-'.join(map(str, kc[1].values()))}")
def test_chunked_projection_equals_one_projection(kind_config, go_backwards, monkeypatch) -> None:
    """Projecting 1, 2 or 3 timesteps per matmul gives what projecting all of them gives."""
    kind, config = kind_config
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 7, 3)) * 1.5
    mask = rng.random((4, 7)) > 0.3
    layer = _layer(kind, "float64", return_sequences=True, return_state=True, go_backwards=go_backwards, **config)
    whole = layer(x, mask=mask)
    per_step_bytes = 4 * len(GATE_ORDER[kind]) * 5 * 8
    for steps in (1, 2, 3):
        monkeypatch.setattr(rnn, "PROJECTION_CHUNK_BYTES", steps * per_step_bytes)
        assert rnn.projection_chunk(7, 4, len(GATE_ORDER[kind]) * 5, 8) == steps
        result = compare(whole, layer(x, mask=mask), dtype="float64", context=f"{kind} {steps} steps per projection")
        assert result.ok, result.message


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind_config", CONFIGS, ids=lambda kc: f"{kc[0]}-{'-'.join(map(str, kc[1].values()))}")
def test_a_step_never_modifies_its_states(kind_config, dtype) -> None:
    """Steps write into their own projection buffer; the states they were given stay intact
    (the loop keeps them for masked steps)."""
    kind, config = kind_config
    cell = _layer(kind, dtype, **config).cell
    states = random_states(np.random.default_rng(5), kind, 4, 5, dtype=dtype)
    before = [s.copy() for s in states]
    x_proj = cell.input_projection(np.random.default_rng(2).normal(size=(4, 3)).astype(dtype))
    _, new_states = cell.recurrent_step(x_proj, states)
    for old, kept in zip(before, states):
        np.testing.assert_array_equal(old, kept)
    assert all(new is not old for new in new_states for old in states)


def test_projection_chunk_bounds() -> None:
    assert rnn.projection_chunk(200, 256, 1024, 4) == rnn.PROJECTION_CHUNK_BYTES // (256 * 1024 * 4)
    assert rnn.projection_chunk(5, 1, 4, 4) == 5  # never more than the sequence
    assert rnn.projection_chunk(10, 10**6, 10**4, 8) == 1  # never fewer than one timestep
    assert rnn.projection_chunk(3, 0, 12, 4) == 3  # an empty batch
