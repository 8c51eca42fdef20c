"""The gradient parity matrix: configurations, their seeded data, and one runner that feeds the
same data to ``tf.GradientTape`` over a Keras layer and to ``rnnparity.gradients``.

A gradient case is a forward-matrix :class:`rnnparity.suite.matrix.Case` (same fields, same
seeded weights, inputs, masks and initial states from :func:`rnnparity.suite.matrix.make_data`)
plus seeded random ``output_grads`` for every output and returned state. Weights are never
constant: a constant kernel would hide a swapped gate in the gradients as in the outputs.
"""

from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

import rnnparity
from rnnparity.activations import activations_for
from rnnparity.compare import Comparison, compare, tolerances
from rnnparity.rnn import flatten_nested
from rnnparity.suite import keras_adapter, matrix, parity

VARIANTS = [("lstm", True), ("gru", True), ("gru", False), ("simple_rnn", True)]
RETURNS = [(False, False), (True, False), (False, True), (True, True)]
KEYS = ("inputs", "initial_state", "weights", "states")


def _seed(key: str) -> int:
    return zlib.crc32(key.encode()) & 0x7FFFFFFF


def _drawn(key: str, **fixed: Any) -> dict[str, Any]:
    """Shapes, activations, bias and initial state drawn per case from a generator seeded by ``key``."""
    rng = np.random.default_rng(_seed(key))
    drawn = {
        "units": int(rng.choice([1, 2, 3, 5, 8])),
        "input_dim": int(rng.choice([1, 2, 4, 7])),
        "timesteps": int(rng.choice([1, 2, 3, 6, 9])),
        "batch": int(rng.choice([1, 2, 3, 5])),
        "activation": str(rng.choice(["tanh", "tanh", "tanh", "relu", "sigmoid", "elu", "softsign", "linear"])),
        "recurrent_activation": str(rng.choice(["sigmoid", "sigmoid", "hard_sigmoid"])),
        "use_bias": bool(rng.random() < 0.75),
        "unit_forget_bias": bool(rng.random() < 0.5),
        "initial_state": bool(rng.random() < 0.5),
        "seed": _seed(key + "/data"),
    }
    drawn.update(fixed)
    return drawn


def core_cases(keras_version: int) -> list[matrix.Case]:
    """Every layer kind x return_sequences x return_state x mask mode x go_backwards x dtype;
    sizes, activations, use_bias and initial_state drawn per case."""
    cases = []
    for (kind, reset_after), (seq, state), mask, back, dtype in itertools.product(
        VARIANTS, RETURNS, matrix.MASK_MODES, (False, True), ("float32", "float64")
    ):
        key = f"grad/{kind}/{reset_after}/{seq}/{state}/{mask}/{back}/{dtype}"
        cases.append(
            matrix.Case(
                kind=kind,
                keras_version=keras_version,
                reset_after=reset_after,
                return_sequences=seq,
                return_state=state,
                mask=mask,
                go_backwards=back,
                dtype=dtype,
                tags=("grad-core",),
                **_drawn(key),
            )
        )
    return cases


def activation_cases(keras_version: int, every_kind: bool = False) -> list[matrix.Case]:
    """Every activation name of the emulated Keras as ``activation`` (one layer kind per name,
    rotating; every kind with ``every_kind``) and as ``recurrent_activation`` of a gated
    layer, with return_sequences, return_state, a scattered mask and an initial state.
    ``recurrent_activation`` cases are float64: a non-gate function as a gate can make the
    recurrence expand, and float32 rounding then grows past any tolerance."""
    cases = []
    for number, name in enumerate(sorted(activations_for(keras_version))):
        kinds = VARIANTS if every_kind else [VARIANTS[number % 4]]
        for kind, reset_after in kinds:
            key = f"grad-act/{name}/{kind}/{reset_after}"
            base = matrix.Case(
                kind=kind,
                keras_version=keras_version,
                reset_after=reset_after,
                return_sequences=True,
                return_state=True,
                mask="scattered",
                tags=("grad-activation",),
                **_drawn(
                    key,
                    units=int(np.random.default_rng(_seed(key)).choice([2, 4, 6])),
                    timesteps=4,
                    batch=3,
                    activation=name,
                    recurrent_activation="sigmoid",
                    initial_state=True,
                    dtype="float64" if _seed(name) % 2 else "float32",
                ),
            )
            cases.append(base)
        gated_kind, gated_reset_after = VARIANTS[number % 3]
        key = f"grad-ract/{name}/{gated_kind}/{gated_reset_after}"
        cases.append(
            matrix.Case(
                kind=gated_kind,
                keras_version=keras_version,
                reset_after=gated_reset_after,
                return_sequences=True,
                return_state=True,
                mask="scattered",
                tags=("grad-recurrent-activation",),
                **_drawn(
                    key,
                    units=4,
                    timesteps=4,
                    batch=3,
                    activation="tanh",
                    recurrent_activation=name,
                    initial_state=True,
                    dtype="float64",
                ),
            )
        )
    return cases


