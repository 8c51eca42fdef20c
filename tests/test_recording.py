"""One copy of each step: ``rnnparity.gradients`` runs the cells' own ``recurrent_step``
through the layer's own run function, with a recorder. Recording must not change a bit:
the layer's result with records filled is identical (values, dtype, structure) to a plain
call, for every cell kind, both dtypes, masks, go_backwards, stacks and Bidirectional."""

from __future__ import annotations

import itertools
import zlib
from typing import Any

import numpy as np
import pytest

import rnnparity
from rnnparity import tapes
from rnnparity.cell import StepRecord
from rnnparity.compare import assert_parity
from rnnparity.layout import STEP_ORDER
from rnnparity.rnn import RecurrentLayer
from rnnparity.suite.matrix import random_mask, random_states, random_weights

VARIANTS = [("lstm", True), ("gru", True), ("gru", False), ("simple_rnn", True)]
TWIN = {"lstm": rnnparity.LSTM, "gru": rnnparity.GRU, "simple_rnn": rnnparity.SimpleRNN}
CELL = {"lstm": rnnparity.LSTMCell, "gru": rnnparity.GRUCell, "simple_rnn": rnnparity.SimpleRNNCell}
# The in-place fast paths and the generic "compute, then copy back" path, both recurrent slots.
ACTIVATIONS = [("tanh", "sigmoid"), ("relu", "hard_sigmoid"), ("softsign", "gelu"), ("linear", "softmax")]


def _rng(*key: Any) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _options(kind: str, reset_after: bool, activation: str, recurrent_activation: str) -> dict[str, Any]:
    options: dict[str, Any] = {"activation": activation}
    if kind != "simple_rnn":
        options["recurrent_activation"] = recurrent_activation
    if kind == "gru":
        options["reset_after"] = reset_after
    return options


def _recorded_call(layer: RecurrentLayer, x: np.ndarray, initial_state: Any, mask: Any) -> tuple[Any, list[StepRecord]]:
    """``layer(x, initial_state, mask)`` run as ``rnnparity.gradients`` runs it: the same
    checks and run function, with every step filling a record on the cell's tape."""
    call = layer.prepare_call(x, initial_state, mask)
    tape = tapes.tape_for(layer.cell)
    timesteps, batch, _ = call.inputs.shape
    tape.allocate(timesteps, batch)
    records: list[StepRecord] = []

    def recorder(t: int) -> StepRecord:
        record = tape.record_step(t)
        records.append(record)
        return record

    layer.run_call(call, recorder=recorder)
    return layer.pack_result(call), records


def _assert_identical(expected: Any, actual: Any, context: str) -> None:
    assert type(expected) is type(actual), f"{context}: container {type(actual).__name__}, expected {type(expected).__name__}"
    if isinstance(expected, (list, tuple)):
        assert len(expected) == len(actual), f"{context}: {len(actual)} items, expected {len(expected)}"
        for index, (e, a) in enumerate(zip(expected, actual)):
            _assert_identical(e, a, f"{context}[{index}]")
        return
    assert actual.dtype == expected.dtype, f"{context}: dtype {actual.dtype}, expected {expected.dtype}"
    assert np.array_equal(actual, expected, equal_nan=True), (
        f"{context}: recording changed the result; max abs diff {np.nanmax(np.abs(actual - expected))}"
    )
    assert actual.tobytes() == expected.tobytes(), f"{context}: same values but different bits (signed zeros?)"


LAYER_GRID = list(itertools.product(VARIANTS, ["float32", "float64"], ACTIVATIONS, [False, True]))


@pytest.mark.parametrize(
    ("variant", "dtype", "activations", "go_backwards"),
    LAYER_GRID,
    ids=[f"{v[0]}{'' if v[1] else '-rb'}-{d}-{a[0]}-{a[1]}-{'back' if g else 'fwd'}" for v, d, a, g in LAYER_GRID],
)
def test_recording_changes_no_bit_of_a_layer(
    variant: tuple[str, bool], dtype: str, activations: tuple[str, str], go_backwards: bool
) -> None:
    kind, reset_after = variant
    rng = _rng("layer", variant, dtype, activations, go_backwards)
    batch, timesteps, units, input_dim = 4, 7, 5, 3
    for mask_style, (return_sequences, zero_output_for_mask) in itertools.product(
        ["none", "right_padded", "random"], [(True, False), (True, True), (False, False)]
    ):
        layer = TWIN[kind](
            units,
            dtype=dtype,
            go_backwards=go_backwards,
            return_sequences=return_sequences,
            return_state=True,
            zero_output_for_mask=zero_output_for_mask,
            **_options(kind, reset_after, *activations),
        )
        layer.set_weights(random_weights(rng, kind, units, input_dim, True, reset_after, dtype))
        x = rng.normal(0.0, 2.0, (batch, timesteps, input_dim)).astype(dtype)
        mask = random_mask(rng, mask_style, batch, timesteps)
        init = random_states(rng, kind, batch, units, dtype) if mask_style != "none" else None
        context = f"{kind} reset_after={reset_after} {dtype} {activations} mask={mask_style} seq={return_sequences}"
        recorded, records = _recorded_call(layer, x, init, mask)
        _assert_identical(layer(x, initial_state=init, mask=mask), recorded, context)
        assert len(records) == timesteps
        # The records hold what the step computed: finite pre-activations for every gate block.
        assert all(np.isfinite(record.pre).all() for record in records), context
        assert records[0].pre.shape[0] == layer.cell.record_blocks >= len(STEP_ORDER[kind])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_recording_changes_no_bit_of_a_stateful_layer(dtype: str) -> None:
    """Carried states advance identically: two recorded calls equal two plain calls."""
    rng = _rng("stateful", dtype)
    layer = rnnparity.LSTM(4, dtype=dtype, stateful=True, return_sequences=True, return_state=True)
    layer.set_weights(random_weights(rng, "lstm", 4, 3, True, True, dtype))
    recording = layer.fresh_copy()
    for index in range(2):
        x = rng.normal(0.0, 2.0, (2, 5, 3)).astype(dtype)
        mask = random_mask(rng, "random", 2, 5)
        recorded, _ = _recorded_call(recording, x, None, mask)
        _assert_identical(layer(x, mask=mask), recorded, f"stateful call {index}")
        _assert_identical(layer.states, recording.states, f"carried states after call {index}")


