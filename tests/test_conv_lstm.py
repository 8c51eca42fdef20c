"""ConvLSTM1D/2D/3D twins: parity with Keras 3 and tf_keras, properties, negative tests, errors.

Parity: every rank x option (tests/conv_lstm_cases.py) on a seeded random configuration, in
float32 and float64, against both Kerases, through ``set_weights`` and through
``from_keras``. Where TensorFlow's CPU kernels refuse a ``channels_first`` convolution, the
twin's ``channels_first`` result is compared with Keras's ``channels_last`` layer on the
transposed inputs instead (and Keras must still refuse, or the test says so).
``-m slow`` runs four more seeds per configuration.

Reproduce one case: ``python -m pytest tests/test_conv_lstm.py -n 0 -k "<case id>"``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import FLAVOR_MAJOR, flavor_params, keras_handle
from conv_lstm_cases import (
    OPTIONS,
    ConvCase,
    conditioning,
    describe,
    draw_case,
    keras_refuses,
    keras_results,
    keras_stateful_refuses_dtype,
    make_data,
    twin_outputs,
)
from hypothesis import assume, given
from hypothesis import strategies as st

import rnnparity
from rnnparity import conv_lstm, conv_lstm_cell
from rnnparity.compare import Comparison, compare

RANKS = (1, 2, 3)
DTYPES = ("float32", "float64")


def _params(seeds: list[int]) -> list:
    params = []
    for flavor in FLAVOR_MAJOR:
        cases = [
            draw_case(rank, FLAVOR_MAJOR[flavor], dtype, seed, option)
            for rank in RANKS
            for option in OPTIONS
            for dtype in DTYPES
            for seed in seeds
        ]
        params += flavor_params(flavor, [(flavor, c) for c in cases], [f"{flavor}-{c.case_id}" for c in cases])
    return params


def _per_flavor(values: list[tuple]) -> list:
    params = []
    for flavor in FLAVOR_MAJOR:
        params += flavor_params(flavor, [(flavor, *v) for v in values], [f"{flavor}-{'-'.join(map(str, v))}" for v in values])
    return params


CONFIG_KEYS = (
    "filters",
    "kernel_size",
    "strides",
    "padding",
    "data_format",
    "dilation_rate",
    "activation",
    "recurrent_activation",
    "use_bias",
    "unit_forget_bias",
    "return_sequences",
    "return_state",
    "go_backwards",
    "stateful",
)


def _check_against_keras(flavor: str, case: ConvCase) -> list[tuple[str, Comparison]]:
    """Compare the twin with Keras on ``case``; returns ``(route, comparison)`` for each path."""
    handle = keras_handle(flavor)
    if case.dtype == "float32":
        conditioned = conditioning(case)
        assert conditioned.ok, f"case cannot decide float32 parity ({describe(case)}): {conditioned.message}"
    data = make_data(case)
    twin = twin_outputs(case, data)
    try:
        expected, layer = keras_results(handle, case, data)
        route = "same layout"
    except Exception as exc:
        if case.stateful and handle.keras_version == 2 and case.dtype == "float64" and keras_stateful_refuses_dtype(exc):
            expected, layer = keras_results(handle, case, data, chain_states=True)
            route = "chained calls: tf_keras's stateful ConvLSTM refuses float64"
        elif case.data_format == "channels_first" and keras_refuses(exc):
            expected, layer = keras_results(handle, case, data, data_format="channels_last")
            route = "Keras channels_last on transposed inputs"
        else:
            raise
    result = compare(expected, twin, dtype=case.dtype, context=f"{case.case_id} ({route}) set_weights")
    assert result.ok, f"{result.message}\nconfiguration: {describe(case)}"
    done = [(f"{route}, set_weights", result)]
    if route == "same layout":  # (the other routes' Keras layer is not the case's configuration)
        adopted = rnnparity.from_keras(layer)
        if adopted.stateful:  # from_keras copies Keras's carried states; start both afresh
            adopted.reset_state()
        assert isinstance(adopted, conv_lstm.ConvLSTM) and adopted.keras_version == case.keras_version
        twin_config, keras_config = adopted.get_config(), layer.get_config()
        for key in CONFIG_KEYS:
            assert twin_config[key] == keras_config[key], f"get_config()[{key!r}]: {twin_config[key]!r} != {keras_config[key]!r}"
        via = twin_outputs(case, data, adopted)
        result = compare(expected, via, dtype=case.dtype, context=f"{case.case_id} from_keras")
        assert result.ok, f"{result.message}\nconfiguration: {describe(case)}"
        done.append((f"{route}, from_keras", result))
    return done


@pytest.mark.parametrize(("flavor", "case"), _params([0]))
def test_parity_with_keras(flavor: str, case: ConvCase) -> None:
    _check_against_keras(flavor, case)


@pytest.mark.slow
@pytest.mark.parametrize(("flavor", "case"), _params([1, 2, 3, 4]))
def test_parity_with_keras_more_seeds(flavor: str, case: ConvCase) -> None:
    _check_against_keras(flavor, case)


@pytest.mark.parametrize(("flavor", "rank", "dtype"), _per_flavor([(r, d) for r in RANKS for d in DTYPES]))
def test_cell_step_from_keras(flavor: str, rank: int, dtype: str) -> None:
    """One step of Keras's ConvLSTMCell (inside a built layer) against the twin from_keras made of it."""
    from rnnparity.suite import keras_adapter

    handle = keras_handle(flavor)
    case = replace(draw_case(rank, FLAVOR_MAJOR[flavor], dtype, 3, "same"), initial_state=True)
    data = make_data(case)
    _, layer = keras_results(handle, case, data)
    twin_cell = rnnparity.from_keras(layer.cell)
    assert isinstance(twin_cell, conv_lstm.ConvLSTMCell) and twin_cell.rank == rank
    assert data.initial_state is not None
    x = data.inputs[0][:, 0]
    expected = keras_adapter.call_cell(handle, layer.cell, x, list(data.initial_state))
    result = compare(expected, twin_cell(x, list(data.initial_state)), dtype=dtype, check_container=False, context=case.case_id)
    assert result.ok, result.message


