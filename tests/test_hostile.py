"""Hostile and extreme input: what the twins do with it, and that it is what Keras does.

* Input dtypes, ranks, layouts and containers: work as Keras works, or raise a clear
  ``ValueError``/``TypeError`` naming the argument, what was expected and what was given.
* Extreme values (+-1e4, 1e-30, subnormals, beyond float32's range): the same saturation as
  Keras within the dtype tolerance (whose absolute floor also absorbs TensorFlow flushing
  subnormals to zero), no NumPy floating-point warning, no NaN where Keras has none.
* NaN and inf propagate exactly as Keras propagates them; a NaN at a masked step reaches
  neither Keras's output nor the twin's.
* Empty batches: the twins return empty outputs; Keras 3's LSTM on TensorFlow raises (a
  known Keras failure in the table, which must keep failing).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
from conftest import FLAVOR_MAJOR, assert_keras_still_fails, flavor_params, keras_handle

import rnnparity
from rnnparity import GRU, LSTM, SimpleRNN, activations, assert_parity
from rnnparity.activations import activations_for
from rnnparity.compare import compare
from rnnparity.rnn import flatten_nested
from rnnparity.suite import keras_adapter, matrix
from rnnparity.suite.known_differences import KNOWN_DIFFERENCES, expected_keras_failure, tolerance_for
from rnnparity.suite.parity import compare_conditioning, twin_for

VARIANTS = [("lstm", True), ("gru", True), ("gru", False), ("simple_rnn", True)]
VARIANT_IDS = ["lstm", "gru-ra", "gru-rb", "simple_rnn"]
FLAVORS = list(FLAVOR_MAJOR)


def _case(kind: str, reset_after: bool = True, keras_version: int = 3, **options) -> matrix.Case:
    defaults = {"units": 4, "input_dim": 3, "timesteps": 6, "batch": 4, "return_sequences": True, "return_state": True}
    return matrix.Case(kind, keras_version, reset_after=reset_after, **{**defaults, **options})


@contextlib.contextmanager
def strict_floating_point() -> Iterator[None]:
    """Any NumPy overflow, invalid-operation or division warning that escapes the twin is an
    error (underflow to zero is the expected result of a tiny value, not a problem)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
            yield


def _params(values: list[tuple], ids: list[str]) -> list:
    return [p for f in FLAVORS for p in flavor_params(f, [(f, *v) for v in values], ids=[f"{f}-{i}" for i in ids])]


def _keras_and_twin(flavor: str, case: matrix.Case, weights: list[np.ndarray]):
    handle = keras_handle(flavor)
    case = replace(case, keras_version=handle.keras_version)
    layer = keras_adapter.build_layer(
        handle, case.kind, case.layer_kwargs(), (case.batch, case.timesteps, case.input_dim), weights
    )
    return handle, layer, twin_for(case, backend=handle.backend, weights=weights)


# --------------------------------------------------------------------------- input types (no Keras)
def _lstm(**options) -> LSTM:
    layer = LSTM(3, return_sequences=True, return_state=True, **options)
    layer.set_weights(matrix.make_data(_case("lstm", units=3, input_dim=2)).weights)
    return layer


X = np.random.default_rng(0).normal(size=(2, 5, 2)).astype(np.float32)

ACCEPTED_INPUTS = {
    "int64": (X * 4).astype(np.int64),
    "int8": (X * 4).astype(np.int8),
    "uint8": np.abs(X * 4).astype(np.uint8),
    "bool": X > 0,
    "float16": X.astype(np.float16),
    "float64": X.astype(np.float64),
    "fortran": np.asfortranarray(X),
    "strided": np.repeat(X, 2, axis=1)[:, ::2],
    "reversed-view": X[:, ::-1][:, ::-1],
    "broadcast": np.broadcast_to(X[:1], X.shape),
    "read-only": np.frombuffer(X.tobytes(), np.float32).reshape(X.shape),
    "nested-list": X.tolist(),
    "tuple": tuple(map(tuple, X.tolist())),
}


@pytest.mark.parametrize("name", list(ACCEPTED_INPUTS))
def test_accepted_inputs_give_the_numbers_of_the_cast_array(name: str) -> None:
    """Any real numeric array, in any layout or container, is cast to the layer dtype (a copy)
    and gives exactly the numbers of that cast array."""
    given = ACCEPTED_INPUTS[name]
    expected = _lstm()(np.ascontiguousarray(np.asarray(given), dtype=np.float32))
    with strict_floating_point():
        result = _lstm()(given)
    assert_parity(expected, result, rtol=0.0, atol=0.0, context=name)


