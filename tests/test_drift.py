"""`rnnparity drift`: a saved model's outputs under the other Keras, predicted by the twins.

Every prediction is checked against the target Keras itself: the test builds the same
architecture there, gives it the same (random) weights and runs the same inputs.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import flavor_available, keras_handle

import rnnparity
from rnnparity import assert_parity, cli
from rnnparity.files import drift as drift_module

BOTH = pytest.mark.skipif(
    not (flavor_available("keras3") and flavor_available("tf-keras")),
    reason="drift tests need both keras 3 and tf-keras (pip install -e '.[test]'; RNNPARITY_KERAS unset)",
)
pytestmark = [pytest.mark.keras, BOTH]
DIRECTIONS = [("tf-keras", "keras3"), ("keras3", "tf-keras")]


def _gru(k: Any, recurrent_activation: str) -> Any:
    inputs = k.Input((None, 3), name="x")
    h = k.layers.GRU(6, recurrent_activation=recurrent_activation, reset_after=False, name="gru")(inputs)
    return k.Model(inputs, k.layers.Dense(4, activation="softmax", name="probs")(h))


def _bidirectional_stack(k: Any) -> Any:
    inputs = k.Input((None, 3), name="x")
    x = k.layers.Bidirectional(k.layers.LSTM(4, recurrent_activation="hard_sigmoid", return_sequences=True), name="bi")(inputs)
    x = k.layers.RNN([k.layers.GRUCell(5, recurrent_activation="hard_sigmoid"), k.layers.SimpleRNNCell(3)], name="stack")(x)
    return k.Model(inputs, k.layers.Dense(3, activation="softmax", name="probs")(x))


def _two_in_two_out(k: Any) -> Any:
    first, second = k.Input((None, 3), name="first"), k.Input((None, 2), name="second")
    _, h, c = k.layers.LSTM(5, recurrent_activation="hard_sigmoid", return_state=True, name="encoder")(first)
    decoded = k.layers.LSTM(5, name="decoder")(second, initial_state=[h, c])
    classes = k.layers.Dense(3, activation="softmax", name="classes")(decoded)
    flag = k.layers.Dense(1, activation="sigmoid", name="flag")(h)
    return k.Model([first, second], [classes, flag])


def _stateful(k: Any) -> Any:
    sequence, start = k.Input((5, 3), batch_size=2, name="sequence"), k.Input((4,), batch_size=2, name="start")
    h = k.layers.GRU(4, stateful=True, name="carry")(sequence, initial_state=start)
    return k.Model([sequence, start], k.layers.Dense(2, name="score")(h))


def _randomize(model: Any, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    # Random weights everywhere (never Keras's zero biases): gate-order bugs cannot hide.
    weights = [rng.uniform(-1.0, 1.0, w.shape).astype(w.dtype) for w in model.get_weights()]
    model.set_weights(weights)
    return weights


def _saved(flavor: str, build: Callable[[Any], Any], path: Path, seed: int = 5) -> tuple[Path, list[np.ndarray]]:
    model = build(keras_handle(flavor).module)
    weights = _randomize(model, seed)
    model.save(str(path))
    return path, weights


def _inputs(specs: list[tuple[int, ...]], seed: int = 11) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(0.0, 1.5, size=shape).astype("float32") for shape in specs]


def _target_outputs(
    flavor: str, build: Callable[[Any], Any], weights: list[np.ndarray], arrays: list[np.ndarray], calls: int = 1
) -> list[np.ndarray]:
    """What the target Keras itself computes: the same architecture, weights and inputs."""
    model = build(keras_handle(flavor).module)
    model.set_weights(weights)
    runs = []
    for _ in range(calls):
        result = model(arrays if len(arrays) > 1 else arrays[0], training=False)
        runs.append([np.asarray(r) for r in (result if isinstance(result, (list, tuple)) else [result])])
    return [np.concatenate(parts) for parts in zip(*runs)]


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["drift", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --------------------------------------------------------------------------- the done-when case
def test_hard_sigmoid_gru_from_tf_keras_drifts_under_keras3_as_keras3_computes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command names the layer and the cause, exits 1; its predicted Keras 3 outputs equal
    what Keras 3 computes from the same weights, and what Keras 3 gives loading the file itself."""
    path, weights = _saved("tf-keras", lambda k: _gru(k, "hard_sigmoid"), tmp_path / "old.h5")
    arrays = _inputs([(16, 7, 3)])
    np.save(tmp_path / "x.npy", arrays[0])
    predictions = tmp_path / "predictions.npz"
    code, out, err = _run(
        capsys, str(path), "--to", "keras3", "--inputs", str(tmp_path / "x.npy"), "--predictions", str(predictions)
    )
    assert code == 1, out + err
    assert "gru" in out and "DRIFTS" in out and "hard-sigmoid-formula" in out
    assert "DRIFT under Keras 3: gru (hard-sigmoid-formula)" in out
    assert "time_major=False" in out and "agrees" in out and "DISAGREES" not in out
    with np.load(predictions) as saved:
        assert sorted(saved.files) == ["actual/probs", "after/probs", "before/probs"]
        before, after, actual = saved["before/probs"], saved["after/probs"], saved["actual/probs"]
    (expected,) = _target_outputs("keras3", lambda k: _gru(k, "hard_sigmoid"), weights, arrays)
    assert_parity(expected, after, context="predicted Keras 3 outputs vs Keras 3 built here")
    assert_parity(actual, after, context="predicted Keras 3 outputs vs Keras 3 loading the file")
    (old,) = _target_outputs("tf-keras", lambda k: _gru(k, "hard_sigmoid"), weights, arrays)
    assert_parity(old, before, context="before = tf_keras")
    assert np.max(np.abs(after - before)) > 1e-3  # the two formulas really differ on these inputs