@pytest.mark.parametrize(("flavor", "rank"), _per_flavor([(r,) for r in RANKS]))
def test_from_keras_copies_carried_states(flavor: str, rank: int) -> None:
    """A stateful Keras layer after one call: the twin from_keras makes carries Keras's states
    on, so the next call of each agrees."""
    from rnnparity.suite import keras_adapter

    handle = keras_handle(flavor)
    case = replace(draw_case(rank, FLAVOR_MAJOR[flavor], "float32", 6, "stateful"), return_state=True)
    data = make_data(case)
    layer = getattr(handle.module.layers, f"ConvLSTM{rank}D")(**case.layer_kwargs())
    layer.build(data.inputs[0].shape)
    layer.set_weights(data.weights)
    keras_adapter.call_layer(handle, layer, data.inputs[0])
    twin = rnnparity.from_keras(layer)
    carried = twin.states
    assert carried is not None and all(np.count_nonzero(s) for s in carried)
    rnnparity.assert_parity(keras_adapter.layer_states(layer), carried, check_container=False, context=case.case_id)
    expected = keras_adapter.call_layer(handle, layer, data.inputs[1])
    result = compare(expected, twin(data.inputs[1]), dtype=case.dtype, context=f"{case.case_id} second call")
    assert result.ok, result.message


# --------------------------------------------------------------------------- channels_first
# Where TensorFlow 2.21's CPU kernels refuse a channels_first ConvLSTM (UnimplementedError: the
# CPU Conv2D kernel has no NCHW layout in float64, and Keras 3 hands 1-D and 2-D channels_first
# convolutions to it; it compiles 3-D ones with XLA, and tf_keras transposes to channels_last
# itself), with a 3-wide kernel
# (a 1x1 kernel can take another kernel path). Data, not a skip:
# when TensorFlow changes, this table must be updated.
KERAS_REFUSES_CHANNELS_FIRST = {
    ("keras3", 1, "float64"),
    ("keras3", 2, "float64"),
}


def _refusal_params() -> list:
    params = []
    for flavor in FLAVOR_MAJOR:
        values = [(flavor, rank, dtype) for rank in RANKS for dtype in DTYPES]
        params += flavor_params(flavor, values, [f"{flavor}-conv{r}d-{d}" for _, r, d in values])
    return params


