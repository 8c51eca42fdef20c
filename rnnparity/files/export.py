"""Test vectors for other runtimes: every recurrent layer call ``verify`` saw, as ``.npz``.

For each call, one ``NN_<layer>.npz`` holds the layer's input (``inputs``), its ``mask``
when there was one, its initial states (``initial_state.<name>``), its weights in Keras
layout under the twin's names (``kernel``, ``recurrent_kernel``, ``bias``; prefixed
``forward.`` / ``backward.`` for Bidirectional and ``cell<i>.`` for a stack of cells), and
every array Keras returned (``output``, ``h``, ``c``, ...). ``index.json`` lists the files
with the layer's class, Keras config, array shapes and dtypes, the Keras that produced the
numbers, and the tolerance the twin met.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from rnnparity.rnn import flatten_nested

INDEX_FORMAT = "rnnparity-test-vectors/1"


def weight_names(twin: Any) -> list[str]:
    """Names of ``twin.get_weights()`` entries, in order."""
    from rnnparity.bidirectional import Bidirectional

    if isinstance(twin, Bidirectional):
        return [f"forward.{n}" for n in weight_names(twin.forward_layer)] + [
            f"backward.{n}" for n in weight_names(twin.backward_layer)
        ]
    return _cell_weight_names(twin.cell)


def _cell_weight_names(cell: Any) -> list[str]:
    from rnnparity.stacked import StackedRNNCells

    if isinstance(cell, StackedRNNCells):
        return [f"cell{i}.{n}" for i, c in enumerate(cell.cells) for n in _cell_weight_names(c)]
    return ["kernel", "recurrent_kernel", "bias"][: cell.weight_count]


def state_names(twin: Any) -> list[str]:
    """Names of the flat states a twin takes and returns (``h``, ``c``, ``cell0.h``, ...)."""
    from rnnparity.bidirectional import Bidirectional

    if isinstance(twin, Bidirectional):
        return [f"forward.{n}" for n in state_names(twin.forward_layer)] + [
            f"backward.{n}" for n in state_names(twin.backward_layer)
        ]
    return [name.replace("cell ", "cell").replace(" ", ".") for name in twin.cell.flat_state_names]


def result_names(twin: Any) -> list[str]:
    """Names of the flattened result of a call: outputs, then states when returned."""
    from rnnparity.bidirectional import Bidirectional

    outputs = ["output"]
    if isinstance(twin, Bidirectional) and twin.merge_mode is None:
        outputs = ["output.forward", "output.backward"]
    return outputs + (state_names(twin) if twin.return_state else [])


def safe_filename(name: str) -> str:
    """``name`` with every character outside ``[A-Za-z0-9_.-]`` replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def export_vectors(directory: str, captures: list[Any], report: Any) -> list[dict[str, Any]]:
    """Write one ``.npz`` per captured call and ``index.json``; returns the index entries."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    entries = []
    for number, capture in enumerate(captures):
        twin = capture.twin
        arrays: dict[str, np.ndarray] = {"inputs": np.asarray(capture.inputs)}
        if capture.mask is not None:
            arrays["mask"] = np.asarray(capture.mask, dtype=bool)
        if capture.initial_state is not None:
            given = flatten_nested(capture.initial_state)
            names = state_names(twin)
            for index, state in enumerate(given):
                label = names[index] if len(names) == len(given) else str(index)
                arrays[f"initial_state.{label}"] = np.asarray(state)
        for name, weight in zip(weight_names(twin), capture.layer.get_weights()):
            arrays[name] = np.asarray(weight)
        results = flatten_nested(capture.keras_result)
        names = result_names(twin)
        if len(names) != len(results):
            names = [f"result{index}" for index in range(len(results))]
        for name, value in zip(names, results):
            arrays[name] = np.asarray(value)
        filename = f"{number:02d}_{safe_filename(capture.layer.name)}.npz"
        np.savez(target / filename, **arrays)  # type: ignore[arg-type]
        row = next((r for r in report.layers if r.name == capture.layer.name), None)
        entries.append(
            {
                "file": filename,
                "layer": capture.layer.name,
                "class": type(capture.layer).__name__,
                "config": _jsonable(capture.layer.get_config()),
                "arrays": {name: {"shape": list(a.shape), "dtype": str(a.dtype)} for name, a in arrays.items()},
                "inputs": [
                    "inputs",
                    *(["mask"] if "mask" in arrays else []),
                    *[n for n in arrays if n.startswith("initial_state.")],
                ],
                "weights": weight_names(twin),
                "results": names,
                "twin_status": None if row is None else row.status,
                "twin_max_abs_err": None if row is None else row.max_abs,
            }
        )
    listing: dict[str, Any] = {
        "format": INDEX_FORMAT,
        "model": report.model,
        "keras": report.keras,
        "seed": report.seed,
        "note": "weights are in Keras layout (kernel (input_dim, gates*units), gate order per rnnparity.layout); "
        "results are what Keras returned for these inputs",
        "calls": entries,
    }
    (target / "index.json").write_text(json.dumps(listing, indent=2) + "\n")
    return entries


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    return repr(value)
