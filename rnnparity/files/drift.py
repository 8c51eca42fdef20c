"""``rnnparity drift MODEL --to keras3|tf-keras``: would the model compute other numbers under the other Keras?

The twins emulate both Kerases (``keras_version=2|3``), so the answer comes from the user's
file alone, before anyone upgrades:

1. The model is read, scanned and loaded exactly as ``verify`` loads it
   (:mod:`rnnparity.files.verify`: the Keras that wrote the file loads it).
2. *Before*: the installed Keras runs the model on a seeded batch (or the user's arrays).
3. *Per layer*: every recurrent layer's calls are recorded (verify's capture, which also checks
   the layer's twin against Keras) and replayed through a twin emulating the *target* Keras
   (:func:`rnnparity.files.retarget.retarget`); the change is Keras's own result against the target twin's on the
   same inputs, with the known differences (:mod:`rnnparity.suite.known_differences`) that
   apply to the layer named as causes.
4. *After*: the model runs again in the installed Keras with each recurrent layer's result
   replaced by its target twin's, so the change propagates through every other layer as
   Keras computes them.
5. *Actual*: where the target Keras is installed, it loads the same file in a subprocess and
   runs the same inputs (:mod:`rnnparity.files.drift_target`); its outputs must equal the
   predicted *after* within the tolerance.
   Where it cannot load the file (Keras 3 does not read the recurrent layers of a tf_keras
   ``.h5``: ``time_major``), the report says so and gives the prediction alone.

A stateful model runs twice in a row (the second call is where carried states matter), and
every output of both calls is compared. A weights-only file has no model: each recurrent
layer's twin under the writer's Keras is compared with the same twin under the target Keras
(settings as ``verify --set`` takes them).

Problems loading or running raise :class:`rnnparity.files.verify.ModelFileError` (exit 2).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from rnnparity.files.drift_target import run_calls, run_in_target
from rnnparity.files.retarget import environment, known_causes, retarget, target_backend
from rnnparity.files.verify import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_SEED,
    DEFAULT_TIMESTEPS,
    ModelFileError,
)
from rnnparity.files.weights_check import random_input_shape

TARGETS = {"keras3": 3, "tf-keras": 2}
EXIT_OK, EXIT_DRIFT, EXIT_ERROR = 0, 1, 2


# --------------------------------------------------------------------------- the report
@dataclass
class LayerDrift:
    name: str
    type: str
    status: str  # "drifts", "same", "not predicted" (no twin), "not called", "breaks" (the target cannot have it)
    max_abs: float | None = None  # of every output and state, over every call
    max_rel: float | None = None
    tolerance_used: float | None = None
    causes: list[str] = field(default_factory=list)  # known-difference ids; ["unexplained"] when none applies
    detail: str = ""
    calls: int = 0


@dataclass
class OutputDrift:
    name: str
    shape: list[int]
    max_abs: float
    max_rel: float
    tolerance_used: float
    changed: bool
    rows: int  # positions along every axis but the last
    argmax_flips: int | None = None  # last axis > 1: rows whose argmax changes
    crossings: int | None = None  # a single unit in [0, 1]: rows that cross 0.5
    actual_max_abs: float | None = None  # what the target Keras itself gives, against before
    agrees: bool | None = None  # predicted after against the target Keras's own outputs
    agreement: str = ""  # the comparison message
    agreement_max_abs: float | None = None  # max |target Keras - predicted after|


@dataclass
class DriftReport:
    model: str
    keras: str  # the installed Keras that ran "before"
    to: str  # "keras3" or "tf-keras"
    inputs: list[dict[str, Any]]
    layers: list[LayerDrift]
    outputs: list[OutputDrift]
    seed: int | None
    calls: int = 1  # model calls in a row (2 for a stateful model)
    weights_only: bool = False
    actual: str = ""  # the target Keras's own run: "ran (...)", or why it did not
    other_layers: int = 0
    before: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    after: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    actual_outputs: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def target_label(self) -> str:
        return "Keras 3" if self.to == "keras3" else "tf_keras (Keras 2)"

    @property
    def drifting_layers(self) -> list[str]:
        return [layer.name for layer in self.layers if layer.status in ("drifts", "breaks")]

    @property
    def changed_outputs(self) -> list[str]:
        return [output.name for output in self.outputs if output.changed]

    @property
    def disagreements(self) -> list[str]:
        return [output.name for output in self.outputs if output.agrees is False]

    @property
    def drifts(self) -> bool:
        return bool(self.drifting_layers or self.changed_outputs or self.disagreements)

    @property
    def exit_code(self) -> int:
        return EXIT_DRIFT if self.drifts else EXIT_OK

    @property
    def verdict(self) -> str:
        target = self.target_label
        if self.disagreements:
            return (
                f"PREDICTION DISAGREES with {target} for output(s) {', '.join(self.disagreements)}: "
                "both are shown above (a finding: please report it)"
            )
        if not self.drifts:
            scope = "layer by layer" if self.weights_only else "its outputs and every recurrent layer"
            return f"NO DRIFT under {target}: {scope} within the tolerance"
        parts = []
        for layer in self.layers:
            if layer.status in ("drifts", "breaks"):
                parts.append(f"{layer.name} ({', '.join(layer.causes) or layer.detail})")
        summary = f"DRIFT under {target}: " + "; ".join(parts)
        for output in self.outputs:
            if output.changed:
                summary += f"; output {output.name} changes by up to {output.max_abs:.3g}"
                if output.argmax_flips:
                    summary += f", argmax changes in {output.argmax_flips} of {output.rows} rows"
                if output.crossings:
                    summary += f", {output.crossings} of {output.rows} rows cross 0.5"
        return summary

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("before", "after", "actual_outputs"):
            data.pop(key)
        data.update(drifts=self.drifts, verdict=self.verdict, exit_code=self.exit_code)
        return data

    def save_predictions(self, path: str | os.PathLike[str]) -> None:
        """``before/<output name>`` and ``after/<output name>`` for every model output, as ``.npz``
        (and ``actual/<output name>`` when the target Keras ran the model)."""
        arrays: dict[str, Any] = {f"before/{name}": value for name, value in self.before.items()}
        arrays.update({f"after/{name}": value for name, value in self.after.items()})
        arrays.update({f"actual/{name}": value for name, value in self.actual_outputs.items()})
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)


# --------------------------------------------------------------------------- whole models
def drift(
    path: str | os.PathLike[str],
    *,
    to: str = "keras3",
    inputs: Any = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    timesteps: int = DEFAULT_TIMESTEPS,
    seed: int = DEFAULT_SEED,
    actual: bool = True,
    overrides: dict[str | None, dict[str, Any]] | None = None,
) -> DriftReport:
    """What the model in ``path`` would compute under the Keras ``to`` (``"keras3"`` or
    ``"tf-keras"``), predicted by the twins, and, with ``actual``, checked by the target
    Keras itself where it is installed and can load the file.

    ``inputs``: None (a seeded random batch, as ``verify`` makes it), a ``.npy``/``.npz`` path,
    an array, a list of arrays in input order, or a dict by input name. ``overrides``:
    weights-only files, settings the file does not store (as ``verify --set``).
    """
    from rnnparity.files import verify

    if to not in TARGETS:
        raise ValueError(f"to must be one of {list(TARGETS)}; got {to!r}")
    path = str(path)
    if verify.is_weights_only(path):
        if inputs is not None:
            raise ModelFileError(
                f"{path} holds weights only: each recurrent layer gets its own random input; inputs are for whole models"
            )
        return drift_weights(path, to=to, overrides=overrides, batch_size=batch_size, timesteps=timesteps, seed=seed)
    if overrides:
        raise ModelFileError(f"{path} is a whole model: it stores every layer's settings; --set is for weights-only files")
    model_file = verify.read_model_file(path)
    handle, model = verify.load_model(model_file)
    arrays = (
        _given_inputs(inputs, model)
        if inputs is not None
        else verify.make_inputs(model, batch_size=batch_size, timesteps=timesteps, seed=seed)
    )
    target = TARGETS[to]
    backend = target_backend(target, handle.backend)
    calls = 2 if _stateful_layers(model) else 1
    try:
        report = _predict(handle, model, arrays, target, backend, calls)
    except ModelFileError:
        raise
    except Exception as exc:  # the model itself failed on these inputs
        raise ModelFileError(f"the model could not run on the inputs: {verify.first_line(exc)}") from None
    report.model, report.to, report.calls = path, to, calls
    report.seed = None if inputs is not None else seed
    report.inputs = [
        {"name": spec.name, "shape": list(array.shape), "dtype": str(array.dtype)}
        for spec, array in zip(verify.input_specs(model), arrays)
    ]
    if target == handle.keras_version:
        report.actual = f"not run: the file was written by {handle.describe()}, the target itself"
    elif actual:
        _compare_with_target(report, path, to, arrays, calls)
    else:
        report.actual = "not run (not asked for)"
    return report


def _given_inputs(inputs: Any, model: Any) -> list[np.ndarray]:
    from rnnparity.files import verify

    specs = verify.input_specs(model)
    if isinstance(inputs, (str, os.PathLike)):
        return verify.read_inputs(str(inputs), model)
    if isinstance(inputs, Mapping):
        missing = [spec.name for spec in specs if spec.name not in inputs]
        if missing:
            raise ValueError(f"inputs is a dict without the model input(s) {missing}; it has {sorted(inputs)}")
        return [np.asarray(inputs[spec.name]) for spec in specs]
    arrays = [np.asarray(inputs)] if isinstance(inputs, np.ndarray) else [np.asarray(a) for a in inputs]
    if len(arrays) != len(specs):
        raise ValueError(f"inputs holds {len(arrays)} array(s); the model has {len(specs)} input(s) {[s.name for s in specs]}")
    return arrays


def _recurrent_layers(model: Any) -> list[Any]:
    from rnnparity.files import verify

    return [layer for layer in verify.layers_of(model) if verify.is_recurrent(layer)]


def _state_holders(layer: Any) -> list[Any]:
    return [layer, *(getattr(layer, side) for side in ("forward_layer", "backward_layer") if hasattr(layer, side))]


def _stateful_layers(model: Any) -> list[Any]:
    return [layer for layer in _recurrent_layers(model) if any(getattr(h, "stateful", False) for h in _state_holders(layer))]


def _save_states(model: Any) -> list[tuple[Any, np.ndarray]]:
    """Every carried-state variable of the model's stateful layers, with its value now."""
    from rnnparity.rnn import flatten_nested
    from rnnparity.suite import keras_adapter

    saved = []
    for layer in _stateful_layers(model):
        for holder in _state_holders(layer):
            if getattr(holder, "stateful", False) and getattr(holder, "states", None) is not None:
                for variable in flatten_nested(holder.states):
                    if variable is not None:
                        saved.append((variable, keras_adapter.to_numpy(variable).copy()))
    return saved