@pytest.mark.parametrize(("flavor", "rank", "dtype"), _refusal_params())
def test_channels_first_where_keras_refuses_it(flavor: str, rank: int, dtype: str) -> None:
    """The twin's channels_first result equals Keras's channels_last layer on transposed
    inputs, always; and Keras's own channels_first layer refuses exactly where the table says."""
    case = replace(draw_case(rank, FLAVOR_MAJOR[flavor], dtype, 0, "channels_first"), kernel_size=(3,) * rank)
    handle = keras_handle(flavor)
    data = make_data(case)
    twin = twin_outputs(case, data)
    transposed, _ = keras_results(handle, case, data, data_format="channels_last")
    result = compare(transposed, twin, dtype=dtype, context=f"{case.case_id} via channels_last")
    assert result.ok, result.message
    refused = (flavor, rank, dtype) in KERAS_REFUSES_CHANNELS_FIRST
    try:
        same, _ = keras_results(handle, case, data)
    except Exception as exc:
        assert refused and keras_refuses(exc), f"{handle.describe()} failed unexpectedly: {exc}"
        return
    assert not refused, f"{handle.describe()} now runs {case.case_id}: update KERAS_REFUSES_CHANNELS_FIRST"
    result = compare(same, twin, dtype=dtype, context=case.case_id)
    assert result.ok, result.message


@pytest.mark.parametrize("flavor", flavor_params("tf-keras", [("tf-keras",)]))
def test_tf_keras_stateful_conv_lstm_still_refuses_float64(flavor: str) -> None:
    """Why the stateful float64 tf_keras cases compare with chained calls instead."""
    case = draw_case(2, 2, "float64", 0, "stateful")
    with pytest.raises(Exception) as info:
        keras_results(keras_handle(flavor), case, make_data(case))
    assert keras_stateful_refuses_dtype(info.value), f"tf_keras failed differently: {info.value}"


# --------------------------------------------------------------------------- negative tests
def _swap_gates(weights: list[np.ndarray], filters: int, a: str, b: str) -> list[np.ndarray]:
    out = []
    for w in weights:
        w = w.copy()
        ia, ib = conv_lstm_cell.GATES.index(a), conv_lstm_cell.GATES.index(b)
        sa, sb = slice(ia * filters, (ia + 1) * filters), slice(ib * filters, (ib + 1) * filters)
        w[..., sa], w[..., sb] = w[..., sb].copy(), w[..., sa].copy()
        out.append(w)
    return out


def _transpose_spatial(weights: list[np.ndarray], filters: int) -> list[np.ndarray]:
    return [
        np.ascontiguousarray(np.swapaxes(weights[0], 0, 1)),
        np.ascontiguousarray(np.swapaxes(weights[1], 0, 1)),
        *weights[2:],
    ]


MISTAKES = {
    "swap i/f": lambda w, f: _swap_gates(w, f, "i", "f"),
    "swap c/o": lambda w, f: _swap_gates(w, f, "c", "o"),
    "transposed kernels": _transpose_spatial,
}


def _negative_case(keras_version: int) -> ConvCase:
    case = draw_case(2, keras_version, "float64", 5, "same")
    return replace(case, kernel_size=(3, 2), spatial=(6, 5), filters=3, channels=2, return_sequences=True, return_state=True)


@pytest.mark.parametrize(("flavor", "mistake"), _per_flavor([(m,) for m in sorted(MISTAKES)]))
def test_weight_mistakes_are_caught(flavor: str, mistake: str) -> None:
    case = _negative_case(FLAVOR_MAJOR[flavor])
    if mistake == "transposed kernels":
        case = replace(case, kernel_size=(3, 3))
    data = make_data(case)
    expected, _ = keras_results(keras_handle(flavor), case, data)
    assert compare(expected, twin_outputs(case, data), dtype=case.dtype).ok  # the honest twin matches
    twin = case.twin()
    twin.set_weights(MISTAKES[mistake](data.weights, case.filters))
    result = compare(expected, twin_outputs(case, data, twin), dtype=case.dtype)
    assert not result.ok, f"{mistake} went unnoticed: {result.message}"


