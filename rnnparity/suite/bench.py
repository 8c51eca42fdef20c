"""``rnnparity bench``: forward time of the twins against the same Keras layer, side by side.

For each layer kind, shape and dtype the benchmark builds one twin and one Keras layer with
the same seeded random weights and times, interleaved round by round (so drift in the
machine's load hits every contender alike), the median of ``repeats`` calls of:

* ``twin``: the NumPy twin;
* ``gemm_floor``: NumPy doing only the matmuls a twin cannot avoid (the input projection of
  all timesteps in one matmul, then ``timesteps`` recurrent matmuls) — the time no NumPy
  implementation can beat;
* ``eager``: the Keras layer called eagerly;
* ``predict``: ``model.predict`` of a model holding just the layer;
* ``tf_function``: the layer inside ``tf.function`` (graph, no XLA);
* ``xla``: the layer inside ``tf.function(jit_compile=True)``.

Keras returns every timestep (``return_sequences=True``) in all contenders, and the twin's
result is compared with Keras's once per configuration (a fast wrong answer is worthless).
The twin's peak memory for one call is measured with ``tracemalloc`` (NumPy reports its
buffers to it) after the timings, so it does not slow them. ``decode`` times 10,000 single
steps of a cell at batch 1, the per-call overhead a decoding loop pays.

Timings are wall-clock medians on whatever else the machine is doing: run it on a quiet
machine, and read the ratios, which interleaving keeps honest, before the absolute times.
"""

from __future__ import annotations

import os
import platform
import statistics
import threading
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

import rnnparity
from rnnparity import threads
from rnnparity.suite.matrix import random_weights
from rnnparity.twin_classes import TWIN_CLASSES

KINDS = ("lstm", "gru", "simple_rnn")
DTYPES = ("float32", "float64")
CONTENDERS = ("twin", "gemm_floor", "eager", "predict", "tf_function", "xla")
KERAS_CONTENDERS = ("eager", "predict", "tf_function", "xla")
DECODE_STEPS = 10_000


@dataclass(frozen=True)
class Shape:
    batch: int
    timesteps: int
    input_dim: int
    units: int

    def describe(self) -> str:
        return f"B{self.batch} T{self.timesteps} D{self.input_dim} H{self.units}"


SHAPES = {
    "small": Shape(1, 20, 64, 128),
    "medium": Shape(32, 100, 64, 128),
    "large": Shape(256, 200, 128, 256),
}


@dataclass
class Result:
    kind: str
    shape: str
    dims: dict[str, int]
    dtype: str
    median_ms: dict[str, float]
    max_abs_error: float | None
    parity: bool | None  # the twin's result within the dtype's tolerance of Keras's
    twin_peak_mib: float
    outputs_mib: float
    repeats: int
    ratios: dict[str, float] = field(default_factory=dict)
    # False when float32 rounding alone (the twin in float32 against the twin in float64)
    # already uses more than half the tolerance: a float32 mismatch then proves nothing.
    decidable: bool = True
    # Where the twin's time goes (medians over separate, instrumented calls, in ms): the
    # input projection, the recurrent steps (recurrent matmul plus gates), and the rest.
    twin_phases_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class GradientResult:
    """``rnnparity.gradients`` against ``tf.GradientTape`` inside ``tf.function``, one configuration."""

    kind: str
    shape: str
    dims: dict[str, int]
    dtype: str
    median_ms: dict[str, float]  # "twin" and "tape_tf_function"
    max_abs_error: float | None
    parity: bool | None  # the twin's gradients within the dtype's tolerance of the tape's
    repeats: int
    ratios: dict[str, float] = field(default_factory=dict)
    decidable: bool = True  # as Result.decidable, for the gradients


@dataclass
class DecodeResult:
    kind: str
    dtype: str
    input_dim: int
    units: int
    steps: int
    seconds: float


