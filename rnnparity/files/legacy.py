"""Old Keras files without Keras: the recurrent weights in an HDF5 file, who wrote them,
and the twin they describe.

Three HDF5 layouts hold Keras weights, and :func:`read_weights_file` reads all three with
``h5py`` alone:

* **full model** (``model.save("m.h5")``: Keras 2.0 to 2.15, and Keras 3's legacy format):
  root attributes ``model_config`` (JSON), ``keras_version`` and ``backend``; the weights in
  the ``model_weights`` group;
* **weights only** (``model.save_weights("w.h5")``, Keras 2): the same weights at the root.
  In both, the ``layer_names`` attribute lists the layers in order and each layer's group
  lists its ``weight_names`` in the layer's own weight order (``lstm_1/kernel:0`` in Keras
  2.0-2.2, ``lstm/lstm_cell/kernel:0`` in ``tf.keras``, no ``:0`` in Keras 3). Attributes
  are bytes in old files, and split into ``layer_names0``, ``layer_names1``, ... when long;
* **``*.weights.h5``** (``save_weights`` of ``tf_keras`` and Keras 3): ``layers/<key>/cell/
  vars/0``, ``1``, ``2``, where ``<key>`` is the snake-cased class (``lstm``, ``lstm_1``).
  It records no Keras version and no class; Keras 3 records each layer's name as the
  ``name`` attribute of its ``vars`` group.

A recurrent cell is recognised by its arrays, in Keras's weight order: ``kernel
(input_dim, n * units)``, ``recurrent_kernel (units, n * units)`` and an optional bias, with
``n`` = 4 (LSTM), 3 (GRU) or 1 (SimpleRNN). The bias tells the rest:

======================  ===================================================
bias shape              layer
======================  ===================================================
``(4u,)``               ``LSTM``
``(8u,)``               ``CuDNNLSTM`` (input and recurrent bias per gate)
``(3u,)``               ``GRU(reset_after=False)``
``(2, 3u)``             ``GRU(reset_after=True)``
``(6u,)``               ``CuDNNGRU``
``(u,)``                ``SimpleRNN``
======================  ===================================================

:func:`plan_twin` decides every setting of the twin and says why (:attr:`TwinPlan.
assumptions`): the stored config when the file has one, then the arguments you give, then
the defaults of the Keras version that wrote the file (:func:`writer_defaults`; e.g. Keras
< 2.3 used ``recurrent_activation="hard_sigmoid"``). What the weights fix (units, bias,
GRU ``reset_after``, the cuDNN layers' activations) cannot be overridden. CuDNN weights are
converted with :func:`rnnparity.layout.from_cudnn`, as Keras converts them on loading.
"""

from __future__ import annotations

import inspect
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rnnparity.layout import CUDNN_CLASSES, CUDNN_EQUIVALENT, GATE_ORDER, KERAS_CLASS_NAME, from_cudnn

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
LAYOUTS = {
    "model": "full model (.h5)",
    "weights": "weights only (.h5)",
    "weights.h5": "weights only (*.weights.h5 layout)",
}
PLAIN_CLASSES = {"LSTM": "lstm", "GRU": "gru", "SimpleRNN": "simple_rnn"}
CELL_CLASSES = {"LSTMCell": "lstm", "GRUCell": "gru", "SimpleRNNCell": "simple_rnn"}
MODEL_CLASSES = ("Sequential", "Functional", "Model")
# Recurrent classes a file may hold that have no twin.
NO_TWIN = {
    "ConvLSTM1D": "convolutional recurrent layers have no twin",
    "ConvLSTM2D": "convolutional recurrent layers have no twin",
    "ConvLSTM3D": "convolutional recurrent layers have no twin",
}
# Snake-cased class names, as the *.weights.h5 layout uses them for keys.
_KEY_CLASSES = {
    "lstm": "LSTM",
    "gru": "GRU",
    "simple_rnn": "SimpleRNN",
    "cu_dnnlstm": "CuDNNLSTM",
    "cu_dnngru": "CuDNNGRU",
    "bidirectional": "Bidirectional",
    "rnn": "RNN",
}
# Settings of Keras's RNN base layer (the rest of a layer's config belongs to its cell).
_RNN_KEYS = ("return_sequences", "return_state", "go_backwards", "stateful", "unroll", "zero_output_for_mask", "time_major")
_LAYER_ONLY_KEYS = ("name", "trainable", "input_shape", "batch_input_shape", "batch_size")


class WeightsFileError(ValueError):
    """The file cannot be read as Keras weights (the CLI's exit 2)."""


# --------------------------------------------------------------------------- who wrote it
@dataclass(frozen=True)
class WriterDefaults:
    """What the Keras that wrote a file used when a setting was not given."""

    keras_major: int  # which Keras the twin emulates: 2 or 3
    recurrent_activation: str
    reset_after: bool
    source: str  # who wrote the file, in words


_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?(.*)$")


