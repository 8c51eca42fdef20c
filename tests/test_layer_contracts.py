"""Contracts of the compositions and the layer plumbing that the parity cases do not reach:
states set by hand, training-only arguments, nested stacks, configs against Keras, the
gradients' bookkeeping, warnings, and the errors and descriptions users read. Most close a
hole mutation testing found (docs/mutation.md names the mutants each kills); the cell
errors and the one-timestep calls cover code of the same kind before its mutants are run."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FLAVOR_MAJOR, flavor_params, keras_handle

import rnnparity
from rnnparity import GRU, LSTM, Bidirectional, GRUCell, LSTMCell, SimpleRNNCell, StackedRNNCells, assert_parity
from rnnparity.suite import keras_adapter
from rnnparity.suite.matrix import random_states, random_weights


# --------------------------------------------------------------------------- Bidirectional
@pytest.mark.parametrize("keras_version", [2, 3])
def test_bidirectional_reset_state_gives_each_direction_its_half(keras_version: int) -> None:
    """reset_state(states) / reset_states(states) on a stateful pair: the forward layer takes
    the first half, the backward layer the second; the next call starts from them exactly as
    a call with those states as initial_state does."""
    rng = np.random.default_rng(21)
    weights = random_weights(rng, "lstm", 3, 2, dtype="float64") + random_weights(rng, "lstm", 3, 2, dtype="float64")
    states = random_states(rng, "lstm", 2, 3, "float64") + random_states(rng, "lstm", 2, 3, "float64")
    x = rng.normal(0.0, 1.5, (2, 5, 2))

    def wrapper(stateful: bool) -> Bidirectional:
        layer = LSTM(3, return_sequences=True, return_state=True, stateful=stateful, dtype="float64", keras_version=keras_version)
        built = Bidirectional(layer, dtype="float64")
        built.set_weights(weights)
        return built

    expected = wrapper(stateful=False)(x, initial_state=states)
    for method in ("reset_state", "reset_states"):
        stateful = wrapper(stateful=True)
        getattr(stateful, method)(states)
        assert_parity(states, stateful.states, context=f"{method}: carried states")
        assert_parity(expected, stateful(x), context=f"{method}: the call after it")


def test_bidirectional_refuses_training_with_dropout_and_ignores_dropout_at_inference() -> None:
    rng = np.random.default_rng(22)
    weights = random_weights(rng, "gru", 3, 2) + random_weights(rng, "gru", 3, 2)
    x = rng.normal(0.0, 1.5, (2, 4, 2)).astype(np.float32)
    with_dropout = Bidirectional(GRU(3, dropout=0.3, recurrent_dropout=0.2, return_sequences=True))
    without = Bidirectional(GRU(3, return_sequences=True))
    with_dropout.set_weights(weights)
    without.set_weights(weights)
    with pytest.raises(ValueError, match=r"training=True with dropout > 0"):
        with_dropout(x, training=True)
    assert_parity(without(x), with_dropout(x, training=False))


def test_bidirectional_errors_say_what_was_given() -> None:
    with pytest.raises(ValueError) as keras3:
        Bidirectional(GRU(3, go_backwards=True))
    assert str(keras3.value).endswith(
        "got go_backwards=True for both (in Keras 3 the backward copy always has go_backwards=True)"
    )
    with pytest.raises(ValueError) as keras2:
        Bidirectional(GRU(3, keras_version=2), backward_layer=GRU(3, keras_version=2))
    assert str(keras2.value).endswith("got go_backwards=False for both")
    layer = Bidirectional(GRU(3))
    layer.set_weights(random_weights(np.random.default_rng(0), "gru", 3, 2) * 2)
    x = np.zeros((1, 2, 2), np.float32)
    h = np.zeros((1, 3), np.float32)
    with pytest.raises(ValueError, match=r"initial_state must be a list .* \(an even count\); got 3 items$"):
        layer(x, initial_state=[h, h, h])
    with pytest.raises(ValueError, match=r"\(an even count\); got ndarray$"):
        layer(x, initial_state=h)
    with pytest.raises(TypeError, match=r"backward_layer must be an rnnparity recurrent layer or None; got GRUCell"):
        Bidirectional(GRU(3), backward_layer=GRUCell(3))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- StackedRNNCells
def test_stack_description_and_errors_name_the_cells() -> None:
    stack = StackedRNNCells([LSTMCell(4), GRUCell(3, reset_after=False), SimpleRNNCell(2, use_bias=False)])
    assert repr(stack) == (
        "StackedRNNCells([LSTM(units=4, use_bias=True), GRU(units=3, use_bias=True, reset_after=False), "
        "SimpleRNN(units=2, use_bias=False)])"
    )
    with pytest.raises(ValueError, match=r"^cells\[2\] emulates Keras 2, cells\[0\] Keras 3;"):
        StackedRNNCells([LSTMCell(2), GRUCell(2), GRUCell(2, keras_version=2)])
    with pytest.raises(ValueError, match=r"^cells\[2\] has dtype float64, cells\[0\] float32;"):
        StackedRNNCells([LSTMCell(2), GRUCell(2), GRUCell(2, dtype="float64")])
    with pytest.raises(TypeError, match=r"^cells must be a list of rnnparity cells; got LSTMCell$"):
        StackedRNNCells(LSTMCell(2))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^cells must be a list of rnnparity cells; got str$"):
        StackedRNNCells("lstm")  # type: ignore[arg-type]
    rng = np.random.default_rng(23)
    built = StackedRNNCells([LSTMCell(4), GRUCell(3)])
    built.set_weights(random_weights(rng, "lstm", 4, 2) + random_weights(rng, "gru", 3, 4))
    x = np.zeros((2, 2), np.float32)
    with pytest.raises(ValueError, match=r"one entry per cell \(2: \[\['h', 'c'\], \['h'\]\]\); got a list of 1$"):
        built(x, [np.zeros((2, 4), np.float32)])
    with pytest.raises(ValueError, match=r"one entry per cell .*; got ndarray$"):
        built(x, np.zeros((2, 4), np.float32))
    assert rnnparity.RNN(built).units == 3  # the last cell's


# --------------------------------------------------------------------------- the layer plumbing
LAYER_FLAGS = ("return_sequences", "return_state", "go_backwards", "stateful", "zero_output_for_mask", "time_major", "unroll")


@pytest.mark.parametrize("flag", LAYER_FLAGS)
def test_every_layer_flag_is_named_when_it_is_not_a_bool(flag: str) -> None:
    with pytest.raises(TypeError, match=f"^{flag} must be True or False"):
        rnnparity.RNN(GRUCell(3, keras_version=2), **{flag: "yes"})


def test_time_major_errors_describe_the_time_major_layout() -> None:
    layer = LSTM(3, time_major=True, keras_version=2)
    layer.set_weights(random_weights(np.random.default_rng(24), "lstm", 3, 2))
    with pytest.raises(ValueError, match=r"^inputs must be rank 3 \(timesteps, batch, input_dim\); got shape \(4, 2\)$"):
        layer(np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match=r"^mask must have shape \(timesteps, batch\) = \(4, 2\); got \(2, 4\)$"):
        layer(np.zeros((4, 2, 2), np.float32), mask=np.ones((2, 4), bool))


@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn"])
def test_one_timestep_per_call_with_carried_states_equals_one_call(kind: str) -> None:
    """What a step-by-step decoder does: calls of one timestep each, every call starting from
    the states the previous one returned, give the whole-sequence call's outputs and states."""
    rng = np.random.default_rng(25)
    cls = {"lstm": LSTM, "gru": GRU, "simple_rnn": rnnparity.SimpleRNN}[kind]
    layer = cls(4, return_sequences=True, return_state=True, dtype="float64")
    layer.set_weights(random_weights(rng, kind, 4, 3, dtype="float64"))
    x = rng.normal(0.0, 1.5, (2, 6, 3))
    states = random_states(rng, kind, 2, 4, "float64")
    whole = layer(x, initial_state=states)
    outputs = []
    for t in range(x.shape[1]):
        output, *states = layer(x[:, t : t + 1], initial_state=states)
        outputs.append(output[:, 0])
    assert_parity(whole[0], np.stack(outputs, axis=1), context="outputs")
    assert_parity(list(whole[1:]), states, context="final states")


