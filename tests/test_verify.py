"""`rnnparity verify` on real models built, saved and reloaded here, through the CLI entry point."""

from __future__ import annotations

import importlib.util
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import FLAVOR_MAJOR, flavor_params, keras_handle

import rnnparity
from rnnparity import assert_parity, cli
from rnnparity.suite.keras_adapter import KerasHandle


def _tutorial(k: Any) -> Any:
    """The model from the tutorials: LSTM -> Conv1D(64, 2, relu) -> MaxPooling1D(2) -> Flatten -> Dense."""
    return k.Sequential(
        [
            k.Input((10, 3)),
            k.layers.LSTM(16, return_sequences=True),
            k.layers.Conv1D(64, kernel_size=2, activation="relu"),
            k.layers.MaxPooling1D(2),
            k.layers.Flatten(),
            k.layers.Dense(1),
        ]
    )


def _stacked(k: Any) -> Any:
    inputs = k.Input((None, 3))
    x = k.layers.LSTM(5, return_sequences=True, name="first")(inputs)
    x = k.layers.GRU(4, return_sequences=True, reset_after=False, go_backwards=True, name="second")(x)
    x = k.layers.SimpleRNN(3, activation="relu", name="third")(x)
    return k.Model(inputs, k.layers.Dense(2)(x))


def _bidirectional_embedding(k: Any) -> Any:
    inputs = k.Input((None,), dtype="int32")
    x = k.layers.Embedding(20, 6, mask_zero=True)(inputs)
    x = k.layers.Bidirectional(k.layers.LSTM(4, return_sequences=True), merge_mode="sum")(x)
    x = k.layers.Bidirectional(k.layers.GRU(3), merge_mode="concat")(x)
    return k.Model(inputs, x)


def _encoder_decoder(k: Any) -> Any:
    encoder_inputs = k.Input((None, 4), name="encoder_inputs")
    decoder_inputs = k.Input((None, 5), name="decoder_inputs")
    _, h, c = k.layers.LSTM(6, return_state=True, name="encoder")(encoder_inputs)
    decoded = k.layers.LSTM(6, return_sequences=True, name="decoder")(decoder_inputs, initial_state=[h, c])
    return k.Model([encoder_inputs, decoder_inputs], k.layers.Dense(5)(decoded))


def _masking_and_cells(k: Any) -> Any:
    inputs = k.Input((7, 3))
    x = k.layers.Masking(mask_value=0.0)(inputs)
    cells = [k.layers.LSTMCell(4), k.layers.GRUCell(3)]
    x = k.layers.RNN(k.layers.StackedRNNCells(cells), return_sequences=True, name="stack")(x)
    x = k.layers.RNN(k.layers.SimpleRNNCell(2), name="simple_cell")(x)
    return k.Model(inputs, x)


def _conv_lstm(k: Any) -> Any:
    inputs = k.Input((4, 6, 5, 2))
    x = k.layers.ConvLSTM2D(3, (3, 3), padding="same", return_sequences=True, name="conv_same")(inputs)
    x = k.layers.ConvLSTM2D(2, (2, 3), strides=(1, 2), go_backwards=True, name="conv_strided")(x)
    return k.Model(inputs, k.layers.Flatten()(x))


MODELS: dict[str, Callable[[Any], Any]] = {
    "tutorial": _tutorial,
    "stacked": _stacked,
    "bidirectional_embedding": _bidirectional_embedding,
    "encoder_decoder": _encoder_decoder,
    "masking_and_cells": _masking_and_cells,
    "conv_lstm": _conv_lstm,
}
EXPECTED_LAYERS = {
    "tutorial": 1,
    "stacked": 3,
    "bidirectional_embedding": 2,
    "encoder_decoder": 2,
    "masking_and_cells": 2,
    "conv_lstm": 2,
}


def _params(names: list[str]) -> list:
    values = [(flavor, name, fmt) for flavor in FLAVOR_MAJOR for name in names for fmt in ("keras", "h5")]
    return [
        p
        for flavor in FLAVOR_MAJOR
        for p in flavor_params(
            flavor, [v for v in values if v[0] == flavor], [f"{f}-{n}-{fmt}" for f, n, fmt in values if f == flavor]
        )
    ]


def _save(handle: KerasHandle, model: Any, path: Path) -> Path:
    rng = np.random.default_rng(17)
    # Random weights everywhere (never Keras's zero biases): gate-order bugs cannot hide.
    model.set_weights([rng.uniform(-0.8, 0.8, w.shape).astype(w.dtype) for w in model.get_weights()])
    model.save(str(path))
    return path


