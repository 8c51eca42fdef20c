"""Shared fixtures: which Keras flavours are installed, cached handles, the report header,
the Hypothesis profiles, and a guard that no test leaks global NumPy/Keras state."""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import json
import os
import platform
import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import settings

from rnnparity.suite import keras_adapter

# Hypothesis profiles. "rnnparity-quick" (the default run): few examples per property,
# derandomized (the same examples every run, on every machine), no example database, and a
# reproducer blob printed on failure. "rnnparity-fuzz" (nightly): random examples, many of
# them (RNNPARITY_FUZZ_EXAMPLES, default 10,000). Select with --hypothesis-profile=NAME or
# RNNPARITY_HYPOTHESIS_PROFILE=NAME. The Keras fuzz tests marked ``fuzz`` take their example
# count from RNNPARITY_FUZZ_EXAMPLES whatever the profile (see tests/test_fuzz.py).
FUZZ_EXAMPLES = int(os.environ.get("RNNPARITY_FUZZ_EXAMPLES", "10000"))
settings.register_profile("rnnparity-quick", max_examples=40, derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("rnnparity-fuzz", max_examples=FUZZ_EXAMPLES, derandomize=False, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("RNNPARITY_HYPOTHESIS_PROFILE", "rnnparity-quick"))

FLAVOR_MAJOR = {"keras3": 3, "tf-keras": 2}
# RNNPARITY_KERAS values: one flavour, or every installed one. Anything else is a usage error
# (a typo such as "keras-3" would otherwise skip every parity case and still exit 0).
KERAS_SELECTIONS = ("all", *FLAVOR_MAJOR)
# Where the session writes how many parity cases (tests marked ``keras``) it executed per
# flavour, as JSON; .ci/run requires a minimum per flavour.
COUNTS_FILE_VARIABLE = "RNNPARITY_PARITY_COUNTS"


def keras_selection() -> str:
    selected = os.environ.get("RNNPARITY_KERAS", "all")
    if selected not in KERAS_SELECTIONS:
        raise pytest.UsageError(f"RNNPARITY_KERAS must be one of {', '.join(KERAS_SELECTIONS)}; got {selected!r}")
    return selected


def flavor_marker(flavor: str) -> str:
    """The keyword that tags a parity case of ``flavor`` (counted per flavour at the end)."""
    return "keras_" + flavor.replace("-", "_")


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def flavor_available(flavor: str) -> bool:
    """Whether a Keras flavour is installed (and selected), decided without importing TensorFlow.

    ``RNNPARITY_KERAS=keras3`` or ``=tf-keras`` restricts the suite to one flavour (the tox
    version matrix uses it); unset or ``all`` runs every installed flavour."""
    selected = keras_selection()
    if selected not in ("all", flavor):
        return False
    keras_version = _dist_version("keras")
    if flavor == "keras3":
        return keras_version is not None and keras_version.startswith("3.")
    has_tf_keras = importlib.util.find_spec("tf_keras") is not None
    return has_tf_keras or (keras_version is not None and keras_version.startswith("2."))


def flavor_params(flavor: str, values: list[tuple], ids: list[str] | None = None) -> list:
    """Argument tuples as pytest params, skipped with a reason when ``flavor`` is not installed."""
    marks = [pytest.mark.keras, getattr(pytest.mark, flavor_marker(flavor))]
    if not flavor_available(flavor):
        marks.append(
            pytest.mark.skip(reason=f"{flavor} is not installed or not selected (pip install -e '.[test]'; RNNPARITY_KERAS)")
        )
    return [pytest.param(*v, marks=marks, id=ids[i] if ids else None) for i, v in enumerate(values)]


@functools.cache
def keras_handle(flavor: str) -> keras_adapter.KerasHandle:
    return keras_adapter.load_keras(flavor)


def assert_keras_still_fails(failure: Any, handle: keras_adapter.KerasHandle, call: Callable[[], Any], context: str = "") -> None:
    """A known Keras failure (a known_differences entry) is data: ``call()`` must still raise,
    with the error the entry names, or the entry is stale and the test fails."""
    try:
        call()
    except Exception as exc:
        assert failure.matches_error(exc), f"{failure.id}: Keras failed differently: {exc}{context}"
        return
    pytest.fail(f"known Keras failure {failure.id} no longer happens ({handle.describe()}): update the table")


pytest_plugins = ["pytester"]


def pytest_configure(config: pytest.Config) -> None:
    keras_selection()  # an unknown RNNPARITY_KERAS stops the session before collection
    for flavor in FLAVOR_MAJOR:
        config.addinivalue_line("markers", f"{flavor_marker(flavor)}: a parity case against {flavor}")
    _COUNTS.clear()
    _COUNTS.update({flavor: {"executed": 0, "skipped": 0} for flavor in FLAVOR_MAJOR})


# Parity cases per flavour in this session (filled by pytest_runtest_logreport).
_COUNTS: dict[str, dict[str, int]] = {}


def _report_flavor(report: pytest.TestReport) -> str | None:
    return next((f for f in FLAVOR_MAJOR if flavor_marker(f) in report.keywords), None)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count parity cases per flavour: executed (the test body ran: passed or failed) or skipped.
    Under xdist this runs in the controller, on every worker's reports."""
    flavor = _report_flavor(report)
    if flavor is None:
        return
    counts = _COUNTS.get(flavor)
    if counts is None:
        return
    if report.when == "call" and not report.skipped:
        counts["executed"] += 1
    elif report.skipped:
        counts["skipped"] += 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No silent mass skip: a selected, installed Keras flavour whose parity cases were all
    skipped fails the session. Writes the per-flavour counts to $RNNPARITY_PARITY_COUNTS."""
    if hasattr(session.config, "workerinput"):
        return  # an xdist worker: the controller counts every worker's reports
    counts = {flavor: dict(c) for flavor, c in _COUNTS.items()}
    path = os.environ.get(COUNTS_FILE_VARIABLE)
    if path:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(counts, handle, indent=1, sort_keys=True)
    silent = [f for f, c in counts.items() if flavor_available(f) and c["skipped"] and not c["executed"]]
    if silent:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = (
            f"every parity case of {', '.join(silent)} was skipped although it is installed and selected "
            f"(RNNPARITY_KERAS={os.environ.get('RNNPARITY_KERAS', 'all')}): counts {counts}"
        )
        if reporter is not None:
            reporter.write_line(f"rnnparity: {message}", red=True)
        if session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_report_header(config: pytest.Config) -> list[str]:
    # The versions line comes from rnnparity's pytest plugin; this adds what the suite runs.
    used = [f for f in FLAVOR_MAJOR if flavor_available(f)]
    return [
        f"rnnparity suite: python {platform.python_version()}; parity against "
        f"{', '.join(used) if used else 'no Keras (parity cases skip)'}"
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``fuzz`` (the long Hypothesis profile) or ``slow`` (wider matrices) run
    only when asked for with ``-m fuzz`` / ``-m slow`` (or any -m expression naming them);
    otherwise they are deselected."""
    expression = config.getoption("markexpr") or ""
    for marker in ("fuzz", "slow"):
        if marker in expression:
            continue
        long_running = [item for item in items if item.get_closest_marker(marker)]
        if long_running:
            config.hook.pytest_deselected(items=long_running)
            items[:] = [item for item in items if not item.get_closest_marker(marker)]
    if os.environ.get("MUTANT_UNDER_TEST"):
        # Under mutation testing (mutmut sets the variable; its runs stop at the first
        # failure): the tests that need no Keras first, so that a mutant they kill dies
        # before a worker starts TensorFlow. The verdict is the same in any order.
        items.sort(key=lambda item: item.get_closest_marker("keras") is not None)


# Environment variables that select what the suite and Keras do; a test that changes one
# without restoring it would change every test after it in the same process.
_WATCHED_ENVIRONMENT = ("RNNPARITY_KERAS", "TF_USE_LEGACY_KERAS", "KERAS_BACKEND", "TF_ENABLE_ONEDNN_OPTS", "JAX_ENABLE_X64")


def _global_state() -> dict[str, object]:
    state: dict[str, object] = {"numpy error handling": np.geterr()}
    state.update({f"${name}": os.environ.get(name) for name in _WATCHED_ENVIRONMENT})
    # Only Kerases the test process has already imported (never import TensorFlow here).
    keras = sys.modules.get("keras")
    if keras is not None and str(getattr(keras, "__version__", "")).startswith("3."):
        state["keras floatx"] = keras.config.floatx()
        state["keras dtype policy"] = keras.config.dtype_policy().name
    tf_keras = sys.modules.get("tf_keras")
    if tf_keras is not None and hasattr(tf_keras, "mixed_precision"):
        state["tf_keras floatx"] = tf_keras.backend.floatx()
        state["tf_keras dtype policy"] = tf_keras.mixed_precision.global_policy().name
    return state


_KERAS_DEFAULTS = {
    "keras floatx": "float32",
    "keras dtype policy": "float32",
    "tf_keras floatx": "float32",
    "tf_keras dtype policy": "float32",
}


@pytest.fixture(autouse=True)
def _no_global_state_leaks() -> Iterator[None]:
    """Each test must leave NumPy's error handling, the selecting environment variables and
    Keras's global dtype settings as it found them (Keras's at their defaults), so results
    never depend on which tests ran before in the same process (-n, random order, reruns)."""
    before = _global_state()
    yield
    after = _global_state()
    changed = {
        key: (before.get(key, _KERAS_DEFAULTS.get(key)), value)
        for key, value in after.items()
        if value != before.get(key, _KERAS_DEFAULTS.get(key))
    }
    assert not changed, f"the test changed global state (before, after): {changed}"
