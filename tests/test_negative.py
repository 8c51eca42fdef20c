"""The suite can fail: deliberate layout and semantics mistakes must be caught.

Each test corrupts the twin the way a real port goes wrong and asserts that the very
comparison the parity suite uses reports a mismatch, on cases the suite also runs.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from conftest import FLAVOR_MAJOR, assert_keras_still_fails, flavor_params, keras_handle

from rnnparity.compare import compare
from rnnparity.layout import GATE_ORDER, gate_slice
from rnnparity.lstm import LSTM
from rnnparity.rnn import RecurrentLayer
from rnnparity.suite import matrix, parity
from rnnparity.suite.known_differences import expected_keras_failure


def assert_caught(flavor: str, case: matrix.Case, **corrupt: Any) -> None:
    """The twin corrupted by ``corrupt`` (run_case's twin_weights / twin_overrides) must fail
    ``case`` against Keras. Where Keras cannot run the case (a known Keras failure), Keras must
    still fail there, and the corrupted twin must differ from the correct one instead."""
    handle = keras_handle(flavor)
    failure = expected_keras_failure(case.to_dict(), handle.environment)
    if failure is None:
        broken = parity.run_case(case, handle, **corrupt)
        assert not broken.ok, f"not detected: {broken.message}"
        return
    assert_keras_still_fails(failure, handle, lambda: parity.keras_results(case, handle))
    weights = matrix.make_data(case).weights
    transform = corrupt.get("twin_weights")
    correct = parity.twin_for(case, backend=handle.backend, weights=weights)
    wrong = parity.twin_for(
        case,
        backend=handle.backend,
        weights=transform(weights) if transform else weights,
        overrides=corrupt.get("twin_overrides"),
    )
    call = matrix.make_data(case).calls[0]
    arguments = {"initial_state": call.initial_state, "mask": call.mask}
    assert not compare(correct(call.inputs, **arguments), wrong(call.inputs, **arguments)).ok


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

    def fold_bias(weights: list[np.ndarray]) -> list[np.ndarray]:
        return [weights[0], weights[1], weights[2][0] + weights[2][1]] if use_bias else weights

    assert_caught(flavor, case, twin_weights=fold_bias, twin_overrides={"reset_after": False})


# --------------------------------------------------------------------------- masks, states, h/c order
def _mask_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RecurrentLayer, "_check_mask", lambda self, mask, batch, timesteps: None)


def _mask_inverted(monkeypatch: pytest.MonkeyPatch) -> None:
    """True read as 'padding' (PyTorch's key_padding_mask convention) instead of 'keep'."""
    original = RecurrentLayer._check_mask

    def inverted(self: RecurrentLayer, mask: Any, batch: int, timesteps: int) -> Any:
        checked = original(self, mask, batch, timesteps)
        return None if checked is None else ~checked

    monkeypatch.setattr(RecurrentLayer, "_check_mask", inverted)


def _initial_state_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    original = RecurrentLayer._initial_states
    monkeypatch.setattr(RecurrentLayer, "_initial_states", lambda self, initial_state, batch: original(self, None, batch))


def _initial_state_read_as_c_h(monkeypatch: pytest.MonkeyPatch) -> None:
    original = RecurrentLayer._initial_states

    def reversed_states(self: RecurrentLayer, initial_state: Any, batch: int) -> Any:
        states, *rest = original(self, initial_state, batch)
        return (states[::-1] if initial_state is not None else states), *rest

    monkeypatch.setattr(RecurrentLayer, "_initial_states", reversed_states)


def _returns_c_before_h(monkeypatch: pytest.MonkeyPatch) -> None:
    original = LSTM.__call__

    def swapped(self: LSTM, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        if not self.return_state:
            return result
        output, h, c = result
        return type(result)([output, c, h])

    monkeypatch.setattr(LSTM, "__call__", swapped)


def _reset_state_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RecurrentLayer, "reset_state", lambda self, states=None: None)


def _state_not_carried(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stateful layer that starts every call from zeros (the state is never carried)."""
    original = RecurrentLayer._initial_states

    def fresh(self: RecurrentLayer, initial_state: Any, batch: int) -> Any:
        self._states = None
        return original(self, initial_state, batch)

    monkeypatch.setattr(RecurrentLayer, "_initial_states", fresh)


_STATE_CASE = replace(BASE["lstm"], mask="scattered", initial_state=True, seed=21)
PLAIN_LAYER_MISTAKES = {
    "mask ignored": (_mask_ignored, _STATE_CASE),
    "mask inverted": (_mask_inverted, _STATE_CASE),
    "initial_state ignored": (_initial_state_ignored, _STATE_CASE),
    "LSTM initial_state read as [c, h]": (_initial_state_read_as_c_h, _STATE_CASE),
    "LSTM returns c before h": (_returns_c_before_h, _STATE_CASE),
    "GRU mask ignored": (_mask_ignored, replace(BASE["gru"], mask="right_padded", seed=22)),
    "SimpleRNN initial_state ignored": (_initial_state_ignored, replace(BASE["simple_rnn"], initial_state=True, seed=23)),
    "reset_state ignored": (_reset_state_ignored, replace(BASE["gru"], stateful=True, seed=24)),
    "stateful state not carried": (_state_not_carried, replace(BASE["lstm"], stateful=True, seed=25)),
}


@pytest.mark.parametrize(
    ("flavor", "name"),
    [
        p
        for f in FLAVOR_MAJOR
        for p in flavor_params(f, [(f, n) for n in PLAIN_LAYER_MISTAKES], [f"{f}-{n}" for n in PLAIN_LAYER_MISTAKES])
    ],
)
def test_mask_and_state_mistakes_are_caught(flavor: str, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    install, base = PLAIN_LAYER_MISTAKES[name]
    case = replace(base, keras_version=FLAVOR_MAJOR[flavor])
    assert case.stateful or case.mask != "none" or case.initial_state
    correct = parity.run_case(case, keras_handle(flavor))
    assert correct.ok, correct.message
    install(monkeypatch)
    broken = parity.run_case(case, keras_handle(flavor))
    assert not broken.ok, f"{name} was not detected: {broken.message}"


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