@dataclass(frozen=True)
class ConvShape:
    """The ConvLSTM2D configuration ``bench --conv`` times: a short clip of small frames."""

    batch: int = 8
    timesteps: int = 10
    rows: int = 32
    cols: int = 32
    channels: int = 3
    filters: int = 16
    kernel: int = 3

    def describe(self) -> str:
        k = self.kernel
        return f"B{self.batch} T{self.timesteps} {self.rows}x{self.cols}x{self.channels} F{self.filters} k{k}x{k}"


CONV_KIND = "conv_lstm2d"
CONV_SHAPE = ConvShape()
CONV_PADDINGS = ("same", "valid")
CONV_CONTENDERS = ("twin", "eager", "predict", "tf_function", "xla")  # no GEMM floor: the steps are convolutions


def twin_for(kind: str, shape: Shape, dtype: str, weights: list[np.ndarray]) -> Any:
    layer_class: Any = TWIN_CLASSES[kind]  # LSTM, GRU or SimpleRNN: each takes units first
    layer = layer_class(shape.units, return_sequences=True, dtype=dtype)
    layer.set_weights(weights)
    return layer


def gemm_floor(weights: list[np.ndarray], inputs: np.ndarray, dtype: str) -> Callable[[], Any]:
    """The matmuls of one forward pass alone, in the twin's dtype and NumPy's BLAS, on the
    BLAS threads a twin call of this size would use (:mod:`rnnparity.threads`)."""
    kernel = np.ascontiguousarray(weights[0], dtype=dtype)
    recurrent_kernel = np.ascontiguousarray(weights[1], dtype=dtype)
    batch, timesteps, input_dim = inputs.shape
    flat = np.ascontiguousarray(inputs.transpose(1, 0, 2)).reshape(-1, input_dim)
    h = np.random.default_rng(0).uniform(-0.9, 0.9, (batch, recurrent_kernel.shape[0])).astype(dtype)
    # Preallocated and reused across calls: a fresh 200 MB result would add page faults
    # (tens of ms, varying with the allocator's state) to a number meant to be matmul alone.
    projected = np.empty((flat.shape[0], kernel.shape[1]), dtype)
    recurrent = np.empty((batch, recurrent_kernel.shape[1]), dtype)

    def run() -> Any:
        with threads.for_call(batch * recurrent_kernel.shape[0] * recurrent_kernel.shape[1]):  # as the twin chooses
            np.matmul(flat, kernel, out=projected)
            for _ in range(timesteps):
                np.matmul(h, recurrent_kernel, out=recurrent)
        return projected, recurrent

    return run


def twin_phases(twin: Any, inputs: np.ndarray, repeats: int) -> dict[str, float]:
    """Median milliseconds a twin call spends in the input projection, in the recurrent
    steps, and elsewhere (checks, the output array, the transposes), over ``repeats``
    instrumented calls. The cell's two methods are wrapped on the instance for the
    duration, so the class and other twins are untouched. When a call splits its batch over
    threads (:mod:`rnnparity.threads`), the phases are those of the slowest slice."""
    cell = twin.cell
    spent: dict[tuple[str, int], float] = {}  # (phase, thread) -> seconds in this call

    def timed(method: Callable[..., Any], phase: str) -> Callable[..., Any]:
        def run(*args: Any) -> Any:
            start = time.perf_counter()
            result = method(*args)
            key = (phase, threading.get_ident())
            spent[key] = spent.get(key, 0.0) + time.perf_counter() - start
            return result

        return run

    cell.input_projection = timed(cell.input_projection, "projection")
    cell.recurrent_step = timed(cell.recurrent_step, "steps")
    samples: dict[str, list[float]] = {"projection": [], "steps": [], "rest": []}
    try:
        for _ in range(repeats):
            spent.clear()
            start = time.perf_counter()
            twin(inputs)
            total = time.perf_counter() - start
            slices = {thread for _, thread in spent}
            slowest = max(slices, key=lambda t: spent.get(("projection", t), 0.0) + spent.get(("steps", t), 0.0))
            projection, steps = spent.get(("projection", slowest), 0.0), spent.get(("steps", slowest), 0.0)
            samples["projection"].append(projection)
            samples["steps"].append(steps)
            samples["rest"].append(total - projection - steps)
    finally:
        del cell.input_projection, cell.recurrent_step
    return {phase: 1e3 * statistics.median(values) for phase, values in samples.items()}


