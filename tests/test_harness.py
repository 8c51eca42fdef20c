"""The harness can fail: the fuzz, the comparison and the session guard catch what they claim to.

Each test breaks the twin (monkeypatched, seeded) or the environment the way a real bug or a
misconfigured CI would, and requires the very code the suite uses to report it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import FLAVOR_MAJOR, flavor_params, keras_handle
from strategies import CellSpec, CompositionCase
from test_fuzz import check_composition_case, check_layer_case

import rnnparity
from rnnparity.compare import DEFAULT_TOLERANCES, assert_parity, compare, tolerances
from rnnparity.gru import GRUCell
from rnnparity.lstm import LSTMCell
from rnnparity.suite import parity
from rnnparity.suite.known_differences import KnownKerasFailure
from rnnparity.suite.matrix import Case

ROOT = Path(__file__).resolve().parent.parent
FLAVORS = [p for flavor in FLAVOR_MAJOR for p in flavor_params(flavor, [(flavor,)], ids=[flavor])]


# --------------------------------------------------------------------------- float32-only twin bugs
def _lstm_scaled_in_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    """An LSTM whose float32 step scales h and c by 1.001 (float64 untouched)."""
    original = LSTMCell.recurrent_step

    def step(self: LSTMCell, x_proj: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        h, (_, c) = original(self, x_proj, states)
        if h.dtype == np.float32:
            h, c = h * np.float32(1.001), c * np.float32(1.001)
        return h, [h, c]

    monkeypatch.setattr(LSTMCell, "recurrent_step", step)


def _gru_recurrent_kernel_in_float16(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GRU whose float32 path keeps its recurrent kernel in float16 precision (a
    mixed-precision port); float64 untouched."""
    original = GRUCell._prepare

    def prepare(self: GRUCell) -> None:
        original(self)
        if self.dtype == np.float32 and self.recurrent_gates is not None:
            self.recurrent_gates = self.recurrent_gates.astype(np.float16).astype(np.float32)

    monkeypatch.setattr(GRUCell, "_prepare", prepare)


FLOAT32_BUGS = {
    "lstm-h-c-times-1.001": ("lstm", _lstm_scaled_in_float32),
    "gru-float16-kernel": ("gru", _gru_recurrent_kernel_in_float16),
}


