"""Test vectors for other runtimes: every recurrent layer call ``verify`` saw, as ``.npz``.

For each call, one ``NN_<layer>.npz`` holds the layer's input (``inputs``), its ``mask``
when there was one, its initial states (``initial_state.<name>``), its weights in Keras
layout under the twin's names (``kernel``, ``recurrent_kernel``, ``bias``; prefixed
``forward.`` / ``backward.`` for Bidirectional and ``cell<i>.`` for a stack of cells), and
every array Keras returned (``output``, ``h``, ``c``, ...). For a whole model,
``model.npz`` holds the model's inputs (``inputs.<name>``) and what it returned
(``outputs.<i>``). ``index.json`` lists the files with the layer's class, Keras config,
array shapes and dtypes, each weight's gate order (``i, f, c, o`` for LSTM, ``z, r, h`` for
GRU), the Keras that produced the numbers, the tolerance the twin met and the tolerance a
port should be held to.

An export goes into an empty (or new) directory; :func:`directory_problem` says why one
cannot be used, and :func:`clear_previous_export` removes what an earlier export wrote.
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


TOLERANCE_RULE = "|port - keras| <= atol + rtol * |keras|, element by element"


def gate_orders(twin: Any) -> dict[str, str]:
    """The gate order of each weight prefix of ``twin`` (``""``, ``forward.``, ``cell0.``):
    the column blocks of ``kernel``, ``recurrent_kernel`` and ``bias``, left to right."""
    from rnnparity.bidirectional import Bidirectional

    if isinstance(twin, Bidirectional):
        return {
            **{f"forward.{k}": v for k, v in gate_orders(twin.forward_layer).items()},
            **{f"backward.{k}": v for k, v in gate_orders(twin.backward_layer).items()},
        }
    return _cell_gate_orders(twin.cell)


def weight_gate_orders(twin: Any) -> dict[str, str]:
    """Each weight's gate order, by weight name: ``{"kernel": "i, f, c, o", ...}``, or
    ``{"forward.kernel": ...}`` for a wrapper."""
    orders = gate_orders(twin)
    return {name: orders[name.rpartition(".")[0] + "." if "." in name else ""] for name in weight_names(twin)}


def _cell_gate_orders(cell: Any) -> dict[str, str]:
    from rnnparity.layout import GATE_ORDER, KERAS_CLASS_NAME
    from rnnparity.stacked import StackedRNNCells

    if isinstance(cell, StackedRNNCells):
        return {f"cell{i}.{k}": v for i, c in enumerate(cell.cells) for k, v in _cell_gate_orders(c).items()}
    kind = {f"{name}Cell": kind for kind, name in KERAS_CLASS_NAME.items()}[type(cell).__name__]
    return {"": ", ".join(GATE_ORDER[kind])}


def recommended_tolerance(dtype: str, row: Any = None) -> dict[str, Any]:
    """The tolerance to hold a port to: the one the twin met (``row``), else the per-dtype default."""
    from rnnparity.compare import tolerances

    rtol, atol = tolerances(dtype)
    if row is not None and row.rtol is not None and row.atol is not None:
        rtol, atol = row.rtol, row.atol
    return {"rtol": rtol, "atol": atol, "rule": TOLERANCE_RULE}


def directory_problem(directory: str, force: bool) -> str | None:
    """Why ``directory`` cannot take an export (None if it can): it holds files, and with
    ``force`` it holds files an earlier export did not write."""
    target = Path(directory)
    if not target.is_dir():
        return None
    present = sorted(p.name for p in target.iterdir())
    if not present:
        return None
    if not force:
        return (
            f"it is not empty ({len(present)} entries, e.g. {present[0]}); use an empty directory, "
            "or --force to replace an earlier export"
        )
    foreign = sorted(set(present) - set(previous_export_files(directory)))
    if foreign:
        return f"--force replaces an earlier export only, and {foreign[0]} is not part of one ({len(foreign)} such entries)"
    return None


def previous_export_files(directory: str) -> list[str]:
    """The files an earlier export wrote into ``directory`` (per its index.json), index.json included."""
    index = Path(directory) / "index.json"
    try:
        listing = json.loads(index.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(listing, dict) or listing.get("format") != INDEX_FORMAT:
        return []
    names = [c.get("file") for c in listing.get("calls", []) if isinstance(c, dict)]
    model = listing.get("model_file")
    return ["index.json", *[n for n in [*names, model] if isinstance(n, str) and n == safe_filename(n)]]


def clear_previous_export(directory: str) -> list[str]:
    """Remove the files an earlier export wrote into ``directory``; returns their names."""
    removed = []
    for name in previous_export_files(directory):
        path = Path(directory) / name
        if path.is_file():
            path.unlink()
            removed.append(name)
    return removed


def export_model_io(directory: str, names: list[str], inputs: list[np.ndarray], outputs: Any) -> dict[str, Any]:
    """Write ``model.npz``: the model's inputs (``inputs.<name>``) and outputs (``outputs.<i>``)."""
    arrays = {f"inputs.{safe_filename(name)}": np.asarray(array) for name, array in zip(names, inputs)}
    arrays.update({f"outputs.{index}": np.asarray(value) for index, value in enumerate(flatten_nested(outputs))})
    Path(directory).mkdir(parents=True, exist_ok=True)
    np.savez(Path(directory) / "model.npz", **arrays)  # type: ignore[arg-type]
    return {"file": "model.npz", "arrays": {name: {"shape": list(a.shape), "dtype": str(a.dtype)} for name, a in arrays.items()}}


def export_vectors(
    directory: str, captures: list[Any], report: Any, model_io: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Write one ``.npz`` per captured call and ``index.json``; returns the index entries.
    ``model_io`` is what :func:`export_model_io` returned, for a whole model."""
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
                "gate_order": weight_gate_orders(twin),
                "results": names,
                "twin_status": None if row is None else row.status,
                "twin_max_abs_err": None if row is None else row.max_abs,
                "recommended_tolerance": recommended_tolerance(np.dtype(twin.dtype).name, row),
            }
        )
    listing: dict[str, Any] = {
        "format": INDEX_FORMAT,
        "model": report.model,
        "keras": report.keras,
        "seed": report.seed,
        "note": "weights are in Keras layout: kernel (input_dim, gates*units), recurrent_kernel (units, gates*units), "
        "bias (gates*units,) or (2, gates*units) for GRU reset_after=True; the gate blocks sit left to right in each "
        "call's gate_order (LSTM: i, f, c, o; GRU: z, r, h; SimpleRNN: h). Results are what Keras returned for these "
        "inputs; hold a port to each call's recommended_tolerance.",
        "model_file": None if model_io is None else model_io["file"],
        "model_arrays": None if model_io is None else model_io["arrays"],
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
