"""``rnnparity verify MODEL --against PORT`` on real ports.

Ports are made here, from seeded random-weight Keras 3 models (tests/port_models.py), with the
converters users use: tf2onnx (run by onnxruntime) and the TensorFlow TFLite converter (run by
the LiteRT interpreter). Correct ports must pass; a port converted from altered weights must
fail and name the altered layer; tf2onnx's port of a stateful model must fail on call 2 and the
report must say the state was not carried. The wider matrix is marked ``slow``.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import flavor_available

pytestmark = [
    pytest.mark.keras,
    pytest.mark.skipif(not flavor_available("keras3"), reason="ports are made from Keras 3 models (pip install -e '.[test]')"),
]

HAVE_ONNX = all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "tf2onnx", "onnx"))
HAVE_TFLITE = importlib.util.find_spec("ai_edge_litert") is not None
needs_onnx = pytest.mark.skipif(not HAVE_ONNX, reason="ONNX ports need onnxruntime, onnx and tf2onnx: pip install -e '.[onnx]'")
needs_tflite = pytest.mark.skipif(not HAVE_TFLITE, reason="TFLite ports need ai-edge-litert: pip install -e '.[tflite]'")
FORMATS = [pytest.param("onnx", marks=needs_onnx), pytest.param("tflite", marks=needs_tflite)]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory):
    """``made(kind, fmt, altered=None) -> (model.keras, port)``, each built once per module
    (``fmt=None``: the model only)."""
    import port_models

    port_models.quiet_tensorflow()
    folder = tmp_path_factory.mktemp("ports")

    @functools.cache
    def model(kind: str):
        built = port_models.build(kind)
        path = folder / f"{kind}.keras"
        built.save(path)
        return built, path

    @functools.cache
    def make(kind: str, fmt: str | None, altered: str | None = None) -> tuple[Path, Path | None]:
        built, path = model(kind)
        if fmt is None:  # the Keras model only
            return path, None
        source = port_models.alter(built, altered) if altered else built
        port = folder / f"{kind}{'-' + altered if altered else ''}.{fmt}"
        port_models.CONVERTERS[fmt](source, port)
        return path, port

    return make


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from rnnparity.cli import main

    capsys.readouterr()  # what making the port printed (the converters talk)
    code = main(["verify", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _verify(model: Path, port: Path | str, **options):
    from rnnparity.files.ports import verify_against

    return verify_against(str(model), str(port), **options)


# --------------------------------------------------------------------------- the "done when" cases
@pytest.mark.parametrize("fmt", FORMATS)
def test_correct_port_of_masked_gru_lstm_passes(made, fmt: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    model, port = made("masked_gru_lstm", fmt)
    report_path = tmp_path / "report.json"
    code, out, err = _cli(capsys, str(model), "--against", str(port), "--json", str(report_path))
    assert code == 0, out + err
    assert "PORT AGREES" in out and "padding right" in out
    report = json.loads(report_path.read_text())
    assert report["ok"] and [row["status"] for row in report["outputs"]] == ["ok"]
    # Both recurrent layers are found inside the port (by value, not by name) with the kernel used.
    assert {row["name"]: row["status"] for row in report["layers"]} == {"gru": "matches", "lstm": "matches"}
    kernel = "Loop" if fmt == "onnx" else "WHILE"
    assert all(kernel in row["kernel"] for row in report["layers"]), report["layers"]


@needs_onnx
def test_tf2onnx_port_of_stateful_lstm_fails_on_call_2(made, capsys: pytest.CaptureFixture[str]) -> None:
    model, port = made("stateful_lstm", "onnx")
    code, out, err = _cli(capsys, str(model), "--against", str(port), "--calls", "3")
    assert code == 1, out + err
    assert "the state was not carried" in out and "PORT DIFFERS" in out
    code, out, err = _cli(capsys, str(model), "--against", str(port), "--calls", "3", "--json", "-")
    assert code == 1
    report = json.loads(out)  # --json -: stdout holds the JSON report only, and no file named '-' appears
    assert not Path("-").exists()
    statuses = [(row["call"], row["status"]) for row in report["outputs"]]
    assert statuses == [(1, "ok"), (2, "MISMATCH"), (3, "MISMATCH")], statuses
    assert report["state_note"].startswith("the state was not carried"), report["state_note"]
    assert report["layers"][0]["kernel"].startswith("ONNX LSTM op")


@needs_tflite
def test_stateful_model_defaults_to_three_calls_and_tflite_carries_state(made) -> None:
    model, port = made("stateful_lstm", "tflite")
    report = _verify(model, port)
    assert report.calls == 3 and "stateful layer(s) lstm" in report.calls_note
    assert report.ok, [row.detail for row in report.outputs]


@needs_tflite
def test_tflite_intermediates_never_read_a_resource_tensor(made, monkeypatch) -> None:
    # A stateful layer's variables are resource tensors; LiteRT returns them as object arrays
    # over raw bytes, which crash the process when NumPy frees them (some runs, not all).
    from rnnparity.files.ports.tflite import TflitePort

    _, port_path = made("stateful_lstm", "tflite")
    port = TflitePort(str(port_path))
    probe = port._interpreter(preserve=True)
    kinds = {int(d["index"]): np.dtype(d["dtype"]).kind for d in probe.get_tensor_details()}
    assert "O" in kinds.values(), "the stateful model should hold resource tensors"
    read: list[int] = []
    real_get_tensor = probe.get_tensor

    def get_tensor(index: int) -> Any:
        read.append(int(index))
        return real_get_tensor(index)

    monkeypatch.setattr(probe, "get_tensor", get_tensor)
    monkeypatch.setattr(port, "_interpreter", lambda preserve: probe)
    x = np.random.default_rng(3).normal(size=port.inputs[0].shape).astype(np.float32)
    found = port.intermediates([[x], [x]])
    assert found and read
    assert {kinds[i] for i in read} == {"f"}


@pytest.mark.parametrize(
    ("fmt", "altered"),
    [
        pytest.param("tflite", "lstm", marks=needs_tflite),
        pytest.param("onnx", "gru", marks=needs_onnx),
        pytest.param("onnx", "lstm", marks=[needs_onnx, pytest.mark.slow]),
        pytest.param("tflite", "gru", marks=[needs_tflite, pytest.mark.slow]),
    ],
)
def test_port_from_altered_weights_fails_and_names_the_layer(
    made, fmt: str, altered: str, capsys: pytest.CaptureFixture[str]
) -> None:
    model, port = made("masked_gru_lstm", fmt, altered)
    code, out, _ = _cli(capsys, str(model), "--against", str(port))
    assert code == 1
    assert f"first diverging recurrent layer: {altered} " in out, out
    report = _verify(model, port)
    statuses = {row.name: row.status for row in report.layers}
    assert statuses[altered] == "differs"
    if altered == "lstm":  # the layer before the altered one still agrees
        assert statuses["gru"] == "matches"


# --------------------------------------------------------------------------- masks, calls, options
@needs_onnx
@pytest.mark.parametrize("pad", ["left", "none"])
def test_padding_choices(made, pad: str) -> None:
    model, port = made("masked_gru_lstm", "onnx")
    report = _verify(model, port, pad=pad, calls=2)
    assert report.ok and report.pad == pad and len(report.outputs) == 2


@needs_onnx
def test_user_inputs_go_to_both_sides(made, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np

    model, port = made("masked_gru_lstm", "onnx")
    inputs = np.random.default_rng(4).normal(0.0, 1.5, size=(3, 5, 3)).astype("float32")
    inputs[2, 3:] = 0.0  # padded steps (the model masks 0.0)
    np.savez(tmp_path / "inputs.npz", x=inputs)
    report = _verify(model, port, inputs_path=str(tmp_path / "inputs.npz"))
    assert report.ok and report.inputs[0]["shape"] == [3, 5, 3] and report.seed is None
    code, _, err = _cli(capsys, str(model), "--against", str(port), "--inputs", str(tmp_path / "inputs.npz"), "--calls", "2")
    assert code == 2 and "--inputs gives the inputs of one call" in err


def test_left_padding_moves_the_padded_steps_to_the_start(made) -> None:
    import numpy as np

    from rnnparity.files.ports.common import KerasSide, make_call_inputs

    model, _ = made("masked_gru_lstm", None)
    keras = KerasSide(str(model))
    right = make_call_inputs(keras, 3, 6, 5, 0, "right", None)[0]
    left = make_call_inputs(keras, 3, 6, 5, 0, "left", None)[0]
    padded_right = np.all(right == 0.0, axis=-1)
    padded_left = np.all(left == 0.0, axis=-1)
    assert padded_right.sum() > 0 and padded_right.sum() == padded_left.sum()
    for row_right, row_left in zip(padded_right, padded_left):
        count = int(row_right.sum())
        assert not row_right[: len(row_right) - count].any() and row_left[:count].all()
    none = make_call_inputs(keras, 3, 6, 5, 0, "none", None)[0]
    assert not np.all(none == 0.0, axis=-1).any()


# --------------------------------------------------------------------------- bad input: one line, exit 2
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_port_is_one_line_exit_2(made, fmt: str, damage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model, port = made("lstm", fmt)
    blob = port.read_bytes()
    bad = tmp_path / f"bad.{fmt}"
    bad.write_bytes(b"not a model at all" * 8 if damage == "garbage" else blob[: len(blob) // 2])
    code, out, err = _cli(capsys, str(model), "--against", str(bad))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err and str(bad) in err, err


@needs_onnx
def test_port_of_another_model_is_refused(made, capsys: pytest.CaptureFixture[str]) -> None:
    model, _ = made("lstm", "onnx")
    _, other = made("gru", "onnx")  # returns a sequence: (batch, time, 2), not (batch, 2)
    code, _, err = _cli(capsys, str(model), "--against", str(other))
    assert code == 2 and err.count("\n") == 1, err
    assert "output 'head' has shape (2, 2) in Keras" in err and "returned (2, 8, 2)" in err


@needs_tflite
def test_fixed_shape_port_sets_the_sizes_and_refuses_others(made, capsys: pytest.CaptureFixture[str]) -> None:
    model, port = made("lstm", "tflite")
    report = _verify(model, port)
    assert report.inputs[0]["shape"] == [2, 6, 3]  # the port's fixed batch and time sizes
    code, _, err = _cli(capsys, str(model), "--against", str(port), "--batch-size", "3")
    assert code == 2 and err.count("\n") == 1
    assert "--batch-size 3" in err and "fixed size 2" in err and "port" in err, err


@needs_onnx
def test_dtype_the_port_does_not_take_is_refused(made, capsys: pytest.CaptureFixture[str]) -> None:
    model, port = made("lstm", "onnx")
    code, _, err = _cli(capsys, str(model), "--against", str(port), "--dtype", "float64")
    assert code == 2 and err.count("\n") == 1
    assert "input 'x' is float64 (Keras float32); the port's input x" in err and "float32" in err, err


def test_unknown_port_and_misplaced_options(made, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "nothing.keras"
    code, _, err = _cli(capsys, str(model), "--calls", "2")
    assert code == 2 and "--calls applies to port checks only" in err
    code, _, err = _cli(capsys, str(tmp_path / "m.keras"), "--against", "model.pb")
    assert code == 2 and err.count("\n") == 1


def test_backend_not_installed_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from rnnparity.files.ports import PortError
    from rnnparity.files.ports import backend as backend_module

    monkeypatch.setattr(backend_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(PortError, match=r"--against jax: the jax backend is not installed \(no jax package\)"):
        backend_module.BackendPort("jax", "model.keras")


# --------------------------------------------------------------------------- Keras 3 backends
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="the jax backend needs jax")
def test_jax_backend_runs_in_a_subprocess_and_carries_state(made) -> None:
    model, _ = made("stateful_lstm", None)
    report = _verify(model, "jax")
    assert "backend jax" in report.runtime
    assert report.calls == 3 and report.ok, [row.detail for row in report.outputs]
    assert [row.status for row in report.layers] == ["matches"]


# --------------------------------------------------------------------------- the wider matrix
KINDS = ["lstm", "gru", "gru_reset_before", "simple_rnn", "bidirectional", "stack", "stateful_gru", "stateful_simple_rnn"]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", KINDS)
def test_matrix_of_ports(made, kind: str, fmt: str) -> None:
    model, port = made(kind, fmt)
    report = _verify(model, port)
    if fmt == "onnx" and kind.startswith("stateful"):
        assert not report.ok and report.state_note.startswith("the state was not carried"), report
        return
    assert report.ok, [row.detail for row in report.outputs]
    assert all(row.status == "matches" for row in report.layers), report.layers


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("kind", "altered"), [("stack", "gru_2"), ("bidirectional", "bidirectional"), ("simple_rnn", "simple_rnn")]
)
def test_matrix_of_altered_ports(made, kind: str, altered: str, fmt: str) -> None:
    model, port = made(kind, fmt, altered)
    report = _verify(model, port)
    assert not report.ok
    assert f"first diverging recurrent layer: {altered} " in report.localization, report.localization


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "numpy", "tensorflow"])
def test_other_backends(made, backend: str) -> None:
    if importlib.util.find_spec({"numpy": "numpy"}.get(backend, backend)) is None:
        pytest.skip(f"the {backend} backend is not installed")
    model, _ = made("masked_gru_lstm", None)
    report = _verify(model, backend, calls=2)
    assert f"backend {backend}" in report.runtime
    assert report.ok, [row.detail for row in report.outputs]


@pytest.mark.slow
@needs_tflite
@pytest.mark.skipif(not flavor_available("tf-keras"), reason="the fused TFLite LSTM comes from tf_keras models")
def test_tf_keras_lstm_becomes_the_fused_tflite_op(tmp_path: Path) -> None:
    import numpy as np
    import tensorflow as tf
    import tf_keras

    inputs = tf_keras.Input(batch_shape=(2, 6, 3), name="x")
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(2, name="head")(tf_keras.layers.LSTM(5, name="lstm")(inputs)))
    rng = np.random.default_rng(3)
    model.set_weights([rng.normal(0.0, 0.6, w.shape).astype("float32") for w in model.get_weights()])
    model.save(tmp_path / "model.h5")
    (tmp_path / "model.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    report = _verify(tmp_path / "model.h5", tmp_path / "model.tflite")
    assert report.ok and report.kernels == "1 UNIDIRECTIONAL_SEQUENCE_LSTM"
    assert report.layers[0].status == "matches" and "UNIDIRECTIONAL_SEQUENCE_LSTM (fused)" in report.layers[0].kernel
