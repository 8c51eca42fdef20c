"""ConvLSTM gate layout: split_gates / join_gates on ConvLSTM kernels, the blocks the twin
itself uses, ``rnnparity explain conv_lstm2d``, and the PyTorch mapping explain states (checked
against torch.nn.functional's convolutions when torch is installed). No Keras here."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from conv_lstm_cases import draw_case, make_data

import rnnparity
from rnnparity import cli, layout
from rnnparity.conv_lstm import GATES, ConvLSTMCell

RANKS = (1, 2, 3)


def _case(rank: int, seed: int, use_bias: bool = True):
    case = draw_case(rank, 3, "float64", seed, "plain")
    return replace(case, use_bias=use_bias, filters=3, channels=2, kernel_size=(3, 2, 2)[:rank])


@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("kind", ["conv_lstm", "rank"])
def test_split_join_round_trip_is_exact(rank: int, use_bias: bool, kind: str) -> None:
    case = _case(rank, 11 + rank, use_bias)
    weights = make_data(case).weights
    name = "conv_lstm" if kind == "conv_lstm" else f"conv_lstm{rank}d"
    gates = layout.split_gates(weights, name)
    assert list(gates) == list(GATES) == ["i", "f", "c", "o"]
    for gate in gates.values():
        assert gate["kernel"].shape == (*case.kernel_size, case.channels, case.filters)
        assert gate["recurrent_kernel"].shape == (*case.kernel_size, case.filters, case.filters)
        assert ("bias" in gate) is use_bias
    rebuilt = layout.join_gates(gates, name)
    assert len(rebuilt) == len(weights)
    for got, want in zip(rebuilt, weights):
        assert got.shape == want.shape and np.array_equal(got, want)


@pytest.mark.parametrize("rank", RANKS)
def test_split_gates_are_the_blocks_the_twin_computes_with(rank: int) -> None:
    """split_gates of a twin layer (and of its cell) equals ConvLSTMCell.gate_block of each weight."""
    case = _case(rank, 20 + rank)
    weights = make_data(case).weights
    twin = case.twin()
    twin.set_weights(weights)
    cell = twin.cell
    assert isinstance(cell, ConvLSTMCell)
    for source in (twin, cell):
        gates = layout.split_gates(source)
        for gate in GATES:
            for name, array in zip(("kernel", "recurrent_kernel", "bias"), weights):
                block = cell.gate_block(array, gate)
                assert np.array_equal(gates[gate][name], block), (gate, name)
                assert not np.shares_memory(gates[gate][name], array)  # copies


@pytest.mark.parametrize("rank", RANKS)
def test_gate_blocks_act_as_their_gates(rank: int) -> None:
    """Saturating one gate's bias block, rejoined, does what that gate does: the output gate
    closed gives h = 0; forget open and input closed keeps c. A swapped block would not."""
    case = replace(_case(rank, 30 + rank), padding="same", return_state=True, return_sequences=False, timesteps=1)
    data = make_data(case)
    twin = case.twin()
    twin.set_weights(data.weights)
    x = data.inputs[0]
    c0 = np.random.default_rng(rank).standard_normal(case.state_shape())
    h0 = np.random.default_rng(rank + 10).standard_normal(case.state_shape())

    def probe(**saturated: float):
        gates = layout.split_gates(twin)
        for gate, value in saturated.items():
            gates[gate]["bias"] = np.full_like(gates[gate]["bias"], value)
        changed = case.twin()
        changed.set_weights(layout.join_gates(gates, "conv_lstm"))
        return changed(x, initial_state=[h0, c0])

    output, _, _ = probe(o=-1e4)
    assert np.array_equal(output, np.zeros_like(output))
    _, _, c = probe(f=1e4, i=-1e4)
    rnnparity.assert_parity(c0, c, context="forget open, input closed")
    _, _, c_other = probe(c=1e4, i=-1e4)  # the wrong gate saturated: c changes
    assert not rnnparity.compare(c0, c_other).ok


BAD = [
    ("recurrent rank", lambda w: [w[0], w[1][0, 0], w[2]], "conv_lstm", ["recurrent_kernel", "3-D or 4-D or 5-D", "(3, 12)"]),
    ("width", lambda w: [w[0][..., :8], w[1][..., :8], w[2][:8]], "conv_lstm", ["recurrent_kernel has shape (3, 2, 3, 8)"]),
    ("kernel size", lambda w: [w[0][:2], w[1], w[2]], "conv_lstm", ["kernel has shape (2, 2, 2, 12)", "(*kernel_size, channels"]),
    ("bias", lambda w: [w[0], w[1], w[2][:6]], "conv_lstm", ["bias has shape (6,)", "3 filters has (12,)"]),
    ("rank kind", lambda w: w, "conv_lstm3d", ["recurrent_kernel must be 5-D", "conv_lstm3d", "(3, 2, 3, 12)"]),
    ("kind", lambda w: w, "convlstm", ["kind must be one of", "'conv_lstm'", "'convlstm'"]),
]


@pytest.mark.parametrize(("name", "change", "kind", "fragments"), BAD, ids=[b[0] for b in BAD])
def test_split_gates_refuses_weights_that_do_not_fit(name: str, change, kind: str, fragments: list[str]) -> None:
    weights = make_data(_case(2, 40)).weights
    with pytest.raises(ValueError) as info:
        layout.split_gates(change(weights), kind)
    for fragment in fragments:
        assert fragment in str(info.value), f"{name}: {fragment!r} missing from {info.value}"


def test_join_gates_refuses_blocks_that_do_not_fit() -> None:
    gates = layout.split_gates(make_data(_case(2, 41)).weights, "conv_lstm")
    gates["f"]["kernel"] = gates["f"]["kernel"][:2]
    with pytest.raises(
        ValueError, match=r"every gate's kernel block must have one shape; got i \(3, 2, 2, 3\), f \(2, 2, 2, 3\)"
    ):
        layout.join_gates(gates, "conv_lstm")
    del gates["o"]
    with pytest.raises(ValueError, match=r"join_gates for conv_lstm needs gates \['i', 'f', 'c', 'o'\]; missing \['o'\]"):
        layout.join_gates(gates, "conv_lstm")


@pytest.mark.parametrize("fmt", ["text", "markdown", "json"])
def test_explain_a_conv_lstm_kind(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["explain", "ConvLSTM2D", "--filters", "3", "--kernel-size", "3,2", "--input-dim", "2", "--format", fmt])
    out = capsys.readouterr().out
    assert code == 0, out
    if fmt == "json":
        data = json.loads(out)
        assert data["shapes"] == {"kernel": [3, 2, 2, 12], "recurrent_kernel": [3, 2, 3, 12], "bias": [12]}
        assert [g["kernel"] for g in data["gates"]] == [f"[:, :, :, {a}:{a + 3}]" for a in (0, 3, 6, 9)]
        assert any("torch.nn has no ConvLSTM module" in note for note in data["notes"])
        return
    assert "conv_lstm2d filters=3 kernel_size=3x2 input_channels=2" in out
    assert "kernel (3, 2, 2, 12), recurrent_kernel (3, 2, 3, 12), bias (12,)" in out
    assert "[:, :, :, 6:9]" in out and "conv_same(h_tm1, U_o)" in out
    assert "np.moveaxis(kernel, (-1, -2), (0, 1)) = (4 * filters, channels, *kernel_size)" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["conv_lstm1d", "--units", "3"], "a ConvLSTM1D has --filters, not --units"),
        (["conv_lstm2d", "--kernel-size", "3,2,1"], "--kernel-size for a ConvLSTM2D takes 1 or 2 sizes; got '3,2,1'"),
        (["conv_lstm2d", "--kernel-size", "a"], "--kernel-size takes one integer or 2 separated by commas"),
        (["conv_lstm3d", "--filters", "0"], "filters, input_channels and a 3-tuple kernel_size must be positive"),
        (["conv_lstm2d", "--reset-after", "false"], "--reset-after applies to GRU only"),
        (["conv_lstm2d", "--plot", "x.png"], "a ConvLSTM's gate blocks are listed, not drawn"),
        (["lstm", "--filters", "3"], "--filters and --kernel-size apply to ConvLSTM1D/2D/3D only; got lstm"),
    ],
)
def test_explain_conv_lstm_option_errors(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["explain", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_to_torch_refuses_conv_lstm_saying_why() -> None:
    case = _case(2, 50)
    twin = case.twin()
    twin.set_weights(make_data(case).weights)
    with pytest.raises(ValueError, match=r"ConvLSTM2D\(filters=3.*\) has no PyTorch equivalent: torch.nn has no ConvLSTM module"):
        layout.to_torch(twin)


@pytest.mark.parametrize("rank", RANKS)
def test_the_pytorch_mapping_explain_states_computes_the_twins_step(rank: int) -> None:
    """explain says a Keras kernel is the conv weight np.moveaxis(kernel, (-1, -2), (0, 1)), its
    output channels the gates i, f, c, o: one step written that way with torch.nn.functional
    must equal the twin's cell step."""
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    case = replace(_case(rank, 60 + rank), padding="valid", kernel_size=(3, 3, 3)[:rank])
    data = make_data(case)
    cell = ConvLSTMCell(rank, case.filters, case.kernel_size, recurrent_activation="sigmoid", dtype="float64")
    cell.set_weights(data.weights)
    rng = np.random.default_rng(rank)
    x = rng.standard_normal((2, *(6,) * rank, case.channels))
    out_size = (6 - 2,) * rank
    h0 = rng.standard_normal((2, *out_size, case.filters))
    c0 = rng.standard_normal((2, *out_size, case.filters))
    expected, (_, c_expected) = cell(x, [h0, c0])

    conv = {1: functional.conv1d, 2: functional.conv2d, 3: functional.conv3d}[rank]

    def channels_first(a: np.ndarray) -> object:
        return torch.from_numpy(np.ascontiguousarray(np.moveaxis(a, -1, 1)))

    kernel, recurrent, bias = data.weights
    weight = torch.from_numpy(np.ascontiguousarray(np.moveaxis(kernel, (-1, -2), (0, 1))))
    recurrent_weight = torch.from_numpy(np.ascontiguousarray(np.moveaxis(recurrent, (-1, -2), (0, 1))))
    z = conv(channels_first(x), weight, torch.from_numpy(bias)) + conv(channels_first(h0), recurrent_weight, padding="same")
    i, f, c, o = torch.split(z, case.filters, dim=1)
    c_new = torch.sigmoid(f) * channels_first(c0) + torch.sigmoid(i) * torch.tanh(c)
    h_new = torch.sigmoid(o) * torch.tanh(c_new)
    rnnparity.assert_parity(expected, np.moveaxis(h_new.numpy(), 1, -1), context=f"rank {rank} h")
    rnnparity.assert_parity(c_expected, np.moveaxis(c_new.numpy(), 1, -1), context=f"rank {rank} c")
