"""Exact conversion to and from PyTorch, checked against real torch.nn.LSTM/GRU/RNN modules."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rnnparity import GRU, LSTM, SimpleRNN, assert_parity, layout
from rnnparity.suite import matrix

CLASSES = {"lstm": LSTM, "gru": GRU, "simple_rnn": SimpleRNN}


def _twin(kind: str, dtype: str = "float64", **kwargs):
    case = matrix.Case(kind, 3, units=4, input_dim=3, seed=0, dtype=dtype)
    layer = CLASSES[kind](4, dtype=dtype, **kwargs)
    layer.set_weights(matrix.make_data(case).weights)
    return layer


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


@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn"])
def test_bidirectional_twin_and_stacked_cells_to_torch(kind: str) -> None:
    """A Bidirectional twin (concat, return_sequences) converts to bidirectional=True, and an
    RNN over StackedRNNCells to num_layers: torch's outputs equal the twins' outputs."""
    import rnnparity

    rng = np.random.default_rng(9)
    x = rng.normal(0, 1.5, (2, 6, 3))
    wrapped = rnnparity.Bidirectional(CLASSES[kind](4, dtype="float64", return_sequences=True), dtype="float64")
    wrapped.set_weights(
        matrix.random_weights(rng, kind, 4, 3, dtype="float64") + matrix.random_weights(rng, kind, 4, 3, dtype="float64")
    )
    module = _torch_module(kind, 3, 4, 1, True, "float64")
    module.load_state_dict(layout.to_torch(wrapped, as_tensors=True))
    torch_out, _ = module(torch.from_numpy(x))
    assert_parity(torch_out.detach().numpy(), wrapped(x), context=f"{kind} bidirectional")

    cell_class = {"lstm": rnnparity.LSTMCell, "gru": rnnparity.GRUCell, "simple_rnn": rnnparity.SimpleRNNCell}[kind]
    stacked = rnnparity.RNN([cell_class(4, dtype="float64"), cell_class(4, dtype="float64")], return_sequences=True)
    stacked.set_weights(
        matrix.random_weights(rng, kind, 4, 3, dtype="float64") + matrix.random_weights(rng, kind, 4, 4, dtype="float64")
    )
    module = _torch_module(kind, 3, 4, 2, False, "float64")
    module.load_state_dict(layout.to_torch(stacked, as_tensors=True))
    torch_out, _ = module(torch.from_numpy(x))
    assert_parity(torch_out.detach().numpy(), stacked(x), context=f"{kind} stacked cells")