STACKS = [
    [("lstm", True), ("gru", False), ("simple_rnn", True)],
    [("gru", True), ("lstm", True)],
    [("simple_rnn", True), ("gru", True), ("gru", False)],
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("stack", STACKS, ids=lambda s: "+".join(f"{k}{'' if r else '-rb'}" for k, r in s))
@pytest.mark.parametrize("go_backwards", [False, True])
def test_recording_changes_no_bit_of_a_stack(stack: list[tuple[str, bool]], dtype: str, go_backwards: bool) -> None:
    rng = _rng("stack", stack, dtype, go_backwards)
    batch, timesteps, input_dim = 3, 6, 4
    cells, sizes = [], []
    rows = input_dim
    for index, (kind, reset_after) in enumerate(stack):
        units = 3 + index
        options = _options(kind, reset_after, *ACTIVATIONS[index % len(ACTIVATIONS)])
        cell = CELL[kind](units, dtype=dtype, **options)
        cell.set_weights(random_weights(rng, kind, units, rows, True, reset_after, dtype))
        cells.append(cell)
        sizes.append((kind, units))
        rows = units
    layer = rnnparity.RNN(cells, return_sequences=True, return_state=True, go_backwards=go_backwards)
    x = rng.normal(0.0, 2.0, (batch, timesteps, input_dim)).astype(dtype)
    mask = random_mask(rng, "random", batch, timesteps)
    init = [random_states(rng, kind, batch, units, dtype) for kind, units in sizes]
    recorded, records = _recorded_call(layer, x, init, mask)
    _assert_identical(layer(x, initial_state=init, mask=mask), recorded, f"stack {stack} {dtype}")
    assert all(len(record.cells) == len(cells) and len(record.cell_inputs) == len(cells) - 1 for record in records)


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: f"{v[0]}{'' if v[1] else '-rb'}")
def test_recording_changes_no_bit_of_bidirectional(variant: tuple[str, bool], dtype: str, merge_mode: str | None) -> None:
    """Both directions, recorded as gradients records them, give the wrapper's own halves."""
    kind, reset_after = variant
    rng = _rng("bidirectional", variant, dtype, merge_mode)
    inner = TWIN[kind](4, dtype=dtype, return_sequences=True, return_state=True, **_options(kind, reset_after, "tanh", "sigmoid"))
    wrapper = rnnparity.Bidirectional(inner, merge_mode=merge_mode, dtype=dtype)
    wrapper.set_weights([w for _ in range(2) for w in random_weights(rng, kind, 4, 3, True, reset_after, dtype)])
    x = rng.normal(0.0, 2.0, (3, 6, 3)).astype(dtype)
    mask = random_mask(rng, "random", 3, 6)
    for half in (wrapper.forward_layer, wrapper.backward_layer):
        recorded, _ = _recorded_call(half, x, None, mask)
        _assert_identical(half(x, mask=mask), recorded, f"Bidirectional {merge_mode} go_backwards={half.go_backwards}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: f"{v[0]}{'' if v[1] else '-rb'}")
def test_a_recorded_step_returns_the_same_bits_as_a_plain_step(variant: tuple[str, bool], dtype: str) -> None:
    """At the step itself: the record is filled, the step's output and states do not move."""
    kind, reset_after = variant
    rng = _rng("step", variant, dtype)
    cell = CELL[kind](5, dtype=dtype, **_options(kind, reset_after, "tanh", "hard_sigmoid"))
    cell.set_weights(random_weights(rng, kind, 5, 3, True, reset_after, dtype))
    states = random_states(rng, kind, 4, 5, dtype)
    x_proj = cell.input_projection(rng.normal(0.0, 2.0, (4, 3)).astype(dtype))
    plain = cell.recurrent_step(x_proj.copy(), states)
    record = StepRecord(pre=np.full((cell.record_blocks, 4, 5), np.nan, dtype), h_tm1=np.full((4, 5), np.nan, dtype))
    recorded = cell.recurrent_step(x_proj.copy(), states, record)
    _assert_identical(list(plain), list(recorded), f"{kind} step")
    assert np.isfinite(record.pre).all() and np.array_equal(record.h_tm1, states[0])
    if kind != "gru":  # the recorded pre-activations: projection plus recurrent part, before any activation
        expected = x_proj + np.matmul(states[0], cell.recurrent_gates)
        assert_parity(expected, record.pre, dtype=dtype, context=f"{kind} recorded pre-activations")
