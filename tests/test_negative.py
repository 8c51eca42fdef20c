"""The suite can fail: deliberate layout and semantics mistakes must be caught.

Each test corrupts the twin the way a real port goes wrong and asserts that the very
comparison the parity suite uses reports a mismatch, on cases the suite also runs.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import FLAVOR_MAJOR, flavor_params, keras_handle

from rnnparity.layout import GATE_ORDER, gate_slice
from rnnparity.suite import matrix, parity
from rnnparity.suite.known_differences import expected_keras_failure


def _swap_gates(kind: str, a: str, b: str, units: int):
    def transform(weights: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for w in weights:
            w = w.copy()
            sa, sb = gate_slice(kind, a, units), gate_slice(kind, b, units)
            w[..., sa], w[..., sb] = w[..., sb].copy(), w[..., sa].copy()
            out.append(w)
        return out

    return transform


def _transpose_recurrent_blocks(kind: str, units: int):
    def transform(weights: list[np.ndarray]) -> list[np.ndarray]:
        recurrent = weights[1].copy()
        for gate in GATE_ORDER[kind]:
            block = gate_slice(kind, gate, units)
            recurrent[:, block] = recurrent[:, block].T
        return [weights[0], recurrent, *weights[2:]]

    return transform


BASE = {
    "lstm": matrix.Case("lstm", 3, units=4, input_dim=3, timesteps=5, batch=3, return_sequences=True, return_state=True, seed=11),
    "gru": matrix.Case("gru", 3, units=4, input_dim=3, timesteps=5, batch=3, return_sequences=True, return_state=True, seed=12),
    "simple_rnn": matrix.Case(
        "simple_rnn", 3, units=4, input_dim=3, timesteps=5, batch=3, return_sequences=True, return_state=True, seed=13
    ),
}

MISTAKES = [
    ("lstm", "swap i/f", lambda c: {"twin_weights": _swap_gates("lstm", "i", "f", c.units)}),
    ("lstm", "swap c/o", lambda c: {"twin_weights": _swap_gates("lstm", "c", "o", c.units)}),
    ("lstm", "transposed recurrent blocks", lambda c: {"twin_weights": _transpose_recurrent_blocks("lstm", c.units)}),
    ("gru", "swap z/r", lambda c: {"twin_weights": _swap_gates("gru", "z", "r", c.units)}),
    ("gru", "swap r/h", lambda c: {"twin_weights": _swap_gates("gru", "r", "h", c.units)}),
    ("gru", "transposed recurrent blocks", lambda c: {"twin_weights": _transpose_recurrent_blocks("gru", c.units)}),
    ("gru", "bias rows swapped", lambda c: {"twin_weights": lambda w: [w[0], w[1], w[2][::-1].copy()]}),
    ("simple_rnn", "transposed recurrent kernel", lambda c: {"twin_weights": lambda w: [w[0], w[1].T.copy(), w[2]]}),
    ("lstm", "tanh instead of sigmoid", lambda c: {"twin_overrides": {"recurrent_activation": "tanh"}}),
    ("lstm", "go_backwards ignored", lambda c: {"twin_overrides": {"go_backwards": not c.go_backwards}}),
]


def _params() -> list:
    params = []
    for flavor in FLAVOR_MAJOR:
        values = [(flavor, kind, name, make) for kind, name, make in MISTAKES]
        params += flavor_params(flavor, values, [f"{flavor}-{kind}-{name}" for kind, name, _ in MISTAKES])
    return params


@pytest.mark.parametrize(("flavor", "kind", "name", "make"), _params())
def test_layout_mistake_is_caught(flavor: str, kind: str, name: str, make) -> None:
    case = replace(BASE[kind], keras_version=FLAVOR_MAJOR[flavor])
    correct = parity.run_case(case, keras_handle(flavor))
    assert correct.ok, correct.message
    broken = parity.run_case(case, keras_handle(flavor), **make(case))
    assert not broken.ok, f"{name} was not detected: {broken.message}"
    assert "MISMATCH" in broken.message


@pytest.mark.parametrize(
    ("flavor", "kind", "reset_after"),
    [
        p
        for flavor in FLAVOR_MAJOR
        for p in flavor_params(
            flavor,
            [
                (flavor, "lstm", True),
                (flavor, "gru", True),
                (flavor, "gru", False),
            ],
        )
    ],
)
def test_wrong_hard_sigmoid_formula_is_caught(flavor: str, kind: str, reset_after: bool) -> None:
    """A twin emulating the other Keras's hard_sigmoid must fail against this Keras."""
    major = FLAVOR_MAJOR[flavor]
    case = replace(matrix.hard_sigmoid_cases(major)[0], kind=kind, reset_after=reset_after, input_scale=3.0)
    assert parity.run_case(case, keras_handle(flavor)).ok
    broken = parity.run_case(case, keras_handle(flavor), twin_overrides={"keras_version": 5 - major, "backend": "tensorflow"})
    assert not broken.ok, broken.message


@pytest.mark.parametrize("flavor", [p for f in FLAVOR_MAJOR for p in flavor_params(f, [(f,)])])
@pytest.mark.parametrize("use_bias", [True, False])
def test_wrong_reset_after_is_caught(flavor: str, use_bias: bool) -> None:
    """A GRU ported with the other reset_after convention (biases folded) must fail."""
    case = replace(BASE["gru"], keras_version=FLAVOR_MAJOR[flavor], use_bias=use_bias, reset_after=True)
    failure = expected_keras_failure(case.to_dict(), keras_handle(flavor).environment)
    if failure is not None:
        pytest.skip(f"known Keras failure {failure.id}")

    def fold_bias(weights: list[np.ndarray]) -> list[np.ndarray]:
        return [weights[0], weights[1], weights[2][0] + weights[2][1]] if use_bias else weights

    broken = parity.run_case(case, keras_handle(flavor), twin_weights=fold_bias, twin_overrides={"reset_after": False})
    assert not broken.ok, broken.message


def test_constant_weights_would_hide_a_gate_swap() -> None:
    """Why the matrix never uses constant weights: with them, swapping i and f is invisible."""
    from rnnparity import LSTM

    units, dim = 3, 2
    constant = [np.full((dim, 4 * units), 0.3), np.full((units, 4 * units), 0.2), np.full(4 * units, 0.1)]
    x = np.random.default_rng(0).normal(size=(2, 4, dim))
    right, swapped = LSTM(units, dtype="float64"), LSTM(units, dtype="float64")
    right.set_weights(constant)
    swapped.set_weights(_swap_gates("lstm", "i", "f", units)(constant))
    np.testing.assert_array_equal(right(x), swapped(x))
    seeded = [w.astype(np.float64) for w in matrix.make_data(replace(BASE["lstm"], units=units, input_dim=dim)).weights]
    right.set_weights(seeded)
    swapped.set_weights(_swap_gates("lstm", "i", "f", units)(seeded))
    assert np.max(np.abs(right(x) - swapped(x))) > 1e-3
