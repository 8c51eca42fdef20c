"""Known differences between Keras/TensorFlow versions that change recurrent-layer numbers.

Data, not silent skips: each entry says where the numbers differ, between which versions,
why, and how the twins handle it. ``rnnparity diff`` uses ``matches_case`` and
``applies_between`` to name the cause of drift between two reports, and reports an entry
whose expected drift is no longer observed; the tests check each entry still holds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

CaseConfig = Mapping[str, Any]
Environment = Mapping[str, Any]


def _uses(config: CaseConfig, name: str) -> bool:
    gated = config.get("kind") != "simple_rnn"
    return config.get("activation") == name or (gated and config.get("recurrent_activation") == name)


def _keras_majors_differ(old: Environment, new: Environment) -> bool:
    return old.get("keras_major") != new.get("keras_major")


def _gelu_forms_differ(old: Environment, new: Environment) -> bool:
    return old.get("gelu_form") != new.get("gelu_form")


@dataclass(frozen=True)
class KnownDifference:
    id: str
    applies_to: str
    versions: str
    reason: str
    handling: str
    matches_case: Callable[[CaseConfig], bool] | None = None
    applies_between: Callable[[Environment, Environment], bool] | None = None


KNOWN_DIFFERENCES: tuple[KnownDifference, ...] = (
    KnownDifference(
        id="hard-sigmoid-formula",
        applies_to="any LSTM/GRU (or activation) using hard_sigmoid",
        versions="Keras 2 (tf_keras, tf.keras <= 2.15) vs Keras 3",
        reason="Keras 2 computes clip(0.2 * x + 0.5, 0, 1); Keras 3 computes relu6(x + 3) / 6. "
        "They differ everywhere except at 0 and in full saturation.",
        handling="keras_version=2|3 selects the formula; from_keras sets it from the layer's package.",
        matches_case=lambda config: _uses(config, "hard_sigmoid"),
        applies_between=_keras_majors_differ,
    ),
    KnownDifference(
        id="stateful-initial-state",
        applies_to="stateful layers called with initial_state after their first call",
        versions="Keras 2 vs Keras 3",
        reason="Keras 2 keeps the carried state whenever any of it is non-zero and ignores "
        "initial_state; Keras 3 always uses the initial_state it is given.",
        handling="the twin follows its keras_version.",
        matches_case=lambda config: bool(config.get("stateful") and config.get("initial_state")),
        applies_between=_keras_majors_differ,
    ),
    KnownDifference(
        id="gelu-formula",
        applies_to="activation or recurrent_activation 'gelu', float64",
        versions="TensorFlow 2.15 vs TensorFlow 2.21",
        reason="TensorFlow 2.15 computes 0.5 * x * (1 + erf(x / sqrt(2))), TensorFlow 2.21 "
        "0.5 * x * erfc(-x / sqrt(2)), both with the constant rounded to float32; they differ by "
        "up to ~1e-8 per evaluation, visible in float64 only.",
        handling="from_keras (and the parity suite) probe tf.nn.gelu and use the matching form; a twin "
        "built by name uses the TensorFlow 2.21 form.",
        matches_case=lambda config: _uses(config, "gelu") and config.get("dtype") == "float64",
        applies_between=_gelu_forms_differ,
    ),
    KnownDifference(
        id="jax-masked-output-start",
        applies_to="masked steps before the first unmasked one, with a non-zero initial h",
        versions="Keras 3 on JAX vs Keras 3 (and 2) on TensorFlow",
        reason="Keras's JAX loop repeats states[0] (the initial h) at a masked step before any "
        "unmasked one; the TensorFlow loop repeats a zero output.",
        handling="twins take backend='tensorflow'|'jax'; from_keras sets it from keras.backend.backend().",
        matches_case=lambda config: (
            config.get("mask") in ("scattered", "right_padded") and bool(config.get("initial_state") or config.get("stateful"))
        ),
        applies_between=lambda old, new: old.get("keras_backend") != new.get("keras_backend"),
    ),
    KnownDifference(
        id="xla-cpu-float64-tanh",
        applies_to="float64 layers whose step uses tanh, on the JAX backend",
        versions="Keras 3 on JAX (XLA CPU)",
        reason="XLA's CPU tanh is float32-accurate even for float64 (measured error ~3e-8 on "
        "values near 0.5), so float64 results agree with an exact float64 computation only to "
        "float32 precision.",
        handling="the parity suite compares float64 on the JAX backend at the float32 tolerances "
        "(tolerance_for); everything else keeps the float64 tolerances.",
        matches_case=lambda config: config.get("dtype") == "float64",
        applies_between=lambda old, new: (old.get("keras_backend") == "jax") != (new.get("keras_backend") == "jax"),
    ),
    KnownDifference(
        id="empty-batch",
        applies_to="inputs with batch size 0",
        versions="Keras 3 on TensorFlow 2.21",
        reason="Keras 3's TensorFlow backend raises inside the cell (BiasAdd) on an empty batch; tf_keras returns empty outputs.",
        handling="the twins return empty outputs of the right shapes for both versions "
        "(not part of the matrix, so diff never attributes drift to it).",
    ),
)


@dataclass(frozen=True)
class KnownKerasFailure:
    """A configuration Keras itself cannot run in some environment (not a twin mismatch)."""

    id: str
    applies_to: str
    versions: str
    reason: str
    matches: Callable[[CaseConfig, Environment], bool]
    error_pattern: str  # a regular expression Keras's error message must contain

    def matches_error(self, error: BaseException | str) -> bool:
        """Whether ``error`` is this failure (its message matches ``error_pattern``)."""
        return re.search(self.error_pattern, str(error)) is not None


def _jax_x64(env: Environment) -> bool:
    return env.get("keras_backend") == "jax" and bool(env.get("jax_x64"))


KNOWN_KERAS_FAILURES: tuple[KnownKerasFailure, ...] = (
    KnownKerasFailure(
        id="jax-x64-simple-rnn-float64-tanh",
        applies_to="SimpleRNN, float64, activation tanh, no mask",
        versions="Keras 3.15 on JAX with JAX_ENABLE_X64=1",
        reason="Keras's JAX SimpleRNN loop returns a float32 state for a float64 layer, and "
        "lax.scan refuses the carry dtype change (TypeError).",
        matches=lambda config, env: (
            _jax_x64(env)
            and config.get("kind") == "simple_rnn"
            and config.get("dtype") == "float64"
            and config.get("activation") == "tanh"
            and config.get("mask") == "none"
        ),
        error_pattern="carry",
    ),
    KnownKerasFailure(
        id="jax-x64-gru-no-bias-float32",
        applies_to="GRU, reset_after=True, use_bias=False, float32, no mask",
        versions="Keras 3.15 on JAX with JAX_ENABLE_X64=1",
        reason="Keras's fused JAX GRU path promotes a float32 layer without bias to float64, and "
        "lax.scan refuses the carry dtype change (TypeError).",
        matches=lambda config, env: (
            _jax_x64(env)
            and config.get("kind") == "gru"
            and bool(config.get("reset_after"))
            and not config.get("use_bias", True)
            and config.get("dtype") == "float32"
            and config.get("mask") == "none"
        ),
        error_pattern="carry",
    ),
    KnownKerasFailure(
        id="keras3-tf-stack-of-one-cell-mask",
        applies_to="RNN(StackedRNNCells([a single cell])) called with a mask",
        versions="Keras 3.15 on TensorFlow",
        reason="StackedRNNCells returns a lone cell's states without their outer list, and the TensorFlow "
        "backend's masked loop refuses the changed state structure (ValueError). Unmasked calls and stacks "
        "of two or more cells run.",
        matches=lambda config, env: (
            env.get("keras_major") == 3
            and env.get("keras_backend") == "tensorflow"
            and config.get("stacked_cells") == 1
            and config.get("mask", "none") != "none"
        ),
        error_pattern="same nested structure",
    ),
    KnownKerasFailure(
        id="keras3-jax-stack-of-one-cell",
        applies_to="RNN(StackedRNNCells([a single cell])), with or without a mask",
        versions="Keras 3.15 on JAX",
        reason="StackedRNNCells returns a lone cell's states without their outer list, and lax.scan refuses the "
        "changed carry structure (TypeError). Stacks of two or more cells run.",
        matches=lambda config, env: env.get("keras_backend") == "jax" and config.get("stacked_cells") == 1,
        error_pattern="pytree structure|list arity mismatch",
    ),
    KnownKerasFailure(
        id="jax-x64-stacked-simple-rnn-float64-tanh",
        applies_to="RNN(StackedRNNCells) holding a SimpleRNNCell with tanh, float64, no mask",
        versions="Keras 3.15 on JAX with JAX_ENABLE_X64=1",
        reason="the same float32 state as jax-x64-simple-rnn-float64-tanh, from the cell inside a stack: lax.scan "
        "refuses the carry dtype change (TypeError).",
        matches=lambda config, env: (
            _jax_x64(env)
            and "simple_rnn:tanh" in config.get("cells", ())
            and config.get("dtype") == "float64"
            and config.get("mask") == "none"
        ),
        error_pattern="carry",
    ),
)


def expected_keras_failure(config: CaseConfig, env: Environment) -> KnownKerasFailure | None:
    """The known Keras failure for ``config`` in environment ``env``, if any."""
    return next((f for f in KNOWN_KERAS_FAILURES if f.matches(config, env)), None)


def tolerance_for(dtype: str, backend: str) -> tuple[float | None, float | None]:
    """``(rtol, atol)`` overrides for comparing a twin with Keras on ``backend``
    (None: the per-dtype defaults). See ``xla-cpu-float64-tanh``."""
    if backend == "jax" and dtype == "float64":
        from rnnparity.compare import DEFAULT_TOLERANCES

        return DEFAULT_TOLERANCES["float32"]
    return None, None


def explain(config: CaseConfig, old: Environment, new: Environment) -> list[KnownDifference]:
    """The entries that explain drift of ``config`` between environments ``old`` and ``new``."""
    return [
        d
        for d in KNOWN_DIFFERENCES
        if d.matches_case is not None and d.applies_between is not None and d.matches_case(config) and d.applies_between(old, new)
    ]