def peak_memory_mib(call: Callable[[], Any]) -> float:
    """Peak bytes allocated (NumPy buffers included) during one ``call()``, in MiB."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del result
    return peak / 2**20


def time_interleaved(callers: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median milliseconds per caller; each round calls every caller once, in turn."""
    samples: dict[str, list[float]] = {name: [] for name in callers}
    for _ in range(repeats):
        for name, call in callers.items():
            start = time.perf_counter()
            call()
            samples[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(values) for name, values in samples.items()}


def bench_one(
    handle: Any, kind: str, shape_name: str, dtype: str, contenders: Sequence[str], repeats: int, seed: int = 0
) -> Result:
    from rnnparity.suite import keras_adapter

    shape = SHAPES[shape_name]
    rng = np.random.default_rng(seed)
    weights = random_weights(rng, kind, shape.units, shape.input_dim, dtype=dtype)
    inputs = rng.normal(size=(shape.batch, shape.timesteps, shape.input_dim)).astype(dtype)
    twin = twin_for(kind, shape, dtype, weights)

    callers: dict[str, Callable[[], Any]] = {}
    if "twin" in contenders:
        callers["twin"] = lambda: twin(inputs)
    if "gemm_floor" in contenders:
        callers["gemm_floor"] = gemm_floor(weights, inputs, dtype)
    keras_callers = {}
    max_abs_error = parity = None
    decidable = True
    keras_wanted = [c for c in contenders if c in KERAS_CONTENDERS]
    if keras_wanted:
        layer = keras_adapter.build_layer(
            handle, kind, {"units": shape.units, "return_sequences": True, "dtype": dtype}, inputs.shape, weights
        )
        keras_callers = keras_adapter.benchmark_callers(handle, layer, inputs, keras_wanted)
        reference_name = next(c for c in ("tf_function", "eager", "xla", "predict") if c in keras_callers)
        reference = keras_adapter.to_numpy(keras_callers[reference_name]())
        context = f"bench {kind} {shape_name} {dtype}"
        comparison = rnnparity.compare(reference, twin(inputs), dtype=dtype, context=context)
        max_abs_error, parity = comparison.max_abs, comparison.ok
        if not parity and dtype == "float32":
            from rnnparity.suite.parity import compare_conditioning

            float64_result = twin_for(kind, shape, "float64", weights)(inputs.astype(np.float64))
            decidable = compare_conditioning(twin(inputs), float64_result, dtype, context).ok
    callers.update(keras_callers)
    for call in callers.values():  # warm-up: tracing, XLA compilation, BLAS thread start
        call()
    medians = time_interleaved(callers, repeats)
    ratios = {}
    if "twin" in medians:
        for other in medians:
            if other != "twin" and medians[other] > 0:
                ratios[f"twin/{other}"] = medians["twin"] / medians[other]
    return Result(
        kind=kind,
        shape=shape_name,
        dims=asdict(shape),
        dtype=dtype,
        median_ms=medians,
        max_abs_error=max_abs_error,
        parity=parity,
        decidable=decidable,
        twin_peak_mib=peak_memory_mib(lambda: twin(inputs)),
        twin_phases_ms=twin_phases(twin, inputs, repeats) if "twin" in contenders else {},
        outputs_mib=shape.batch * shape.timesteps * shape.units * np.dtype(dtype).itemsize / 2**20,
        repeats=repeats,
        ratios=ratios,
    )