REFUSED_INPUTS = [
    ("strings", np.array([[["a", "b"]] * 5] * 2), TypeError, "inputs must hold real numbers; got dtype <U1"),
    ("bytes", b"abc", TypeError, "inputs must be a numeric array; got bytes"),
    ("str", "x", TypeError, "inputs must be a numeric array; got str"),
    ("objects", X.astype(object), TypeError, "inputs must hold real numbers; got dtype object"),
    ("complex", X.astype(np.complex64), TypeError, "inputs must hold real numbers; got dtype complex64"),
    ("datetime", np.zeros((2, 5, 2), "datetime64[s]"), TypeError, "inputs must hold real numbers; got dtype datetime64[s]"),
    ("ragged", [[[1.0, 2.0]], [[1.0]]], TypeError, "inputs must be a numeric array; could not convert it"),
    ("none", None, TypeError, "inputs must hold real numbers; got dtype object"),
    ("scalar", 3.0, ValueError, "inputs must be rank 3 (batch, timesteps, input_dim); got shape ()"),
    ("rank-2", X[0], ValueError, "inputs must be rank 3 (batch, timesteps, input_dim); got shape (5, 2)"),
    ("rank-4", X[None], ValueError, "inputs must be rank 3 (batch, timesteps, input_dim); got shape (1, 2, 5, 2)"),
    ("input-dim", X[..., :1], ValueError, "inputs have input_dim 1 (last axis)"),
    ("zero-timesteps", X[:, :0], ValueError, "inputs have 0 timesteps (shape (2, 0, 2)); Keras refuses"),
    ("mask-strings", ("mask", np.full((2, 5), "x")), TypeError, "mask must be booleans (or 0/1 numbers); got dtype <U1"),
    ("mask-rank", ("mask", np.ones(5, bool)), ValueError, "mask must have shape (batch, timesteps) = (2, 5); got (5,)"),
    ("state-none", ("initial_state", [None, None]), TypeError, "initial_state (h) must hold real numbers; got dtype object"),
    ("state-bare", ("initial_state", np.zeros((2, 3))), ValueError, "initial_state must hold 2 array(s) ['h', 'c']"),
    ("state-shape", ("initial_state", [np.zeros((2, 3)), np.zeros(3)]), ValueError, "initial_state (c) must have shape (2, 3)"),
    ("state-str", ("initial_state", ["a", "b"]), TypeError, "initial_state (h) must be a numeric array; got str"),
]


@pytest.mark.parametrize(("given", "error", "message"), [r[1:] for r in REFUSED_INPUTS], ids=[r[0] for r in REFUSED_INPUTS])
def test_refused_inputs_raise_a_clear_error(given, error: type[Exception], message: str) -> None:
    layer = _lstm()
    with pytest.raises(error) as info:
        if isinstance(given, tuple) and len(given) == 2 and given[0] in ("mask", "initial_state"):
            layer(X, **{given[0]: given[1]})
        else:
            layer(given)
    assert message in str(info.value)


def test_bad_weights_raise_a_clear_error_and_odd_layouts_work() -> None:
    weights = matrix.make_data(_case("gru", units=3, input_dim=2)).weights
    expected = GRU(3)
    expected.set_weights(weights)
    for odd in (
        [np.asfortranarray(w) for w in weights],
        [w.tolist() for w in weights],
        [w.astype(np.float64) for w in weights],
        [np.repeat(w, 2, axis=-1)[..., ::2] for w in weights],
    ):
        layer = GRU(3)
        layer.set_weights(odd)
        assert_parity(expected(X), layer(X), rtol=0.0, atol=0.0)
    for bad, error, message in (
        ([weights[0].astype(object), *weights[1:]], TypeError, "kernel must hold real numbers; got dtype object"),
        ([weights[0], weights[1].astype(np.complex128), weights[2]], TypeError, "recurrent_kernel must hold real numbers"),
        ([weights[0][None], *weights[1:]], ValueError, "kernel must be 2-D (input_dim, 3 * units); got shape (1, 2, 9)"),
        ((w for w in weights), TypeError, "weights must be a list"),
    ):
        with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
            GRU(3).set_weights(bad)


