"""The wrapper part of the upgrade matrix: Bidirectional, RNN(cell) and stacks of cells.

NumPy only, like :mod:`rnnparity.suite.matrix`, whose seeded helpers it uses: a
:class:`WrapperCase` is a frozen description (the wrapper, each layer or cell inside it, the
call options, shapes, dtype, seed) and :func:`make_wrapper_data` turns it into weights, inputs,
a mask and initial states, always the same for the same case. Weights are seeded random
values, never constants.

The matrix (:func:`wrapper_cases`), for each Keras flavour and both dtypes:

* ``Bidirectional`` around each layer kind (LSTM, GRU with ``reset_after`` True and False,
  SimpleRNN) x every merge mode (``concat``, ``sum``, ``mul``, ``ave``, None) x extras
  (plain; mask; initial_state; mask + initial_state; an explicit ``backward_layer`` with its
  own units and activation; ``backward_layer`` + mask + initial_state).
* ``RNN(cell)`` of each cell kind x (plain, mask, initial_state, mask + initial_state).
* ``RNN(StackedRNNCells([...]))`` of 2 or 3 cells of mixed kinds x the same extras.

``return_sequences``, ``return_state``, the mask style, units, input size, timesteps, batch,
activations and ``use_bias`` are drawn per case from a generator seeded by its key.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np

from rnnparity.suite.matrix import Call, CaseData, _seed_of, random_mask, random_states, random_weights

WRAPPERS = ("bidirectional", "rnn", "stacked")
MERGE_MODES: tuple[str | None, ...] = ("concat", "sum", "mul", "ave", None)
VARIANTS = (("lstm", True), ("gru", True), ("gru", False), ("simple_rnn", True))
# Which extras each wrapper is crossed with; "backward_layer" only applies to Bidirectional.
BIDIRECTIONAL_EXTRAS = (
    "plain",
    "mask",
    "initial_state",
    "mask+initial_state",
    "backward_layer",
    "backward_layer+mask+initial_state",
)
RNN_EXTRAS = ("plain", "mask", "initial_state", "mask+initial_state")
# Stacks of two or three cells of mixed kinds: (kind, reset_after) per cell.
STACKS: tuple[tuple[tuple[str, bool], ...], ...] = (
    (("lstm", True), ("gru", True)),
    (("gru", False), ("simple_rnn", True)),
    (("simple_rnn", True), ("lstm", True)),
    (("gru", True), ("gru", False)),
    (("gru", False), ("simple_rnn", True), ("lstm", True)),
    (("lstm", True), ("simple_rnn", True), ("gru", True)),
)


@dataclass(frozen=True)
class Inner:
    """One recurrent layer inside a Bidirectional, or one cell inside an RNN or a stack."""

    kind: str
    units: int
    activation: str = "tanh"
    recurrent_activation: str = "sigmoid"
    use_bias: bool = True
    unit_forget_bias: bool = True
    reset_after: bool = True

    @property
    def label(self) -> str:
        """Readable in a case id, in the single-layer ids' words: ``gru-rb-u3-relu-hard_sigmoid-nobias``."""
        parts = [
            self.kind,
            *(["ra" if self.reset_after else "rb"] if self.kind == "gru" else []),
            f"u{self.units}",
            self.activation,
            *([self.recurrent_activation] if self.kind != "simple_rnn" else []),
            *(["nobias"] if not self.use_bias else []),
            *(["nufb"] if self.kind == "lstm" and not self.unit_forget_bias else []),
        ]
        return "-".join(parts)

    def options(self) -> dict[str, Any]:
        """Constructor arguments (``units`` included) shared by the Keras layer or cell and its twin."""
        options: dict[str, Any] = {"units": self.units, "activation": self.activation, "use_bias": self.use_bias}
        if self.kind != "simple_rnn":
            options["recurrent_activation"] = self.recurrent_activation
        if self.kind == "lstm":
            options["unit_forget_bias"] = self.unit_forget_bias
        if self.kind == "gru":
            options["reset_after"] = self.reset_after
        return options

    def state_count(self) -> int:
        return 2 if self.kind == "lstm" else 1


