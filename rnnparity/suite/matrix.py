"""The parity configuration matrix and the seeded data each configuration is fed.

NumPy only: the same cases drive the pytest suite and ``rnnparity check``. A case is a
frozen description (layer kind, every option, shapes, dtype, seed); :func:`make_data`
turns it into weights, inputs, masks and initial states, always the same for the same
case. Weights and biases are seeded random values, never constants: a constant kernel
would make a swapped ``i``/``f`` gate invisible.

The default matrix crosses, for each Keras flavour, every layer kind (LSTM, GRU with
``reset_after`` True and False, SimpleRNN) with ``return_sequences`` x ``return_state`` x
mask mode (none, right-padded, scattered with a fully masked row, scattered with
``zero_output_for_mask``) x ``go_backwards`` x ``initial_state`` x ``stateful`` x dtype.
Units, input dim, timesteps, batch, activations, ``use_bias`` and ``unit_forget_bias`` are
drawn per case from a generator seeded by the case's key, so each value appears across all
core combinations. An activation sweep adds every activation name the emulated Keras
accepts, for every layer kind; Keras 2 adds ``time_major`` cases.
"""

from __future__ import annotations

import itertools
import zlib
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar

import numpy as np

from rnnparity.activations import activations_for
from rnnparity.layout import weight_shapes

MASK_MODES = ("none", "right_padded", "scattered", "scattered_zero_output")


@dataclass(frozen=True)
class Case:
    """One parity configuration. ``keras_version`` is the Keras it is run against; it is not
    part of ``case_id`` or of the seeds, so the same configuration gets the same id and the
    same numbers under Keras 2 and Keras 3 (which is what ``rnnparity diff`` compares)."""

    family: ClassVar[str] = "layer"  # see rnnparity.suite.check_matrix

    kind: str
    keras_version: int
    units: int = 3
    input_dim: int = 4
    timesteps: int = 5
    batch: int = 2
    activation: str = "tanh"
    recurrent_activation: str = "sigmoid"
    use_bias: bool = True
    unit_forget_bias: bool = True
    reset_after: bool = True
    return_sequences: bool = False
    return_state: bool = False
    go_backwards: bool = False
    stateful: bool = False
    mask: str = "none"
    initial_state: bool = False
    time_major: bool = False
    dtype: str = "float32"
    input_scale: float = 1.5
    seed: int = 0
    tags: tuple[str, ...] = field(default=(), compare=False)

    @property
    def case_id(self) -> str:
        parts = [
            self.kind,
            *(["ra" if self.reset_after else "rb"] if self.kind == "gru" else []),
            f"u{self.units}",
            f"d{self.input_dim}",
            f"t{self.timesteps}",
            f"b{self.batch}",
            self.activation,
            *([self.recurrent_activation] if self.kind != "simple_rnn" else []),
            "bias" if self.use_bias else "nobias",
            *(["nufb"] if self.kind == "lstm" and not self.unit_forget_bias else []),
            f"seq{int(self.return_sequences)}",
            f"st{int(self.return_state)}",
            *(["back"] if self.go_backwards else []),
            *(["stateful"] if self.stateful else []),
            *([f"mask-{self.mask}"] if self.mask != "none" else []),
            *(["init"] if self.initial_state else []),
            *(["tmajor"] if self.time_major else []),
            self.dtype.replace("float", "f"),
            *([f"x{self.input_scale:g}"] if self.input_scale != 1.5 else []),
            f"s{self.seed}",
        ]
        return "-".join(parts)

    def layer_kwargs(self) -> dict[str, Any]:
        """Constructor arguments shared by the Keras layer and its twin."""
        kwargs: dict[str, Any] = {
            "units": self.units,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "return_sequences": self.return_sequences,
            "return_state": self.return_state,
            "go_backwards": self.go_backwards,
            "stateful": self.stateful,
            "dtype": self.dtype,
        }
        if self.mask == "scattered_zero_output":
            kwargs["zero_output_for_mask"] = True
        if self.kind != "simple_rnn":
            kwargs["recurrent_activation"] = self.recurrent_activation
        if self.kind == "lstm":
            kwargs["unit_forget_bias"] = self.unit_forget_bias
        if self.kind == "gru":
            kwargs["reset_after"] = self.reset_after
        if self.time_major:
            kwargs["time_major"] = True
        return kwargs

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tags"] = list(self.tags)
        return data


@dataclass
class Call:
    """One call of the layer: inputs (already in the layer's layout), mask, initial state."""

    inputs: np.ndarray
    mask: np.ndarray | None
    initial_state: list[np.ndarray] | None
    reset_before: bool = False


@dataclass
class CaseData:
    weights: list[np.ndarray]
    calls: list[Call]