def stateful_cases(keras_version: int) -> list[matrix.Case]:
    """Stateful layers: one plain call, then the gradients of a second call (with and without
    ``initial_state``), including the gradient w.r.t. the carried states."""
    cases = []
    for (kind, reset_after), init, dtype in itertools.product(VARIANTS, (False, True), ("float32", "float64")):
        key = f"grad-stateful/{kind}/{reset_after}/{init}/{dtype}"
        cases.append(
            matrix.Case(
                kind=kind,
                keras_version=keras_version,
                reset_after=reset_after,
                return_sequences=True,
                return_state=True,
                stateful=True,
                mask="scattered",
                dtype=dtype,
                tags=("grad-stateful",),
                **_drawn(key, initial_state=init),
            )
        )
    return cases


def time_major_cases(keras_version: int) -> list[matrix.Case]:
    """``time_major=True`` (Keras 2 only)."""
    if keras_version != 2:
        return []
    cases = []
    for (kind, reset_after), (seq, state), dtype in itertools.product(VARIANTS, RETURNS[1:], ("float32", "float64")):
        key = f"grad-tm/{kind}/{reset_after}/{seq}/{state}/{dtype}"
        cases.append(
            matrix.Case(
                kind=kind,
                keras_version=keras_version,
                reset_after=reset_after,
                return_sequences=seq,
                return_state=state,
                mask="scattered",
                time_major=True,
                dtype=dtype,
                tags=("grad-time-major",),
                **_drawn(key),
            )
        )
    return cases


# Over 12-30 steps an unbounded activation (relu, elu, linear) can make the recurrence
# expand, and float32 rounding then grows past any tolerance (measured: an elu LSTM over 30
# steps, gradients ~1200, float32 twin vs float64 twin at 0.51 of the tolerance and Keras at
# 1.003): the wide float32 cases use bounded activations; float64 cases draw from all.
BOUNDED = ("tanh", "sigmoid", "softsign")


def wide_cases(keras_version: int) -> list[matrix.Case]:
    """The slow matrix: the core crossed with initial_state and use_bias both ways, longer
    sequences and larger layers, three seeds each."""
    cases = []
    for (kind, reset_after), (seq, state), mask, back, init, bias, dtype, seed in itertools.product(
        VARIANTS, RETURNS, matrix.MASK_MODES, (False, True), (False, True), (False, True), ("float32", "float64"), range(3)
    ):
        key = f"grad-wide/{kind}/{reset_after}/{seq}/{state}/{mask}/{back}/{init}/{bias}/{dtype}/{seed}"
        rng = np.random.default_rng(_seed(key + "/size"))
        cases.append(
            matrix.Case(
                kind=kind,
                keras_version=keras_version,
                reset_after=reset_after,
                return_sequences=seq,
                return_state=state,
                mask=mask,
                go_backwards=back,
                dtype=dtype,
                tags=("grad-wide",),
                **_drawn(
                    key,
                    **({} if dtype == "float64" else {"activation": BOUNDED[seed]}),
                    initial_state=init,
                    use_bias=bias,
                    units=int(rng.choice([4, 8, 16])),
                    timesteps=int(rng.choice([12, 20, 30])),
                    batch=int(rng.choice([2, 4, 8])),
                ),
            )
        )
    return cases


def default_cases(keras_version: int) -> list[matrix.Case]:
    return (
        core_cases(keras_version)
        + activation_cases(keras_version)
        + stateful_cases(keras_version)
        + time_major_cases(keras_version)
    )


def slow_cases(keras_version: int) -> list[matrix.Case]:
    every = [c for c in activation_cases(keras_version, every_kind=True) if c not in activation_cases(keras_version)]
    return wide_cases(keras_version) + every


# --------------------------------------------------------------------------- data
@dataclass
class GradientData:
    inputs: np.ndarray
    mask: np.ndarray | None
    initial_state: list[np.ndarray] | None
    output_grads: Any
    before: matrix.Call | None  # a stateful layer's first, plain call


def output_shapes(case: matrix.Case) -> list[tuple[int, ...]]:
    """Shapes of what the layer returns: the output, then each state."""
    b, t, u = case.batch, case.timesteps, case.units
    output = ((t, b, u) if case.time_major else (b, t, u)) if case.return_sequences else (b, u)
    states = [(b, u)] * (2 if case.kind == "lstm" else 1) if case.return_state else []
    return [output, *states]


def make_gradient_data(case: matrix.Case) -> tuple[list[np.ndarray], GradientData]:
    """The case's seeded weights and call data, and seeded ``output_grads`` for every output."""
    data = matrix.make_data(case)
    rng = np.random.default_rng(case.seed + 7)
    grads = [rng.normal(0.0, 1.0, shape).astype(case.dtype) for shape in output_shapes(case)]
    output_grads: Any = grads if case.return_state else grads[0]
    if case.stateful:
        before, call = data.calls[0], data.calls[1]
        return data.weights, GradientData(call.inputs, call.mask, call.initial_state, output_grads, before)
    call = data.calls[0]
    return data.weights, GradientData(call.inputs, call.mask, call.initial_state, output_grads, None)


