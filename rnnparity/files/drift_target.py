"""The target Keras itself, for ``rnnparity drift``: :func:`run_in_target` loads the model file in a
subprocess where the other Keras is imported (``TF_USE_LEGACY_KERAS=1`` for tf_keras), runs the
same inputs and returns its outputs, or says why it could not.

A tf_keras ``.h5`` whose only obstacle for Keras 3 is ``time_major=False`` (a Keras 2 argument,
at the value Keras 3 computes) is loaded from its stored config without it, and the report says
so; everything else is loaded exactly as ``verify`` loads a file (the same safety scan).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rnnparity.files.verify import ModelFileError

EXIT_OK, EXIT_ERROR = 0, 2
# How long the target Keras may take to load and run the model in its subprocess.
ACTUAL_TIMEOUT_SECONDS = 600


def flat_outputs(model: Any, result: Any) -> dict[str, np.ndarray]:
    """The model's outputs by output name, in the model's order."""
    from rnnparity.suite import keras_adapter

    names = [str(n) for n in (getattr(model, "output_names", None) or [])]
    if isinstance(result, Mapping):
        keys = [n for n in names if n in result] or list(result)
        values = [result[k] for k in keys]
    else:
        values = list(result) if isinstance(result, (list, tuple)) else [result]
    if len(names) != len(values) or len(set(names)) != len(names):
        names = [f"output_{i}" for i in range(len(values))]
    return {name: keras_adapter.to_numpy(value) for name, value in zip(names, values)}


def run_calls(model: Any, arrays: list[np.ndarray], calls: int) -> dict[str, np.ndarray]:
    """The outputs of ``calls`` model calls in a row, joined along the batch axis."""
    results = [flat_outputs(model, model(arrays if len(arrays) > 1 else arrays[0], training=False)) for _ in range(calls)]
    return {name: np.concatenate([r[name] for r in results]) if calls > 1 else results[0][name] for name in results[0]}


def run_in_target(path: str, to: str, arrays: list[np.ndarray], calls: int) -> tuple[dict[str, np.ndarray] | None, str]:
    """``(outputs by name, what ran)`` from the target Keras loading ``path`` in a subprocess
    and calling the model ``calls`` times on ``arrays``; ``(None, why not)`` when it cannot."""
    import rnnparity

    package_root = str(Path(rnnparity.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if to == "tf-keras":
        env["TF_USE_LEGACY_KERAS"] = "1"
    else:
        env.pop("TF_USE_LEGACY_KERAS", None)
    with tempfile.TemporaryDirectory(prefix="rnnparity-drift-") as folder:
        inputs_path, outputs_path = os.path.join(folder, "inputs.npz"), os.path.join(folder, "outputs.npz")
        np.savez(inputs_path, *arrays)
        command = [
            sys.executable,
            "-c",
            "import sys; from rnnparity.files.drift_target import main; sys.exit(main(sys.argv[1:]))",
        ]
        try:
            done = subprocess.run(
                [*command, path, to, inputs_path, str(calls), outputs_path],
                capture_output=True,
                text=True,
                env=env,
                timeout=ACTUAL_TIMEOUT_SECONDS,
            )
        except subprocess.TimeoutExpired:
            return None, f"the target Keras did not finish within {ACTUAL_TIMEOUT_SECONDS} s"
        lines = [line for line in done.stdout.splitlines() if line.startswith("rnnparity-drift: ")]
        said = lines[-1].removeprefix("rnnparity-drift: ") if lines else ""
        if done.returncode != 0 or not os.path.exists(outputs_path):
            reason = said or (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
            return None, _shortened(reason)
        with np.load(outputs_path, allow_pickle=False) as loaded:
            names = json.loads(said)["outputs"]
            return {name: loaded[f"arr_{i}"] for i, name in enumerate(names)}, json.loads(said)["keras"]


def _shortened(text: str, limit: int = 300) -> str:
    """Keras's loading errors can hold the whole model config; keep the start."""
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def main(argv: Sequence[str]) -> int:
    """The subprocess: load ``path`` with the target Keras, run it, save its outputs."""
    from rnnparity.files import verify
    from rnnparity.suite import keras_adapter

    path, to, inputs_path, calls, outputs_path = argv
    try:
        model_file = verify.read_model_file(path)
        try:
            handle = keras_adapter.load_keras(to)
        except ImportError as exc:
            raise ModelFileError(f"{to} is not installed: {exc}") from None
        model_file.keras_version = handle.keras_version
        model, how = _load_in_target(handle, model_file)
        with np.load(inputs_path, allow_pickle=False) as loaded:
            arrays = [loaded[f"arr_{i}"] for i in range(len(loaded.files))]
        try:
            outputs = run_calls(model, arrays, int(calls))
        except Exception as exc:  # the target Keras could not run the model
            raise ModelFileError(f"{handle.describe()} could not run the model: {verify.first_line(exc)}") from None
    except ModelFileError as exc:
        print(f"rnnparity-drift: {exc}")
        return EXIT_ERROR
    np.savez(outputs_path, *outputs.values())
    print("rnnparity-drift: " + json.dumps({"outputs": list(outputs), "keras": f"{handle.describe()}, {how}"}))
    return EXIT_OK


def _load_in_target(handle: Any, model_file: Any) -> tuple[Any, str]:
    """The model as the target Keras loads it, and how. A tf_keras ``.h5`` whose only obstacle
    for Keras 3 is ``time_major=False`` (a Keras 2 argument at the value Keras 3 computes) is
    loaded from its config without it; ``time_major=True`` cannot be loaded."""
    from rnnparity.files import verify
    from rnnparity.suite import keras_adapter

    try:
        return verify.load_model(model_file)[1], "loaded from the file"
    except ModelFileError as exc:
        if not (handle.keras_version == 3 and model_file.format == "h5" and "time_major" in str(exc)):
            raise
        first = exc
    config = copy.deepcopy(model_file.config)
    if _drop_time_major(config):
        raise ModelFileError(f"{first}; time_major=True has no Keras 3 equivalent")
    verify.scan_config(config, verify.known_class_names(handle.module) | keras_adapter.op_class_names(handle), "")
    try:
        model = keras_adapter.load_keras2_h5_in_keras3(handle, model_file.path, config)
    except Exception as exc:  # Keras refused the config or the weights
        raise ModelFileError(f"{first}; without time_major=False: {verify.first_line(exc)}") from None
    return model, "loaded from the file's config without time_major=False (a Keras 2 argument Keras 3 refuses)"


def _drop_time_major(config: Any) -> bool:
    """Remove ``time_major: False`` everywhere in ``config``; True when a ``time_major: True`` is found."""
    found = False
    if isinstance(config, dict):
        if config.get("time_major") is False:
            del config["time_major"]
        found = config.get("time_major") is True
        for value in config.values():
            found = _drop_time_major(value) or found
    elif isinstance(config, list):
        for value in config:
            found = _drop_time_major(value) or found
    return found
