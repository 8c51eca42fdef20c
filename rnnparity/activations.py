"""NumPy activations, named and defined as the emulated Keras version defines them.

Every function takes and returns an ``ndarray`` of the same floating dtype. Where Keras
saturates to ``inf`` (``exponential`` of a large value), so do these; NumPy's overflow
warning is silenced for that one computation because the ``inf`` *is* the Keras answer.

The one formula that differs between the two Kerases is ``hard_sigmoid``:

* Keras 2 (``tf_keras``, ``tf.keras`` on TensorFlow <= 2.15): ``clip(0.2 * x + 0.5, 0, 1)``,
  linear on ``[-2.5, 2.5]``.
* Keras 3: ``relu6(x + 3) / 6`` = ``clip(x / 6 + 0.5, 0, 1)``, linear on ``[-3, 3]``.

A model trained under Keras 2 with ``recurrent_activation="hard_sigmoid"`` (the Keras 2.2
default) therefore predicts different numbers when loaded into Keras 3.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Union

import numpy as np

Activation = Callable[[np.ndarray], np.ndarray]
ActivationLike = Union[str, Activation, None]

# The activations' constants, shared with their derivatives (rnnparity.activation_grads).
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
# SeluGrad's own literal for scale * alpha, rounded once from the exact product; the forward
# multiplies the two rounded doubles above, which is one ulp lower. Both are TensorFlow's.
SELU_SCALE_ALPHA_GRAD = 1.7580993408473768599402175208123
# TensorFlow's gelu multiplies by 1/sqrt(2) converted through a float32 constant, in
# float64 too; the twin uses the same rounded constant to agree to the last bits.
SQRT_HALF_AS_FLOAT32 = float(np.float32(1.0 / math.sqrt(2.0)))
SQRT_TWO_AS_FLOAT32 = float(np.float32(math.sqrt(2.0)))
# TensorFlow's LeakyRelu op stores alpha as a 32-bit attribute, even for float64 inputs.
LEAKY_RELU_ALPHA = np.float32(0.2)

erf = np.vectorize(math.erf, otypes=[np.float64])
erfc = np.vectorize(math.erfc, otypes=[np.float64])


def linear(x: np.ndarray) -> np.ndarray:
    return x


def tanh(x: np.ndarray) -> np.ndarray:
    return np.tanh(x)


def sigmoid(x: np.ndarray) -> np.ndarray:
    # 1 / (1 + exp(-x)), accurate to rounding over the whole range: for very negative x,
    # exp(-x) overflows to inf and 1 / inf is the exact limit 0. Computed in place in one
    # buffer (four passes over memory, no branches): this runs for three gates every step.
    e = np.negative(x)
    with np.errstate(over="ignore"):
        np.exp(e, out=e)
    e += 1
    return np.reciprocal(e, out=e)


def hard_sigmoid_keras2(x: np.ndarray) -> np.ndarray:
    """Keras 2: ``clip(0.2 * x + 0.5, 0, 1)``."""
    return np.clip(x * x.dtype.type(0.2) + x.dtype.type(0.5), 0, 1)


def hard_sigmoid_keras3(x: np.ndarray) -> np.ndarray:
    """Keras 3: ``relu6(x + 3) / 6``."""
    return np.clip(x + x.dtype.type(3), 0, 6) / x.dtype.type(6)


def hard_silu_keras3(x: np.ndarray) -> np.ndarray:
    return x * hard_sigmoid_keras3(x)


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def relu6(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0, 6)


def leaky_relu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, x * x.dtype.type(LEAKY_RELU_ALPHA))


def elu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def selu(x: np.ndarray) -> np.ndarray:
    neg = x.dtype.type(SELU_SCALE * SELU_ALPHA) * np.expm1(np.minimum(x, 0))
    return np.where(x > 0, x.dtype.type(SELU_SCALE) * x, neg)


def celu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0) + np.expm1(np.minimum(x, 0))


def softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(x.dtype.type(0), x)


def softsign(x: np.ndarray) -> np.ndarray:
    return x / (1 + np.abs(x))


def silu(x: np.ndarray) -> np.ndarray:
    return x * sigmoid(x)


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU as TensorFlow 2.21 computes it: ``0.5 * x * erfc(-x * (1/sqrt(2)))``.

    (The Keras default ``approximate=False``, not the tanh form.)"""
    x64 = x.astype(np.float64)
    return (0.5 * x64 * erfc(-x64 * SQRT_HALF_AS_FLOAT32)).astype(x.dtype)