# --------------------------------------------------------------------------- config values against Keras
FLAVORS = [p for f in FLAVOR_MAJOR for p in flavor_params(f, [(f,)], ids=[f])]
RNN_KEYS = ("name", "trainable", "dtype", "return_sequences", "return_state", "go_backwards", "stateful", "unroll")


@pytest.mark.parametrize("flavor", FLAVORS)
def test_layer_config_values_match_keras(flavor: str) -> None:
    """The base-layer values of get_config (name, trainable, dtype, unroll, ...) equal Keras's,
    for layers built with Keras's defaults and with the arguments given, and for RNN(cells)
    with its cells nested as Keras nests them."""
    handle = keras_handle(flavor)
    layers = handle.module.layers
    for name in ("LSTM", "GRU", "SimpleRNN"):
        implementation = {"implementation": 1} if handle.keras_version == 2 and name != "SimpleRNN" else {}
        given_options = {"name": "encoder", "trainable": False, "unroll": True, "zero_output_for_mask": True}
        for given in ({}, {**given_options, **implementation}):
            keras_config = getattr(layers, name)(4, **given).get_config()
            twin_config = getattr(rnnparity, name)(4, keras_version=handle.keras_version, **given).get_config()
            for key in (*RNN_KEYS, "zero_output_for_mask", "activity_regularizer", "implementation"):
                if (key != "name" or given) and key in keras_config:
                    assert twin_config[key] == keras_config[key], f"{name}({given}) {key}"
    keras_cells = [layers.LSTMCell(3), layers.GRUCell(2), layers.SimpleRNNCell(2)]
    keras_rnn = layers.RNN(layers.StackedRNNCells(keras_cells), name="stack", trainable=False, unroll=True)
    keras_rnn.build((2, 4, 3))
    version = handle.keras_version
    twin_cells_built = [
        LSTMCell(3, keras_version=version),
        GRUCell(2, keras_version=version),
        SimpleRNNCell(2, keras_version=version),
    ]
    twin_rnn = rnnparity.RNN(twin_cells_built, name="stack", trainable=False, unroll=True)
    keras_config, twin_config = keras_rnn.get_config(), twin_rnn.get_config()
    for key in RNN_KEYS:
        assert twin_config[key] == keras_config[key], f"RNN {key}"
    assert twin_config["cell"]["class_name"] == keras_config["cell"]["class_name"] == "StackedRNNCells"
    twin_cells, keras_cells_config = twin_config["cell"]["config"]["cells"], keras_config["cell"]["config"]["cells"]
    assert [c["class_name"] for c in twin_cells] == [c["class_name"] for c in keras_cells_config]
    assert [c["config"]["units"] for c in twin_cells] == [c["config"]["units"] for c in keras_cells_config]