def writer_defaults(keras_version: str | None, layout: str = "model") -> WriterDefaults:
    """The LSTM/GRU defaults of the Keras that wrote a file with ``keras_version``.

    * standalone Keras 2.0 to 2.2: ``recurrent_activation="hard_sigmoid"``, GRU ``reset_after=False``;
    * standalone Keras 2.3: ``"sigmoid"``, ``reset_after=False``;
    * ``tf.keras`` of TensorFlow 1.x (``2.1.6-tf``, ...): as Keras 2.2; ``2.2.4-tf`` was written by
      TensorFlow 1.13 to 2.1 alike, and the TensorFlow 1.x defaults are assumed;
    * ``tf.keras`` 2.3+ (TensorFlow 2), ``tf_keras`` and Keras 3: ``"sigmoid"``, ``reset_after=True``.

    Keras 2 files get a Keras 2 twin (``keras_version=2``: Keras 2's ``hard_sigmoid``), Keras 3
    files a Keras 3 twin. A ``*.weights.h5`` file records no version: Keras 3 is assumed.
    """
    if keras_version is None:
        if layout == "weights.h5":
            return WriterDefaults(3, "sigmoid", True, "tf_keras or Keras 3 (the *.weights.h5 layout records no version)")
        return WriterDefaults(2, "hard_sigmoid", False, "Keras 2.0-2.2 (no keras_version attribute)")
    match = _VERSION.match(keras_version.strip())
    if match is None:
        raise WeightsFileError(f"the file says it was written by Keras {keras_version!r}, which is not a version rnnparity knows")
    major, minor = int(match.group(1)), int(match.group(2))
    patch = int(match.group(3) or 0)
    tf_suffix = "tf" in match.group(4)
    if major == 3:
        return WriterDefaults(3, "sigmoid", True, f"Keras {keras_version}")
    if major != 2:
        raise WeightsFileError(
            f"the file was written by Keras {keras_version}; rnnparity reads files of Keras 2.0 and later "
            "(Keras 1 stored one array per gate)"
        )
    if tf_suffix:
        if (minor, patch) < (2, 4):
            return WriterDefaults(2, "hard_sigmoid", False, f"tf.keras {keras_version} (TensorFlow 1.x)")
        if (minor, patch) == (2, 4):
            return WriterDefaults(
                2,
                "hard_sigmoid",
                False,
                f"tf.keras {keras_version} (TensorFlow 1.13 to 2.1 all write this version; TensorFlow 1.x defaults assumed)",
            )
        return WriterDefaults(2, "sigmoid", True, f"tf.keras {keras_version} (TensorFlow 2)")
    if minor < 3:
        return WriterDefaults(2, "hard_sigmoid", False, f"Keras {keras_version} (standalone Keras < 2.3)")
    if minor == 3:
        return WriterDefaults(2, "sigmoid", False, f"Keras {keras_version} (standalone Keras 2.3)")
    return WriterDefaults(2, "sigmoid", True, f"Keras {keras_version} (tf.keras / tf_keras)")


# --------------------------------------------------------------------------- stored arrays
@dataclass(frozen=True)
class StoredCell:
    """One recurrent cell's arrays exactly as the file stores them."""

    kind: str  # "lstm", "gru" or "simple_rnn"
    layout: str  # "keras", or "cudnn" for CuDNNLSTM / CuDNNGRU weights
    units: int
    input_dim: int
    arrays: tuple[np.ndarray, ...]  # kernel, recurrent_kernel[, bias]
    paths: tuple[str, ...]  # where each array sits in the file

    @property
    def use_bias(self) -> bool:
        return len(self.arrays) == 3

    @property
    def reset_after(self) -> bool | None:
        """What the bias says about a GRU's ``reset_after`` (None: no bias, or not a GRU)."""
        if self.kind != "gru" or not self.use_bias:
            return None
        return self.layout == "cudnn" or self.arrays[2].ndim == 2

    @property
    def class_name(self) -> str:
        if self.layout == "cudnn":
            return "CuDNNLSTM" if self.kind == "lstm" else "CuDNNGRU"
        return KERAS_CLASS_NAME[self.kind]

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        return [tuple(a.shape) for a in self.arrays]

    def describe_shapes(self) -> str:
        names = ("kernel", "recurrent_kernel", "bias")
        return ", ".join(f"{n} {s}" for n, s in zip(names, self.shapes))

    def keras_weights(self) -> list[np.ndarray]:
        """The weights in the plain layer's layout (cuDNN weights converted, others copied)."""
        if self.layout == "cudnn":
            return from_cudnn(list(self.arrays), self.kind)
        return [np.array(a) for a in self.arrays]


@dataclass
class StoredLayer:
    """A recurrent layer of the file: its cells' arrays and what is known about it."""

    name: str
    path: str  # the file group that holds its weights
    class_name: str  # LSTM, GRU, SimpleRNN, CuDNNLSTM, CuDNNGRU, Bidirectional or RNN
    cells: list[StoredCell]  # Bidirectional: forward, backward; RNN: each cell of the stack
    saved_class: str | None = None  # the class in the stored model config (None: weights only)
    config: dict[str, Any] = field(default_factory=dict)  # the stored layer config
    class_source: str = ""  # how class_name was decided
    alias: str | None = None  # the name its weight names start with, when that is another name

    @property
    def inner_class(self) -> str:
        """The class of each direction of a Bidirectional (else the layer's own class)."""
        if self.class_name != "Bidirectional":
            return self.class_name
        inner = self.config.get("layer")
        if isinstance(inner, dict) and isinstance(inner.get("class_name"), str):
            return str(inner["class_name"])
        return self.cells[0].class_name

    @property
    def units(self) -> int:
        return self.cells[-1].units

    @property
    def input_dim(self) -> int:
        return self.cells[0].input_dim

    @property
    def has_cudnn_weights(self) -> bool:
        return any(cell.layout == "cudnn" for cell in self.cells)


@dataclass
class WeightsFile:
    """What :func:`read_weights_file` found."""

    path: str
    layout: str  # "model", "weights" or "weights.h5"
    keras_version: str | None
    backend: str | None
    model_config: dict[str, Any] | None
    layers: list[StoredLayer]
    others: dict[str, list[tuple[int, ...]]]  # layers with weights that are not recurrent: their shapes
    no_twin: dict[str, str]  # recurrent layers without a twin: why
    writer: WriterDefaults

    def describe(self) -> str:
        backend = f", backend {self.backend}" if self.backend else ""
        return f"{LAYOUTS[self.layout]} written by {self.writer.source}{backend}"

    def layer(self, name: str) -> StoredLayer:
        """The recurrent layer called ``name`` (or stored at path ``name``)."""
        if not isinstance(name, str):
            raise TypeError(f"layer_name must be a string; got {type(name).__name__} {name!r}")
        for layer in self.layers:
            if name in (layer.name, layer.path, layer.path.removeprefix("layers/"), layer.alias):
                return layer
        available = [layer.name for layer in self.layers]
        if name in self.no_twin:
            raise ValueError(f"layer_name {name!r}: {self.no_twin[name]}; layers with a twin in {self.path}: {available}")
        if name in self.others:
            shapes = ", ".join(str(s) for s in self.others[name]) or "no weights"
            raise ValueError(
                f"layer_name {name!r} is not a recurrent layer (its weights: {shapes}); recurrent layers in {self.path}: "
                f"{available}"
            )
        raise ValueError(f"layer_name {name!r} is not in {self.path}; its recurrent layers are {available}")