def gelu_erf_form(x: np.ndarray) -> np.ndarray:
    """Exact GELU as TensorFlow 2.15 computes it: ``0.5 * x * (1 + erf(x / sqrt(2)))``.

    Differs from :func:`gelu` by up to ~1e-8 in float64 (see ``known_differences``);
    ``rnnparity.from_keras`` picks the form the installed TensorFlow uses."""
    x64 = x.astype(np.float64)
    return (0.5 * x64 * (1.0 + erf(x64 / SQRT_TWO_AS_FLOAT32))).astype(x.dtype)


gelu_erf_form.keras_name = "gelu"  # type: ignore[attr-defined]


def exponential(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.exp(x)


def mish(x: np.ndarray) -> np.ndarray:
    return x * np.tanh(softplus(x))


def softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - np.max(x, axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=-1, keepdims=True)


def log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - np.max(x, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -softplus(-x)


def hard_tanh(x: np.ndarray) -> np.ndarray:
    return np.clip(x, -1, 1)


def hard_shrink(x: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) > 0.5, x, x.dtype.type(0))


def soft_shrink(x: np.ndarray) -> np.ndarray:
    half = x.dtype.type(0.5)
    return np.where(x > half, x - half, np.where(x < -half, x + half, x.dtype.type(0)))


def tanh_shrink(x: np.ndarray) -> np.ndarray:
    return x - np.tanh(x)


def sparse_plus(x: np.ndarray) -> np.ndarray:
    quarter = x.dtype.type(0.25)
    inner = np.where(x < 1, quarter * np.square(x + 1), x)
    return np.where(x <= -1, x.dtype.type(0), inner)


def sparse_sigmoid(x: np.ndarray) -> np.ndarray:
    inner = np.where(x >= 1, x.dtype.type(1), x.dtype.type(0.5) * (x + 1))
    return np.where(x <= -1, x.dtype.type(0), inner)


def squareplus(x: np.ndarray) -> np.ndarray:
    return (x + np.sqrt(np.square(x) + x.dtype.type(4))) / 2


def sparsemax(x: np.ndarray) -> np.ndarray:
    # Keras 3's formula, oddities included. Sorted descending with NaN first, as TensorFlow's
    # sort orders it: a row holding NaN (or inf) then has an empty support, tau = -1 / 0 = -inf,
    # and the result is inf (NaN where the input was NaN), as Keras returns it. tau sums the
    # cumulative sums over the support (not the one at its end), so the outputs need not sum
    # to one: (0.5, 0.2, 0.1) -> (1/6, 0, 0) in Keras and here.
    z = np.flip(np.sort(x, axis=-1), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        cumsum = np.cumsum(z, axis=-1)
        k = np.arange(1, x.shape[-1] + 1, dtype=x.dtype)
        support = z - (cumsum - 1) / k > 0
        k_support = np.sum(support, axis=-1, keepdims=True).astype(x.dtype)
        tau = (np.sum(np.where(support, cumsum, 0), axis=-1, keepdims=True) - 1) / k_support
        return np.maximum(x - tau, 0)


def _sigmoid_in_place(x: np.ndarray) -> np.ndarray:
    # Not np.negative(x, out=x): NumPy 2.4 negates a one-column strided view in place wrongly
    # (it reads a neighbouring column); multiplying by -1 is the same exact negation.
    np.multiply(x, x.dtype.type(-1), out=x)
    with np.errstate(over="ignore"):
        np.exp(x, out=x)
    x += 1
    return np.reciprocal(x, out=x)


def _tanh_in_place(x: np.ndarray) -> np.ndarray:
    return np.tanh(x, out=x)


def _hard_sigmoid_keras2_in_place(x: np.ndarray) -> np.ndarray:
    x *= x.dtype.type(0.2)
    x += x.dtype.type(0.5)
    return np.clip(x, 0, 1, out=x)


def _hard_sigmoid_keras3_in_place(x: np.ndarray) -> np.ndarray:
    x += x.dtype.type(3)
    np.clip(x, 0, 6, out=x)
    x /= x.dtype.type(6)
    return x


def _relu_in_place(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0, out=x)


# The same operations in the same order as the functions above (so the same bits), written
# into the argument: the time loop applies gate activations to views of one buffer.
_IN_PLACE: dict[Activation, Activation] = {
    linear: linear,
    sigmoid: _sigmoid_in_place,
    tanh: _tanh_in_place,
    hard_sigmoid_keras2: _hard_sigmoid_keras2_in_place,
    hard_sigmoid_keras3: _hard_sigmoid_keras3_in_place,
    relu: _relu_in_place,
}


def in_place(function: Activation) -> Activation:
    """A version of ``function`` that overwrites its (writable, floating) argument with the
    result and returns it. Any other activation (a custom callable too) is computed as usual
    and copied back, so every activation works; the common ones avoid the copy."""
    if function in _IN_PLACE:
        return _IN_PLACE[function]

    def overwrite(x: np.ndarray) -> np.ndarray:
        x[...] = function(x)
        return x

    return overwrite


# Names each Keras accepts for an activation of a recurrent layer, and what they compute.
_COMMON: dict[str, Activation] = {
    "linear": linear,
    "tanh": tanh,
    "sigmoid": sigmoid,
    "relu": relu,
    "relu6": relu6,
    "leaky_relu": leaky_relu,
    "elu": elu,
    "selu": selu,
    "softplus": softplus,
    "softsign": softsign,
    "swish": silu,
    "silu": silu,
    "gelu": gelu,
    "exponential": exponential,
    "mish": mish,
    "softmax": softmax,
    "log_softmax": log_softmax,
}

KERAS2_ACTIVATIONS: dict[str, Activation] = {**_COMMON, "hard_sigmoid": hard_sigmoid_keras2}

KERAS3_ACTIVATIONS: dict[str, Activation] = {
    **_COMMON,
    "hard_sigmoid": hard_sigmoid_keras3,
    "hard_silu": hard_silu_keras3,
    "hard_swish": hard_silu_keras3,
    "celu": celu,
    "log_sigmoid": log_sigmoid,
    "hard_tanh": hard_tanh,
    "hard_shrink": hard_shrink,
    "soft_shrink": soft_shrink,
    "tanh_shrink": tanh_shrink,
    "sparse_plus": sparse_plus,
    "sparse_sigmoid": sparse_sigmoid,
    "squareplus": squareplus,
    "sparsemax": sparsemax,
}

# Keras names that cannot be an RNN activation: they need extra arguments or change shape.
_UNUSABLE = {
    "glu": "it halves the last axis, so the state would no longer have `units` columns",
    "threshold": "it needs `threshold` and `default_value` arguments that a name cannot carry",
}


def activations_for(keras_version: int) -> dict[str, Activation]:
    """The activation names the emulated Keras version accepts, with their functions."""
    return KERAS2_ACTIVATIONS if keras_version == 2 else KERAS3_ACTIVATIONS


def get(identifier: ActivationLike, keras_version: int, argument: str = "activation") -> tuple[str, Activation]:
    """Resolve an activation name (or ``None``, or a NumPy callable) to ``(name, function)``.

    Raises ``ValueError`` naming ``argument`` for a name the emulated Keras does not know,
    and ``TypeError`` for anything that is neither a string, ``None`` nor callable.
    """
    if identifier is None:
        return "linear", linear
    if isinstance(identifier, str):
        table = activations_for(keras_version)
        if identifier in table:
            return identifier, table[identifier]
        if identifier in _UNUSABLE:
            raise ValueError(f"{argument}={identifier!r} cannot be used in a recurrent layer: {_UNUSABLE[identifier]}")
        other = activations_for(5 - keras_version)
        hint = f" (it exists in Keras {5 - keras_version} only)" if identifier in other else ""
        raise ValueError(
            f"{argument}={identifier!r} is not an activation of Keras {keras_version}{hint}; expected one of {sorted(table)}"
        )
    if callable(identifier):
        name = getattr(identifier, "keras_name", None) or getattr(identifier, "__name__", repr(identifier))
        return str(name), identifier
    raise TypeError(
        f"{argument} must be an activation name, None or a callable taking a NumPy array; "
        f"got {type(identifier).__name__} {identifier!r}"
    )
