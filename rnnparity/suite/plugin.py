"""pytest plugin for users' own suites (registered as ``rnnparity`` through ``pytest11``).

Fixtures:

* ``rnnparity_twin(keras_layer)`` -> the NumPy twin (``rnnparity.from_keras``).
* ``assert_parity(keras_out, twin_out)`` -> raises with both values and the errors unless
  they match within the per-dtype tolerances (same helper as rnnparity's own suite).
* ``check_parity(keras_layer, inputs, **call_kwargs)`` -> builds the twin, calls both with
  the same arguments, asserts parity and returns the comparison. An unbuilt layer is built
  on ``inputs``; a whole model has each recurrent layer checked (``rnnparity verify``'s run).
* ``assert_no_drift(model_path, to="keras3")`` -> fails, naming the recurrent layers and the
  known differences, when the saved model would compute other numbers under that Keras.

The report header names the NumPy, TensorFlow and Keras versions. Loading the plugin
imports neither TensorFlow nor Keras.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from rnnparity.compare import Comparison
from rnnparity.compare import assert_parity as _assert_parity
from rnnparity.suite.report import package_version, tensorflow_version


def pytest_report_header(config: pytest.Config) -> str:
    return (
        f"rnnparity {package_version('rnnparity')}: numpy {np.__version__}, tensorflow {tensorflow_version()}, "
        f"keras {package_version('keras')}, tf-keras {package_version('tf-keras')}"
    )


def _is_model(obj: Any) -> bool:
    """A whole Keras model (Sequential, functional or subclassed), not a single layer."""
    return hasattr(obj, "layers") and callable(getattr(obj, "predict", None))


@pytest.fixture
def rnnparity_twin() -> Callable[[Any], Any]:
    """Factory: ``rnnparity_twin(keras_layer)`` returns its NumPy twin."""
    from rnnparity import from_keras

    def twin(layer: Any) -> Any:
        if _is_model(layer):
            raise TypeError(
                f"rnnparity_twin takes one recurrent layer; got the whole model {getattr(layer, 'name', layer)!r}. "
                "check_parity(model, inputs) checks every recurrent layer of a model (as `rnnparity verify` does)"
            )
        return from_keras(layer)

    return twin


@pytest.fixture
def assert_parity() -> Callable[..., Comparison]:
    """``assert_parity(keras_out, twin_out, *, rtol=None, atol=None, context="")``."""
    return _assert_parity


def _check_model(model: Any, inputs: Any, **given: Any) -> Comparison:
    """Every recurrent layer of ``model`` against its twin, on ``inputs`` (one array, or a
    list with one array per model input), through :func:`rnnparity.files.verify.run_model`."""
    from rnnparity.files import verify
    from rnnparity.suite.keras_adapter import keras_version_of, load_keras

    extra = sorted(name for name, value in given.items() if value is not None)
    if extra:
        raise TypeError(
            f"check_parity(model, inputs) takes no {', '.join(extra)}: a model's recurrent layers are checked with what "
            "the model passes them and the per-dtype tolerances"
        )
    handle = load_keras("keras3" if keras_version_of(model) == 3 else "tf-keras")
    arrays = [np.asarray(x) for x in inputs] if isinstance(inputs, (list, tuple)) else [np.asarray(inputs)]
    rows, _, _ = verify.run_model(handle, model, arrays)
    checked = [row for row in rows if row.status in ("ok", "MISMATCH")]
    lines = [
        f"{row.name} ({row.type}): {row.status}"
        + (f", max abs err {row.max_abs:.3g}" if row.max_abs is not None else "")
        + (f": {row.detail}" if row.detail else "")
        for row in rows
    ]
    message = f"[{getattr(model, 'name', 'model')}] " + "; ".join(lines)
    if not checked:
        raise AssertionError(f"{message or 'the model'}: no recurrent layer with a twin was called, nothing was checked")
    ok = all(row.status == "ok" for row in checked)
    if not ok:
        raise AssertionError(message)
    return Comparison(
        ok,
        max(row.max_abs or 0.0 for row in checked),
        max(row.max_rel or 0.0 for row in checked),
        message,
        max(row.tolerance_used or 0.0 for row in checked),
    )


@pytest.fixture
def check_parity() -> Callable[..., Comparison]:
    """``check_parity(keras_layer, inputs, initial_state=None, mask=None)``: twin vs Keras.

    An unbuilt layer is built by calling it on ``inputs`` first. A whole model
    (``check_parity(model, inputs)``) checks each of its recurrent layers with the inputs the
    model passes it, as ``rnnparity verify`` does."""
    from rnnparity import from_keras
    from rnnparity.suite.keras_adapter import call_layer, keras_version_of, load_keras

    def check(layer: Any, inputs: Any, initial_state: Any = None, mask: Any = None, **tolerances: Any) -> Comparison:
        if _is_model(layer):
            return _check_model(layer, inputs, initial_state=initial_state, mask=mask, **tolerances)
        handle = load_keras("keras3" if keras_version_of(layer) == 3 else "tf-keras")
        state = None if initial_state is None else [np.asarray(s) for s in initial_state]
        given_mask = None if mask is None else np.asarray(mask)
        if not getattr(layer, "built", True):
            layer.build(tuple(np.shape(inputs)))  # its weights, from the inputs' shape (not a call: no state moves)
        twin = from_keras(layer)
        keras_out = call_layer(handle, layer, np.asarray(inputs), state, given_mask)
        twin_out = twin(inputs, initial_state=state, mask=mask)
        return _assert_parity(keras_out, twin_out, context=getattr(layer, "name", ""), **tolerances)

    return check


def no_drift(path: str, to: str = "keras3", inputs: Any = None, **options: Any) -> Any:
    """Fail the test when the saved model ``path`` would compute other numbers under the Keras
    ``to`` (``"keras3"`` or ``"tf-keras"``), naming the layers that drift and the known
    differences that cause it; returns the drift report otherwise. ``options`` as
    :func:`rnnparity.files.drift.drift` (``actual=False`` skips running the target Keras)."""
    from rnnparity.files.drift import drift

    report = drift(path, to=to, inputs=inputs, **options)
    if report.drifts:
        lines = [report.verdict]
        for layer in report.layers:
            if layer.status in ("drifts", "breaks"):
                change = "" if layer.max_abs is None else f"max abs change {layer.max_abs:.3g}; "
                lines.append(f"  layer {layer.name} ({layer.type}): {change}{', '.join(layer.causes) or layer.detail}")
        for output in report.outputs:
            if output.changed or output.agrees is False:
                lines.append(f"  output {output.name}: max abs change {output.max_abs:.3g} {output.agreement}".rstrip())
        lines.append(f"  (rnnparity drift {path} --to {to} shows the full report)")
        pytest.fail("\n".join(lines), pytrace=False)
    return report


@pytest.fixture
def assert_no_drift() -> Callable[..., Any]:
    """``assert_no_drift(path, to="keras3", inputs=None, **options)``: fails with the layers
    that would drift under the other Keras (see :func:`no_drift`)."""
    return no_drift