def test_sigmoid_gru_does_not_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = _saved("tf-keras", lambda k: _gru(k, "sigmoid"), tmp_path / "old.h5")
    code, out, err = _run(capsys, str(path), "--to", "keras3", "--no-actual", "--json", "-")
    assert code == 0, out + err
    report = json.loads(out)  # --json -: the JSON alone on stdout, the table on stderr
    assert report["drifts"] is False and report["exit_code"] == 0
    assert [layer["status"] for layer in report["layers"]] == ["same"]
    assert report["verdict"].startswith("NO DRIFT under Keras 3") and "NO DRIFT" in err


def test_prediction_without_retargeting_would_be_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check can fail: a drift that kept the source Keras's formula predicts the wrong
    Keras 3 outputs, and the comparison with Keras 3 says so."""
    path, weights = _saved("tf-keras", lambda k: _gru(k, "hard_sigmoid"), tmp_path / "old.h5")
    arrays = _inputs([(8, 6, 3)])
    monkeypatch.setattr(drift_module, "retarget", lambda twin, keras_version, backend="tensorflow": twin)
    report = rnnparity.drift(path, to="keras3", inputs=arrays, actual=False)
    (expected,) = _target_outputs("keras3", lambda k: _gru(k, "hard_sigmoid"), weights, arrays)
    assert not report.drifts
    with pytest.raises(AssertionError, match="max abs err"):
        assert_parity(expected, report.after["probs"], context="unretargeted prediction")


# --------------------------------------------------------------------------- both directions, nested layers
@pytest.mark.parametrize(("source", "target"), DIRECTIONS)
def test_bidirectional_and_stacked_cells(source: str, target: str, tmp_path: Path) -> None:
    path, weights = _saved(source, _bidirectional_stack, tmp_path / "model.keras")
    arrays = _inputs([(6, 9, 3)])
    report = rnnparity.drift(path, to=target, inputs=arrays, actual=False)
    (expected,) = _target_outputs(target, _bidirectional_stack, weights, arrays)
    assert_parity(expected, report.after["probs"], context=f"{source} -> {target}")
    rows = {layer.name: layer for layer in report.layers}
    assert rows["bi"].status == "drifts" and rows["bi"].causes == ["hard-sigmoid-formula"]
    assert rows["stack"].status == "drifts" and rows["stack"].causes == ["hard-sigmoid-formula"]
    assert report.exit_code == 1 and report.outputs[0].argmax_flips is not None


def _masked_tokens(k: Any) -> Any:
    tokens = k.Input((None,), dtype="int32", name="tokens")
    x = k.layers.Embedding(20, 6, mask_zero=True)(tokens)
    x = k.layers.Bidirectional(k.layers.LSTM(4, return_sequences=True), merge_mode="sum", name="bi")(x)
    x = k.layers.SimpleRNN(3, activation="hard_sigmoid", name="simple")(x)
    return k.Model(tokens, k.layers.Dense(3, activation="softmax", name="probs")(x))


def test_masks_reach_the_replaced_layers(tmp_path: Path) -> None:
    """Right-padded token ids: Embedding(mask_zero) masks reach every layer in both runs."""
    path, weights = _saved("tf-keras", _masked_tokens, tmp_path / "model.keras")
    tokens = np.random.default_rng(4).integers(1, 20, (8, 9)).astype("int32")
    tokens[3:, 5:] = 0
    report = rnnparity.drift(path, to="keras3", inputs=[tokens], actual=False)
    (expected,) = _target_outputs("keras3", _masked_tokens, weights, [tokens])
    assert_parity(expected, report.after["probs"], context="masked tokens tf-keras -> keras3")
    rows = {layer.name: layer for layer in report.layers}
    assert rows["bi"].status == "same" and rows["simple"].causes == ["hard-sigmoid-formula"]


@pytest.mark.parametrize(("source", "target"), DIRECTIONS)
def test_two_inputs_two_outputs(source: str, target: str, tmp_path: Path) -> None:
    path, weights = _saved(source, _two_in_two_out, tmp_path / "model.keras")
    arrays = _inputs([(12, 7, 3), (12, 4, 2)])
    report = rnnparity.drift(path, to=target, inputs={"first": arrays[0], "second": arrays[1]}, actual=False)
    assert list(report.after) == ["classes", "flag"]
    classes, flag = _target_outputs(target, _two_in_two_out, weights, arrays)
    assert_parity(classes, report.after["classes"], context=f"{source} -> {target} classes")
    assert_parity(flag, report.after["flag"], context=f"{source} -> {target} flag")
    rows = {layer.name: layer for layer in report.layers}
    # The encoder's hard_sigmoid drifts; the decoder's own cells do not (its inputs change with the encoder's states).
    assert rows["encoder"].causes == ["hard-sigmoid-formula"] and rows["decoder"].status == "same"
    outputs = {output.name: output for output in report.outputs}
    assert outputs["classes"].argmax_flips is not None and outputs["classes"].crossings is None
    assert outputs["flag"].crossings is not None and outputs["flag"].argmax_flips is None
    flips = int(np.count_nonzero(np.argmax(report.before["classes"], -1) != np.argmax(classes, -1)))
    assert outputs["classes"].argmax_flips == flips


@pytest.mark.parametrize(("source", "target"), DIRECTIONS)
def test_stateful_layer_given_initial_state(source: str, target: str, tmp_path: Path) -> None:
    """Two calls in a row: on the second, Keras 2 keeps its carried state and ignores
    initial_state, Keras 3 uses it (known difference stateful-initial-state)."""
    path, weights = _saved(source, _stateful, tmp_path / "model.keras")
    arrays = _inputs([(2, 5, 3), (2, 4)])
    report = rnnparity.drift(path, to=target, inputs=arrays, actual=False)
    assert report.calls == 2
    (expected,) = _target_outputs(target, _stateful, weights, arrays, calls=2)
    assert_parity(expected, report.after["score"], context=f"{source} -> {target} stateful")
    (old,) = _target_outputs(source, _stateful, weights, arrays, calls=2)
    assert_parity(old, report.before["score"], context=f"{source} stateful before")
    (carry,) = report.layers
    assert carry.status == "drifts" and carry.causes == ["stateful-initial-state"]
    assert report.outputs[0].changed


# --------------------------------------------------------------------------- the target Keras cannot load the file
def test_keras3_file_that_tf_keras_cannot_load_gets_the_prediction_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = _saved("keras3", lambda k: _gru(k, "hard_sigmoid"), tmp_path / "new.keras")
    code, out, err = _run(capsys, str(path), "--to", "tf-keras", "--batch-size", "4", "--timesteps", "5")
    assert code == 1, out + err
    assert "target Keras itself: not run: tf_keras" in out and "the prediction stands alone" in out
    assert "DRIFT under tf_keras (Keras 2): gru (hard-sigmoid-formula)" in out


# --------------------------------------------------------------------------- weights-only files
@pytest.mark.parametrize("recurrent_activation", ["hard_sigmoid", "sigmoid"])
def test_weights_only_file_gets_per_layer_drift(
    recurrent_activation: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _gru(keras_handle("tf-keras").module, recurrent_activation)
    _randomize(model, 3)
    path = tmp_path / "old_weights.h5"  # the legacy layout, which records the writer: tf_keras 2
    model.save_weights(str(path))
    code, out, err = _run(capsys, str(path), "--to", "keras3", "--set", f"recurrent_activation={recurrent_activation}")
    assert "emulate Keras 2" in out
    assert "weights only" in out and "end-to-end part needs a full model file" in out
    if recurrent_activation == "hard_sigmoid":
        assert code == 1 and "DRIFT under Keras 3: gru (hard-sigmoid-formula)" in out, out + err
    else:
        assert code == 0 and "NO DRIFT under Keras 3" in out, out + err


# --------------------------------------------------------------------------- files refused before anything runs
def _lambda_model(path: Path) -> Path:
    k = keras_handle("tf-keras").module
    inputs = k.Input((None, 3))
    x = k.layers.Lambda(lambda t: t * 2.0)(inputs)
    model = k.Model(inputs, k.layers.GRU(2)(x))
    _randomize(model, 1)
    model.save(str(path))
    return path


def _unknown_class_model(path: Path) -> Path:
    source, _ = _saved("keras3", lambda k: _gru(k, "sigmoid"), path.with_name("source.keras"))
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    dense = config["config"]["layers"][-1]
    dense.update(class_name="Frobnicator", module="frobnicate.layers")
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b"\x89HDF\r\n\x1a\nnot really") and p, "corrupted HDF5 file"),
        (_lambda_model, "Lambda layer stores Python code"),
        (_unknown_class_model, "custom class from module 'frobnicate.layers'"),
    ],
    ids=["corrupt", "lambda", "unknown-class"],
)
def test_unloadable_or_unsafe_files_exit_2_before_anything_runs(
    make: Callable[[Path], Path],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rnnparity.suite import keras_adapter

    path = make(tmp_path / ("model.keras" if make is _unknown_class_model else "model.h5"))

    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the file was loaded")

    monkeypatch.setattr(keras_adapter, "load_saved_model", never)
    code, out, err = _run(capsys, str(path), "--to", "keras3")
    assert code == 2 and out == "", out + err
    assert len(err.strip().splitlines()) == 1 and err.startswith("rnnparity drift: ") and message in err, err


def test_bad_options_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, str(tmp_path / "absent.h5"), "--to", "keras3")
    assert code == 2 and "no such file" in err
    code, _, err = _run(capsys, str(tmp_path / "absent.h5"), "--to", "keras3", "--timesteps", "0")
    assert code == 2 and "--timesteps must be a positive integer; got 0" in err
    with pytest.raises(SystemExit) as exited:
        cli.main(["drift", str(tmp_path / "absent.h5"), "--to", "keras4"])
    assert exited.value.code == 2
    with pytest.raises(ValueError, match="to must be one of"):
        rnnparity.drift(str(tmp_path / "absent.h5"), to="keras4")


# --------------------------------------------------------------------------- verify and the plugin
def test_verify_names_the_layers_that_would_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    drifting, _ = _saved("tf-keras", lambda k: _gru(k, "hard_sigmoid"), tmp_path / "hard.h5")
    steady, _ = _saved("tf-keras", lambda k: _gru(k, "sigmoid"), tmp_path / "steady.h5")
    assert cli.main(["verify", str(drifting)]) == 0
    out = capsys.readouterr().out
    hint = "under Keras 3 these layers would compute other numbers: gru (hard-sigmoid-formula)"
    assert f"{hint} (see: rnnparity drift {drifting} --to keras3)" in out
    assert cli.main(["verify", str(steady)]) == 0
    assert "would compute other numbers" not in capsys.readouterr().out


def test_plugin_assert_no_drift(tmp_path: Path, assert_no_drift: Callable[..., Any]) -> None:
    """The fixture a user's suite gets from the plugin: passes for a sigmoid model, fails
    naming the layer, its change and the cause for a hard_sigmoid one."""
    steady, _ = _saved("tf-keras", lambda k: _gru(k, "sigmoid"), tmp_path / "steady.h5")
    assert not assert_no_drift(str(steady), to="keras3", actual=False).drifts
    drifting, _ = _saved("tf-keras", lambda k: _gru(k, "hard_sigmoid"), tmp_path / "hard.h5")
    with pytest.raises(pytest.fail.Exception, match=r"layer gru \(GRU\): max abs change .*hard-sigmoid-formula"):
        assert_no_drift(str(drifting), to="keras3", actual=False)


# --------------------------------------------------------------------------- the twins under the other Keras (no Keras)
def test_retarget_equals_a_twin_built_for_the_target() -> None:
    rng = np.random.default_rng(23)
    old = rnnparity.GRU(5, recurrent_activation="hard_sigmoid", reset_after=False, return_state=True, keras_version=2)
    weights = [rng.uniform(-1, 1, shape) for shape in ((3, 15), (5, 15), (15,))]
    old.set_weights(weights)
    new = rnnparity.GRU(5, recurrent_activation="hard_sigmoid", reset_after=False, return_state=True, keras_version=3)
    new.set_weights(weights)
    x = rng.normal(0, 1.5, (4, 6, 3)).astype("float32")
    moved = drift_module.retarget(old, 3)
    assert moved.keras_version == 3 and isinstance(moved(x), tuple)
    assert_parity(new(x), moved(x), context="retargeted to Keras 3")
    assert_parity(old(x), drift_module.retarget(moved, 2)(x), context="and back to Keras 2")
    with pytest.raises(AssertionError):
        assert_parity(old(x), moved(x), check_container=False)


def test_target_keras_disagreeing_with_the_prediction_is_a_finding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the target Keras's own outputs differ from the prediction, both are reported and the exit is 1,
    even for a model that does not drift (here the target's run is replaced by one that is off by 1e-3)."""
    path, _ = _saved("tf-keras", lambda k: _gru(k, "sigmoid"), tmp_path / "old.h5")

    def off_by_a_little(path: str, to: str, arrays: list[np.ndarray], calls: int) -> tuple[dict[str, np.ndarray], str]:
        model = keras_handle("tf-keras").module.models.load_model(path, compile=False)
        return {"probs": np.asarray(model(arrays[0])) + 1e-3}, "a stand-in for the target Keras"

    monkeypatch.setattr(drift_module, "run_in_target", off_by_a_little)
    code, out, err = _run(capsys, str(path), "--to", "keras3")
    assert code == 1, out + err
    assert "DISAGREES (max abs 0.001)" in out and "PREDICTION DISAGREES with Keras 3 for output(s) probs" in out
    assert "probs: [target Keras vs predicted probs] MISMATCH" in out  # both values, as the comparison shows them


def test_a_layer_the_target_keras_cannot_have_breaks() -> None:
    rng = np.random.default_rng(29)
    old = rnnparity.SimpleRNN(3, time_major=True, keras_version=2)
    old.set_weights([rng.uniform(-1, 1, shape) for shape in ((2, 3), (3, 3), (3,))])
    with pytest.raises(ValueError, match="time_major=True exists in Keras 2 only"):
        drift_module.retarget(old, 3)
