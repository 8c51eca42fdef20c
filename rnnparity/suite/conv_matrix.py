"""The ConvLSTM part of the upgrade matrix: ConvLSTM1D, ConvLSTM2D and ConvLSTM3D.

NumPy only, like :mod:`rnnparity.suite.matrix`: a :class:`ConvCase` is a frozen description
(rank, filters, input channels, spatial size, kernel, strides, dilation, padding,
``data_format``, activations, the call options, dtype, seed) and :func:`make_conv_data`
turns it into weights, inputs and initial states, always the same for the same case.
Kernels, recurrent kernels and biases are seeded random values, never constants.

The matrix (:func:`conv_cases`), for each Keras flavour:

* a core that crosses rank (1, 2, 3) x ``return_sequences`` x ``return_state`` x
  ``go_backwards`` x ``initial_state`` x dtype (float32, float64), with the geometry
  (:data:`GEOMETRIES`) and everything else drawn per case from a generator seeded by its key;
* a geometry sweep: every rank x every geometry (valid and same padding, strides, dilation,
  ``channels_first``, a 1-wide kernel) x dtype;
* an activation sweep: every activation name the emulated Keras accepts, as ``activation``
  and (in float64, as the single-layer sweep does) as ``recurrent_activation``.

Spatial sizes stay small (at most 8 along one axis, 4 x 4 x 4 for ConvLSTM3D) so the family
adds little time to ``rnnparity check``. No masks and no stateful layers here: the twins'
masked and stateful paths are the shared time loop that the single-layer cases check, and
``tests/test_conv_lstm.py`` checks them on ConvLSTM.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np

from rnnparity.activations import activations_for
from rnnparity.convolution import conv_output_size
from rnnparity.suite.matrix import Call, CaseData, _seed_of

RANKS = (1, 2, 3)
DTYPES = ("float32", "float64")
PADDINGS = ("valid", "same")
DATA_FORMATS = ("channels_last", "channels_first")
# The geometry of the input convolution a case is drawn with; "pointwise" is a 1-wide kernel
# along every axis (with either padding).
GEOMETRIES = (
    "valid",
    "same",
    "strides-valid",
    "strides-same",
    "dilation-valid",
    "dilation-same",
    "channels_first-valid",
    "channels_first-same",
    "pointwise",
)
# The largest spatial size drawn along one axis, per rank.
MAX_SPATIAL = {1: 8, 2: 5, 3: 4}
ACTIVATIONS = ("tanh", "tanh", "tanh", "relu", "sigmoid", "softsign", "elu", "linear")
RECURRENT_ACTIVATIONS = ("sigmoid", "sigmoid", "hard_sigmoid")
# Activations whose values grow without bound (exp): exp of a cell state that holds exp values
# overflows within three steps (a ConvLSTM2D reached 2e32 with inputs of scale 0.5, NaN with 1.5),
# where float32 rounding alone uses 2-4x the float32 tolerance. Their sweep case is float64, over
# two steps (largest value 283, float32 rounding 0.11x the tolerance).
UNBOUNDED_GROWTH = ("exponential",)


def _dims(values: tuple[int, ...]) -> str:
    return "x".join(str(v) for v in values)


@dataclass(frozen=True)
class ConvCase:
    """One ConvLSTM configuration. As for :class:`~rnnparity.suite.matrix.Case`,
    ``keras_version`` is neither in ``case_id`` nor in the seeds, so both Keras flavours get
    the same ids and the same numbers. ``spatial`` is the input's spatial size, ``channels``
    its channel count; the layout follows ``data_format``."""

    family: ClassVar[str] = "conv"

    rank: int
    keras_version: int
    filters: int = 2
    channels: int = 2
    spatial: tuple[int, ...] = (5,)
    kernel_size: tuple[int, ...] = (3,)
    strides: tuple[int, ...] = (1,)
    dilation_rate: tuple[int, ...] = (1,)
    padding: str = "valid"
    data_format: str = "channels_last"
    timesteps: int = 3
    batch: int = 2
    activation: str = "tanh"
    recurrent_activation: str = "sigmoid"
    use_bias: bool = True
    unit_forget_bias: bool = True
    return_sequences: bool = False
    return_state: bool = False
    go_backwards: bool = False
    initial_state: bool = False
    dtype: str = "float32"
    input_scale: float = 1.5
    seed: int = 0
    tags: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.rank not in RANKS or isinstance(self.rank, bool):
            raise ValueError(f"rank must be one of {RANKS}; got {self.rank!r}")
        for name in ("spatial", "kernel_size", "strides", "dilation_rate"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or len(value) != self.rank:
                raise ValueError(f"{name} must be a tuple of {self.rank} integers for rank {self.rank}; got {value!r}")
        if self.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}; got {self.padding!r}")
        if self.data_format not in DATA_FORMATS:
            raise ValueError(f"data_format must be one of {DATA_FORMATS}; got {self.data_format!r}")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(f"strides {self.strides} with dilation_rate {self.dilation_rate}: Keras refuses both above 1")
        if min(self.spatial_out) <= 0:
            raise ValueError(
                f"spatial {self.spatial} is smaller than kernel_size {self.kernel_size} with dilation_rate "
                f"{self.dilation_rate} and padding 'valid'"
            )

    @property
    def kind(self) -> str:
        """The row of ``rnnparity check``'s summary table: ``conv_lstm1d``, ``conv_lstm2d``, ``conv_lstm3d``."""
        return f"conv_lstm{self.rank}d"

    @property
    def keras_class_name(self) -> str:
        return f"ConvLSTM{self.rank}D"

    @property
    def spatial_out(self) -> tuple[int, ...]:
        """The spatial size of the outputs and states (the input convolution's output size)."""
        return tuple(
            conv_output_size(s, k, st, d, self.padding)
            for s, k, st, d in zip(self.spatial, self.kernel_size, self.strides, self.dilation_rate)
        )

    @property
    def case_id(self) -> str:
        parts = [
            self.kind,
            f"filters{self.filters}",
            f"ch{self.channels}",
            f"in{_dims(self.spatial)}",
            f"k{_dims(self.kernel_size)}",
            *([f"str{_dims(self.strides)}"] if max(self.strides) > 1 else []),
            *([f"dil{_dims(self.dilation_rate)}"] if max(self.dilation_rate) > 1 else []),
            self.padding,
            *(["chfirst"] if self.data_format == "channels_first" else []),
            f"t{self.timesteps}",
            f"b{self.batch}",
            self.activation,
            self.recurrent_activation,
            "bias" if self.use_bias else "nobias",
            *(["nufb"] if not self.unit_forget_bias else []),
            f"seq{int(self.return_sequences)}",
            f"st{int(self.return_state)}",
            *(["back"] if self.go_backwards else []),
            *(["init"] if self.initial_state else []),
            self.dtype.replace("float", "f"),
            *([f"x{self.input_scale:g}"] if self.input_scale != 1.5 else []),
            f"s{self.seed}",
        ]
        return "-".join(parts)

    def layer_kwargs(self) -> dict[str, Any]:
        """Constructor arguments shared by the Keras layer and its twin."""
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
            "dtype": self.dtype,
        }

    def input_shape(self) -> tuple[int, ...]:
        """``(batch, timesteps, *spatial, channels)``, or channels before the spatial axes."""
        if self.data_format == "channels_first":
            return (self.batch, self.timesteps, self.channels, *self.spatial)
        return (self.batch, self.timesteps, *self.spatial, self.channels)

    def state_shape(self) -> tuple[int, ...]:
        """The shape of ``h`` and ``c``."""
        if self.data_format == "channels_first":
            return (self.batch, self.filters, *self.spatial_out)
        return (self.batch, *self.spatial_out, self.filters)

    def to_dict(self) -> dict[str, Any]:
        """The config stored in reports: the fields, plus the keys the tables of
        :mod:`rnnparity.suite.known_differences` read (``kind``, ``mask``, ``stateful``)."""
        data = asdict(self)
        data["tags"] = list(self.tags)
        for name in ("spatial", "kernel_size", "strides", "dilation_rate"):
            data[name] = list(data[name])
        data["kind"] = self.kind
        data["mask"] = "none"
        data["stateful"] = False
        return data


