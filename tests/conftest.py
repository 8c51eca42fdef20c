"""Shared fixtures: which Keras flavours are installed, cached handles, the report header."""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import platform

import pytest

from rnnparity import keras_adapter

FLAVOR_MAJOR = {"keras3": 3, "tf-keras": 2}


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def flavor_available(flavor: str) -> bool:
    """Whether a Keras flavour is installed (and selected), decided without importing TensorFlow.

    ``RNNPARITY_KERAS=keras3`` or ``=tf-keras`` restricts the suite to one flavour (the tox
    version matrix uses it); unset or ``all`` runs every installed flavour."""
    selected = os.environ.get("RNNPARITY_KERAS", "all")
    if selected not in ("all", flavor):
        return False
    keras_version = _dist_version("keras")
    if flavor == "keras3":
        return keras_version is not None and keras_version.startswith("3.")
    has_tf_keras = importlib.util.find_spec("tf_keras") is not None
    return has_tf_keras or (keras_version is not None and keras_version.startswith("2."))


def flavor_params(flavor: str, values: list[tuple], ids: list[str] | None = None) -> list:
    """Argument tuples as pytest params, skipped with a reason when ``flavor`` is not installed."""
    marks = [pytest.mark.keras]
    if not flavor_available(flavor):
        marks.append(
            pytest.mark.skip(reason=f"{flavor} is not installed or not selected (pip install -e '.[test]'; RNNPARITY_KERAS)")
        )
    return [pytest.param(*v, marks=marks, id=ids[i] if ids else None) for i, v in enumerate(values)]


@functools.cache
def keras_handle(flavor: str) -> keras_adapter.KerasHandle:
    return keras_adapter.load_keras(flavor)


pytest_plugins = ["pytester"]


def pytest_report_header(config: pytest.Config) -> list[str]:
    # The versions line comes from rnnparity's pytest plugin; this adds what the suite runs.
    used = [f for f in FLAVOR_MAJOR if flavor_available(f)]
    return [
        f"rnnparity suite: python {platform.python_version()}; parity against "
        f"{', '.join(used) if used else 'no Keras (parity cases skip)'}"
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` (wider matrices) are deselected unless asked for: ``pytest -m slow``."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    slow = [item for item in items if "slow" in item.keywords]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if "slow" not in item.keywords]