@pytest.mark.parametrize("flavor", _per_flavor([()]))
def test_wrong_same_padding_is_caught(flavor: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Padding ``same`` with the odd zero before instead of after (an even kernel)."""
    case = replace(_negative_case(FLAVOR_MAJOR[flavor]), kernel_size=(4, 2))
    data = make_data(case)
    expected, _ = keras_results(keras_handle(flavor), case, data)
    assert compare(expected, twin_outputs(case, data), dtype=case.dtype).ok
    honest = conv_lstm_cell.same_padding
    monkeypatch.setattr(conv_lstm_cell, "same_padding", lambda *a: honest(*a)[::-1])
    result = compare(expected, twin_outputs(case, data), dtype=case.dtype)
    assert not result.ok, f"mirrored same padding went unnoticed: {result.message}"


@pytest.mark.parametrize("flavor", _per_flavor([()]))
def test_valid_for_same_is_caught(flavor: str) -> None:
    """A twin built with the wrong padding mode disagrees (here even in shape)."""
    case = _negative_case(FLAVOR_MAJOR[flavor])
    data = make_data(case)
    expected, _ = keras_results(keras_handle(flavor), case, data)
    twin = case.twin(padding="valid")
    twin.set_weights(data.weights)
    assert not compare(expected, twin_outputs(case, data, twin), dtype=case.dtype).ok


@pytest.mark.parametrize(("flavor", "data_format"), _per_flavor([("channels_first",), ("channels_last",)]))
def test_softmax_acts_on_the_last_axis_of_keras_layout(flavor: str, data_format: str) -> None:
    case = replace(
        draw_case(2, FLAVOR_MAJOR[flavor], "float32", 9, "return_state"), activation="softmax", data_format=data_format
    )
    data = make_data(case)
    expected, _ = keras_results(keras_handle(flavor), case, data)
    result = compare(expected, twin_outputs(case, data), dtype=case.dtype, context=case.case_id)
    assert result.ok, result.message


# --------------------------------------------------------------------------- properties (no Keras)
def _case_strategy(**forced: object) -> st.SearchStrategy[ConvCase]:
    def build(rank: int, version: int, dtype: str, seed: int, option: str) -> ConvCase:
        case = draw_case(rank, version, dtype, seed, option)
        return replace(case, **forced) if forced else case

    options = [o for o in OPTIONS if o not in ("stateful", "mask", "initial_state", "go_backwards")]
    return st.builds(
        build,
        st.sampled_from(RANKS),
        st.sampled_from((3, 2)),
        st.sampled_from(DTYPES),
        st.integers(0, 10_000),
        st.sampled_from(options),
    )


@given(case=_case_strategy(return_sequences=True, return_state=True))
def test_cell_steps_equal_the_whole_sequence(case: ConvCase) -> None:
    data = make_data(case)
    layer = case.twin()
    layer.set_weights(data.weights)
    whole = layer(data.inputs[0])
    cell = conv_lstm.ConvLSTMCell(
        case.rank,
        **{
            k: v
            for k, v in case.layer_kwargs().items()
            if k not in ("return_sequences", "return_state", "go_backwards", "stateful")
        },
        keras_version=case.keras_version,
    )
    cell.set_weights(data.weights)
    states = [np.zeros(case.state_shape(), case.dtype)] * 2
    steps = []
    for t in range(case.timesteps):
        y, states = cell(data.inputs[0][:, t], states)
        steps.append(y)
    rnnparity.assert_parity(whole[0], np.stack(steps, axis=1), context=f"{case.case_id} outputs")
    rnnparity.assert_parity(list(whole[1:]), states, context=f"{case.case_id} states")


@given(case=_case_strategy(initial_state=True, mask=True, return_state=True))
def test_go_backwards_equals_reversed_inputs(case: ConvCase) -> None:
    data = make_data(case)
    forwards, backwards = case.twin(), case.twin(go_backwards=True)
    forwards.set_weights(data.weights)
    backwards.set_weights(data.weights)
    x = data.inputs[0]
    assert data.mask is not None
    rnnparity.assert_parity(
        forwards(x[:, ::-1], initial_state=data.initial_state, mask=data.mask[:, ::-1]),
        backwards(x, initial_state=data.initial_state, mask=data.mask),
        context=case.case_id,
    )


@given(case=_case_strategy(return_sequences=True, return_state=True), split=st.integers(1, 4))
def test_stateful_chunks_equal_one_call(case: ConvCase, split: int) -> None:
    case = replace(case, timesteps=max(case.timesteps, 2))
    split = min(split, case.timesteps - 1)
    data = make_data(case)
    whole = case.twin()
    whole.set_weights(data.weights)
    expected = whole(data.inputs[0])
    chunked = case.twin(stateful=True)
    chunked.set_weights(data.weights)
    first = chunked(data.inputs[0][:, :split])
    second = chunked(data.inputs[0][:, split:])
    rnnparity.assert_parity(expected[0], np.concatenate([first[0], second[0]], axis=1), context=case.case_id)
    rnnparity.assert_parity(list(expected[1:]), list(second[1:]), context=case.case_id)
    rnnparity.assert_parity(list(expected[1:]), chunked.states, context=f"{case.case_id} carried")


@given(case=_case_strategy(data_format="channels_last", return_state=True, initial_state=True))
def test_channels_first_equals_transposed_channels_last(case: ConvCase) -> None:
    # softmax acts on the last axis of Keras's layout: filters in channels_last, the last
    # spatial axis in channels_first, so the two layouts compute different things.
    assume(case.activation != "softmax")
    data = make_data(case)
    last = case.twin()
    last.set_weights(data.weights)
    first = case.twin(data_format="channels_first")
    first.set_weights(data.weights)  # the kernels are the same in both layouts
    assert data.initial_state is not None

    def to_first(a: np.ndarray, axis: int) -> np.ndarray:
        return np.moveaxis(a, -1, axis)

    expected = last(data.inputs[0], initial_state=data.initial_state)
    got = first(to_first(data.inputs[0], 2), initial_state=[to_first(s, 1) for s in data.initial_state])
    out_axis = 2 if case.return_sequences else 1
    moved = [to_first(a, out_axis if n == 0 else 1) for n, a in enumerate(expected)]
    rnnparity.assert_parity(tuple(moved) if isinstance(expected, tuple) else moved, got, context=case.case_id)


@given(case=_case_strategy(return_state=True))
def test_all_true_mask_equals_no_mask(case: ConvCase) -> None:
    data = make_data(case)
    layer = case.twin()
    layer.set_weights(data.weights)
    mask = np.ones((case.batch, case.timesteps), dtype=bool)
    rnnparity.assert_parity(layer(data.inputs[0]), layer(data.inputs[0], mask=mask), context=case.case_id)


def test_keras_default_recurrent_activation() -> None:
    assert rnnparity.ConvLSTM2D(2, 3).recurrent_activation == "sigmoid"
    assert rnnparity.ConvLSTM2D(2, 3, keras_version=2).recurrent_activation == "hard_sigmoid"


def test_weights_round_trip_and_are_copied() -> None:
    case = draw_case(3, 3, "float64", 1)
    data = make_data(case)
    layer = case.twin()
    layer.set_weights(data.weights)
    got = layer.get_weights()
    for a, b in zip(got, data.weights):
        assert a.shape == b.shape and np.array_equal(a, b) and not np.shares_memory(a, b)


# --------------------------------------------------------------------------- errors
def _built(**kwargs: object) -> rnnparity.ConvLSTM2D:
    layer = rnnparity.ConvLSTM2D(2, 3, **kwargs)  # type: ignore[arg-type]
    rng = np.random.default_rng(3)
    layer.set_weights([rng.standard_normal((3, 3, 4, 8)), rng.standard_normal((3, 3, 2, 8)), rng.standard_normal(8)])
    return layer


BAD_INPUTS = [
    ("padding", lambda: rnnparity.ConvLSTM2D(2, 3, padding="causal"), ValueError, ["padding", "'valid'", "'causal'"]),
    ("data_format", lambda: rnnparity.ConvLSTM2D(2, 3, data_format="NHWC"), ValueError, ["data_format", "channels_last", "NHWC"]),
    ("kernel_size", lambda: rnnparity.ConvLSTM2D(2, (3, 3, 3)), ValueError, ["kernel_size", "2 positive", "(3, 3, 3)"]),
    ("filters", lambda: rnnparity.ConvLSTM1D(0, 3), ValueError, ["filters", "positive", "0"]),
    (
        "strides+dilation",
        lambda: rnnparity.ConvLSTM1D(2, 3, strides=2, dilation_rate=2),
        ValueError,
        ["strides", "dilation_rate"],
    ),
    (
        "kernel shape",
        lambda: rnnparity.ConvLSTM2D(2, 3).set_weights([np.ones((3, 3, 4, 6)), np.ones((3, 3, 2, 8)), np.ones(8)]),
        ValueError,
        ["kernel", "(3, 3, 4, 6)", "(3, 3, 4, 8)"],
    ),
    (
        "kernel rank",
        lambda: rnnparity.ConvLSTM3D(2, 3).set_weights([np.ones((3, 3, 4, 8)), np.ones((3, 3, 2, 8)), np.ones(8)]),
        ValueError,
        ["kernel", "5-D", "(3, 3, 4, 8)"],
    ),
    ("input rank", lambda: _built()(np.ones((2, 3, 5, 5))), ValueError, ["inputs", "rank 5", "(2, 3, 5, 5)"]),
    ("input channels", lambda: _built()(np.ones((2, 3, 5, 5, 3))), ValueError, ["3 channels", "4"]),
    ("too small", lambda: _built()(np.ones((2, 3, 2, 5, 4))), ValueError, ["spatial size (2, 5)", "kernel_size=(3, 3)"]),
    (
        "initial_state shape",
        lambda: _built()(np.ones((2, 3, 5, 5, 4)), initial_state=[np.ones((2, 5, 5, 2)), np.ones((2, 3, 3, 2))]),
        ValueError,
        ["initial_state (h)", "(2, 3, 3, 2)", "(2, 5, 5, 2)"],
    ),
    (
        "initial_state count",
        lambda: _built()(np.ones((2, 3, 5, 5, 4)), initial_state=[np.ones((2, 3, 3, 2))]),
        ValueError,
        ["initial_state", "[h, c]"],
    ),
    (
        "mask shape",
        lambda: _built()(np.ones((2, 3, 5, 5, 4)), mask=np.ones((2, 4), bool)),
        ValueError,
        ["mask", "(2, 3)", "(2, 4)"],
    ),
    ("no weights", lambda: rnnparity.ConvLSTM2D(2, 3)(np.ones((2, 3, 5, 5, 4))), ValueError, ["set_weights"]),
    ("inputs type", lambda: _built()("frames"), TypeError, ["inputs", "str"]),
    ("time_major", lambda: rnnparity.ConvLSTM2D(2, 3, keras_version=2, time_major=True), ValueError, ["time_major"]),
]


@pytest.mark.parametrize(("name", "call", "error", "fragments"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_names_argument_expected_and_given(name: str, call, error: type, fragments: list[str]) -> None:
    with pytest.raises(error) as info:
        call()
    for fragment in fragments:
        assert fragment in str(info.value), f"{name}: {fragment!r} missing from {info.value}"


# --------------------------------------------------------------------------- explain
@pytest.mark.parametrize("rank", RANKS)
def test_explain_names_the_blocks_the_twin_uses(rank: int) -> None:
    from rnnparity.layout import explain_conv_lstm_layout

    case = draw_case(rank, 3, "float64", 2, "plain")
    data = make_data(case)
    cell = conv_lstm.ConvLSTMCell(rank, case.filters, case.kernel_size)
    cell.set_weights(data.weights)
    explained = explain_conv_lstm_layout(rank, case.filters, case.kernel_size, case.channels)
    assert explained["shapes"]["kernel"] == list(data.weights[0].shape)
    assert explained["shapes"]["recurrent_kernel"] == list(data.weights[1].shape)
    for row in explained["gates"]:
        parts = row["kernel"].strip("[]").split(", ")
        assert len(parts) == rank + 2 and parts[:-1] == [":"] * (rank + 1)
        start, stop = (int(v) for v in parts[-1].split(":"))
        for weight, name in ((data.weights[0], "kernel"), (data.weights[1], "recurrent_kernel")):
            assert row[name] == row["kernel"]
            assert np.array_equal(weight[..., start:stop], cell.gate_block(weight, row["gate"]))
        assert np.array_equal(data.weights[2][start:stop], cell.gate_block(data.weights[2], row["gate"]))
