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
# A report's environment (rnnparity.suite.report.environment), in the report's keys:
# "keras_major" is the 2 or 3 that the twins call keras_version.
Environment = Mapping[str, Any]


def _uses(config: CaseConfig, name: str) -> bool:
    inner = config.get("layers")
    if isinstance(inner, list):  # a wrapper case: any layer or cell inside it
        return any(_uses(layer, name) for layer in inner if isinstance(layer, Mapping))
    gated = config.get("kind") != "simple_rnn"
    return config.get("activation") == name or (gated and config.get("recurrent_activation") == name)


def _conv_lstm_masked_sequences(config: CaseConfig) -> bool:
    """A ConvLSTM returning sequences with a mask, whose masked outputs are zeroed in Keras 3."""
    if config.get("mask", "none") in ("none", None, False):
        return False
    inner = config.get("layers")
    layers = [layer for layer in inner if isinstance(layer, Mapping)] if isinstance(inner, list) else [config]
    wrapped = config.get("kind") == "bidirectional"
    return any(
        str(layer.get("kind", "")).startswith("conv_lstm")
        and bool(layer.get("return_sequences", config.get("return_sequences")))
        and (wrapped or bool(layer.get("zero_output_for_mask")))
        for layer in layers
    )


def _torch_generic_loop(config: CaseConfig) -> bool:
    """Whether Keras on torch runs ``config`` through its generic RNN loop (the Keras cells'
    keras.ops.matmul: torch-float64-partly-float32) rather than torch's own LSTM/GRU loop:
    a mask, a SimpleRNN, a GRU(reset_after=False), or any RNN(cell) or stack of cells."""
    if config.get("kind") in ("rnn", "stacked") or config.get("mask", "none") != "none":
        return True
    inner = config.get("layers")
    layers = [layer for layer in inner if isinstance(layer, Mapping)] if isinstance(inner, list) else [config]
    return any(
        layer.get("kind") == "simple_rnn" or (layer.get("kind") == "gru" and not layer.get("reset_after", True))
        for layer in layers
    )


# Activations TensorFlow computes with a float32 constant even in float64 (float64-activation-constants).
FLOAT32_CONSTANTS = ("gelu", "leaky_relu")


def _keras_versions_differ(old: Environment, new: Environment) -> bool:
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
    # Where Keras itself computes other numbers than the twins for a matching case (a Keras bug
    # the twins do not follow); None: the twins follow every environment.
    wrong_in: Callable[[Environment], bool] | None = None


def _scan_loop(env: Environment) -> bool:
    return env.get("keras_major") == 3 and env.get("keras_backend") in ("jax", "numpy")


def _stack_with_bare_outer_state(config: CaseConfig) -> bool:
    """A masked RNN(StackedRNNCells) given an initial state whose first or last item is a bare
    array (a one-state cell's state given without its list): the cases of keras3-scan-stacked-bare-state."""
    cells = config.get("layers")
    if config.get("kind") != "stacked" or not isinstance(cells, list) or not cells:
        return False
    if config.get("mask", "none") == "none" or not config.get("initial_state") or not config.get("bare_states"):
        return False
    return any(isinstance(cell, Mapping) and cell.get("kind") != "lstm" for cell in (cells[0], cells[-1]))


