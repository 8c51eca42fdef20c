"""Seeded random ConvLSTM configurations and their data, and one runner that compares a twin
with Keras on them (through ``set_weights`` and through ``from_keras``).

A case is a frozen description; :func:`make_data` turns it into the same seeded random
kernels, recurrent kernels, biases, inputs, masks and initial states on every machine.
Weights are scaled by ``1 / sqrt(fan_in)`` times ``WEIGHT_GAIN`` so that pre-activations
have a standard deviation around 1.5: the gates work in their non-linear ranges, and
float32 rounding of the convolutions' long dot products stays well inside the float32
tolerance (:func:`conditioning` checks it case by case, on the twin alone).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from rnnparity import ConvLSTM1D, ConvLSTM2D, ConvLSTM3D
from rnnparity.compare import DEFAULT_TOLERANCES, Comparison, compare

TWINS = {1: ConvLSTM1D, 2: ConvLSTM2D, 3: ConvLSTM3D}
WEIGHT_GAIN = 1.2
# Each case forces one option on a random base configuration; "plain" forces none.
OPTIONS = (
    "plain",
    "same",
    "strides",
    "dilation",
    "channels_first",
    "no_bias",
    "activations",
    "return_state",
    "go_backwards",
    "initial_state",
    "mask",
    "stateful",
)
ACTIVATIONS = ("tanh", "softsign", "relu", "softmax", "linear")
GATES = ("sigmoid", "hard_sigmoid")


@dataclass(frozen=True)
class ConvCase:
    rank: int
    keras_version: int
    dtype: str
    seed: int
    option: str = "plain"
    filters: int = 3
    channels: int = 2
    kernel_size: tuple[int, ...] = (3,)
    strides: tuple[int, ...] = (1,)
    dilation_rate: tuple[int, ...] = (1,)
    padding: str = "valid"
    data_format: str = "channels_last"
    spatial: tuple[int, ...] = (7,)
    timesteps: int = 4
    batch: int = 2
    activation: str = "tanh"
    recurrent_activation: str = "sigmoid"
    use_bias: bool = True
    unit_forget_bias: bool = True
    return_sequences: bool = True
    return_state: bool = False
    go_backwards: bool = False
    initial_state: bool = False
    mask: bool = False
    stateful: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def case_id(self) -> str:
        return (
            f"conv{self.rank}d-k{self.keras_version}-{self.dtype}-{self.option}-seed{self.seed}-"
            f"k{'x'.join(map(str, self.kernel_size))}-s{'x'.join(map(str, self.strides))}-"
            f"d{'x'.join(map(str, self.dilation_rate))}-{self.padding}-{self.data_format}-"
            f"{self.activation}-{self.recurrent_activation}-bias{int(self.use_bias)}-rs{int(self.return_sequences)}-"
            f"st{int(self.return_state)}-gb{int(self.go_backwards)}-init{int(self.initial_state)}-mask{int(self.mask)}-"
            f"stateful{int(self.stateful)}"
        )

    def layer_kwargs(self) -> dict[str, Any]:
        """The Keras (and twin) constructor arguments."""
        return {
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "data_format": self.data_format,
            "dilation_rate": self.dilation_rate,
            "activation": self.activation,
            "recurrent_activation": self.recurrent_activation,
            "use_bias": self.use_bias,
            "unit_forget_bias": self.unit_forget_bias,
            "return_sequences": self.return_sequences,
            "return_state": self.return_state,
            "go_backwards": self.go_backwards,
            "stateful": self.stateful,
            "dtype": self.dtype,
        }

    def input_shape(self) -> tuple[int, ...]:
        if self.data_format == "channels_first":
            return (self.batch, self.timesteps, self.channels, *self.spatial)
        return (self.batch, self.timesteps, *self.spatial, self.channels)

    def state_shape(self) -> tuple[int, ...]:
        out = []
        for size, k, s, d in zip(self.spatial, self.kernel_size, self.strides, self.dilation_rate):
            out.append(-(-size // s) if self.padding == "same" else (size - (k - 1) * d - 1) // s + 1)
        if self.data_format == "channels_first":
            return (self.batch, self.filters, *out)
        return (self.batch, *out, self.filters)

    def twin(self, **overrides: Any) -> Any:
        kwargs = {**self.layer_kwargs(), **overrides}
        return TWINS[self.rank](keras_version=self.keras_version, **kwargs)


def draw_case(rank: int, keras_version: int, dtype: str, seed: int, option: str = "plain") -> ConvCase:
    """A random configuration (from ``seed``) with ``option`` forced on."""
    rng = np.random.default_rng([seed, rank, keras_version, OPTIONS.index(option)])
    kernel = tuple(int(k) for k in rng.integers(1, 4, size=rank))
    kernel = tuple(max(k, 2) for k in kernel) if rank == 1 else kernel
    spatial = tuple(int(s) for s in rng.integers(4, 8 if rank < 3 else 6, size=rank))
    case = ConvCase(
        rank=rank,
        keras_version=keras_version,
        dtype=dtype,
        seed=seed,
        option=option,
        filters=int(rng.integers(1, 5)),
        channels=int(rng.integers(1, 4)),
        kernel_size=kernel,
        strides=(1,) * rank,
        dilation_rate=(1,) * rank,
        padding=str(rng.choice(["valid", "same"])),
        spatial=spatial,
        timesteps=int(rng.integers(1, 6)),
        batch=int(rng.integers(1, 4)),
        recurrent_activation=str(rng.choice(GATES)),
        unit_forget_bias=bool(rng.integers(2)),
        return_sequences=bool(rng.integers(2)),
    )
    forced: dict[str, Any] = {}
    if option == "same":
        forced = {"padding": "same", "kernel_size": tuple(int(k) for k in rng.integers(2, 5, size=rank))}
    elif option == "strides":
        forced = {"strides": (*(int(s) for s in rng.integers(1, 4, size=rank)[:-1]), 2)}
    elif option == "dilation":
        forced = {"dilation_rate": (*(int(d) for d in rng.integers(1, 3, size=rank)[:-1]), 2), "padding": "same"}
    elif option == "channels_first":
        forced = {"data_format": "channels_first", "strides": tuple(int(s) for s in rng.integers(1, 3, size=rank))}
    elif option == "no_bias":
        forced = {"use_bias": False}
    elif option == "activations":
        forced = {"activation": str(rng.choice(ACTIVATIONS[1:]))}
    elif option == "return_state":
        forced = {"return_state": True}
    elif option == "go_backwards":
        forced = {"go_backwards": True, "timesteps": int(rng.integers(2, 6))}
    elif option == "initial_state":
        forced = {"initial_state": True, "return_state": True}
    elif option == "mask":
        forced = {"mask": True, "timesteps": int(rng.integers(3, 6)), "return_sequences": True}
    elif option == "stateful":
        forced = {"stateful": True, "return_state": bool(rng.integers(2))}
    elif option != "plain":
        raise ValueError(f"option must be one of {OPTIONS}; got {option!r}")
    return replace(case, **forced)


@dataclass
class ConvData:
    weights: list[np.ndarray]
    inputs: list[np.ndarray]  # one per call (two for stateful cases)
    initial_state: list[np.ndarray] | None
    mask: np.ndarray | None


def make_data(case: ConvCase) -> ConvData:
    """Seeded random weights (never constant) and inputs for ``case``."""
    rng = np.random.default_rng([case.seed, 7919, case.rank])
    k = math.prod(case.kernel_size)
    four = 4 * case.filters
    kernel = rng.standard_normal((*case.kernel_size, case.channels, four)) * (WEIGHT_GAIN / math.sqrt(k * case.channels))
    recurrent = rng.standard_normal((*case.kernel_size, case.filters, four)) * (WEIGHT_GAIN / math.sqrt(k * case.filters))
    weights = [kernel, recurrent]
    if case.use_bias:
        weights.append(rng.standard_normal(four) * 0.5)
    calls = 2 if case.stateful else 1
    inputs = [rng.standard_normal(case.input_shape()) for _ in range(calls)]
    initial_state = None
    if case.initial_state:
        initial_state = [rng.standard_normal(case.state_shape()) * 0.5 for _ in range(2)]
    mask = None
    if case.mask:
        mask = rng.random((case.batch, case.timesteps)) < 0.7
        mask[0, 0] = False  # a masked first step: the repeated output starts as zeros
    cast = case.dtype
    return ConvData(
        [w.astype(cast) for w in weights],
        [x.astype(cast) for x in inputs],
        None if initial_state is None else [s.astype(cast) for s in initial_state],
        mask,
    )


def twin_outputs(case: ConvCase, data: ConvData, twin: Any = None) -> list[Any]:
    """The twin's result for each call of ``case`` (and its carried states last, when stateful)."""
    if twin is None:
        twin = case.twin()
        twin.set_weights(data.weights)
    results: list[Any] = []
    for number, x in enumerate(data.inputs):
        results.append(twin(x, initial_state=data.initial_state if number == 0 else None, mask=data.mask))
    if case.stateful:
        results.append(twin.states)
    return results


