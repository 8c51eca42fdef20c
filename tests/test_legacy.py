"""Old Keras files read without Keras (rnnparity.files.legacy), the cuDNN conversion, and the old defaults.

The files are hand-built here in the layouts Keras 2.0-2.2 wrote (see legacy_files.py) or
written by tf_keras / Keras 3 in the tests that need Keras. Parity with Keras, and the cuDNN
conversion bit for bit against tf_keras's own loader, are in test_legacy_keras.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("h5py")

import legacy_files as lf

import rnnparity
from rnnparity import cli
from rnnparity.files import legacy
from rnnparity.layout import GATE_ORDER, from_cudnn, gate_slice


# --------------------------------------------------------------------------- who wrote it
@pytest.mark.parametrize(
    ("version", "layout", "expected"),
    [
        ("2.0.8", "model", (2, "hard_sigmoid", False)),
        ("2.1.6", "weights", (2, "hard_sigmoid", False)),
        ("2.2.4", "model", (2, "hard_sigmoid", False)),
        ("2.2.5", "model", (2, "hard_sigmoid", False)),
        ("2.3.1", "model", (2, "sigmoid", False)),
        ("2.1.6-tf", "model", (2, "hard_sigmoid", False)),
        ("2.2.4-tf", "model", (2, "hard_sigmoid", False)),
        ("2.3.0-tf", "model", (2, "sigmoid", True)),
        ("2.4.0", "model", (2, "sigmoid", True)),
        ("2.15.0", "weights", (2, "sigmoid", True)),
        ("2.21.0", "model", (2, "sigmoid", True)),
        ("3.15.1", "model", (3, "sigmoid", True)),
        (None, "weights.h5", (3, "sigmoid", True)),
        (None, "weights", (2, "hard_sigmoid", False)),
    ],
)
def test_writer_defaults_follow_the_keras_that_wrote_the_file(version: str | None, layout: str, expected: tuple) -> None:
    writer = legacy.writer_defaults(version, layout)
    assert (writer.keras_version, writer.recurrent_activation, writer.reset_after) == expected, writer


@pytest.mark.parametrize("version", ["1.2.2", "banana", "4.0.0"])
def test_writer_defaults_refuse_unknown_versions(version: str) -> None:
    with pytest.raises(legacy.WeightsFileError, match=version.split(".")[0]):
        legacy.writer_defaults(version)


# --------------------------------------------------------------------------- the cuDNN layout
@pytest.mark.parametrize(("kind", "units", "input_dim"), [("lstm", 3, 5), ("lstm", 1, 2), ("gru", 4, 2), ("gru", 3, 3)])
def test_from_cudnn_follows_the_cudnn_definition(kind: str, units: int, input_dim: int) -> None:
    """cuDNN applies each gate as W @ x with W row-major (units, rows) in the layer's buffer;
    the plain layer's block is W.T. Built here from that definition, not from Keras's code."""
    rng = np.random.default_rng(units * 10 + input_dim)
    gates = GATE_ORDER[kind]
    w = {g: rng.normal(size=(units, input_dim)).astype("float32") for g in gates}
    r = {g: rng.normal(size=(units, units)).astype("float32") for g in gates}
    # What the cuDNN layer's variables hold: each gate's buffer, seen in Keras's shapes.
    stored_kernel = np.concatenate([w[g].reshape(input_dim, units) for g in gates], axis=1)
    stored_recurrent = np.concatenate([r[g].reshape(units, units) for g in gates], axis=1)
    input_bias, recurrent_bias = rng.normal(size=(2, len(gates) * units)).astype("float32")
    kernel, recurrent, bias = from_cudnn([stored_kernel, stored_recurrent, np.concatenate([input_bias, recurrent_bias])], kind)
    for gate in gates:
        cols = gate_slice(kind, gate, units)
        np.testing.assert_array_equal(kernel[:, cols], w[gate].T)
        np.testing.assert_array_equal(recurrent[:, cols], r[gate].T)
    if kind == "lstm":
        np.testing.assert_array_equal(bias, input_bias + recurrent_bias)
    else:
        np.testing.assert_array_equal(bias, np.stack([input_bias, recurrent_bias]))
    assert kernel.dtype == recurrent.dtype == bias.dtype == np.float32
    if min(units, input_dim) > 1:  # with a single unit or input the re-read changes nothing
        assert not np.array_equal(kernel, stored_kernel)


@pytest.mark.parametrize(
    ("weights", "kind", "message"),
    [
        ([np.ones((3, 8)), np.ones((2, 8)), np.ones(16)], "simple_rnn", "kind must be 'lstm'"),
        ([np.ones((3, 8)), np.ones((2, 8))], "lstm", "always has a bias"),
        ([np.ones((3, 8)), np.ones((2, 6)), np.ones(16)], "lstm", r"recurrent_kernel has shape \(2, 6\)"),
        ([np.ones((3, 6)), np.ones((2, 8)), np.ones(16)], "lstm", r"kernel has shape \(3, 6\)"),
        ([np.ones((3, 8)), np.ones((2, 8)), np.ones(8)], "lstm", r"bias has shape \(8,\); a CuDNNLSTM with units=2 has \(16,\)"),
        ([np.ones((3, 6)), np.ones((2, 6)), np.ones((2, 6))], "gru", r"a CuDNNGRU with units=2 has \(12,\)"),
    ],
)
def test_from_cudnn_refuses_wrong_shapes(weights: list, kind: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_cudnn(weights, kind)


# --------------------------------------------------------------------------- reading files
def _keras22_cudnn_model(path: Path, seed: int = 0) -> tuple[Path, dict[str, list[np.ndarray]]]:
    """A Sequential saved by Keras 2.2.4: CuDNNLSTM -> Bidirectional(CuDNNGRU) -> Dense."""
    rng = np.random.default_rng(seed)
    stored = {
        "cu_dnnlstm_1": lf.recurrent_weights("CuDNNLSTM", 4, 3, rng),
        "forward": lf.recurrent_weights("CuDNNGRU", 2, 4, rng),
        "backward": lf.recurrent_weights("CuDNNGRU", 2, 4, rng),
        "dense_1": [rng.normal(size=(4, 1)).astype("float32"), rng.normal(size=1).astype("float32")],
    }
    first = lf.recurrent_config(
        "CuDNNLSTM", "cu_dnnlstm_1", 4, return_sequences=True, batch_input_shape=[None, None, 3], dtype="float32"
    )
    wrapped = {
        "name": "bidirectional_1",
        "trainable": True,
        "layer": lf.layer("CuDNNGRU", lf.recurrent_config("CuDNNGRU", "cu_dnngru_1", 2)),
    }
    config = lf.sequential_config(
        [
            lf.layer("CuDNNLSTM", first),
            lf.layer("Bidirectional", {**wrapped, "merge_mode": "concat"}),
            lf.layer("Dense", lf.dense_config("dense_1", 1)),
        ]
    )
    lf.write_h5(
        path,
        [
            ("cu_dnnlstm_1", lf.named("cu_dnnlstm_1", stored["cu_dnnlstm_1"])),
            (
                "bidirectional_1",
                lf.named("", stored["forward"], prefix="bidirectional_1/forward_cu_dnngru_1")
                + lf.named("", stored["backward"], prefix="bidirectional_1/backward_cu_dnngru_1"),
            ),
            ("dense_1", [("dense_1/kernel:0", stored["dense_1"][0]), ("dense_1/bias:0", stored["dense_1"][1])]),
        ],
        model_config=config,
    )
    return path, stored


def test_reads_a_keras22_model_with_cudnn_layers(tmp_path: Path) -> None:
    path, stored = _keras22_cudnn_model(tmp_path / "model.h5")
    file = legacy.read_weights_file(path)
    assert (file.layout, file.keras_release, file.backend) == ("model", "2.2.4", "tensorflow")
    assert [(x.name, x.class_name, x.saved_class, x.inner_class) for x in file.layers] == [
        ("cu_dnnlstm_1", "CuDNNLSTM", "CuDNNLSTM", "CuDNNLSTM"),
        ("bidirectional_1", "Bidirectional", "Bidirectional", "CuDNNGRU"),
    ]
    assert [(x.units, x.input_dim) for x in file.layers] == [(4, 3), (2, 4)]
    assert file.others == {"dense_1": [(4, 1), (1,)]}

    lstm = rnnparity.files.legacy.twin_from_weights(path, "cu_dnnlstm_1")
    assert isinstance(lstm, rnnparity.LSTM) and lstm.return_sequences and lstm.keras_version == 2
    assert (lstm.units, lstm.recurrent_activation, lstm.activation) == (4, "sigmoid", "tanh")
    for ours, expected in zip(lstm.get_weights(), from_cudnn(stored["cu_dnnlstm_1"], "lstm")):
        np.testing.assert_array_equal(ours, expected)
    both = legacy.twin_from_weights(path, "bidirectional_1")
    assert isinstance(both, rnnparity.Bidirectional) and both.merge_mode == "concat"
    assert both.forward_layer.reset_after is True and both.forward_layer.recurrent_activation == "sigmoid"
    expected = from_cudnn(stored["forward"], "gru") + from_cudnn(stored["backward"], "gru")
    for ours, theirs in zip(both.get_weights(), expected):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize(
    ("suffix", "as_bytes", "chunked"),
    [(":0", True, False), ("", False, False), (":0", False, True), ("", True, True)],
    ids=["colon-bytes", "plain-str", "colon-str-chunked", "plain-bytes-chunked"],
)
def test_reads_weights_only_files_of_keras20(tmp_path: Path, suffix: str, as_bytes: bool, chunked: bool) -> None:
    """Weights only, Keras 2.0.8: no classes, so the shapes decide; defaults are Keras 2.0's."""
    rng = np.random.default_rng(3)
    arrays = {
        "lstm_1": lf.recurrent_weights("LSTM", 3, 2, rng),
        "gru_1": lf.recurrent_weights("GRU", 2, 3, rng),
        "gru_2": lf.recurrent_weights("GRU", 2, 2, rng, reset_after=True),
        "gru_3": lf.recurrent_weights("GRU", 2, 2, rng, use_bias=False),
        "simple_rnn_1": lf.recurrent_weights("SimpleRNN", 2, 2, rng),
        "cu_dnngru_1": lf.recurrent_weights("CuDNNGRU", 3, 2, rng),
    }
    layers = [(name, lf.named(name, w, suffix)) for name, w in arrays.items()]
    layers.append(
        ("dense_1", [(f"dense_1/kernel{suffix}", np.ones((3, 1), "float32")), (f"dense_1/bias{suffix}", np.ones(1, "float32"))])
    )
    path = lf.write_h5(tmp_path / "w.h5", layers, keras_version="2.0.8", as_bytes=as_bytes, chunk_layer_names=chunked)
    file = legacy.read_weights_file(path)
    assert file.layout == "weights" and file.keras_release == "2.0.8"
    assert {x.name: x.class_name for x in file.layers} == {
        "lstm_1": "LSTM",
        "gru_1": "GRU",
        "gru_2": "GRU",
        "gru_3": "GRU",
        "simple_rnn_1": "SimpleRNN",
        "cu_dnngru_1": "CuDNNGRU",
    }
    assert all(x.saved_class is None for x in file.layers) and list(file.others) == ["dense_1"]
    twins = {name: legacy.twin_from_weights(path, name) for name in arrays}
    assert twins["lstm_1"].recurrent_activation == "hard_sigmoid" and twins["lstm_1"].keras_version == 2
    assert [twins[n].reset_after for n in ("gru_1", "gru_2", "gru_3", "cu_dnngru_1")] == [False, True, False, True]
    assert twins["cu_dnngru_1"].recurrent_activation == "sigmoid"  # the cuDNN layers fix it
    for name in ("lstm_1", "gru_1", "gru_2", "gru_3", "simple_rnn_1"):  # plain layers: unchanged, bit for bit
        for ours, stored in zip(twins[name].get_weights(), arrays[name]):
            np.testing.assert_array_equal(ours, stored)
    plan = legacy.plan_twin(file, file.layer("gru_3"))
    assert any("reset_after=False: a GRU without bias does not show it" in note for note in plan.assumptions)


