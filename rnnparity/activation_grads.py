"""Derivatives of the activations, as TensorFlow's gradients compute them.

Each entry is a vector-Jacobian product ``vjp(x, y, dy) -> dx``: ``x`` the pre-activation,
``y = activation(x)`` as the forward computed it, ``dy`` the gradient arriving at ``y``.
Every formula is the derivative of the activation *as Keras computes it on TensorFlow*,
so at kinks and clip edges it takes the value TensorFlow's gradient ops give there:

* ``relu``: 0 at 0 (``ReluGrad`` passes ``x > 0`` only); ``relu6``: 0 at 0 and at 6.
* ``hard_sigmoid``: Keras 3 computes ``relu6(x + 3) / 6``, so 0 at ``x = ±3``; Keras 2
  computes ``clip(0.2 * x + 0.5, 0, 1)`` with ``tf.clip_by_value``, whose gradient passes
  at equality, so 0.2 at ``x = ±2.5``. ``hard_tanh`` (``clip_by_value`` too): 1 at ``±1``.
* ``leaky_relu``: ``alpha`` (0.2 rounded to float32, as the op stores it) at 0.
* ``elu``: 1 at 0; ``selu``: ``scale`` at 0 (both grads test the *output* ``y < 0``).
* ``celu`` = ``max(x, 0) + expm1(min(x, 0))``: 2 at 0 — TensorFlow's ``Maximum`` and
  ``Minimum`` gradients both pass a tie to ``x``.
* ``sparse_sigmoid``: 0 at ``±1``; ``sparse_plus``: 0 at -1, 1 at 1; ``hard_shrink`` and
  ``soft_shrink``: 0 at ``±0.5``.
* ``softmax`` / ``log_softmax`` / ``sparsemax`` act along the last axis (one gate's units):
  their products use the full Jacobian. ``sparsemax`` follows Keras 3's own formula
  (sort, cumulative sum, threshold ``tau``) through TensorFlow's gradients.

Smooth activations use the formula TensorFlow's gradient op evaluates (e.g. sigmoid's from
its output, ``silu``'s custom gradient), so the two agree to rounding. A custom NumPy
callable has no known derivative: :func:`vjp_for` refuses it by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from rnnparity import activations as act

VJP = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def _c(x: np.ndarray, value: float) -> Any:
    """``value`` as a scalar of ``x``'s dtype (so float32 stays float32)."""
    return x.dtype.type(value)