# --------------------------------------------------------------------------- reading
def _h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise WeightsFileError("reading HDF5 files needs h5py: pip install 'rnnparity[h5]'") from None
    return h5py


def _text(value: Any) -> str | None:
    """An HDF5 attribute as text: old Keras wrote bytes, newer Keras str."""
    if value is None:
        return None
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8")
    return str(value)


def attribute_list(node: Any, name: str) -> list[str] | None:
    """A list-of-names attribute (``layer_names``, ``weight_names``), joined from the
    ``name0``, ``name1``, ... chunks Keras writes when it is too long for one attribute."""
    if name in node.attrs:
        chunks = [node.attrs[name]]
    elif f"{name}0" in node.attrs:
        chunks = []
        while f"{name}{len(chunks)}" in node.attrs:
            chunks.append(node.attrs[f"{name}{len(chunks)}"])
    else:
        return None
    return [str(_text(value)) for chunk in chunks for value in np.atleast_1d(chunk)]


def is_hdf5(path: str | os.PathLike[str]) -> bool:
    with open(path, "rb") as handle:
        return handle.read(8) == HDF5_SIGNATURE


def read_weights_file(path: str | os.PathLike[str]) -> WeightsFile:
    """Every recurrent layer of a Keras HDF5 file (any of the three layouts), with ``h5py`` only."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or os.PathLike); got {type(path).__name__}")
    file = Path(path)
    if not file.is_file():
        raise WeightsFileError(f"path {str(file)!r}: no such file" + (" (it is a directory)" if file.is_dir() else ""))
    if not is_hdf5(file):
        raise WeightsFileError(f"path {str(file)!r} is not an HDF5 file (a .keras archive is read by Keras itself)")
    h5py = _h5py()
    try:
        with h5py.File(file, "r") as h5:
            return _read(h5, str(file))
    except OSError as exc:
        raise WeightsFileError(f"path {str(file)!r}: corrupted HDF5 file ({exc})") from None


def _read(h5: Any, path: str) -> WeightsFile:
    raw_config = _text(h5.attrs.get("model_config"))
    keras_version = _text(h5.attrs.get("keras_version"))
    backend = _text(h5.attrs.get("backend"))
    model_config = None
    if raw_config is not None:
        layout = "model"
        if "model_weights" not in h5:
            raise WeightsFileError(f"path {path!r} has a model_config but no model_weights group: a model saved without weights")
        root = h5["model_weights"]
        keras_version = keras_version or _text(root.attrs.get("keras_version"))
        backend = backend or _text(root.attrs.get("backend"))
        try:
            model_config = json.loads(raw_config)
        except json.JSONDecodeError as exc:
            raise WeightsFileError(f"path {path!r}: its model_config is not valid JSON ({exc})") from None
        if not isinstance(model_config, dict):
            raise WeightsFileError(f"path {path!r}: its model_config does not describe a Keras model")
    elif attribute_list(h5, "layer_names") is not None:
        layout, root = "weights", h5
    elif "layers" in h5 and isinstance(h5["layers"], _h5py().Group):
        layout, root = "weights.h5", h5
    else:
        raise WeightsFileError(
            f"path {path!r} is an HDF5 file without Keras weights (no model_config, layer_names or layers group)"
        )
    writer = writer_defaults(keras_version, layout)
    found = _Found()
    if layout == "weights.h5":
        _walk_weights_h5(root["layers"], "layers/", found)
        if any(layer.has_cudnn_weights for layer in found.layers):
            writer = WriterDefaults(2, "sigmoid", True, "tf_keras (it holds CuDNN weights, which Keras 3 cannot make)")
    else:
        configs = _layer_configs(model_config) if model_config else {}
        for name in attribute_list(root, "layer_names") or []:
            if name not in root:
                raise WeightsFileError(f"path {path!r} lists layer {name!r} in layer_names but has no group for it")
            group = root[name]
            entries = []
            for weight in attribute_list(group, "weight_names") or []:
                if weight not in group:
                    raise WeightsFileError(
                        f"path {path!r}: layer {name!r} lists weight {weight!r} but the file has no such array"
                    )
                entries.append(_Entry(weight, np.asarray(group[weight]), f"{group.name}/{weight}"))
            _add_layer(name, group.name.lstrip("/"), entries, configs.get(name), configs, found)
    return WeightsFile(path, layout, keras_version, backend, model_config, found.layers, found.others, found.no_twin, writer)


@dataclass
class _Entry:
    name: str  # the weight name Keras stored
    array: np.ndarray
    path: str

    @property
    def leaf(self) -> str:
        """``kernel`` of ``lstm_1/kernel:0``."""
        return re.sub(r":\d+$", "", self.name.split("/")[-1])


@dataclass
class _Found:
    layers: list[StoredLayer] = field(default_factory=list)
    others: dict[str, list[tuple[int, ...]]] = field(default_factory=dict)
    no_twin: dict[str, str] = field(default_factory=dict)


def _layer_configs(model_config: Any) -> dict[str, tuple[str, dict[str, Any]]]:
    """``{layer name: (class_name, config)}`` for every layer in a stored model config,
    nested models included (the first of equal names wins: the outer one)."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
            return
        if not isinstance(node, dict):
            return
        class_name, config = node.get("class_name"), node.get("config")
        if isinstance(class_name, str) and isinstance(config, dict) and isinstance(config.get("name"), str):
            found.setdefault(config["name"], (class_name, config))
            if class_name not in MODEL_CLASSES:
                return  # a layer: the configs inside it (cells, wrapped layers) are not model layers
        elif isinstance(class_name, str) and isinstance(config, list):
            walk(config)  # Keras 2.0/2.1 Sequential: the config is the list of layers
            return
        for value in node.values():
            walk(value)

    walk(model_config)
    return found


