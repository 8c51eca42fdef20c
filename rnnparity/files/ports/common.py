"""What every port shares: inputs and outputs matched, the call loop, the comparison, the
localization of the first diverging recurrent layer, and the report.

The Keras side runs a *probe*: a functional model over the same layers whose outputs are the
model's outputs followed by every recurrent layer's results (output, then states). One call of
the probe gives both, with the layers' carried state advancing exactly as in the model, so a
stateful model is compared call by call.

A port (:class:`Port`) runs one call at a time in one session, so a runtime that keeps state
between calls (TFLite's variables) keeps it. It also lists its intermediate tensors for the
localization, which matches each recurrent layer's Keras results to those tensors by shape and
value (batch-major, time-major and per-direction layouts), never by name: a fused ONNX ``LSTM``
or a TFLite ``WHILE`` output carries no layer name.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from rnnparity.files.verify import DEFAULT_BATCH_SIZE, DEFAULT_SEED, DEFAULT_TIMESTEPS, ModelFileError

BACKENDS = ("jax", "torch", "numpy", "tensorflow")
PAD_CHOICES = ("right", "left", "none")
DEFAULT_STATEFUL_CALLS = 3


class PortError(ModelFileError):
    """The port cannot be read or run, or does not fit the model (the CLI's exit 2)."""


@dataclass(frozen=True)
class TensorInfo:
    """One input or output of a port: its name, shape (None: any size) and dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} ({dims}) {self.dtype}"


class Port:
    """A model converted to, or run on, another runtime. Subclasses fill ``label``,
    ``inputs`` and ``outputs`` and implement :meth:`run` and :meth:`intermediates`."""

    label: str = ""
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """One call (state carried from the previous call where the runtime keeps it);
        the results in the order of :attr:`outputs`."""
        raise NotImplementedError

    def intermediates(self, calls: list[list[np.ndarray]]) -> list[tuple[str, np.ndarray]]:
        """Replay ``calls`` in a fresh session; every floating tensor the runtime exposes
        during the last one, as ``(name, array)``."""
        raise NotImplementedError

    def kernel_of(self, tensor: str) -> str:
        """The recurrent kernel that computed ``tensor`` (e.g. ``ONNX LSTM op``), or ''."""
        return ""

    def kernel_summary(self) -> str:
        """One line: the recurrent kernels the port contains."""
        return ""

    def close(self) -> None:
        """Release the runtime's resources (a subprocess's files)."""


def open_port(against: str, model_path: str, *, float64: bool = False) -> Port:
    """The port for ``--against``: a backend name, a ``.onnx`` or a ``.tflite`` file.
    ``float64``: the model computes in float64 (JAX then needs x64 switched on)."""
    if against in BACKENDS:
        from rnnparity.files.ports.backend import BackendPort

        return BackendPort(against, model_path, x64=float64)
    suffix = os.path.splitext(against)[1].lower()
    if suffix not in (".onnx", ".tflite"):
        raise PortError(
            f"--against takes a .onnx file, a .tflite file or a Keras 3 backend ({', '.join(BACKENDS)}); got {against!r}"
        )
    if not os.path.isfile(against):
        raise PortError(f"--against {against}: no such file")
    if suffix == ".onnx":
        from rnnparity.files.ports.onnx import OnnxPort

        return OnnxPort(against)
    from rnnparity.files.ports.tflite import TflitePort

    return TflitePort(against)


# --------------------------------------------------------------------------- the Keras side
@dataclass
class RecurrentInfo:
    name: str
    type: str
    stateful: bool
    first: int  # index of its first result among the probe's outputs
    count: int  # how many results (output, then states)


class KerasSide:
    """The loaded model, its probe and what the report needs to know about it."""

    def __init__(self, model_path: str) -> None:
        from rnnparity.files import verify

        self.model_file = verify.read_model_file(model_path)
        self.handle, self.model = verify.load_model(self.model_file)
        self.specs = verify.input_specs(self.model)
        self.output_names = [str(n) for n in getattr(self.model, "output_names", None) or []]
        self.n_outputs = len(self.model.outputs)
        if len(self.output_names) != self.n_outputs:
            self.output_names = [f"output_{i}" for i in range(self.n_outputs)]
        self.recurrent: list[RecurrentInfo] = []
        self.not_probed: list[str] = []
        self.probe = self._build_probe()

    def _build_probe(self) -> Any:
        from rnnparity.files import verify

        extra: list[Any] = []
        position = self.n_outputs
        for layer in verify._layers_of(self.model):
            if not verify.is_recurrent(layer):
                continue
            inner = getattr(layer, "forward_layer", layer)
            stateful = bool(getattr(inner, "stateful", False))
            try:
                result = layer.output
            except Exception:  # a layer called more than once, or inside a nested model
                self.not_probed.append(layer.name)
                self.recurrent.append(RecurrentInfo(layer.name, type(layer).__name__, stateful, -1, 0))
                continue
            results = list(result) if isinstance(result, (list, tuple)) else [result]
            self.recurrent.append(RecurrentInfo(layer.name, type(layer).__name__, stateful, position, len(results)))
            extra.extend(results)
            position += len(results)
        if not extra:
            return self.model
        try:
            return self.handle.module.Model(self.model.inputs, [*self.model.outputs, *extra])
        except Exception:  # a model whose graph cannot be reopened (subclassed models)
            self.not_probed = [info.name for info in self.recurrent]
            for info in self.recurrent:
                info.first, info.count = -1, 0
            return self.model

    @property
    def stateful_layers(self) -> list[str]:
        return [info.name for info in self.recurrent if info.stateful]

    def call(self, arrays: list[np.ndarray]) -> tuple[list[np.ndarray], dict[str, list[np.ndarray]]]:
        """One call: the model's outputs and, per probed recurrent layer, its results."""
        from rnnparity.suite import keras_adapter

        try:
            # The probe is built on the list model.inputs, so it takes a list even for one input.
            given = list(arrays) if self.probe is not self.model or len(arrays) > 1 else arrays[0]
            raw = self.probe(given, training=False)
        except Exception as exc:  # the model itself failed on these inputs
            from rnnparity.files.verify import _first_line

            raise PortError(f"the Keras model could not run on the inputs: {_first_line(exc)}") from None
        flat = [keras_adapter.to_numpy(v) for v in (raw if isinstance(raw, (list, tuple)) else [raw])]
        outputs = flat[: self.n_outputs]
        layers = {info.name: flat[info.first : info.first + info.count] for info in self.recurrent if info.count}
        return outputs, layers

    def reset_states(self) -> None:
        from rnnparity.files import verify
        from rnnparity.suite import keras_adapter

        for layer in verify._layers_of(self.model):
            if verify.is_recurrent(layer) and getattr(getattr(layer, "forward_layer", layer), "stateful", False):
                keras_adapter.reset_layer_state(self.handle, layer)

    def mask_source(self) -> tuple[str, float] | None:
        """``("masking", mask_value)`` or ``("embedding", 0)`` when the model makes a mask."""
        from rnnparity.files import verify

        for layer in verify._layers_of(self.model):
            kind = type(layer).__name__
            if kind == "Masking":
                return "masking", float(layer.mask_value)
            if kind == "Embedding" and getattr(layer, "mask_zero", False):
                return "embedding", 0.0
        return None


