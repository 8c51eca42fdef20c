"""Gate views, the explain data, and exact conversion to and from PyTorch."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rnnparity import GRU, LSTM, SimpleRNN, assert_parity, layout, matrix

VARIANTS = [("lstm", True), ("gru", True), ("gru", False), ("simple_rnn", True)]
CLASSES = {"lstm": LSTM, "gru": GRU, "simple_rnn": SimpleRNN}


def _twin(kind: str, reset_after: bool = True, dtype: str = "float64", seed: int = 0, **kwargs):
    case = matrix.Case(kind, 3, units=4, input_dim=3, reset_after=reset_after, seed=seed, dtype=dtype)
    extra = {"reset_after": reset_after} if kind == "gru" else {}
    layer = CLASSES[kind](4, dtype=dtype, **extra, **kwargs)
    layer.set_weights(matrix.make_data(case).weights)
    return layer


@pytest.mark.parametrize(("kind", "reset_after"), VARIANTS)
@pytest.mark.parametrize("use_bias", [True, False])
def test_split_join_round_trip_is_exact(kind: str, reset_after: bool, use_bias: bool) -> None:
    case = matrix.Case(kind, 3, units=4, input_dim=3, reset_after=reset_after, use_bias=use_bias, seed=1)
    weights = matrix.make_data(case).weights
    gates = layout.split_gates(weights, kind, reset_after=reset_after)
    assert list(gates) == list(layout.GATE_ORDER[kind])
    for got, want in zip(layout.join_gates(gates, kind, reset_after), weights):
        np.testing.assert_array_equal(got, want)
    if use_bias:
        twin = _twin(kind, reset_after)
        from_twin = layout.split_gates(twin)
        assert set(from_twin[layout.GATE_ORDER[kind][0]]) >= {"kernel", "recurrent_kernel", "bias"}


def _step(layer, x, states):
    return layer.cell(x, states)


def _with_bias(layer, kind: str, reset_after: bool, gate: str, value: float):
    """A copy of ``layer`` whose ``gate`` bias block is set to ``value`` (a saturating probe)."""
    gates = layout.split_gates(layer)
    gates[gate]["bias"] = np.full_like(gates[gate]["bias"], value)
    probe = CLASSES[kind](4, dtype="float64", **({"reset_after": reset_after} if kind == "gru" else {}))
    probe.set_weights(layout.join_gates(gates, kind, reset_after))
    return probe


def test_lstm_gate_slices_probe() -> None:
    """Saturating one gate through its slice shows exactly that gate's effect."""
    layer = _twin("lstm")
    rng = np.random.default_rng(0)
    x, h, c = rng.normal(size=(5, 3)), rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    out, (_, _) = _step(_with_bias(layer, "lstm", True, "o", -1e4), x, [h, c])
    np.testing.assert_array_equal(out, 0.0)  # output gate closed: h = 0
    keep = _with_bias(_with_bias(layer, "lstm", True, "f", 1e4), "lstm", True, "i", -1e4)
    _, (_, c_new) = _step(keep, x, [h, c])
    np.testing.assert_array_equal(c_new, c)  # forget open, input closed: c unchanged
    fresh = _with_bias(_with_bias(layer, "lstm", True, "f", -1e4), "lstm", True, "i", 1e4)
    _, (_, c_new) = _step(fresh, x, [h, c])
    gates = layout.split_gates(layer)
    candidate = np.tanh(x @ gates["c"]["kernel"] + h @ gates["c"]["recurrent_kernel"] + gates["c"]["bias"])
    np.testing.assert_allclose(c_new, candidate, rtol=1e-12)  # c = candidate, from the c slice


@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_gate_slices_probe(reset_after: bool) -> None:
    layer = _twin("gru", reset_after)
    rng = np.random.default_rng(1)
    x, h = rng.normal(size=(5, 3)), rng.normal(size=(5, 4))
    out, _ = _step(_with_bias(layer, "gru", reset_after, "z", 1e4), x, [h])
    np.testing.assert_array_equal(out, h)  # update gate 1: h kept
    closed = _with_bias(_with_bias(layer, "gru", reset_after, "z", -1e4), "gru", reset_after, "r", -1e4)
    out, _ = _step(closed, x, [h])
    gates = layout.split_gates(layer)
    candidate = np.tanh(x @ gates["h"]["kernel"] + gates["h"]["bias"])  # reset 0: no recurrent part
    np.testing.assert_allclose(out, candidate, rtol=1e-12)


@pytest.mark.parametrize(("kind", "reset_after"), VARIANTS)
def test_explain_layout_matches_split_gates(kind: str, reset_after: bool) -> None:
    data = layout.explain_layout(kind, units=4, input_dim=3, reset_after=reset_after)
    weights = matrix.make_data(matrix.Case(kind, 3, units=4, input_dim=3, reset_after=reset_after, seed=2)).weights
    assert data["shapes"]["kernel"] == list(weights[0].shape)
    assert data["shapes"]["bias"] == list(weights[2].shape)
    gates = layout.split_gates(weights, kind, reset_after=reset_after)
    for row in data["gates"]:
        start, stop = (int(v) for v in row["kernel"].strip("[:, ]").split(":"))
        np.testing.assert_array_equal(weights[0][:, start:stop], gates[row["gate"]]["kernel"])
    assert len(data["equations"]) == len(layout.GATE_ORDER[kind])