def make_conv_data(case: ConvCase) -> CaseData:
    """Seeded weights, inputs and initial states for ``case``, in ``case.dtype``; one call.

    Kernel and recurrent kernel uniform, scaled by 1.6 / sqrt(fan in) and 1.3 / sqrt(fan in)
    (fan in: the kernel's size times the input channels, or times the filters), bias
    uniform in [-1, 1], inputs normal with standard deviation ``input_scale``: the
    pre-activations land in the gates' non-linear range, as in the single-layer cases.
    Initial states: ``h`` uniform in (-0.9, 0.9), ``c`` standard normal, in the state layout."""
    rng = np.random.default_rng(case.seed)
    dtype = np.dtype(case.dtype)
    window = math.prod(case.kernel_size)
    gates = 4 * case.filters
    kernel = rng.uniform(-1, 1, (*case.kernel_size, case.channels, gates)) * (1.6 / np.sqrt(window * case.channels))
    recurrent = rng.uniform(-1, 1, (*case.kernel_size, case.filters, gates)) * (1.3 / np.sqrt(window * case.filters))
    weights = [kernel, recurrent]
    if case.use_bias:
        weights.append(rng.uniform(-1, 1, gates))
    x = rng.normal(0.0, case.input_scale, case.input_shape()).astype(dtype)
    initial_state = None
    if case.initial_state:
        initial_state = [
            rng.uniform(-0.9, 0.9, case.state_shape()).astype(dtype),
            rng.normal(0.0, 1.0, case.state_shape()).astype(dtype),
        ]
    return CaseData([w.astype(dtype) for w in weights], [Call(x, None, initial_state)])


