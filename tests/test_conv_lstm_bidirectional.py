"""Bidirectional(ConvLSTM1D/2D/3D): the twin against Keras 3 and tf_keras, every merge mode
(concat, sum, mul, ave, None), with and without return_state, float32 and float64, seeded
random weights (forward and backward different), built directly and through from_keras.

Each (flavour, rank, merge mode, dtype) draws a random ConvLSTM configuration
(tests/conv_lstm_cases.py) and forces one more option on it (a mask, an initial state, ...),
so every option meets every merge mode across the ranks.

Reproduce one case: ``python -m pytest tests/test_conv_lstm_bidirectional.py -n 0 -k "<id>"``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import FLAVOR_MAJOR, flavor_params, keras_handle
from conv_lstm_cases import ConvCase, conditioning, describe, draw_case, make_data

import rnnparity
from rnnparity import Bidirectional
from rnnparity.compare import compare
from rnnparity.suite import keras_adapter
from rnnparity.suite.known_differences import KNOWN_DIFFERENCES

RANKS = (1, 2, 3)
DTYPES = ("float32", "float64")
MERGE_MODES = ("concat", "sum", "mul", "ave", None)
# The option forced on each case, taken in turn over (rank, merge mode).
# (Not go_backwards: Keras 3 makes the backward copy with go_backwards=True whatever the layer's,
# so a layer that already reads backwards is refused, as the twin refuses it.)
OPTIONS = ("plain", "mask", "initial_state", "dilation", "same", "strides", "no_bias", "activations")


def _case(flavor: str, rank: int, merge_mode: str | None, dtype: str) -> ConvCase:
    index = RANKS.index(rank) * len(MERGE_MODES) + MERGE_MODES.index(merge_mode)
    option = OPTIONS[index % len(OPTIONS)]
    case = draw_case(rank, FLAVOR_MAJOR[flavor], dtype, 100 + index, option)
    # return_state on for every other case, so each merge mode meets both (over the ranks).
    return replace(case, return_state=case.return_state or index % 2 == 0, stateful=False)


def _params() -> list:
    params = []
    for flavor in FLAVOR_MAJOR:
        values = [(flavor, rank, merge, dtype) for rank in RANKS for merge in MERGE_MODES for dtype in DTYPES]
        ids = [f"{flavor}-conv{r}d-merge-{m}-{d}" for _, r, m, d in values]
        params += flavor_params(flavor, values, ids)
    return params


def _weights(case: ConvCase) -> list[np.ndarray]:
    """The forward layer's seeded random weights, then the backward layer's (other seeds)."""
    return [*make_data(case).weights, *make_data(replace(case, seed=case.seed + 5000)).weights]


def _initial_state(case: ConvCase) -> list[np.ndarray] | None:
    if not case.initial_state:
        return None
    forward = make_data(case).initial_state
    backward = make_data(replace(case, seed=case.seed + 5000)).initial_state
    assert forward is not None and backward is not None
    return [*forward, *backward]


def _keras_bidirectional(handle: Any, case: ConvCase, merge_mode: str | None, weights: list[np.ndarray], **inner: Any) -> Any:
    layers = handle.module.layers
    layer_class = getattr(layers, f"ConvLSTM{case.rank}D")
    layer = layers.Bidirectional(layer_class(**{**case.layer_kwargs(), **inner}), merge_mode=merge_mode, dtype=case.dtype)
    layer.build((None, *case.input_shape()[1:]))
    layer.set_weights(weights)
    return layer


def _twin_bidirectional(case: ConvCase, merge_mode: str | None, weights: list[np.ndarray]) -> Bidirectional:
    twin = Bidirectional(case.twin(), merge_mode=merge_mode, dtype=case.dtype)
    twin.set_weights(weights)
    return twin


def _check(flavor: str, case: ConvCase, merge_mode: str | None) -> list[float]:
    handle = keras_handle(flavor)
    if case.dtype == "float32":
        conditioned = conditioning(case)
        assert conditioned.ok, f"case cannot decide float32 parity ({describe(case)}): {conditioned.message}"
    weights = _weights(case)
    data = make_data(case)
    x, mask, initial_state = data.inputs[0], data.mask, _initial_state(case)
    keras_layer = _keras_bidirectional(handle, case, merge_mode, weights)
    expected = keras_adapter.call_layer(handle, keras_layer, x, initial_state=initial_state, mask=mask)
    errors = []
    for route, twin in (
        ("set_weights", _twin_bidirectional(case, merge_mode, weights)),
        ("from_keras", rnnparity.from_keras(keras_layer)),
    ):
        assert isinstance(twin, Bidirectional) and twin.merge_mode == merge_mode
        result = compare(expected, twin(x, initial_state=initial_state, mask=mask), dtype=case.dtype, context=f"{route}")
        assert result.ok, f"{result.message}\nmerge_mode={merge_mode!r}, configuration: {describe(case)}"
        errors.append(result.max_abs)
    return errors


@pytest.mark.parametrize(("flavor", "rank", "merge_mode", "dtype"), _params())
def test_bidirectional_conv_lstm_parity(flavor: str, rank: int, merge_mode: str | None, dtype: str) -> None:
    _check(flavor, _case(flavor, rank, merge_mode, dtype), merge_mode)


@pytest.mark.parametrize(
    ("flavor", "rank", "merge_mode"),
    [p for f in FLAVOR_MAJOR for p in flavor_params(f, [(f, r, m) for r in RANKS for m in ("concat", None)])],
)
def test_bidirectional_conv_lstm_channels_first(flavor: str, rank: int, merge_mode: str | None) -> None:
    """channels_first (float32, which every Keras runs): concat joins the last axis of Keras's
    layout, here the last spatial axis, as Keras does."""
    case = replace(draw_case(rank, FLAVOR_MAJOR[flavor], "float32", 7, "channels_first"), return_state=True)
    _check(flavor, case, merge_mode)


@pytest.mark.parametrize(("flavor", "rank"), [p for f in FLAVOR_MAJOR for p in flavor_params(f, [(f, r) for r in RANKS])])
def test_bidirectional_conv_lstm_with_a_backward_layer(flavor: str, rank: int) -> None:
    """An explicit backward_layer with its own settings (other filters, activation, padding)."""
    handle = keras_handle(flavor)
    case = replace(draw_case(rank, FLAVOR_MAJOR[flavor], "float64", 8, "mask"), padding="same", return_state=True)
    backward_case = replace(case, filters=case.filters + 1, activation="softsign", go_backwards=True, seed=case.seed + 1)
    weights = [*make_data(case).weights, *make_data(backward_case).weights]
    layers = handle.module.layers
    layer_class = getattr(layers, f"ConvLSTM{rank}D")
    keras_layer = layers.Bidirectional(
        layer_class(**case.layer_kwargs()), backward_layer=layer_class(**backward_case.layer_kwargs()), dtype="float64"
    )
    keras_layer.build((None, *case.input_shape()[1:]))
    keras_layer.set_weights(weights)
    data = make_data(case)
    expected = keras_adapter.call_layer(handle, keras_layer, data.inputs[0], mask=data.mask)
    twin = Bidirectional(case.twin(), backward_layer=backward_case.twin(), dtype="float64")
    twin.set_weights(weights)
    for route, candidate in (("set_weights", twin), ("from_keras", rnnparity.from_keras(keras_layer))):
        result = compare(expected, candidate(data.inputs[0], mask=data.mask), dtype="float64", context=route)
        assert result.ok, result.message


@pytest.mark.parametrize("flavor", [p for f in FLAVOR_MAJOR for p in flavor_params(f, [(f,)])])
def test_masked_steps_of_a_bidirectional_conv_lstm(flavor: str) -> None:
    """Keras 3 outputs zeros at the masked steps of a Bidirectional's sequences; tf_keras's
    ConvLSTM ignores zero_output_for_mask and repeats the last unmasked output
    (known difference keras2-conv-lstm-masked-output). Both twins follow their Keras; the
    other Keras's rule is caught."""
    handle = keras_handle(flavor)
    case = replace(
        draw_case(2, FLAVOR_MAJOR[flavor], "float64", 9, "plain"),
        return_sequences=True,
        return_state=False,
        recurrent_activation="sigmoid",  # the same formula in both Kerases: only the masked steps differ
        timesteps=4,
        batch=2,
    )
    weights = _weights(case)
    x = make_data(case).inputs[0]
    mask = np.array([[True, False, True, False], [True, True, True, True]])  # masked steps after unmasked ones
    keras_layer = _keras_bidirectional(handle, case, None, weights)
    forward, _ = keras_adapter.call_layer(handle, keras_layer, x, mask=mask)
    zeros_at_masked_steps = not np.any(forward[~mask])
    assert zeros_at_masked_steps is (handle.keras_version == 3), "the Kerases' rule for masked steps changed"
    twin = _twin_bidirectional(case, None, weights)
    rnnparity.assert_parity([forward], list(twin(x, mask=mask))[:1], check_container=False)
    other = _twin_bidirectional(replace(case, keras_version=5 - case.keras_version), None, weights)
    assert not compare([forward], list(other(x, mask=mask))[:1], check_container=False).ok
    entry = next(d for d in KNOWN_DIFFERENCES if d.id == "keras2-conv-lstm-masked-output")
    config = {"kind": "bidirectional", "layers": [{"kind": "conv_lstm2d", "return_sequences": True}], "mask": "scattered"}
    assert entry.matches_case is not None and entry.matches_case(config)
    assert not entry.matches_case({**config, "mask": "none"})


