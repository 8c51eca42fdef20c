"""The twin a stored recurrent layer describes: :func:`plan_twin` decides every setting and
says why (:class:`TwinPlan`), :func:`twin_from_weights` builds it.

Each setting comes from, in order: the weights (units, bias, GRU ``reset_after``, the cuDNN
layers' activations; these cannot be overridden), the ``config`` you give, the stored layer
config (full-model files), then the defaults of the Keras that wrote the file
(:func:`rnnparity.files.stored.writer_defaults`). No Keras here.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnnparity.bidirectional import Bidirectional
from rnnparity.files.hdf5 import read_weights_file
from rnnparity.files.stored import StoredCell, StoredLayer, WeightsFile, plain_class_name
from rnnparity.layout import CUDNN_EQUIVALENT, KERAS_CLASS_NAME
from rnnparity.rnn import RNN, TRAINING_ONLY_ARGS
from rnnparity.twin_classes import CONV_TWIN_BY_KERAS_NAME, TWIN_CELL_CLASSES, TWIN_CLASSES

# Settings of Keras's RNN base layer (the rest of a layer's config belongs to its cell).
_RNN_KEYS = ("return_sequences", "return_state", "go_backwards", "stateful", "unroll", "zero_output_for_mask", "time_major")
_LAYER_ONLY_KEYS = ("name", "trainable", "input_shape", "batch_input_shape", "batch_size")
# A ConvLSTM's convolution settings that no weight shows, and Keras's defaults for them.
_CONV_DEFAULTS = {"strides": 1, "padding": "valid", "data_format": "channels_last", "dilation_rate": 1}


# --------------------------------------------------------------------------- the twin
@dataclass
class TwinPlan:
    """The twin :func:`twin_from_weights` builds for a stored layer, and why."""

    layer: StoredLayer
    kind: str  # "lstm", "gru", "simple_rnn" or "conv_lstm" (of every cell of a stack: see cell_settings)
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
            inner = plain_class_name(self.layer.cells[0].class_name)
            return f"{inner}({_brief(cells[0])}) merge_mode={self.wrapper['merge_mode']}"
        return _brief(self.settings)

    @property
    def description(self) -> str:
        """The twin as a constructor call, e.g. ``LSTM(4, recurrent_activation='sigmoid', keras_version=2)``."""
        if self.layer.class_name == "Bidirectional":
            inner = _call(plain_class_name(self.layer.inner_class), self.cell_settings[0])
            return f"Bidirectional({inner}, merge_mode={self.wrapper['merge_mode']!r})"
        if self.layer.class_name == "RNN":
            cells = ", ".join(_call(f"{KERAS_CLASS_NAME[c.kind]}Cell", s) for c, s in zip(self.layer.cells, self.cell_settings))
            inner_cells = cells if len(self.cell_settings) == 1 else f"[{cells}]"
            return _call("RNN", self.settings, first=inner_cells)
        return _call(plain_class_name(self.layer.cells[0].class_name), self.settings)

    def build(self) -> Any:
        """A new twin with these settings and the converted weights."""
        layer = self.layer
        if layer.class_name == "Bidirectional":
            layer_class = twin_class(layer.cells[0])
            forward = layer_class(**self.cell_settings[0])
            backward = layer_class(**self.cell_settings[1]) if self.wrapper.get("backward_layer") else None
            twin: Any = Bidirectional(
                forward, merge_mode=self.wrapper["merge_mode"], backward_layer=backward, dtype=self.wrapper["dtype"]
            )
        elif layer.class_name == "RNN":
            cells = [TWIN_CELL_CLASSES[c.kind](**s) for c, s in zip(layer.cells, self.cell_settings)]
            twin = RNN(cells[0] if len(cells) == 1 else cells, **self.settings)
        else:
            twin = twin_class(layer.cells[0])(**self.settings)
        twin.set_weights(self.weights)
        return twin


def _brief(settings: Mapping[str, Any], layer_only: bool = False) -> str:
    if layer_only:
        parts = []
    elif "filters" in settings:  # a ConvLSTM
        parts = [f"filters={settings.get('filters')}", f"kernel_size={_sizes(settings.get('kernel_size'))}"]
        for key, default in _CONV_DEFAULTS.items():
            value = settings.get(key, default)
            same = value == default or (isinstance(value, (list, tuple)) and all(v == default for v in value))
            if not same:
                parts.append(f"{key}={_sizes(value)}")
    else:
        parts = [f"units={settings.get('units')}"]
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


def _sizes(value: Any) -> str:
    """A ConvLSTM setting, briefly: a size per axis ``[3, 2]`` reads ``3x2``; anything else as it is."""
    if isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value)
    return str(value)


def _call(name: str, settings: Mapping[str, Any], first: str | None = None) -> str:
    shown = [first] if first else []
    shown += [f"{settings['units']}"] if "units" in settings else []
    if "filters" in settings:  # a ConvLSTM: filters, kernel_size, then its convolution settings
        shown += [f"{settings['filters']}", repr(tuple(settings["kernel_size"]))]
        shown += [f"{key}={settings[key]!r}" for key in _CONV_DEFAULTS if key in settings]
    for key in ("activation", "recurrent_activation", "use_bias", "reset_after", *_RNN_KEYS, "dtype", "keras_version"):
        if key in settings and key not in ("unroll", "time_major"):
            value = settings[key]
            if key in _RNN_KEYS and value is False:
                continue
            shown.append(f"{key}={getattr(value, '__name__', None) or value!r}" if callable(value) else f"{key}={value!r}")
    if settings.get("backend", "tensorflow") != "tensorflow":
        shown.append(f"backend={settings['backend']!r}")
    return f"{name}({', '.join(shown)})"


def twin_class(cell: StoredCell) -> Any:
    """The twin layer class of a stored cell: ``LSTM``, ``GRU``, ``SimpleRNN``, ``ConvLSTM1D/2D/3D``."""
    if cell.is_conv:
        return CONV_TWIN_BY_KERAS_NAME[cell.class_name]
    return TWIN_CLASSES[cell.kind]


def _twin_keys(cell: StoredCell) -> set[str]:
    """Every argument the twin layer of ``cell`` takes (its parameters and the training-only ones)."""
    parameters = inspect.signature(twin_class(cell)).parameters
    return {n for n, p in parameters.items() if p.kind is not inspect.Parameter.VAR_KEYWORD} | set(TRAINING_ONLY_ARGS)


def plan_twin(file: WeightsFile, layer: StoredLayer, config: Mapping[str, Any] | None = None) -> TwinPlan:
    """Decide every setting of ``layer``'s twin: weights first, then ``config``, then the stored
    layer config, then the writer's defaults. Raises ``ValueError`` when ``config`` (or the
    stored config) contradicts the weights, ``TypeError`` for an argument no twin takes."""
    user = dict(config or {})
    notes: list[str] = []
    kind = layer.cells[0].kind
    writer = file.writer
    keras_version = user.pop("keras_version", writer.keras_version)
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
    origin = "as the file" if keras_version == file.writer.keras_version else "given; not the file's"
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
        accepted |= _twin_keys(cell)
    if layer.class_name == "Bidirectional":
        accepted.add("merge_mode")
    return accepted


def _check_user_keys(user: Mapping[str, Any], kind: str, layer: StoredLayer) -> None:
    unknown = sorted(set(user) - accepted_keys(layer))
    if unknown:
        main = sorted(accepted_keys(layer) - set(TRAINING_ONLY_ARGS) - {"self"})
        raise TypeError(
            f"config has key(s) {unknown} that a {plain_class_name(layer.inner_class)} twin does not take; accepted: "
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


@dataclass(frozen=True)
class _Given:
    """Where one cell's settings come from, for the error messages and notes."""

    layer: StoredLayer
    cell: StoredCell
    stored: Mapping[str, Any]  # the stored layer (or cell) config
    user: Mapping[str, Any]  # the config the caller gave
    where: str  # "" for a layer, "backward " or "cell 1: " for a part of one

    def weights_fix(self, settings: dict[str, Any], key: str, value: Any, why: str) -> None:
        """Set ``key`` to what the weights say, refusing a given or stored value that differs
        (a ConvLSTM's ``kernel_size`` compares as a tuple per axis: ``3`` is ``(3, 3)``)."""
        for source, given in (("config", self.user), ("the stored config", self.stored)):
            if key in given and _per_axis(given[key], value) != value:
                raise ValueError(
                    f"{self.where}{key}={given[key]!r} (from {source}) contradicts the weights of {self.layer.name!r}: {why}"
                )
        settings[key] = value


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
    known = _twin_keys(cell)
    if cell_only:
        known -= {*_RNN_KEYS, "backend", "time_major"}
    settings: dict[str, Any] = {key: value for key, value in stored.items() if key in known}
    ignored = sorted(k for k in stored if k not in known)
    if ignored:
        notes.append(f"{where}stored settings no twin uses, ignored: {ignored}")
    given = _Given(layer, cell, stored, user, where)
    _fix_shapes(settings, given)
    settings.update({k: v for k, v in user.items() if k not in ("units", "use_bias", "filters", "kernel_size")})
    if cell.layout == "cudnn":
        _fix_cudnn(settings, given, notes)
    elif cell.is_conv:
        _fill_conv_defaults(settings, given, file, keras_version, notes)
    else:
        _fill_writer_defaults(settings, given, file, notes)
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