@dataclass(frozen=True)
class WrapperCase:
    """One wrapper configuration. As for :class:`~rnnparity.suite.matrix.Case`,
    ``keras_version`` is neither in ``case_id`` nor in the seeds, so both Keras flavours get
    the same ids and the same numbers.

    ``layers``: Bidirectional: the forward layer, then the backward layer when
    ``backward_layer`` is set; rnn: its one cell; stacked: the cells, first to last.
    ``bare_states``: stacks only, a one-state cell's initial state is given as a bare array
    rather than a one-item list (Keras 2 refuses the list form under a mask).
    """

    family: ClassVar[str] = "wrapper"

    wrapper: str
    keras_version: int
    layers: tuple[Inner, ...]
    merge_mode: str | None = "concat"
    backward_layer: bool = False
    input_dim: int = 4
    timesteps: int = 5
    batch: int = 3
    return_sequences: bool = False
    return_state: bool = False
    mask: str = "none"
    initial_state: bool = False
    bare_states: bool = False
    dtype: str = "float32"
    input_scale: float = 1.5
    seed: int = 0
    tags: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.wrapper not in WRAPPERS:
            raise ValueError(f"wrapper must be one of {WRAPPERS}; got {self.wrapper!r}")
        expected = {"bidirectional": (1, 2), "rnn": (1,), "stacked": (2, 3)}[self.wrapper]
        if len(self.layers) not in expected:
            raise ValueError(f"a {self.wrapper} case holds {expected} layers or cells; got {len(self.layers)}")
        if self.wrapper == "bidirectional" and (len(self.layers) == 2) != self.backward_layer:
            raise ValueError(f"backward_layer={self.backward_layer} needs {2 if self.backward_layer else 1} layers")

    @property
    def kind(self) -> str:
        """The row of ``rnnparity check``'s summary table."""
        return {"bidirectional": "bidirectional", "rnn": "rnn(cell)", "stacked": "rnn(stacked cells)"}[self.wrapper]

    @property
    def case_id(self) -> str:
        inner = "+".join(layer.label for layer in self.layers)
        parts = [
            self.wrapper,
            inner if not self.backward_layer else inner.replace("+", "+bwd-"),
            *([f"merge-{self.merge_mode}"] if self.wrapper == "bidirectional" else []),
            f"d{self.input_dim}",
            f"t{self.timesteps}",
            f"b{self.batch}",
            f"seq{int(self.return_sequences)}",
            f"st{int(self.return_state)}",
            *([f"mask-{self.mask}"] if self.mask != "none" else []),
            *(["init" + ("-bare" if self.bare_states else "")] if self.initial_state else []),
            self.dtype.replace("float", "f"),
            *([f"x{self.input_scale:g}"] if self.input_scale != 1.5 else []),
            f"s{self.seed}",
        ]
        return "-".join(parts)

    def layer_options(self) -> dict[str, Any]:
        """Options of the outer layer (``RNN``) or of each wrapped layer (Bidirectional)."""
        return {"return_sequences": self.return_sequences, "return_state": self.return_state}

    def to_dict(self) -> dict[str, Any]:
        """The config stored in reports. Besides the fields, it carries the keys the tables of
        :mod:`rnnparity.suite.known_differences` read: ``kind``, ``stateful``,
        ``stacked_cells``, ``cells`` (``kind:activation``), and the initial-state forms."""
        data = asdict(self)
        data["tags"] = list(self.tags)
        data["layers"] = [asdict(layer) for layer in self.layers]
        data["kind"] = self.wrapper
        data["stateful"] = False
        if self.wrapper != "bidirectional":
            data["stacked_cells"] = len(self.layers) if self.wrapper == "stacked" else None
            data["cells"] = [f"{layer.kind}:{layer.activation}" for layer in self.layers]
            one_state = self.initial_state and self.wrapper == "stacked" and any(c.state_count() == 1 for c in self.layers)
            data["listed_one_state_cells"] = one_state and not self.bare_states
        return data


