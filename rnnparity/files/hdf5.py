"""Keras weights in HDF5 files, read with ``h5py`` alone (no Keras): :func:`read_weights_file`.

This module holds the one HDF5 signature check (:func:`is_hdf5`) and the one lazy ``h5py``
import (:func:`h5py_module`) of the package; :mod:`rnnparity.files.model_file` uses both.
The layouts it reads, and how a recurrent cell is recognised by its arrays, are described
in :mod:`rnnparity.files.legacy`. What it returns is described in :mod:`rnnparity.files.stored`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from itertools import permutations
from pathlib import Path
from typing import Any

import numpy as np

from rnnparity.files.stored import (
    CONV_KIND,
    MODEL_CLASSES,
    StoredCell,
    StoredLayer,
    WeightsFile,
    WeightsFileError,
    WriterDefaults,
    writer_defaults,
)
from rnnparity.layout import CUDNN_CLASSES, GATE_ORDER, KERAS_CLASS_NAME
from rnnparity.twin_classes import CONV_TWIN_BY_KERAS_NAME, NO_TWIN

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# Layer and cell classes by Keras name, and the kind of each ("LSTM" -> "lstm").
PLAIN_CLASSES = {name: kind for kind, name in KERAS_CLASS_NAME.items()}
CELL_CLASSES = {f"{name}Cell": kind for kind, name in KERAS_CLASS_NAME.items()}
# Snake-cased class names, as the *.weights.h5 layout uses them for keys.
_KEY_CLASSES = {
    "lstm": "LSTM",
    "gru": "GRU",
    "simple_rnn": "SimpleRNN",
    "cu_dnnlstm": "CuDNNLSTM",
    "cu_dnngru": "CuDNNGRU",
    "bidirectional": "Bidirectional",
    "rnn": "RNN",
    "conv_lstm1d": "ConvLSTM1D",
    "conv_lstm2d": "ConvLSTM2D",
    "conv_lstm3d": "ConvLSTM3D",
}


# --------------------------------------------------------------------------- reading
def h5py_module() -> Any:
    """``h5py``, imported on first use (``import rnnparity`` does not need it)."""
    try:
        import h5py
    except ImportError:
        raise WeightsFileError("reading HDF5 files needs h5py: pip install 'rnnparity[h5]'") from None
    return h5py


def attribute_text(value: Any) -> str | None:
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
    return [str(attribute_text(value)) for chunk in chunks for value in np.atleast_1d(chunk)]


def is_hdf5(path: str | os.PathLike[str]) -> bool:
    """Whether the file at ``path`` starts with the HDF5 signature."""
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
    h5py = h5py_module()
    try:
        with h5py.File(file, "r") as h5:
            return _read(h5, str(file))
    except OSError as exc:
        raise WeightsFileError(f"path {str(file)!r}: corrupted HDF5 file ({exc})") from None


def _read(h5: Any, path: str) -> WeightsFile:
    raw_config = attribute_text(h5.attrs.get("model_config"))
    keras_release = attribute_text(h5.attrs.get("keras_version"))
    backend = attribute_text(h5.attrs.get("backend"))
    model_config = None
    if raw_config is not None:
        layout = "model"
        if "model_weights" not in h5:
            raise WeightsFileError(f"path {path!r} has a model_config but no model_weights group: a model saved without weights")
        root = h5["model_weights"]
        keras_release = keras_release or attribute_text(root.attrs.get("keras_version"))
        backend = backend or attribute_text(root.attrs.get("backend"))
        try:
            model_config = json.loads(raw_config)
        except json.JSONDecodeError as exc:
            raise WeightsFileError(f"path {path!r}: its model_config is not valid JSON ({exc})") from None
        if not isinstance(model_config, dict):
            raise WeightsFileError(f"path {path!r}: its model_config does not describe a Keras model")
    elif attribute_list(h5, "layer_names") is not None:
        layout, root = "weights", h5
    elif "layers" in h5 and isinstance(h5["layers"], h5py_module().Group):
        layout, root = "weights.h5", h5
    else:
        raise WeightsFileError(
            f"path {path!r} is an HDF5 file without Keras weights (no model_config, layer_names or layers group)"
        )
    writer = writer_defaults(keras_release, layout)
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
    return WeightsFile(path, layout, keras_release, backend, model_config, found.layers, found.others, found.no_twin, writer)


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
    """Whether ``cells`` can be one RNN's stack (ConvLSTM cells never are: Keras stacks none)."""
    if any(cell.is_conv for cell in cells):
        return False
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
        if class_name in NO_TWIN:
            found.no_twin[name] = f"{class_name}: {NO_TWIN[class_name]}"
        elif class_name == "Bidirectional":
            inner = config.get("layer", {}).get("class_name") if isinstance(config.get("layer"), dict) else None
            found.no_twin[name] = (
                f"Bidirectional around {inner}: from a file, only Bidirectional around LSTM, GRU, SimpleRNN, "
                "ConvLSTM1D/2D/3D or a CuDNN layer is read (load the model with Keras and use rnnparity.from_keras)"
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
    if class_name in PLAIN_CLASSES or class_name in CUDNN_CLASSES or class_name in CONV_TWIN_BY_KERAS_NAME:
        return [class_name]
    if class_name == "Bidirectional":
        inner = config.get("layer", {})
        inner_class = inner.get("class_name") if isinstance(inner, dict) else None
        if inner_class in PLAIN_CLASSES or inner_class in CUDNN_CLASSES or inner_class in CONV_TWIN_BY_KERAS_NAME:
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


def _conv_cell(entries: list[_Entry]) -> tuple[StoredCell, int] | None:
    """A ConvLSTM1D/2D/3D cell: ``kernel (*K, C, 4F)``, ``recurrent_kernel (*K, F, 4F)``,
    optional ``bias (4F,)``; None when the arrays are not that."""
    kernel, recurrent = entries[0].array, entries[1].array
    if kernel.ndim not in (3, 4, 5) or recurrent.ndim != kernel.ndim or kernel.shape[:-2] != recurrent.shape[:-2]:
        return None
    filters = recurrent.shape[-2]
    if filters == 0 or min(kernel.shape) == 0 or recurrent.shape[-1] != 4 * filters or kernel.shape[-1] != 4 * filters:
        return None
    count = 2
    if len(entries) > 2 and _named_like(entries[2], "bias") and entries[2].array.shape == (4 * filters,):
        count = 3
    used = entries[:count]
    arrays = tuple(e.array for e in used)
    cell = StoredCell(CONV_KIND, "keras", int(filters), int(kernel.shape[-2]), arrays, tuple(e.path.lstrip("/") for e in used))
    return cell, count


def _cell(entries: list[_Entry]) -> tuple[StoredCell, int] | None:
    """The cell starting at ``entries[0]`` and how many arrays it takes (2 or 3)."""
    kernel, recurrent = entries[0].array, entries[1].array
    if kernel.ndim > 2:
        return _conv_cell(entries)
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
        recorded = attribute_text(node["vars"].attrs.get("name")) if "vars" in node else None
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