def bench_conv(handle: Any, padding: str, dtype: str, contenders: Sequence[str], repeats: int, seed: int = 0) -> Result:
    """A ConvLSTM2D of :data:`CONV_SHAPE` with ``padding``, returning every timestep: the
    twin against the same Keras layer, as :func:`bench_one` does for the dense layers."""
    shape = CONV_SHAPE
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(shape.batch, shape.timesteps, shape.rows, shape.cols, shape.channels)).astype(dtype)
    options: dict[str, Any] = {"padding": padding, "return_sequences": True, "dtype": dtype}
    twin = rnnparity.ConvLSTM2D(shape.filters, shape.kernel, **options)
    frame = (shape.rows, shape.cols, shape.channels)
    k, filters = shape.kernel, shape.filters
    weight_shapes = [(k, k, shape.channels, 4 * filters), (k, k, filters, 4 * filters), (4 * filters,)]
    # Scaled by fan-in as Keras's default initializers are: larger weights saturate the gates
    # and make float32 rounding, not the twin, decide the comparison.
    weights = [rng.uniform(-1, 1, s).astype(dtype) / np.sqrt(np.prod(s[:-1]) if len(s) > 1 else 1) for s in weight_shapes]
    twin.set_weights(weights)
    callers: dict[str, Callable[[], Any]] = {}
    if "twin" in contenders:
        callers["twin"] = lambda: twin(inputs)
    max_abs_error = parity = None
    decidable = True
    keras_wanted = [c for c in contenders if c in KERAS_CONTENDERS]
    if keras_wanted:
        from rnnparity.suite import keras_adapter

        layer = handle.module.layers.ConvLSTM2D(shape.filters, shape.kernel, **options)
        layer.build((shape.batch, shape.timesteps, *frame))
        layer.set_weights(weights)
        keras_callers = keras_adapter.benchmark_callers(handle, layer, inputs, keras_wanted)
        reference_name = next(c for c in ("tf_function", "eager", "xla", "predict") if c in keras_callers)
        reference = keras_adapter.to_numpy(keras_callers[reference_name]())
        comparison = rnnparity.compare(reference, twin(inputs), dtype=dtype, context=f"bench ConvLSTM2D {padding} {dtype}")
        max_abs_error, parity = comparison.max_abs, comparison.ok
        if not parity and dtype == "float32":
            from rnnparity.suite.parity import compare_conditioning

            twin64 = rnnparity.ConvLSTM2D(shape.filters, shape.kernel, **{**options, "dtype": "float64"})
            twin64.set_weights([w.astype(np.float64) for w in weights])
            float64_result = twin64(inputs.astype(np.float64))
            decidable = compare_conditioning(twin(inputs), float64_result, dtype, "bench ConvLSTM2D").ok
        callers.update(keras_callers)
    for call in callers.values():  # warm-up: tracing, XLA compilation
        call()
    medians = time_interleaved(callers, repeats)
    ratios = {}
    if "twin" in medians:
        ratios = {f"twin/{other}": medians["twin"] / t for other, t in medians.items() if other != "twin" and t > 0}
    lost = 0 if padding == "same" else shape.kernel - 1  # rows and columns a valid convolution loses
    out_rows, out_cols = shape.rows - lost, shape.cols - lost
    return Result(
        kind=CONV_KIND,
        shape=f"{padding} padding",
        dims=asdict(shape),
        dtype=dtype,
        median_ms=medians,
        max_abs_error=max_abs_error,
        parity=parity,
        decidable=decidable,
        twin_peak_mib=peak_memory_mib(lambda: twin(inputs)) if "twin" in contenders else 0.0,
        outputs_mib=shape.batch * shape.timesteps * out_rows * out_cols * shape.filters * np.dtype(dtype).itemsize / 2**20,
        repeats=repeats,
        ratios=ratios,
    )


