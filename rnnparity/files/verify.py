"""``rnnparity verify MODEL``: run a saved Keras model and check every recurrent layer's twin.

Steps, each its own function:

1. :func:`read_model_file` reads the stored config *without Keras*: ``config.json`` and
   ``metadata.json`` from a ``.keras`` archive, or the ``model_config`` / ``keras_version``
   attributes of an HDF5 file. The Keras that wrote the file picks the Keras that loads it
   (``keras_version`` 2.x: ``tf_keras``; 3.x: ``keras``), never the file name. ``CuDNNLSTM``
   and ``CuDNNGRU`` (GPU-only) are replaced by the plain layers that compute the same
   (:func:`rnnparity.files.legacy.plain_model_config`) and Keras converts their weights on loading.
2. :func:`scan_config` refuses, before anything is deserialized, ``Lambda`` layers (whose
   stored code ``tf_keras`` would run even in safe mode), serialized Python functions, and
   any class that is not one of the loading Keras's own.
3. :func:`load_model` loads it with ``compile=False`` (and ``safe_mode=True``).
4. :func:`make_inputs` builds a seeded random batch (or takes the user's arrays). Axes of
   unknown size get ``batch_size`` (axis 0), ``timesteps`` (axis 1) and ``DEFAULT_OTHER_SIZE``
   (any other axis); integer inputs draw token ids below the
   smallest ``Embedding`` vocabulary with right padding of id 0 in some rows, and when the
   model has a ``Masking`` layer, padded steps of float inputs hold its ``mask_value`` so
   masks are exercised.
5. :func:`run_model` calls the model once while every recurrent layer's ``call`` records
   exactly what Keras gave it (input, mask, initial state) and what it returned, after a
   twin has been built from the layer by :func:`rnnparity.from_keras`; the twin then runs on
   the same arrays and every output and state is compared.

For an HDF5 file, every recurrent layer's weights are also read without Keras
(:mod:`rnnparity.files.legacy`) and must equal, bit for bit, what Keras loaded.

A weights-only file (``save_weights``: legacy ``.h5`` or ``*.weights.h5``) has no model to
run: :func:`verify_weights` checks each recurrent layer on its own, its twin from
:func:`rnnparity.files.legacy.twin_from_weights` against the Keras layer that Keras loads the same
weights into.

Loading problems raise :class:`ModelFileError` (the CLI's exit 2).
"""

from __future__ import annotations

import inspect
import json
import os
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
DEFAULT_BATCH_SIZE = 2
DEFAULT_TIMESTEPS = 8
DEFAULT_SEED = 0
# Any other input axis of unknown size (an image axis inside TimeDistributed, ...).
DEFAULT_OTHER_SIZE = 8

# Layer classes the twins cover (from_keras), and recurrent classes they do not.
TWINNED_CLASSES = ("LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional")
UNSUPPORTED_RECURRENT = {
    "ConvLSTM1D": "convolutional recurrent layers have no twin",
    "ConvLSTM2D": "convolutional recurrent layers have no twin",
    "ConvLSTM3D": "convolutional recurrent layers have no twin",
}
# Class names that hold code, or values, rather than name a Keras class.
REFUSED_CLASSES = {
    "Lambda": "a Lambda layer stores Python code, which loading would run",
    "__lambda__": "a serialized Python lambda, which loading would run",
}
DATA_CLASSES = {"__keras_tensor__", "__tensor__", "__numpy__", "__bytes__", "__typespec__", "__slice__", "__ellipsis__"}
MODEL_CLASSES = {"Functional", "Sequential", "Model", "DTypePolicy", "FloatDTypePolicy", "Policy"}


class ModelFileError(Exception):
    """The file cannot be read, is unsafe to load, or Keras cannot load it (exit 2)."""


@dataclass
class ModelFile:
    path: str
    format: str  # "keras" (zip archive) or "h5"
    config: dict[str, Any]
    keras_version: str | None
    flavor: str  # "keras3" or "tf-keras"
    replaced: list[str] = field(default_factory=list)  # CuDNN layers loaded as their plain equivalents


def read_model_file(path: str | os.PathLike[str]) -> ModelFile:
    """The stored model config and the Keras that wrote it; no Keras import."""
    file = Path(path)
    if not file.exists():
        raise ModelFileError(f"{file}: no such file")
    if file.is_dir():
        raise ModelFileError(
            f"{file} is a directory; verify takes a .keras or .h5 model file (a SavedModel directory is not supported)"
        )
    with open(file, "rb") as handle:
        head = handle.read(8)
    if zipfile.is_zipfile(file):
        return _read_archive(file)
    if head == HDF5_SIGNATURE:
        return _read_hdf5(file)
    raise ModelFileError(f"{file} is not a Keras model file (neither a .keras zip archive nor an HDF5 file)")