def _per_axis(given: Any, value: Any) -> Any:
    """``given`` in the form of ``value``: a size per axis (a tuple) when ``value`` is one."""
    if not isinstance(value, tuple):
        return given
    if isinstance(given, int) and not isinstance(given, bool):
        return (given,) * len(value)
    if isinstance(given, (list, tuple)):
        return tuple(given)
    return given


def _fix_shapes(settings: dict[str, Any], given: _Given) -> None:
    """``units`` (a ConvLSTM's ``filters`` and ``kernel_size``) and ``use_bias`` from the arrays;
    a given ``input_dim`` must fit the kernel."""
    cell, user = given.cell, given.user
    if cell.is_conv:
        given.weights_fix(
            settings, "filters", cell.units, f"recurrent_kernel has shape {cell.shapes[1]}, so filters={cell.units}"
        )
        given.weights_fix(
            settings, "kernel_size", cell.kernel_size, f"kernel has shape {cell.shapes[0]}, so kernel_size={cell.kernel_size}"
        )
        stores = f"a bias {cell.shapes[2]}" if cell.use_bias else "no bias"
        given.weights_fix(settings, "use_bias", cell.use_bias, f"it stores {stores}")
        return
    given.weights_fix(settings, "units", cell.units, f"recurrent_kernel has shape {cell.shapes[1]}, so units={cell.units}")
    if "input_dim" in user and user["input_dim"] != cell.input_dim:
        raise ValueError(
            f"{given.where}input_dim={user['input_dim']!r} (from config) contradicts the weights of {given.layer.name!r}: "
            f"kernel has shape {cell.shapes[0]}, so input_dim={cell.input_dim}"
        )
    stores = f"a bias {cell.shapes[2]}" if cell.use_bias else "no bias"
    given.weights_fix(settings, "use_bias", cell.use_bias, f"it stores {stores}")