# --------------------------------------------------------------------------- inputs
def _plain_name(name: str) -> str:
    """A port tensor name without runtime decorations (``serving_default_x:0`` -> ``x``)."""
    name = name.split(":")[0]
    for prefix in ("serving_default_",):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return name


def match_by_name_else_order(ours: Sequence[str], theirs: Sequence[str], what: str) -> list[int]:
    """For each of ``ours`` (the Keras model's names), the index of the port's tensor."""
    if len(ours) != len(theirs):
        raise PortError(
            f"the port has {len(theirs)} {what}(s) {list(theirs)}; the Keras model has {len(ours)} {what}(s) {list(ours)}"
        )
    plain = [_plain_name(t) for t in theirs]
    if sorted(ours) == sorted(plain) and len(set(plain)) == len(plain):
        return [plain.index(name) for name in ours]
    return list(range(len(ours)))


def call_sizes(
    keras: KerasSide, port: Port, order: list[int], batch_size: int | None, timesteps: int | None
) -> tuple[int, int]:
    """Batch and time sizes: the user's, else the port's fixed ones, else the defaults; a
    fixed size of the model or the port that differs from what is asked is an error."""
    chosen = {0: batch_size, 1: timesteps}
    options = {0: "--batch-size", 1: "--timesteps"}
    for spec, index in zip(keras.specs, order):
        port_shape = port.inputs[index].shape
        for axis in (0, 1):
            if axis >= len(spec.shape) or axis >= len(port_shape):
                continue
            fixed = [s for s in (spec.shape[axis], port_shape[axis]) if s is not None]
            if len(set(fixed)) > 1:
                raise PortError(
                    f"input {spec.name!r} axis {axis}: the Keras model fixes {spec.shape[axis]}, "
                    f"the port's {port.inputs[index].name!r} fixes {port_shape[axis]}"
                )
            if fixed:
                if chosen[axis] is not None and chosen[axis] != fixed[0]:
                    raise PortError(
                        f"{options[axis]} {chosen[axis]}: input {spec.name!r} has a fixed size {fixed[0]} on axis {axis} "
                        f"(Keras {spec.shape}, port {port.inputs[index].describe()})"
                    )
                chosen[axis] = fixed[0]
    return (chosen[0] or DEFAULT_BATCH_SIZE, chosen[1] or DEFAULT_TIMESTEPS)