# --------------------------------------------------------------------------- cells
def test_cell_errors_name_the_argument_and_the_fix() -> None:
    rng = np.random.default_rng(26)
    with pytest.raises(ValueError, match=r"^recurrent_activation='celu' is not an activation of Keras 2"):
        LSTMCell(3, recurrent_activation="celu", keras_version=2)
    with pytest.raises(TypeError, match=r"^LSTMCell got unexpected keyword argument\(s\) \['bogus'\]"):
        LSTMCell(3, bogus=1)
    for use_bias, expected in ((True, "[kernel, recurrent_kernel, bias]"), (False, "[kernel, recurrent_kernel]")):
        with pytest.raises(ValueError) as unbuilt:
            GRU(3, use_bias=use_bias)(np.zeros((1, 2, 2), np.float32))
        assert f"call set_weights({expected}) first" in str(unbuilt.value)
    weights = random_weights(rng, "lstm", 3, 2)
    with pytest.raises(TypeError, match=r"^weights must be a list \['kernel', 'recurrent_kernel', 'bias'\]; got dict$"):
        LSTMCell(3).set_weights(dict(zip(("kernel", "recurrent_kernel", "bias"), weights)))  # type: ignore[arg-type]
    cell = LSTMCell(3)
    cell.set_weights(weights)
    states = random_states(rng, "lstm", 2, 3)
    with pytest.raises(ValueError, match=r"^inputs must have shape \(batch, 2\); got \(2, 3\)$"):
        cell(np.zeros((2, 3), np.float32), states)
    with pytest.raises(ValueError, match=r"^inputs must have shape \(batch, 2\); got \(2,\)$"):
        cell(np.zeros(2, np.float32), states)


def test_a_layer_reset_states_with_states_sets_them_and_its_repr_names_its_settings() -> None:
    """reset_states(states), the Keras 2 name, sets the carried states as reset_state does."""
    rng = np.random.default_rng(27)
    layer = GRU(3, stateful=True, return_sequences=True, keras_version=2)
    layer.set_weights(random_weights(rng, "gru", 3, 2))
    states = random_states(rng, "gru", 2, 3)
    layer.reset_states(states)
    assert_parity(states, layer.states)
    assert repr(layer) == "GRU(units=3, keras_version=2, dtype='float32', return_sequences=True, return_state=False)"
    assert repr(rnnparity.RNN(LSTMCell(4), return_state=True)) == (
        "RNN(LSTM(units=4, use_bias=True), keras_version=3, dtype='float32', return_sequences=False, return_state=True)"
    )


