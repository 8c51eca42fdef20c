"""``rnnparity verify MODEL``: run a saved Keras model and check every recurrent layer's twin.

Steps, each its own function:

1. :func:`read_model_file` reads the stored config *without Keras*: ``config.json`` and
   ``metadata.json`` from a ``.keras`` archive, or the ``model_config`` / ``keras_version``
   attributes of an HDF5 file. The Keras that wrote the file picks the Keras that loads it
   (``keras_version`` 2.x: ``tf_keras``; 3.x: ``keras``), never the file name.
2. :func:`scan_config` refuses, before anything is deserialized, ``Lambda`` layers (whose
   stored code ``tf_keras`` would run even in safe mode), serialized Python functions, and
   any class that is not one of the loading Keras's own.
3. :func:`load_model` loads it with ``compile=False`` (and ``safe_mode=True``).
4. :func:`make_inputs` builds a seeded random batch (or takes the user's arrays). Axes of
   unknown size get ``batch_size`` / ``timesteps``; integer inputs draw token ids below the
   smallest ``Embedding`` vocabulary with right padding of id 0 in some rows, and when the
   model has a ``Masking`` layer, padded steps of float inputs hold its ``mask_value`` so
   masks are exercised.
5. :func:`run_model` calls the model once while every recurrent layer's ``call`` records
   exactly what Keras gave it (input, mask, initial state) and what it returned, after a
   twin has been built from the layer by :func:`rnnparity.from_keras`; the twin then runs on
   the same arrays and every output and state is compared.

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

# Layer classes the twins cover (from_keras), and recurrent classes they do not.
TWINNED_CLASSES = ("LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional")
UNSUPPORTED_RECURRENT = {
    "ConvLSTM1D": "convolutional recurrent layers have no twin",
    "ConvLSTM2D": "convolutional recurrent layers have no twin",
    "ConvLSTM3D": "convolutional recurrent layers have no twin",
    "CuDNNLSTM": "CuDNNLSTM (Keras 1/2 GPU layer) has no twin yet",
    "CuDNNGRU": "CuDNNGRU (Keras 1/2 GPU layer) has no twin yet",
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


def _read_hdf5(file: Path) -> ModelFile:
    try:
        import h5py
    except ImportError:
        raise ModelFileError("reading .h5 model files needs h5py (installed with TensorFlow / Keras)") from None
    try:
        with h5py.File(file, "r") as h5:
            raw = h5.attrs.get("model_config")
            version = h5.attrs.get("keras_version")
    except OSError as exc:
        raise ModelFileError(f"{file}: corrupted HDF5 file ({exc})") from None
    if raw is None:
        raise ModelFileError(f"{file} holds weights only (no model_config attribute); verify needs a whole saved model")
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    if isinstance(version, bytes):
        version = version.decode("utf-8")
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
    """The first line of an exception's message (Keras's messages run to pages)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_model(model_file: ModelFile) -> tuple[Any, Any]:
    """``(KerasHandle, model)``: the file scanned, then loaded by the Keras that wrote it."""
    from rnnparity import keras_adapter

    try:
        handle = keras_adapter.load_keras(model_file.flavor)
    except ImportError as exc:
        wanted = "tf-keras (Keras 2)" if model_file.flavor == "tf-keras" else "keras 3"
        raise ModelFileError(
            f"{model_file.path} was written by Keras {model_file.keras_version}; loading it needs {wanted}: {exc}"
        ) from None
    scan_config(model_file.config, known_class_names(handle.module) | keras_adapter.op_class_names(handle), "")
    try:
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
            elif axis == 0:
                shape.append(batch_size)
            elif axis == 1:
                shape.append(timesteps)
            else:
                raise ModelFileError(
                    f"input {spec.name!r} has shape {spec.shape}: axis {axis} has no size; pass the inputs with --inputs"
                )
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
    detail: str = ""
    calls: int = 0


@dataclass
class VerifyReport:
    model: str
    keras: str
    inputs: list[dict[str, Any]]
    layers: list[LayerResult]
    other_layers: int
    seed: int | None
    exports: list[dict[str, Any]] = field(default_factory=list)

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
    from rnnparity import keras_adapter
    from rnnparity.compare import compare
    from rnnparity.known_differences import tolerance_for

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
    from rnnparity.keras_adapter import from_keras

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
                words = [type(layer).__name__, direction, "" if index is None else f"cell {index}"]
                part = " ".join(w for w in [*words, type(one).__name__.removesuffix("Cell")] if w)
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
) -> VerifyReport:
    """Everything ``rnnparity verify`` does, returned as a report."""
    model_file = read_model_file(path)
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
        from rnnparity.export import export_vectors

        report.exports = export_vectors(export_dir, captures, report)
    return report


def format_table(report: VerifyReport) -> str:
    """The per-layer table the CLI prints."""
    header = ("layer", "type", "config", "max abs err", "max rel err", "status")
    rows = [header]
    for row in report.layers:
        rows.append(
            (
                row.name,
                row.type,
                row.summary,
                "-" if row.max_abs is None else f"{row.max_abs:.3g}",
                "-" if row.max_rel is None else f"{row.max_rel:.3g}",
                row.status + (f" ({row.detail})" if row.status == "skipped" and row.detail else ""),
            )
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(5)] + [0]  # the status column is last, unpadded
    lines = ["  ".join(str(value).ljust(width) for value, width in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths[:5]) + "  ------")
    return "\n".join(lines)