def test_exact_equality_passes_at_zero_tolerance() -> None:
    same = np.array([0.0, 1.5, -2.0, np.nan, np.inf])
    assert compare(same, same.copy(), rtol=0.0, atol=0.0).ok
    assert not compare(same, same + 1e-300, rtol=0.0, atol=0.0).ok


def test_sparsemax_follows_keras_including_its_oddities() -> None:
    """Keras 3's sparsemax (TensorFlow backend) sorts descending with NaN first, so a row
    holding NaN or inf has an empty support and tau = -1 / 0 = -inf: the result is inf (NaN
    where the input was NaN); the twin does the same with no NumPy warning. Its threshold sums
    the cumulative sums over the support (not the cumulative sum at its end), so the outputs
    need not sum to one: (0.5, 0.2, 0.1) -> (1/6, 0, 0). The twin computes Keras's formula."""
    rows = np.array([[np.inf, 1.0, 2.0], [np.nan, 1.0, 2.0], [-np.inf, 0.0, 1.0], [0.5, 0.2, 0.1]], np.float32)
    with strict_floating_point():
        result = activations.sparsemax(rows)
    np.testing.assert_array_equal(result[0], [np.inf, np.inf, np.inf])
    np.testing.assert_array_equal(result[1], [np.nan, np.inf, np.inf])
    np.testing.assert_array_equal(result[2], [0.0, 0.0, 1.0])
    np.testing.assert_allclose(result[3], [1 / 6, 0.0, 0.0], rtol=1e-6)


# --------------------------------------------------------------------------- extreme values vs Keras
SUBNORMAL = {"float32": 1e-40, "float64": 1e-310}
REGIMES = {
    # name: (input scale, weight scale, activation)
    "inputs-1e4": (1e4, 1.0, "tanh"),
    "weights-1e4": (1.0, 1e4, "tanh"),
    "both-1e4": (1e4, 1e4, "tanh"),
    "inputs-1e-30": (1e-30, 1.0, "tanh"),
    "weights-1e-30": (1.0, 1e-30, "tanh"),
    "subnormal-inputs": ("subnormal", 1.0, "tanh"),
    "subnormal-weights": (1.0, "subnormal", "tanh"),
    "relu-overflow": (1e4, 1e4, "relu"),
}
EXTREME = [(v, dtype, regime) for v in VARIANTS for dtype in ("float32", "float64") for regime in REGIMES]


@pytest.mark.parametrize(
    ("flavor", "variant", "dtype", "regime"),
    _params(EXTREME, [f"{VARIANT_IDS[VARIANTS.index(v)]}-{d}-{r}" for v, d, r in EXTREME]),
)
def test_extreme_values_saturate_as_keras_does(flavor: str, variant: tuple[str, bool], dtype: str, regime: str) -> None:
    kind, reset_after = variant
    input_scale, weight_scale, activation = REGIMES[regime]
    case = _case(
        kind, reset_after, dtype=dtype, activation=activation, mask="scattered", initial_state=True, timesteps=12, seed=11
    )
    data = matrix.make_data(case)
    scale = {"subnormal": SUBNORMAL[dtype]}
    weights = [(w.astype(np.float64) * scale.get(weight_scale, weight_scale)).astype(dtype) for w in data.weights]
    call = data.calls[0]
    inputs = (call.inputs.astype(np.float64) * scale.get(input_scale, input_scale)).astype(dtype)
    handle, layer, twin = _keras_and_twin(flavor, case, weights)
    expected = keras_adapter.call_layer(handle, layer, inputs, call.initial_state, call.mask)
    with strict_floating_point():
        result = twin(inputs, initial_state=call.initial_state, mask=call.mask)
    if regime == "relu-overflow":
        # Unbounded growth: a float32 SimpleRNN overflows to inf (then NaN) where float64 does
        # not, so no float64 reference can judge it; Keras and the twin must agree on every
        # finite value and on where inf and NaN are.
        if kind == "simple_rnn" and dtype == "float32":
            assert not all(np.isfinite(np.asarray(r)).all() for r in result), "the regime no longer overflows"
    elif dtype == "float32":
        # The float32 case must be decidable: float32 rounding alone must stay within half the tolerance.
        high = twin_for(replace(case, keras_version=handle.keras_version), weights=weights, overrides={"dtype": "float64"})
        low = twin_for(replace(case, keras_version=handle.keras_version), weights=weights)
        states = call.initial_state
        guard = compare_conditioning(
            low(inputs, initial_state=states, mask=call.mask), high(inputs, initial_state=states, mask=call.mask), dtype
        )
        assert guard.ok, guard.message
    rtol, atol = tolerance_for(dtype, handle.backend)
    assert_parity(expected, result, dtype=dtype, rtol=rtol, atol=atol, context=f"{flavor} {case.case_id} {regime}")


