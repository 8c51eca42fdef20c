"""``rnnparity verify MODEL``: run a saved Keras model and check every recurrent layer's twin.

Steps, each its own function:

1. :func:`rnnparity.files.model_file.read_model_file` reads the stored config *without
   Keras*, :func:`~rnnparity.files.model_file.scan_config` refuses what is unsafe to load, and
   :func:`~rnnparity.files.model_file.load_model` loads it with the Keras that wrote it.
2. :func:`rnnparity.files.inputs.make_inputs` builds a seeded random batch (or
   :func:`~rnnparity.files.inputs.read_inputs` takes the user's arrays).
3. :func:`run_model` calls the model once while every recurrent layer's ``call`` records
   exactly what Keras gave it (input, mask, initial state) and what it returned, after a
   twin has been built from the layer by :func:`rnnparity.from_keras`; the twin then runs on
   the same arrays and every output and state is compared.

For an HDF5 file, every recurrent layer's weights are also read without Keras
(:mod:`rnnparity.files.hdf5`) and must equal, bit for bit, what Keras loaded.

A weights-only file (``save_weights``: legacy ``.h5`` or ``*.weights.h5``) has no model to
run: :func:`verify_weights` checks each recurrent layer on its own, its twin from
:func:`rnnparity.files.plan.plan_twin` against the Keras layer that Keras loads the same
weights into.

Loading problems raise :class:`~rnnparity.files.model_file.ModelFileError` (the CLI's exit 2).
The names of the model-file and input steps are importable from here too.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from rnnparity.bidirectional import Bidirectional
from rnnparity.compare import compare, tolerances
from rnnparity.files.inputs import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_OTHER_SIZE,
    DEFAULT_SEED,
    DEFAULT_TIMESTEPS,
    InputSpec,
    input_specs,
    make_inputs,
    read_inputs,
)
from rnnparity.files.model_file import (
    ModelFile,
    ModelFileError,
    first_line,
    is_weights_only,
    known_class_names,
    layers_of,
    load_model,
    read_model_file,
    scan_config,
)
from rnnparity.files.results import Capture, LayerResult, VerifyReport
from rnnparity.files.weights_check import check_file_weights, verify_weights
from rnnparity.stacked import StackedRNNCells
from rnnparity.suite import keras_adapter
from rnnparity.suite.known_differences import tolerance_for
from rnnparity.twin_classes import CONV_TWIN_BY_KERAS_NAME, NO_TWIN, TWIN_BY_KERAS_NAME

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_OTHER_SIZE",
    "DEFAULT_SEED",
    "DEFAULT_TIMESTEPS",
    "TWINNED_CLASSES",
    "InputSpec",
    "LayerResult",
    "ModelFile",
    "ModelFileError",
    "Capture",
    "VerifyReport",
    "check_file_weights",
    "explained_cells",
    "input_specs",
    "is_recurrent",
    "is_weights_only",
    "known_class_names",
    "load_model",
    "make_inputs",
    "read_inputs",
    "read_model_file",
    "run_model",
    "scan_config",
    "verify",
    "verify_weights",
]

# Layer classes the twins cover (from_keras), ConvLSTM included; NO_TWIN lists the recurrent
# classes the HDF5 weight readers do not cover.
TWINNED_CLASSES = (*TWIN_BY_KERAS_NAME, *CONV_TWIN_BY_KERAS_NAME, "RNN", "Bidirectional")


def is_recurrent(layer: Any) -> bool:
    """Whether a Keras layer is recurrent: a class with a twin, one of :data:`NO_TWIN`, or a
    subclass of Keras's ``RNN`` or ``Bidirectional``."""
    name = type(layer).__name__
    if name in TWINNED_CLASSES or name in NO_TWIN:
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


def run_model(handle: Any, model: Any, inputs: list[np.ndarray]) -> tuple[list[LayerResult], list[Capture], int]:
    """Call ``model`` once with every recurrent layer recording its calls; compare twins."""

    layers = layers_of(model)
    recurrent = [layer for layer in layers if is_recurrent(layer)]
    results: dict[int, LayerResult] = {}
    captures: dict[int, list[Capture]] = {}
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
                Capture(
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

    ordered: list[Capture] = []
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
    if name not in TWINNED_CLASSES:
        return f"{name} is a custom recurrent class; only {list(TWINNED_CLASSES)} have twins"
    return ""


def _twin_or_reason(layer: Any) -> Any:
    try:
        return keras_adapter.from_keras(layer)
    except (TypeError, ValueError) as exc:
        return str(exc)


def explained_cells(model: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """For ``rnnparity explain MODEL``: per recurrent layer with a twin, each cell it runs,
    as ``(layer name, which part, its gate layout)`` (:func:`rnnparity.layout.explain_layout`, or
    :func:`~rnnparity.layout.explain_conv_lstm_layout` for a ConvLSTM)."""
    found = []
    for layer in layers_of(model):
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
                cell_class = type(one).__name__.removesuffix("Cell")
                if not type(layer).__name__.startswith(cell_class):  # "LSTM", not "LSTM LSTM"
                    words.append(cell_class)
                part = " ".join(w for w in words if w)
                found.append((str(layer.name), part, _layout_of(one)))
    return found


def _layout_of(cell: Any) -> dict[str, Any]:
    """:func:`rnnparity.layout.explain_layout` (or its ConvLSTM form) for a twin's cell."""
    from rnnparity.conv_lstm import ConvLSTMCell
    from rnnparity.layout import explain_conv_lstm_layout, explain_layout

    if isinstance(cell, ConvLSTMCell):
        return explain_conv_lstm_layout(cell.rank, cell.filters, cell.kernel_size, int(cell.input_dim or 0), cell.use_bias)
    return explain_layout(
        str(cell.kind), int(cell.units), int(cell.input_dim or 0), bool(getattr(cell, "reset_after", True)), bool(cell.use_bias)
    )


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
        raise ModelFileError(f"the model could not run on the inputs: {first_line(exc)}") from None
    if model_file.format == "h5":
        check_file_weights(model_file.path, model, rows)
    from rnnparity.files.retarget import drift_hint

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
        drift_hint=drift_hint(captures, handle, str(path)),
    )
    if export_dir is not None:
        from rnnparity.files.export import export_model_io, export_vectors
        from rnnparity.suite.keras_adapter import nested_to_numpy

        outputs = nested_to_numpy(model(inputs if len(inputs) > 1 else inputs[0], training=False))
        model_io = export_model_io(export_dir, [spec.name for spec in input_specs(model)], inputs, outputs)
        report.exports = export_vectors(export_dir, captures, report, model_io)
    return report
