"""ConvLSTM1D/2D/3D in Keras HDF5 files, read with h5py alone (rnnparity.files.legacy).

Files are written in the test by tf_keras (``model.save("full.h5")``, ``save_weights("weights.h5")``,
``save_weights("model.weights.h5")``) and by Keras 3 (``model.save("full.h5")``, its legacy
format, and ``save_weights("model.weights.h5")``; Keras 3 writes no legacy weights-only
``.h5``), from models with seeded random weights. The twins built from each file, chained,
must reproduce the Keras model's prediction; each twin alone must match its Keras layer with
a mask. ``verify`` and ``explain`` read the same files. Hand-built malformed files must be
refused with a ValueError that names what is wrong.

Reproduce one case: ``python -m pytest tests/test_conv_lstm_files.py -n 0 -k "<id>"``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import FLAVOR_MAJOR, flavor_params, keras_handle

pytest.importorskip("h5py")

import legacy_files as lf

from rnnparity import ConvLSTM1D, ConvLSTM2D, ConvLSTM3D, cli
from rnnparity.compare import compare
from rnnparity.conv_lstm import ConvLSTM
from rnnparity.files import legacy
from rnnparity.suite.keras_adapter import KerasHandle, call_layer

RANKS = (1, 2, 3)
DTYPES = ("float32", "float64")
SPATIAL = {1: (9,), 2: (7, 6), 3: (6, 5, 5)}
KERNELS = {1: ((3,), (2,)), 2: ((3, 3), (2, 3)), 3: ((3, 2, 3), (2, 2, 2))}
CHANNELS, FILTERS_A, FILTERS_B, TIMESTEPS = 2, 3, 2, 4
# The files each Keras writes: (file name, how it is saved).
FILES = {
    "tf-keras": ("full.h5", "weights.h5", "model.weights.h5"),
    "keras3": ("full.h5", "model.weights.h5"),
}


def _strides_b(rank: int) -> list[int]:
    return [1] * (rank - 1) + [2]


def _other_recurrent_activation(keras_version: int) -> str:
    """conv_b's recurrent_activation: not the default of the Keras that builds it."""
    return "sigmoid" if keras_version == 2 else "hard_sigmoid"


def _model(handle: KerasHandle, rank: int, dtype: str, data_format: str) -> Any:
    """Two ConvLSTM layers with seeded random weights: ``conv_a`` pads ``same`` and returns
    sequences (default recurrent_activation, which differs between the Kerases); ``conv_b``
    is strided, reads backwards and has non-default activations."""
    k = handle.module
    layer_class = getattr(k.layers, f"ConvLSTM{rank}D")
    shape = (TIMESTEPS, *SPATIAL[rank], CHANNELS) if data_format == "channels_last" else (TIMESTEPS, CHANNELS, *SPATIAL[rank])
    inputs = k.Input(shape, dtype=dtype)
    kernel_a, kernel_b = KERNELS[rank]
    x = layer_class(
        FILTERS_A, kernel_a, padding="same", data_format=data_format, return_sequences=True, name="conv_a", dtype=dtype
    )(inputs)
    x = layer_class(
        FILTERS_B,
        kernel_b,
        strides=_strides_b(rank),
        data_format=data_format,
        go_backwards=True,
        activation="softsign",
        recurrent_activation=_other_recurrent_activation(handle.keras_version),
        name="conv_b",
        dtype=dtype,
    )(x)
    model = k.Model(inputs, x)
    rng = np.random.default_rng([rank, handle.keras_version, DTYPES.index(dtype)])
    weights = []
    for w in model.get_weights():
        # Kernels scaled by 1/sqrt(fan_in): the gates work in their non-linear ranges; biases random too.
        scale = 0.5 if w.ndim == 1 else 1.2 / math.sqrt(math.prod(w.shape[:-1]))
        weights.append((rng.standard_normal(w.shape) * scale).astype(w.dtype))
    model.set_weights(weights)
    return model


def _not_stored(rank: int, keras_version: int, data_format: str) -> dict[str, dict[str, Any]]:
    """What a weights-only file does not store, per layer (the weights give filters, kernel_size, use_bias)."""
    layout = {"data_format": data_format} if data_format != "channels_last" else {}
    return {
        "conv_a": {"padding": "same", "return_sequences": True, **layout},
        "conv_b": {
            "strides": _strides_b(rank),
            "go_backwards": True,
            "activation": "softsign",
            "recurrent_activation": _other_recurrent_activation(keras_version),
            **layout,
        },
    }


