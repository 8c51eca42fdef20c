"""What a Keras weights file holds, once read: its recurrent cells and layers, and the Keras
that wrote it (whose defaults fill the settings the file does not store).

Filled by :func:`rnnparity.files.hdf5.read_weights_file`; read by
:func:`rnnparity.files.plan.plan_twin`. No h5py and no Keras here.

Names: ``keras_version`` is always Keras's major version, 2 or 3 (as on the twins);
``keras_release`` is the full version string a file records (``"2.2.4"``, ``"2.1.6-tf"``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rnnparity.layout import CUDNN_CLASSES, KERAS_CLASS_NAME, from_cudnn

LAYOUTS = {
    "model": "full model (.h5)",
    "weights": "weights only (.h5)",
    "weights.h5": "weights only (*.weights.h5 layout)",
}
# Keras classes that hold layers rather than compute: a stored config nests layers in them.
MODEL_CLASSES = ("Sequential", "Functional", "Model")
# The kind of a stored ConvLSTM1D/2D/3D cell (its rank is its kernel's, StoredCell.rank).
CONV_KIND = "conv_lstm"


def plain_class_name(class_name: str) -> str:
    """The plain Keras layer that computes what ``class_name`` computes: ``CuDNNLSTM`` -> ``LSTM``
    (any other class is its own)."""
    kind = CUDNN_CLASSES.get(class_name)
    return class_name if kind is None else KERAS_CLASS_NAME[kind]


class WeightsFileError(ValueError):
    """The file cannot be read as Keras weights (the CLI's exit 2)."""


# --------------------------------------------------------------------------- who wrote it
@dataclass(frozen=True)
class WriterDefaults:
    """What the Keras that wrote a file used when a setting was not given."""

    keras_version: int  # which Keras the twin emulates: 2 or 3
    recurrent_activation: str
    reset_after: bool
    source: str  # who wrote the file, in words


_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?(.*)$")


def writer_defaults(keras_release: str | None, layout: str = "model") -> WriterDefaults:
    """The LSTM/GRU defaults of the Keras that wrote a file with ``keras_release``.

    * standalone Keras 2.0 to 2.2: ``recurrent_activation="hard_sigmoid"``, GRU ``reset_after=False``;
    * standalone Keras 2.3: ``"sigmoid"``, ``reset_after=False``;
    * ``tf.keras`` of TensorFlow 1.x (``2.1.6-tf``, ...): as Keras 2.2; ``2.2.4-tf`` was written by
      TensorFlow 1.13 to 2.1 alike, and the TensorFlow 1.x defaults are assumed;
    * ``tf.keras`` 2.3+ (TensorFlow 2), ``tf_keras`` and Keras 3: ``"sigmoid"``, ``reset_after=True``.

    Keras 2 files get a Keras 2 twin (``keras_version=2``: Keras 2's ``hard_sigmoid``), Keras 3
    files a Keras 3 twin. A ``*.weights.h5`` file records no version: Keras 3 is assumed.
    """
    if keras_release is None:
        if layout == "weights.h5":
            return WriterDefaults(3, "sigmoid", True, "tf_keras or Keras 3 (the *.weights.h5 layout records no version)")
        return WriterDefaults(2, "hard_sigmoid", False, "Keras 2.0-2.2 (no keras_version attribute)")
    match = _VERSION.match(keras_release.strip())
    if match is None:
        raise WeightsFileError(f"the file says it was written by Keras {keras_release!r}, which is not a version rnnparity knows")
    major, minor = int(match.group(1)), int(match.group(2))
    patch = int(match.group(3) or 0)
    tf_suffix = "tf" in match.group(4)
    if major == 3:
        return WriterDefaults(3, "sigmoid", True, f"Keras {keras_release}")
    if major != 2:
        raise WeightsFileError(
            f"the file was written by Keras {keras_release}; rnnparity reads files of Keras 2.0 and later "
            "(Keras 1 stored one array per gate)"
        )
    if tf_suffix:
        if (minor, patch) < (2, 4):
            return WriterDefaults(2, "hard_sigmoid", False, f"tf.keras {keras_release} (TensorFlow 1.x)")
        if (minor, patch) == (2, 4):
            return WriterDefaults(
                2,
                "hard_sigmoid",
                False,
                f"tf.keras {keras_release} (TensorFlow 1.13 to 2.1 all write this version; TensorFlow 1.x defaults assumed)",
            )
        return WriterDefaults(2, "sigmoid", True, f"tf.keras {keras_release} (TensorFlow 2)")
    if minor < 3:
        return WriterDefaults(2, "hard_sigmoid", False, f"Keras {keras_release} (standalone Keras < 2.3)")
    if minor == 3:
        return WriterDefaults(2, "sigmoid", False, f"Keras {keras_release} (standalone Keras 2.3)")
    return WriterDefaults(2, "sigmoid", True, f"Keras {keras_release} (tf.keras / tf_keras)")


# --------------------------------------------------------------------------- stored arrays
@dataclass(frozen=True)
class StoredCell:
    """One recurrent cell's arrays exactly as the file stores them. For a ConvLSTM (``kind``
    ``"conv_lstm"``) ``units`` is its ``filters`` and ``input_dim`` its input channels."""

    kind: str  # "lstm", "gru", "simple_rnn" or "conv_lstm"
    layout: str  # "keras", or "cudnn" for CuDNNLSTM / CuDNNGRU weights
    units: int
    input_dim: int
    arrays: tuple[np.ndarray, ...]  # kernel, recurrent_kernel[, bias]
    paths: tuple[str, ...]  # where each array sits in the file

    @property
    def is_conv(self) -> bool:
        return self.kind == CONV_KIND

    @property
    def rank(self) -> int:
        """Spatial axes of a ConvLSTM's kernel (1, 2 or 3); 0 for the other cells."""
        return self.arrays[0].ndim - 2 if self.is_conv else 0

    @property
    def kernel_size(self) -> tuple[int, ...]:
        """A ConvLSTM's kernel_size, from its kernel's shape (empty for the other cells)."""
        return tuple(int(k) for k in self.arrays[0].shape[:-2]) if self.is_conv else ()

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
        if self.is_conv:
            return f"ConvLSTM{self.rank}D"
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
    class_name: str  # LSTM, GRU, SimpleRNN, ConvLSTM1D/2D/3D, CuDNNLSTM, CuDNNGRU, Bidirectional or RNN
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
    """What :func:`rnnparity.files.hdf5.read_weights_file` found."""

    path: str
    layout: str  # "model", "weights" or "weights.h5"
    keras_release: str | None  # the version string the file records
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
