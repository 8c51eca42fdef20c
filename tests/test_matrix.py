"""The matrix itself: its size and coverage, its data, and that every float32 case can
actually decide parity (float32 rounding of the twin stays well inside the tolerance)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rnnparity.suite import matrix
from rnnparity.suite.parity import conditioning


def test_matrix_has_at_least_2000_cases_and_unique_ids() -> None:
    cases = matrix.all_cases(2) + matrix.all_cases(3)
    assert len(cases) >= 2000
    for version in (2, 3):
        ids = [c.case_id for c in matrix.all_cases(version)]
        assert len(ids) == len(set(ids))


def test_shared_configurations_get_the_same_id_and_data_in_both_versions() -> None:
    """rnnparity diff compares reports from Keras 2 and Keras 3 case by case."""
    keras2 = {c.case_id: c for c in matrix.all_cases(2)}
    keras3 = {c.case_id: c for c in matrix.all_cases(3)}
    shared = set(keras2) & set(keras3)
    assert len(shared) >= 1000
    for case_id in sorted(shared)[::50]:
        a, b = matrix.make_data(keras2[case_id]), matrix.make_data(keras3[case_id])
        for x, y in zip(a.weights + [c.inputs for c in a.calls], b.weights + [c.inputs for c in b.calls]):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("keras_version", [2, 3])
def test_core_matrix_crosses_every_combination(keras_version: int) -> None:
    core = matrix.default_cases(keras_version)
    seen = {
        (c.kind, c.reset_after, c.return_sequences, c.return_state, c.mask, c.go_backwards, c.initial_state, c.stateful, c.dtype)
        for c in core
    }
    expected = {
        (k, ra, *rest)
        for (k, ra), *rest in itertools.product(
            [("lstm", True), ("gru", True), ("gru", False), ("simple_rnn", True)],
            (False, True),
            (False, True),
            matrix.MASK_MODES,
            (False, True),
            (False, True),
            (False, True),
            ("float32", "float64"),
        )
    }
    assert seen == expected
    for attribute, values in {
        "units": {1, 8},
        "timesteps": {1, 9},
        "batch": {1, 5},
        "use_bias": {True, False},
        "recurrent_activation": {"sigmoid", "hard_sigmoid"},
    }.items():
        assert values <= {getattr(c, attribute) for c in core}, attribute
    assert not any(c.time_major for c in core)
    assert any(c.time_major for c in matrix.all_cases(2)) and not any(c.time_major for c in matrix.all_cases(3))


@pytest.mark.parametrize("keras_version", [2, 3])
def test_every_activation_is_swept(keras_version: int) -> None:
    from rnnparity.activations import activations_for

    swept = {c.activation for c in matrix.activation_cases(keras_version)}
    recurrent = {c.recurrent_activation for c in matrix.activation_cases(keras_version)}
    assert swept == recurrent == set(activations_for(keras_version))


def test_weights_are_seeded_random_never_constant() -> None:
    for case in matrix.all_cases(3)[::7]:
        data = matrix.make_data(case)
        for weight in data.weights:
            assert weight.size == 1 or np.unique(weight).size == weight.size, case.case_id
        again = matrix.make_data(case)
        for a, b in zip(data.weights, again.weights):
            np.testing.assert_array_equal(a, b)


def test_masks_include_the_hard_rows() -> None:
    case = matrix.Case("lstm", 3, batch=3, timesteps=6, mask="scattered", seed=4)
    mask = matrix.make_data(case).calls[0].mask
    assert not mask[0, 0] and not mask[1].any()
    padded = matrix.make_data(matrix.Case("lstm", 3, batch=4, timesteps=6, mask="right_padded", seed=4)).calls[0].mask
    assert padded[0].all() and all((np.diff(row.astype(int)) <= 0).all() for row in padded)


FLOAT32 = [c for v in (2, 3) for c in matrix.all_cases(v) if c.dtype == "float32"]


@pytest.mark.parametrize("chunk", range(8))
def test_float32_cases_are_well_conditioned(chunk: int) -> None:
    """A float32 case only proves parity if float32 rounding cannot explain a mismatch: the
    twin in float32 must agree with the twin in float64 (same data) within half the
    tolerance, leaving the other half for Keras's own rounding."""
    for case in FLOAT32[chunk::8]:
        result = conditioning(case)
        assert result.ok, result.message