def _read_archive(file: Path) -> ModelFile:
    try:
        with zipfile.ZipFile(file) as archive:
            names = set(archive.namelist())
            if "config.json" not in names:
                raise ModelFileError(f"{file} is a zip archive without config.json, so not a saved Keras model")
            config = json.loads(archive.read("config.json"))
            metadata = json.loads(archive.read("metadata.json")) if "metadata.json" in names else {}
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{file}: corrupted Keras archive ({exc})") from None
    version = metadata.get("keras_version")
    return ModelFile(str(file), "keras", _require_dict(config, file), version, _flavor_of(version, default="keras3"))


def is_weights_only(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an HDF5 file of weights without a model (``save_weights``)."""
    from rnnparity.files import legacy

    file = Path(path)
    if not file.is_file() or not legacy.is_hdf5(file):
        return False
    h5py = _h5py()
    try:
        with h5py.File(file, "r") as h5:
            return "model_config" not in h5.attrs
    except OSError:
        return False  # read_model_file reports the corruption


def _h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise ModelFileError("reading .h5 files needs h5py: pip install 'rnnparity[h5]'") from None
    return h5py


def _read_hdf5(file: Path) -> ModelFile:
    from rnnparity.files.legacy import _text

    h5py = _h5py()
    try:
        with h5py.File(file, "r") as h5:
            raw = _text(h5.attrs.get("model_config"))
            version = _text(h5.attrs.get("keras_version"))
            if version is None and "model_weights" in h5:
                version = _text(h5["model_weights"].attrs.get("keras_version"))
    except OSError as exc:
        raise ModelFileError(f"{file}: corrupted HDF5 file ({exc})") from None
    if raw is None:
        raise ModelFileError(f"{file} holds weights only (no model_config attribute); verify checks it layer by layer")
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{file}: its model_config is not valid JSON ({exc})") from None
    if version is None:
        raise ModelFileError(f"{file} does not record which Keras wrote it (no keras_version attribute)")
    return ModelFile(str(file), "h5", _require_dict(config, file), str(version), _flavor_of(str(version), default=None))


def _require_dict(config: Any, file: Path) -> dict[str, Any]:
    if not isinstance(config, dict) or "class_name" not in config:
        raise ModelFileError(f"{file}: the stored config does not describe a Keras model")
    return config


def _flavor_of(version: str | None, default: str | None) -> str:
    if version is None:
        if default is None:
            raise ModelFileError("the file does not say which Keras wrote it")
        return default
    major = version.split(".")[0]
    if major == "3":
        return "keras3"
    if major in ("2", "1"):
        return "tf-keras"
    raise ModelFileError(f"the file was written by Keras {version}, which rnnparity does not know")


# --------------------------------------------------------------------------- safety scan
def known_class_names(module: Any) -> set[str]:
    """Class names a Keras module (``keras`` or ``tf_keras``) can deserialize by itself."""
    names = set(MODEL_CLASSES)
    for namespace in ("layers", "initializers", "regularizers", "constraints"):
        names.update(n for n in dir(getattr(module, namespace)) if not n.startswith("_"))
    return names


def scan_config(config: Any, known: set[str], where: str = "model") -> None:
    """Raise :class:`ModelFileError` for the first unsafe or unknown object in ``config``."""
    if isinstance(config, list):
        for item in config:
            scan_config(item, known, where)
        return
    if not isinstance(config, dict):
        return
    class_name = config.get("class_name")
    if isinstance(class_name, str):
        inner = config.get("config")
        name = inner.get("name") if isinstance(inner, dict) else None
        label = f"{class_name} {name!r}" if isinstance(name, str) else class_name
        here = f"{where} > {label}" if where else label
        if class_name in REFUSED_CLASSES:
            raise ModelFileError(f"refused to load: {here}: {REFUSED_CLASSES[class_name]}")
        module = config.get("module")
        registered = config.get("registered_name")
        if class_name == "function":
            if not (isinstance(module, str) and module.startswith(("keras", "tf_keras"))):
                raise ModelFileError(f"refused to load: {here}: a serialized function from module {module!r}, not Keras")
        elif class_name not in DATA_CLASSES:
            if isinstance(module, str) and not module.startswith(("keras", "tf_keras")):
                raise ModelFileError(f"refused to load: {here}: a custom class from module {module!r}")
            if isinstance(registered, str) and registered != class_name:
                raise ModelFileError(f"refused to load: {here}: a registered custom object {registered!r}")
            own_module = isinstance(module, str) and module.split(".")[0] in ("keras", "tf_keras")
            if class_name not in known and not own_module:
                # Keras 3 names its own classes' modules (keras.src.ops.numpy for an op in
                # a functional graph); without a module, the class must be a public one.
                raise ModelFileError(f"refused to load: {here}: unknown class {class_name!r} (not part of this Keras)")
        where = here
    for key, value in config.items():
        if key in ("compile_config", "training_config"):
            continue  # loaded with compile=False: never deserialized
        scan_config(value, known, where)


def _first_line(exc: BaseException) -> str:
    """The reason line of an exception's message (Keras's messages run to pages). Keras 3
    opens with "Exception encountered when calling X.call()." and gives the reason on a
    later line: that headline is skipped."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Exception encountered when calling"):
        return lines[1]
    return lines[0] if lines else type(exc).__name__


