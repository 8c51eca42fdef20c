"""Known differences between Keras/TensorFlow versions that change recurrent-layer numbers.

Data, not silent skips: each entry says where the numbers differ, between which versions,
why, and how the twins handle it. ``rnnparity diff`` uses ``matches_case`` and
``applies_between`` to name the cause of drift between two reports, and reports an entry
whose expected drift is no longer observed; the tests check each entry still holds.
"""

from __future__ import annotations

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
        id="empty-batch",
        applies_to="inputs with batch size 0",
        versions="Keras 3 on TensorFlow 2.21",
        reason="Keras 3's TensorFlow backend raises inside the cell (BiasAdd) on an empty batch; tf_keras returns empty outputs.",
        handling="the twins return empty outputs of the right shapes for both versions "
        "(not part of the matrix, so diff never attributes drift to it).",
    ),
)


def explain(config: CaseConfig, old: Environment, new: Environment) -> list[KnownDifference]:
    """The entries that explain drift of ``config`` between environments ``old`` and ``new``."""
    return [
        d
        for d in KNOWN_DIFFERENCES
        if d.matches_case is not None and d.applies_between is not None and d.matches_case(config) and d.applies_between(old, new)
    ]
