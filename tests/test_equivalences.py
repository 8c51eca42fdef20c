"""Properties the twins satisfy on their own (no Keras needed), for every layer kind.

Per-step cell loop == whole sequence; stateful chunks == one call; go_backwards ==
reversed input; all-True mask == no mask; and the mask rules Keras follows.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rnnparity import GRU, LSTM, SimpleRNN, assert_parity
from rnnparity.suite import matrix
from rnnparity.suite.parity import twin_for

VARIANTS = [("lstm", True), ("gru", True), ("gru", False), ("simple_rnn", True)]
GRID = list(itertools.product(VARIANTS, ("float32", "float64"), (2, 3)))
IDS = [f"{k}{'' if k != 'gru' else ('-ra' if ra else '-rb')}-{dt}-k{v}" for (k, ra), dt, v in GRID]


def _layer(kind: str, reset_after: bool, dtype: str, keras_version: int, seed: int = 0, **kwargs):
    case = matrix.Case(
        kind,
        keras_version,
        units=4,
        input_dim=3,
        timesteps=7,
        batch=3,
        reset_after=reset_after,
        dtype=dtype,
        seed=seed,
        recurrent_activation="hard_sigmoid" if seed % 2 else "sigmoid",
    )
    data = matrix.make_data(case)
    return twin_for(case, weights=data.weights, overrides=kwargs), data.calls[0].inputs, case


@pytest.mark.parametrize(("variant", "dtype", "keras_version"), GRID, ids=IDS)
def test_cell_loop_equals_whole_sequence(variant, dtype, keras_version) -> None:
    kind, reset_after = variant
    layer, x, case = _layer(kind, reset_after, dtype, keras_version, seed=1, return_sequences=True, return_state=True)
    whole = layer(x)
    states = [np.zeros((case.batch, case.units), dtype) for _ in range(layer.cell.n_states)]
    steps = []
    for t in range(case.timesteps):
        y, states = layer.cell(x[:, t], states)
        steps.append(y)
    assert_parity(whole[0], np.stack(steps, axis=1), context="outputs")
    assert_parity(list(whole[1:]), list(states), context="final states")


@pytest.mark.parametrize(("variant", "dtype", "keras_version"), GRID, ids=IDS)
def test_stateful_chunks_equal_one_call(variant, dtype, keras_version) -> None:
    kind, reset_after = variant
    whole_layer, x, _ = _layer(kind, reset_after, dtype, keras_version, seed=2, return_sequences=True, return_state=True)
    chunked, _, _ = _layer(
        kind, reset_after, dtype, keras_version, seed=2, return_sequences=True, return_state=True, stateful=True
    )
    whole = whole_layer(x)
    pieces = [chunked(x[:, a:b]) for a, b in ((0, 3), (3, 4), (4, 7))]
    assert_parity(whole[0], np.concatenate([p[0] for p in pieces], axis=1), context="outputs")
    assert_parity(list(whole[1:]), chunked.states, context="carried states")
    chunked.reset_state()
    assert all(not s.any() for s in chunked.states)
    assert_parity(whole[0][:, :3], chunked(x[:, :3])[0], context="after reset_state")


@pytest.mark.parametrize(("variant", "dtype", "keras_version"), GRID, ids=IDS)
def test_go_backwards_equals_reversed_input(variant, dtype, keras_version) -> None:
    kind, reset_after = variant
    backwards, x, _ = _layer(
        kind, reset_after, dtype, keras_version, seed=3, return_sequences=True, return_state=True, go_backwards=True
    )
    forwards, _, _ = _layer(kind, reset_after, dtype, keras_version, seed=3, return_sequences=True, return_state=True)
    assert_parity(forwards(x[:, ::-1]), backwards(x))


@pytest.mark.parametrize(("variant", "dtype", "keras_version"), GRID, ids=IDS)
def test_all_true_mask_equals_no_mask(variant, dtype, keras_version) -> None:
    kind, reset_after = variant
    layer, x, case = _layer(kind, reset_after, dtype, keras_version, seed=4, return_sequences=True, return_state=True)
    full = np.ones((case.batch, case.timesteps), bool)
    assert_parity(layer(x), layer(x, mask=full))
    assert_parity(layer(x), layer(x, mask=full.astype(np.int32)))


@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn"])
def test_mask_rules(kind: str) -> None:
    """Masked steps keep states and repeat the previous output (zeros before the first
    unmasked step); a fully masked row returns the initial states and zero outputs."""
    layer, x, case = _layer(kind, True, "float64", 3, seed=5, return_sequences=True, return_state=True)
    rng = np.random.default_rng(0)
    initial = [rng.normal(size=(case.batch, case.units)) for _ in range(layer.cell.n_states)]
    mask = np.ones((case.batch, case.timesteps), bool)
    mask[0, :2] = False
    mask[0, 4] = False
    mask[1, :] = False
    out, *states = layer(x, initial_state=initial, mask=mask)
    np.testing.assert_array_equal(out[0, :2], 0.0)
    np.testing.assert_array_equal(out[0, 4], out[0, 3])
    np.testing.assert_array_equal(out[1], 0.0)
    for state, init in zip(states, initial):
        np.testing.assert_array_equal(state[1], init[1])
    zero_layer, _, _ = _layer(kind, True, "float64", 3, seed=5, return_sequences=True, zero_output_for_mask=True)
    zero_out = zero_layer(x, initial_state=initial, mask=mask)
    np.testing.assert_array_equal(zero_out[0, 4], 0.0)
    np.testing.assert_array_equal(zero_out[2], out[2])


@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn"])
def test_nan_at_masked_step_does_not_propagate(kind: str) -> None:
    layer, x, case = _layer(kind, True, "float32", 3, seed=6, return_sequences=True, return_state=True)
    mask = np.ones((case.batch, case.timesteps), bool)
    mask[:, 2] = False
    poisoned = x.copy()
    poisoned[:, 2] = np.nan
    assert_parity(layer(x, mask=mask), layer(poisoned, mask=mask))


def test_keras2_stateful_keeps_carried_state_over_initial_state() -> None:
    """Keras 2 ignores initial_state once the carried state is non-zero; Keras 3 uses it."""
    results = {}
    for version in (2, 3):
        layer, x, case = _layer("gru", True, "float64", version, seed=7, stateful=True)
        init = [np.full((case.batch, case.units), 0.5)]
        layer(x, initial_state=init)
        carried = layer.states
        fresh, _, _ = _layer("gru", True, "float64", version, seed=7)
        results[version] = (layer(x, initial_state=init), fresh(x, initial_state=carried), fresh(x, initial_state=init))
    np.testing.assert_allclose(results[2][0], results[2][1], rtol=1e-12)
    np.testing.assert_allclose(results[3][0], results[3][2], rtol=1e-12)


def test_time_major_equals_batch_major() -> None:
    layer, x, case = _layer("lstm", True, "float64", 2, seed=8, return_sequences=True, return_state=True)
    tm_layer, _, _ = _layer("lstm", True, "float64", 2, seed=8, return_sequences=True, return_state=True, time_major=True)
    mask = np.random.default_rng(1).random((case.batch, case.timesteps)) < 0.7
    out, h, c = layer(x, mask=mask)
    tm_out, tm_h, tm_c = tm_layer(x.transpose(1, 0, 2), mask=mask.T)
    assert_parity([out, h, c], [tm_out.transpose(1, 0, 2), tm_h, tm_c])


def test_empty_batch_returns_empty_outputs() -> None:
    for cls, n_states in ((LSTM, 2), (GRU, 1), (SimpleRNN, 1)):
        layer = cls(3, return_sequences=True, return_state=True)
        layer.set_weights(matrix.make_data(matrix.Case(cls.cell_class.kind, 3, units=3, input_dim=2)).weights)
        out = layer(np.zeros((0, 5, 2), np.float32))
        assert out[0].shape == (0, 5, 3)
        assert len(out) == 1 + n_states and all(s.shape == (0, 3) for s in out[1:])