def _seed_of(key: str) -> int:
    return zlib.crc32(key.encode()) & 0x7FFFFFFF


def make_data(case: Case) -> CaseData:
    """Seeded weights, inputs, masks and initial states for ``case``, in ``case.dtype``."""
    rng = np.random.default_rng(case.seed)
    dtype = np.dtype(case.dtype)
    weights = random_weights(rng, case.kind, case.units, case.input_dim, case.use_bias, case.reset_after, dtype)

    calls = []
    # A stateful layer is called three times: the second call passes initial_state again
    # (Keras 2 ignores it once the carried state is non-zero, Keras 3 uses it), then the
    # state is reset before the third.
    plan = [(True, False), (True, False), (False, True)] if case.stateful else [(True, False)]
    for with_init, reset in plan:
        x = rng.normal(0.0, case.input_scale, (case.batch, case.timesteps, case.input_dim)).astype(dtype)
        mask = _make_mask(rng, case)
        init = None
        if case.initial_state and with_init:
            init = random_states(rng, case.kind, case.batch, case.units, dtype)
        if case.time_major:
            x = np.ascontiguousarray(x.transpose(1, 0, 2))
            mask = None if mask is None else np.ascontiguousarray(mask.T)
        calls.append(Call(x, mask, init, reset))
    return CaseData(weights, calls)


def random_weights(
    rng: np.random.Generator,
    kind: str,
    units: int,
    input_dim: int,
    use_bias: bool = True,
    reset_after: bool = True,
    dtype: Any = "float32",
) -> list[np.ndarray]:
    """Random Keras-layout weights whose scale drives the gates into their non-linear range:
    kernel and recurrent kernel uniform, scaled by 1.6/sqrt(input_dim) and 1.3/sqrt(units);
    bias uniform in [-1, 1]. Never constant: constant weights hide gate-order bugs."""
    shapes = weight_shapes(kind, units, input_dim, use_bias, reset_after)
    kernel = rng.uniform(-1, 1, shapes[0]) * (1.6 / np.sqrt(input_dim))
    recurrent = rng.uniform(-1, 1, shapes[1]) * (1.3 / np.sqrt(units))
    weights = [kernel, recurrent]
    if use_bias:
        weights.append(rng.uniform(-1, 1, shapes[2]))
    return [w.astype(dtype) for w in weights]


def random_states(rng: np.random.Generator, kind: str, batch: int, units: int, dtype: Any = "float32") -> list[np.ndarray]:
    """Random initial states: ``h`` in (-0.9, 0.9) and, for LSTM, ``c`` standard normal."""
    states = [rng.uniform(-0.9, 0.9, (batch, units)).astype(dtype)]
    if kind == "lstm":
        states.append(rng.normal(0.0, 1.0, (batch, units)).astype(dtype))
    return states


def _make_mask(rng: np.random.Generator, case: Case) -> np.ndarray | None:
    return random_mask(rng, case.mask, case.batch, case.timesteps)


def random_mask(rng: np.random.Generator, style: str, batch: int, timesteps: int) -> np.ndarray | None:
    """A ``(batch, timesteps)`` boolean mask: ``none``, ``right_padded`` (row 0 full length) or
    ``random`` (row 0 starts masked, row 1 fully masked)."""
    if style == "none":
        return None
    if style == "right_padded":
        lengths = rng.integers(1, timesteps + 1, size=batch)
        lengths[0] = timesteps
        return np.arange(timesteps)[None, :] < lengths[:, None]
    mask = rng.random((batch, timesteps)) < 0.65
    mask[0, 0] = False  # a masked first step: the repeated "previous output" is zeros
    if batch >= 2:
        mask[1, :] = False  # a fully masked row: zeros out, states = initial states
    return mask


def _variant_grid() -> list[tuple[str, bool]]:
    return [("lstm", True), ("gru", True), ("gru", False), ("simple_rnn", True)]