def _sublayer_names(config: dict[str, Any]) -> list[str]:
    """Names of the layers of a nested model's config (Keras 2.0/2.1 Sequential: a list)."""
    layers = config if isinstance(config, list) else config.get("layers", [])
    return [
        item["config"]["name"]
        for item in layers
        if isinstance(item, dict) and isinstance(item.get("config"), dict) and isinstance(item["config"].get("name"), str)
    ]


def _add_layer(
    name: str,
    path: str,
    entries: list[_Entry],
    known: tuple[str, dict[str, Any]] | None,
    configs: dict[str, tuple[str, dict[str, Any]]],
    found: _Found,
) -> None:
    """Classify one layer of a legacy-layout file from its arrays (and stored config)."""
    if not entries:
        return
    class_name, config = known if known is not None else (None, {})
    if class_name in MODEL_CLASSES:
        for sub in _sublayer_names(config):
            sub_known = configs.get(sub)
            if sub_known is not None and sub_known[0] in MODEL_CLASSES:
                part = entries  # a model inside: its own layers pick their weights by name
            else:
                part = [e for e in entries if sub in e.name.split("/")[:-1]]
            _add_layer(sub, path, part, sub_known, configs, found)
        return
    cells = _cells_from_entries(entries)
    if class_name is not None:
        _add_configured(name, path, class_name, config, cells, entries, found)
        return
    # Weights only: the arrays (and their names) are all there is.
    heads = list(dict.fromkeys(e.name.split("/")[0] for e in entries))
    if cells is not None and (len(cells) == 1 or _bidirectional_names(name, entries, cells)):
        found.layers.append(_inferred(name, path, cells, entries))
        if len(heads) == 1 and heads[0] != name:
            found.layers[-1].alias = heads[0]  # e.g. the one layer of a nested model
        return
    if len(heads) > 1:  # a nested model: its weight names start with each inner layer's name
        for head in heads:
            _add_layer(head, path, [e for e in entries if e.name.split("/")[0] == head], None, configs, found)
        return
    if cells is not None and _chained(cells) and not any(c.layout == "cudnn" for c in cells):
        found.layers.append(
            StoredLayer(
                name, path, "RNN", cells, class_source=f"inferred: a stack of {len(cells)} cells (RNN over StackedRNNCells)"
            )
        )
        return
    found.others[name] = [tuple(e.array.shape) for e in entries]


def _inferred(name: str, path: str, cells: list[StoredCell], entries: list[_Entry]) -> StoredLayer:
    if len(cells) == 2:
        return StoredLayer(
            name, path, "Bidirectional", cells, class_source=f"inferred: forward and backward {cells[0].class_name} weights"
        )
    cell = cells[0]
    bias = f"a {cell.shapes[2]} bias" if cell.use_bias else "no bias"
    return StoredLayer(name, path, cell.class_name, cells, class_source=f"inferred from the shapes ({bias})")


def _bidirectional_names(name: str, entries: list[_Entry], cells: list[StoredCell]) -> bool:
    if len(cells) != 2:
        return False
    names = " ".join(e.name for e in entries)
    return ("forward" in names and "backward" in names) or name.startswith("bidirectional")


def _chained(cells: list[StoredCell]) -> bool:
    return len(cells) > 1 and all(b.input_dim == a.units for a, b in zip(cells, cells[1:]))


def _add_configured(
    name: str,
    path: str,
    class_name: str,
    config: dict[str, Any],
    cells: list[StoredCell] | None,
    entries: list[_Entry],
    found: _Found,
) -> None:
    """A layer whose class the stored model config names."""
    shapes = ", ".join(str(tuple(e.array.shape)) for e in entries)
    expected = _expected_cells(class_name, config)
    if expected is None:
        if class_name in NO_TWIN or class_name.startswith("ConvLSTM"):
            found.no_twin[name] = f"{class_name}: {NO_TWIN.get(class_name, 'no twin')}"
        elif class_name == "Bidirectional":
            inner = config.get("layer", {}).get("class_name") if isinstance(config.get("layer"), dict) else None
            found.no_twin[name] = (
                f"Bidirectional around {inner}: from a file, only Bidirectional around LSTM, GRU, SimpleRNN or a CuDNN "
                "layer is read (load the model with Keras and use rnnparity.from_keras)"
            )
        elif _is_rnn_like(class_name, config):
            found.no_twin[name] = f"{class_name} has no twin (a custom or unsupported recurrent class)"
        else:
            found.others[name] = [tuple(e.array.shape) for e in entries]
        return
    if cells is None or [c.class_name for c in cells] != expected:
        found.no_twin[name] = f"saved as {class_name} ({', '.join(expected)}) but its arrays do not fit: {shapes}"
        return
    found.layers.append(StoredLayer(name, path, class_name, cells, class_name, config, "the stored model config"))


def _is_rnn_like(class_name: str, config: dict[str, Any]) -> bool:
    return "cell" in config or "RNN" in class_name or "LSTM" in class_name or "GRU" in class_name


def _expected_cells(class_name: str, config: dict[str, Any]) -> list[str] | None:
    """The class of each stored cell of a configured layer, or None when the class has no twin."""
    if class_name in PLAIN_CLASSES or class_name in CUDNN_CLASSES:
        return [class_name]
    if class_name == "Bidirectional":
        inner = config.get("layer", {})
        inner_class = inner.get("class_name") if isinstance(inner, dict) else None
        if inner_class in PLAIN_CLASSES or inner_class in CUDNN_CLASSES:
            return [str(inner_class), str(inner_class)]
        return None
    if class_name == "RNN":
        cells = _rnn_cell_classes(config)
        return list(cells) if cells else None
    return None


def _rnn_cell_classes(config: dict[str, Any]) -> list[str] | None:
    cell = config.get("cell")
    if not isinstance(cell, dict):
        return None
    if cell.get("class_name") == "StackedRNNCells":
        cells = cell.get("config", {}).get("cells", [])
    else:
        cells = [cell]
    names = [c.get("class_name") if isinstance(c, dict) else None for c in cells]
    if not names or any(n not in CELL_CLASSES for n in names):
        return None
    return [KERAS_CLASS_NAME[CELL_CLASSES[str(n)]] for n in names]