def _restore_states(saved: list[tuple[Any, np.ndarray]]) -> None:
    for variable, value in saved:
        variable.assign(value)


def _predict(handle: Any, model: Any, arrays: list[np.ndarray], target: int, backend: str, calls: int) -> DriftReport:
    from rnnparity.files import verify

    saved = _save_states(model)
    recurrent = _recurrent_layers(model)
    # Target twins from the layers as loaded (with their carried states), before any call.
    fresh = {id(layer): _target_twin(layer, target, backend) for layer in recurrent}
    replacements = {id(layer): _target_twin(layer, target, backend) for layer in recurrent}
    before = run_calls(model, arrays, calls)
    _restore_states(saved)
    rows: list[Any] = []
    captures: list[Any] = []
    for _ in range(calls):
        call_rows, call_captures, other = verify.run_model(handle, model, arrays)
        rows = call_rows if not rows else [_worse(a, b) for a, b in zip(rows, call_rows)]
        captures.extend(call_captures)
    by_layer: dict[int, list[Any]] = {}
    for capture in captures:
        by_layer.setdefault(id(capture.layer), []).append(capture)
    for row in rows:
        if row.status == "MISMATCH":
            raise ModelFileError(
                f"the twin of {row.name} does not compute what {handle.describe()} computes here "
                f"(see rnnparity verify), so its drift cannot be predicted: {row.detail}"
            )
    old_env, new_env = handle.environment, environment(target, backend)
    layers = [
        _layer_drift(layer, row, fresh[id(layer)], by_layer.get(id(layer), []), old_env, new_env)
        for layer, row in zip(recurrent, rows)
    ]
    _restore_states(saved)
    after = _run_replaced(handle, model, arrays, calls, recurrent, replacements, by_layer)
    _restore_states(saved)
    outputs = [_output_drift(name, before[name], after[name]) for name in before]
    report = DriftReport("", handle.describe(), "", [], layers, outputs, None, other_layers=other)
    report.before, report.after = before, after
    return report