def default_cases(keras_version: int, quick: bool = False) -> list[Case]:
    """The core matrix for one Keras version (``quick``: a deterministic subset of about 1 in 8,
    chosen by hashing each case's key so every axis keeps both of its values)."""
    cases = []
    core = itertools.product(
        _variant_grid(),
        (False, True),
        (False, True),
        MASK_MODES,
        (False, True),
        (False, True),
        (False, True),
        ("float32", "float64"),
    )
    for (kind, reset_after), seq, state, mask, back, init, stateful, dtype in core:
        key = f"{kind}/{reset_after}/{seq}/{state}/{mask}/{back}/{init}/{stateful}/{dtype}"
        if quick and _seed_of(key + "/quick") % 8 != 0:
            continue
        rng = np.random.default_rng(_seed_of(key))
        cases.append(
            Case(
                kind=kind,
                keras_version=keras_version,
                reset_after=reset_after,
                return_sequences=seq,
                return_state=state,
                mask=mask,
                go_backwards=back,
                initial_state=init,
                stateful=stateful,
                dtype=dtype,
                units=int(rng.choice([1, 2, 3, 5, 8])),
                input_dim=int(rng.choice([1, 2, 4, 7])),
                timesteps=int(rng.choice([1, 2, 3, 6, 9])),
                batch=int(rng.choice([1, 2, 3, 5])),
                activation=str(rng.choice(["tanh", "tanh", "tanh", "relu", "sigmoid", "elu", "softsign", "linear"])),
                recurrent_activation=str(rng.choice(["sigmoid", "sigmoid", "hard_sigmoid"])),
                use_bias=bool(rng.random() < 0.75),
                unit_forget_bias=bool(rng.random() < 0.5),
                seed=_seed_of(key + "/data"),
                tags=("core",),
            )
        )
    return cases


def activation_cases(keras_version: int) -> list[Case]:
    """Every activation name of the emulated Keras, as ``activation`` and (for gated layers)
    ``recurrent_activation``, for every layer kind, with return_sequences and a scattered mask."""
    names = sorted(activations_for(keras_version))
    cases = []
    for name in names:
        for kind, reset_after in _variant_grid():
            key = f"act/{name}/{kind}/{reset_after}"
            rng = np.random.default_rng(_seed_of(key))
            base = Case(
                kind=kind,
                keras_version=keras_version,
                reset_after=reset_after,
                units=int(rng.choice([2, 4, 6])),
                input_dim=int(rng.choice([1, 3, 5])),
                timesteps=4,
                batch=3,
                activation=name,
                recurrent_activation="sigmoid",
                return_sequences=True,
                return_state=True,
                mask="scattered",
                dtype="float64" if _seed_of(name) % 2 else "float32",
                seed=_seed_of(key + "/data"),
                tags=("activation",),
            )
            cases.append(base)
            if kind != "simple_rnn":
                # float64: a non-gate function as a gate (exponential, selu, ...) makes the
                # recurrence expand, and float32 rounding would then grow past any tolerance.
                cases.append(
                    replace(
                        base,
                        activation="tanh",
                        recurrent_activation=name,
                        dtype="float64",
                        seed=base.seed + 1,
                        tags=("recurrent_activation",),
                    )
                )
    return cases


def hard_sigmoid_cases(keras_version: int) -> list[Case]:
    """``hard_sigmoid`` with inputs large enough to cross both formulas' clip edges."""
    cases = []
    for (kind, reset_after), dtype, scale in itertools.product(
        [v for v in _variant_grid() if v[0] != "simple_rnn"], ("float32", "float64"), (1.0, 3.0, 6.0)
    ):
        key = f"hs/{kind}/{reset_after}/{dtype}/{scale}"
        cases.append(
            Case(
                kind=kind,
                keras_version=keras_version,
                reset_after=reset_after,
                units=4,
                input_dim=3,
                timesteps=6,
                batch=4,
                recurrent_activation="hard_sigmoid",
                return_sequences=True,
                return_state=True,
                dtype=dtype,
                input_scale=scale,
                seed=_seed_of(key),
                tags=("hard_sigmoid",),
            )
        )
    return cases


def time_major_cases(keras_version: int) -> list[Case]:
    """``time_major=True`` (Keras 2 only): inputs, outputs and masks are time-major."""
    if keras_version != 2:
        return []
    cases = []
    for (kind, reset_after), seq, state, mask, dtype in itertools.product(
        _variant_grid(), (False, True), (False, True), ("none", "scattered"), ("float32", "float64")
    ):
        key = f"tm/{kind}/{reset_after}/{seq}/{state}/{mask}/{dtype}"
        cases.append(
            Case(
                kind=kind,
                keras_version=keras_version,
                reset_after=reset_after,
                units=3,
                input_dim=2,
                timesteps=5,
                batch=3,
                return_sequences=seq,
                return_state=state,
                mask=mask,
                time_major=True,
                dtype=dtype,
                initial_state=bool(_seed_of(key) % 2),
                seed=_seed_of(key),
                tags=("time_major",),
            )
        )
    return cases


def all_cases(keras_version: int, quick: bool = False) -> list[Case]:
    """Every case for one Keras version; ``quick`` keeps about one in eight."""
    if quick:
        return (
            default_cases(keras_version, quick=True)
            + hard_sigmoid_cases(keras_version)[::3]
            + time_major_cases(keras_version)[::8]
        )
    return (
        default_cases(keras_version)
        + activation_cases(keras_version)
        + hard_sigmoid_cases(keras_version)
        + time_major_cases(keras_version)
    )