@pytest.mark.parametrize("flavor", [p for f in FLAVOR_MAJOR for p in flavor_params(f, [(f,)])])
def test_bidirectional_conv_lstm_from_keras_still_names_custom_activations(flavor: str) -> None:
    handle = keras_handle(flavor)
    layers = handle.module.layers

    def custom(x: Any) -> Any:
        return x * 0.5

    conv = layers.Bidirectional(layers.ConvLSTM1D(2, 2), name="both_ways")
    conv.build((1, 3, 5, 1))
    # Keras 3 re-creates the wrapped layer from its config, which a custom function does not survive
    # unregistered: the backward copy gets it afterwards, as a user's subclass might set it.
    conv.backward_layer.cell.activation = custom
    with pytest.raises(ValueError, match=r"ConvLSTM1D '.*' \(in Bidirectional 'both_ways'\) uses a custom activation"):
        rnnparity.from_keras(conv)


@pytest.mark.parametrize("flavor", [p for f in FLAVOR_MAJOR for p in flavor_params(f, [(f,)])])
def test_zero_output_for_mask_of_a_conv_lstm_acts_in_keras3_only(flavor: str) -> None:
    """The rule behind keras2-conv-lstm-masked-output, on one ConvLSTM: tf_keras accepts
    zero_output_for_mask=True and keeps repeating outputs; from_keras's twin does the same."""
    handle = keras_handle(flavor)
    case = replace(draw_case(1, FLAVOR_MAJOR[flavor], "float64", 10, "plain"), return_sequences=True, timesteps=4, batch=2)
    layer = handle.module.layers.ConvLSTM1D(**case.layer_kwargs(), zero_output_for_mask=True)
    layer.build((None, *case.input_shape()[1:]))
    layer.set_weights(make_data(case).weights)
    x = make_data(case).inputs[0]
    mask = np.array([[True, False, True, False], [True, True, False, True]])
    expected = keras_adapter.call_layer(handle, layer, x, mask=mask)
    assert (not np.any(expected[~mask])) is (handle.keras_version == 3)
    twin = rnnparity.from_keras(layer)
    assert twin.zero_output_for_mask is True
    result = compare(expected, twin(x, mask=mask), dtype="float64", context=case.case_id)
    assert result.ok, result.message