def test_twin_from_weights_takes_what_the_file_does_not_store(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    path = lf.write_h5(tmp_path / "w.h5", [("lstm_1", lf.named("lstm_1", lf.recurrent_weights("LSTM", 3, 2, rng)))])
    twin = legacy.twin_from_weights(
        path, "lstm_1", recurrent_activation="sigmoid", return_sequences=True, go_backwards=True, dtype="float64"
    )
    assert twin.recurrent_activation == "sigmoid" and twin.return_sequences and twin.go_backwards
    assert twin.dtype == np.float64 and twin.keras_version == 2
    three = legacy.plan_twin(legacy.read_weights_file(path), legacy.read_weights_file(path).layer("lstm_1"), {"keras_version": 3})
    assert three.assumptions[0].startswith("keras_version=3 (given; not the file's")
    assert "hard_sigmoid is Keras 3's relu6(x + 3) / 6" in three.assumptions[0]


def test_twin_from_weights_errors_name_the_argument(tmp_path: Path) -> None:
    path, _ = _keras22_cudnn_model(tmp_path / "model.h5")
    with pytest.raises(
        ValueError, match=r"layer_name 'nope' is not in .*its recurrent layers are \['cu_dnnlstm_1', 'bidirectional_1'\]"
    ):
        legacy.twin_from_weights(path, "nope")
    with pytest.raises(ValueError, match=r"layer_name 'dense_1' is not a recurrent layer \(its weights: \(4, 1\), \(1,\)\)"):
        legacy.twin_from_weights(path, "dense_1")
    with pytest.raises(TypeError, match="layer_name must be a string"):
        legacy.twin_from_weights(path, 3)  # type: ignore[arg-type]
    with pytest.raises(
        ValueError,
        match=r"units=5 \(from config\) contradicts the weights of 'cu_dnnlstm_1': recurrent_kernel has shape \(4, 16\)",
    ):
        legacy.twin_from_weights(path, "cu_dnnlstm_1", units=5)
    with pytest.raises(
        ValueError, match=r"recurrent_activation='hard_sigmoid' \(from config\) contradicts CuDNNLSTM, which always"
    ):
        legacy.twin_from_weights(path, "cu_dnnlstm_1", recurrent_activation="hard_sigmoid")
    with pytest.raises(ValueError, match=r"use_bias=False \(from config\) contradicts .*it stores a bias \(32,\)"):
        legacy.twin_from_weights(path, "cu_dnnlstm_1", use_bias=False)
    with pytest.raises(TypeError, match=r"config has key\(s\) \['reset_after'\] that a LSTM twin does not take"):
        legacy.twin_from_weights(path, "cu_dnnlstm_1", reset_after=True)
    with pytest.raises(ValueError, match="keras_version must be 2 or 3"):
        legacy.twin_from_weights(path, "cu_dnnlstm_1", keras_version=1)
    rng = np.random.default_rng(5)
    gru = lf.write_h5(tmp_path / "gru.h5", [("gru_1", lf.named("gru_1", lf.recurrent_weights("GRU", 2, 3, rng)))])
    with pytest.raises(
        ValueError, match=r"reset_after=True \(from config\) contradicts .*the bias has shape \(6,\), so reset_after=False"
    ):
        legacy.twin_from_weights(gru, "gru_1", reset_after=True)
    with pytest.raises(TypeError, match="path must be a file path"):
        legacy.read_weights_file(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no such file"):
        legacy.read_weights_file(tmp_path / "absent.h5")
    text = tmp_path / "model.keras"
    text.write_bytes(b"PK\x03\x04 not hdf5")
    with pytest.raises(ValueError, match="is not an HDF5 file"):
        legacy.read_weights_file(text)


def test_keras1_files_are_refused_with_the_reason(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    path = lf.write_h5(
        tmp_path / "k1.h5", [("lstm_1", lf.named("lstm_1", lf.recurrent_weights("LSTM", 2, 2, rng)))], keras_version="1.2.2"
    )
    with pytest.raises(legacy.WeightsFileError, match="Keras 1 stored one array per gate"):
        legacy.read_weights_file(path)


def test_stored_config_gives_the_settings_and_the_class(tmp_path: Path) -> None:
    """Keras 2.1.6: Sequential as a bare list, hard_sigmoid stored explicitly, a GRU inside Bidirectional."""
    rng = np.random.default_rng(7)
    config = lf.sequential_config(
        [
            lf.layer(
                "LSTM",
                lf.recurrent_config(
                    "LSTM", "lstm_1", 5, return_sequences=True, go_backwards=True, batch_input_shape=[None, 7, 3]
                ),
            ),
            lf.layer(
                "Bidirectional",
                {
                    "name": "bidirectional_1",
                    "trainable": True,
                    "merge_mode": "sum",
                    "layer": lf.layer("GRU", lf.recurrent_config("GRU", "gru_1", 4, activation="relu")),
                },
            ),
        ],
        as_list=True,
    )
    forward, backward = lf.recurrent_weights("GRU", 4, 5, rng), lf.recurrent_weights("GRU", 4, 5, rng)
    path = lf.write_h5(
        tmp_path / "m.h5",
        [
            ("lstm_1", lf.named("lstm_1", lf.recurrent_weights("LSTM", 5, 3, rng))),
            (
                "bidirectional_1",
                lf.named("", forward, prefix="bidirectional_1/forward_gru_1")
                + lf.named("", backward, prefix="bidirectional_1/backward_gru_1"),
            ),
        ],
        keras_version="2.1.6",
        model_config=config,
    )
    lstm = legacy.twin_from_weights(path, "lstm_1")
    assert lstm.go_backwards and lstm.return_sequences and lstm.recurrent_activation == "hard_sigmoid"
    both = legacy.twin_from_weights(path, "bidirectional_1")
    assert both.merge_mode == "sum" and both.forward_layer.activation == "relu" and not both.forward_layer.reset_after
    assert both.backward_layer.go_backwards  # Keras 2 flips the copy
    np.testing.assert_array_equal(both.backward_layer.get_weights()[1], backward[1])
    overridden = legacy.twin_from_weights(path, "lstm_1", go_backwards=False)
    assert not overridden.go_backwards  # config wins over the stored config


# --------------------------------------------------------------------------- explain, without Keras
def test_explain_lists_every_recurrent_layer_without_importing_keras(tmp_path: Path) -> None:
    path, _ = _keras22_cudnn_model(tmp_path / "model.h5")
    code = (
        "import sys, json\n"
        "from rnnparity.cli import main\n"
        f"assert main(['explain', {str(path)!r}, '--format', 'json']) == 0\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'tf_keras') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    listing = json.loads(done.stdout)
    assert (listing["keras_version"], listing["backend"], listing["layout"]) == ("2.2.4", "tensorflow", "model")
    assert "standalone Keras < 2.3" in listing["written_by"]
    first, second = listing["layers"]
    assert (first["name"], first["saved_class"], first["units"], first["input_dim"]) == ("cu_dnnlstm_1", "CuDNNLSTM", 4, 3)
    assert first["twin"].startswith("LSTM(4, activation='tanh', recurrent_activation='sigmoid'")
    assert any("weights converted from CuDNNLSTM" in note for note in first["assumptions"])
    assert first["parts"][0]["stored"]["shapes"] == [[3, 16], [4, 16], [32]]
    assert first["parts"][0]["explain"]["shapes"]["bias"] == [16]
    assert [p["part"] for p in second["parts"]] == ["forward", "backward"]
    assert second["parts"][0]["explain"]["reset_after"] is True


def test_explain_text_of_a_weights_only_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(8)
    path = lf.write_h5(
        tmp_path / "w.h5",
        [
            ("cu_dnnlstm_1", lf.named("cu_dnnlstm_1", lf.recurrent_weights("CuDNNLSTM", 3, 2, rng))),
            ("gru_1", lf.named("gru_1", lf.recurrent_weights("GRU", 2, 3, rng))),
        ],
        keras_version="2.2.4",
        backend="theano",
    )
    assert cli.main(["explain", str(path)]) == 0
    out = capsys.readouterr().out
    assert "weights only (.h5) written by Keras 2.2.4 (standalone Keras < 2.3), backend theano; read with h5py" in out
    inferred = "CuDNNLSTM (not saved in a weights-only file; inferred from the shapes (a (24,) bias))"
    assert f"cu_dnnlstm_1: {inferred}; units 3, input_dim 2" in out
    assert "gru_1: GRU (not saved in a weights-only file" in out and "recurrent_activation='hard_sigmoid': not stored" in out
    assert "reset_after=False" in out and "backend 'theano' wrote the file" in out
    assert "the gate table shows the twin's layout, after the cuDNN conversion" in out
    assert cli.main(["explain", str(tmp_path / "absent.h5")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_recurrent_layers_without_a_twin_are_named_with_the_reason(tmp_path: Path) -> None:
    """A custom recurrent class has no twin and is named with the reason; a ConvLSTM2D beside
    it is read (its kernels recognised by shape)."""
    rng = np.random.default_rng(9)
    conv = {"name": "conv_lst_m2d_1", "trainable": True, "filters": 2, "kernel_size": [3, 3]}
    custom = lf.recurrent_config("GRU", "my_gru_1", 2)
    config = lf.sequential_config(
        [lf.layer("ConvLSTM2D", conv), lf.layer("MyGRU", custom), lf.layer("LSTM", lf.recurrent_config("LSTM", "lstm_1", 2))]
    )
    conv_weights = [rng.normal(size=(3, 3, 1, 8)).astype("float32"), rng.normal(size=(3, 3, 2, 8)).astype("float32")]
    path = lf.write_h5(
        tmp_path / "m.h5",
        [
            ("conv_lst_m2d_1", lf.named("conv_lst_m2d_1", conv_weights)),
            ("my_gru_1", lf.named("my_gru_1", lf.recurrent_weights("GRU", 2, 18, rng))),
            ("lstm_1", lf.named("lstm_1", lf.recurrent_weights("LSTM", 2, 2, rng))),
        ],
        model_config=config,
    )
    file = legacy.read_weights_file(path)
    assert [x.name for x in file.layers] == ["conv_lst_m2d_1", "lstm_1"]
    assert file.layer("conv_lst_m2d_1").class_name == "ConvLSTM2D"
    assert file.no_twin == {"my_gru_1": "MyGRU has no twin (a custom or unsupported recurrent class)"}
    with pytest.raises(ValueError, match="layer_name 'my_gru_1': MyGRU has no twin"):
        legacy.twin_from_weights(path, "my_gru_1")
    twin = legacy.twin_from_weights(path, "conv_lst_m2d_1")
    assert isinstance(twin, rnnparity.ConvLSTM2D) and twin.filters == 2 and twin.kernel_size == (3, 3)
    assert twin.recurrent_activation == "hard_sigmoid"  # Keras 2.2.4's ConvLSTM default, not stored here


def test_a_file_listing_a_missing_array_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import h5py

    rng = np.random.default_rng(10)
    path = lf.write_h5(tmp_path / "w.h5", [("lstm_1", lf.named("lstm_1", lf.recurrent_weights("LSTM", 2, 2, rng)))])
    with h5py.File(path, "a") as h5:
        del h5["lstm_1/lstm_1/bias:0"]
    with pytest.raises(
        legacy.WeightsFileError, match="layer 'lstm_1' lists weight 'lstm_1/bias:0' but the file has no such array"
    ):
        legacy.read_weights_file(path)
    assert cli.main(["explain", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnparity explain:") and len(err.strip().splitlines()) == 1