def make_wrapper_data(case: WrapperCase) -> CaseData:
    """Seeded weights (each layer or cell in order, Keras layout), inputs, mask and initial
    states for ``case``, in ``case.dtype``; one call. Initial states: Bidirectional, the
    forward layer's then the backward layer's, flat; RNN(cell), the cell's list; stacked, one
    list per cell (a bare array for a one-state cell when ``bare_states``)."""
    rng = np.random.default_rng(case.seed)
    dtype = np.dtype(case.dtype)
    weights: list[np.ndarray] = []
    input_dim = case.input_dim
    for layer in case.layers:
        weights += random_weights(rng, layer.kind, layer.units, input_dim, layer.use_bias, layer.reset_after, dtype)
        if case.wrapper == "stacked":
            input_dim = layer.units
    if case.wrapper == "bidirectional" and not case.backward_layer:
        only = case.layers[0]
        weights += random_weights(rng, only.kind, only.units, case.input_dim, only.use_bias, only.reset_after, dtype)

    x = rng.normal(0.0, case.input_scale, (case.batch, case.timesteps, case.input_dim)).astype(dtype)
    mask = random_mask(rng, case.mask, case.batch, case.timesteps)
    initial_state: Any = None
    if case.initial_state:
        if case.wrapper == "bidirectional":
            forward, backward = case.layers[0], case.layers[-1]
            initial_state = random_states(rng, forward.kind, case.batch, forward.units, dtype) + random_states(
                rng, backward.kind, case.batch, backward.units, dtype
            )
        elif case.wrapper == "rnn":
            cell = case.layers[0]
            initial_state = random_states(rng, cell.kind, case.batch, cell.units, dtype)
        else:
            initial_state = []
            for cell in case.layers:
                states = random_states(rng, cell.kind, case.batch, cell.units, dtype)
                initial_state.append(states[0] if case.bare_states and len(states) == 1 else states)
    return CaseData(weights, [Call(x, mask, initial_state)])