def conditioning(case: ConvCase, share: float = 0.5) -> Comparison:
    """The twin in float32 against the twin in float64 on the same data: a float32 case can
    decide parity only if the two agree within ``share`` of the float32 tolerance."""
    data = make_data(replace(case, dtype="float64"))
    high = twin_outputs(replace(case, dtype="float64"), data)
    low_data = ConvData(
        [w.astype("float32") for w in data.weights],
        [x.astype("float32") for x in data.inputs],
        None if data.initial_state is None else [s.astype("float32") for s in data.initial_state],
        data.mask,
    )
    low = twin_outputs(replace(case, dtype="float32"), low_data)
    rtol, atol = DEFAULT_TOLERANCES["float32"]
    return compare(
        high,
        low,
        dtype="float32",
        rtol=rtol * share,
        atol=atol * share,
        context=f"{case.case_id} float32 vs float64",
        check_dtype=False,  # the float64 run against the float32 one, on purpose
    )


def keras_results(
    handle: Any, case: ConvCase, data: ConvData, data_format: str | None = None, chain_states: bool = False
) -> tuple[Any, Any]:
    """Keras's results for each call of ``case`` (carried states last, when stateful), and the
    built Keras layer. ``data_format`` builds the Keras layer with another layout: the inputs,
    initial states and results are transposed to and from it. ``chain_states`` runs a stateful
    case on a non-stateful Keras layer, each call starting from the states the previous one
    returned (what ``stateful`` means), for where Keras's own stateful layer refuses the dtype."""
    from rnnparity.suite import keras_adapter

    kwargs = case.layer_kwargs()
    transposed = data_format is not None and data_format != case.data_format
    if transposed:
        kwargs["data_format"] = data_format
    if chain_states:
        kwargs.update(stateful=False, return_state=True)
    layer = getattr(handle.module.layers, f"ConvLSTM{case.rank}D")(**kwargs)
    to_keras, from_keras = _layout_moves(case, transposed)
    inputs = [to_keras(x, 2) for x in data.inputs]
    layer.build(inputs[0].shape if case.stateful and not chain_states else (None, *inputs[0].shape[1:]))
    layer.set_weights(data.weights)
    results: list[Any] = []
    carried = None
    for number, x in enumerate(inputs):
        initial = carried
        if number == 0 and data.initial_state is not None:
            initial = [to_keras(s, 1) for s in data.initial_state]
        result = keras_adapter.call_layer(handle, layer, x, initial_state=initial, mask=data.mask)
        result = _map(result, lambda a: from_keras(a, 2 if (case.return_sequences and a.ndim == case.rank + 3) else 1))
        if chain_states:
            carried = [to_keras(s, 1) for s in result[1:]]
            result = result if case.return_state else result[0]
        results.append(result)
    if case.stateful:
        states = keras_adapter.layer_states(layer) if not chain_states else [from_keras(s, 1) for s in carried or []]
        results.append([from_keras(s, 1) for s in states] if not chain_states else states)
    return results, layer


