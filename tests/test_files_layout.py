"""The shape of rnnparity.files and rnnparity.suite: no import cycles between their modules,
one table per fact (kind -> twin class, the HDF5 signature, the h5py import), the names the
rest of the package imports from them, and the one way to find TensorFlow's version."""

from __future__ import annotations

import ast
import sys
import types
from pathlib import Path

import pytest

import rnnparity
from rnnparity.layout import GATE_ORDER, KERAS_CLASS_NAME
from rnnparity.suite import keras_adapter
from rnnparity.twin_classes import (
    NO_TWIN,
    TWIN_BY_KERAS_NAME,
    TWIN_CELL_BY_KERAS_NAME,
    TWIN_CELL_CLASSES,
    TWIN_CLASSES,
)

PACKAGE = Path(rnnparity.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, known: set[str]) -> set[str]:
    """Every rnnparity module ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found & known


def test_no_import_cycles_between_files_and_suite_modules() -> None:
    paths = [p for folder in ("files", "suite") for p in (PACKAGE / folder).glob("*.py")]
    names = {_module_name(p): p for p in paths}
    graph = {name: _imports(path, set(names)) - {name} for name, path in names.items()}
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                cycle = [*trail[trail.index(target) :], target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, [*trail, target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def _occurrences(text: str) -> list[str]:
    return [
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        for line in path.read_text().splitlines()
        if text in line
    ]


def test_the_hdf5_signature_and_the_h5py_import_exist_once() -> None:
    assert _occurrences(r'b"\x89HDF') == ["files/hdf5.py"]
    assert _occurrences("import h5py") == ["files/hdf5.py"]


def test_one_twin_class_per_kind_named_as_keras_names_it() -> None:
    assert set(TWIN_CLASSES) == set(TWIN_CELL_CLASSES) == set(GATE_ORDER)
    for kind, layer_class in TWIN_CLASSES.items():
        assert layer_class.__name__ == KERAS_CLASS_NAME[kind]
        assert TWIN_CELL_CLASSES[kind].__name__ == f"{KERAS_CLASS_NAME[kind]}Cell"
        assert getattr(rnnparity, layer_class.__name__) is layer_class
    assert TWIN_BY_KERAS_NAME == {cls.__name__: cls for cls in TWIN_CLASSES.values()}
    assert TWIN_CELL_BY_KERAS_NAME == {cls.__name__: cls for cls in TWIN_CELL_CLASSES.values()}
    assert not set(NO_TWIN) & set(TWIN_BY_KERAS_NAME)


def test_public_names_of_the_split_modules() -> None:
    import rnnparity.legacy as alias
    from rnnparity.files import hdf5, legacy, plan, stored, verify

    assert alias is legacy
    assert alias.twin_from_weights is plan.twin_from_weights
    assert alias.read_weights_file is hdf5.read_weights_file
    assert alias.WeightsFileError is stored.WeightsFileError
    for name in verify.__all__ + legacy.__all__:
        assert hasattr(verify if name in verify.__all__ else legacy, name), name


def test_flavor_for_each_keras_version() -> None:
    assert [keras_adapter.flavor_for(v) for v in (3, 2)] == ["keras3", "tf-keras"]
    for wrong in (1, 4, True, "3"):
        with pytest.raises(ValueError, match=f"keras_version must be 2 or 3; got {wrong!r}"):
            keras_adapter.flavor_for(wrong)  # type: ignore[arg-type]


def test_tensorflow_version_prefers_the_imported_module_and_never_imports_it(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def installed(name: str) -> str | None:
        asked.append(name)
        return {"tensorflow": "2.99.1"}.get(name)

    monkeypatch.setattr(keras_adapter, "package_version", installed)
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    assert keras_adapter.tensorflow_version() == "2.99.1"
    assert asked == ["tensorflow-cpu", "tensorflow"] and "tensorflow" not in sys.modules
    loaded = types.ModuleType("tensorflow")
    loaded.__version__ = "2.98.0"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorflow", loaded)
    assert keras_adapter.tensorflow_version() == "2.98.0"
    monkeypatch.setattr(keras_adapter, "package_version", lambda name: None)
    monkeypatch.delitem(sys.modules, "tensorflow")
    assert keras_adapter.tensorflow_version() is None


def test_reports_keep_their_keys_for_the_keras_version_and_release() -> None:
    """Reports keep the keys of their first format (``diff`` reads older reports): the release
    string under ``keras_version``, the 2 or 3 under ``keras_major``."""
    from rnnparity.suite import report

    handle = keras_adapter.KerasHandle(None, "keras", "3.1.2", 3, "numpy")
    env = report.environment(handle)
    assert (env["keras_version"], env["keras_major"], env["keras_flavor"]) == ("3.1.2", 3, "keras3")
    assert handle.environment["keras_major"] == 3 and handle.keras_version == 3 and not hasattr(handle, "major")
    assert handle.describe() == "keras 3.1.2 (Keras 3, backend numpy)"
