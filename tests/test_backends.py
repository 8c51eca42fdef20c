"""Keras 3 backends other than the one this process runs: each in a subprocess with
``KERAS_BACKEND`` set (a process picks its backend once).

- ``rnnparity check --backend torch|numpy`` runs the matrix there (masked float32 cases
  included: they measure each backend's rule for the output at masked steps).
- The float64 leaks recorded in known_differences (``torch-float64-partly-float32``,
  ``numpy-float64-partly-float32``) and the known JAX failure (``jax-x64-simple-rnn-float64-tanh``)
  must keep happening: when Keras fixes one, these tests fail and the table entry is stale.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from backend_probe import STACKED_BARE_CASE
from conftest import flavor_available

from rnnparity.compare import DEFAULT_TOLERANCES

pytestmark = [
    pytest.mark.keras,
    pytest.mark.skipif(not flavor_available("keras3"), reason="backends are Keras 3's (pip install -e '.[test]')"),
]
PROBE = Path(__file__).with_name("backend_probe.py")
ROOT = PROBE.parent.parent


# What each Keras 3 backend imports beyond Keras itself (Keras's numpy backend needs SciPy).
NEEDS = {"torch": ("torch",), "jax": ("jax",), "numpy": ("numpy", "scipy")}


def _installed(backend: str) -> Any:
    missing = [name for name in NEEDS[backend] if importlib.util.find_spec(name) is None]
    hint = {"torch": ".[torch]", "jax": ".[jax]", "numpy": ".[jax] (which brings SciPy)"}[backend]
    return pytest.mark.skipif(bool(missing), reason=f"the {backend} backend needs {', '.join(missing)}: pip install -e '{hint}'")


def _environment(backend: str) -> dict[str, str]:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    if backend == "jax":
        env["JAX_ENABLE_X64"] = "1"
    return env


def _probe(backend: str, *mode: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(PROBE), *mode], env=_environment(backend), capture_output=True, text=True, check=False, timeout=600
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("PROBE ")), None)
    assert line is not None, f"the probe under {backend} printed no result: {done.stderr[-2000:]}"
    found: dict[str, Any] = json.loads(line[len("PROBE ") :])
    assert found["backend"] == backend
    return found


FLOAT64_ATOL = DEFAULT_TOLERANCES["float64"][1]
FLOAT32_ATOL = DEFAULT_TOLERANCES["float32"][1]


# Each probe configuration (tests/backend_probe.py) as the matrix describes a case, for tolerance_for.
PROBE_CASE_CONFIGS: dict[str, dict[str, Any]] = {
    "lstm": {"kind": "lstm"},
    "gru": {"kind": "gru", "reset_after": True},
    "gru_reset_before": {"kind": "gru", "reset_after": False},
    "simple_rnn": {"kind": "simple_rnn"},
    "simple_rnn_unrolled": {"kind": "simple_rnn"},
    "bidirectional_lstm": {"kind": "bidirectional", "layers": [{"kind": "lstm"}]},
    "rnn_lstm_cell": {"kind": "rnn", "layers": [{"kind": "lstm"}]},
}


def _probe_config(name: str) -> dict[str, Any]:
    base, _, masked = name.partition("-")
    return {**PROBE_CASE_CONFIGS[base], "dtype": "float64", "mask": "scattered" if masked else "none"}


def _assert_widened_exactly_where_keras_leaks(backend: str, found: dict[str, Any]) -> None:
    """tolerance_for compares a probe configuration at the float32 tolerances if and only if
    Keras on ``backend`` is still off by float32-level errors there; elsewhere Keras must be
    exact float64 (so the float64 tolerance is the right one, and a twin error would show)."""
    from rnnparity.suite.known_differences import tolerance_for

    probed = [name for name in found if name not in ("backend", "matmul_float64_gives")]
    assert {name.partition("-")[0] for name in probed} == set(PROBE_CASE_CONFIGS)
    for name in probed:
        widened = tolerance_for("float64", backend, _probe_config(name)) != (None, None)
        if widened:  # the Keras bug the widening stands for is still there, and no worse
            assert FLOAT64_ATOL * 1000 < found[name]["max_abs"] < FLOAT32_ATOL, (backend, name, found[name])
        else:
            assert found[name]["max_abs"] < FLOAT64_ATOL, (backend, name, found[name])


@_installed("torch")
def test_torch_float64_leak_persists_and_is_scoped() -> None:
    found = _probe("torch")
    assert found.pop("matmul_float64_gives") == "float32"  # the cause, keras.ops.matmul's result_type
    _assert_widened_exactly_where_keras_leaks("torch", found)
    # Keras's generic loop leaks (torch-float64-partly-float32); torch's own LSTM/GRU loop does not.
    leaking = ["gru_reset_before", "simple_rnn", "simple_rnn_unrolled", "lstm-masked", "gru-masked", "rnn_lstm_cell"]
    assert all(FLOAT64_ATOL * 1000 < found[name]["max_abs"] for name in [*leaking, "bidirectional_lstm-masked"])
    assert all(found[name]["max_abs"] < FLOAT64_ATOL for name in ("lstm", "gru", "bidirectional_lstm"))


@_installed("numpy")
def test_numpy_float64_leak_persists() -> None:
    found = _probe("numpy")
    assert found.pop("matmul_float64_gives") == "float32"  # the cause, keras.ops.matmul's result_type
    _assert_widened_exactly_where_keras_leaks("numpy", found)
    assert all(found[name]["max_abs"] > FLOAT64_ATOL * 1000 for name in found if name != "backend")
    # LSTM and SimpleRNN come back holding float32 values only.
    assert found["lstm"]["float32_values_only"] and found["simple_rnn"]["float32_values_only"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend", [pytest.param("torch", marks=_installed("torch")), pytest.param("numpy", marks=_installed("numpy"))]
)
def test_quick_float64_cases_at_the_float64_tolerance(backend: str) -> None:
    """Every float64 case of the quick matrix (layers and wrappers) on ``backend``, compared at
    the float64 tolerance: where tolerance_for does not widen, parity must hold there; where it
    widens, Keras must still miss it in most cases (a few agree exactly: a last output a masked step fixes)."""
    found = _probe(backend, "quick-float64")
    cases = {name: result for name, result in found.items() if name != "backend"}
    assert len(cases) > 50
    missing = [name for name, result in cases.items() if not result["widened"] and not result["ok"]]
    assert not missing, [(name, cases[name]) for name in missing]
    widened = [result for result in cases.values() if result["widened"]]
    assert sum(not result["ok"] for result in widened) >= 0.9 * len(widened), widened


@_installed("numpy")
def test_numpy_stacked_bare_state_repeats_batch_row_0() -> None:
    """keras3-scan-stacked-bare-state is data: on NumPy, a masked stack given its last cell's state
    as a bare array still repeats batch row 0's carried h at every masked step (not the twin's
    answer), and gives the twin's answer when the same states come as one-item lists."""
    from rnnparity.suite import wrapper_matrix
    from rnnparity.suite.known_differences import expected_keras_difference

    found = _probe("numpy", "stacked-bare-state")
    assert not found["bare-vs-twin"]["ok"] and found["bare-vs-twin"]["max_abs"] > 0.1, found
    assert found["bare-vs-row_0"]["ok"], found
    assert found["listed-vs-twin"]["ok"] and not found["listed-vs-row_0"]["ok"], found
    # check reports the case as that known difference, not as a failure.
    report = found["check"]["output"]
    assert found["check"]["exit_code"] == 0 and "PARITY HOLDS: 0 passed, 0 failed" in report, report
    assert f"{STACKED_BARE_CASE} (keras3-scan-stacked-bare-state)" in report, report
    # The table scopes it to this environment and to the bare form.
    case = next(c for c in wrapper_matrix.wrapper_cases(3) if c.case_id == STACKED_BARE_CASE)
    numpy_env = {"keras_major": 3, "keras_backend": "numpy"}
    difference = expected_keras_difference(case.to_dict(), numpy_env)
    assert difference is not None and difference.id == "keras3-scan-stacked-bare-state"
    assert expected_keras_difference(case.to_dict(), {"keras_major": 3, "keras_backend": "tensorflow"}) is None
    assert expected_keras_difference({**case.to_dict(), "bare_states": False}, numpy_env) is None