KNOWN_DIFFERENCES: tuple[KnownDifference, ...] = (
    KnownDifference(
        id="hard-sigmoid-formula",
        applies_to="any LSTM/GRU (or activation) using hard_sigmoid",
        versions="Keras 2 (tf_keras, tf.keras <= 2.15) vs Keras 3",
        reason="Keras 2 computes clip(0.2 * x + 0.5, 0, 1); Keras 3 computes relu6(x + 3) / 6. "
        "They differ everywhere except at 0 and in full saturation.",
        handling="keras_version=2|3 selects the formula; from_keras sets it from the layer's package.",
        matches_case=lambda config: _uses(config, "hard_sigmoid"),
        applies_between=_keras_versions_differ,
    ),
    KnownDifference(
        id="stateful-initial-state",
        applies_to="stateful layers called with initial_state after their first call",
        versions="Keras 2 vs Keras 3",
        reason="Keras 2 keeps the carried state whenever any of it is non-zero and ignores "
        "initial_state; Keras 3 always uses the initial_state it is given.",
        handling="the twin follows its keras_version.",
        matches_case=lambda config: bool(config.get("stateful") and config.get("initial_state")),
        applies_between=_keras_versions_differ,
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
        id="float64-activation-constants",
        applies_to="activation or recurrent_activation 'gelu' or 'leaky_relu', float64",
        versions="Keras 3.15 on TensorFlow (and tf_keras) vs Keras 3.15 on JAX or torch",
        reason="TensorFlow computes these with a float32 constant: gelu's 1/sqrt(2) (erfc form) and leaky_relu's "
        "slope 0.2 are rounded to float32 even for float64 inputs. JAX and torch use the float64 constants. "
        "Measured on 4096 float64 values (|x| up to 12): gelu differs by up to 5.0e-9, leaky_relu by up to 3.5e-8.",
        handling="the twins compute TensorFlow's forms; the parity suite compares float64 cases that use gelu or "
        "leaky_relu at the float32 tolerances on JAX and torch (tolerance_for).",
        matches_case=lambda config: config.get("dtype") == "float64" and any(_uses(config, n) for n in FLOAT32_CONSTANTS),
        applies_between=lambda old, new: (
            (old.get("keras_backend") in ("jax", "torch")) != (new.get("keras_backend") in ("jax", "torch"))
        ),
    ),
    KnownDifference(
        id="torch-float64-partly-float32",
        applies_to="float64 layers that Keras runs through its generic RNN loop on the torch backend: any mask, "
        "SimpleRNN, GRU(reset_after=False), every RNN(cell) and stack of cells (and those inside a Bidirectional)",
        versions="Keras 3.15 on torch 2.13 (CPU)",
        reason="The generic loop steps the Keras cells, whose keras.ops.matmul computes in "
        "keras.backend.result_type(float64, float64), which Keras maps to float32 on every backend but TensorFlow "
        "(BIT64_TO_BIT32_DTYPE, 'aligned with JAX'); the matmul result comes back as float32. Measured errors 2e-9 "
        "to 5.5e-7 against an exact float64 computation (quick matrix, 2026-12-02), where TensorFlow gives ~1e-16. "
        "Unmasked LSTM and GRU(reset_after=True) layers run torch's own loop (torch.matmul) and stay exact "
        "(<= 2.2e-16). A Keras bug, reported here as data.",
        handling="the parity suite compares exactly these float64 configurations on torch at the float32 tolerances "
        "(tolerance_for); tests/test_backends.py requires the difference to persist where the widening applies and "
        "float64 parity to hold where it does not.",
        matches_case=lambda config: config.get("dtype") == "float64" and _torch_generic_loop(config),
        applies_between=lambda old, new: (old.get("keras_backend") == "torch") != (new.get("keras_backend") == "torch"),
    ),
    KnownDifference(
        id="numpy-float64-partly-float32",
        applies_to="every float64 LSTM, GRU, SimpleRNN and ConvLSTM (and every wrapper of them) on the numpy backend",
        versions="Keras 3.15 on the numpy backend (NumPy 2.4)",
        reason="The numpy backend has no LSTM/GRU loop of its own, so every layer steps the Keras cells, whose "
        "keras.ops.matmul casts float64 operands to keras.backend.result_type(float64, float64), float32 on every "
        "backend but TensorFlow (as torch-float64-partly-float32). Measured errors 6e-9 to 5.6e-7 against an exact "
        "float64 computation (86 of the 90 quick float64 cases, 2026-12-02; the other 4, last outputs of masked "
        "cases, agree exactly); LSTM and SimpleRNN results hold float32 values only. ConvLSTM too: all 122 float64 "
        "conv cases of the matrix miss the float64 tolerance there, 46 hold float32 values only. A Keras bug, "
        "reported here as data.",
        handling="the parity suite compares float64 on the numpy backend at the float32 tolerances (tolerance_for); "
        "tests/test_backends.py requires the difference to persist.",
        matches_case=lambda config: config.get("dtype") == "float64",
        applies_between=lambda old, new: (old.get("keras_backend") == "numpy") != (new.get("keras_backend") == "numpy"),
    ),
    KnownDifference(
        id="keras2-conv-lstm-masked-output",
        applies_to="Bidirectional(ConvLSTM1D/2D/3D) with return_sequences=True (or a ConvLSTM with "
        "zero_output_for_mask=True) called with a mask",
        versions="tf_keras (Keras 2) vs Keras 3",
        reason="Bidirectional sets its layers' zero_output_for_mask to return_sequences, so Keras 3 outputs zeros at "
        "masked steps; tf_keras's convolutional RNN never passes zero_output_for_mask to its loop and repeats the last "
        "unmasked output there.",
        handling="the ConvLSTM twin follows its keras_version: zero_output_for_mask acts in Keras 3 only.",
        matches_case=lambda config: _conv_lstm_masked_sequences(config),
        applies_between=_keras_versions_differ,
    ),
    KnownDifference(
        id="keras3-scan-stacked-bare-state",
        applies_to="RNN(StackedRNNCells) called with a mask and an initial state whose first or last item is a "
        "one-state cell's (GRUCell, SimpleRNNCell) state given as a bare array, on the JAX and NumPy backends",
        versions="Keras 3.15 on JAX and on NumPy (keras/src/backend/jax|numpy/rnn.py)",
        reason="At a masked step their scan loop outputs states[0], or states[-1][0] when states[0] is a list "
        "(meant as 'the last cell's first state'). With the last cell's state bare, states[-1][0] is row 0 of "
        "that state, so every masked row repeats batch row 0's carried h; with the first cell's state bare, "
        "states[0] is the first cell's h, so masked rows repeat the wrong cell's h (or the call fails to "
        "broadcast when the two cells' units differ). TensorFlow and torch, and the same states given as lists, "
        "repeat each row's own previous output.",
        handling="the twins repeat each row's own h (what Keras on JAX and NumPy gives for the same states as "
        "lists); check and the wrapper matrix report a matching case that differs or fails as this known difference, "
        "and tests/test_backends.py requires Keras on NumPy to keep repeating row 0.",
        matches_case=_stack_with_bare_outer_state,
        applies_between=lambda old, new: _scan_loop(old) != _scan_loop(new),
        wrong_in=_scan_loop,
    ),
    KnownDifference(
        id="onednn-softmax-non-finite",
        applies_to="activation or recurrent_activation 'softmax', float32, on a step whose pre-activations hold inf "
        "or NaN (non-finite inputs or weights)",
        versions="TensorFlow 2.21 with oneDNN on (the default on x86 CPUs; TF_ENABLE_ONEDNN_OPTS=0 turns it off)",
        reason="oneDNN's float32 softmax returns 0 for the finite entries of a row that holds inf or NaN (NaN for the "
        "others); TensorFlow's own kernel (float64, or oneDNN off) returns NaN for the whole row, the IEEE result of "
        "exp(x - max) / sum. Finite inputs agree to the tolerance either way.",
        handling="the twins compute the IEEE result. The matrix has finite inputs only, so diff never meets it; the "
        "non-finite input tests require Keras to keep differing while oneDNN is on (tests/test_hostile.py).",
        matches_case=lambda config: (
            _uses(config, "softmax") and config.get("dtype") == "float32" and bool(config.get("non_finite_inputs"))
        ),
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
        applies_to="RNN(StackedRNNCells([a single cell])) called with a mask, unless the cell has one state and "
        "is given it as a bare array",
        versions="Keras 3.15 on TensorFlow",
        reason="StackedRNNCells returns a lone cell's states without their outer list, and the TensorFlow "
        "backend's masked loop refuses the changed state structure (ValueError). Unmasked calls and stacks "
        "of two or more cells run.",
        matches=lambda config, env: (
            env.get("keras_major") == 3
            and env.get("keras_backend") == "tensorflow"
            and config.get("stacked_cells") == 1
            and config.get("mask", "none") != "none"
            and not config.get("lone_one_state_cell_given_bare")
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
    KnownKerasFailure(
        id="keras2-stack-listed-one-state-mask",
        applies_to="RNN(StackedRNNCells) called with a mask and an initial_state that gives a one-state cell "
        "(GRUCell, SimpleRNNCell) its state as a one-item list instead of a bare array",
        versions="tf_keras 2.21",
        reason="Keras 2's stacked cells return a one-state cell's state as a bare array, and the masked loop refuses "
        "a state structure that differs from the initial one (ValueError); unmasked calls accept both forms, "
        "and so does Keras 3.",
        matches=lambda config, env: (
            env.get("keras_major") == 2 and config.get("mask", "none") != "none" and bool(config.get("listed_one_state_cells"))
        ),
        error_pattern="same nested structure",
    ),
    KnownKerasFailure(
        id="jax-x64-conv-lstm-float64-tanh-tanh",
        applies_to="ConvLSTM1D/2D/3D, float64, activation and recurrent_activation both tanh",
        versions="Keras 3.15 on JAX with JAX_ENABLE_X64=1",
        reason="Keras's JAX tanh returns float32 for float64 inputs, so h = o * tanh(c) is float32 when o comes "
        "from tanh too, and lax.scan refuses the carry dtype change (TypeError). With either activation "
        "something else (sigmoid, relu, ...) the product is float64 and the layer runs.",
        matches=lambda config, env: (
            _jax_x64(env)
            and str(config.get("kind", "")).startswith("conv_lstm")
            and config.get("dtype") == "float64"
            and config.get("activation") == "tanh"
            and config.get("recurrent_activation") == "tanh"
        ),
        error_pattern="carry",
    ),
    KnownKerasFailure(
        id="keras3-tf-conv-lstm-channels-first-float64",
        applies_to="ConvLSTM1D and ConvLSTM2D with data_format='channels_first', float64",
        versions="Keras 3.15 on TensorFlow 2.21 (CPU)",
        reason="Keras 3 hands 1-D and 2-D channels_first convolutions to TensorFlow's CPU Conv2D kernel, which has "
        "no NCHW layout in float64 (UnimplementedError). ConvLSTM3D runs (Keras compiles it with XLA), float32 "
        "runs, and tf_keras transposes to channels_last itself.",
        matches=lambda config, env: (
            env.get("keras_major") == 3
            and env.get("keras_backend") == "tensorflow"
            and config.get("kind") in ("conv_lstm1d", "conv_lstm2d")
            and config.get("data_format") == "channels_first"
            and config.get("dtype") == "float64"
        ),
        error_pattern="NHWC|Unimplemented",
    ),
    KnownKerasFailure(
        id="keras3-tf-lstm-empty-batch",
        applies_to="LSTM called on an empty batch (batch size 0), any options",
        versions="Keras 3.15 on TensorFlow 2.21",
        reason="Keras 3's TensorFlow ops.add takes an operand whose only axis longer than 1 is the last one for a "
        "bias vector (axes of size 0 count as squeezable), so the LSTM cell's (0, 4 * units) recurrent term goes to "
        "tf.nn.bias_add, which refuses it (InvalidArgumentError 'Biases must be 1D'), with or without use_bias. GRU "
        "and SimpleRNN, and every tf_keras layer, return empty outputs; so do the twins, for every layer.",
        matches=lambda config, env: (
            env.get("keras_major") == 3
            and env.get("keras_backend") == "tensorflow"
            and config.get("kind") == "lstm"
            and config.get("batch") == 0
        ),
        error_pattern="Biases must be 1D",
    ),
)


def expected_keras_failure(config: CaseConfig, env: Environment) -> KnownKerasFailure | None:
    """The known Keras failure for ``config`` in environment ``env``, if any."""
    return next((f for f in KNOWN_KERAS_FAILURES if f.matches(config, env)), None)


def expected_keras_difference(config: CaseConfig, env: Environment) -> KnownDifference | None:
    """The known difference under which Keras in environment ``env`` computes other numbers
    than the twins for ``config`` (or fails), if any: a Keras bug the twins do not follow."""
    wrong = (d for d in KNOWN_DIFFERENCES if d.wrong_in is not None and d.matches_case is not None)
    return next((d for d in wrong if d.wrong_in(env) and d.matches_case(config)), None)  # type: ignore[misc]


def _step_uses_tanh(config: CaseConfig) -> bool:
    cells = config.get("cells") or ()
    return _uses(config, "tanh") or any(str(cell).endswith(":tanh") for cell in cells)


def tolerance_for(dtype: str, backend: str, config: CaseConfig | None = None) -> tuple[float | None, float | None]:
    """``(rtol, atol)`` overrides for comparing a twin with Keras on ``backend``
    (None: the per-dtype defaults). Float64 is compared at the float32 tolerances on JAX where the
    step uses tanh (``xla-cpu-float64-tanh``), on torch where Keras runs its generic loop
    (``torch-float64-partly-float32``), on both where the step uses gelu or leaky_relu
    (``float64-activation-constants``), and on numpy always (``numpy-float64-partly-float32``);
    on JAX and torch every float64 case is widened when ``config`` is not given. Everywhere else
    float64 keeps the float64 tolerances."""
    constants = config is not None and any(_uses(config, name) for name in FLOAT32_CONSTANTS)
    jax_widened = backend == "jax" and (config is None or _step_uses_tanh(config) or constants)
    torch_widened = backend == "torch" and (config is None or _torch_generic_loop(config) or constants)
    if dtype == "float64" and (jax_widened or torch_widened or backend == "numpy"):
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