def _float32_cases(kind: str, keras_version: int) -> list[Case]:
    """A matrix-sized case and one beyond the matrix's ranges (units, timesteps, batch)."""
    common = {"return_sequences": True, "return_state": True, "dtype": "float32", "input_scale": 1.5}
    return [
        Case(kind, keras_version, units=4, input_dim=3, timesteps=5, batch=3, seed=101, **common),
        Case(kind, keras_version, units=19, input_dim=6, timesteps=17, batch=7, mask="right_padded", seed=102, **common),
    ]


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("bug", sorted(FLOAT32_BUGS))
def test_a_float32_only_twin_bug_fails_the_fuzz(flavor: str, bug: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fuzz's decision must not trust the twin's float32 path: with a bug there alone,
    every float32 case fails rather than being called undecidable and replayed in float64."""
    kind, install = FLOAT32_BUGS[bug]
    cases = _float32_cases(kind, FLAVOR_MAJOR[flavor])
    for case in cases:  # the correct twin passes these very cases
        check_layer_case(flavor, case)
    install(monkeypatch)
    for case in cases:
        assert parity.run_case(replace(case, dtype="float64"), keras_handle(flavor)).ok  # float64 cannot see it
        with pytest.raises(AssertionError, match="more than rounding"):
            check_layer_case(flavor, case)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_float32_only_twin_bug_fails_the_composition_fuzz(flavor: str, monkeypatch: pytest.MonkeyPatch) -> None:
    lstm = CellSpec("lstm", True, 5, "tanh", "sigmoid", True)
    case = CompositionCase(
        "bidirectional",
        FLAVOR_MAJOR[flavor],
        (lstm,),
        False,
        "concat",
        3,
        12,
        4,
        True,
        True,
        "none",
        True,
        False,
        "float32",
        1.5,
        31,
    )
    check_composition_case(flavor, case)
    _lstm_scaled_in_float32(monkeypatch)
    with pytest.raises(AssertionError, match="more than rounding"):
        check_composition_case(flavor, case)


def test_rounding_explains_is_judged_from_float64_keras() -> None:
    rng = np.random.default_rng(5)
    keras64 = rng.uniform(-1, 1, (3, 4))
    keras32 = keras64.astype(np.float32)  # Keras's own float32: within one rounding
    close = (keras64 * (1 + 2e-5)).astype(np.float32)  # 2x the tolerance: rounding can explain it
    far = (keras64 * 1.001).astype(np.float32)  # 100x
    assert parity.rounding_explains(keras32, close, keras64)[0]
    explained, message = parity.rounding_explains(keras32, far, keras64)
    assert not explained and "more than rounding" in message
    # Where Keras's own float32 is far from float64 too (an ill-conditioned case), more is allowed.
    assert parity.rounding_explains((keras64 * 1.0005).astype(np.float32), far, keras64)[0]


# --------------------------------------------------------------------------- dtypes
def test_compare_fails_on_another_dtype() -> None:
    keras = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    result = compare(keras, keras.astype(np.float64))
    assert not result.ok
    assert result.message == "[output] dtype differs: keras float32, twin float64"
    with pytest.raises(AssertionError, match=r"\[ctx h\] dtype differs: keras float32, twin float16"):
        assert_parity((keras, keras), (keras, keras.astype(np.float16)), context="ctx")
    assert compare(keras, keras.astype(np.float64), check_dtype=False).ok  # values alone, when asked


_A = np.array([[0.5, -0.25, 1e-7]], dtype=np.float64)
ASSERT_PARITY_ARGUMENTS = {
    # name: (keras, twin, keyword arguments that make the pair pass; without them it fails)
    "rtol": (_A, _A * (1 + 1e-6), {"rtol": 1e-5}),
    "atol": (_A, _A + 1e-9, {"atol": 1e-8}),
    "dtype": (_A, _A * (1 + 1e-7), {"dtype": "float32"}),
    "check_container": ((_A, _A), [_A, _A], {"check_container": False}),
    "check_dtype": (_A, _A.astype(np.float32), {"check_dtype": False, "dtype": "float32"}),
}


@pytest.mark.parametrize("name", sorted(ASSERT_PARITY_ARGUMENTS))
def test_assert_parity_passes_every_argument_to_compare(name: str) -> None:
    keras, twin, passing = ASSERT_PARITY_ARGUMENTS[name]
    with pytest.raises(AssertionError) as raised:
        assert_parity(keras, twin)
    assert str(raised.value) == compare(keras, twin).message  # no context: the message as compare gives it
    assert_parity(keras, twin, **passing)
    with pytest.raises(AssertionError, match=r"^\[case 7 z\] MISMATCH"):
        assert_parity((_A, _A), (_A, 2 * _A), context="case 7", names=["y", "z"])


def test_compare_messages_name_what_differs() -> None:
    x = np.array([0.25, -0.5])
    structure = "structure differs: keras returns tuple of 2, twin list of 2"
    assert compare((x, x), [x, x]).message == structure
    assert compare((x, x), [x, x], context="case 3").message == f"[case 3] {structure}"
    assert compare((x, x), [x, x], check_container=False).ok
    names = sorted(DEFAULT_TOLERANCES)
    with pytest.raises(ValueError, match=re.escape(f"no default tolerance for dtype 'float16'; expected one of {names}")):
        tolerances("float16")
    default_rtol, default_atol = DEFAULT_TOLERANCES["float32"]
    assert tolerances("float32", rtol=0.5) == (0.5, default_atol)
    assert tolerances("float32", atol=0.5) == (default_rtol, 0.5)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_twin_returning_another_dtype_fails_the_parity_case(flavor: str) -> None:
    case = Case("gru", FLAVOR_MAJOR[flavor], units=3, input_dim=2, timesteps=4, batch=2, return_state=True, seed=7)
    assert parity.run_case(case, keras_handle(flavor)).ok
    result = parity.run_case(case, keras_handle(flavor), twin_overrides={"dtype": "float64"})
    assert not result.ok
    assert "dtype differs: keras float32, twin float64" in result.message


# --------------------------------------------------------------------------- known Keras failures
@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_twin_error_is_not_taken_for_a_known_keras_failure(flavor: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only Keras's call sits inside the 'Keras must still fail' check: a twin raising an error
    that matches the entry's pattern must not pass for Keras failing."""
    import test_parity

    case = Case("lstm", FLAVOR_MAJOR[flavor], units=3, input_dim=2, timesteps=4, batch=2, seed=9)
    fake = KnownKerasFailure("fake", "this case", "none", "a test", lambda config, env: True, "simulated carry error")
    monkeypatch.setattr(test_parity, "expected_keras_failure", lambda config, env: fake)

    def broken_call(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("simulated carry error")

    monkeypatch.setattr(rnnparity.LSTM, "__call__", broken_call)
    with pytest.raises(pytest.fail.Exception, match="known Keras failure fake no longer happens"):
        test_parity.test_twin_matches_keras(flavor, case)


def test_the_twin_is_still_checked_where_keras_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    case = Case("lstm", 3, units=3, input_dim=2, timesteps=4, batch=2, return_state=True, seed=9)
    assert parity.twin_self_check(case).ok
    assert parity.twin_self_check(replace(case, dtype="float64")).ok
    _lstm_scaled_in_float32(monkeypatch)
    assert not parity.twin_self_check(case).ok
    assert not parity.twin_self_check(replace(case, dtype="float64")).ok


# --------------------------------------------------------------------------- the session guard
def _pytest(tmp_path: Path, *args: str, **environment: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **environment}
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:randomly", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_an_unknown_keras_selection_is_a_usage_error(tmp_path: Path) -> None:
    run = _pytest(tmp_path, "tests/test_layout.py", RNNPARITY_KERAS="keras-3")
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.stdout + run.stderr
    assert "RNNPARITY_KERAS must be one of all, keras3, tf-keras; got 'keras-3'" in run.stdout + run.stderr


def test_a_session_whose_parity_cases_all_skip_fails(tmp_path: Path) -> None:
    """Whatever makes them skip (here a plugin skipping every case marked keras), a selected,
    installed Keras whose parity cases all skipped fails the session; the counts are written."""
    (tmp_path / "skip_keras.py").write_text(
        "import pytest\n\n\ndef pytest_runtest_setup(item):\n"
        "    if item.get_closest_marker('keras'):\n        pytest.skip('simulated missing Keras')\n"
    )
    counts = tmp_path / "counts.json"
    environment = {"PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}", "RNNPARITY_PARITY_COUNTS": str(counts)}
    run = _pytest(tmp_path, "-p", "skip_keras", "tests/test_negative.py", "-k", "swap", **environment)
    assert run.returncode == pytest.ExitCode.TESTS_FAILED, run.stdout + run.stderr
    assert "every parity case of" in run.stdout and "was skipped" in run.stdout
    written = json.loads(counts.read_text())
    assert all(written[f]["executed"] == 0 for f in FLAVOR_MAJOR)
    assert sum(written[f]["skipped"] for f in FLAVOR_MAJOR) > 0


# --------------------------------------------------------------------------- the JAX float64 widening
JAX_PROBE = """
from dataclasses import replace
from rnnparity.compare import compare
from rnnparity.suite import keras_adapter, parity
from rnnparity.suite.known_differences import tolerance_for
from rnnparity.suite.matrix import Case

handle = keras_adapter.load_keras("keras3")
assert handle.backend == "jax", handle.describe()
base = Case("lstm", 3, units=6, input_dim=4, timesteps=8, batch=3, return_sequences=True, return_state=True,
            dtype="float64", input_scale=1.5, seed=5)
for case, widened in ((base, True), (replace(base, activation="softsign"), False),
                      (replace(base, kind="gru", activation="relu", recurrent_activation="hard_sigmoid"), False)):
    assert (tolerance_for("float64", "jax", case.to_dict()) != (None, None)) == widened, case
    result = parity.run_case(case, handle)  # at the tolerance tolerance_for gives
    assert result.ok, result.message
    exact = compare(result.keras_outputs, result.twin_outputs, dtype="float64")
    print(case.activation, widened, exact.ok, exact.tolerance_used)
    # Where the entry widens, XLA's float32-accurate tanh must still show at float64's tolerance.
    assert exact.ok != widened, f"{case.activation}: float64 parity at the float64 tolerance is {exact.ok}"
print("ok")
"""


def test_the_jax_float64_widening_is_needed_exactly_where_it_applies(tmp_path: Path) -> None:
    """xla-cpu-float64-tanh is data: on JAX (x64) a float64 step with tanh must still miss the
    float64 tolerance (or the widening is stale), and one without tanh must meet it (so the
    widening is not applied where it would hide a twin error)."""
    import importlib.util

    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed (the keras-jax tox env has it)")
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "KERAS_BACKEND": "jax", "JAX_ENABLE_X64": "1"}
    run = subprocess.run([sys.executable, "-c", JAX_PROBE], env=environment, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stdout + run.stderr[-3000:]


def test_compare_labels_items_as_keras_names_them_and_scores_a_structure_failure() -> None:
    """Messages name the failing item ``output``, ``h`` or ``c`` (Keras's order) by default;
    a structure failure scores infinite, so it can never pass for a close call."""
    x, y = np.array([0.25, -0.5]), np.array([0.25, 0.5])
    assert compare(x, y).message.startswith("[output] MISMATCH")
    assert compare((x, x), (y, x)).message.startswith("[output] MISMATCH")
    assert compare((x, x), (x, y)).message.startswith("[h] MISMATCH")
    assert compare((x, x, x), (x, x, y)).message.startswith("[c] MISMATCH")
    failed = compare((x, x), [x, x])
    assert (failed.ok, failed.max_abs, failed.max_rel, failed.tolerance_used) == (False, np.inf, np.inf, np.inf)
    empty = compare((), ())
    assert (empty.ok, empty.max_abs, empty.max_rel, empty.message) == (True, 0.0, 0.0, "match (nothing to compare)")