def load_model(model_file: ModelFile) -> tuple[Any, Any]:
    """``(KerasHandle, model)``: the file scanned, then loaded by the Keras that wrote it."""
    from rnnparity.suite import keras_adapter

    try:
        handle = keras_adapter.load_keras(model_file.flavor)
    except ImportError as exc:
        wanted = "tf-keras (Keras 2)" if model_file.flavor == "tf-keras" else "keras 3"
        raise ModelFileError(
            f"{model_file.path} was written by Keras {model_file.keras_version}; loading it needs {wanted}: {exc}"
        ) from None
    config = model_file.config
    if model_file.format == "h5":
        from rnnparity.files.legacy import plain_model_config

        config, model_file.replaced = plain_model_config(config)
    scan_config(config, known_class_names(handle.module) | keras_adapter.op_class_names(handle), "")
    try:
        if model_file.replaced:
            model = keras_adapter.load_model_from_config(handle, model_file.path, config)
        else:
            model = keras_adapter.load_saved_model(handle, model_file.path)
    except Exception as exc:  # Keras raises many types for unloadable files
        raise ModelFileError(f"{handle.describe()} could not load {model_file.path}: {_first_line(exc)}") from None
    return handle, model


# --------------------------------------------------------------------------- inputs
@dataclass
class InputSpec:
    name: str
    shape: tuple[int | None, ...]
    dtype: str


def input_specs(model: Any) -> list[InputSpec]:
    specs = []
    for index, tensor in enumerate(model.inputs):
        shape = tuple(None if d is None else int(d) for d in tensor.shape)
        dtype = getattr(tensor.dtype, "name", tensor.dtype)
        name = getattr(tensor, "name", None) or f"input_{index}"
        specs.append(InputSpec(str(name).split(":")[0], shape, str(dtype)))
    return specs


def _layers_of(model: Any) -> list[Any]:
    """Every layer in ``model``, nested models included (not the inside of wrappers)."""
    found = []
    for layer in getattr(model, "layers", []):
        found.append(layer)
        if hasattr(layer, "layers") and type(layer).__name__ in ("Functional", "Sequential", "Model"):
            found.extend(_layers_of(layer))
    return found


def make_inputs(
    model: Any,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    timesteps: int = DEFAULT_TIMESTEPS,
    seed: int = DEFAULT_SEED,
) -> list[np.ndarray]:
    """A seeded random batch for every model input (see the module docstring)."""
    rng = np.random.default_rng(seed)
    layers = _layers_of(model)
    vocab = [int(layer.input_dim) for layer in layers if type(layer).__name__ == "Embedding"]
    masking = [float(layer.mask_value) for layer in layers if type(layer).__name__ == "Masking"]
    arrays = []
    for spec in input_specs(model):
        shape = []
        for axis, size in enumerate(spec.shape):
            if size is not None:
                shape.append(size)
            else:
                shape.append(batch_size if axis == 0 else timesteps if axis == 1 else DEFAULT_OTHER_SIZE)
        lengths = None
        if len(shape) >= 2 and shape[0] >= 2 and shape[1] >= 2:
            # Right padding: row 0 keeps every step, the others a random length >= 1.
            lengths = rng.integers(1, shape[1] + 1, size=shape[0])
            lengths[0] = shape[1]
        if np.issubdtype(np.dtype(spec.dtype), np.integer):
            high = min(vocab) if vocab else 10
            values = rng.integers(1, max(high, 2), size=shape).astype(spec.dtype)
            if lengths is not None and vocab:
                values[np.arange(shape[1])[None, :] >= lengths[:, None]] = 0
        else:
            values = rng.normal(0.0, 1.5, size=shape).astype(spec.dtype)
            if lengths is not None and masking:
                values[np.arange(shape[1])[None, :] >= lengths[:, None]] = masking[0]
        arrays.append(values)
    return arrays