def check_inputs(keras: KerasSide, port: Port, order: list[int], arrays: list[np.ndarray]) -> None:
    """Shapes and dtypes of the arrays against the port's inputs; the error names both sides."""
    for spec, index, array in zip(keras.specs, order, arrays):
        theirs = port.inputs[index]
        if len(theirs.shape) != array.ndim or any(d is not None and d != s for d, s in zip(theirs.shape, array.shape)):
            raise PortError(
                f"input {spec.name!r} has shape {array.shape} (Keras {spec.shape}); the port's input {theirs.describe()} "
                "does not take it"
            )
        if np.dtype(theirs.dtype) != array.dtype:
            raise PortError(f"input {spec.name!r} is {array.dtype} (Keras {spec.dtype}); the port's input {theirs.describe()}")


def make_call_inputs(
    keras: KerasSide, batch_size: int, timesteps: int, seed: int, call: int, pad: str, dtype: str | None
) -> list[np.ndarray]:
    """Fresh seeded inputs for one call, padded as ``pad`` asks when the model masks."""
    from rnnparity.files import verify

    arrays = verify.make_inputs(keras.model, batch_size=batch_size, timesteps=timesteps, seed=seed + 1000 * call)
    if dtype is not None:
        arrays = [a.astype(dtype) if a.dtype.kind == "f" else a for a in arrays]
    source = keras.mask_source()
    if source is None or pad == "right":
        return arrays
    rng = np.random.default_rng(seed + 1000 * call + 1)
    padded_inputs = []
    for array in arrays:
        if array.ndim < 2:
            padded_inputs.append(array)
            continue
        if source[0] == "embedding" and array.dtype.kind in "iu":
            padded = array == 0
        elif source[0] == "masking" and array.dtype.kind == "f":
            padded = np.all(array.reshape(*array.shape[:2], -1) == source[1], axis=-1)
        else:
            padded_inputs.append(array)
            continue
        if pad == "none":
            fresh = (
                rng.integers(1, max(int(array.max()), 2), size=array.shape).astype(array.dtype)
                if array.dtype.kind in "iu"
                else rng.normal(0.0, 1.5, size=array.shape).astype(array.dtype)
            )
            where = padded.reshape(*padded.shape, *([1] * (array.ndim - 2)))
            padded_inputs.append(np.where(where, fresh, array))
        else:  # left: each row's padding moved to its start
            rows = [np.roll(row, int(count), axis=0) for row, count in zip(array, padded.sum(axis=1))]
            padded_inputs.append(np.stack(rows))
    return padded_inputs


