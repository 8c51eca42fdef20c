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
from rnnparity.lstm import LSTM
from rnnparity.matrix import Case, make_data
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


def _flatten(value: Any) -> list[np.ndarray]:
    return list(value) if isinstance(value, (tuple, list)) else [value]


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
    kwargs = case.layer_kwargs()
    twin_kwargs: dict[str, Any] = {**kwargs, "keras_version": case.keras_version}
    for name in ("activation", "recurrent_activation"):
        if name in twin_kwargs:
            twin_kwargs[name] = keras_adapter.twin_activation(twin_kwargs[name], handle.backend)
    twin_kwargs.update(twin_overrides or {})
    twin = TWIN_CLASS[case.kind](**twin_kwargs)
    twin.set_weights(twin_weights(data.weights) if twin_weights else data.weights)

    first = data.calls[0].inputs
    layer = keras_adapter.build_layer(handle, case.kind, kwargs, first.shape, data.weights)

    worst_abs = worst_rel = worst_used = 0.0
    message = "match"
    outputs: list[np.ndarray] = []
    for number, call in enumerate(data.calls):
        if call.reset_before:
            keras_adapter.reset_layer_state(handle, layer)
            twin.reset_state()
        expected = keras_adapter.call_layer(handle, layer, call.inputs, call.initial_state, call.mask)
        actual = twin(call.inputs, initial_state=call.initial_state, mask=call.mask)
        outputs.extend(_flatten(expected))
        result = compare(expected, actual, dtype=case.dtype, context=f"{case.case_id} call {number}")
        if not result.ok:
            return CaseResult(case, False, result.max_abs, result.max_rel, result.message, result.tolerance_used, outputs)
        worst_abs, worst_rel = max(worst_abs, result.max_abs), max(worst_rel, result.max_rel)
        if result.tolerance_used >= worst_used:
            worst_used, message = result.tolerance_used, result.message
    if case.stateful:
        expected_states = keras_adapter.layer_states(layer)
        carried = twin.states
        assert carried is not None
        result = compare(expected_states, carried, dtype=case.dtype, context=f"{case.case_id} carried states")
        if not result.ok:
            return CaseResult(case, False, result.max_abs, result.max_rel, result.message, result.tolerance_used, outputs)
    return CaseResult(case, True, worst_abs, worst_rel, message, worst_used, outputs)
