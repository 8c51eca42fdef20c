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
    kwargs = case.layer_kwargs()
    twin_kwargs: dict[str, Any] = {**kwargs, "keras_version": case.keras_version, "backend": handle.backend}
    for name in ("activation", "recurrent_activation"):
        if name in twin_kwargs:
            twin_kwargs[name] = keras_adapter.twin_activation(twin_kwargs[name], handle.backend)
    twin_kwargs.update(twin_overrides or {})
    twin = TWIN_CLASS[case.kind](**twin_kwargs)
    twin.set_weights(twin_weights(data.weights) if twin_weights else data.weights)

    first = data.calls[0].inputs
    layer = keras_adapter.build_layer(handle, case.kind, kwargs, first.shape, data.weights)

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