@pytest.mark.slow
@_installed("jax")
def test_jax_float64_simple_rnn_without_unroll_still_raises() -> None:
    from rnnparity.suite.known_differences import KNOWN_KERAS_FAILURES

    failure = next(f for f in KNOWN_KERAS_FAILURES if f.id == "jax-x64-simple-rnn-float64-tanh")
    found = _probe("jax")
    assert "error" in found["simple_rnn"] and found["simple_rnn"]["error"].startswith("TypeError"), found["simple_rnn"]
    # The same layer with a mask or unroll=True runs (float32 values, xla-cpu-float64-tanh aside).
    assert "error" not in found["simple_rnn-masked"] and "error" not in found["simple_rnn_unrolled"]
    assert failure.error_pattern  # the table entry the test keeps honest


@pytest.mark.parametrize(
    "backend", [pytest.param("torch", marks=_installed("torch")), pytest.param("numpy", marks=_installed("numpy"))]
)
def test_check_runs_on_another_backend(backend: str, tmp_path: Path) -> None:
    # Eight SimpleRNN cases of the quick matrix under the other backend: float32 and float64, masks
    # with a non-zero initial state (where the backends' rules for masked steps differ).
    report = tmp_path / "report.json"
    selection = ["--quick", "--family", "layer", "-k", "simple_rnn-u5", "--json", str(report)]
    command = [sys.executable, "-m", "rnnparity", "check", "--backend", backend, *selection]
    env = _environment("tensorflow")
    env.pop("KERAS_BACKEND")
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert f"backend {backend})" in done.stdout and "PARITY HOLDS" in done.stdout
    cases = json.loads(report.read_text())["cases"]
    assert any(c["config"]["mask"] != "none" and c["config"]["initial_state"] for c in cases)