def _cells_from_entries(entries: list[_Entry]) -> list[StoredCell] | None:
    """Split a layer's arrays into recurrent cells; None when they are not recurrent weights."""
    cells = []
    i = 0
    while i < len(entries):
        if i + 1 >= len(entries):
            return None
        kernel, recurrent = entries[i], entries[i + 1]
        if not _named_like(kernel, "kernel") or not _named_like(recurrent, "recurrent_kernel"):
            return None
        taken = _cell(entries[i : i + 3])
        if taken is None:
            return None
        cell, count = taken
        cells.append(cell)
        i += count
    return cells or None


def _named_like(entry: _Entry, role: str) -> bool:
    # Keras names weights kernel / recurrent_kernel / bias; the Theano backend could leave
    # them unnamed ("param_0"), and then the shapes alone decide.
    leaf = entry.leaf
    return leaf.startswith(role) or leaf.startswith("param_") or leaf.isdigit()


def _cell(entries: list[_Entry]) -> tuple[StoredCell, int] | None:
    """The cell starting at ``entries[0]`` and how many arrays it takes (2 or 3)."""
    kernel, recurrent = entries[0].array, entries[1].array
    if kernel.ndim != 2 or recurrent.ndim != 2 or recurrent.shape[0] == 0 or recurrent.shape[1] % recurrent.shape[0]:
        return None
    units = recurrent.shape[0]
    gates = recurrent.shape[1] // units
    kinds = {len(order): kind for kind, order in GATE_ORDER.items()}
    if gates not in kinds or kernel.shape[1] != recurrent.shape[1]:
        return None
    kind = kinds[gates]
    width = gates * units
    layout, count = "keras", 2
    if len(entries) > 2 and _named_like(entries[2], "bias"):
        bias = entries[2].array
        if bias.shape == (width,) or (kind == "gru" and bias.shape == (2, width)):
            count = 3
        elif kind in CUDNN_CLASSES.values() and bias.shape == (2 * width,):
            layout, count = "cudnn", 3
    used = entries[:count]
    cell = StoredCell(kind, layout, units, kernel.shape[0], tuple(e.array for e in used), tuple(e.path.lstrip("/") for e in used))
    return cell, count


# --------------------------------------------------------------------------- *.weights.h5
def _vars(group: Any) -> list[_Entry]:
    datasets = sorted((key for key in group if key.isdigit()), key=int)
    return [_Entry(key, np.asarray(group[key]), f"{group.name}/{key}") for key in datasets]


def _layer_vars(node: Any) -> list[_Entry]:
    """A recurrent layer's arrays: in its cell (``cell/vars``), or its own ``vars`` (cuDNN)."""
    if "cell" in node and "vars" in node["cell"]:
        return _vars(node["cell"]["vars"])
    return _vars(node["vars"]) if "vars" in node else []


def _walk_weights_h5(group: Any, prefix: str, found: _Found) -> None:
    for key in group:
        node = group[key]
        if not hasattr(node, "keys"):
            continue
        path = f"{prefix}{key}"
        recorded = _text(node["vars"].attrs.get("name")) if "vars" in node else None
        name = recorded or path.removeprefix("layers/")
        if "layers" in node:  # a nested model
            _walk_weights_h5(node["layers"], f"{path}/layers/", found)
            continue
        hint = _KEY_CLASSES.get(re.sub(r"_\d+$", "", key))
        source = f"the key {key!r}" if hint else ""
        if "forward_layer" in node and "backward_layer" in node:
            halves = [_cells_from_entries(_layer_vars(node[d])) for d in ("forward_layer", "backward_layer")]
            if all(h is not None and len(h) == 1 for h in halves):
                cells = [h[0] for h in halves if h]
                found.layers.append(
                    StoredLayer(name, path, "Bidirectional", cells, class_source="forward_layer and backward_layer groups")
                )
            else:
                found.no_twin[name] = "a Bidirectional whose halves are not single recurrent cells"
            continue
        if "cell" in node and "cells" in node["cell"]:
            stack = node["cell"]["cells"]
            parts = [_cells_from_entries(_layer_vars(stack[k])) for k in stack]
            _add_stack(name, path, [p[0] for p in parts if p and len(p) == 1], len(parts), found)
            continue
        entries = _layer_vars(node)
        found_cells = _cells_from_entries(entries) if entries else None
        if found_cells is not None and len(found_cells) == 1:
            cells = found_cells
            cell = cells[0]
            how = f"{source} and the shapes" if source else "the shapes"
            found.layers.append(StoredLayer(name, path, cell.class_name, cells, class_source=f"inferred from {how}"))
        elif entries:
            found.others[name] = [tuple(e.array.shape) for e in entries]


def _add_stack(name: str, path: str, cells: list[StoredCell], count: int, found: _Found) -> None:
    """A stack of cells from the *.weights.h5 layout, whose groups are named by class and
    sorted by name, not kept in order: the order is the one the shapes allow."""
    if len(cells) != count:
        found.no_twin[name] = "an RNN over StackedRNNCells with cells that are not recurrent weights"
        return
    from itertools import permutations

    orders = {order for order in permutations(range(count)) if _chained([cells[i] for i in order])}
    if len(orders) != 1:
        found.no_twin[name] = (
            f"an RNN over {count} stacked cells: the *.weights.h5 layout does not record their order and "
            f"{'their shapes allow several' if orders else 'their shapes do not chain'}"
        )
        return
    (order,) = orders
    found.layers.append(
        StoredLayer(
            name,
            path,
            "RNN",
            [cells[i] for i in order],
            class_source=f"cell/cells groups: {count} cells, ordered by their shapes",
        )
    )


