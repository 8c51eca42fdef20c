"""A saved Keras model file, read and loaded safely: the stored config *without Keras*
(:func:`read_model_file`), a scan that refuses unsafe or unknown objects before anything is
deserialized (:func:`scan_config`), then Keras's own loader (:func:`load_model`).

* ``.keras`` archives: ``config.json`` and ``metadata.json``; HDF5 files: the ``model_config``
  and ``keras_version`` attributes. The Keras that wrote the file picks the Keras that loads
  it (``keras_release`` 2.x: ``tf_keras``; 3.x: ``keras``), never the file name.
* ``CuDNNLSTM`` and ``CuDNNGRU`` (GPU-only) are replaced by the plain layers that compute the
  same (:func:`plain_model_config`), and Keras converts their weights on loading.
* The scan refuses ``Lambda`` layers (whose stored code ``tf_keras`` would run even in safe
  mode), serialized Python functions, and any class that is not one of the loading Keras's own.
* The model is loaded with ``compile=False`` (and ``safe_mode=True``).

Problems raise :class:`ModelFileError` (the CLI's exit 2).
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnnparity.files.hdf5 import attribute_text, h5py_module, is_hdf5
from rnnparity.files.stored import MODEL_CLASSES, WeightsFileError, plain_class_name
from rnnparity.layout import CUDNN_CLASSES

# Class names that hold code, or values, rather than name a Keras class.
REFUSED_CLASSES = {
    "Lambda": "a Lambda layer stores Python code, which loading would run",
    "__lambda__": "a serialized Python lambda, which loading would run",
}
DATA_CLASSES = {"__keras_tensor__", "__tensor__", "__numpy__", "__bytes__", "__typespec__", "__slice__", "__ellipsis__"}
# Dtype policies: a Keras config names them like classes, outside the layers namespace.
POLICY_CLASSES = ("DTypePolicy", "FloatDTypePolicy", "Policy")


class ModelFileError(Exception):
    """The file cannot be read, is unsafe to load, or Keras cannot load it (exit 2)."""


@dataclass
class ModelFile:
    path: str
    format: str  # "keras" (zip archive) or "h5"
    config: dict[str, Any]
    keras_release: str | None  # the version string the file records
    keras_version: int  # which Keras wrote it, so which loads it: 2 (tf_keras) or 3 (keras)
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
    if zipfile.is_zipfile(file):
        return _read_archive(file)
    if is_hdf5(file):
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
    release = metadata.get("keras_version")
    return ModelFile(str(file), "keras", _require_dict(config, file), release, _keras_version_of(release, default=3))


def is_weights_only(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an HDF5 file of weights without a model (``save_weights``)."""
    file = Path(path)
    if not file.is_file() or not is_hdf5(file):
        return False
    h5py = _h5py()
    try:
        with h5py.File(file, "r") as h5:
            return "model_config" not in h5.attrs
    except OSError:
        return False  # read_model_file reports the corruption


def _h5py() -> Any:
    try:
        return h5py_module()
    except WeightsFileError as exc:
        raise ModelFileError(str(exc)) from None


def _read_hdf5(file: Path) -> ModelFile:
    h5py = _h5py()
    try:
        with h5py.File(file, "r") as h5:
            raw = attribute_text(h5.attrs.get("model_config"))
            release = attribute_text(h5.attrs.get("keras_version"))
            if release is None and "model_weights" in h5:
                release = attribute_text(h5["model_weights"].attrs.get("keras_version"))
    except OSError as exc:
        raise ModelFileError(f"{file}: corrupted HDF5 file ({exc})") from None
    if raw is None:
        raise ModelFileError(f"{file} holds weights only (no model_config attribute); verify checks it layer by layer")
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{file}: its model_config is not valid JSON ({exc})") from None
    if release is None:
        raise ModelFileError(f"{file} does not record which Keras wrote it (no keras_version attribute)")
    return ModelFile(str(file), "h5", _require_dict(config, file), str(release), _keras_version_of(str(release), default=None))


def _require_dict(config: Any, file: Path) -> dict[str, Any]:
    if not isinstance(config, dict) or "class_name" not in config:
        raise ModelFileError(f"{file}: the stored config does not describe a Keras model")
    return config


def _keras_version_of(release: str | None, default: int | None) -> int:
    """3 for a file of Keras 3.x, 2 for Keras 2.x (and 1.x, which Keras 2 loads)."""
    if release is None:
        if default is None:
            raise ModelFileError("the file does not say which Keras wrote it")
        return default
    major = release.split(".")[0]
    if major == "3":
        return 3
    if major in ("2", "1"):
        return 2
    raise ModelFileError(f"the file was written by Keras {release}, which rnnparity does not know")


# --------------------------------------------------------------------------- safety scan
def known_class_names(module: Any) -> set[str]:
    """Class names a Keras module (``keras`` or ``tf_keras``) can deserialize by itself."""
    names = {*MODEL_CLASSES, *POLICY_CLASSES}
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


def first_line(exc: BaseException) -> str:
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
        handle = keras_adapter.load_keras(keras_adapter.flavor_for(model_file.keras_version))
    except ImportError as exc:
        wanted = "tf-keras (Keras 2)" if model_file.keras_version == 2 else "keras 3"
        raise ModelFileError(
            f"{model_file.path} was written by Keras {model_file.keras_release}; loading it needs {wanted}: {exc}"
        ) from None
    config = model_file.config
    if model_file.format == "h5":
        config, model_file.replaced = plain_model_config(config)
    scan_config(config, known_class_names(handle.module) | keras_adapter.op_class_names(handle), "")
    try:
        if model_file.replaced:
            model = keras_adapter.load_model_from_config(handle, model_file.path, config)
        else:
            model = keras_adapter.load_saved_model(handle, model_file.path)
    except Exception as exc:  # Keras raises many types for unloadable files
        raise ModelFileError(f"{handle.describe()} could not load {model_file.path}: {first_line(exc)}") from None
    return handle, model


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
            return {**node, "class_name": plain_class_name(class_name), "config": inner}
        return {key: walk(value) for key, value in node.items()}

    return walk(config), replaced


def layers_of(model: Any) -> list[Any]:
    """Every layer in ``model``, nested models included (not the inside of wrappers)."""
    found = []
    for layer in getattr(model, "layers", []):
        found.append(layer)
        if hasattr(layer, "layers") and type(layer).__name__ in MODEL_CLASSES:
            found.extend(layers_of(layer))
    return found
