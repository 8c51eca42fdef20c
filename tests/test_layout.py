"""Gate views, the explain data, and exact conversion to and from PyTorch."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from rnnparity import GRU, LSTM, SimpleRNN, layout
from rnnparity.suite import matrix

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


def test_docs_page_is_generated_from_the_layout_data() -> None:
    import pathlib

    from rnnparity.cli.docs import weight_layout_markdown

    page = pathlib.Path(__file__).resolve().parents[1] / "docs" / "weight-layout.md"
    assert page.read_text() == weight_layout_markdown(), "regenerate: python -m rnnparity.cli.docs > docs/weight-layout.md"


@pytest.mark.parametrize("fmt", ["text", "markdown", "json"])
def test_explain_command(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    from rnnparity.cli import main

    assert main(["explain", "gru", "--units", "5", "--input-dim", "2", "--reset-after", "false", "--format", fmt]) == 0
    out = capsys.readouterr().out
    assert "[:, 10:15]" in out and ("reset_after=False" in out or '"reset_after": false' in out)
    assert main(["explain", "lstm", "--units", "0"]) == 2
    assert "units and input_dim must be positive" in capsys.readouterr().err


def test_docs_page_pictures_exist() -> None:
    from rnnparity.cli.docs import PAGES, picture_name, weight_layout_markdown

    docs = pathlib.Path(__file__).resolve().parents[1] / "docs"
    page = weight_layout_markdown()
    for kind, reset_after in PAGES:
        name = picture_name(kind, reset_after)
        assert f"]({name})" in page
        assert (docs / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", (
            f"regenerate: python -m rnnparity.cli.docs --pictures docs ({name})"
        )


@pytest.mark.parametrize(
    ("kind", "reset_after", "use_bias"),
    [("lstm", True, True), ("gru", True, True), ("gru", False, True), ("simple_rnn", True, False)],
)
def test_plot_draws_each_gate_block_where_the_layout_puts_it(
    kind: str, reset_after: bool, use_bias: bool, tmp_path: pathlib.Path
) -> None:
    pytest.importorskip("matplotlib", reason="--plot needs the [plot] extra (CI installs it)")
    from rnnparity.cli.plot import draw_layout
    from rnnparity.layout import GATE_ORDER, explain_layout, gate_slice

    path = tmp_path / "layout.png"
    drawn = draw_layout(explain_layout(kind, 5, 2, reset_after, use_bias), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    weights = ["kernel", "recurrent_kernel", *(["bias"] if use_bias else [])]
    expected = [(w, g, gate_slice(kind, g, 5).start, gate_slice(kind, g, 5).stop) for w in weights for g in GATE_ORDER[kind]]
    assert drawn == expected


def test_explain_plot_from_the_command_line(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib", reason="--plot needs the [plot] extra (CI installs it)")
    from rnnparity import cli

    path = tmp_path / "gru.svg"
    assert cli.main(["explain", "gru", "--units", "3", "--plot", str(path)]) == 0
    assert "z" in capsys.readouterr().out and path.read_text().lstrip().startswith("<?xml")
    assert cli.main(["explain", "lstm", "--plot", str(tmp_path / "missing-dir" / "x.png")]) == 2
    assert "cannot write --plot" in capsys.readouterr().err