def twin_gradients(case: matrix.Case, dtype: str | None = None) -> dict[str, Any]:
    """``rnnparity.gradients`` for ``case`` without Keras (optionally with the twin in ``dtype``,
    fed the same numbers)."""
    weights, data = make_gradient_data(case)
    twin = parity.twin_for(case, weights=weights, overrides=None if dtype is None else {"dtype": dtype})
    if data.before is not None:
        twin(data.before.inputs, initial_state=data.before.initial_state, mask=data.before.mask)
    return rnnparity.gradients(twin, data.inputs, data.output_grads, initial_state=data.initial_state, mask=data.mask)


@dataclass
class GradientResult:
    case: matrix.Case
    ok: bool
    message: str
    max_abs: dict[str, float]
    tolerance_used: float


def gradient_tolerance(expected: np.ndarray, dtype: str) -> tuple[float, float]:
    """``(rtol, atol)`` for one gradient array: the per-dtype defaults, with the absolute floor
    raised by ``rtol`` times the array's largest finite magnitude. A gradient element is a sum
    over timesteps and batch rows whose rounding error scales with its summands, not with the
    (possibly cancelled) sum: a kernel-gradient entry of 0.02 among entries of 3 carries the
    rounding of the 3s. Measured (float32 twin against the float64 twin on the same numbers):
    elementwise alone, 128 of the 1,578 slow float32 cases use more than half the default
    tolerance and 13 all of it (worst 2.4x; against Keras 47 fail, worst 2.8x); with this
    floor the worst uses 0.08 of it (0.056 in the default matrix)."""
    rtol, atol = tolerances(dtype)
    finite = np.abs(expected[np.isfinite(expected)])
    return rtol, atol + rtol * (float(finite.max()) if finite.size else 0.0)


def compare_gradients(
    expected: dict[str, Any], actual: dict[str, Any], dtype: str, context: str, share: float = 1.0, check_dtype: bool = True
) -> dict[str, Comparison]:
    """One comparison per key (``inputs``, ``initial_state``, ``weights``, ``states``): every
    array with ``share`` of :func:`gradient_tolerance`; the structures (and, with
    ``check_dtype``, the dtypes) must match too."""
    results = {}
    for key in KEYS:
        if expected.get(key) is None and actual.get(key) is None:
            continue
        k_leaves, t_leaves = flatten_nested(expected.get(key)), flatten_nested(actual.get(key))
        if any(leaf is None for leaf in k_leaves + t_leaves) or len(k_leaves) != len(t_leaves):
            kinds = type(expected.get(key)).__name__, type(actual.get(key)).__name__
            given = f"keras {kinds[0]} of {len(k_leaves)}, twin {kinds[1]} of {len(t_leaves)}"
            results[key] = Comparison(False, np.inf, np.inf, f"[{context} {key}] structure differs: {given}")
            continue
        leaves = list(zip(k_leaves, t_leaves))
        parts = []
        for index, (k, t) in enumerate(leaves):
            k = np.asarray(k)
            rtol, atol = gradient_tolerance(k, dtype)
            rtol, atol = rtol * share, atol * share
            name = f"{key}[{index}]" if len(leaves) > 1 or isinstance(expected[key], list) else key
            parts.append(compare(k, t, dtype=dtype, rtol=rtol, atol=atol, context=f"{context} {name}", check_dtype=check_dtype))
        failed = [p for p in parts if not p.ok]
        results[key] = failed[0] if failed else max(parts, key=lambda p: p.tolerance_used)
    return results


def run_gradient_case(case: matrix.Case, handle: keras_adapter.KerasHandle) -> GradientResult:
    """Feed ``case``'s data to ``tf.GradientTape`` over the Keras layer and to the twin."""
    weights, data = make_gradient_data(case)
    layer = keras_adapter.build_layer(handle, case.kind, case.layer_kwargs(), data.inputs.shape, weights)
    twin = parity.twin_for(case, backend=handle.backend, weights=weights)
    if data.before is not None:
        keras_adapter.call_layer(handle, layer, data.before.inputs, data.before.initial_state, data.before.mask)
        twin(data.before.inputs, initial_state=data.before.initial_state, mask=data.before.mask)
    expected = keras_adapter.keras_gradients(
        handle, layer, data.inputs, data.output_grads, data.initial_state, data.mask, watch_states=case.stateful
    )
    actual = rnnparity.gradients(twin, data.inputs, data.output_grads, initial_state=data.initial_state, mask=data.mask)
    comparisons = compare_gradients(expected, actual, case.dtype, case.case_id)
    if case.stateful:
        comparisons["carried states"] = compare(
            keras_adapter.layer_states(layer),
            twin.states,
            dtype=case.dtype,
            context=f"{case.case_id} carried",
            check_container=False,
        )
    failed = [c for c in comparisons.values() if not c.ok]
    reported = failed[0] if failed else max(comparisons.values(), key=lambda c: c.tolerance_used)
    return GradientResult(
        case,
        not failed,
        reported.message,
        {key: c.max_abs for key, c in comparisons.items()},
        max(c.tolerance_used for c in comparisons.values()),
    )


def with_dtype(case: matrix.Case, dtype: str) -> matrix.Case:
    return replace(case, dtype=dtype)