# --------------------------------------------------------------------------- the report
@dataclass
class OutputResult:
    call: int
    output: str
    status: str  # "ok" or "MISMATCH"
    max_abs: float
    max_rel: float
    tolerance_used: float
    detail: str = ""


@dataclass
class LayerMatch:
    name: str
    type: str
    status: str  # "matches", "differs", "not found", "not probed"
    tensor: str = ""
    kernel: str = ""
    max_abs: float | None = None
    detail: str = ""


@dataclass
class PortReport:
    model: str
    port: str
    runtime: str
    keras: str
    inputs: list[dict[str, Any]]
    calls: int
    calls_note: str
    pad: str
    seed: int | None
    outputs: list[OutputResult] = field(default_factory=list)
    layers: list[LayerMatch] = field(default_factory=list)
    kernels: str = ""
    localization: str = ""
    state_note: str = ""

    @property
    def ok(self) -> bool:
        return all(row.status == "ok" for row in self.outputs)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


# --------------------------------------------------------------------------- matching tensors
def _views(port_array: np.ndarray, shape: tuple[int, ...]) -> Iterator[tuple[str, np.ndarray]]:
    """The ways a port may lay out a Keras array of ``shape``: as is, time-major, ONNX's
    ``(time, directions, batch, units)``, ``(directions, batch, units)``, extra unit axes."""
    if port_array.size != int(np.prod(shape)):
        return
    if port_array.shape == shape:
        yield "", port_array
    if port_array.ndim == 3 and len(shape) == 3 and port_array.shape[1::-1] + port_array.shape[2:] == shape:
        yield "time-major", port_array.transpose(1, 0, 2)
    if port_array.ndim == 4 and len(shape) == 3:
        steps, directions, batch, units = port_array.shape
        if (batch, steps, directions * units) == shape:
            yield "(time, directions, batch, units)", port_array.transpose(2, 0, 1, 3).reshape(shape)
    if port_array.ndim == 3 and len(shape) == 2:
        directions, batch, units = port_array.shape
        if (batch, directions * units) == shape:
            yield "(directions, batch, units)", port_array.transpose(1, 0, 2).reshape(shape)
    squeezed = np.squeeze(port_array)
    if squeezed.shape == shape and port_array.shape != shape and 1 not in shape:
        yield "size-1 axes dropped", squeezed


def match_layers(
    keras: KerasSide,
    layer_results: dict[str, list[np.ndarray]],
    port: Port,
    tensors: list[tuple[str, np.ndarray]],
    dtype: str,
) -> list[LayerMatch]:
    """For each recurrent layer, the port tensor holding its output (or a state), if any."""
    from rnnparity.compare import compare_arrays

    rows = []
    floating = [(name, array) for name, array in tensors if array.dtype.kind == "f"]
    for info in keras.recurrent:
        row = LayerMatch(info.name, info.type, "not probed")
        results = layer_results.get(info.name)
        if not results:
            rows.append(row)
            continue
        closest: tuple[float, str, float, str] | None = None
        for which, reference in enumerate(results):
            for name, array in floating:
                for layout, view in _views(array, reference.shape):
                    result = compare_arrays(reference, view.astype(reference.dtype), dtype=dtype)
                    if result.ok:
                        row.status, row.tensor, row.max_abs = "matches", name, result.max_abs
                        row.kernel = port.kernel_of(name)
                        row.detail = f"its {'output' if which == 0 else f'state {which}'} is port tensor {name!r}" + (
                            f" ({layout})" if layout else ""
                        )
                        break
                    if which == 0 and (closest is None or result.tolerance_used < closest[0]):
                        closest = (result.tolerance_used, name, result.max_abs, layout)
                if row.status == "matches":
                    break
            if row.status == "matches":
                break
        if row.status != "matches":
            if closest is None:
                row.status, row.detail = "not found", "no port tensor has the shape of its output"
            else:
                _, name, max_abs, layout = closest
                row.status, row.tensor, row.max_abs = "differs", name, max_abs
                row.kernel = port.kernel_of(name)
                row.detail = f"closest port tensor of its output's shape, {name!r}" + (f" ({layout})" if layout else "")
                row.detail += f", is off by up to {max_abs:.3g}"
        rows.append(row)
    return rows


