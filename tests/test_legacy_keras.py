"""Old Keras files against Keras itself: the cuDNN conversion bit for bit against tf_keras's own
loader, twins from files written by tf_keras and Keras 3, and ``rnnparity verify`` on them.

CuDNN layers cannot run on a CPU, so the reference is what tf_keras does when it loads cuDNN
weights into the plain LSTM / GRU: its converted weights must equal the twin's exactly, and
the plain layers' outputs must match the twin's within the suite's tolerance.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import flavor_params, keras_handle

pytest.importorskip("h5py")

import legacy_files as lf

from rnnparity import assert_parity, cli, layout
from rnnparity.files import legacy, stored
from rnnparity.suite.keras_adapter import KerasHandle, call_layer

TF_KERAS = flavor_params("tf-keras", [("tf-keras",)])
KERAS3 = flavor_params("keras3", [("keras3",)])


def _inputs(batch: int, timesteps: int, input_dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.5, size=(batch, timesteps, input_dim)).astype("float32")
    lengths = rng.integers(1, timesteps + 1, size=batch)
    lengths[0] = timesteps
    return x, np.arange(timesteps)[None, :] < lengths[:, None]


def _plain_model(handle: KerasHandle, class_name: str, name: str, units: int, input_dim: int, wrapped: bool) -> tuple[Any, Any]:
    """The plain tf_keras layer Keras loads cuDNN weights into, named as in the file."""
    k = handle.module
    options: dict[str, Any] = {"recurrent_activation": "sigmoid", "return_sequences": True, "return_state": True}
    if class_name == "CuDNNGRU":
        options["reset_after"] = True
    plain = getattr(k.layers, class_name.removeprefix("CuDNN"))
    layer = k.layers.Bidirectional(plain(units, **options), name=name) if wrapped else plain(units, name=name, **options)
    inputs = k.Input((None, input_dim))
    return k.Model(inputs, layer(inputs)), layer


CUDNN_CASES = [
    ("CuDNNLSTM", 3, 5, False, "weights"),
    ("CuDNNLSTM", 4, 2, True, "model"),
    ("CuDNNLSTM", 5, 5, False, "model"),
    ("CuDNNLSTM", 1, 3, True, "weights"),
    ("CuDNNGRU", 3, 5, False, "model"),
    ("CuDNNGRU", 4, 2, True, "weights"),
    ("CuDNNGRU", 2, 2, False, "weights"),
    ("CuDNNGRU", 6, 1, True, "model"),
]


@pytest.mark.parametrize(
    ("flavor", "class_name", "units", "input_dim", "wrapped", "layout_kind"),
    [
        p
        for p in flavor_params(
            "tf-keras",
            [("tf-keras", *case) for case in CUDNN_CASES],
            [f"{c}-u{u}-d{d}-{'bidi' if w else 'plain'}-{k}" for c, u, d, w, k in CUDNN_CASES],
        )
    ],
)
def test_cudnn_weights_convert_as_tf_keras_converts_them(
    flavor: str, class_name: str, units: int, input_dim: int, wrapped: bool, layout_kind: str, tmp_path: Path
) -> None:
    """A hand-built Keras 2.2.4 file whose saved class is CuDNNLSTM/CuDNNGRU (random weights),
    loaded by tf_keras into the plain layer: the weights equal the twin's bit for bit, the
    outputs (with and without a mask) match."""
    handle = keras_handle(flavor)
    rng = np.random.default_rng(units * 100 + input_dim)
    name = "bidirectional_1" if wrapped else f"{class_name.lower()}_1"
    parts = [lf.recurrent_weights(class_name, units, input_dim, rng) for _ in range(2 if wrapped else 1)]
    if wrapped:
        prefixes = [f"{name}/forward_{class_name.lower()}_1", f"{name}/backward_{class_name.lower()}_1"]
        weights = [w for part, prefix in zip(parts, prefixes) for w in lf.named("", part, prefix=prefix)]
        inner = lf.layer(class_name, lf.recurrent_config(class_name, f"{class_name.lower()}_1", units))
        config = {"name": name, "trainable": True, "layer": inner, "merge_mode": "concat"}
        layer_config = lf.layer("Bidirectional", config)
    else:
        weights = lf.named(name, parts[0])
        layer_config = lf.layer(
            class_name, lf.recurrent_config(class_name, name, units, batch_input_shape=[None, None, input_dim])
        )
    model_config = lf.sequential_config([layer_config]) if layout_kind == "model" else None
    path = lf.write_h5(tmp_path / "cudnn.h5", [(name, weights)], model_config=model_config)

    model, keras_layer = _plain_model(handle, class_name, name, units, input_dim, wrapped)
    model.load_weights(str(path))  # tf_keras's own loader converts the cuDNN weights
    twin = legacy.twin_from_weights(path, name, return_sequences=True, return_state=True)
    converted = [np.asarray(w) for w in keras_layer.get_weights()]
    assert len(converted) == len(twin.get_weights())
    for index, (ours, keras) in enumerate(zip(twin.get_weights(), converted)):
        assert ours.dtype == keras.dtype and ours.shape == keras.shape, index
        assert np.array_equal(ours, keras), f"array {index} differs from tf_keras's conversion"
    x, mask = _inputs(3, 6, input_dim, seed=units)
    context = f"{class_name} units={units} input_dim={input_dim} wrapped={wrapped}"
    assert_parity(call_layer(handle, keras_layer, x), twin(x), context=context)
    assert_parity(call_layer(handle, keras_layer, x, mask=mask), twin(x, mask=mask), context=context + " masked")


def _tf_keras_cudnn_layers(handle: KerasHandle) -> tuple[Any, Any]:
    from tf_keras.src.layers.rnn.cudnn_gru import CuDNNGRU
    from tf_keras.src.layers.rnn.cudnn_lstm import CuDNNLSTM

    return CuDNNLSTM, CuDNNGRU


@pytest.mark.parametrize("flavor", TF_KERAS)
def test_cudnn_files_written_by_tf_keras(flavor: str, tmp_path: Path) -> None:
    """tf_keras still has CuDNNLSTM/CuDNNGRU: they build and save on a CPU (only running needs a
    GPU). Its full-model and weights-only files convert as its loader converts them."""
    handle = keras_handle(flavor)
    k = handle.module
    cudnn_lstm, cudnn_gru = _tf_keras_cudnn_layers(handle)
    inputs = k.Input((None, 3))
    x = cudnn_lstm(4, return_sequences=True, name="encoder")(inputs)
    x = k.layers.Bidirectional(cudnn_gru(3, return_sequences=True), name="both")(x)
    saved = k.Model(inputs, x)
    rng = np.random.default_rng(9)
    saved.set_weights([rng.normal(0.0, 0.6, w.shape).astype(w.dtype) for w in saved.get_weights()])
    saved.save(str(tmp_path / "full.h5"))
    saved.save_weights(str(tmp_path / "weights.h5"))

    inputs = k.Input((None, 3))
    lstm = k.layers.LSTM(4, recurrent_activation="sigmoid", return_sequences=True, name="encoder")
    gru = k.layers.Bidirectional(
        k.layers.GRU(3, reset_after=True, recurrent_activation="sigmoid", return_sequences=True), name="both"
    )
    plain = k.Model(inputs, gru(lstm(inputs)))
    x, mask = _inputs(2, 5, 3, seed=1)
    for file_name in ("full.h5", "weights.h5"):
        plain.load_weights(str(tmp_path / file_name))
        for keras_layer in (lstm, gru):
            twin = legacy.twin_from_weights(tmp_path / file_name, keras_layer.name)
            for ours, keras in zip(twin.get_weights(), keras_layer.get_weights()):
                assert np.array_equal(ours, keras), (file_name, keras_layer.name)
        assert legacy.read_weights_file(tmp_path / file_name).layer("encoder").class_name == "CuDNNLSTM"
    layer_input = call_layer(handle, lstm, x)
    twin = legacy.twin_from_weights(tmp_path / "weights.h5", "both", return_sequences=True)
    assert_parity(
        call_layer(handle, gru, layer_input, mask=mask), twin(layer_input, mask=mask), context="Bidirectional(CuDNNGRU)"
    )


# --------------------------------------------------------------------------- plain layers
def _keras2_model(k: Any) -> Any:
    """A Keras 2.2-style model: hard_sigmoid, GRU without reset_after, a stack, a Bidirectional."""
    inputs = k.Input((None, 3))
    x = k.layers.LSTM(5, recurrent_activation="hard_sigmoid", return_sequences=True, name="lstm_hs")(inputs)
    x = k.layers.GRU(
        4, recurrent_activation="hard_sigmoid", reset_after=False, return_sequences=True, go_backwards=True, name="gru_old"
    )(x)
    x = k.layers.Bidirectional(k.layers.LSTM(3, return_sequences=True, use_bias=False), merge_mode="ave", name="both")(x)
    x = k.layers.RNN([k.layers.GRUCell(2), k.layers.SimpleRNNCell(3)], return_sequences=True, name="stack")(x)
    return k.Model(inputs, k.layers.Dense(1)(x))


def _randomize(model: Any, seed: int) -> None:
    rng = np.random.default_rng(seed)
    model.set_weights([rng.uniform(-0.8, 0.8, w.shape).astype(w.dtype) for w in model.get_weights()])


@pytest.mark.parametrize("flavor", TF_KERAS)
def test_files_written_by_tf_keras(flavor: str, tmp_path: Path) -> None:
    """Full model, weights only and *.weights.h5 from tf_keras: each layer's twin, with the
    settings a weights-only file does not store given in config, matches the layer."""
    handle = keras_handle(flavor)
    model = _keras2_model(handle.module)
    _randomize(model, 10)
    model.save(str(tmp_path / "full.h5"))
    model.save_weights(str(tmp_path / "weights.h5"))
    model.save_weights(str(tmp_path / "new.weights.h5"))
    names = ["lstm_hs", "gru_old", "both", "stack"]
    not_stored = {
        "lstm_hs": {"recurrent_activation": "hard_sigmoid", "return_sequences": True},
        "gru_old": {"recurrent_activation": "hard_sigmoid", "return_sequences": True, "go_backwards": True},
        "both": {"return_sequences": True, "merge_mode": "ave"},
        "stack": {"return_sequences": True},
    }
    keys = {"full.h5": names, "weights.h5": names, "new.weights.h5": ["lstm", "gru", "bidirectional", "rnn"]}
    x, mask = _inputs(3, 6, 3, seed=2)
    for file_name, file_names in keys.items():
        path = tmp_path / file_name
        file = legacy.read_weights_file(path)
        values = x
        for name, key in zip(names, file_names):
            keras_layer = model.get_layer(name)
            config = {} if file_name == "full.h5" else dict(not_stored[name])
            if file_name == "new.weights.h5":
                config["keras_version"] = 2  # the layout records no version: say which Keras wrote it
            if key not in [layer.name for layer in file.layers]:
                assert name == "stack" and "does not record their order" in file.no_twin[key]
                continue
            twin = legacy.twin_from_weights(path, key, **config)
            expected = call_layer(handle, keras_layer, values, mask=mask)
            assert_parity(expected, twin(values, mask=mask), context=f"{file_name} {name}")
            values = expected
    assert legacy.read_weights_file(tmp_path / "weights.h5").layer("gru_old").cells[0].reset_after is False


@pytest.mark.parametrize("flavor", TF_KERAS)
def test_the_suite_catches_a_wrong_conversion_or_formula(flavor: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative tests: each plausible mistake in reading old weights must fail the comparison."""
    handle = keras_handle(flavor)
    rng = np.random.default_rng(11)
    arrays = lf.recurrent_weights("CuDNNLSTM", 3, 4, rng)
    path = lf.write_h5(tmp_path / "w.h5", [("cu_dnnlstm_1", lf.named("cu_dnnlstm_1", arrays))])
    model, keras_layer = _plain_model(handle, "CuDNNLSTM", "cu_dnnlstm_1", 3, 4, False)
    model.load_weights(str(path))
    x, _ = _inputs(2, 5, 4, seed=3)
    expected = call_layer(handle, keras_layer, x)
    correct = legacy.twin_from_weights(path, "cu_dnnlstm_1", return_sequences=True, return_state=True)
    assert_parity(expected, correct(x))
    kernel, recurrent, bias = arrays
    width = 12
    mistakes = {
        "no conversion, biases summed": [kernel, recurrent, bias[:width] + bias[width:]],
        "kernel blocks transposed, then read back in C order": [
            np.concatenate([kernel[:, g * 3 : (g + 1) * 3].T.reshape(4, 3) for g in range(4)], axis=1),
            layout.from_cudnn(arrays, "lstm")[1],
            layout.from_cudnn(arrays, "lstm")[2],
        ],
        "recurrent blocks not transposed": [layout.from_cudnn(arrays, "lstm")[0], recurrent, bias[:width] + bias[width:]],
        "input bias only": [*layout.from_cudnn(arrays, "lstm")[:2], bias[:width]],
    }
    for mistake, weights in mistakes.items():
        wrong = legacy.twin_from_weights(path, "cu_dnnlstm_1", return_sequences=True, return_state=True)
        wrong.set_weights(weights)
        with pytest.raises(AssertionError, match="MISMATCH"):
            assert_parity(expected, wrong(x), context=mistake)

    # The other Keras's hard_sigmoid on a Keras 2.2 file that uses it.
    lstm = lf.recurrent_weights("LSTM", 3, 4, rng)
    old = lf.write_h5(tmp_path / "old.h5", [("lstm_1", lf.named("lstm_1", lstm))])
    k = handle.module
    reference = k.layers.LSTM(3, recurrent_activation="hard_sigmoid", return_sequences=True, name="lstm_1")
    inputs = k.Input((None, 4))
    k.Model(inputs, reference(inputs)).load_weights(str(old))
    keras_numbers = call_layer(handle, reference, 3 * x)
    assert_parity(keras_numbers, legacy.twin_from_weights(old, "lstm_1", return_sequences=True)(3 * x))
    with pytest.raises(AssertionError, match="MISMATCH"):
        assert_parity(keras_numbers, legacy.twin_from_weights(old, "lstm_1", return_sequences=True, keras_version=3)(3 * x))