@pytest.mark.parametrize(
    ("flavor", "merge_mode"), [p for f in FLAVOR_MAJOR for p in flavor_params(f, [(f, m) for m in ("concat", "sum")])]
)
def test_bidirectional_conv_lstm_mistakes_are_caught(flavor: str, merge_mode: str) -> None:
    """The comparison must fail for a twin given the backward weights first, or one whose two
    layers read in swapped directions."""
    handle = keras_handle(flavor)
    case = replace(draw_case(2, FLAVOR_MAJOR[flavor], "float64", 11, "same"), return_sequences=True, timesteps=4)
    weights = _weights(case)
    x = make_data(case).inputs[0]
    expected = keras_adapter.call_layer(handle, _keras_bidirectional(handle, case, merge_mode, weights), x)
    assert compare(expected, _twin_bidirectional(case, merge_mode, weights)(x), dtype="float64").ok
    half = len(weights) // 2
    swapped = _twin_bidirectional(case, merge_mode, [*weights[half:], *weights[:half]])
    assert not compare(expected, swapped(x), dtype="float64").ok, "forward and backward weights swapped went unnoticed"
    reversed_pair = _twin_bidirectional(case, merge_mode, weights)
    reversed_pair.forward_layer.go_backwards, reversed_pair.backward_layer.go_backwards = True, False
    assert not compare(expected, reversed_pair(x), dtype="float64").ok, "swapped directions went unnoticed"