def _fix_cudnn(settings: dict[str, Any], given: _Given, notes: list[str]) -> None:
    """A cuDNN layer always computes the same activations (and a GRU ``reset_after=True``)."""
    cell, user, where = given.cell, given.user, given.where
    class_name = cell.class_name
    fixed: dict[str, Any] = {"activation": "tanh", "recurrent_activation": "sigmoid"}
    if cell.kind == "gru":
        fixed["reset_after"] = True
    for key, value in fixed.items():
        if key in user and user[key] != value:
            raise ValueError(
                f"{where}{key}={user[key]!r} (from config) contradicts {class_name}, which always computes "
                f"{CUDNN_EQUIVALENT[class_name]}"
            )
        settings[key] = value
    if not where or where == "cell 0: ":
        if cell.kind == "lstm":
            recurrent = "transposed, the input and recurrent biases summed"
        else:
            recurrent = "transposed, the bias read as 2 rows"
        notes.append(
            f"weights converted from {class_name} to {CUDNN_EQUIVALENT[class_name]}, as Keras converts them on "
            "loading: each gate's kernel block re-read as (units, input_dim) and transposed, each recurrent block " + recurrent
        )


def _fill_writer_defaults(settings: dict[str, Any], given: _Given, file: WeightsFile, notes: list[str]) -> None:
    """GRU ``reset_after`` from the bias, and what is still missing from the writer's defaults."""
    cell, where, writer = given.cell, given.where, file.writer
    if cell.kind == "gru":
        if cell.reset_after is not None:
            why = f"the bias has shape {cell.shapes[2]}, so reset_after={cell.reset_after}"
            given.weights_fix(settings, "reset_after", cell.reset_after, why)
        elif "reset_after" not in settings:
            settings["reset_after"] = writer.reset_after
            notes.append(
                f"{where}reset_after={writer.reset_after}: a GRU without bias does not show it; the default of {writer.source}"
            )
    if cell.kind != "simple_rnn" and "recurrent_activation" not in settings:
        settings["recurrent_activation"] = writer.recurrent_activation
        notes.append(f"{where}recurrent_activation={writer.recurrent_activation!r}: not stored; the default of {writer.source}")
    if "activation" not in settings:
        settings["activation"] = "tanh"
        if not given.stored:
            notes.append(f"{where}activation='tanh': not stored; the Keras default")


