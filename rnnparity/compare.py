"""The one tolerance helper: compare a twin's result with Keras's, structure and values.

Both sides must have the same structure, shapes and dtypes (a twin that returns float64 for
a float32 layer is a mismatch, whatever its values). An element passes when
``|twin - keras| <= atol + rtol * |keras|``; equal infinities and
NaN-against-NaN count as equal (Keras propagates them and so must the twin). Defaults per
dtype: float32 ``atol=1e-6, rtol=1e-5``; float64 ``atol=1e-12, rtol=1e-10``. The absolute
floor also covers TensorFlow flushing subnormal values to zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_TOLERANCES: dict[str, tuple[float, float]] = {
    # dtype: (rtol, atol)
    "float32": (1e-5, 1e-6),
    "float64": (1e-10, 1e-12),
}


def tolerances(dtype: Any, rtol: float | None = None, atol: float | None = None) -> tuple[float, float]:
    """``(rtol, atol)`` for ``dtype``, with explicit values taking precedence."""
    name = np.dtype(dtype).name
    if name not in DEFAULT_TOLERANCES:
        raise ValueError(f"no default tolerance for dtype {name!r}; expected one of {sorted(DEFAULT_TOLERANCES)}")
    default_rtol, default_atol = DEFAULT_TOLERANCES[name]
    return (default_rtol if rtol is None else rtol, default_atol if atol is None else atol)


@dataclass
class Comparison:
    """Outcome of one comparison; ``message`` says everything needed to reproduce it."""

    ok: bool
    max_abs: float
    max_rel: float
    message: str
    tolerance_used: float = 0.0  # max of |twin - keras| / (atol + rtol * |keras|); <= 1 passes

    def __bool__(self) -> bool:
        return self.ok


def _structure(value: Any) -> tuple[str, list[Any]]:
    if isinstance(value, tuple):
        return "tuple", list(value)
    if isinstance(value, list):
        return "list", value
    return "array", [value]


def compare(
    keras: Any,
    twin: Any,
    *,
    dtype: Any = None,
    rtol: float | None = None,
    atol: float | None = None,
    context: str = "",
    check_container: bool = True,
    names: Sequence[str] | None = None,
    check_dtype: bool = True,
) -> Comparison:
    """Compare Keras's result with the twin's: container type, length, shapes, dtypes, then values.

    ``keras`` and ``twin`` are an array, or tuples/lists of arrays, nested as Keras nests
    them (``output, h[, c]``; per-cell state lists of a stack). ``dtype`` selects default
    tolerances (the Keras result's dtype when omitted). ``names`` labels the top-level items
    in messages (default ``output, h, c``). ``check_dtype=False`` compares values across
    dtypes (a float32 result with a float64 reference). The returned message describes the
    first failing array, or the closest one on success.
    """
    prefix = f"[{context}] " if context else ""
    _, k_items = _structure(keras)
    if names is None:
        names = ["output", "h", "c"] if len(k_items) > 1 else ["output"]
    pairs: list[tuple[str, Any, Any]] = []
    problem = _pair_leaves(keras, twin, "", list(names), check_container, pairs)
    if problem:
        return Comparison(False, np.inf, np.inf, f"{prefix}structure differs: {problem}", np.inf)
    results = []
    for name, k_value, t_value in pairs:
        result = compare_arrays(
            np.asarray(k_value),
            np.asarray(t_value),
            dtype=dtype,
            rtol=rtol,
            atol=atol,
            context=f"{context} {name}".strip(),
            check_dtype=check_dtype,
        )
        if not result.ok:
            return result
        results.append(result)
    if not results:
        return Comparison(True, 0.0, 0.0, f"{prefix}match (nothing to compare)")
    closest = max(results, key=lambda r: r.tolerance_used)
    return Comparison(
        True,
        max(r.max_abs for r in results),
        max(r.max_rel for r in results),
        closest.message,
        closest.tolerance_used,
    )


def _pair_leaves(
    keras: Any, twin: Any, path: str, names: list[str], check_container: bool, pairs: list[tuple[str, Any, Any]]
) -> str:
    """Collect ``(name, keras_leaf, twin_leaf)``; return a description of the first structural
    difference, or an empty string."""
    k_kind, k_items = _structure(keras)
    t_kind, t_items = _structure(twin)
    where = f" at {path}" if path else ""
    if (check_container and k_kind != t_kind) or len(k_items) != len(t_items) or (k_kind == "array") != (t_kind == "array"):
        return f"keras returns {k_kind} of {len(k_items)}{where}, twin {t_kind} of {len(t_items)}"
    if k_kind == "array":
        pairs.append((path or (names[0] if names else "output"), keras, twin))
        return ""
    for index, (k_item, t_item) in enumerate(zip(k_items, t_items)):
        if path:
            name = f"{path}[{index}]"
        else:
            name = names[index] if index < len(names) else f"item {index}"
        problem = _pair_leaves(k_item, t_item, name, names, check_container, pairs)
        if problem:
            return problem
    return ""


def compare_arrays(
    keras: np.ndarray,
    twin: np.ndarray,
    *,
    dtype: Any = None,
    rtol: float | None = None,
    atol: float | None = None,
    context: str = "",
    check_dtype: bool = True,
) -> Comparison:
    """Compare two arrays element by element (see the module docstring for the rule); with
    ``check_dtype`` (the default) their dtypes must be equal too."""
    prefix = f"[{context}] " if context else ""
    if keras.shape != twin.shape:
        return Comparison(False, np.inf, np.inf, f"{prefix}shape differs: keras {keras.shape}, twin {twin.shape}", np.inf)
    if check_dtype and keras.dtype != twin.dtype:
        return Comparison(
            False, np.inf, np.inf, f"{prefix}dtype differs: keras {keras.dtype.name}, twin {twin.dtype.name}", np.inf
        )
    rtol_, atol_ = tolerances(dtype if dtype is not None else keras.dtype, rtol, atol)
    if keras.size == 0:
        return Comparison(True, 0.0, 0.0, f"{prefix}match (empty)")
    k = keras.astype(np.float64)
    t = twin.astype(np.float64)
    special = (np.isnan(k) & np.isnan(t)) | (np.isinf(k) & (k == t))
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        diff = np.where(special, 0.0, np.abs(t - k))
        diff = np.where(np.isnan(diff), np.inf, diff)
        rel = np.where(special | (diff == 0), 0.0, diff / np.abs(k))
        rel = np.where(np.isnan(rel), np.inf, rel)
        allowed = atol_ + rtol_ * np.where(np.isfinite(k), np.abs(k), 0.0)
        ratio = np.where(diff == 0, 0.0, diff / allowed)  # exact equality passes even at zero tolerance
    max_abs = float(np.max(diff))
    max_rel = float(np.max(rel))
    worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    used = float(ratio[worst])
    ok = used <= 1.0
    verdict = "match" if ok else "MISMATCH"
    message = (
        f"{prefix}{verdict}: max abs err {max_abs:.3g}, max rel err {max_rel:.3g}, "
        f"{used:.3g}x the tolerance (rtol={rtol_:g}, atol={atol_:g}); worst element "
        f"{tuple(int(i) for i in worst)}: keras={float(k[worst])!r}, twin={float(t[worst])!r}"
    )
    return Comparison(ok, max_abs, max_rel, message, used)


def assert_parity(
    keras: Any,
    twin: Any,
    *,
    dtype: Any = None,
    rtol: float | None = None,
    atol: float | None = None,
    context: str = "",
    check_container: bool = True,
    names: Sequence[str] | None = None,
    check_dtype: bool = True,
) -> Comparison:
    """Raise ``AssertionError`` with the full message unless ``twin`` matches ``keras``.

    ``check_container=False`` compares a tuple with a list of the same arrays;
    ``check_dtype=False`` compares values across dtypes."""
    result = compare(
        keras,
        twin,
        dtype=dtype,
        rtol=rtol,
        atol=atol,
        context=context,
        check_container=check_container,
        names=names,
        check_dtype=check_dtype,
    )
    if not result.ok:
        raise AssertionError(result.message)
    return result