def _verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["verify", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(("flavor", "name", "fmt"), _params(list(MODELS)))
def test_verify_saved_models(flavor: str, name: str, fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    handle = keras_handle(flavor)
    path = _save(handle, MODELS[name](handle.module), tmp_path / f"{name}.{fmt}")
    report_path = tmp_path / "report.json"
    code, out, err = _verify(capsys, str(path), "--json", str(report_path))
    if fmt == "h5" and handle.keras_version == 3 and name in ("bidirectional_embedding", "masking_and_cells"):
        # Keras 3 stores a functional graph's mask computation as an op (NotEqual/Any) that its
        # own legacy .h5 loader cannot read back: verify reports it in one line, exit 2.
        assert code == 2 and "could not load" in err and "Unknown layer" in err, out + err
        return
    assert code == 0, out + err
    report = json.loads(report_path.read_text())
    assert report["ok"] is True
    assert len(report["layers"]) == EXPECTED_LAYERS[name]
    assert all(layer["status"] == "ok" for layer in report["layers"]), report["layers"]
    assert all(layer["calls"] >= 1 for layer in report["layers"])
    assert f"PARITY HOLDS for {EXPECTED_LAYERS[name]} recurrent layer(s)" in out
    assert handle.describe() in out
    if fmt == "h5":  # every layer's weights, read from the file without Keras, are Keras's own
        assert all(layer["file_weights"] == "identical" for layer in report["layers"]), report["layers"]


@pytest.mark.parametrize("flavor", [p for f in FLAVOR_MAJOR for p in flavor_params(f, [(f,)])])
def test_verify_masks_reach_the_layers_and_export_reproduces(
    flavor: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The padded batch produces real masks; the exported vectors rebuild each layer's result."""
    handle = keras_handle(flavor)
    path = _save(handle, _masking_and_cells(handle.module), tmp_path / "model.keras")
    export = tmp_path / "vectors"
    code, out, err = _verify(capsys, str(path), "--export", str(export), "--seed", "3")
    assert code == 0, out + err
    index = json.loads((export / "index.json").read_text())
    assert [call["layer"] for call in index["calls"]] == ["stack", "simple_cell"]
    stack = np.load(export / index["calls"][0]["file"])
    assert "mask" in stack and not stack["mask"].all() and stack["mask"].any()
    assert set(index["calls"][0]["weights"]) == {f"cell{i}.{w}" for i in (0, 1) for w in ("kernel", "recurrent_kernel", "bias")}
    # A user's runtime would start from these arrays alone:
    cells = [rnnparity.LSTMCell(4, keras_version=handle.keras_version), rnnparity.GRUCell(3, keras_version=handle.keras_version)]
    twin = rnnparity.RNN(cells, return_sequences=True, backend=handle.backend)
    twin.set_weights([stack[name] for name in index["calls"][0]["weights"]])
    assert_parity(stack["output"], twin(stack["inputs"], mask=stack["mask"]))


@pytest.mark.parametrize("flavor", [p for f in FLAVOR_MAJOR for p in flavor_params(f, [(f,)])])
def test_verify_encoder_decoder_records_the_initial_state(
    flavor: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    handle = keras_handle(flavor)
    path = _save(handle, _encoder_decoder(handle.module), tmp_path / "seq2seq.keras")
    export = tmp_path / "vectors"
    code, out, err = _verify(capsys, str(path), "--timesteps", "5", "--batch-size", "3", "--export", str(export))
    assert code == 0, out + err
    assert "encoder_inputs (3, 5, 4)" in out and "decoder_inputs (3, 5, 5)" in out
    index = json.loads((export / "index.json").read_text())
    decoder = next(call for call in index["calls"] if call["layer"] == "decoder")
    assert {"initial_state.h", "initial_state.c"} <= set(decoder["inputs"])
    encoder = np.load(export / next(c["file"] for c in index["calls"] if c["layer"] == "encoder"))
    vectors = np.load(export / decoder["file"])
    np.testing.assert_array_equal(vectors["initial_state.h"], encoder["h"])
    np.testing.assert_array_equal(vectors["initial_state.c"], encoder["c"])


@pytest.mark.parametrize("flavor", [p for f in FLAVOR_MAJOR for p in flavor_params(f, [(f,)])])
def test_verify_user_inputs(flavor: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    handle = keras_handle(flavor)
    path = _save(handle, _encoder_decoder(handle.module), tmp_path / "seq2seq.keras")
    rng = np.random.default_rng(4)
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, encoder_inputs=rng.normal(size=(1, 9, 4)), decoder_inputs=rng.normal(size=(1, 2, 5)))
    code, out, err = _verify(capsys, str(path), "--inputs", str(inputs))
    assert code == 0, out + err
    assert f"from {inputs}" in out and "(1, 9, 4)" in out
    code, _, err = _verify(capsys, str(path), "--inputs", str(inputs), "--seed", "2")
    assert code == 2 and "--inputs gives the inputs" in err
    wrong = tmp_path / "one.npy"
    np.save(wrong, rng.normal(size=(1, 3, 4)))
    code, _, err = _verify(capsys, str(path), "--inputs", str(wrong))
    assert code == 2 and "holds 1 array(s); the model has 2 input(s)" in err


@pytest.mark.parametrize("flavor", [p for f in FLAVOR_MAJOR for p in flavor_params(f, [(f,)])])
def test_verify_reports_a_mismatch(
    flavor: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A twin with two LSTM gates swapped must make verify fail with exit 1."""
    handle = keras_handle(flavor)
    path = _save(handle, _stacked(handle.module), tmp_path / "model.keras")
    original = rnnparity.LSTMCell.recurrent_step

    def swapped(self: rnnparity.LSTMCell, x_proj: np.ndarray, states: list[np.ndarray]) -> Any:
        # x_proj is gate-major in step_order (i, f, o, c): swap the input and forget gates.
        assert self.step_order[:2] == ("i", "f")
        return original(self, x_proj[[1, 0, 2, 3]], states)

    monkeypatch.setattr(rnnparity.LSTMCell, "recurrent_step", swapped)
    code, out, _ = _verify(capsys, str(path))
    assert code == 1
    assert "PARITY FAILS for 1 layer(s): first" in out and "MISMATCH" in out


@pytest.mark.parametrize("flavor", [p for f in FLAVOR_MAJOR for p in flavor_params(f, [(f,)])])
def test_verify_checks_conv_lstm_beside_other_layers(flavor: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    handle = keras_handle(flavor)
    k = handle.module
    inputs = k.Input((4, 5, 5, 1))
    x = k.layers.ConvLSTM2D(2, 3, name="conv_lstm")(inputs)
    x = k.layers.Reshape((9, 2))(x)
    x = k.layers.LSTM(3, name="lstm_after")(x)
    path = _save(handle, k.Model(inputs, x), tmp_path / "conv.keras")
    code, out, err = _verify(capsys, str(path))
    assert code == 0, out + err
    assert "conv_lstm" in out and "skipped" not in out
    assert "PARITY HOLDS for 2 recurrent layer(s)\n" in out


@pytest.mark.parametrize("flavor", [p for f in FLAVOR_MAJOR for p in flavor_params(f, [(f,)])])
def test_verify_refuses_lambda_before_loading(flavor: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    handle = keras_handle(flavor)
    k = handle.module
    inputs = k.Input((3, 2))
    x = k.layers.LSTM(2, return_sequences=True)(inputs)
    x = k.layers.Lambda(lambda t: t * 2.0, name="double")(x)
    path = tmp_path / ("lambda.h5" if handle.keras_version == 2 else "lambda.keras")
    k.Model(inputs, x).save(str(path))
    code, out, err = _verify(capsys, str(path))
    assert code == 2 and out == ""
    assert err.startswith("rnnparity verify: refused to load:") and "Lambda 'double'" in err
    assert len(err.strip().splitlines()) == 1


def test_verify_refuses_custom_classes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = {
        "class_name": "Sequential",
        "config": {
            "name": "m",
            "layers": [
                {"module": "my_package.layers", "class_name": "Evil", "config": {"name": "evil"}, "registered_name": "Evil"}
            ],
        },
    }
    path = tmp_path / "custom.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
    code, _, err = _verify(capsys, str(path))
    assert code == 2
    assert "refused to load" in err or "needs keras 3" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a model at all", "is not a Keras model file"),
        (b"PK\x03\x04 truncated zip", "is not a Keras model file"),
        (b"\x89HDF\r\n\x1a\n" + b"\x00" * 64, "corrupted HDF5 file"),
    ],
    ids=["text", "truncated-zip", "truncated-hdf5"],
)
def test_verify_unloadable_files_exit_2(content: bytes, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "model.keras"
    path.write_bytes(content)
    code, out, err = _verify(capsys, str(path))
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1


def test_verify_missing_file_and_archive_without_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _verify(capsys, str(tmp_path / "absent.keras"))
    assert code == 2 and "no such file" in err
    archive_path = tmp_path / "other.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    code, _, err = _verify(capsys, str(archive_path))
    assert code == 2 and "without config.json" in err
    code, _, err = _verify(capsys, str(archive_path), "--timesteps", "0")
    assert code == 2 and "--timesteps must be a positive integer" in err


@pytest.mark.parametrize("flavor", [p for f in FLAVOR_MAJOR for p in flavor_params(f, [(f,)])])
def test_verify_weights_only_files_layer_by_layer(flavor: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A *.weights.h5 has no model: each recurrent layer is checked alone (test_legacy_keras.py has more)."""
    handle = keras_handle(flavor)
    model = _stacked(handle.module)
    _save(handle, model, tmp_path / "model.keras")
    path = tmp_path / "only.weights.h5"
    model.save_weights(str(path))
    # Keras 3 records layer names in this layout; tf_keras only keys named after the class.
    third = "third" if handle.keras_version == 3 else "simple_rnn"
    code, out, err = _verify(capsys, str(path), "--set", f"{third}:activation=relu")
    assert code == 0, out + err
    assert "weights only: each recurrent layer runs alone" in out and "PARITY HOLDS for 3 recurrent layer(s)" in out
    assert "1 other layers with weights in the file" in out and out.count("identical") == 3


@pytest.mark.parametrize("flavor", [p for f in FLAVOR_MAJOR for p in flavor_params(f, [(f,)])])
def test_explain_a_saved_model(flavor: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`rnnparity explain MODEL` explains every cell of every recurrent layer, with its real sizes."""
    handle = keras_handle(flavor)
    inputs = handle.module.Input((None, 3))
    x = handle.module.layers.Bidirectional(handle.module.layers.GRU(4, reset_after=False, return_sequences=True))(inputs)
    x = handle.module.layers.RNN([handle.module.layers.LSTMCell(5), handle.module.layers.SimpleRNNCell(2)], name="stack")(x)
    path = _save(handle, handle.module.Model(inputs, x), tmp_path / "model.keras")
    code = cli.main(["explain", str(path), "--format", "json"])
    listing = json.loads(capsys.readouterr().out)
    assert code == 0
    parts = [(entry["layer"].split("_")[0], entry["part"]) for entry in listing["layers"]]
    assert [p for _, p in parts] == [
        "Bidirectional forward GRU",
        "Bidirectional backward GRU",
        "RNN cell 0 LSTM",
        "RNN cell 1 SimpleRNN",
    ]
    sizes = [(e["explain"]["kind"], e["explain"]["units"], e["explain"]["input_dim"]) for e in listing["layers"]]
    assert sizes == [("gru", 4, 3), ("gru", 4, 3), ("lstm", 5, 8), ("simple_rnn", 2, 5)]
    assert listing["layers"][0]["explain"]["reset_after"] is False
    code = cli.main(["explain", str(path)])
    text = capsys.readouterr().out
    assert code == 0 and "stack: RNN cell 0 LSTM" in text and "kernel (8, 20)" in text
    code = cli.main(["explain", str(tmp_path / "absent.keras")])
    assert code == 2 and "no such file" in capsys.readouterr().err
    if importlib.util.find_spec("matplotlib") is not None:
        assert cli.main(["explain", str(path), "--plot", str(tmp_path / "cells.png")]) == 0
        capsys.readouterr()
        assert len(list(tmp_path.glob("cells-*.png"))) == 4


@pytest.mark.parametrize("flavor", flavor_params("keras3", [("keras3",)]))
def test_verify_command_line_entry_point(flavor: str, tmp_path: Path) -> None:
    """The installed command itself, in a fresh process (Keras imported there, not here)."""
    import subprocess
    import sys

    handle = keras_handle(flavor)
    path = _save(handle, _stacked(handle.module), tmp_path / "model.keras")
    done = subprocess.run(
        [sys.executable, "-m", "rnnparity", "verify", str(path), "--timesteps", "4"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PARITY HOLDS for 3 recurrent layer(s)" in done.stdout and "(2, 4, 3)" in done.stdout
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"garbage")
    done = subprocess.run([sys.executable, "-m", "rnnparity", "verify", str(broken)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines()[-1].startswith("rnnparity verify:")


@pytest.mark.parametrize("flavor", [p for f in FLAVOR_MAJOR for p in flavor_params(f, [(f,)])])
def test_explain_a_model_with_conv_lstm_layers(flavor: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    handle = keras_handle(flavor)
    path = _save(handle, _conv_lstm(handle.module), tmp_path / ("model.keras" if handle.keras_version == 3 else "model.h5"))
    code = cli.main(["explain", str(path)])
    out = capsys.readouterr().out
    assert code == 0, out
    if path.suffix == ".h5":  # explain reads .h5 files without Keras (tests/test_conv_lstm_files.py has more)
        assert "conv_same: ConvLSTM2D (the class saved in the model config); filters 3, input channels 2" in out
        assert "conv_strided: ConvLSTM2D (the class saved in the model config); filters 2, input channels 3" in out
        assert "no twin" not in out
    else:
        assert "conv_same: ConvLSTM2D\n" in out and "conv_strided: ConvLSTM2D\n" in out
    # The first layer: 3x3 kernel over 2 input channels, 3 filters; gates i, f, c, o along the last axis.
    assert "conv_lstm2d filters=3 kernel_size=3x3 input_channels=2" in out
    assert "kernel (3, 3, 2, 12), recurrent_kernel (3, 3, 3, 12), bias (12,)" in out
    assert "c     [:, :, :, 6:9]" in out