# --------------------------------------------------------------------------- the twin
@dataclass
class TwinPlan:
    """The twin :func:`twin_from_weights` builds for a stored layer, and why."""

    layer: StoredLayer
    kind: str  # "lstm", "gru" or "simple_rnn" (of every cell of a stack: see cell_settings)
    settings: dict[str, Any]  # layer arguments (for RNN: the RNN's own arguments)
    cell_settings: list[dict[str, Any]]  # RNN: one per cell; Bidirectional: [forward, backward]
    wrapper: dict[str, Any]  # Bidirectional: merge_mode and dtype
    weights: list[np.ndarray]  # Keras layout, in set_weights order
    assumptions: list[str]

    @property
    def summary(self) -> str:
        """The settings that matter, briefly: ``units=4 recurrent_activation=hard_sigmoid``."""
        cells = self.cell_settings
        if self.layer.class_name == "RNN":
            listed = ", ".join(f"{KERAS_CLASS_NAME[c.kind]}({_brief(s)})" for c, s in zip(self.layer.cells, cells))
            return " ".join(part for part in (f"cells=[{listed}]", _brief(self.settings, layer_only=True)) if part)
        if self.layer.class_name == "Bidirectional":
            inner = KERAS_CLASS_NAME[self.kind]
            return f"{inner}({_brief(cells[0])}) merge_mode={self.wrapper['merge_mode']}"
        return _brief(self.settings)

    @property
    def description(self) -> str:
        """The twin as a constructor call, e.g. ``LSTM(4, recurrent_activation='sigmoid', keras_version=2)``."""
        if self.layer.class_name == "Bidirectional":
            inner = _call(_twin_class_name(self.layer.inner_class), self.cell_settings[0])
            return f"Bidirectional({inner}, merge_mode={self.wrapper['merge_mode']!r})"
        if self.layer.class_name == "RNN":
            cells = ", ".join(_call(f"{KERAS_CLASS_NAME[c.kind]}Cell", s) for c, s in zip(self.layer.cells, self.cell_settings))
            inner_cells = cells if len(self.cell_settings) == 1 else f"[{cells}]"
            return _call("RNN", self.settings, first=inner_cells)
        return _call(KERAS_CLASS_NAME[self.kind], self.settings)

    def build(self) -> Any:
        """A new twin with these settings and the converted weights."""
        import rnnparity

        layer = self.layer
        if layer.class_name == "Bidirectional":
            layer_class = getattr(rnnparity, KERAS_CLASS_NAME[self.kind])
            forward = layer_class(**self.cell_settings[0])
            backward = layer_class(**self.cell_settings[1]) if self.wrapper.get("backward_layer") else None
            twin: Any = rnnparity.Bidirectional(
                forward, merge_mode=self.wrapper["merge_mode"], backward_layer=backward, dtype=self.wrapper["dtype"]
            )
        elif layer.class_name == "RNN":
            cells = [getattr(rnnparity, f"{KERAS_CLASS_NAME[c.kind]}Cell")(**s) for c, s in zip(layer.cells, self.cell_settings)]
            twin = rnnparity.RNN(cells[0] if len(cells) == 1 else cells, **self.settings)
        else:
            twin = getattr(rnnparity, KERAS_CLASS_NAME[self.kind])(**self.settings)
        twin.set_weights(self.weights)
        return twin


def _brief(settings: Mapping[str, Any], layer_only: bool = False) -> str:
    parts = [] if layer_only else [f"units={settings.get('units')}"]
    if not layer_only:
        for key, default in (("activation", "tanh"), ("recurrent_activation", "sigmoid")):
            value = settings.get(key, default)
            if value != default:
                parts.append(f"{key}={getattr(value, '__name__', value)}")
        if settings.get("reset_after") is False:
            parts.append("reset_after=False")
        if settings.get("use_bias") is False:
            parts.append("use_bias=False")
    parts += [key for key in ("go_backwards", "stateful") if settings.get(key)]
    if not layer_only and settings.get("keras_version") == 2:
        parts.append("keras_version=2")
    return " ".join(parts)


def _twin_class_name(class_name: str) -> str:
    return {"CuDNNLSTM": "LSTM", "CuDNNGRU": "GRU"}.get(class_name, class_name)


def _call(name: str, settings: Mapping[str, Any], first: str | None = None) -> str:
    shown = [first] if first else []
    shown += [f"{settings['units']}"] if "units" in settings else []
    for key in ("activation", "recurrent_activation", "use_bias", "reset_after", *_RNN_KEYS, "dtype", "keras_version"):
        if key in settings and key not in ("unroll", "time_major"):
            value = settings[key]
            if key in _RNN_KEYS and value is False:
                continue
            shown.append(f"{key}={getattr(value, '__name__', None) or value!r}" if callable(value) else f"{key}={value!r}")
    if settings.get("backend", "tensorflow") != "tensorflow":
        shown.append(f"backend={settings['backend']!r}")
    return f"{name}({', '.join(shown)})"


def _twin_keys(kind: str) -> set[str]:
    """Every argument a twin layer of ``kind`` takes (its parameters and the training-only ones)."""
    import rnnparity
    from rnnparity.rnn import TRAINING_ONLY_ARGS

    layer_class = getattr(rnnparity, KERAS_CLASS_NAME[kind])
    parameters = inspect.signature(layer_class).parameters
    return {n for n, p in parameters.items() if p.kind is not inspect.Parameter.VAR_KEYWORD} | set(TRAINING_ONLY_ARGS)


