"""Argument checks shared by the cells, the layers and the gradients.

Each check returns the value in the form the twins use, or raises ``TypeError`` /
``ValueError`` naming the argument, what was expected and what was given.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

ArrayLike = Any

SUPPORTED_DTYPES = ("float32", "float64")

# Arguments that cannot change inference numbers once weights are set. They are accepted
# (so a Keras config can be passed through unchanged), kept for get_config, and ignored.
TRAINING_ONLY_ARGS: dict[str, Any] = {
    "kernel_initializer": "glorot_uniform",
    "recurrent_initializer": "orthogonal",
    "bias_initializer": "zeros",
    "kernel_regularizer": None,
    "recurrent_regularizer": None,
    "bias_regularizer": None,
    "activity_regularizer": None,
    "kernel_constraint": None,
    "recurrent_constraint": None,
    "bias_constraint": None,
    "dropout": 0.0,
    "recurrent_dropout": 0.0,
    "seed": None,
    "implementation": 2,
    "unroll": False,
    "use_cudnn": "auto",
    "name": None,
    "trainable": True,
    "input_shape": None,
    "batch_input_shape": None,
    "batch_size": None,
    "input_dim": None,
    "input_length": None,
    "enable_caching_device": None,
}


def check_bool(value: Any, argument: str) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{argument} must be True or False; got {type(value).__name__} {value!r}")


def check_units(units: Any) -> int:
    if isinstance(units, (bool, np.bool_)) or not isinstance(units, numbers.Integral):
        raise TypeError(f"units must be a positive integer; got {type(units).__name__} {units!r}")
    if units <= 0:
        raise ValueError(f"units must be a positive integer; got {units}")
    return int(units)


def check_dtype(dtype: Any) -> np.dtype:
    """``dtype`` (a name, a NumPy dtype, a Keras ``DTypePolicy`` or its config) as a NumPy dtype."""
    name = dtype
    if isinstance(dtype, dict):  # a Keras 3 serialized DTypePolicy
        name = dtype.get("config", {}).get("name", dtype)
    if hasattr(dtype, "name") and not isinstance(dtype, (str, np.dtype)):
        name = dtype.name  # a Keras DTypePolicy or tf.DType
    if isinstance(name, str) and name.startswith("mixed_"):
        raise ValueError(
            f"dtype={name!r} is a mixed-precision policy, which the NumPy twins do not emulate yet; "
            f"expected one of {SUPPORTED_DTYPES}"
        )
    try:
        resolved = np.dtype(name)
    except TypeError:
        raise TypeError(f"dtype must be one of {SUPPORTED_DTYPES}; got {dtype!r}") from None
    if resolved.name not in SUPPORTED_DTYPES:
        raise ValueError(f"dtype must be one of {SUPPORTED_DTYPES}; got {resolved.name!r}")
    return resolved


def check_keras_version(keras_version: Any) -> int:
    if keras_version in (2, 3) and not isinstance(keras_version, bool):
        return int(keras_version)
    raise ValueError(f"keras_version must be 2 (tf_keras / tf.keras <= 2.15) or 3 (keras 3); got {keras_version!r}")


def check_training_args(owner: str, extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` keyword arguments, refused unless they are :data:`TRAINING_ONLY_ARGS`."""
    unknown = sorted(set(extra) - set(TRAINING_ONLY_ARGS))
    if unknown:
        raise TypeError(
            f"{owner} got unexpected keyword argument(s) {unknown}; arguments that do not change "
            f"inference numbers are accepted from {sorted(TRAINING_ONLY_ARGS)}"
        )
    for key in ("dropout", "recurrent_dropout"):
        if key in extra:
            value = extra[key]
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0.0 <= float(value) <= 1.0):
                raise ValueError(f"{key} must be a finite number in [0, 1]; got {value!r}")
    return extra


def as_float_array(value: ArrayLike, dtype: np.dtype, argument: str) -> np.ndarray:
    """A C-contiguous copy of ``value`` in ``dtype``; refuses non-numeric data clearly."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{argument} must be a numeric array; got {type(value).__name__}")
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"{argument} must be a numeric array; could not convert it: {exc}") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{argument} must hold real numbers; got dtype {array.dtype}")
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf, as Keras casts it
        return np.array(array, dtype=dtype, order="C", copy=True)


def as_float_array_or_self(value: ArrayLike, dtype: np.dtype, argument: str) -> np.ndarray:
    """``value`` itself when it is an ndarray of ``dtype``, else :func:`as_float_array`."""
    if isinstance(value, np.ndarray) and value.dtype == dtype:
        return value
    return as_float_array(value, dtype, argument)


def cast_nested(value: Any, dtype: np.dtype, argument: str = "initial_state") -> Any:
    """Nested lists of arrays (Keras's state structures) cast to ``dtype``, as lists."""
    if isinstance(value, (list, tuple)):
        return [cast_nested(item, dtype, argument) for item in value]
    return as_float_array(value, dtype, argument)


def flatten_nested(value: Any) -> list[Any]:
    """The leaves of nested lists/tuples, in order (Keras's nested state structures)."""
    if isinstance(value, (list, tuple)):
        return [leaf for item in value for leaf in flatten_nested(item)]
    return [value]