@pytest.mark.parametrize("flavor", [p for f in FLAVOR_MAJOR for p in flavor_params(f, [(f,)])])
def test_verify_and_explain_a_model_with_a_bidirectional_conv_lstm(
    flavor: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """verify runs the saved model (.keras, and .h5, whose weights are also read without Keras)
    and checks the Bidirectional(ConvLSTM2D) twin; explain lists both directions' gate blocks."""
    from rnnparity import cli

    handle = keras_handle(flavor)
    k = handle.module
    inputs = k.Input((4, 6, 5, 2))
    x = k.layers.Bidirectional(k.layers.ConvLSTM2D(3, (3, 2), padding="same", return_sequences=True), name="both")(inputs)
    model = k.Model(inputs, x)
    rng = np.random.default_rng(12)
    model.set_weights([(rng.standard_normal(w.shape) * 0.4).astype(w.dtype) for w in model.get_weights()])
    for name in ("model.keras", "model.h5") if handle.keras_version == 3 else ("model.h5",):
        path = tmp_path / name
        model.save(str(path))
        code = cli.main(["verify", str(path), "--json", str(tmp_path / "report.json")])
        out = capsys.readouterr().out
        assert code == 0, out
        report = json.loads((tmp_path / "report.json").read_text())
        [row] = report["layers"]
        assert (row["name"], row["type"], row["status"]) == ("both", "Bidirectional", "ok")
        assert row["file_weights"] == ("identical" if name.endswith(".h5") else ""), row
        assert cli.main(["explain", str(path)]) == 0
        out = capsys.readouterr().out
        assert out.count("conv_lstm2d filters=3 kernel_size=3x2 input_channels=2") == 2, out


def _grad_params() -> list:
    params = []
    for flavor in FLAVOR_MAJOR:
        values = [(flavor, rank, merge) for rank in RANKS for merge in MERGE_MODES]
        params += flavor_params(flavor, values, [f"{flavor}-conv{r}d-merge-{m}" for _, r, m in values])
    return params


@pytest.mark.parametrize(("flavor", "rank", "merge_mode"), _grad_params())
def test_bidirectional_conv_lstm_gradients_against_the_tape(flavor: str, rank: int, merge_mode: str | None) -> None:
    """rnnparity.gradients of a Bidirectional(ConvLSTM) against tf.GradientTape over the same
    Keras layer, float64: the inputs', the initial states' and every weight's gradient, the
    merged output's gradient split as each merge mode splits it (mul needs both outputs)."""
    handle = keras_handle(flavor)
    case = _case(flavor, rank, merge_mode, "float64")
    weights = _weights(case)
    data = make_data(case)
    x, mask, initial_state = data.inputs[0], data.mask, _initial_state(case)
    keras_layer = _keras_bidirectional(handle, case, merge_mode, weights)
    twin = _twin_bidirectional(case, merge_mode, weights)
    returned = twin(x, initial_state=initial_state, mask=mask)
    rng = np.random.default_rng(case.seed)
    leaves = returned if isinstance(returned, (list, tuple)) else [returned]
    output_grads: Any = [rng.standard_normal(leaf.shape) for leaf in leaves]
    if not isinstance(returned, (list, tuple)):
        output_grads = output_grads[0]
    elif isinstance(returned, tuple):
        output_grads = tuple(output_grads)
    expected = keras_adapter.keras_gradients(handle, keras_layer, x, output_grads, initial_state=initial_state, mask=mask)
    ours = rnnparity.gradients(twin, x, output_grads, initial_state=initial_state, mask=mask)
    for key in ("inputs", "initial_state", "weights"):
        result = compare(expected[key], ours[key], dtype="float64", context=key, check_container=False)
        assert result.ok, f"{result.message}\nmerge_mode={merge_mode!r}, configuration: {describe(case)}"