# ---------------------------------------------------------------------------- PyTorch

torch = pytest.importorskip("torch", reason="torch is an optional extra (pip install -e '.[torch]')")

TORCH_CLASS = {"lstm": "LSTM", "gru": "GRU", "simple_rnn": "RNN"}


def _torch_module(kind: str, input_dim: int, units: int, layers: int, bidirectional: bool, dtype: str, **kwargs):
    module = getattr(torch.nn, TORCH_CLASS[kind])(
        input_dim, units, num_layers=layers, batch_first=True, bidirectional=bidirectional, **kwargs
    )
    return module.double() if dtype == "float64" else module


def _twin_stack(kind: str, stack: list, dtype: str, **kwargs):
    """Run a stack of twins like torch does (bidirectional: backward twin, reversed back, concatenated)."""

    def make(w, backwards=False):
        layer = CLASSES[kind](
            w[1].shape[0], dtype=dtype, return_sequences=True, return_state=True, go_backwards=backwards, **kwargs
        )
        layer.set_weights(w)
        return layer

    def run(x):
        finals = []
        for entry in stack:
            if isinstance(entry, tuple):
                out_f, *state_f = make(entry[0])(x)
                out_b, *state_b = make(entry[1], backwards=True)(x)
                x = np.concatenate([out_f, out_b[:, ::-1]], axis=-1)
                finals += [state_f, state_b]
            else:
                x, *state = make(entry)(x)
                finals.append(state)
        return x, finals

    return run


CONFIGS = list(itertools.product(["lstm", "gru", "simple_rnn"], [1, 2], [False, True], ["float32", "float64"]))


@pytest.mark.parametrize(("kind", "layers", "bidirectional", "dtype"), CONFIGS)
def test_torch_to_keras_to_torch(kind: str, layers: int, bidirectional: bool, dtype: str) -> None:
    """Random torch weights -> from_torch -> twins == torch; and to_torch gives them back."""
    torch.manual_seed(layers * 10 + bidirectional)
    extra = {"nonlinearity": "relu"} if kind == "simple_rnn" and layers == 2 else {}
    module = _torch_module(kind, 3, 4, layers, bidirectional, dtype, **extra)
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-0.8, 0.8)
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(dtype)
    with torch.no_grad():
        result = module(torch.from_numpy(x))
    out_t, states_t = result[0].numpy(), result[1]
    h_t = (states_t[0] if kind == "lstm" else states_t).numpy()

    weights = layout.from_torch(module.state_dict(), kind)
    twin_kwargs = {"activation": "relu"} if extra else {}
    if kind == "gru":
        twin_kwargs["reset_after"] = True
    out, finals = _twin_stack(kind, weights if layers > 1 else [weights], dtype, **twin_kwargs)(x)
    assert_parity(out_t, out, context=f"torch {kind} x{layers} bi={bidirectional} output")
    assert_parity(list(h_t), [f[0] for f in finals], context="final h", check_container=False)
    if kind == "lstm":
        assert_parity(list(states_t[1].numpy()), [f[1] for f in finals], context="final c", check_container=False)

    twins = []
    for entry in weights if layers > 1 else [weights]:
        pair = entry if isinstance(entry, tuple) else (entry,)
        made = []
        for w in pair:
            t = CLASSES[kind](4, dtype=dtype, **twin_kwargs)
            t.set_weights(w)
            made.append(t)
        twins.append(tuple(made) if bidirectional else made[0])
    back = layout.to_torch(twins)
    original = module.state_dict()
    assert set(back) == set(original)
    for name, value in back.items():
        summed_bias = name.startswith("bias_") and kind != "gru"
        if not summed_bias:
            np.testing.assert_array_equal(value, original[name].numpy(), err_msg=name)
    for name in (n for n in back if n.startswith("bias_ih") and kind != "gru"):
        hh = name.replace("bias_ih", "bias_hh")
        np.testing.assert_allclose(back[name] + back[hh], original[name].numpy() + original[hh].numpy(), rtol=1e-6)


@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn"])
def test_keras_to_torch_matches_twin(kind: str) -> None:
    twin = _twin(kind, return_sequences=True, return_state=True)
    module = _torch_module(kind, 3, 4, 1, False, "float64")
    module.load_state_dict(layout.to_torch(twin, as_tensors=True))
    x = np.random.default_rng(3).normal(size=(2, 6, 3))
    with torch.no_grad():
        out_t, states_t = module(torch.from_numpy(x))
    out, h, *_ = twin(x)
    assert_parity(out_t.numpy(), out)
    assert_parity((states_t[0] if kind == "lstm" else states_t).numpy()[0], h)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: GRU(3, reset_after=False), "reset_after=False"),
        (lambda: LSTM(3, recurrent_activation="hard_sigmoid"), "tanh and sigmoid only"),
        (lambda: SimpleRNN(3, activation="elu"), "nonlinearity 'tanh' or 'relu' only"),
    ],
)
def test_configurations_without_a_torch_equivalent_are_refused(make, reason: str) -> None:
    layer = make()
    kind = layer.cell.kind
    layer.set_weights(
        matrix.make_data(matrix.Case(kind, 3, units=3, input_dim=2, reset_after=getattr(layer.cell, "reset_after", True))).weights
    )
    with pytest.raises(ValueError, match="no exact PyTorch equivalent") as info:
        layout.to_torch(layer)
    assert reason in str(info.value)