def wrapper_twin(
    case: WrapperCase,
    *,
    backend: str | None = None,
    weights: list[np.ndarray] | None = None,
    resolve: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> Any:
    """The twin of ``case`` (an ``rnnparity.Bidirectional`` or ``rnnparity.RNN``) with its
    seeded weights (or ``weights``) loaded. ``backend`` is the Keras backend the twin
    emulates; ``resolve`` maps each layer's or cell's options (e.g. to the activation forms
    of the installed TensorFlow, ``keras_adapter.twin_activations``)."""
    import rnnparity

    resolve = resolve or (lambda options: options)
    version = case.keras_version
    if case.wrapper == "bidirectional":
        common = {**case.layer_options(), "dtype": case.dtype, "keras_version": version}
        if backend is not None:
            common["backend"] = backend
        layer_class = {"lstm": rnnparity.LSTM, "gru": rnnparity.GRU, "simple_rnn": rnnparity.SimpleRNN}
        forward = case.layers[0]
        forward_layer = layer_class[forward.kind](**resolve({**forward.options(), **common}))
        backward_layer = None
        if case.backward_layer:
            backward = case.layers[1]
            backward_layer = layer_class[backward.kind](**resolve({**backward.options(), **common, "go_backwards": True}))
        twin: Any = rnnparity.Bidirectional(
            forward_layer, merge_mode=case.merge_mode, backward_layer=backward_layer, dtype=case.dtype
        )
    else:
        cell_class = {"lstm": rnnparity.LSTMCell, "gru": rnnparity.GRUCell, "simple_rnn": rnnparity.SimpleRNNCell}
        cells = [
            cell_class[c.kind](**resolve({**c.options(), "dtype": case.dtype, "keras_version": version})) for c in case.layers
        ]
        cell: Any = cells[0] if case.wrapper == "rnn" else rnnparity.StackedRNNCells(cells)
        extra: dict[str, Any] = {"backend": backend} if backend is not None else {}
        twin = rnnparity.RNN(cell, **case.layer_options(), **extra)
    twin.set_weights(make_wrapper_data(case).weights if weights is None else weights)
    return twin


def _draw_inner(rng: np.random.Generator, kind: str, reset_after: bool) -> Inner:
    return Inner(
        kind=kind,
        units=int(rng.choice([1, 2, 3, 5])),
        activation=str(rng.choice(["tanh", "tanh", "relu", "softsign", "sigmoid"])),
        recurrent_activation=str(rng.choice(["sigmoid", "sigmoid", "hard_sigmoid"])),
        use_bias=bool(rng.random() < 0.8),
        unit_forget_bias=bool(rng.random() < 0.5),
        reset_after=reset_after,
    )


def _extras_fields(rng: np.random.Generator, extra: str) -> dict[str, Any]:
    mask = str(rng.choice(["right_padded", "scattered"])) if "mask" in extra else "none"
    return {
        "mask": mask,
        "initial_state": "initial_state" in extra,
        "return_sequences": bool(rng.random() < 0.5),
        "return_state": bool(rng.random() < 0.5),
        "input_dim": int(rng.choice([1, 2, 4])),
        "timesteps": int(rng.choice([1, 3, 5, 7])),
        "batch": int(rng.choice([2, 3, 4])),
    }


def bidirectional_cases(keras_version: int) -> list[WrapperCase]:
    cases = []
    for (kind, reset_after), merge_mode, extra, dtype in itertools.product(
        VARIANTS, MERGE_MODES, BIDIRECTIONAL_EXTRAS, ("float32", "float64")
    ):
        key = f"bidirectional/{kind}/{reset_after}/{merge_mode}/{extra}/{dtype}"
        rng = np.random.default_rng(_seed_of(key))
        forward = _draw_inner(rng, kind, reset_after)
        layers: tuple[Inner, ...] = (forward,)
        if "backward_layer" in extra:
            # Keras needs equal units for every merge but concat and None.
            units = forward.units + 2 if merge_mode in ("concat", None) else forward.units
            drawn = _draw_inner(rng, kind, reset_after)
            layers = (forward, Inner(**{**asdict(drawn), "units": units}))
        cases.append(
            WrapperCase(
                wrapper="bidirectional",
                keras_version=keras_version,
                layers=layers,
                merge_mode=merge_mode,
                backward_layer=len(layers) == 2,
                dtype=dtype,
                seed=_seed_of(key + "/data"),
                tags=("bidirectional", extra),
                **_extras_fields(rng, extra),
            )
        )
    return cases


def rnn_cases(keras_version: int) -> list[WrapperCase]:
    cases = []
    for (kind, reset_after), extra, dtype in itertools.product(VARIANTS, RNN_EXTRAS, ("float32", "float64")):
        key = f"rnn/{kind}/{reset_after}/{extra}/{dtype}"
        rng = np.random.default_rng(_seed_of(key))
        cases.append(
            WrapperCase(
                wrapper="rnn",
                keras_version=keras_version,
                layers=(_draw_inner(rng, kind, reset_after),),
                dtype=dtype,
                seed=_seed_of(key + "/data"),
                tags=("rnn", extra),
                **_extras_fields(rng, extra),
            )
        )
    return cases


def stacked_cases(keras_version: int) -> list[WrapperCase]:
    cases = []
    for stack, extra, dtype in itertools.product(STACKS, RNN_EXTRAS, ("float32", "float64")):
        key = f"stacked/{stack}/{extra}/{dtype}"
        rng = np.random.default_rng(_seed_of(key))
        cells = tuple(_draw_inner(rng, kind, reset_after) for kind, reset_after in stack)
        fields = _extras_fields(rng, extra)
        # Keras 2 refuses a one-state cell's state as a one-item list under a mask
        # (known_differences: keras2-stack-listed-one-state-mask): bare there, either form elsewhere.
        bare = fields["initial_state"] and (fields["mask"] != "none" or bool(rng.random() < 0.5))
        cases.append(
            WrapperCase(
                wrapper="stacked",
                keras_version=keras_version,
                layers=cells,
                bare_states=bare,
                dtype=dtype,
                seed=_seed_of(key + "/data"),
                tags=("stacked", extra),
                **fields,
            )
        )
    return cases


def wrapper_cases(keras_version: int, quick: bool = False) -> list[WrapperCase]:
    """Every wrapper case for one Keras version; ``quick`` keeps about one in eight, chosen by
    hashing each case id so every wrapper keeps cases."""
    cases = bidirectional_cases(keras_version) + rnn_cases(keras_version) + stacked_cases(keras_version)
    if quick:
        cases = [c for c in cases if _seed_of(c.case_id + "/quick") % 8 == 0]
    return cases
