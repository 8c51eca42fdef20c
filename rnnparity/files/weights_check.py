"""Weights read without Keras, checked against what Keras loads.

* :func:`check_file_weights`: for an HDF5 *model* that verify ran, each layer's weights as
  :mod:`rnnparity.files.hdf5` reads them must equal, bit for bit, those Keras loaded.
* :func:`verify_weights`: a weights-only file (``save_weights``: legacy ``.h5`` or
  ``*.weights.h5``) has no model to run; each recurrent layer is checked on its own, its twin
  from :func:`rnnparity.files.plan.plan_twin` against a Keras layer that Keras loads the same
  weights into.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rnnparity.compare import compare, tolerances
from rnnparity.files.hdf5 import read_weights_file
from rnnparity.files.inputs import DEFAULT_BATCH_SIZE, DEFAULT_SEED, DEFAULT_TIMESTEPS
from rnnparity.files.model_file import ModelFileError, first_line, layers_of
from rnnparity.files.plan import TwinPlan, accepted_keys, plan_twin
from rnnparity.files.results import Capture, LayerResult, VerifyReport
from rnnparity.files.stored import StoredLayer, WeightsFile, WeightsFileError
from rnnparity.layout import KERAS_CLASS_NAME
from rnnparity.suite import keras_adapter
from rnnparity.suite.known_differences import tolerance_for

# The size of each spatial axis of a ConvLSTM layer's random inputs (a weights-only file
# stores no input size).
CONV_SPATIAL_SIZE = 5


def check_file_weights(path: str, model: Any, rows: list[LayerResult]) -> None:
    """For each verified layer of an HDF5 model: the weights :mod:`rnnparity.files.hdf5` reads (and
    converts) without Keras must equal, bit for bit, those Keras loaded. A difference is a
    MISMATCH; a layer the reader does not find is marked ``not read``."""
    try:
        file = read_weights_file(path)
    except (WeightsFileError, ValueError) as exc:
        for row in rows:
            row.file_weights = f"not read ({exc})"
        return
    keras_layers = {layer.name: layer for layer in layers_of(model)}
    for row in rows:
        if row.status not in ("ok", "MISMATCH") or row.name not in keras_layers:
            continue
        try:
            stored = file.layer(row.name)
            plan = plan_twin(file, stored)
        except (TypeError, ValueError) as exc:
            row.file_weights = f"not read ({exc})"
            continue
        if stored.has_cudnn_weights:
            row.type = stored_type(stored)
        loaded = [keras_adapter.to_numpy(w) for w in keras_layers[row.name].get_weights()]
        difference = weights_difference(plan.weights, loaded)
        if difference:
            row.file_weights = "DIFFER"
            if row.status == "ok":
                row.status = "MISMATCH"
                row.detail = f"the weights rnnparity read from the file differ from those Keras loaded: {difference}"
        else:
            row.file_weights = "identical"


def weights_difference(ours: list[np.ndarray], keras: list[np.ndarray]) -> str:
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

    Each layer's twin comes from :func:`rnnparity.files.plan.plan_twin` (settings the file does not
    store: ``overrides[None]`` for every layer, ``overrides[name]`` for one, else the writer's
    defaults), with ``return_sequences`` and ``return_state`` on so every output is compared.
    The reference is a Keras layer with the same settings whose weights *Keras* loads from
    the file (``load_weights(by_name=True)`` for a top-level layer of a legacy ``.h5``, Keras's
    loading conversion otherwise; Keras 3 loads stored arrays unchanged). The weights must
    be identical; then both run on a seeded random batch, once without and once with a
    right-padded mask.
    """
    overrides = overrides or {}
    file, selected = _read_weights_only(path, layers, overrides)
    keras_version = overrides.get(None, {}).get("keras_version", file.writer.keras_version)
    try:
        handle = keras_adapter.load_keras(keras_adapter.flavor_for(keras_version))
    except ImportError as exc:
        wanted = "tf-keras (Keras 2)" if keras_version == 2 else "keras 3"
        raise ModelFileError(f"{path} holds Keras {keras_version} weights; checking them needs {wanted}: {exc}") from None
    plans = _plans_to_check(file, selected, overrides, keras_version, handle.backend)
    rng = np.random.default_rng(seed)
    rows: list[LayerResult] = []
    captures: list[Capture] = []
    described_inputs = []
    for plan in plans:
        row, layer_captures, shape = _verify_one(handle, file, plan, rng, batch_size, timesteps)
        rows.append(row)
        captures.extend(layer_captures)
        described_inputs.append({"name": plan.layer.name, "shape": list(shape), "dtype": plan.cell_settings[0]["dtype"]})
    if not layers:
        for name, reason in file.no_twin.items():
            rows.append(LayerResult(name, "?", "", "skipped", detail=reason))
    from rnnparity.files.retarget import drift_hint

    report = VerifyReport(
        model=str(path),
        keras=handle.describe(),
        inputs=described_inputs,
        layers=rows,
        other_layers=len(file.others),
        seed=seed,
        weights_only=True,
        drift_hint=drift_hint(captures, handle, str(path)),
    )
    if export_dir is not None:
        from rnnparity.files.export import export_vectors

        report.exports = export_vectors(export_dir, captures, report)
    return report