def conv_twin(
    case: ConvCase,
    *,
    backend: str | None = None,
    weights: list[np.ndarray] | None = None,
    resolve: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Any:
    """The twin of ``case`` (an ``rnnparity.ConvLSTM1D/2D/3D``) with its seeded weights (or
    ``weights``) loaded. ``backend`` is the Keras backend the twin emulates; ``resolve``
    maps the constructor arguments (e.g. to the activation forms of the installed TensorFlow,
    ``keras_adapter.twin_activations``); ``overrides`` replace constructor arguments last."""
    import rnnparity

    kwargs: dict[str, Any] = {**case.layer_kwargs(), "keras_version": case.keras_version}
    if backend is not None:
        kwargs["backend"] = backend
    if resolve is not None:
        kwargs = resolve(kwargs)
    layer_class = {1: rnnparity.ConvLSTM1D, 2: rnnparity.ConvLSTM2D, 3: rnnparity.ConvLSTM3D}[case.rank]
    twin = layer_class(**{**kwargs, **(overrides or {})})
    twin.set_weights(make_conv_data(case).weights if weights is None else weights)
    return twin


def _draw_geometry(rng: np.random.Generator, rank: int, geometry: str) -> dict[str, Any]:
    """Kernel, strides, dilation, padding, data_format and a spatial size that ``geometry`` names."""
    if geometry not in GEOMETRIES:
        raise ValueError(f"geometry must be one of {GEOMETRIES}; got {geometry!r}")
    kernel = [int(k) for k in rng.choice([1, 2, 3], size=rank)]
    kernel[-1] = max(kernel[-1], 2)  # at least one axis really convolves
    strides, dilation = [1] * rank, [1] * rank
    if geometry == "pointwise":
        kernel = [1] * rank
        padding = str(rng.choice(PADDINGS))
    else:
        padding = geometry.rsplit("-", 1)[-1]
    if geometry.startswith("strides"):
        strides = [int(s) for s in rng.choice([1, 2, 3], size=rank)]
        strides[-1] = 2
    elif geometry.startswith("dilation"):
        dilation = [int(d) for d in rng.choice([1, 2], size=rank)]
        dilation[-1] = 2
        # A 2-wide kernel along every dilated axis keeps the window (3 wide) inside the small inputs.
        kernel = [2 if d > 1 else k for k, d in zip(kernel, dilation)]
    limit = MAX_SPATIAL[rank]
    spatial = []
    for k, d in zip(kernel, dilation):
        span = (k - 1) * d + 1
        low = span if padding == "valid" else 1
        spatial.append(int(rng.integers(min(max(low, 2), limit), limit + 1)))
    if padding == "valid":
        spatial = [max(s, (k - 1) * d + 1) for s, k, d in zip(spatial, kernel, dilation)]
    return {
        "kernel_size": tuple(kernel),
        "strides": tuple(strides),
        "dilation_rate": tuple(dilation),
        "padding": padding,
        "data_format": "channels_first" if geometry.startswith("channels_first") else "channels_last",
        "spatial": tuple(spatial),
    }


def _draw(rng: np.random.Generator, rank: int, keras_version: int, geometry: str, **fields: Any) -> ConvCase:
    """A case of ``rank`` and ``geometry`` whose other options are drawn from ``rng`` (``fields`` win)."""
    drawn: dict[str, Any] = {
        **_draw_geometry(rng, rank, geometry),
        "filters": int(rng.choice([1, 2, 3, 4])),
        "channels": int(rng.choice([1, 2, 3])),
        "timesteps": int(rng.choice([1, 2, 3, 4])),
        "batch": int(rng.choice([1, 2, 3])),
        "activation": str(rng.choice(ACTIVATIONS)),
        "recurrent_activation": str(rng.choice(RECURRENT_ACTIVATIONS)),
        "use_bias": bool(rng.random() < 0.75),
        "unit_forget_bias": bool(rng.random() < 0.5),
        "return_sequences": bool(rng.random() < 0.5),
        "return_state": bool(rng.random() < 0.5),
        "go_backwards": bool(rng.random() < 0.3),
        "initial_state": bool(rng.random() < 0.3),
    }
    return ConvCase(rank=rank, keras_version=keras_version, **{**drawn, **fields})


def core_conv_cases(keras_version: int) -> list[ConvCase]:
    """Rank x return_sequences x return_state x go_backwards x initial_state x dtype."""
    cases = []
    for rank, seq, state, back, init, dtype in itertools.product(
        RANKS, (False, True), (False, True), (False, True), (False, True), DTYPES
    ):
        key = f"conv/{rank}/{seq}/{state}/{back}/{init}/{dtype}"
        rng = np.random.default_rng(_seed_of(key))
        geometry = str(rng.choice(GEOMETRIES))
        cases.append(
            _draw(
                rng,
                rank,
                keras_version,
                geometry,
                return_sequences=seq,
                return_state=state,
                go_backwards=back,
                initial_state=init,
                dtype=dtype,
                seed=_seed_of(key + "/data"),
                tags=("conv-core", geometry),
            )
        )
    return cases


def geometry_conv_cases(keras_version: int) -> list[ConvCase]:
    """Every rank x every geometry x dtype."""
    cases = []
    for rank, geometry, dtype in itertools.product(RANKS, GEOMETRIES, DTYPES):
        key = f"conv-geometry/{rank}/{geometry}/{dtype}"
        rng = np.random.default_rng(_seed_of(key))
        cases.append(
            _draw(rng, rank, keras_version, geometry, dtype=dtype, seed=_seed_of(key + "/data"), tags=("conv-geometry", geometry))
        )
    return cases


def activation_conv_cases(keras_version: int) -> list[ConvCase]:
    """Every activation name of the emulated Keras as ``activation`` (dtype by name) and as
    ``recurrent_activation`` (float64: a non-gate function as a gate can make the
    recurrence expand, and float32 rounding would then outgrow the tolerance)."""
    cases = []
    for name in sorted(activations_for(keras_version)):
        rank = RANKS[_seed_of(name) % len(RANKS)]  # by name, so both Kerases give a name the same case
        key = f"conv-act/{name}"
        rng = np.random.default_rng(_seed_of(key))
        cases.append(
            _draw(
                rng,
                rank,
                keras_version,
                "same",
                activation=name,
                recurrent_activation="sigmoid",
                return_sequences=True,
                return_state=True,
                dtype="float64" if name in UNBOUNDED_GROWTH or _seed_of(name) % 2 else "float32",
                **({"timesteps": 2} if name in UNBOUNDED_GROWTH else {}),
                seed=_seed_of(key + "/data"),
                tags=("conv-activation",),
            )
        )
        key = f"conv-recurrent-act/{name}"
        rng = np.random.default_rng(_seed_of(key))
        cases.append(
            _draw(
                rng,
                RANKS[(rank + 1) % len(RANKS)],
                keras_version,
                "valid",
                activation="tanh",
                recurrent_activation=name,
                return_sequences=True,
                return_state=True,
                dtype="float64",
                seed=_seed_of(key + "/data"),
                tags=("conv-recurrent_activation",),
            )
        )
    return cases


def conv_cases(keras_version: int, quick: bool = False) -> list[ConvCase]:
    """Every ConvLSTM case for one Keras version; ``quick`` keeps about one in eight, chosen
    by hashing each case id."""
    cases = core_conv_cases(keras_version) + geometry_conv_cases(keras_version) + activation_conv_cases(keras_version)
    if quick:
        cases = [c for c in cases if _seed_of(c.case_id + "/quick") % 8 == 0]
    return cases