# --------------------------------------------------------------------------- NaN and inf vs Keras
def _poisoned(case: matrix.Case) -> tuple[np.ndarray, np.ndarray]:
    """Inputs with NaN (row 0), +inf (row 1) and -inf (row 2) at unmasked steps, and NaN at a
    masked step of row 3 (its only poison)."""
    call = matrix.make_data(case).calls[0]
    inputs = call.inputs.copy()
    mask = np.ones((case.batch, case.timesteps), bool)
    mask[3, 2:4] = False
    inputs[0, 1, 0] = np.nan
    inputs[1, 2, 1] = np.inf
    inputs[2, 3, 2] = -np.inf
    inputs[3, 2:4, :] = np.nan
    return inputs, mask


NON_FINITE = [(v, dtype) for v in VARIANTS for dtype in ("float32", "float64")]


@pytest.mark.parametrize(
    ("flavor", "variant", "dtype"), _params(NON_FINITE, [f"{VARIANT_IDS[VARIANTS.index(v)]}-{d}" for v, d in NON_FINITE])
)
def test_nan_and_inf_propagate_as_in_keras(flavor: str, variant: tuple[str, bool], dtype: str) -> None:
    kind, reset_after = variant
    case = _case(kind, reset_after, dtype=dtype, seed=5)
    inputs, mask = _poisoned(case)
    handle, layer, twin = _keras_and_twin(flavor, case, matrix.make_data(case).weights)
    expected = keras_adapter.call_layer(handle, layer, inputs, None, mask)
    result = twin(inputs, mask=mask)
    rtol, atol = tolerance_for(dtype, handle.backend)
    assert_parity(expected, result, dtype=dtype, rtol=rtol, atol=atol, context=f"{flavor} {case.case_id}")
    # Keras's NaN at a masked step does not reach its output, nor the twin's.
    assert all(np.isfinite(np.asarray(e)[3]).all() for e in expected)
    assert all(np.isfinite(np.asarray(r)[3]).all() for r in result)
    assert np.isnan(np.asarray(expected[0])[0, -1]).all()  # an unmasked NaN poisons the rest of its row


def _onednn_on() -> bool:
    try:
        from tensorflow.python.util import _pywrap_util_port  # TensorFlow's own switch
    except ImportError:
        return False
    return bool(_pywrap_util_port.IsMklEnabled())


SOFTMAX_NON_FINITE = next(d for d in KNOWN_DIFFERENCES if d.id == "onednn-softmax-non-finite")


def _known_softmax_difference_only(expected, result) -> bool:
    """Where the two differ, Keras (oneDNN) has a finite number and the twin NaN; elsewhere they match."""
    for keras_value, twin_value in zip(map(np.asarray, expected), map(np.asarray, result)):
        known = np.isnan(twin_value) & np.isfinite(keras_value)
        keep = ~known
        if not compare(keras_value[keep], twin_value[keep], dtype="float32").ok:
            return False
    return True


SWEEP = [
    (role, name, major)
    for major in (3, 2)
    for role in ("activation", "recurrent_activation")
    for name in sorted(activations_for(major))
]