@pytest.mark.parametrize("bare", [False, True], ids=["list", "bare"])
@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_stack_step_returns_its_states_in_the_structure_keras_returns(flavor: str, bare: bool) -> None:
    """One step of StackedRNNCells: Keras 3 returns each cell's states in the structure it was
    given (a one-state cell's bare array stays bare, a list stays a list); Keras 2 returns a
    one-state cell's state bare either way."""
    handle = keras_handle(flavor)
    rng = np.random.default_rng(28)
    layers = handle.module.layers
    keras_stack = layers.StackedRNNCells([layers.LSTMCell(3), layers.GRUCell(2)])
    keras_stack.build((2, 4))
    keras_stack.set_weights(random_weights(rng, "lstm", 3, 4) + random_weights(rng, "gru", 2, 3))
    gru_state = random_states(rng, "gru", 2, 2)
    states = [random_states(rng, "lstm", 2, 3), gru_state[0] if bare else gru_state]
    x = rng.normal(0.0, 1.5, (2, 4)).astype(np.float32)
    output, new_states = keras_adapter.call_cell(handle, keras_stack, x, states)
    twin_output, twin_states = rnnparity.from_keras(keras_stack)(x, states)
    assert_parity(output, twin_output, context="output")
    assert_parity(new_states, twin_states, check_container=False, context=f"states given {'bare' if bare else 'as lists'}")


def test_a_layer_config_keeps_the_activity_regularizer_given() -> None:
    """A training-only argument the twin cannot use is still kept for its config, as given."""
    assert LSTM(3, activity_regularizer="l2").get_config()["activity_regularizer"] == "l2"
    assert GRU(3, keras_version=2, activity_regularizer="l1").get_config()["activity_regularizer"] == "l1"


@pytest.mark.parametrize("keras_version", [2, 3])
def test_a_stack_inside_a_stack_computes_the_flat_stack_and_nests_its_states(keras_version: int) -> None:
    """RNN([StackedRNNCells([five GRU cells]), LSTMCell]) computes what RNN of the six cells
    computes; the inner stack's states come back as one entry, holding its cells' states as
    the flat stack returns them (Keras 3: a list per cell; Keras 2: bare one-state arrays)."""
    rng = np.random.default_rng(29)
    weights = random_weights(rng, "gru", 2, 3)
    for _ in range(4):
        weights += random_weights(rng, "gru", 2, 2)
    weights += random_weights(rng, "lstm", 3, 2)

    def cells() -> list[GRUCell | LSTMCell]:
        return [*(GRUCell(2, keras_version=keras_version) for _ in range(5)), LSTMCell(3, keras_version=keras_version)]

    flat_cells, nested_cells = cells(), cells()
    flat = rnnparity.RNN(flat_cells, return_sequences=True, return_state=True)
    nested = rnnparity.RNN([StackedRNNCells(nested_cells[:5]), nested_cells[5]], return_sequences=True, return_state=True)
    flat.set_weights(weights)
    nested.set_weights(weights)
    x = rng.normal(0.0, 1.5, (2, 4, 3)).astype(np.float32)
    flat_output, *flat_states = flat(x)
    nested_output, inner_states, lstm_states = nested(x)
    assert_parity(flat_output, nested_output, context="output")
    assert_parity(flat_states[:5], inner_states, context="the inner stack's states")
    assert_parity(flat_states[5], lstm_states, context="the LSTM's states")
    # Given initial states come back in the structure they were given (lists here), both Kerases.
    gru_states = [random_states(rng, "gru", 2, 2) for _ in range(5)]
    lstm_initial = random_states(rng, "lstm", 2, 3)
    flat_output, *flat_states = flat(x, initial_state=[*gru_states, lstm_initial])
    nested_output, inner_states, lstm_states = nested(x, initial_state=[gru_states, lstm_initial])
    assert_parity(flat_output, nested_output, context="output from initial states")
    assert all(isinstance(states, list) and len(states) == 1 for states in inner_states)
    assert_parity(flat_states[:5], inner_states, context="the inner stack's states, given as lists")


