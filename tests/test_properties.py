"""Properties of the twins that need no Keras, on random configurations (Hypothesis).

Each property holds for every configuration the strategy draws; a failure shrinks to a
minimal one and prints it. Under the default profile the examples are fixed (derandomized);
``--hypothesis-profile=rnnparity-fuzz`` draws 10,000 fresh ones per property.

* a per-step cell loop equals the whole sequence;
* ``go_backwards`` equals reversing the input (and the mask);
* stateful calls over chunks equal one call (states always; outputs wherever the chunk has
  seen an unmasked step, since a call starts its repeated "previous output" afresh);
* outputs and ``h`` stay within the activation's range (with zeros and the initial states);
* a NaN at a masked step changes nothing;
* float32 and float64 agree to the float32 tolerance, on the well-conditioned domain;
* the caller's arrays are never modified (all of them read-only), and no result shares
  memory with them.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st
from strategies import WELL_CONDITIONED, layer_cases

from rnnparity import assert_parity
from rnnparity.compare import compare
from rnnparity.suite import matrix
from rnnparity.suite.parity import conditioning, twin_for

KERAS_VERSIONS = st.sampled_from((3, 2))


def _cases(**kwargs) -> st.SearchStrategy[matrix.Case]:
    return KERAS_VERSIONS.flatmap(lambda version: layer_cases(version, **kwargs))


def _decidable(case: matrix.Case) -> None:
    """Two computations of the same twin in the same dtype can only be required to agree
    within the tolerance where rounding is not amplified past it (parity.conditioning)."""
    assume(conditioning(case).ok)


def _flat(result) -> list[np.ndarray]:
    return list(result) if isinstance(result, (list, tuple)) else [result]


@given(case=_cases(stateful=False, go_backwards=False, time_major=False, masks=("none",)))
def test_cell_steps_equal_the_whole_sequence(case: matrix.Case) -> None:
    _decidable(case)
    data = matrix.make_data(case)
    call = data.calls[0]
    layer = twin_for(case, overrides={"return_sequences": True, "return_state": True})
    whole = _flat(layer(call.inputs, initial_state=call.initial_state))
    states = call.initial_state or [np.zeros((case.batch, case.units), case.dtype) for _ in range(layer.cell.n_states)]
    steps = []
    for t in range(case.timesteps):
        y, states = layer.cell(call.inputs[:, t], states)
        steps.append(y)
    assert_parity(whole[0], np.stack(steps, axis=1), context=f"{case.case_id} outputs")
    assert_parity(whole[1:], list(states), context=f"{case.case_id} final states")


@given(case=_cases(stateful=False, go_backwards=False, time_major=False))
def test_go_backwards_equals_reversed_inputs(case: matrix.Case) -> None:
    _decidable(case)
    call = matrix.make_data(case).calls[0]
    forwards = twin_for(case)
    backwards = twin_for(replace(case, go_backwards=True))
    mask = None if call.mask is None else call.mask[:, ::-1]
    assert_parity(
        forwards(call.inputs[:, ::-1], initial_state=call.initial_state, mask=mask),
        backwards(call.inputs, initial_state=call.initial_state, mask=call.mask),
        context=case.case_id,
    )


@given(case=_cases(stateful=False, go_backwards=False, time_major=False), data=st.data())
def test_stateful_chunks_equal_one_call(case: matrix.Case, data: st.DataObject) -> None:
    _decidable(case)
    call = matrix.make_data(case).calls[0]
    cuts = sorted(data.draw(st.sets(st.integers(1, case.timesteps - 1), max_size=4), label="cuts")) if case.timesteps > 1 else []
    bounds = [0, *cuts, case.timesteps]
    whole = _flat(twin_for(replace(case, return_sequences=True, return_state=True))(call.inputs, mask=call.mask))
    chunked = twin_for(replace(case, return_sequences=True, return_state=False, stateful=True))
    for a, b in zip(bounds, bounds[1:]):
        mask = None if call.mask is None else call.mask[:, a:b]
        piece = chunked(call.inputs[:, a:b], mask=mask)
        expected = whole[0][:, a:b]
        if mask is not None:
            # A call starts afresh: before its first unmasked step, a masked step outputs zeros
            # (TensorFlow backend), not the output carried from the previous chunk.
            started = np.cumsum(mask, axis=1) > 0
            expected = np.where(started[..., None], expected, 0)
        assert_parity(expected, piece, context=f"{case.case_id} steps {a}:{b}")
    assert_parity(whole[1:], chunked.states, context=f"{case.case_id} carried states")


# Ranges of the activations with a bounded side (Keras's definitions); None = unbounded.
RANGES = {
    "tanh": (-1.0, 1.0),
    "sigmoid": (0.0, 1.0),
    "hard_sigmoid": (0.0, 1.0),
    "softsign": (-1.0, 1.0),
    "relu": (0.0, None),
    "relu6": (0.0, 6.0),
    "elu": (-1.0, None),
    "selu": (-1.6732632423543772 * 1.0507009873554805, None),
    "softplus": (0.0, None),
    "softmax": (0.0, 1.0),
    "hard_tanh": (-1.0, 1.0),
    "sparse_sigmoid": (0.0, 1.0),
    "log_sigmoid": (None, 0.0),
    "celu": (-1.0, None),
    "sparsemax": (0.0, 1.0),
}


@given(case=_cases(activations=tuple(RANGES)))
def test_outputs_stay_in_the_activations_range(case: matrix.Case) -> None:
    """SimpleRNN: h = activation(...); LSTM: h = o * activation(c) with the gate o in [0, 1];
    GRU: h is a convex mix of h_tm1 and activation(...). Masked steps repeat zeros or earlier
    outputs; a fully masked row returns its initial states. So every output and h lies in the
    hull of the activation's range, 0 and the initial h (up to rounding of a few ulps)."""
    assume(case.activation in RANGES)
    data = matrix.make_data(case)
    twin = twin_for(replace(case, return_sequences=True, return_state=True))
    low, high = RANGES[case.activation]
    initial_h = [call.initial_state[0] for call in data.calls if call.initial_state is not None]
    lows = [0.0, *(float(h.min()) for h in initial_h)] + ([low] if low is not None else [])
    highs = [0.0, *(float(h.max()) for h in initial_h)] + ([high] if high is not None else [])
    slack = 8 * float(np.finfo(case.dtype).eps)
    bottom = None if low is None else min(lows) - slack * max(1.0, abs(min(lows)))
    top = None if high is None else max(highs) + slack * max(1.0, abs(max(highs)))
    for number, call in enumerate(data.calls):
        if call.reset_before:
            twin.reset_state()
        output, h, *_ = twin(call.inputs, initial_state=call.initial_state, mask=call.mask)
        for name, value in (("output", output), ("h", h)):
            assert not np.isnan(value).any(), f"{case.case_id} call {number}: NaN in {name}"
            if bottom is not None:
                assert value.min() >= bottom, f"{case.case_id} call {number}: {name} {value.min()!r} < {bottom!r}"
            if top is not None:
                assert value.max() <= top, f"{case.case_id} call {number}: {name} {value.max()!r} > {top!r}"