@pytest.mark.parametrize(
    ("flavor", "role", "name"),
    [
        p
        for flavor, major in FLAVOR_MAJOR.items()
        for p in flavor_params(
            flavor,
            [(flavor, r, n) for r, n, m in SWEEP if m == major],
            ids=[f"{flavor}-{r}-{n}" for r, n, m in SWEEP if m == major],
        )
    ],
)
def test_every_activation_propagates_non_finite_values_as_keras(flavor: str, role: str, name: str) -> None:
    """Every activation, as SimpleRNN's activation or as a GRU's gate, float32, on the poisoned
    inputs. Where the known difference onednn-softmax-non-finite applies (data, not a skip),
    the only differences allowed are the ones it describes."""
    kind = "simple_rnn" if role == "activation" else "gru"
    case = _case(kind, dtype="float32", seed=9, **{role: name})
    inputs, mask = _poisoned(case)
    handle, layer, twin = _keras_and_twin(flavor, case, matrix.make_data(case).weights)
    expected = keras_adapter.call_layer(handle, layer, inputs, None, mask)
    result = twin(inputs, mask=mask)
    comparison = compare(expected, result, dtype="float32", context=f"{flavor} {case.case_id}")
    assert SOFTMAX_NON_FINITE.matches_case is not None
    if not comparison.ok and SOFTMAX_NON_FINITE.matches_case({**case.to_dict(), "non_finite_inputs": True}) and _onednn_on():
        assert _known_softmax_difference_only(expected, result), comparison.message
        return
    assert comparison.ok, comparison.message


@pytest.mark.parametrize("flavor", [p for f in FLAVORS for p in flavor_params(f, [(f,)], ids=[f])])
def test_onednn_softmax_difference_still_shows(flavor: str) -> None:
    """The known difference onednn-softmax-non-finite, on a step whose pre-activations are
    (inf, -inf, inf, finite): oneDNN's float32 softmax gives (NaN, 0, NaN, 0), the IEEE result
    (TensorFlow's own kernel, the twin) is NaN throughout. With oneDNN off they agree."""
    case = _case("simple_rnn", units=4, input_dim=2, timesteps=3, batch=2, activation="softmax", dtype="float32", seed=2)
    weights = matrix.make_data(case).weights
    weights[0][0] = np.array([1.5, -0.5, 0.75, 0.0], np.float32)  # feature 0 reaches the units with mixed signs (and not at all)
    inputs = matrix.make_data(case).calls[0].inputs
    inputs[0, 1, 0] = np.inf
    handle, layer, twin = _keras_and_twin(flavor, case, weights)
    expected = keras_adapter.call_layer(handle, layer, inputs)
    result = twin(inputs)
    assert np.isnan(result[0][0, 1]).all()
    if _onednn_on():
        assert np.isfinite(expected[0][0, 1]).any(), f"{SOFTMAX_NON_FINITE.id} no longer shows ({handle.describe()})"
        assert _known_softmax_difference_only(expected, result)
    else:
        assert_parity(expected, result)


# --------------------------------------------------------------------------- dtypes and empty batches vs Keras
INPUT_DTYPES = ["int32", "int64", "uint8", "bool", "float16", "float64", "float64-beyond-float32"]


# What TensorFlow says when Keras 2 hands it integer or bool inputs for a float kernel.
KERAS2_REFUSES = {
    "int32": r"cannot compute MatMul as input #1\(zero-based\) was expected to be a int32 tensor but is a float tensor",
    "int64": r"cannot compute MatMul as input #1\(zero-based\) was expected to be a int64 tensor but is a float tensor",
    "uint8": r"Could not find device for node: \{\{node MatMul\}\} = MatMul\[T=DT_UINT8",
    "bool": r"Value for attr 'T' of bool is not in the list of allowed values",
}


@pytest.mark.parametrize(("flavor", "dtype"), _params([(d,) for d in INPUT_DTYPES], INPUT_DTYPES))
def test_non_float32_inputs_against_keras(flavor: str, dtype: str) -> None:
    """Keras 3 casts any real input to the layer's dtype, as the twins do (float64 values
    beyond float32's range become inf, silently). Keras 2 (tf_keras) casts floats but refuses
    integer and bool inputs (a TensorFlow MatMul error); the twins cast those too, and give
    the numbers Keras 2 gives for the cast array."""
    case = _case("gru", seed=3)
    inputs = matrix.make_data(case).calls[0].inputs * 3
    if dtype == "float64-beyond-float32":
        inputs = inputs.astype(np.float64)
        inputs[0, 2, 1] = 1e39
        inputs[1, 1, 0] = -1e300
    else:
        inputs = inputs.astype(dtype)
    handle, layer, twin = _keras_and_twin(flavor, case, matrix.make_data(case).weights)
    with strict_floating_point():
        result = twin(inputs)
    if handle.keras_version == 2 and inputs.dtype.kind in "biu":
        import tensorflow as tf

        with pytest.raises(tf.errors.OpError, match=KERAS2_REFUSES[inputs.dtype.name]):
            keras_adapter.call_layer(handle, layer, inputs)
        expected = keras_adapter.call_layer(handle, layer, inputs.astype(np.float32))
    else:
        expected = keras_adapter.call_layer(handle, layer, inputs)
    assert_parity(expected, result, context=f"{flavor} {dtype}")