def _fill_conv_defaults(settings: dict[str, Any], given: _Given, file: WeightsFile, keras_version: int, notes: list[str]) -> None:
    """A ConvLSTM's settings that neither the weights nor the config give: every Keras 2 made
    its ConvLSTM layers with ``recurrent_activation='hard_sigmoid'``, Keras 3 with ``sigmoid``
    (the Keras that wrote the file; the emulated one, ``keras_version``, when the file does not
    say); strides, padding, data_format and dilation_rate have Keras's defaults."""
    where, writer = given.where, file.writer
    if "recurrent_activation" not in settings:
        version = writer.keras_version if file.keras_release else keras_version
        default = "hard_sigmoid" if version == 2 else "sigmoid"
        settings["recurrent_activation"] = default
        source = writer.source if file.keras_release else f"Keras {version} (the file records no version)"
        notes.append(f"{where}recurrent_activation={default!r}: not stored; the ConvLSTM default of {source}")
    missing = {key: value for key, value in _CONV_DEFAULTS.items() if key not in settings}
    settings.update(missing)
    if missing and not where:
        shown = ", ".join(f"{key}={value!r}" for key, value in missing.items())
        notes.append(f"{shown}: not stored; the Keras defaults (the weights do not show them; give yours if the layer set them)")
    if "activation" not in settings:
        settings["activation"] = "tanh"
        if not given.stored:
            notes.append(f"{where}activation='tanh': not stored; the Keras default")


def _array_dtype(cell: StoredCell) -> str:
    name = np.dtype(cell.arrays[0].dtype).name
    return name if name in ("float32", "float64") else "float32"


def twin_from_weights(path: str | os.PathLike[str], layer_name: str, **config: Any) -> Any:
    """A twin of the recurrent layer ``layer_name`` stored in the HDF5 file ``path``, with its
    weights converted to the plain layer's layout (CuDNN weights as Keras converts them).

    Units, input dim and the layer kind come from the stored shapes (and class); everything
    else from ``config``, else the stored model config (full-model files), else the defaults
    of the Keras version that wrote the file (see :func:`rnnparity.files.stored.writer_defaults`). The twin emulates
    that Keras (``keras_version=2`` for Keras 2 files) unless ``config`` says otherwise.
    ``rnnparity explain FILE.h5`` prints what it assumes. Reads the file with h5py; no Keras.
    """
    file = read_weights_file(path)
    return plan_twin(file, file.layer(layer_name), config).build()
