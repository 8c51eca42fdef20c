"""Random-weight Keras models and their ports (tf2onnx, the TFLite converter) for test_ports.py.

Every weight is drawn from a seeded normal distribution (never constant); ``alter`` changes
one layer's weights in the copy that gets converted, so the port computes something else.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

BATCH, TIMESTEPS, FEATURES = 2, 6, 3


def randomize(model: Any, seed: int, scale: float = 0.6) -> None:
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            layer.set_weights([rng.normal(0.0, scale, w.shape).astype(w.dtype) for w in weights])


def build(kind: str, seed: int = 0) -> Any:
    """A small Keras 3 model of ``kind`` with seeded random weights."""
    import keras

    layers = keras.layers
    stateful = kind.startswith("stateful")
    shape = (BATCH, TIMESTEPS, FEATURES)
    inputs = keras.Input(batch_shape=shape, name="x") if stateful else keras.Input((None, FEATURES), name="x")
    x = inputs
    if kind == "lstm":
        x = layers.LSTM(5, name="lstm")(x)
    elif kind == "gru":
        x = layers.GRU(4, return_sequences=True, name="gru")(x)
    elif kind == "gru_reset_before":
        x = layers.GRU(4, reset_after=False, name="gru")(x)
    elif kind == "simple_rnn":
        x = layers.SimpleRNN(4, return_sequences=True, name="simple_rnn")(x)
    elif kind == "bidirectional":
        x = layers.Bidirectional(layers.LSTM(3, return_sequences=True), name="bidirectional")(x)
    elif kind == "stack":
        x = layers.LSTM(4, return_sequences=True, name="lstm_1")(x)
        x = layers.GRU(3, return_sequences=True, name="gru_2")(x)
        x = layers.SimpleRNN(2, name="simple_rnn_3")(x)
    elif kind == "masked_gru_lstm":
        x = layers.Masking(0.0, name="masking")(x)
        x = layers.GRU(4, return_sequences=True, name="gru")(x)
        x = layers.LSTM(5, name="lstm")(x)
    elif kind == "stateful_lstm":
        x = layers.LSTM(4, stateful=True, name="lstm")(x)
    elif kind == "stateful_gru":
        x = layers.GRU(4, stateful=True, return_sequences=True, name="gru")(x)
    elif kind == "stateful_simple_rnn":
        x = layers.SimpleRNN(4, stateful=True, name="simple_rnn")(x)
    else:
        raise ValueError(f"kind: unknown model {kind!r}")
    outputs = layers.Dense(2, name="head")(x)
    model = keras.Model(inputs, outputs, name=kind)
    randomize(model, seed)
    return model


def alter(model: Any, layer_name: str, seed: int = 99) -> Any:
    """A copy of ``model`` whose ``layer_name`` has other random weights."""
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    layer = copy.get_layer(layer_name)
    rng = np.random.default_rng(seed)
    layer.set_weights([w + rng.normal(0.0, 0.3, w.shape).astype(w.dtype) for w in layer.get_weights()])
    return copy


def fixed_shape(model: Any) -> Any:
    """The same layers on an input of fixed batch and time size (TFLite needs a static batch)."""
    import keras

    inputs = keras.Input(batch_shape=(BATCH, TIMESTEPS, FEATURES), name="x")
    return keras.Model(inputs, model(inputs))


def to_onnx(model: Any, path: Path) -> Path:
    import tensorflow as tf
    import tf2onnx

    spec = [
        tf.TensorSpec(
            (None, None, FEATURES) if model.inputs[0].shape[0] is None else (BATCH, TIMESTEPS, FEATURES), tf.float32, name="x"
        )
    ]
    function = tf.function(lambda x: model(x, training=False))
    tf2onnx.convert.from_function(function, input_signature=spec, opset=17, output_path=str(path))
    return path


def to_tflite(model: Any, path: Path) -> Path:
    import tensorflow as tf

    source = model if model.inputs[0].shape[0] is not None else fixed_shape(model)
    converter = tf.lite.TFLiteConverter.from_keras_model(source)
    path.write_bytes(converter.convert())
    return path


CONVERTERS: dict[str, Callable[[Any, Path], Path]] = {"onnx": to_onnx, "tflite": to_tflite}


def quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def measure(kinds: list[str], runtimes: list[str], folder: Path) -> None:
    """Print one line per model kind and runtime: the verdict and each call's largest error.
    ``python tests/port_models.py KIND,... RUNTIME,... [FOLDER]`` (docs/ports.md's table)."""
    from rnnparity.files.ports import PortError, verify_against

    folder.mkdir(parents=True, exist_ok=True)
    for kind in kinds:
        model = build(kind)
        path = folder / f"{kind}.keras"
        model.save(path)
        for runtime in runtimes:
            try:
                port = str(CONVERTERS[runtime](model, folder / f"{kind}.{runtime}")) if runtime in CONVERTERS else runtime
                report = verify_against(str(path), port, calls=3 if kind.startswith("stateful") else 2)
            except (PortError, ValueError) as exc:
                print(f"{kind:20s} {runtime:8s} error: {exc}")
                continue
            errors = " ".join(f"{row.max_abs:.2g}" for row in report.outputs)
            verdict = "ok" if report.ok else "DIFFERS"
            note = "; state not carried" if report.state_note.startswith("the state was not carried") else ""
            print(f"{kind:20s} {runtime:8s} {verdict:8s} per call: {errors:24s} kernels: {report.kernels}{note}", flush=True)


if __name__ == "__main__":
    import sys
    import tempfile

    quiet_tensorflow()
    target = Path(sys.argv[3]) if len(sys.argv) > 3 else Path(tempfile.mkdtemp(prefix="rnnparity-ports-"))
    measure(sys.argv[1].split(","), sys.argv[2].split(","), target)