def localize(rows: list[LayerMatch]) -> str:
    """The sentence naming the first diverging recurrent layer, or why there is none."""
    for row in rows:
        if row.status == "differs":
            return f"first diverging recurrent layer: {row.name} ({row.type}); {row.detail}"
    unmatched = [row.name for row in rows if row.status != "matches"]
    if not rows:
        return "localization not possible: the model has no recurrent layer"
    if unmatched:
        return (
            f"localization not possible: no port tensor could be matched to {', '.join(unmatched)}; "
            "the layers that could be matched agree with Keras"
        )
    return "every recurrent layer's output is found in the port and agrees; the divergence comes after them"


# --------------------------------------------------------------------------- the check
def verify_against(
    model_path: str,
    against: str,
    *,
    calls: int | None = None,
    pad: str | None = None,
    inputs_path: str | None = None,
    batch_size: int | None = None,
    timesteps: int | None = None,
    seed: int | None = None,
    dtype: str | None = None,
) -> PortReport:
    """Everything ``rnnparity verify MODEL --against PORT`` does, returned as a report."""
    from rnnparity.compare import compare_arrays
    from rnnparity.files import verify

    if calls is not None and calls < 1:
        raise ValueError(f"calls must be a positive integer; got {calls}")
    if pad is not None and pad not in PAD_CHOICES:
        raise ValueError(f"pad must be one of {PAD_CHOICES}; got {pad!r}")
    if dtype is not None and dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64'; got {dtype!r}")
    keras = KerasSide(model_path)
    float64 = dtype == "float64" or any(spec.dtype == "float64" for spec in keras.specs)
    port = open_port(against, model_path, float64=float64)
    try:
        input_order = match_by_name_else_order([s.name for s in keras.specs], [t.name for t in port.inputs], "input")
        output_order = match_by_name_else_order(keras.output_names, [t.name for t in port.outputs], "output")
        stateful = keras.stateful_layers
        if calls is None:
            calls = DEFAULT_STATEFUL_CALLS if stateful else 1
            calls_note = (
                f"{calls} calls: the model has stateful layer(s) {', '.join(stateful)}, whose state must carry over"
                if stateful
                else "1 call"
            )
        else:
            calls_note = f"{calls} call(s) (--calls)"
        source = keras.mask_source()
        if pad is None:
            pad = "right" if source else "none"
        elif pad != "none" and source is None:
            raise PortError(f"--pad {pad}: the model has no Masking or Embedding(mask_zero=True) layer, so nothing is padded")
        if inputs_path is not None:
            given = verify.read_inputs(inputs_path, keras.model)
            if calls != 1:
                raise PortError(f"--inputs gives the inputs of one call; --calls {calls} needs fresh inputs per call")
            all_inputs = [given]
        else:
            sizes = call_sizes(keras, port, input_order, batch_size, timesteps)
            base_seed = DEFAULT_SEED if seed is None else seed
            all_inputs = [make_call_inputs(keras, *sizes, base_seed, call, pad, dtype) for call in range(calls)]
        float_dtype = dtype or next((str(a.dtype) for a in all_inputs[0] if a.dtype.kind == "f"), "float32")
        report = PortReport(
            model=model_path,
            port=against,
            runtime=port.label,
            keras=keras.handle.describe(),
            inputs=[
                {"name": spec.name, "shape": list(a.shape), "dtype": str(a.dtype)} for spec, a in zip(keras.specs, all_inputs[0])
            ],
            calls=calls,
            calls_note=calls_note,
            pad=pad if source else "none (the model has no mask)",
            seed=None if inputs_path else (DEFAULT_SEED if seed is None else seed),
            kernels=port.kernel_summary(),
        )
        keras_layers: list[dict[str, list[np.ndarray]]] = []
        first_failure = None
        port_outputs_per_call = []
        for call, arrays in enumerate(all_inputs):
            check_inputs(keras, port, input_order, arrays)
            expected, layer_results = keras.call(arrays)
            keras_layers.append(layer_results)
            ordered = [arrays[input_order.index(i)] for i in range(len(arrays))]
            got = port.run(ordered)
            port_outputs_per_call.append(got)
            for name, index, reference in zip(keras.output_names, output_order, expected):
                mine = got[index]
                if mine.shape != reference.shape:
                    raise PortError(
                        f"output {name!r} has shape {reference.shape} in Keras; the port's {port.outputs[index].name!r} "
                        f"returned {mine.shape}"
                    )
                result = compare_arrays(reference, mine.astype(reference.dtype), dtype=float_dtype, context=f"call {call + 1} {name}")
                status = "ok" if result.ok else "MISMATCH"
                report.outputs.append(
                    OutputResult(call + 1, name, status, result.max_abs, result.max_rel, result.tolerance_used, result.message)
                )
                if not result.ok and first_failure is None:
                    first_failure = call
        probe_call = 0 if first_failure is None else first_failure
        tensors = port.intermediates([[a[input_order.index(i)] for i in range(len(a))] for a in all_inputs[: probe_call + 1]])
        report.layers = match_layers(keras, keras_layers[probe_call], port, tensors, float_dtype)
        if first_failure is not None:
            report.localization = f"call {first_failure + 1}: " + localize(report.layers)
            if stateful and first_failure > 0:
                report.state_note = _state_note(keras, port, output_order, all_inputs, port_outputs_per_call, first_failure, float_dtype)
        return report
    finally:
        port.close()