def keras_stateful_refuses_dtype(exc: Exception) -> bool:
    """tf_keras's stateful ConvLSTM keeps its states in float32 whatever the layer's dtype,
    so a float64 call fails converting them."""
    return "requested dtype float32 for Tensor with dtype float64" in str(exc)


def _layout_moves(case: ConvCase, transposed: bool) -> tuple[Any, Any]:
    """Functions moving the channel axis of arrays between ``case.data_format`` and the other
    layout (``first`` = the index of the first spatial-or-channel axis)."""
    if not transposed:
        return (lambda a, first: a), (lambda a, first: a)
    if case.data_format == "channels_first":  # case layout: channels at `first`; Keras: last
        return (lambda a, first: np.ascontiguousarray(np.moveaxis(a, first, -1))), (
            lambda a, first: np.ascontiguousarray(np.moveaxis(a, -1, first))
        )
    return (lambda a, first: np.ascontiguousarray(np.moveaxis(a, -1, first))), (
        lambda a, first: np.ascontiguousarray(np.moveaxis(a, first, -1))
    )


def _map(value: Any, function: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(_map(v, function) for v in value)
    if isinstance(value, list):
        return [_map(v, function) for v in value]
    return function(value)


def keras_refuses(exc: Exception) -> bool:
    """TensorFlow's CPU kernels refuse some channels_first convolutions (NCW/NCHW float64)."""
    text = f"{type(exc).__name__} {exc}"
    return "Unimplemented" in text or "NHWC" in text or "channels_first" in text.lower()


def describe(case: ConvCase) -> str:
    return ", ".join(f"{k}={v}" for k, v in asdict(case).items() if k != "extra")