@pytest.mark.parametrize("flavor", KERAS3)
def test_files_written_by_keras3(flavor: str, tmp_path: Path) -> None:
    handle = keras_handle(flavor)
    k = handle.module
    inputs = k.Input((None, 3))
    x = k.layers.GRU(4, return_sequences=True, name="enc")(inputs)
    x = k.layers.Bidirectional(k.layers.LSTM(2, return_sequences=True, recurrent_activation="hard_sigmoid"), name="both")(x)
    model = k.Model(inputs, x)
    _randomize(model, 12)
    model.save(str(tmp_path / "full.h5"))
    model.save_weights(str(tmp_path / "model.weights.h5"))
    x, mask = _inputs(2, 5, 3, seed=4)
    hidden = call_layer(handle, model.get_layer("enc"), x, mask=mask)
    expected = call_layer(handle, model.get_layer("both"), hidden, mask=mask)
    for file_name, config in (
        ("full.h5", {}),
        ("model.weights.h5", {"return_sequences": True, "recurrent_activation": "hard_sigmoid"}),
    ):
        file = legacy.read_weights_file(tmp_path / file_name)
        assert [layer.name for layer in file.layers] == ["enc", "both"] or [layer.name for layer in file.layers] == [
            "both",
            "enc",
        ]
        enc = legacy.twin_from_weights(
            tmp_path / file_name, "enc", **({} if file_name == "full.h5" else {"return_sequences": True})
        )
        assert enc.keras_version == 3
        assert_parity(hidden, enc(x, mask=mask), context=file_name)
        assert_parity(
            expected, legacy.twin_from_weights(tmp_path / file_name, "both", **config)(hidden, mask=mask), context=file_name
        )