def _read_weights_only(
    path: str, layers: list[str] | None, overrides: dict[str | None, dict[str, Any]]
) -> tuple[WeightsFile, list[StoredLayer]]:
    """The file and the layers to check; every layer ``overrides`` names must be one of its own."""
    try:
        file = read_weights_file(path)
        selected = [file.layer(name) for name in layers] if layers else list(file.layers)
    except (WeightsFileError, ValueError, TypeError) as exc:
        raise ModelFileError(str(exc)) from None
    unknown = sorted(name for name in overrides if name is not None and name not in {layer.name for layer in file.layers})
    if unknown:
        raise ModelFileError(
            f"--set names layer(s) {unknown} that are not recurrent layers of {path}: {[x.name for x in file.layers]}"
        )
    return file, selected


def _plans_to_check(
    file: WeightsFile,
    selected: list[StoredLayer],
    overrides: dict[str | None, dict[str, Any]],
    keras_version: int,
    backend: str,
) -> list[TwinPlan]:
    """One twin plan per layer: ``overrides[None]`` where the layer takes it, then
    ``overrides[name]``, with every output returned and no carried state."""
    for_all = overrides.get(None, {})
    unused = set(for_all) - {key for stored in selected for key in accepted_keys(stored)}
    if unused:
        raise ModelFileError(f"--set {sorted(unused)}: no checked layer takes it (a twin argument of none of them)")
    plans = []
    for stored in selected:
        applicable = {k: v for k, v in for_all.items() if k in accepted_keys(stored)}
        config = {**applicable, **overrides.get(stored.name, {})}
        if config.get("keras_version", keras_version) != keras_version:
            raise ModelFileError(f"--set {stored.name}:keras_version: one run checks against one Keras; set it for every layer")
        config.update(return_sequences=True, return_state=True, stateful=False, backend=backend)
        try:
            plans.append(plan_twin(file, stored, config))
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"layer {stored.name!r}: {exc}") from None
    return plans


def _verify_one(
    handle: Any, file: WeightsFile, plan: TwinPlan, rng: np.random.Generator, batch_size: int, timesteps: int
) -> tuple[LayerResult, list[Capture], tuple[int, ...]]:
    stored = plan.layer
    row = LayerResult(stored.name, stored_type(stored), plan.summary, "ok", assumptions=[plan.description, *plan.assumptions])
    try:
        twin = plan.build()
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"layer {stored.name!r}: {exc}") from None
    shape = random_input_shape(twin, stored, batch_size, timesteps)
    try:
        keras_layer, how = keras_adapter.reference_layer(handle, plan, file, step_shape=shape[2:])
    except Exception as exc:  # Keras refused the layer or the weights
        row.status, row.detail = "skipped", f"Keras could not build or load it: {first_line(exc)}"
        return row, [], shape
    loaded = [keras_adapter.to_numpy(w) for w in keras_layer.get_weights()]
    difference = weights_difference(twin.get_weights(), loaded)
    row.file_weights = "DIFFER" if difference else "identical"
    if difference:
        row.status, row.detail = "MISMATCH", f"weights differ from those {how}: {difference}"
    dtype = np.dtype(plan.cell_settings[0]["dtype"])
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
            row.status, row.detail = "skipped", f"Keras could not run it: {first_line(exc)}"
            return row, [], shape
        result = twin(inputs, mask=call_mask)
        comparison = compare(keras_result, result, rtol=rtol, atol=atol, context=f"{stored.name} call {number}")
        worst_abs, worst_rel = max(worst_abs, comparison.max_abs), max(worst_rel, comparison.max_rel)
        worst_used = max(worst_used, comparison.tolerance_used)
        if not comparison.ok and row.status == "ok":
            row.status, row.detail = "MISMATCH", comparison.message
        captures.append(Capture(keras_layer, twin, inputs, call_mask, None, keras_result))
    row.calls = 2
    row.max_abs, row.max_rel, row.tolerance_used = worst_abs, worst_rel, worst_used
    return row, captures, shape


def random_input_shape(twin: Any, stored: StoredLayer, batch_size: int, timesteps: int) -> tuple[int, ...]:
    """The random batch's shape: ``(batch, time, input_dim)``; for a ConvLSTM ``(batch, time,
    *spatial, channels)`` (or channels first), each spatial axis ``CONV_SPATIAL_SIZE``, or
    wider when the kernel's span needs it."""
    if not stored.cells[0].is_conv:
        return (batch_size, timesteps, stored.input_dim)
    conv = getattr(twin, "forward_layer", twin).conv_cell
    spatial = tuple(max(CONV_SPATIAL_SIZE, (k - 1) * d + 2) for k, d in zip(conv.kernel_size, conv.dilation_rate))
    channels = stored.input_dim
    if conv.data_format == "channels_first":
        return (batch_size, timesteps, channels, *spatial)
    return (batch_size, timesteps, *spatial, channels)


def stored_type(stored: StoredLayer) -> str:
    """``LSTM``; ``CuDNNLSTM as LSTM``; ``Bidirectional(CuDNNGRU as GRU)``."""
    name = stored.saved_class or stored.class_name
    if not stored.has_cudnn_weights:
        return str(name)
    plain = f"{stored.inner_class} as {KERAS_CLASS_NAME[stored.cells[0].kind]}"
    return f"Bidirectional({plain})" if stored.class_name == "Bidirectional" else plain
