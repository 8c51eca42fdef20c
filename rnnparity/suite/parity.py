"""Run one matrix case against an installed Keras and its twin, and compare every result.

Needs Keras (through :mod:`rnnparity.suite.keras_adapter`); used by the test suite and by
``rnnparity check`` so both prove the same thing the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rnnparity.compare import DEFAULT_TOLERANCES, Comparison, compare
from rnnparity.rnn import RecurrentLayer, flatten_nested
from rnnparity.suite import keras_adapter
from rnnparity.suite.conv_matrix import ConvCase, conv_twin, make_conv_data
from rnnparity.suite.known_differences import tolerance_for
from rnnparity.suite.matrix import Case, make_data
from rnnparity.suite.report import data_checksums
from rnnparity.suite.wrapper_matrix import WrapperCase, make_wrapper_data, wrapper_twin
from rnnparity.twin_classes import TWIN_CLASSES


@dataclass
class CaseResult:
    case: Case | WrapperCase | ConvCase
    ok: bool
    max_abs: float
    max_rel: float
    message: str
    tolerance_used: float = 0.0
    keras_outputs: list[np.ndarray] = field(default_factory=list, repr=False)
    checksums: dict[str, str] = field(default_factory=dict, repr=False)
    twin_outputs: list[np.ndarray] = field(default_factory=list, repr=False)


def _flatten(value: Any) -> list[np.ndarray]:
    return list(value) if isinstance(value, (tuple, list)) else [value]


def twin_for(
    case: Case,
    *,
    backend: str | None = None,
    weights: list[np.ndarray] | None = None,
    overrides: dict[str, Any] | None = None,
) -> RecurrentLayer:
    """The twin of ``case``'s layer with its seeded weights (or ``weights``) loaded.

    With ``backend`` given, the twin emulates that Keras backend and its activations are
    resolved for it (:func:`keras_adapter.twin_activations`); without, it needs NumPy only.
    ``overrides`` replace constructor arguments last.
    """
    kwargs: dict[str, Any] = {**case.layer_kwargs(), "keras_version": case.keras_version}
    if backend is not None:
        kwargs = keras_adapter.twin_activations({**kwargs, "backend": backend}, backend)
    twin = TWIN_CLASSES[case.kind](**{**kwargs, **(overrides or {})})
    twin.set_weights(make_data(case).weights if weights is None else weights)
    return twin


# float32's unit roundoff over float64's: 2**-23 / 2**-52.
ROUNDOFF_RATIO = 2.0**29


def conditioning(case: Case, share: float = 0.5, perturbations: int = 0) -> Comparison:
    """Whether ``case`` can decide parity at all in its dtype, judged on the twin alone (NumPy
    only): the twin run in float32 against the twin run in float64 on the same data.

    * float32 case: the two must agree within ``share`` of the float32 tolerance (default
      half) — the rest is left for Keras's own rounding.
    * float64 case: the float32 run estimates how much the configuration amplifies rounding
      (to first order, errors scale with the unit roundoff); scaled down by 2**29 to float64's
      roundoff, that must stay within half the float64 tolerance, i.e. the float32 run must
      agree within 2**29 times half the float64 tolerance (rtol 0.027, atol 2.7e-4).

    One float32 run is one sample of how rounding falls, and it can be a lucky one: a
    recurrence through kinks (``hard_sigmoid``'s clip, ``celu``) may amplify one rounding
    pattern little and the next a lot. ``perturbations`` adds that many float32 runs on
    data whose every weight, input and initial-state element is moved one float32 ulp up or
    down at random (seeded; see :func:`ulp_perturbed`), all compared with the unperturbed
    float64 run; the worst decides. The long fuzz found a GRU whose one float32 run used
    0.07x the tolerance while Keras's used 1.2x; eight perturbed runs used 0.12x-1.2x.

    When this fails, rounding alone, amplified by the recurrence (an expanding one, or long
    float32 dot products), could explain a mismatch with Keras, so the case proves nothing in
    its dtype. Fuzzing rejects such cases instead of widening the tolerance; every float32
    matrix case passes it (tests/test_matrix.py). The float64 estimate is first-order only: a
    float32 run that saturates or overflows where float64 does not can hide (or invent)
    sensitivity, which is why the fuzz keeps gates to functions with values in [0, 1].
    """
    nudges = perturbation_nudges(perturbations, case.seed)
    data = make_data(case)
    high = twin_for(case, weights=data.weights, overrides={"dtype": "float64"})
    expected = []
    for call in data.calls:
        if call.reset_before:
            high.reset_state()
        expected.append(high(call.inputs, initial_state=call.initial_state, mask=call.mask))
    worst: Comparison | None = None
    for run, nudge in enumerate(nudges):
        low = twin_for(case, weights=nudge(data.weights), overrides={"dtype": "float32"})
        for number, (call, b) in enumerate(zip(data.calls, expected)):
            if call.reset_before:
                low.reset_state()
            initial_state = nudge(call.initial_state)  # drawn before the inputs, as in the measured runs
            a = low(nudge(call.inputs), initial_state=initial_state, mask=call.mask)
            label = f"{case.case_id} call {number}" + (f" perturbation {run}" if run else "")
            result = compare_conditioning(a, b, case.dtype, context=label, share=share)
            if not result.ok:
                return result
            if worst is None or result.tolerance_used > worst.tolerance_used:
                worst = result
    assert worst is not None
    return worst


def perturbation_nudges(perturbations: int, seed: int) -> list[Callable[[Any], Any]]:
    """The data transforms of :func:`conditioning`'s float32 runs: the identity, then
    ``perturbations`` random one-ulp perturbations (:func:`ulp_perturbed`, one generator seeded
    with ``seed``). Each maps an array, or nested lists/tuples of arrays, and leaves None."""
    if isinstance(perturbations, bool) or not isinstance(perturbations, int) or perturbations < 0:
        raise ValueError(f"perturbations must be a non-negative integer; got {perturbations!r}")
    rng = np.random.default_rng(seed)

    def perturb(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, (list, tuple)):
            return type(value)(perturb(v) for v in value)
        return ulp_perturbed(value, rng)

    return [lambda value: value] + [perturb] * perturbations


def ulp_perturbed(array: Any, rng: np.random.Generator) -> np.ndarray:
    """``array`` in float32 with every element moved one float32 ulp up or down, at random:
    the size of the rounding error a float32 computation makes when it stores a value."""
    array = np.asarray(array, dtype=np.float32)
    up = rng.random(array.shape) < 0.5
    return np.where(up, np.nextafter(array, np.float32(np.inf)), np.nextafter(array, np.float32(-np.inf)))


def compare_conditioning(
    float32_result: Any, float64_result: Any, dtype: str, context: str = "", share: float = 0.5
) -> Comparison:
    """The :func:`conditioning` rule for any twin: ``float32_result`` and ``float64_result`` are
    the same twin's results (same data) computed in float32 and in float64; ``dtype`` is the
    dtype the case is compared with Keras in; ``share`` the part of the float32 tolerance the
    twin's own float32 rounding may use."""
    rtol, atol = DEFAULT_TOLERANCES[dtype]
    scale = share if dtype == "float32" else 0.5 * ROUNDOFF_RATIO
    return compare(
        float64_result,
        float32_result,
        dtype=dtype,
        rtol=rtol * scale,
        atol=atol * scale,
        context=f"{context} conditioning".strip(),
        check_dtype=False,
    )


# How much further than Keras's own float32 result (or than one float32 tolerance, if that is
# more) the twin's float32 result may lie from float64 Keras for a float32 mismatch to count
# as rounding. Rounding samples of one configuration differ: the long fuzz saw Keras's float32
# result 3.6x further from float64 than the twin's, and one-ulp perturbations of one case
# move the twin's between 0.07x and 1.2x the tolerance.
ROUNDING_SLACK = 4.0


def rounding_explains(
    keras_float32: Any, twin_float32: Any, keras_float64: Any, context: str = "", slack: float = ROUNDING_SLACK
) -> tuple[bool, str]:
    """Whether a float32 mismatch between Keras and the twin can be float32 rounding, judged
    against float64 *Keras*, so that the twin's float32 path never vouches for itself.

    The three arguments are the same results (nested as :func:`compare` takes them) of one
    configuration on the same data: Keras in float32, the twin in float32 and Keras in float64
    (which the twin must match in float64 separately). Each float32 result's distance from
    float64 Keras is measured in float32 tolerances; rounding explains the mismatch when the
    twin's distance is at most ``slack`` times Keras's own, or ``slack`` tolerances if Keras's is
    below one. A twin whose float32 path alone is wrong (a 1.001 scale, a kernel rounded to
    float16) lands tens of tolerances away while Keras's float32 stays within one: not
    rounding. Returns the verdict and a line with both distances."""
    keras_spread = compare(keras_float64, keras_float32, dtype="float32", check_dtype=False, check_container=False)
    twin_spread = compare(keras_float64, twin_float32, dtype="float32", check_dtype=False, check_container=False)
    bound = slack * max(1.0, keras_spread.tolerance_used)
    ok = twin_spread.tolerance_used <= bound
    prefix = f"[{context}] " if context else ""
    message = (
        f"{prefix}from float64 Keras, in float32 tolerances: Keras float32 {keras_spread.tolerance_used:.3g}x, "
        f"twin float32 {twin_spread.tolerance_used:.3g}x (rounding allows up to {bound:.3g}x): "
        + ("float32 rounding can explain the mismatch" if ok else "more than rounding: the twin's float32 path differs")
    )
    return ok, message


def run_case(
    case: Case,
    handle: keras_adapter.KerasHandle,
    *,
    twin_weights: Callable[[list[np.ndarray]], list[np.ndarray]] | None = None,
    twin_overrides: dict[str, Any] | None = None,
) -> CaseResult:
    """Feed ``case``'s seeded data to a Keras layer and to its twin; compare every call.

    ``twin_weights`` and ``twin_overrides`` deliberately corrupt the twin (negative tests).
    """
    if case.keras_version != handle.keras_version:
        raise ValueError(f"case {case.case_id} is for Keras {case.keras_version}; got {handle.describe()}")
    data = make_data(case)
    checksums = data_checksums(data)
    weights = twin_weights(data.weights) if twin_weights else data.weights
    twin = twin_for(case, backend=handle.backend, weights=weights, overrides=twin_overrides)
    first = data.calls[0].inputs
    layer = keras_adapter.build_layer(handle, case.kind, case.layer_kwargs(), first.shape, data.weights)

    rtol, atol = tolerance_for(case.dtype, handle.backend, case.to_dict())
    comparisons = []
    outputs: list[np.ndarray] = []
    twin_outputs: list[np.ndarray] = []
    for number, call in enumerate(data.calls):
        if call.reset_before:
            keras_adapter.reset_layer_state(handle, layer)
            twin.reset_state()
        expected = keras_adapter.call_layer(handle, layer, call.inputs, call.initial_state, call.mask)
        actual = twin(call.inputs, initial_state=call.initial_state, mask=call.mask)
        outputs.extend(_flatten(expected))
        twin_outputs.extend(_flatten(actual))
        comparisons.append(
            compare(expected, actual, dtype=case.dtype, rtol=rtol, atol=atol, context=f"{case.case_id} call {number}")
        )
    if case.stateful:
        carried = twin.states
        assert carried is not None
        expected_states = keras_adapter.layer_states(layer)
        comparisons.append(
            compare(expected_states, carried, dtype=case.dtype, rtol=rtol, atol=atol, context=f"{case.case_id} carried states")
        )

    failed = [c for c in comparisons if not c.ok]
    reported = failed[0] if failed else max(comparisons, key=lambda c: c.tolerance_used)
    return CaseResult(
        case,
        not failed,
        max(c.max_abs for c in comparisons),
        max(c.max_rel for c in comparisons),
        reported.message,
        max(c.tolerance_used for c in comparisons),
        outputs,
        checksums,
        twin_outputs,
    )


def keras_wrapper_layer(case: WrapperCase, handle: keras_adapter.KerasHandle, weights: list[np.ndarray]) -> Any:
    """The Keras Bidirectional or RNN described by ``case``, built, with ``weights`` loaded."""
    input_shape = (case.batch, case.timesteps, case.input_dim)
    if case.wrapper == "bidirectional":
        common = {**case.layer_options(), "dtype": case.dtype}
        forward = (case.layers[0].kind, {**case.layers[0].options(), **common})
        backward = None
        if case.backward_layer:
            backward = (case.layers[1].kind, {**case.layers[1].options(), **common, "go_backwards": True})
        return keras_adapter.build_bidirectional(handle, forward, case.merge_mode, backward, case.dtype, input_shape, weights)
    cells = [(cell.kind, cell.options()) for cell in case.layers]
    return keras_adapter.build_rnn(
        handle, cells, case.wrapper == "stacked", case.layer_options(), case.dtype, input_shape, weights
    )


def run_wrapper_case(
    case: WrapperCase,
    handle: keras_adapter.KerasHandle,
    *,
    twin_weights: Callable[[list[np.ndarray]], list[np.ndarray]] | None = None,
) -> CaseResult:
    """Feed a wrapper case's seeded data to the Keras Bidirectional/RNN and to its twin and
    compare every output and state, as :func:`run_case` does for single layers.
    ``twin_weights`` deliberately corrupts the twin's weights (negative tests)."""
    if case.keras_version != handle.keras_version:
        raise ValueError(f"case {case.case_id} is for Keras {case.keras_version}; got {handle.describe()}")
    data = make_wrapper_data(case)
    checksums = data_checksums(data)
    weights = twin_weights(data.weights) if twin_weights else data.weights
    twin = wrapper_twin(
        case,
        backend=handle.backend,
        weights=weights,
        resolve=lambda options: keras_adapter.twin_activations(options, handle.backend),
    )
    layer = keras_wrapper_layer(case, handle, data.weights)
    (call,) = data.calls
    expected = keras_adapter.call_layer(handle, layer, call.inputs, call.initial_state, call.mask)
    actual = twin(call.inputs, initial_state=call.initial_state, mask=call.mask)
    return _one_call_result(case, handle, expected, actual, checksums)


def _one_call_result(
    case: WrapperCase | ConvCase, handle: keras_adapter.KerasHandle, expected: Any, actual: Any, checksums: dict[str, str]
) -> CaseResult:
    """The result of a one-call case: Keras's and the twin's returns compared at the
    tolerance the backend and the case's configuration call for."""
    rtol, atol = tolerance_for(case.dtype, handle.backend, case.to_dict())
    comparison = compare(expected, actual, dtype=case.dtype, rtol=rtol, atol=atol, context=case.case_id)
    return CaseResult(
        case,
        comparison.ok,
        comparison.max_abs,
        comparison.max_rel,
        comparison.message,
        comparison.tolerance_used,
        flatten_nested(expected),
        checksums,
        flatten_nested(actual),
    )


def run_conv_case(
    case: ConvCase,
    handle: keras_adapter.KerasHandle,
    *,
    twin_weights: Callable[[list[np.ndarray]], list[np.ndarray]] | None = None,
) -> CaseResult:
    """Feed a ConvLSTM case's seeded data to the Keras ``ConvLSTM{1,2,3}D`` and to its twin and
    compare the output and every state, as :func:`run_case` does for single layers.
    ``twin_weights`` deliberately corrupts the twin's weights (negative tests)."""
    if case.keras_version != handle.keras_version:
        raise ValueError(f"case {case.case_id} is for Keras {case.keras_version}; got {handle.describe()}")
    data = make_conv_data(case)
    checksums = data_checksums(data)
    weights = twin_weights(data.weights) if twin_weights else data.weights
    twin = conv_twin(
        case,
        backend=handle.backend,
        weights=weights,
        resolve=lambda options: keras_adapter.twin_activations(options, handle.backend),
    )
    (call,) = data.calls
    layer = keras_adapter.build_conv_lstm(handle, case.rank, case.layer_kwargs(), call.inputs.shape, data.weights)
    expected = keras_adapter.call_layer(handle, layer, call.inputs, call.initial_state)
    actual = twin(call.inputs, initial_state=call.initial_state)
    return _one_call_result(case, handle, expected, actual, checksums)


def keras_results(case: Case, handle: keras_adapter.KerasHandle) -> list[Any]:
    """Keras's side of :func:`run_case` alone: build the layer with ``case``'s seeded weights
    and make every call (resetting where the case resets). What a known Keras failure must
    keep raising, with no twin code inside the call."""
    data = make_data(case)
    layer = keras_adapter.build_layer(handle, case.kind, case.layer_kwargs(), data.calls[0].inputs.shape, data.weights)
    results = []
    for call in data.calls:
        if call.reset_before:
            keras_adapter.reset_layer_state(handle, layer)
        results.append(keras_adapter.call_layer(handle, layer, call.inputs, call.initial_state, call.mask))
    return results


def keras_conv_results(case: ConvCase, handle: keras_adapter.KerasHandle) -> Any:
    """Keras's side of :func:`run_conv_case` alone (what a known Keras failure must keep
    raising, with no twin code inside the call)."""
    data = make_conv_data(case)
    (call,) = data.calls
    layer = keras_adapter.build_conv_lstm(handle, case.rank, case.layer_kwargs(), call.inputs.shape, data.weights)
    return keras_adapter.call_layer(handle, layer, call.inputs, call.initial_state)


def dtype_self_check(low: Any, high: Any, dtype: str, context: str = "") -> Comparison:
    """A twin checked without Keras: its float32 result ``low`` and float64 result ``high``
    (same data) must agree within the float32 tolerance, whichever ``dtype`` the case is in
    (so a float64 case is checked as tightly as float32 allows), and the result in ``dtype``
    must come back in ``dtype``."""
    own = low if dtype == "float32" else high
    leaves = [np.asarray(leaf) for leaf in _leaves(own)]
    wrong = [leaf.dtype.name for leaf in leaves if leaf.dtype != np.dtype(dtype)]
    if wrong:
        prefix = f"[{context}] " if context else ""
        return Comparison(False, np.inf, np.inf, f"{prefix}dtype differs: a {dtype} twin returned {wrong[0]}", np.inf)
    return compare_conditioning(low, high, "float32", context=context, share=1.0)


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


def twin_self_check(case: Case, backend: str | None = None) -> Comparison:
    """Where Keras cannot run ``case`` (a known Keras failure), the twin is still checked: run
    in ``case.dtype`` and in the other float dtype on the same data, every call, the two must
    agree (:func:`dtype_self_check`)."""
    data = make_data(case)
    other = "float64" if case.dtype == "float32" else "float32"
    own = twin_for(case, backend=backend, weights=data.weights)
    twin = twin_for(case, backend=backend, weights=data.weights, overrides={"dtype": other})
    worst: Comparison | None = None
    for number, call in enumerate(data.calls):
        if call.reset_before:
            own.reset_state()
            twin.reset_state()
        a = own(call.inputs, initial_state=call.initial_state, mask=call.mask)
        b = twin(call.inputs, initial_state=call.initial_state, mask=call.mask)
        low, high = (a, b) if case.dtype == "float32" else (b, a)
        result = dtype_self_check(low, high, case.dtype, context=f"{case.case_id} call {number} twin alone")
        if not result.ok:
            return result
        if worst is None or result.tolerance_used > worst.tolerance_used:
            worst = result
    assert worst is not None
    return worst


def conv_twin_self_check(case: ConvCase, backend: str | None = None) -> Comparison:
    """:func:`twin_self_check` for a ConvLSTM case: the twin in ``case.dtype`` and in the other
    float dtype on the same data must agree (:func:`dtype_self_check`)."""
    data = make_conv_data(case)
    (call,) = data.calls
    results = {}
    for dtype in ("float32", "float64"):
        twin = conv_twin(case, backend=backend, weights=data.weights, overrides={"dtype": dtype})
        results[dtype] = twin(call.inputs, initial_state=call.initial_state)
    return dtype_self_check(results["float32"], results["float64"], case.dtype, context=f"{case.case_id} twin alone")