@pytest.mark.parametrize(("flavor", "variant"), _params([(v,) for v in VARIANTS], VARIANT_IDS))
def test_empty_batch_against_keras(flavor: str, variant: tuple[str, bool]) -> None:
    kind, reset_after = variant
    case = _case(kind, reset_after, batch=0, mask="none")
    handle, layer, twin = _keras_and_twin(flavor, case, matrix.make_data(replace(case, batch=1)).weights)
    inputs = np.zeros((0, case.timesteps, case.input_dim), np.float32)
    result = twin(inputs)
    assert result[0].shape == (0, case.timesteps, case.units) and all(s.shape == (0, case.units) for s in result[1:])
    failure = expected_keras_failure(replace(case, keras_version=handle.keras_version).to_dict(), handle.environment)
    if failure is not None:
        assert_keras_still_fails(failure, handle, lambda: keras_adapter.call_layer(handle, layer, inputs))
        return  # the twin's empty results were checked above
    assert_parity(keras_adapter.call_layer(handle, layer, inputs), result)


@pytest.mark.parametrize("flavor", [p for f in FLAVORS for p in flavor_params(f, [(f,)], ids=[f])])
def test_zero_timesteps_are_refused_by_keras_too(flavor: str) -> None:
    case = _case("lstm")
    handle, layer, twin = _keras_and_twin(flavor, case, matrix.make_data(case).weights)
    inputs = np.zeros((2, 0, case.input_dim), np.float32)
    with pytest.raises(ValueError, match="0 timesteps"):
        twin(inputs)
    import tensorflow as tf

    with pytest.raises(tf.errors.InvalidArgumentError, match=r"slice index 0 of dimension [01] out of bounds"):
        keras_adapter.call_layer(handle, layer, inputs)


# --------------------------------------------------------------------------- compositions leave arrays alone
def test_compositions_never_modify_the_callers_arrays() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 5, 2)).astype(np.float32)
    mask = rng.random((3, 5)) < 0.7
    weights = matrix.random_weights(rng, "lstm", 3, 2) + matrix.random_weights(rng, "lstm", 3, 2)
    states = [rng.normal(size=(3, 3)).astype(np.float32) for _ in range(4)]
    stack_weights = matrix.random_weights(rng, "gru", 4, 2) + matrix.random_weights(rng, "simple_rnn", 2, 4)
    arrays = [x, mask, *weights, *states, *stack_weights]
    copies = [a.copy() for a in arrays]
    for array in arrays:
        array.flags.writeable = False
    both = rnnparity.Bidirectional(LSTM(3, return_sequences=True, return_state=True, stateful=True))
    both.set_weights(weights)
    outputs = [*both(x, initial_state=states, mask=mask), *both(x, mask=mask)]
    stack = rnnparity.RNN([rnnparity.GRUCell(4), rnnparity.SimpleRNNCell(2)], return_sequences=True, return_state=True)
    stack.set_weights(stack_weights)
    stack_states = [np.ascontiguousarray(states[0][:, :1].repeat(4, axis=1)), states[1][:, :2]]
    for state in stack_states:
        state.flags.writeable = False
    arrays += stack_states
    copies += [state.copy() for state in stack_states]
    outputs += flatten_nested(stack(x, initial_state=[[stack_states[0]], [stack_states[1]]], mask=mask))
    for array, copy in zip(arrays, copies):
        np.testing.assert_array_equal(array, copy)
    for output in outputs:
        assert not any(np.shares_memory(output, a) for a in arrays)


def test_simple_rnn_and_gru_keep_the_layer_dtype_for_any_input() -> None:
    for cls in (GRU, SimpleRNN):
        layer = cls(2, dtype="float64")
        layer.set_weights(matrix.make_data(_case(cls.cell_class.kind, units=2, input_dim=2)).weights)
        assert layer(X.astype(np.float16)).dtype == np.float64
        assert layer((X > 0).astype(np.int8)).dtype == np.float64