def _worse(a: Any, b: Any) -> Any:
    """Two calls' verify rows of one layer as one (the first mismatch wins)."""
    if a.status == "MISMATCH" or b.status in ("skipped", "not called"):
        return a
    if b.status == "MISMATCH" or a.status != "ok":
        return b
    a.calls += b.calls
    for key in ("max_abs", "max_rel", "tolerance_used"):
        setattr(a, key, max(getattr(a, key) or 0.0, getattr(b, key) or 0.0))
    return a


def _target_twin(layer: Any, target: int, backend: str) -> Any:
    """The layer's twin under the target Keras, or why there is none (a string)."""
    from rnnparity.files import verify

    reason = verify._unsupported_reason(layer)
    if reason:
        return reason
    twin = verify._twin_or_reason(layer)
    if isinstance(twin, str):
        return twin
    try:
        return retarget(twin, target, backend)
    except ValueError as exc:
        return f"breaks: {exc}"


def _layer_drift(
    layer: Any, row: Any, twin: Any, captures: list[Any], old: Mapping[str, Any], new: Mapping[str, Any]
) -> LayerDrift:
    from rnnparity.compare import compare
    from rnnparity.suite.known_differences import tolerance_for

    result = LayerDrift(layer.name, row.type, "not called", calls=len(captures))
    if isinstance(twin, str):
        if twin.startswith("breaks: "):
            result.status, result.detail = "breaks", twin.removeprefix("breaks: ")
        else:
            result.status, result.detail = "not predicted", twin
        return result
    if row.status != "ok" or not captures:
        result.status, result.detail = ("not predicted", row.detail) if row.status == "skipped" else ("not called", "")
        return result
    worst_abs = worst_rel = worst_used = 0.0
    changed = False
    for capture in captures:
        rtol, atol = tolerance_for(twin.dtype.name, old["keras_backend"])
        try:
            predicted = twin(capture.inputs, initial_state=capture.initial_state, mask=capture.mask)
        except (ValueError, TypeError) as exc:
            result.status, result.detail = "breaks", f"the target's twin refuses the call: {exc}"
            return result
        comparison = compare(capture.keras_result, predicted, rtol=rtol, atol=atol, check_container=False)
        worst_abs, worst_rel = max(worst_abs, comparison.max_abs), max(worst_rel, comparison.max_rel)
        worst_used = max(worst_used, comparison.tolerance_used)
        changed = changed or not comparison.ok
    result.max_abs, result.max_rel, result.tolerance_used = worst_abs, worst_rel, worst_used
    result.status = "drifts" if changed else "same"
    if changed:
        given_state = any(capture.initial_state is not None for capture in captures)
        masked = any(capture.mask is not None for capture in captures)
        result.causes = known_causes(twin, old, new, given_state, masked) or ["unexplained"]
    return result