def read_inputs(path: str, model: Any) -> list[np.ndarray]:
    """Arrays from a ``.npy`` (one input) or ``.npz`` (by input name, else in order)."""
    specs = input_specs(model)
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"--inputs {path}: cannot read it as .npy/.npz ({exc})") from None
    if isinstance(loaded, np.ndarray):
        arrays = [loaded]
    else:
        with loaded:
            keys = list(loaded.keys())
            if all(spec.name in keys for spec in specs):
                arrays = [loaded[spec.name] for spec in specs]
            else:
                arrays = [loaded[key] for key in keys]
    if len(arrays) != len(specs):
        raise ModelFileError(
            f"--inputs {path} holds {len(arrays)} array(s); the model has {len(specs)} input(s) {[s.name for s in specs]}"
        )
    for spec, array in zip(specs, arrays):
        fits = len(array.shape) == len(spec.shape) and all(d is None or d == a for d, a in zip(spec.shape, array.shape))
        if not fits:
            raise ModelFileError(
                f"--inputs {path}: input {spec.name!r} has shape {tuple(array.shape)}; the model expects "
                f"{tuple(spec.shape)} (None: any size), rank {len(spec.shape)}"
            )
    return arrays


# --------------------------------------------------------------------------- the run
@dataclass
class LayerResult:
    name: str
    type: str
    summary: str
    status: str  # "ok", "MISMATCH", "skipped", "not called"
    max_abs: float | None = None
    max_rel: float | None = None
    tolerance_used: float | None = None
    rtol: float | None = None  # the tolerance the twin was held to: |twin - keras| <= atol + rtol * |keras|
    atol: float | None = None
    detail: str = ""
    calls: int = 0
    file_weights: str = ""  # HDF5 files: whether the weights read without Keras equal Keras's ("identical")
    assumptions: list[str] = field(default_factory=list)  # weights-only files: what the twin assumed


@dataclass
class VerifyReport:
    model: str
    keras: str
    inputs: list[dict[str, Any]]
    layers: list[LayerResult]
    other_layers: int
    seed: int | None
    exports: list[dict[str, Any]] = field(default_factory=list)
    weights_only: bool = False  # each recurrent layer checked alone; there is no model to run

    @property
    def ok(self) -> bool:
        return all(layer.status != "MISMATCH" for layer in self.layers)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


@dataclass
class _Capture:
    layer: Any
    twin: Any
    inputs: np.ndarray
    mask: np.ndarray | None
    initial_state: Any
    keras_result: Any = None


def is_recurrent(layer: Any) -> bool:
    name = type(layer).__name__
    if name in TWINNED_CLASSES or name in UNSUPPORTED_RECURRENT:
        return True
    return any(base.__name__ in ("RNN", "Bidirectional") for base in type(layer).__mro__[1:])


def _summary(layer: Any) -> str:
    try:
        config = layer.get_config()
    except Exception:  # a layer that cannot describe itself still gets a row
        return ""
    if type(layer).__name__ == "Bidirectional":
        inner = config.get("layer", {})
        inner_name = inner.get("class_name", "?")
        inner_config = inner.get("config", {})
        return f"{inner_name}({_options(inner_config)}) merge_mode={config.get('merge_mode')}"
    if type(layer).__name__ == "RNN":
        cell = config.get("cell", {})
        cells = cell.get("config", {}).get("cells") if cell.get("class_name") == "StackedRNNCells" else [cell]
        described = ", ".join(f"{c.get('class_name')}({c.get('config', {}).get('units')})" for c in cells or [])
        return f"cells=[{described}] {_options(config)}"
    return _options(config)


def _options(config: dict[str, Any]) -> str:
    parts = []
    if "units" in config:
        parts.append(f"units={config['units']}")
    for key in ("return_sequences", "return_state", "go_backwards", "stateful"):
        if config.get(key):
            parts.append(key)
    if config.get("reset_after") is False:
        parts.append("reset_after=False")
    for key, default in (("activation", "tanh"), ("recurrent_activation", "sigmoid")):
        if key in config and config[key] != default:
            parts.append(f"{key}={config[key]}")
    if config.get("use_bias") is False:
        parts.append("use_bias=False")
    return " ".join(parts)