def _state_note(
    keras: KerasSide,
    port: Port,
    output_order: list[int],
    all_inputs: list[list[np.ndarray]],
    port_outputs: list[list[np.ndarray]],
    call: int,
    dtype: str,
) -> str:
    """Whether the port's failing call equals Keras started from zero state (state not carried)."""
    from rnnparity.compare import compare_arrays

    keras.reset_states()
    fresh, _ = keras.call(all_inputs[call])
    keras.reset_states()
    same = all(
        compare_arrays(reference, port_outputs[call][index].astype(reference.dtype), dtype=dtype).ok
        for reference, index in zip(fresh, output_order)
    )
    if same:
        return (
            f"the state was not carried: call 1 agrees, and the port's call {call + 1} equals the Keras model restarted from "
            f"zero state; the port starts every call from zero instead of continuing the stateful layer(s) "
            f"{', '.join(keras.stateful_layers)}"
        )
    return f"call {call + 1} differs, and not because the port restarted from zero state (that does not match either)"


def format_report(report: PortReport) -> str:
    """The text the CLI prints: per call and output, then per recurrent layer, then the verdict."""
    header = ("call", "output", "max abs err", "max rel err", "of tolerance", "status")
    rows: list[tuple[str, ...]] = [header]
    for row in report.outputs:
        rows.append(
            (str(row.call), row.output, f"{row.max_abs:.3g}", f"{row.max_rel:.3g}", f"{row.tolerance_used:.3g}x", row.status)
        )
    lines = [f"port: {report.port} ({report.runtime})", f"Keras: {report.keras}"]
    described = ", ".join(f"{i['name']} {tuple(i['shape'])} {i['dtype']}" for i in report.inputs)
    source = f"seed {report.seed}" if report.seed is not None else "from --inputs"
    lines.append(f"inputs ({source}, padding {report.pad}): {described}")
    lines.append(f"calls: {report.calls_note}")
    if report.kernels:
        lines.append(f"recurrent kernels in the port: {report.kernels}")
    lines.append("")
    lines.extend(_table(rows))
    if report.layers:
        lines.append("")
        layer_rows: list[tuple[str, ...]] = [("layer", "type", "in the port", "kernel", "detail")]
        for layer in report.layers:
            layer_rows.append((layer.name, layer.type, layer.status, layer.kernel or "-", layer.detail))
        lines.extend(_table(layer_rows))
    for row in report.outputs:
        if row.status != "ok":
            lines.append(f"\n{row.detail}")
            break
    if report.localization:
        lines.append(report.localization)
    if report.state_note:
        lines.append(report.state_note)
    return "\n".join(lines)


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)] + [0]
    lines = ["  ".join(value.ljust(width) for value, width in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths[:-1]) + "  ------")
    return lines