def _run_replaced(
    handle: Any,
    model: Any,
    arrays: list[np.ndarray],
    calls: int,
    recurrent: list[Any],
    twins: dict[int, Any],
    templates: dict[int, list[Any]],
) -> dict[str, np.ndarray]:
    """The model's outputs with each recurrent layer's call answered by its target twin."""
    from rnnparity.files import verify
    from rnnparity.suite import keras_adapter

    patched = []
    for layer in recurrent:
        twin = twins[id(layer)]
        if isinstance(twin, str) or not templates.get(id(layer)):
            continue  # no twin (the layer runs as Keras runs it) or never called
        original = layer.call
        counter = [0]

        def replaced(
            *args: Any,
            keras_layer: Any = layer,
            original: Any = original,
            twin: Any = twin,
            counter: list[int] = counter,
            **kwargs: Any,
        ) -> Any:
            values = verify._arguments(original, args, kwargs)
            sequence = values.get("sequences", values.get("inputs"))
            mask = values.get("mask")
            initial_state = values.get("initial_state")
            result = twin(
                keras_adapter.to_numpy(sequence),
                initial_state=None if initial_state is None else keras_adapter.nested_to_numpy(initial_state),
                mask=None if mask is None else keras_adapter.to_numpy(mask).astype(bool),
            )
            layer_templates = templates[id(keras_layer)]
            template = layer_templates[min(counter[0], len(layer_templates) - 1)].keras_result
            counter[0] += 1
            return _as_tensors(handle, _pack_like(template, iter(_leaves(result))))

        layer.call = replaced
        patched.append(layer)
    try:
        return run_calls(model, arrays, calls)
    finally:
        for layer in patched:
            verify._restore_call(layer)


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