def plan_twin(file: WeightsFile, layer: StoredLayer, config: Mapping[str, Any] | None = None) -> TwinPlan:
    """Decide every setting of ``layer``'s twin: weights first, then ``config``, then the stored
    layer config, then the writer's defaults. Raises ``ValueError`` when ``config`` (or the
    stored config) contradicts the weights, ``TypeError`` for an argument no twin takes."""
    user = dict(config or {})
    notes: list[str] = []
    kind = layer.cells[0].kind
    writer = file.writer
    keras_version = user.pop("keras_version", writer.keras_major)
    if keras_version not in (2, 3) or isinstance(keras_version, bool):
        raise ValueError(f"keras_version must be 2 or 3; got {keras_version!r}")
    backend = user.pop("backend", None)
    if backend is None:
        backend = file.backend if keras_version == 3 and file.backend == "jax" else "tensorflow"
    if file.backend and file.backend not in ("tensorflow", "jax"):
        notes.append(f"backend {file.backend!r} wrote the file; its recurrent layers compute the same formulas as on TensorFlow")
    merge_mode = user.pop("merge_mode", None) if layer.class_name == "Bidirectional" else None
    _check_user_keys(user, kind, layer)
    dtype = user.pop("dtype", None)

    if layer.class_name == "Bidirectional":
        stored = layer.config.get("layer", {}).get("config", {}) if layer.config else {}
        backward_stored = (layer.config.get("backward_layer") or {}).get("config") if layer.config else None
        forward = _layer_settings(file, layer, layer.cells[0], stored, user, keras_version, backend, dtype, notes, "")
        backward = _layer_settings(
            file, layer, layer.cells[1], backward_stored or stored, user, keras_version, backend, dtype, [], "backward "
        )
        if backward_stored is None:
            backward = dict(forward)
        stored_merge = layer.config.get("merge_mode", "concat") if layer.config else "concat"
        if merge_mode is None:
            merge_mode = stored_merge
            if not layer.config:
                notes.append("merge_mode='concat': not stored in a weights-only file; the Keras default")
        wrapper = {
            "merge_mode": merge_mode,
            "dtype": dtype or _dtype_name(layer.config.get("dtype")) or forward["dtype"],
            "backward_layer": backward_stored is not None,
        }
        weights = [w for cell in layer.cells for w in cell.keras_weights()]
        return _with_version_note(TwinPlan(layer, kind, forward, [forward, backward], wrapper, weights, notes), file)

    if layer.class_name == "RNN":
        cell_configs = _stored_cell_configs(layer)
        rnn_settings: dict[str, Any] = {"backend": backend}
        stored_rnn = {k: v for k, v in layer.config.items() if k in _RNN_KEYS or k in _LAYER_ONLY_KEYS}
        rnn_settings.update(stored_rnn)
        rnn_settings.update({k: v for k, v in user.items() if k in _RNN_KEYS or k in _LAYER_ONLY_KEYS})
        cell_user = {k: v for k, v in user.items() if k not in _RNN_KEYS and k not in _LAYER_ONLY_KEYS}
        if not layer.config:
            notes.extend(_not_stored_note(rnn_settings, user))
        cells = []
        for index, (cell, stored) in enumerate(zip(layer.cells, cell_configs)):
            settings = _layer_settings(
                file, layer, cell, stored, cell_user, keras_version, backend, dtype, notes, f"cell {index}: ", cell_only=True
            )
            cells.append(settings)
        weights = [w for cell in layer.cells for w in cell.keras_weights()]
        return _with_version_note(TwinPlan(layer, kind, rnn_settings, cells, {}, weights, notes), file)

    settings = _layer_settings(file, layer, layer.cells[0], layer.config, user, keras_version, backend, dtype, notes, "")
    return _with_version_note(TwinPlan(layer, kind, settings, [settings], {}, layer.cells[0].keras_weights(), notes), file)


def _with_version_note(plan: TwinPlan, file: WeightsFile) -> TwinPlan:
    """Say first which Keras the twin emulates, and what that means for hard_sigmoid."""
    keras_version = plan.cell_settings[0]["keras_version"]
    origin = "as the file" if keras_version == file.writer.keras_major else "given; not the file's"
    note = f"keras_version={keras_version} ({origin}: written by {file.writer.source})"
    uses = [s.get(k) for s in plan.cell_settings for k in ("activation", "recurrent_activation")]
    if "hard_sigmoid" in uses:
        formula = "clip(0.2 * x + 0.5, 0, 1)" if keras_version == 2 else "relu6(x + 3) / 6"
        note += f": hard_sigmoid is Keras {keras_version}'s {formula}"
    plan.assumptions.insert(0, note)
    return plan


def accepted_keys(layer: StoredLayer) -> set[str]:
    """The ``config`` keys :func:`plan_twin` takes for ``layer``: its twin's arguments (and
    ``merge_mode`` for a Bidirectional)."""
    accepted = {"dtype", "keras_version", "backend"}
    for cell in layer.cells:
        accepted |= _twin_keys(cell.kind)
    if layer.class_name == "Bidirectional":
        accepted.add("merge_mode")
    return accepted


def _check_user_keys(user: Mapping[str, Any], kind: str, layer: StoredLayer) -> None:
    from rnnparity.rnn import TRAINING_ONLY_ARGS

    unknown = sorted(set(user) - accepted_keys(layer))
    if unknown:
        main = sorted(accepted_keys(layer) - set(TRAINING_ONLY_ARGS) - {"self"})
        raise TypeError(
            f"config has key(s) {unknown} that a {_twin_class_name(layer.inner_class)} twin does not take; accepted: "
            f"{main} and the arguments that do not change inference (initializers, dropout, ...)"
        )


def _stored_cell_configs(layer: StoredLayer) -> list[dict[str, Any]]:
    cell = layer.config.get("cell") if layer.config else None
    if not isinstance(cell, dict):
        return [{} for _ in layer.cells]
    cells = cell.get("config", {}).get("cells", []) if cell.get("class_name") == "StackedRNNCells" else [cell]
    return [dict(c.get("config", {})) for c in cells]


def _dtype_name(value: Any) -> str | None:
    if isinstance(value, dict):  # a Keras 3 DTypePolicy
        value = value.get("config", {}).get("name")
    return value if isinstance(value, str) else None