def bench_gradients(handle: Any, kind: str, shape_name: str, dtype: str, repeats: int, seed: int = 0) -> GradientResult:
    """The time of ``rnnparity.gradients`` (forward pass with its records, then BPTT) for the
    inputs and the weights, against ``tf.GradientTape`` over the Keras layer with the same
    weights inside ``tf.function`` (as a training step runs), interleaved; both get the same
    random output gradients for every timestep. The gradients are compared once."""
    from rnnparity.suite import keras_adapter

    shape = SHAPES[shape_name]
    rng = np.random.default_rng(seed)
    weights = random_weights(rng, kind, shape.units, shape.input_dim, dtype=dtype)
    inputs = rng.normal(size=(shape.batch, shape.timesteps, shape.input_dim)).astype(dtype)
    output_grads = rng.normal(size=(shape.batch, shape.timesteps, shape.units)).astype(dtype)
    twin = twin_for(kind, shape, dtype, weights)

    def twin_gradients(layer: Any = twin, x: np.ndarray = inputs, dy: np.ndarray = output_grads) -> list[np.ndarray]:
        grads = rnnparity.gradients(layer, x, dy)
        return [grads["inputs"], *grads["weights"]]

    layer = keras_adapter.build_layer(
        handle, kind, {"units": shape.units, "return_sequences": True, "dtype": dtype}, inputs.shape, weights
    )
    tape = keras_adapter.gradient_caller(handle, layer, inputs, output_grads)
    reference = [np.asarray(g) for g in tape()]
    context = f"bench gradients {kind} {shape_name} {dtype}"
    ours = twin_gradients()
    names = ["inputs", "kernel", "recurrent_kernel", "bias"]
    comparison = rnnparity.compare(reference, ours, dtype=dtype, context=context, names=names)
    decidable = True
    if not comparison.ok and dtype == "float32":
        from rnnparity.suite.parity import compare_conditioning

        twin64 = twin_for(kind, shape, "float64", weights)
        float64_grads = twin_gradients(twin64, inputs.astype(np.float64), output_grads.astype(np.float64))
        flat = [np.concatenate([g.ravel() for g in grads]) for grads in (ours, float64_grads)]
        decidable = compare_conditioning(flat[0], flat[1], dtype, context).ok
    callers = {"twin": twin_gradients, "tape_tf_function": tape}
    for call in callers.values():
        call()
    medians = time_interleaved(callers, repeats)
    return GradientResult(
        kind=kind,
        shape=shape_name,
        dims=asdict(shape),
        dtype=dtype,
        median_ms=medians,
        max_abs_error=comparison.max_abs,
        parity=comparison.ok,
        decidable=decidable,
        repeats=repeats,
        ratios={"twin/tape_tf_function": medians["twin"] / medians["tape_tf_function"]},
    )


def bench_decode(kind: str, dtype: str, shape: Shape, steps: int = DECODE_STEPS) -> DecodeResult:
    """``steps`` single-step calls of a twin cell at batch 1, states carried."""
    rng = np.random.default_rng(1)
    cell = twin_for(kind, shape, dtype, random_weights(rng, kind, shape.units, shape.input_dim, dtype=dtype)).cell
    x = rng.normal(size=(1, shape.input_dim)).astype(dtype)
    states: Any = [np.zeros((1, shape.units), dtype) for _ in cell.flat_state_sizes]
    cell(x, states)
    start = time.perf_counter()
    for _ in range(steps):
        _, states = cell(x, states)
    return DecodeResult(kind, dtype, shape.input_dim, shape.units, steps, time.perf_counter() - start)


def environment(handle: Any) -> dict[str, Any]:
    env: dict[str, Any] = {
        "rnnparity": rnnparity.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads_env": {k: os.environ[k] for k in sorted(os.environ) if k.endswith("_NUM_THREADS")},
        "blas_threads": threads.current_blas_threads(),
        "load_average_1min": _load_average(),
    }
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        env["numpy_blas"] = f"{blas.get('name')} {blas.get('version')}"
    except (TypeError, KeyError):
        env["numpy_blas"] = "unknown"
    if handle is not None:
        env["keras"] = handle.describe()
        from rnnparity.suite import keras_adapter

        env["tensorflow"] = keras_adapter.tensorflow_version()
    return env


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # not on every platform
        return None