@given(case=_cases(masks=("right_padded", "scattered", "scattered_zero_output")))
def test_nan_at_masked_steps_changes_nothing(case: matrix.Case) -> None:
    data = matrix.make_data(case)
    clean, poisoned = twin_for(case), twin_for(case)
    for number, call in enumerate(data.calls):
        if call.reset_before:
            clean.reset_state()
            poisoned.reset_state()
        assert call.mask is not None
        nan_inputs = call.inputs.copy()
        nan_inputs[~call.mask] = np.nan  # every feature of every masked step (mask and inputs share their layout)
        expected = clean(call.inputs, initial_state=call.initial_state, mask=call.mask)
        result = poisoned(nan_inputs, initial_state=call.initial_state, mask=call.mask)
        assert_parity(expected, result, rtol=0.0, atol=0.0, context=f"{case.case_id} call {number}")


@given(case=_cases(activations=WELL_CONDITIONED, input_scales=(1.5, 0.5), dtypes=("float32",)))
def test_float32_agrees_with_float64_to_the_float32_tolerance(case: matrix.Case) -> None:
    """On the well-conditioned domain (bounded activations with slope <= 1, gate functions,
    the matrix's weight scales, inputs at scale <= 1.5, every size the fuzz draws), the
    float32 twin equals the float64 twin within the float32 tolerance."""
    data = matrix.make_data(case)
    low = twin_for(case)
    high = twin_for(case, overrides={"dtype": "float64"})
    for number, call in enumerate(data.calls):
        if call.reset_before:
            low.reset_state()
            high.reset_state()
        result = compare(
            high(call.inputs, initial_state=call.initial_state, mask=call.mask),
            low(call.inputs, initial_state=call.initial_state, mask=call.mask),
            dtype="float32",
            context=f"{case.case_id} call {number}",
            check_dtype=False,  # float32 values against a float64 reference
        )
        assert result.ok, result.message


@given(case=_cases())
def test_the_callers_arrays_are_never_modified(case: matrix.Case) -> None:
    data = matrix.make_data(case)
    arrays = [*data.weights]
    for call in data.calls:
        arrays += [call.inputs, *(call.initial_state or []), *([call.mask] if call.mask is not None else [])]
    copies = [a.copy() for a in arrays]
    for array in arrays:
        array.flags.writeable = False  # any write into them raises
    twin = twin_for(case, weights=data.weights)
    for call in data.calls:
        if call.reset_before:
            twin.reset_state()
        result = _flat(twin(call.inputs, initial_state=call.initial_state, mask=call.mask))
        for value in result:
            assert value.flags.writeable
            assert not any(np.shares_memory(value, array) for array in arrays), case.case_id
    for weight in twin.get_weights():
        assert not any(np.shares_memory(weight, array) for array in arrays), case.case_id
    for array, copy in zip(arrays, copies):
        np.testing.assert_array_equal(array, copy)
