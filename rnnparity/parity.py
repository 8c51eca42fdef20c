"""Run one matrix case against an installed Keras and its twin, and compare every result.

Needs Keras (through :mod:`rnnparity.keras_adapter`); used by the test suite and by
``rnnparity check`` so both prove the same thing the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rnnparity import keras_adapter
from rnnparity.compare import compare
from rnnparity.gru import GRU
from rnnparity.known_differences import tolerance_for
from rnnparity.lstm import LSTM
from rnnparity.matrix import Case, make_data
from rnnparity.report import data_checksums
from rnnparity.rnn import RecurrentLayer
from rnnparity.simple_rnn import SimpleRNN

TWIN_CLASS: dict[str, type[RecurrentLayer]] = {"lstm": LSTM, "gru": GRU, "simple_rnn": SimpleRNN}


@dataclass
class CaseResult:
    case: Case
    ok: bool
    max_abs: float
    max_rel: float
    message: str
    tolerance_used: float = 0.0
    keras_outputs: list[np.ndarray] = field(default_factory=list, repr=False)
    checksums: dict[str, str] = field(default_factory=dict, repr=False)


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
    twin = TWIN_CLASS[case.kind](**{**kwargs, **(overrides or {})})
    twin.set_weights(make_data(case).weights if weights is None else weights)
    return twin


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
    if case.keras_version != handle.major:
        raise ValueError(f"case {case.case_id} is for Keras {case.keras_version}; got {handle.describe()}")
    data = make_data(case)
    checksums = data_checksums(data)
    weights = twin_weights(data.weights) if twin_weights else data.weights
    twin = twin_for(case, backend=handle.backend, weights=weights, overrides=twin_overrides)
    first = data.calls[0].inputs
    layer = keras_adapter.build_layer(handle, case.kind, case.layer_kwargs(), first.shape, data.weights)

    rtol, atol = tolerance_for(case.dtype, handle.backend)
    comparisons = []
    outputs: list[np.ndarray] = []
    for number, call in enumerate(data.calls):
        if call.reset_before:
            keras_adapter.reset_layer_state(handle, layer)
            twin.reset_state()
        expected = keras_adapter.call_layer(handle, layer, call.inputs, call.initial_state, call.mask)
        actual = twin(call.inputs, initial_state=call.initial_state, mask=call.mask)
        outputs.extend(_flatten(expected))
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
    )