def _not_stored_note(settings: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
    keys = [k for k in ("return_sequences", "return_state", "go_backwards", "stateful") if k not in given]
    if not keys:
        return []
    shown = ", ".join(f"{k}={settings.get(k, False)!r}" for k in keys)
    return [f"{shown}: not stored in a weights-only file; the Keras defaults (give yours if the layer set them)"]


def _layer_settings(
    file: WeightsFile,
    layer: StoredLayer,
    cell: StoredCell,
    stored: Mapping[str, Any],
    user: Mapping[str, Any],
    keras_version: int,
    backend: str,
    dtype: Any,
    notes: list[str],
    where: str,
    cell_only: bool = False,
) -> dict[str, Any]:
    """The twin arguments for one cell (a whole layer unless ``cell_only``)."""
    kind = cell.kind
    known = _twin_keys(kind)
    if cell_only:
        known -= {*_RNN_KEYS, "backend", "time_major"}
    cudnn = cell.layout == "cudnn"
    class_name = cell.class_name
    settings: dict[str, Any] = {}
    ignored = sorted(k for k in stored if k not in known)
    for key, value in stored.items():
        if key in known:
            settings[key] = value
    if ignored:
        notes.append(f"{where}stored settings no twin uses, ignored: {ignored}")

    def weights_fix(key: str, value: Any, why: str) -> None:
        for source, given in (("config", user), ("the stored config", stored)):
            if key in given and given[key] != value:
                raise ValueError(f"{where}{key}={given[key]!r} (from {source}) contradicts the weights of {layer.name!r}: {why}")
        settings[key] = value

    weights_fix(
        "units",
        cell.units,
        f"recurrent_kernel has shape {cell.shapes[1]}, so units={cell.units}",
    )
    if "input_dim" in user and user["input_dim"] != cell.input_dim:
        raise ValueError(
            f"{where}input_dim={user['input_dim']!r} (from config) contradicts the weights of {layer.name!r}: kernel has "
            f"shape {cell.shapes[0]}, so input_dim={cell.input_dim}"
        )
    weights_fix(
        "use_bias",
        cell.use_bias,
        f"it stores {'a bias ' + str(cell.shapes[2]) if cell.use_bias else 'no bias'}",
    )
    settings.update({k: v for k, v in user.items() if k not in ("units", "use_bias")})
    if cudnn:
        fixed: dict[str, Any] = {"activation": "tanh", "recurrent_activation": "sigmoid"}
        if kind == "gru":
            fixed["reset_after"] = True
        for key, value in fixed.items():
            if key in user and user[key] != value:
                raise ValueError(
                    f"{where}{key}={user[key]!r} (from config) contradicts {class_name}, which always computes "
                    f"{CUDNN_EQUIVALENT[class_name]}"
                )
            settings[key] = value
        if not where or where == "cell 0: ":
            notes.append(
                f"weights converted from {class_name} to {CUDNN_EQUIVALENT[class_name]}, as Keras converts them on "
                "loading: each gate's kernel block re-read as (units, input_dim) and transposed, each recurrent block "
                + (
                    "transposed, the input and recurrent biases summed"
                    if kind == "lstm"
                    else "transposed, the bias read as 2 rows"
                )
            )
    else:
        if kind == "gru":
            if cell.reset_after is not None:
                why = f"the bias has shape {cell.shapes[2]}, so reset_after={cell.reset_after}"
                weights_fix("reset_after", cell.reset_after, why)
            elif "reset_after" not in settings:
                settings["reset_after"] = file.writer.reset_after
                notes.append(
                    f"{where}reset_after={file.writer.reset_after}: a GRU without bias does not show it; the default "
                    f"of {file.writer.source}"
                )
        if kind != "simple_rnn" and "recurrent_activation" not in settings:
            settings["recurrent_activation"] = file.writer.recurrent_activation
            notes.append(
                f"{where}recurrent_activation={file.writer.recurrent_activation!r}: not stored; the default of "
                f"{file.writer.source}"
            )
        if "activation" not in settings:
            settings["activation"] = "tanh"
            if not stored:
                notes.append(f"{where}activation='tanh': not stored; the Keras default")
    for key in ("activation", "recurrent_activation"):
        value = settings.get(key)
        if value is not None and not isinstance(value, str) and not callable(value):
            raise ValueError(f"{where}{layer.name!r} stores a custom {key} ({value!r}); pass {key}=<a NumPy function> in config")
    settings["dtype"] = dtype or _dtype_name(settings.get("dtype")) or _array_dtype(cell)
    settings["keras_version"] = keras_version
    if not cell_only:
        settings["backend"] = backend
        if not stored and not where:
            notes.extend(_not_stored_note(settings, user))
    return settings


def _array_dtype(cell: StoredCell) -> str:
    name = np.dtype(cell.arrays[0].dtype).name
    return name if name in ("float32", "float64") else "float32"


def twin_from_weights(path: str | os.PathLike[str], layer_name: str, **config: Any) -> Any:
    """A twin of the recurrent layer ``layer_name`` stored in the HDF5 file ``path``, with its
    weights converted to the plain layer's layout (CuDNN weights as Keras converts them).

    Units, input dim and the layer kind come from the stored shapes (and class); everything
    else from ``config``, else the stored model config (full-model files), else the defaults
    of the Keras version that wrote the file (see :func:`writer_defaults`). The twin emulates
    that Keras (``keras_version=2`` for Keras 2 files) unless ``config`` says otherwise.
    ``rnnparity explain FILE.h5`` prints what it assumes. Reads the file with h5py; no Keras.
    """
    file = read_weights_file(path)
    return plan_twin(file, file.layer(layer_name), config).build()


def plain_model_config(config: Any) -> tuple[Any, list[str]]:
    """``config`` with every ``CuDNNLSTM``/``CuDNNGRU`` replaced by the plain layer that computes
    the same on any device (as Keras's own docs advise for running such a model on a CPU),
    and the names of the layers replaced. The weights need Keras's conversion on loading."""
    replaced: list[str] = []

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        class_name = node.get("class_name")
        if class_name in CUDNN_CLASSES and isinstance(node.get("config"), dict):
            inner = dict(node["config"])
            replaced.append(str(inner.get("name")))
            inner.update(activation="tanh", recurrent_activation="sigmoid", use_bias=True)
            if class_name == "CuDNNGRU":
                inner["reset_after"] = True
            return {**node, "class_name": _twin_class_name(class_name), "config": inner}
        return {key: walk(value) for key, value in node.items()}

    return walk(config), replaced