def _where(condition: np.ndarray, values: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.where(condition, values, _c(x, 0))


def linear(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    return dy


def tanh(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    return dy * (1 - y * y)


def sigmoid(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    return dy * (y * (1 - y))


def hard_sigmoid_keras2(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    # clip_by_value(0.2 * x + 0.5, 0, 1): the clip passes the gradient where 0 <= u <= 1.
    u = x * _c(x, 0.2) + _c(x, 0.5)
    return _where((u >= 0) & (u <= 1), dy, x) * _c(x, 0.2)


def hard_sigmoid_keras3(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    # relu6(x + 3) / 6: Relu6Grad passes the gradient where 0 < x + 3 < 6 (strictly).
    s = x + _c(x, 3)
    return _where((s > 0) & (s < 6), dy / _c(x, 6), x)


def hard_silu_keras3(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    # x * hard_sigmoid(x): the product rule, hard_sigmoid's derivative as above.
    return dy * act.hard_sigmoid_keras3(x) + hard_sigmoid_keras3(x, y, dy * x)


def relu(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    return _where(x > 0, dy, x)


def relu6(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    return _where((x > 0) & (x < 6), dy, x)


def leaky_relu(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    return np.where(x > 0, dy, dy * x.dtype.type(act.LEAKY_RELU_ALPHA))


def elu(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    return np.where(y < 0, dy * (y + 1), dy)


def selu(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    return np.where(y < 0, dy * (y + _c(x, act.SELU_SCALE_ALPHA_GRAD)), dy * _c(x, act.SELU_SCALE))


def celu(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    return _where(x >= 0, dy, x) + _where(x <= 0, dy * np.exp(np.minimum(x, 0)), x)


def softplus(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return dy / (np.exp(-x) + 1)


def log_sigmoid(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    # -softplus(-x): softplus's gradient at -x, negated twice.
    with np.errstate(over="ignore"):
        return dy / (np.exp(x) + 1)


def softsign(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    return dy / np.square(1 + np.abs(x))


def silu(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    s = act.sigmoid(x)
    return dy * (s * (1 + x * (1 - s)))


def _gelu_erfc(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    # (0.5 * x) * erfc(-x * k), k = 1/sqrt(2) rounded to float32, differentiated in float64.
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    u = -x64 * act.SQRT_HALF_AS_FLOAT32
    dx = 0.5 * dy64 * act.erfc(u) + (dy64 * 0.5 * x64) * _TWO_OVER_SQRT_PI * np.exp(-u * u) * act.SQRT_HALF_AS_FLOAT32
    return dx.astype(x.dtype)


def _gelu_erf(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    # 0.5 * x * (1 + erf(x / sqrt(2))), sqrt(2) rounded to float32 (TensorFlow 2.15).
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    v = x64 / act.SQRT_TWO_AS_FLOAT32
    dx = 0.5 * dy64 * (1.0 + act.erf(v)) + (dy64 * 0.5 * x64) * _TWO_OVER_SQRT_PI * np.exp(-v * v) / act.SQRT_TWO_AS_FLOAT32
    return dx.astype(x.dtype)


def exponential(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    return dy * y


def mish(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    # x * tanh(softplus(x))
    t = np.tanh(act.softplus(x))
    return dy * t + softplus(x, y, tanh(x, t, dy * x))


def softmax(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    return (dy - np.sum(dy * y, axis=-1, keepdims=True)) * y


def log_softmax(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    return dy - np.sum(dy, axis=-1, keepdims=True) * np.exp(y)


def hard_tanh(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    return _where((x >= -1) & (x <= 1), dy, x)


def hard_shrink(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    return _where(np.abs(x) > _c(x, 0.5), dy, x)


def soft_shrink(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    half = _c(x, 0.5)
    return _where((x > half) | (x < -half), dy, x)


def tanh_shrink(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    # x - tanh(x)
    return dy - tanh(x, np.tanh(x), dy)


def sparse_plus(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    # 0 for x <= -1, (x + 1)^2 / 4 for -1 < x < 1, x for x >= 1
    inner = np.where(x < 1, dy * _c(x, 0.25) * 2 * (x + 1), dy)
    return _where(x > -1, inner, x)


def sparse_sigmoid(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    return _where((x > -1) & (x < 1), dy * _c(x, 0.5), x)


def squareplus(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    # (x + sqrt(x^2 + 4)) / 2
    half = dy / 2
    root = np.sqrt(np.square(x) + _c(x, 4))
    return half + (half * _c(x, 0.5) / root) * 2 * x


def sparsemax(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Keras 3's sparsemax, differentiated the way TensorFlow differentiates it: ``tau`` is
    ``(sum over the support of the cumulative sums of the sorted x - 1) / k`` with the support
    and ``k`` constant, and ``max(x - tau, 0)`` passes the gradient where ``x - tau >= 0``."""
    order = np.argsort(-x, axis=-1, kind="stable")  # descending; ties keep the lower index first
    z = np.take_along_axis(x, order, axis=-1)
    cumsum = np.cumsum(z, axis=-1)
    k = np.arange(1, x.shape[-1] + 1, dtype=x.dtype)
    support = z - (cumsum - 1) / k > 0
    k_support = np.sum(support, axis=-1, keepdims=True).astype(x.dtype)
    tau = (np.sum(np.where(support, cumsum, 0), axis=-1, keepdims=True) - 1) / k_support
    passed = _where(x - tau >= 0, dy, x)
    d_tau = -np.sum(passed, axis=-1, keepdims=True) / k_support
    # d tau / d z_m: each supported position j >= m holds z_m in its cumulative sum.
    count = np.flip(np.cumsum(np.flip(support, axis=-1), axis=-1), axis=-1).astype(x.dtype)
    d_sorted = d_tau * count
    dx = passed.copy()
    np.put_along_axis(dx, order, np.take_along_axis(dx, order, axis=-1) + d_sorted, axis=-1)
    return dx


_VJPS: dict[act.Activation, VJP] = {
    act.linear: linear,
    act.tanh: tanh,
    act.sigmoid: sigmoid,
    act.hard_sigmoid_keras2: hard_sigmoid_keras2,
    act.hard_sigmoid_keras3: hard_sigmoid_keras3,
    act.hard_silu_keras3: hard_silu_keras3,
    act.relu: relu,
    act.relu6: relu6,
    act.leaky_relu: leaky_relu,
    act.elu: elu,
    act.selu: selu,
    act.celu: celu,
    act.softplus: softplus,
    act.softsign: softsign,
    act.silu: silu,
    act.gelu: _gelu_erfc,
    act.gelu_erf_form: _gelu_erf,
    act.exponential: exponential,
    act.mish: mish,
    act.softmax: softmax,
    act.log_softmax: log_softmax,
    act.log_sigmoid: log_sigmoid,
    act.hard_tanh: hard_tanh,
    act.hard_shrink: hard_shrink,
    act.soft_shrink: soft_shrink,
    act.tanh_shrink: tanh_shrink,
    act.sparse_plus: sparse_plus,
    act.sparse_sigmoid: sparse_sigmoid,
    act.squareplus: squareplus,
    act.sparsemax: sparsemax,
}


def vjp_for(function: act.Activation, name: str, argument: str = "activation") -> VJP:
    """The vector-Jacobian product of an activation the twins compute. Raises
    ``NotImplementedError`` naming ``argument`` and ``name`` for a function without a known
    derivative (a custom NumPy callable)."""
    try:
        return _VJPS[function]
    except (KeyError, TypeError):
        known = ", ".join(sorted(set(act.KERAS2_ACTIVATIONS) | set(act.KERAS3_ACTIVATIONS)))
        raise NotImplementedError(
            f"{argument}={name!r} is a custom function whose derivative rnnparity does not know; gradients "
            f"support the named Keras activations ({known})"
        ) from None