def load_warning(load: float | None) -> str | None:
    """A warning when other work keeps the cores busy: every contender then shares the cores
    with it, in proportions that change from call to call (interleaving keeps the ratios
    fairer than the times). ``--contention N`` measures a busy machine on purpose."""
    cores = os.cpu_count() or 1
    if load is None or load < 0.5 * cores:
        return None
    return (
        f"WARNING: load average {load} on {cores} cores: other work is running, so these timings measure a busy "
        "machine, by an amount nobody controls; rerun on a quiet machine (and use --contention N for a known load)"
    )


# The targets this benchmark exists to watch (docs/bench.md): (label, which rows, the
# contender the twin is divided by, the limit idle, the limit beside busy processes).
TARGETS = (
    ("medium/large: twin <= {limit}x tf.function", lambda r: r.kind in KINDS and r.shape != "small", "tf_function", 1.0, 1.2),
    ("large LSTM: twin <= {limit}x the GEMM floor", lambda r: r.shape == "large" and r.kind == "lstm", "gemm_floor", 1.3, None),
    ("large LSTM: twin <= {limit}x XLA (stretch)", lambda r: r.shape == "large" and r.kind == "lstm", "xla", 1.2, None),
    ("ConvLSTM2D: twin <= {limit}x tf.function", lambda r: r.kind == CONV_KIND, "tf_function", 1.5, None),
)
GRADIENT_TARGET = 1.0  # rnnparity.gradients <= this times tf.GradientTape in tf.function (an aim)


def target_lines(
    results: list[Result], decodes: list[DecodeResult], gradients: Sequence[GradientResult] = (), contention: int = 0
) -> list[str]:
    """One line per target: met or MISSED, the worst ratio and how many rows are within.
    With ``contention`` busy processes, the targets that have a limit under load use it."""
    lines = []
    load = f" with {contention} busy process{'es' if contention > 1 else ''}" if contention else ""
    for label, applies, other, idle_limit, busy_limit in TARGETS:
        limit = busy_limit if contention and busy_limit is not None else idle_limit
        ratios = [(r, r.ratios.get(f"twin/{other}")) for r in results if applies(r)]
        lines += _target_line(label.format(limit=limit) + load, limit, ratios)
    if gradients:
        label = f"gradients: twin <= {GRADIENT_TARGET}x tf.GradientTape in tf.function (aim){load}"
        lines += _target_line(label, GRADIENT_TARGET, [(g, g.ratios.get("twin/tape_tf_function")) for g in gradients])
    rows: list[Result | GradientResult] = [*results, *gradients]
    broken = [r for r in rows if r.parity is False and r.decidable]
    if broken:
        lines.append(f"PARITY BROKEN in {len(broken)} configuration(s): the timings above compare a wrong answer")
    undecidable = [f"{r.kind} {r.shape}" for r in rows if r.parity is False and not r.decidable]
    if undecidable:
        lines.append(
            f"f32 rounding: {', '.join(undecidable)} float32 missed the tolerance, but the twin in float32 is as far "
            "from itself in float64 (long float32 dot products): float32 cannot decide parity there; float64 does"
        )
    for d in decodes:
        status = "met" if d.seconds < 1.0 else "MISSED"
        lines.append(f"{status:6} decode: {d.steps:,} {d.kind} cell steps (batch 1, {d.dtype}) in {d.seconds:.3f} s (< 1 s)")
    return lines


def _target_line(label: str, limit: float, ratios: Sequence[tuple[Any, float | None]]) -> list[str]:
    measured = [(r, x) for r, x in ratios if x is not None]
    if not measured:
        return []
    worst_result, worst = max(measured, key=lambda item: item[1])
    status = "met" if worst <= limit else "MISSED"
    return [
        f"{status:6} {label}: worst {worst:.2f}x ({worst_result.kind} {worst_result.shape} {worst_result.dtype}), "
        f"{sum(x <= limit for _, x in measured)}/{len(measured)} within"
    ]
