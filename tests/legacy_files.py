"""Hand-built HDF5 files in the layouts old Keras versions wrote, with h5py alone.

Keras 2.0-2.2 (standalone ``keras``) stored attributes as bytes (``np.bytes_`` arrays), named
weights ``<layer>/kernel:0`` (TensorFlow variable names) and wrote model configs that today's
Keras no longer writes: ``"class_name": "Model"`` for functional models, ``Sequential`` whose
config is the bare list of layers (Keras 2.0/2.1), ``CuDNNLSTM``/``CuDNNGRU`` layers. The
configs here follow the keys those versions' ``get_config`` returned.

Weights are always seeded random normals (never constants: a constant kernel hides a
rearranged gate).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

GLOROT = {"class_name": "VarianceScaling", "config": {"scale": 1.0, "mode": "fan_avg", "distribution": "uniform", "seed": None}}
ORTHOGONAL = {"class_name": "Orthogonal", "config": {"gain": 1.0, "seed": None}}
ZEROS = {"class_name": "Zeros", "config": {}}
GATES = {"LSTM": 4, "CuDNNLSTM": 4, "GRU": 3, "CuDNNGRU": 3, "SimpleRNN": 1}


def _regularizers(*names: str) -> dict[str, Any]:
    return {f"{n}_{kind}": None for n in names for kind in ("regularizer", "constraint")} | {"activity_regularizer": None}


def recurrent_config(class_name: str, name: str, units: int, **options: Any) -> dict[str, Any]:
    """A layer config as Keras 2.2 wrote it for ``class_name`` (LSTM, GRU, SimpleRNN, CuDNNLSTM, CuDNNGRU)."""
    config: dict[str, Any] = {
        "name": name,
        "trainable": True,
        "return_sequences": False,
        "return_state": False,
        "go_backwards": False,
        "stateful": False,
    }
    if not class_name.startswith("CuDNN"):
        config["unroll"] = False
    config["units"] = units
    if not class_name.startswith("CuDNN"):
        config["activation"] = "tanh"
        if class_name != "SimpleRNN":
            config["recurrent_activation"] = "hard_sigmoid"
        config["use_bias"] = True
    config.update(kernel_initializer=GLOROT, recurrent_initializer=ORTHOGONAL, bias_initializer=ZEROS)
    if class_name in ("LSTM", "CuDNNLSTM"):
        config["unit_forget_bias"] = True
    config.update(_regularizers("kernel", "recurrent", "bias"))
    if not class_name.startswith("CuDNN"):
        config.update(dropout=0.0, recurrent_dropout=0.0)
        if class_name != "SimpleRNN":
            config["implementation"] = 1
    if class_name == "GRU":
        config["reset_after"] = False
    config.update(options)
    return config


def dense_config(name: str, units: int) -> dict[str, Any]:
    return {
        "name": name,
        "trainable": True,
        "units": units,
        "activation": "linear",
        "use_bias": True,
        "kernel_initializer": GLOROT,
        "bias_initializer": ZEROS,
        **_regularizers("kernel", "bias"),
    }


def recurrent_weights(class_name: str, units: int, input_dim: int, rng: np.random.Generator, **options: Any) -> list[np.ndarray]:
    """Random arrays in the shapes ``class_name`` stores: kernel, recurrent_kernel, bias."""
    width = GATES[class_name] * units
    bias_shape: tuple[int, ...] = (width,)
    if class_name.startswith("CuDNN"):
        bias_shape = (2 * width,)
    elif class_name == "GRU" and options.get("reset_after"):
        bias_shape = (2, width)
    shapes = [(input_dim, width), (units, width), bias_shape]
    if options.get("use_bias") is False:
        shapes = shapes[:2]
    return [rng.normal(0.0, 0.6, size=shape).astype("float32") for shape in shapes]


def _names(values: list[str], as_bytes: bool) -> np.ndarray:
    if as_bytes:
        return np.array([v.encode("utf8") for v in values])  # fixed-length bytes, as Keras 2.0-2.2 wrote them
    return np.array(values, dtype=h5py.string_dtype())


def write_h5(
    path: Path,
    layers: list[tuple[str, list[tuple[str, np.ndarray]]]],
    *,
    keras_version: str | None = "2.2.4",
    backend: str = "tensorflow",
    model_config: dict[str, Any] | None = None,
    as_bytes: bool = True,
    chunk_layer_names: bool = False,
) -> Path:
    """A legacy-layout file: ``layers`` is ``[(layer name, [(weight name, array), ...]), ...]``
    in model order; with ``model_config`` a full-model file, else weights only."""
    with h5py.File(path, "w") as h5:
        if model_config is not None:
            h5.attrs["model_config"] = json.dumps(model_config).encode("utf8") if as_bytes else json.dumps(model_config)
            root = h5.create_group("model_weights")
        else:
            root = h5
        for node in {h5, root}:
            if keras_version is not None:
                node.attrs["keras_version"] = keras_version.encode("utf8") if as_bytes else keras_version
            node.attrs["backend"] = backend.encode("utf8") if as_bytes else backend
        names = [name for name, _ in layers]
        if chunk_layer_names:  # how Keras splits an attribute too long for HDF5's 64 kB header
            half = (len(names) + 1) // 2
            root.attrs["layer_names0"] = _names(names[:half], as_bytes)
            root.attrs["layer_names1"] = _names(names[half:], as_bytes)
        else:
            root.attrs["layer_names"] = _names(names, as_bytes)
        for name, weights in layers:
            group = root.create_group(name)
            group.attrs["weight_names"] = _names([w for w, _ in weights], as_bytes)
            for weight_name, array in weights:
                group.create_dataset(weight_name, data=array)
    return path


def named(layer: str, arrays: list[np.ndarray], suffix: str = ":0", prefix: str | None = None) -> list[tuple[str, np.ndarray]]:
    """Keras 2 weight names for one recurrent cell: ``<prefix>/kernel:0``, ``recurrent_kernel``, ``bias``."""
    roles = ("kernel", "recurrent_kernel", "bias")
    return [(f"{prefix or layer}/{role}{suffix}", array) for role, array in zip(roles, arrays)]


def sequential_config(layers: list[dict[str, Any]], as_list: bool = False) -> dict[str, Any]:
    """``Sequential``: Keras 2.0/2.1 stored the list of layers itself, 2.2 a dict with ``layers``."""
    return {"class_name": "Sequential", "config": layers if as_list else {"name": "sequential_1", "layers": layers}}


def layer(class_name: str, config: dict[str, Any], inbound: list[list[Any]] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"class_name": class_name, "config": config}
    if inbound is not None:
        entry = {"name": config["name"], **entry, "inbound_nodes": inbound}
    return entry


def input_layer(name: str, shape: list[Any]) -> dict[str, Any]:
    config = {"batch_input_shape": [None, *shape], "dtype": "float32", "sparse": False, "name": name}
    return layer("InputLayer", config, [])


def functional_config(layers: list[dict[str, Any]], inputs: list[str], outputs: list[str]) -> dict[str, Any]:
    """A functional model as Keras 2.2 stored it (``"class_name": "Model"``)."""
    return {
        "class_name": "Model",
        "config": {
            "name": "model_1",
            "layers": layers,
            "input_layers": [[name, 0, 0] for name in inputs],
            "output_layers": [[name, 0, 0] for name in outputs],
        },
    }