def test_keras2_stateful_gradients_go_to_the_carried_states_it_uses_instead_of_initial_state() -> None:
    """A Keras 2 stateful layer whose carried states are non-zero ignores initial_state: the
    gradients say so (zero for initial_state, the whole gradient for the carried states), and
    equal those of a plain layer started from the carried states."""
    rng = np.random.default_rng(30)
    weights = random_weights(rng, "gru", 3, 2, dtype="float64")

    def build(stateful: bool) -> GRU:
        layer = GRU(3, return_sequences=True, return_state=True, stateful=stateful, keras_version=2, dtype="float64")
        layer.set_weights(weights)
        return layer

    stateful = build(stateful=True)
    stateful(rng.normal(0.0, 1.5, (2, 4, 2)))  # the carried states are now non-zero
    carried = stateful.states
    x = rng.normal(0.0, 1.5, (2, 4, 2))
    initial_state = random_states(rng, "gru", 2, 3, "float64")
    output_grads = [rng.normal(size=(2, 4, 3)), rng.normal(size=(2, 3))]
    grads = rnnparity.gradients(stateful, x, output_grads, initial_state=initial_state)
    reference = rnnparity.gradients(build(stateful=False), x, output_grads, initial_state=carried)
    assert not any(np.any(g) for g in grads["initial_state"])
    assert_parity(reference["initial_state"], grads["states"], context="carried states")
    assert_parity(reference["inputs"], grads["inputs"], context="inputs")


def test_reset_state_refuses_states_that_do_not_fit_the_layer() -> None:
    """A stateful layer's batch size is fixed by its first call; reset_state(states) checks the
    states against it (and against the cells of a stack) and names what is wrong."""
    rng = np.random.default_rng(31)
    layer = GRU(3, stateful=True)
    layer.set_weights(random_weights(rng, "gru", 3, 2))
    with pytest.raises(ValueError, match=r"^states \(h\) must have shape \(-1, 3\); got \(3,\)$"):
        layer.reset_state([np.zeros(3, np.float32)])  # no batch axis, before any call
    layer(rng.normal(0.0, 1.5, (2, 4, 2)).astype(np.float32))
    with pytest.raises(ValueError, match=r"^states \(h\) must have shape \(2, 3\); got \(4, 3\)$"):
        layer.reset_state([np.zeros((4, 3), np.float32)])
    stack = rnnparity.RNN([LSTMCell(3), GRUCell(2)], stateful=True)
    with pytest.raises(ValueError, match=r"^states must be a list with one entry per cell"):
        stack.reset_state([np.zeros((2, 3), np.float32)])


@pytest.mark.parametrize(("merge_mode", "backward_activation"), [("sum", "linear"), ("ave", "linear"), ("mul", "relu")])
def test_bidirectional_merges_overflowing_directions_quietly(merge_mode: str, backward_activation: str) -> None:
    """Inputs near float32's limit overflow the forward direction to +inf and the backward one
    to -inf (or to 0 through relu): the merge gives NaN, as Keras's does, without a
    floating-point warning (warnings from rnnparity are errors in this suite)."""
    rng = np.random.default_rng(32)
    forward_weights = random_weights(rng, "simple_rnn", 2, 2)
    backward_weights = random_weights(rng, "simple_rnn", 2, 2)
    forward_weights[0] = np.abs(forward_weights[0]) + 0.5  # every input pushes the forward direction up
    backward_weights[0] = -np.abs(backward_weights[0]) - 0.5  # and the backward one down
    layer = Bidirectional(
        rnnparity.SimpleRNN(2, activation="linear"),
        merge_mode=merge_mode,
        backward_layer=rnnparity.SimpleRNN(2, activation=backward_activation, go_backwards=True),
    )
    layer.set_weights(forward_weights + backward_weights)
    x = np.full((1, 1, 2), 3e38, np.float32)
    y, y_rev = layer.forward_layer(x), layer.backward_layer(x)
    assert np.isposinf(y).all() and (np.isneginf(y_rev).all() if backward_activation == "linear" else not y_rev.any())
    with np.errstate(invalid="ignore"):
        expected = {"sum": y + y_rev, "ave": (y + y_rev) / 2, "mul": y * y_rev}[merge_mode]
    assert np.isnan(expected).all()
    assert_parity(expected, layer(x), context=merge_mode)


def test_step_macs_counts_the_multiply_adds_of_one_recurrent_matmul() -> None:
    """What rnnparity.threads bases its BLAS thread choice on: ``h_tm1 @ recurrent_kernel``,
    ``(batch, units) @ (units, gates * units)``."""
    for cell, gates in ((LSTMCell(8), 4), (GRUCell(8), 3), (SimpleRNNCell(8), 1)):
        assert rnnparity.rnn.step_macs(cell, 5) == 5 * 8 * gates * 8