def _arguments(original: Any, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    try:
        bound = inspect.signature(original).bind(*args, **kwargs)
    except TypeError:
        return {"inputs": args[0] if args else None, **kwargs}
    values = dict(bound.arguments)
    values.update(values.pop("kwargs", {}) or {})
    return values


def run_model(handle: Any, model: Any, inputs: list[np.ndarray]) -> tuple[list[LayerResult], list[_Capture], int]:
    """Call ``model`` once with every recurrent layer recording its calls; compare twins."""
    from rnnparity.compare import compare, tolerances
    from rnnparity.suite import keras_adapter
    from rnnparity.suite.known_differences import tolerance_for

    layers = _layers_of(model)
    recurrent = [layer for layer in layers if is_recurrent(layer)]
    results: dict[int, LayerResult] = {}
    captures: dict[int, list[_Capture]] = {}
    patched = []
    for layer in recurrent:
        row = LayerResult(layer.name, type(layer).__name__, _summary(layer), "not called")
        results[id(layer)] = row
        reason = _unsupported_reason(layer)
        if reason:
            row.status, row.detail = "skipped", reason
            continue
        captures[id(layer)] = []
        original = layer.call

        def recording(*args: Any, keras_layer: Any = layer, original: Any = original, **kwargs: Any) -> Any:
            values = _arguments(original, args, kwargs)
            sequence = values.get("sequences", values.get("inputs"))
            twin = _twin_or_reason(keras_layer)
            outcome = original(*args, **kwargs)
            if isinstance(twin, str):
                results[id(keras_layer)].status, results[id(keras_layer)].detail = "skipped", twin
                return outcome
            mask = values.get("mask")
            initial_state = values.get("initial_state")
            captures[id(keras_layer)].append(
                _Capture(
                    keras_layer,
                    twin,
                    keras_adapter.to_numpy(sequence),
                    None if mask is None else keras_adapter.to_numpy(mask).astype(bool),
                    None if initial_state is None else keras_adapter.nested_to_numpy(initial_state),
                    keras_adapter.nested_to_numpy(outcome),
                )
            )
            return outcome

        layer.call = recording
        patched.append(layer)
    try:
        model(inputs if len(inputs) > 1 else inputs[0], training=False)
    finally:
        for layer in patched:
            _restore_call(layer)

    ordered: list[_Capture] = []
    for layer in recurrent:
        row = results[id(layer)]
        layer_captures = captures.get(id(layer), [])
        if not layer_captures or row.status == "skipped":
            continue
        row.calls = len(layer_captures)
        worst_abs = worst_rel = worst_used = 0.0
        row.status = "ok"
        for number, capture in enumerate(layer_captures):
            ordered.append(capture)
            dtype = capture.twin.dtype.name
            rtol, atol = tolerance_for(dtype, handle.backend)
            row.rtol, row.atol = tolerances(dtype, rtol, atol)
            actual = capture.twin(capture.inputs, initial_state=capture.initial_state, mask=capture.mask)
            comparison = compare(capture.keras_result, actual, rtol=rtol, atol=atol, context=f"{layer.name} call {number}")
            worst_abs = max(worst_abs, comparison.max_abs)
            worst_rel = max(worst_rel, comparison.max_rel)
            worst_used = max(worst_used, comparison.tolerance_used)
            if not comparison.ok and row.status == "ok":
                row.status, row.detail = "MISMATCH", comparison.message
        row.max_abs, row.max_rel, row.tolerance_used = worst_abs, worst_rel, worst_used
    other = len([layer for layer in layers if not is_recurrent(layer) and type(layer).__name__ != "InputLayer"])
    return [results[id(layer)] for layer in recurrent], ordered, other


def _restore_call(layer: Any) -> None:
    try:
        del layer.call  # back to the class's own method
    except AttributeError:
        layer.call = type(layer).call.__get__(layer)


def _unsupported_reason(layer: Any) -> str:
    name = type(layer).__name__
    if name in UNSUPPORTED_RECURRENT:
        return UNSUPPORTED_RECURRENT[name]
    if name not in TWINNED_CLASSES:
        return f"{name} is a custom recurrent class; only {list(TWINNED_CLASSES)} have twins"
    return ""


def _twin_or_reason(layer: Any) -> Any:
    from rnnparity.suite.keras_adapter import from_keras

    try:
        return from_keras(layer)
    except (TypeError, ValueError) as exc:
        return str(exc)


def explained_cells(model: Any) -> list[tuple[str, str, tuple[str, int, int, bool, bool]]]:
    """For ``rnnparity explain MODEL``: per recurrent layer with a twin, each cell it runs,
    as ``(layer name, which part, (kind, units, input_dim, reset_after, use_bias))``."""
    from rnnparity.bidirectional import Bidirectional
    from rnnparity.stacked import StackedRNNCells

    found = []
    for layer in _layers_of(model):
        if not is_recurrent(layer) or _unsupported_reason(layer):
            continue
        twin = _twin_or_reason(layer)
        if isinstance(twin, str):
            continue
        if isinstance(twin, Bidirectional):
            wrapped = [("forward", twin.forward_layer), ("backward", twin.backward_layer)]
        else:
            wrapped = [("", twin)]
        for direction, recurrent_layer in wrapped:
            cell = recurrent_layer.cell
            cells = list(enumerate(cell.cells)) if isinstance(cell, StackedRNNCells) else [(None, cell)]
            for index, one in cells:
                cell_class = type(one).__name__.removesuffix("Cell")
                words = [type(layer).__name__, direction, "" if index is None else f"cell {index}"]
                if cell_class != type(layer).__name__:  # "LSTM", not "LSTM LSTM"
                    words.append(cell_class)
                part = " ".join(w for w in words if w)
                settings = (str(one.kind), int(one.units), int(one.input_dim or 0), bool(getattr(one, "reset_after", True)))
                found.append((str(layer.name), part, (*settings, bool(one.use_bias))))
    return found


def verify(
    path: str,
    *,
    inputs_path: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    timesteps: int = DEFAULT_TIMESTEPS,
    seed: int = DEFAULT_SEED,
    export_dir: str | None = None,
    layers: list[str] | None = None,
    overrides: dict[str | None, dict[str, Any]] | None = None,
) -> VerifyReport:
    """Everything ``rnnparity verify`` does, returned as a report. A weights-only file goes to
    :func:`verify_weights` (``layers`` and ``overrides`` apply to those only)."""
    if is_weights_only(path):
        if inputs_path:
            raise ModelFileError(
                f"{path} holds weights only: each recurrent layer gets its own random input; --inputs is for whole models"
            )
        return verify_weights(
            path,
            layers=layers,
            overrides=overrides,
            batch_size=batch_size,
            timesteps=timesteps,
            seed=seed,
            export_dir=export_dir,
        )
    model_file = read_model_file(path)
    if layers or overrides:
        raise ModelFileError(
            f"{path} is a whole model: it stores every layer's settings; --layer and --set are for weights-only files"
        )
    handle, model = load_model(model_file)
    inputs = (
        read_inputs(inputs_path, model)
        if inputs_path
        else make_inputs(model, batch_size=batch_size, timesteps=timesteps, seed=seed)
    )
    try:
        rows, captures, other = run_model(handle, model, inputs)
    except ModelFileError:
        raise
    except Exception as exc:  # the model itself failed on these inputs
        raise ModelFileError(f"the model could not run on the inputs: {_first_line(exc)}") from None
    if model_file.format == "h5":
        check_file_weights(model_file.path, model, rows)
    report = VerifyReport(
        model=str(path),
        keras=handle.describe(),
        inputs=[
            {"name": spec.name, "shape": list(array.shape), "dtype": str(array.dtype)}
            for spec, array in zip(input_specs(model), inputs)
        ],
        layers=rows,
        other_layers=other,
        seed=None if inputs_path else seed,
    )
    if export_dir is not None:
        from rnnparity.files.export import export_model_io, export_vectors
        from rnnparity.suite.keras_adapter import nested_to_numpy

        outputs = nested_to_numpy(model(inputs if len(inputs) > 1 else inputs[0], training=False))
        model_io = export_model_io(export_dir, [spec.name for spec in input_specs(model)], inputs, outputs)
        report.exports = export_vectors(export_dir, captures, report, model_io)
    return report


def check_file_weights(path: str, model: Any, rows: list[LayerResult]) -> None:
    """For each verified layer of an HDF5 model: the weights :mod:`rnnparity.files.legacy` reads (and
    converts) without Keras must equal, bit for bit, those Keras loaded. A difference is a
    MISMATCH; a layer the reader does not find is marked ``not read``."""
    from rnnparity.files import legacy
    from rnnparity.suite import keras_adapter

    try:
        file = legacy.read_weights_file(path)
    except (legacy.WeightsFileError, ValueError) as exc:
        for row in rows:
            row.file_weights = f"not read ({exc})"
        return
    keras_layers = {layer.name: layer for layer in _layers_of(model)}
    for row in rows:
        if row.status not in ("ok", "MISMATCH") or row.name not in keras_layers:
            continue
        try:
            stored = file.layer(row.name)
            plan = legacy.plan_twin(file, stored)
        except (TypeError, ValueError) as exc:
            row.file_weights = f"not read ({exc})"
            continue
        if stored.has_cudnn_weights:
            row.type = _stored_type(stored)
        loaded = [keras_adapter.to_numpy(w) for w in keras_layers[row.name].get_weights()]
        difference = _weights_difference(plan.weights, loaded)
        if difference:
            row.file_weights = "DIFFER"
            if row.status == "ok":
                row.status = "MISMATCH"
                row.detail = f"the weights rnnparity read from the file differ from those Keras loaded: {difference}"
        else:
            row.file_weights = "identical"


def _weights_difference(ours: list[np.ndarray], keras: list[np.ndarray]) -> str:
    """'' when both lists hold the same arrays bit for bit, else what differs first."""
    if len(ours) != len(keras):
        return f"{len(ours)} arrays read, Keras has {len(keras)}"
    for index, (a, b) in enumerate(zip(ours, keras)):
        if a.shape != b.shape or a.dtype != b.dtype:
            return f"array {index}: {a.dtype}{a.shape} read, Keras has {b.dtype}{b.shape}"
        if not np.array_equal(a, b):
            return f"array {index}: {int(np.sum(a != b))} of {a.size} values differ (max {float(np.max(np.abs(a - b))):.3g})"
    return ""


def verify_weights(
    path: str,
    *,
    layers: list[str] | None = None,
    overrides: dict[str | None, dict[str, Any]] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    timesteps: int = DEFAULT_TIMESTEPS,
    seed: int = DEFAULT_SEED,
    export_dir: str | None = None,
) -> VerifyReport:
    """Check every recurrent layer of a weights-only file on its own.

    Each layer's twin comes from :func:`rnnparity.files.legacy.plan_twin` (settings the file does not
    store: ``overrides[None]`` for every layer, ``overrides[name]`` for one, else the writer's
    defaults), with ``return_sequences`` and ``return_state`` on so every output is compared.
    The reference is a Keras layer with the same settings whose weights *Keras* loads from
    the file (``load_weights(by_name=True)`` for a top-level layer of a legacy ``.h5``, Keras's
    loading conversion otherwise; Keras 3 loads stored arrays unchanged). The weights must
    be identical; then both run on a seeded random batch, once without and once with a
    right-padded mask.
    """
    from rnnparity.files import legacy
    from rnnparity.suite import keras_adapter

    overrides = overrides or {}
    try:
        file = legacy.read_weights_file(path)
        selected = [file.layer(name) for name in layers] if layers else list(file.layers)
    except (legacy.WeightsFileError, ValueError, TypeError) as exc:
        raise ModelFileError(str(exc)) from None
    unknown = sorted(name for name in overrides if name is not None and name not in {layer.name for layer in file.layers})
    if unknown:
        raise ModelFileError(
            f"--set names layer(s) {unknown} that are not recurrent layers of {path}: {[x.name for x in file.layers]}"
        )
    keras_major = overrides.get(None, {}).get("keras_version", file.writer.keras_major)
    flavor = "tf-keras" if keras_major == 2 else "keras3"
    try:
        handle = keras_adapter.load_keras(flavor)
    except ImportError as exc:
        wanted = "tf-keras (Keras 2)" if flavor == "tf-keras" else "keras 3"
        raise ModelFileError(f"{path} holds Keras {keras_major} weights; checking them needs {wanted}: {exc}") from None
    plans = []
    for_all = overrides.get(None, {})
    unused = set(for_all) - {key for stored in selected for key in legacy.accepted_keys(stored)}
    if unused:
        raise ModelFileError(f"--set {sorted(unused)}: no checked layer takes it (a twin argument of none of them)")
    for stored in selected:
        applicable = {k: v for k, v in for_all.items() if k in legacy.accepted_keys(stored)}
        config = {**applicable, **overrides.get(stored.name, {})}
        if config.get("keras_version", keras_major) != keras_major:
            raise ModelFileError(f"--set {stored.name}:keras_version: one run checks against one Keras; set it for every layer")
        config.update(return_sequences=True, return_state=True, stateful=False, backend=handle.backend)
        try:
            plans.append(legacy.plan_twin(file, stored, config))
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"layer {stored.name!r}: {exc}") from None
    rng = np.random.default_rng(seed)
    rows: list[LayerResult] = []
    captures: list[_Capture] = []
    described_inputs = []
    for plan in plans:
        row, layer_captures, shape = _verify_one(handle, file, plan, rng, batch_size, timesteps)
        rows.append(row)
        captures.extend(layer_captures)
        described_inputs.append({"name": plan.layer.name, "shape": list(shape), "dtype": plan.cell_settings[0]["dtype"]})
    if not layers:
        for name, reason in file.no_twin.items():
            rows.append(LayerResult(name, "?", "", "skipped", detail=reason))
    report = VerifyReport(
        model=str(path),
        keras=handle.describe(),
        inputs=described_inputs,
        layers=rows,
        other_layers=len(file.others),
        seed=seed,
        weights_only=True,
    )
    if export_dir is not None:
        from rnnparity.files.export import export_vectors

        report.exports = export_vectors(export_dir, captures, report)
    return report