def _pack_like(template: Any, leaves: Any) -> Any:
    """``leaves`` in the nesting (and list/tuple types) of ``template``: the structure the
    installed Keras returns, whatever structure the target's twin returns."""
    if isinstance(template, (list, tuple)):
        return type(template)(_pack_like(item, leaves) for item in template)
    return next(leaves)


def _as_tensors(handle: Any, value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return type(value)(_as_tensors(handle, item) for item in value)
    if handle.keras_version == 2:
        import tensorflow as tf

        return tf.constant(value)
    return handle.module.ops.convert_to_tensor(value)


def _output_drift(name: str, before: np.ndarray, after: np.ndarray) -> OutputDrift:
    from rnnparity.compare import compare

    comparison = compare(before, after, names=[name])
    rows = int(np.prod(before.shape[:-1])) if before.ndim else 1
    result = OutputDrift(
        name, list(before.shape), comparison.max_abs, comparison.max_rel, comparison.tolerance_used, not comparison.ok, rows
    )
    if before.ndim >= 1 and np.issubdtype(before.dtype, np.floating):
        if before.shape[-1] > 1:
            result.argmax_flips = int(np.count_nonzero(np.argmax(before, axis=-1) != np.argmax(after, axis=-1)))
        elif before.shape[-1] == 1 and before.size and np.all((before >= 0) & (before <= 1)):
            result.crossings = int(np.count_nonzero((before > 0.5) != (after > 0.5)))
    return result


# --------------------------------------------------------------------------- the target Keras itself
def _compare_with_target(report: DriftReport, path: str, to: str, arrays: list[np.ndarray], calls: int) -> None:
    """Run the file in the target Keras (a subprocess) and compare with the prediction."""
    from rnnparity.compare import compare

    outcome, message = run_in_target(path, to, arrays, calls)
    if outcome is None:
        report.actual = f"not run: {message}; the prediction stands alone"
        return
    if list(outcome) != list(report.after):
        names = list(outcome.values())
        if len(names) != len(report.after):
            report.actual = f"not compared: the target Keras gives {len(outcome)} output(s), the model {len(report.after)}"
            return
        outcome = dict(zip(report.after, names))
    report.actual = f"ran ({message})"
    report.actual_outputs = outcome
    for output in report.outputs:
        actual = outcome[output.name]
        if actual.shape != report.after[output.name].shape:
            output.agrees, output.agreement = False, f"shape {actual.shape}, predicted {report.after[output.name].shape}"
            continue
        output.actual_max_abs = compare(report.before[output.name], actual).max_abs
        agreement = compare(actual, report.after[output.name], names=[output.name], context="target Keras vs predicted")
        output.agrees, output.agreement, output.agreement_max_abs = agreement.ok, agreement.message, agreement.max_abs


# --------------------------------------------------------------------------- weights-only files
def drift_weights(
    path: str,
    *,
    to: str = "keras3",
    overrides: dict[str | None, dict[str, Any]] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    timesteps: int = DEFAULT_TIMESTEPS,
    seed: int = DEFAULT_SEED,
) -> DriftReport:
    """Per-layer drift of a weights-only file: each recurrent layer's twin as the writer's Keras
    computes it against the same twin under ``to``, on a seeded batch, without and with a
    right-padded mask. No Keras is imported."""
    from rnnparity.compare import compare
    from rnnparity.files import legacy

    target = TARGETS[to]
    overrides = dict(overrides or {})
    try:
        file = legacy.read_weights_file(path)
    except (legacy.WeightsFileError, ValueError, TypeError) as exc:
        raise ModelFileError(str(exc)) from None
    for_all = overrides.get(None, {})
    source = for_all.get("keras_version", file.writer.keras_version)
    old_env, new_env = environment(source, "tensorflow"), environment(target, "tensorflow")
    rng = np.random.default_rng(seed)
    layers, described = [], []
    for stored in file.layers:
        config = {k: v for k, v in for_all.items() if k in legacy.accepted_keys(stored)}
        config.update(overrides.get(stored.name, {}))
        config.update(return_sequences=True, return_state=True, stateful=False)
        try:
            plan = legacy.plan_twin(file, stored, config)
            twin = plan.build()
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"layer {stored.name!r}: {exc}") from None
        row = LayerDrift(stored.name, stored.class_name, "same", calls=2)
        try:
            moved = retarget(twin, target)
        except ValueError as exc:
            row.status, row.detail = "breaks", str(exc)
            layers.append(row)
            continue
        shape = random_input_shape(twin, stored, batch_size, timesteps)  # a ConvLSTM's has spatial axes
        x = rng.normal(0.0, 1.5, size=shape).astype(twin.dtype)
        lengths = rng.integers(1, timesteps + 1, size=batch_size)
        lengths[0] = timesteps
        mask = np.arange(timesteps)[None, :] < lengths[:, None]
        described.append({"name": stored.name, "shape": list(shape), "dtype": twin.dtype.name})
        worst = [0.0, 0.0, 0.0]
        changed = False
        for call_mask in (None, mask):
            comparison = compare(twin(x, mask=call_mask), moved(x, mask=call_mask), check_container=False)
            worst = [
                max(worst[0], comparison.max_abs),
                max(worst[1], comparison.max_rel),
                max(worst[2], comparison.tolerance_used),
            ]
            changed = changed or not comparison.ok
        row.max_abs, row.max_rel, row.tolerance_used = worst
        if changed:
            row.status = "drifts"
            row.causes = known_causes(twin, old_env, new_env, False, masked=True) or ["unexplained"]
        layers.append(row)
    for name, reason in file.no_twin.items():
        layers.append(LayerDrift(name, "?", "not predicted", detail=reason))
    return DriftReport(
        path,
        f"{file.writer.source} (the twins emulate Keras {source}; no Keras was run)",
        to,
        described,
        layers,
        [],
        seed,
        calls=2,
        weights_only=True,
        actual="not run: a weights-only file has no model for the target Keras to load; per-layer prediction only "
        "(the end-to-end part needs a full model file)",
        other_layers=len(file.others),
    )