# --------------------------------------------------------------------------- rnnparity verify
def _verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["verify", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _keras22_seq2seq(path: Path) -> Path:
    """Keras 2.2.4, two inputs with no fixed length, CuDNNLSTM encoder whose states start a
    CuDNNLSTM decoder: a functional ``Model`` config as that Keras stored it."""
    rng = np.random.default_rng(13)
    encoder = lf.recurrent_weights("CuDNNLSTM", 6, 4, rng)
    decoder = lf.recurrent_weights("CuDNNLSTM", 6, 5, rng)
    dense = [rng.normal(size=(6, 5)).astype("float32"), rng.normal(size=5).astype("float32")]
    config = lf.functional_config(
        [
            lf.input_layer("encoder_inputs", [None, 4]),
            lf.input_layer("decoder_inputs", [None, 5]),
            lf.layer(
                "CuDNNLSTM", lf.recurrent_config("CuDNNLSTM", "encoder", 6, return_state=True), [[["encoder_inputs", 0, 0, {}]]]
            ),
            lf.layer(
                "CuDNNLSTM",
                lf.recurrent_config("CuDNNLSTM", "decoder", 6, return_sequences=True),
                [[["decoder_inputs", 0, 0, {}], ["encoder", 0, 1, {}], ["encoder", 0, 2, {}]]],
            ),
            lf.layer("Dense", lf.dense_config("dense_1", 5), [[["decoder", 0, 0, {}]]]),
        ],
        ["encoder_inputs", "decoder_inputs"],
        ["dense_1"],
    )
    layers = [
        ("encoder_inputs", []),
        ("decoder_inputs", []),
        ("encoder", lf.named("encoder", encoder)),
        ("decoder", lf.named("decoder", decoder)),
        ("dense_1", [("dense_1/kernel:0", dense[0]), ("dense_1/bias:0", dense[1])]),
    ]
    return lf.write_h5(path, layers, model_config=config)


@pytest.mark.parametrize("flavor", TF_KERAS)
def test_verify_a_keras22_cudnn_model_with_two_inputs_and_no_fixed_length(
    flavor: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _keras22_seq2seq(tmp_path / "seq2seq.h5")
    export = tmp_path / "vectors"
    code, out, err = _verify(capsys, str(path), "--timesteps", "5", "--export", str(export), "--json", str(tmp_path / "r.json"))
    assert code == 0, out + err
    assert "encoder_inputs (2, 5, 4)" in out and "decoder_inputs (2, 5, 5)" in out
    assert "CuDNNLSTM as LSTM" in out and "PARITY HOLDS for 2 recurrent layer(s)" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert [(r["name"], r["file_weights"], r["status"]) for r in report["layers"]] == [
        ("encoder", "identical", "ok"),
        ("decoder", "identical", "ok"),
    ]
    index = json.loads((export / "index.json").read_text())
    decoder = next(call for call in index["calls"] if call["layer"] == "decoder")
    assert {"initial_state.h", "initial_state.c"} <= set(decoder["inputs"])  # the old node format carried the states


@pytest.mark.parametrize("flavor", TF_KERAS)
def test_verify_a_tf_keras_model_with_two_inputs_and_old_defaults(
    flavor: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    handle = keras_handle(flavor)
    k = handle.module
    first, second = k.Input((None, 4), name="source"), k.Input((None, 3), name="target")
    _, h = k.layers.GRU(5, recurrent_activation="hard_sigmoid", reset_after=False, return_state=True, name="encoder")(first)
    decoded = k.layers.GRU(5, recurrent_activation="hard_sigmoid", reset_after=False, return_sequences=True, name="decoder")(
        second, initial_state=h
    )
    model = k.Model([first, second], k.layers.Dense(2)(decoded))
    _randomize(model, 14)
    model.save(str(tmp_path / "old.h5"))
    code, out, err = _verify(capsys, str(tmp_path / "old.h5"), "--timesteps", "6")
    assert code == 0, out + err
    assert "source (2, 6, 4)" in out and "target (2, 6, 3)" in out and "PARITY HOLDS for 2 recurrent layer(s)" in out
    assert out.count("identical") == 2


@pytest.mark.parametrize("flavor", TF_KERAS)
def test_verify_a_weights_only_file(flavor: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    handle = keras_handle(flavor)
    model = _keras2_model(handle.module)
    _randomize(model, 15)
    path = tmp_path / "weights.h5"
    model.save_weights(str(path))
    code, out, err = _verify(capsys, str(path), "--timesteps", "4", "--json", str(tmp_path / "r.json"))
    assert code == 0, out + err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["weights_only"] is True and report["other_layers"] == 1
    assert [(r["name"], r["file_weights"], r["status"], r["calls"]) for r in report["layers"]] == [
        (name, "identical", "ok", 2) for name in ("lstm_hs", "gru_old", "both", "stack")
    ]
    assert "recurrent_activation='sigmoid': not stored; the default of Keras 2.21.0" in out
    code, out, err = _verify(
        capsys,
        str(path),
        "--layer",
        "gru_old",
        "--set",
        "recurrent_activation=hard_sigmoid",
        "--set",
        "gru_old:go_backwards=true",
    )
    assert code == 0, out + err
    assert "gru_old" in out and "lstm_hs" not in out and "recurrent_activation=hard_sigmoid reset_after=False go_backwards" in out
    for args, message in [
        (["--layer", "nope"], "layer_name 'nope' is not in"),
        (["--set", "no_equals"], "--set takes [LAYER:]KEY=VALUE"),
        (["--set", "nope:units=3"], "--set names layer(s) ['nope']"),
        (["--set", "gru_old:units=7"], "units=7 (from config) contradicts the weights of 'gru_old'"),
        (["--set", "merge_mode=sum", "--layer", "lstm_hs"], "--set ['merge_mode']: no checked layer takes it"),
        (["--inputs", str(path)], "holds weights only"),
    ]:
        code, out, err = _verify(capsys, str(path), *args)
        assert code == 2 and out == "", (args, out)
        assert message in err and len(err.strip().splitlines()) == 1, (args, err)
    code, _, err = _verify(capsys, str(tmp_path / "missing.h5"), "--set", "units=1")
    assert code == 2 and "no such file" in err


@pytest.mark.parametrize("flavor", TF_KERAS)
def test_verify_reports_weights_that_differ_from_keras(
    flavor: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong cuDNN conversion in the reader must make verify fail (exit 1), for models and weights."""
    path = _keras22_seq2seq(tmp_path / "seq2seq.h5")
    weights_only = lf.write_h5(
        tmp_path / "w.h5",
        [("cu_dnngru_1", lf.named("cu_dnngru_1", lf.recurrent_weights("CuDNNGRU", 3, 2, np.random.default_rng(1))))],
    )

    def no_rearranging(weights: Any, kind: str) -> list[np.ndarray]:
        gates = len(layout.GATE_ORDER[kind])
        width = weights[1].shape[1]
        bias = weights[2][:width] + weights[2][width:] if gates == 4 else weights[2].reshape(2, width)
        return [np.array(weights[0]), np.array(weights[1]), bias]

    monkeypatch.setattr(stored, "from_cudnn", no_rearranging)  # what StoredCell.keras_weights converts with
    code, out, _ = _verify(capsys, str(path), "--timesteps", "3")
    assert code == 1 and "DIFFER" in out and "the weights rnnparity read from the file differ from those Keras loaded" in out
    code, out, _ = _verify(capsys, str(weights_only))
    assert code == 1 and "DIFFER" in out and "weights differ from those loaded by Keras (load_weights by_name)" in out


@pytest.mark.parametrize("flavor", KERAS3)
def test_verify_a_keras3_weights_file(flavor: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    handle = keras_handle(flavor)
    k = handle.module
    inputs = k.Input((None, 2))
    x = k.layers.SimpleRNN(3, return_sequences=True, name="first")(inputs)
    model = k.Model(inputs, k.layers.GRU(2, reset_after=False, name="second")(x))
    _randomize(model, 16)
    path = tmp_path / "model.weights.h5"
    model.save_weights(str(path))
    code, out, err = _verify(capsys, str(path))
    assert code == 0, out + err
    assert handle.describe() in out and "PARITY HOLDS for 2 recurrent layer(s)" in out
    assert "first" in out and "second" in out and "reset_after=False" in out