def _verify_one(
    handle: Any, file: Any, plan: Any, rng: np.random.Generator, batch_size: int, timesteps: int
) -> tuple[LayerResult, list[_Capture], tuple[int, ...]]:
    from rnnparity.compare import compare, tolerances
    from rnnparity.suite import keras_adapter
    from rnnparity.suite.known_differences import tolerance_for

    stored = plan.layer
    row = LayerResult(stored.name, _stored_type(stored), plan.summary, "ok", assumptions=[plan.description, *plan.assumptions])
    try:
        twin = plan.build()
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"layer {stored.name!r}: {exc}") from None
    try:
        keras_layer, how = keras_adapter.reference_layer(handle, plan, file)
    except Exception as exc:  # Keras refused the layer or the weights
        row.status, row.detail = "skipped", f"Keras could not build or load it: {_first_line(exc)}"
        return row, [], (batch_size, timesteps, stored.input_dim)
    loaded = [keras_adapter.to_numpy(w) for w in keras_layer.get_weights()]
    difference = _weights_difference(twin.get_weights(), loaded)
    row.file_weights = "DIFFER" if difference else "identical"
    if difference:
        row.status, row.detail = "MISMATCH", f"weights differ from those {how}: {difference}"
    dtype = np.dtype(plan.cell_settings[0]["dtype"])
    shape = (batch_size, timesteps, stored.input_dim)
    inputs = rng.normal(0.0, 1.5, size=shape).astype(dtype)
    lengths = rng.integers(1, timesteps + 1, size=batch_size)
    lengths[0] = timesteps
    mask = np.arange(timesteps)[None, :] < lengths[:, None]
    rtol, atol = tolerance_for(dtype.name, handle.backend)
    row.rtol, row.atol = tolerances(dtype.name, rtol, atol)
    captures = []
    worst_abs = worst_rel = worst_used = 0.0
    for number, call_mask in enumerate((None, mask)):
        try:
            keras_result = keras_adapter.call_layer(handle, keras_layer, inputs, mask=call_mask)
        except Exception as exc:  # Keras could not run the layer as configured
            row.status, row.detail = "skipped", f"Keras could not run it: {_first_line(exc)}"
            return row, [], shape
        result = twin(inputs, mask=call_mask)
        comparison = compare(keras_result, result, rtol=rtol, atol=atol, context=f"{stored.name} call {number}")
        worst_abs, worst_rel = max(worst_abs, comparison.max_abs), max(worst_rel, comparison.max_rel)
        worst_used = max(worst_used, comparison.tolerance_used)
        if not comparison.ok and row.status == "ok":
            row.status, row.detail = "MISMATCH", comparison.message
        captures.append(_Capture(keras_layer, twin, inputs, call_mask, None, keras_result))
    row.calls = 2
    row.max_abs, row.max_rel, row.tolerance_used = worst_abs, worst_rel, worst_used
    return row, captures, shape


def _stored_type(stored: Any) -> str:
    """``LSTM``; ``CuDNNLSTM as LSTM``; ``Bidirectional(CuDNNGRU as GRU)``."""
    from rnnparity.layout import KERAS_CLASS_NAME

    name = stored.saved_class or stored.class_name
    if not stored.has_cudnn_weights:
        return str(name)
    plain = f"{stored.inner_class} as {KERAS_CLASS_NAME[stored.cells[0].kind]}"
    return f"Bidirectional({plain})" if stored.class_name == "Bidirectional" else plain