def test_check_backend_not_installed_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from rnnparity.cli import backends, main

    monkeypatch.setattr(backends.importlib.util, "find_spec", lambda name: None)
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    assert main(["check", "--backend", "torch"]) == 2
    err = capsys.readouterr().err
    assert err == "rnnparity check: --backend torch: the torch backend is not installed (no torch package)\n"


@pytest.mark.parametrize("cls_name", ["LSTM", "GRU", "SimpleRNN"])
def test_twins_masked_step_rule_per_backend(cls_name: str) -> None:
    """Before the first unmasked step, torch's loop repeats a zero output as TensorFlow's does,
    NumPy's the initial h as JAX's does (Keras 3.15, keras/src/backend/*/rnn.py; measured
    against Keras by test_check_runs_on_another_backend). The two rules must differ here."""
    import numpy as np

    import rnnparity
    from rnnparity.compare import assert_parity, compare
    from rnnparity.layout import weight_shapes

    rng = np.random.default_rng(11)
    inputs = rng.normal(0.0, 1.5, size=(2, 4, 3))
    mask = np.array([[False, False, True, True], [True, False, True, False]])
    kind = {"LSTM": "lstm", "GRU": "gru", "SimpleRNN": "simple_rnn"}[cls_name]
    weights = [rng.normal(0.0, 0.6, shape) for shape in weight_shapes(kind, 3, 3, True, True)]
    initial = [rng.normal(0.0, 1.0, (2, 3)) for _ in range(2 if cls_name == "LSTM" else 1)]
    results = {}
    for backend in ("tensorflow", "torch", "jax", "numpy"):
        twin = getattr(rnnparity, cls_name)(3, return_sequences=True, dtype="float64", backend=backend)
        twin.set_weights(weights)
        results[backend] = twin(inputs, initial_state=initial, mask=mask)
    assert_parity(results["tensorflow"], results["torch"], context=f"{cls_name} torch vs tensorflow")
    assert_parity(results["jax"], results["numpy"], context=f"{cls_name} numpy vs jax")
    assert not compare(results["tensorflow"], results["jax"]).ok  # the two rules differ at the early masked steps