def _inputs(shape: tuple[int, ...], dtype: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random inputs of ``shape`` (batch 3) and a mask with a masked first step in row 1."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    mask = rng.random((3, TIMESTEPS)) < 0.7
    mask[0] = True
    mask[1, 0] = False
    return x, mask


def _write(model: Any, tmp_path: Path, file_names: tuple[str, ...]) -> None:
    for file_name in file_names:
        path = str(tmp_path / file_name)
        if file_name == "full.h5":
            model.save(path)
        else:
            model.save_weights(path)


def _layer_key(file: legacy.WeightsFile, name: str, index: int) -> str:
    """The name a file gives layer ``name``: its own, or (a *.weights.h5 of tf_keras, which
    records no names) the key of the index-th ConvLSTM group, in the order the layers were made."""
    names = [layer.name for layer in file.layers]
    if name in names:
        return name
    keys = sorted(names, key=lambda n: (len(n), n))  # conv_lstm2d, conv_lstm2d_1
    return keys[index]


def _file_params() -> list:
    params = []
    for flavor in FLAVOR_MAJOR:
        values = [(flavor, rank, dtype, "channels_last") for rank in RANKS for dtype in DTYPES]
        values.append((flavor, 2, "float32", "channels_first"))
        params += flavor_params(flavor, values, [f"{flavor}-conv{r}d-{d}-{f}" for _, r, d, f in values])
    return params


@pytest.mark.parametrize(("flavor", "rank", "dtype", "data_format"), _file_params())
def test_twins_from_files_reproduce_the_model(flavor: str, rank: int, dtype: str, data_format: str, tmp_path: Path) -> None:
    """Every file a Keras writes: the twins read from it, chained, give the model's prediction;
    each alone matches its Keras layer on masked inputs; the arrays are the model's, bit for bit."""
    handle = keras_handle(flavor)
    model = _model(handle, rank, dtype, data_format)
    _write(model, tmp_path, FILES[flavor])
    spatial = SPATIAL[rank]
    shape = (3, TIMESTEPS, *spatial, CHANNELS) if data_format == "channels_last" else (3, TIMESTEPS, CHANNELS, *spatial)
    x, mask = _inputs(shape, dtype, seed=rank)
    expected = call_layer(handle, model, x)
    hidden = call_layer(handle, model.get_layer("conv_a"), x)
    masked = {
        name: call_layer(handle, model.get_layer(name), inputs, mask=mask) for name, inputs in (("conv_a", x), ("conv_b", hidden))
    }
    for file_name in FILES[flavor]:
        path = tmp_path / file_name
        file = legacy.read_weights_file(path)
        assert not file.no_twin, file.no_twin
        twins = []
        for index, name in enumerate(("conv_a", "conv_b")):
            key = _layer_key(file, name, index)
            stored = file.layer(key)
            assert stored.class_name == f"ConvLSTM{rank}D", (file_name, stored.class_source)
            assert stored.cells[0].kernel_size == KERNELS[rank][index]
            config: dict[str, Any] = {}
            if file_name != "full.h5":
                config = dict(_not_stored(rank, handle.keras_version, data_format)[name])
            if file_name == "model.weights.h5" and handle.keras_version == 2:
                config["keras_version"] = 2  # the layout records no version: say which Keras wrote it
            twin = legacy.twin_from_weights(path, key, **config)
            assert isinstance(twin, ConvLSTM) and twin.keras_version == handle.keras_version
            for ours, keras in zip(twin.get_weights(), model.get_layer(name).get_weights()):
                assert ours.dtype == keras.dtype and np.array_equal(ours, keras), (file_name, name)
            twins.append(twin)
            inputs = x if name == "conv_a" else hidden
            result = compare(masked[name], twin(inputs, mask=mask), dtype=dtype, context=f"{file_name} {name} masked")
            assert result.ok, result.message
        chained = twins[1](twins[0](x))
        result = compare(expected, chained, dtype=dtype, context=f"{file_name}: the model's prediction")
        assert result.ok, result.message


@pytest.mark.parametrize("flavor", [p for f in FLAVOR_MAJOR for p in flavor_params(f, [(f,)])])
def test_verify_and_explain_read_conv_lstm_files(flavor: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    handle = keras_handle(flavor)
    model = _model(handle, 2, "float32", "channels_last")
    _write(model, tmp_path, FILES[flavor])

    code = cli.main(["verify", str(tmp_path / "full.h5"), "--json", str(tmp_path / "full.json")])
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads((tmp_path / "full.json").read_text())
    assert [(r["name"], r["status"], r["file_weights"]) for r in report["layers"]] == [
        ("conv_a", "ok", "identical"),
        ("conv_b", "ok", "identical"),
    ]

    weights_file = "weights.h5" if handle.keras_version == 2 else "model.weights.h5"
    settings = []
    for name, values in _not_stored(2, handle.keras_version, "channels_last").items():
        for key, value in values.items():
            if key != "return_sequences":  # verify returns every output anyway
                settings += ["--set", f"{name}:{key}={json.dumps(value)}"]
    code = cli.main(["verify", str(tmp_path / weights_file), *settings, "--json", str(tmp_path / "weights.json")])
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads((tmp_path / "weights.json").read_text())
    assert report["weights_only"] is True
    assert [(r["name"], r["status"], r["file_weights"], r["calls"]) for r in report["layers"]] == [
        ("conv_a", "ok", "identical", 2),
        ("conv_b", "ok", "identical", 2),
    ]
    assert report["inputs"][0]["shape"] == [2, 8, 5, 5, 2]  # batch, timesteps, the default spatial size, channels

    # Without the settings a weights-only file does not store, the twin assumes Keras's defaults and says so.
    assert cli.main(["explain", str(tmp_path / weights_file)]) == 0
    out = capsys.readouterr().out
    assert "strides=1, padding='valid', data_format='channels_last', dilation_rate=1: not stored; the Keras defaults" in out
    default = "hard_sigmoid" if handle.keras_version == 2 else "sigmoid"
    assert f"recurrent_activation={default!r}: not stored; the ConvLSTM default of" in out

    assert cli.main(["explain", str(tmp_path / "full.h5")]) == 0
    out = capsys.readouterr().out
    assert "conv_a: ConvLSTM2D (the class saved in the model config); filters 3, input channels 2" in out
    assert "twin: ConvLSTM2D(3, (3, 3), strides=" in out and "padding='same'" in out
    assert "conv_lstm2d filters=3 kernel_size=3x3 input_channels=2" in out
    assert "kernel (3, 3, 2, 12), recurrent_kernel (3, 3, 3, 12), bias (12,)" in out
    assert "c     [:, :, :, 6:9]" in out and "PyTorch: torch.nn has no ConvLSTM module" in out
    assert "no twin" not in out
    assert cli.main(["explain", str(tmp_path / "full.h5"), "--format", "json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    first = listing["layers"][0]
    assert (first["filters"], first["input_channels"], first["kernel_size"]) == (3, 2, [3, 3])
    assert first["parts"][0]["explain"]["kind"] == "conv_lstm2d" and listing["no_twin"] == {}


@pytest.mark.parametrize("flavor", [p for f in FLAVOR_MAJOR for p in flavor_params(f, [(f,)])])
def test_bidirectional_conv_lstm_in_files(flavor: str, tmp_path: Path) -> None:
    """Bidirectional(ConvLSTM2D) in every file its Keras writes (full model, weights only): its
    twin from the file gives the layer's result."""
    handle = keras_handle(flavor)
    k = handle.module
    inputs = k.Input((TIMESTEPS, 6, 5, CHANNELS))
    wrapped = k.layers.Bidirectional(
        k.layers.ConvLSTM2D(2, (3, 2), padding="same", return_sequences=True), merge_mode="sum", name="both"
    )
    model = k.Model(inputs, wrapped(inputs))
    rng = np.random.default_rng(21)
    model.set_weights([(rng.standard_normal(w.shape) * 0.4).astype(w.dtype) for w in model.get_weights()])
    _write(model, tmp_path, FILES[flavor])
    x, mask = _inputs((3, TIMESTEPS, 6, 5, CHANNELS), "float32", seed=5)
    expected = call_layer(handle, wrapped, x, mask=mask)
    for file_name in FILES[flavor]:
        config: dict[str, Any] = (
            {} if file_name == "full.h5" else {"padding": "same", "return_sequences": True, "merge_mode": "sum"}
        )
        if file_name == "model.weights.h5" and handle.keras_version == 2:
            config["keras_version"] = 2  # the layout records no version
        file = legacy.read_weights_file(tmp_path / file_name)
        key = "both" if "both" in [layer.name for layer in file.layers] else "bidirectional"  # tf_keras *.weights.h5: keys
        stored = file.layer(key)
        assert stored.class_name == "Bidirectional" and stored.inner_class == "ConvLSTM2D", stored.class_source
        twin = legacy.twin_from_weights(tmp_path / file_name, key, **config)
        result = compare(expected, twin(x, mask=mask), dtype="float32", context=file_name)
        assert result.ok, result.message


# --------------------------------------------------------------------------- hand-built files (no Keras)
def _conv_weights(rng: np.random.Generator, kernel: tuple[int, ...], channels: int, filters: int, bias: bool = True) -> list:
    shapes = [(*kernel, channels, 4 * filters), (*kernel, filters, 4 * filters)] + ([(4 * filters,)] if bias else [])
    return [rng.standard_normal(shape).astype("float32") for shape in shapes]


def _conv_config(name: str, rank: int, filters: int, kernel: list[int], **options: Any) -> dict[str, Any]:
    config = {
        "name": name,
        "trainable": True,
        "filters": filters,
        "kernel_size": kernel,
        "strides": [1] * rank,
        "padding": "valid",
        "data_format": "channels_last",
        "dilation_rate": [1] * rank,
        "activation": "tanh",
        "recurrent_activation": "hard_sigmoid",
        "use_bias": True,
        "unit_forget_bias": True,
        "return_sequences": False,
        "return_state": False,
        "go_backwards": False,
        "stateful": False,
    }
    config.update(options)
    return config


@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("bias", [True, False])
def test_hand_built_files_give_the_twin_of_their_arrays(rank: int, bias: bool, tmp_path: Path) -> None:
    """A Keras 2.2-style full model and a weights-only file: the twin from the file equals a
    twin given the same arrays, on random inputs (the reader takes nothing else from Keras)."""
    rng = np.random.default_rng([rank, int(bias)])
    kernel = (3, 2, 2)[:rank]
    arrays = _conv_weights(rng, kernel, 2, 3, bias)
    name = f"conv_lst_m{rank}d_1"
    config = _conv_config(name, rank, 3, list(kernel), use_bias=bias, return_sequences=True)
    model_path = lf.write_h5(
        tmp_path / "model.h5",
        [(name, lf.named(name, arrays))],
        model_config=lf.sequential_config([lf.layer(f"ConvLSTM{rank}D", config)]),
    )
    weights_path = lf.write_h5(tmp_path / "weights.h5", [(name, lf.named(name, arrays))])
    x = rng.standard_normal((2, 3, *(5,) * rank, 2)).astype("float32")
    twin_class = {1: ConvLSTM1D, 2: ConvLSTM2D, 3: ConvLSTM3D}[rank]
    reference = twin_class(3, kernel, use_bias=bias, recurrent_activation="hard_sigmoid", return_sequences=True, keras_version=2)
    reference.set_weights(arrays)
    expected = reference(x)
    for path in (model_path, weights_path):
        file = legacy.read_weights_file(path)
        stored = file.layer(name)
        assert stored.class_name == f"ConvLSTM{rank}D" and stored.cells[0].kernel_size == kernel
        assert stored.cells[0].use_bias is bias
        extra = {} if path == model_path else {"return_sequences": True}
        twin = legacy.twin_from_weights(path, name, **extra)
        assert twin.keras_version == 2 and twin.recurrent_activation == "hard_sigmoid"  # Keras 2.2.4's ConvLSTM default
        result = compare(expected, twin(x), dtype="float32", context=str(path.name))
        assert result.ok, result.message
    assert "inferred from the shapes" in legacy.read_weights_file(weights_path).layer(name).class_source


MALFORMED = {
    # name: (class saved, kernel size in the config, arrays' shapes, fragments of the error)
    "gates": ("ConvLSTM2D", [3, 3], [(3, 3, 2, 12), (3, 3, 3, 8), (12,)], ["saved as ConvLSTM2D", "do not fit", "(3, 3, 3, 8)"]),
    "rank": ("ConvLSTM3D", [3, 3, 3], [(3, 3, 2, 12), (3, 3, 3, 12), (12,)], ["saved as ConvLSTM3D", "(3, 3, 2, 12)"]),
    "kernel_size": (
        "ConvLSTM2D",
        [3, 3],
        [(2, 2, 2, 12), (2, 2, 3, 12), (12,)],
        ["kernel_size=[3, 3] (from the stored config) contradicts the weights", "so kernel_size=(2, 2)"],
    ),
    "filters": (
        "ConvLSTM1D",
        [3],
        [(3, 2, 16), (3, 4, 16), (16,)],
        ["filters=3 (from the stored config) contradicts the weights", "so filters=4"],
    ),
    "spatial": ("ConvLSTM2D", [3, 3], [(3, 3, 2, 12), (3, 2, 3, 12), (12,)], ["saved as ConvLSTM2D", "(3, 2, 3, 12)"]),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_conv_lstm_files_are_refused_with_the_reason(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    class_name, kernel, shapes, fragments = MALFORMED[case]
    rank = len(kernel)
    rng = np.random.default_rng(len(case))
    arrays = [rng.standard_normal(shape).astype("float32") for shape in shapes]
    config = _conv_config("conv", rank, 3, kernel)
    path = lf.write_h5(
        tmp_path / "bad.h5",
        [("conv", lf.named("conv", arrays))],
        model_config=lf.sequential_config([lf.layer(class_name, config)]),
    )
    with pytest.raises(ValueError) as info:
        legacy.twin_from_weights(path, "conv")
    for fragment in fragments:
        assert fragment in str(info.value), f"{fragment!r} missing from {info.value}"
    code = cli.main(["explain", str(path)])
    captured = capsys.readouterr()
    if code == 0:  # arrays that fit no ConvLSTM: listed as a layer without a twin, with the reason
        assert f"conv: no twin: {fragments[0]}" in captured.out, captured.out
    else:  # a stored setting the arrays contradict: one line, exit 2
        assert code == 2 and captured.err.startswith("rnnparity explain:") and fragments[0] in captured.err
        assert len(captured.err.strip().splitlines()) == 1, captured.err


def test_weights_only_arrays_that_are_no_conv_lstm_are_not_read_as_one(tmp_path: Path) -> None:
    """A 4-D kernel whose recurrent kernel does not fit (other kernel size, or not 4 * filters
    wide) is not a recurrent layer: asking for its twin names its shapes."""
    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal((3, 3, 2, 12)).astype("float32"), rng.standard_normal((3, 3, 3, 10)).astype("float32")]
    path = lf.write_h5(tmp_path / "w.h5", [("odd", lf.named("odd", arrays))])
    file = legacy.read_weights_file(path)
    assert file.layers == [] and file.others == {"odd": [(3, 3, 2, 12), (3, 3, 3, 10)]}
    with pytest.raises(
        ValueError, match=r"layer_name 'odd' is not a recurrent layer \(its weights: \(3, 3, 2, 12\), \(3, 3, 3, 10\)\)"
    ):
        legacy.twin_from_weights(path, "odd")


def test_given_settings_that_contradict_conv_weights_are_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    path = lf.write_h5(tmp_path / "w.h5", [("conv", lf.named("conv", _conv_weights(rng, (3, 2), 2, 3)))])
    with pytest.raises(
        ValueError, match=r"kernel_size=3 \(from config\) contradicts the weights of 'conv': kernel has shape \(3, 2, 2, 12\)"
    ):
        legacy.twin_from_weights(path, "conv", kernel_size=3)
    with pytest.raises(ValueError, match=r"filters=4 \(from config\) contradicts the weights of 'conv'"):
        legacy.twin_from_weights(path, "conv", filters=4)
    with pytest.raises(TypeError, match=r"config has key\(s\) \['units'\] that a ConvLSTM2D twin does not take"):
        legacy.twin_from_weights(path, "conv", units=3)
    twin = legacy.twin_from_weights(path, "conv", kernel_size=[3, 2], padding="same", strides=(1, 2))
    assert twin.kernel_size == (3, 2) and twin.padding == "same" and twin.strides == (1, 2)


def test_drift_of_conv_lstm_weights_names_the_known_differences(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``rnnparity drift`` on a Keras 2.2.4 weights-only file (no Keras imported): a ConvLSTM2D
    with Keras 2's default hard_sigmoid drifts by the hard-sigmoid formula; a
    Bidirectional(ConvLSTM2D) with sigmoid drifts only where its sequences are masked, which
    the known difference keras2-conv-lstm-masked-output names."""
    rng = np.random.default_rng(8)
    forward, backward = (_conv_weights(rng, (3, 3), 2, 2) for _ in range(2))
    path = lf.write_h5(
        tmp_path / "w.h5",
        [
            ("conv", lf.named("conv", _conv_weights(rng, (3, 2), 2, 3))),
            (
                "bidirectional_1",
                lf.named("", forward, prefix="bidirectional_1/forward_conv")
                + lf.named("", backward, prefix="bidirectional_1/backward_conv"),
            ),
        ],
    )
    settings = ["--set", "bidirectional_1:recurrent_activation=sigmoid", "--set", "padding=same"]
    code = cli.main(["drift", str(path), "--to", "keras3", *settings])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "DRIFT under Keras 3: conv (hard-sigmoid-formula); bidirectional_1 (keras2-conv-lstm-masked-output)" in out, out
