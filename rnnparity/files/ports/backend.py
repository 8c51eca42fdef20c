"""A Keras 3 backend as the port: the same ``.keras`` file loaded and run in a subprocess with
``KERAS_BACKEND`` set (``jax``, ``torch``, ``numpy`` or ``tensorflow``).

The subprocess lives for the whole check, so a stateful model's state carries between calls as
in the parent. Each call's arrays go through ``.npz`` files in a temporary folder; the
subprocess answers on stdout with one line that starts with :data:`MARKER`. Besides the
outputs it returns every recurrent layer's results, the "intermediate tensors" the
localization matches (by shape and value, like any other port's).

Run as ``python -m rnnparity.files.ports.backend MODEL`` it is that subprocess.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from typing import Any, TextIO

import numpy as np

from rnnparity.files.ports.common import BACKENDS, Port, PortError, TensorInfo

MARKER = "rnnparity-port:"
# What each backend needs importable (the numpy backend needs nothing beyond Keras).
_PACKAGES = {"jax": "jax", "torch": "torch", "tensorflow": "tensorflow", "numpy": "numpy"}


class BackendPort(Port):
    def __init__(self, backend: str, model_path: str, *, x64: bool = False) -> None:
        if backend not in BACKENDS:
            raise PortError(f"--against {backend!r}: expected one of {', '.join(BACKENDS)}")
        if importlib.util.find_spec(_PACKAGES[backend]) is None:
            raise PortError(f"--against {backend}: the {backend} backend is not installed (no {_PACKAGES[backend]} package)")
        self.backend = backend
        self.folder = tempfile.TemporaryDirectory(prefix="rnnparity-port-")
        self.calls = 0
        self.layer_results: list[dict[str, np.ndarray]] = []
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"))
        if backend == "jax" and x64:
            env["JAX_ENABLE_X64"] = "1"  # without it JAX silently computes float64 models in float32
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rnnparity.files.ports.backend", model_path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        ready = self._answer()
        self.label = str(ready["keras"])
        self.inputs = [TensorInfo(n, tuple(s), d) for n, s, d in ready["inputs"]]
        self.outputs = [TensorInfo(n, tuple(s), d) for n, s, d in ready["outputs"]]

    def _answer(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(MARKER):
                answer: dict[str, Any] = json.loads(line[len(MARKER) :])
                if "error" in answer:
                    self.close()
                    raise PortError(f"Keras on the {self.backend} backend: {answer['error']}")
                return answer
        self.close()
        raise PortError(f"Keras on the {self.backend} backend: the subprocess ended without an answer")

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        assert self.process.stdin is not None
        source = os.path.join(self.folder.name, f"in-{self.calls}.npz")
        target = os.path.join(self.folder.name, f"out-{self.calls}.npz")
        self.calls += 1
        np.savez(source, *arrays)
        self.process.stdin.write(json.dumps({"inputs": source, "outputs": target}) + "\n")
        self.process.stdin.flush()
        self._answer()
        with np.load(target, allow_pickle=False) as loaded:
            outputs = [loaded[f"output_{i}"] for i in range(len(self.outputs))]
            self.layer_results.append({k: loaded[k] for k in loaded.files if not k.startswith("output_")})
        return outputs

    def intermediates(self, calls: list[list[np.ndarray]]) -> list[tuple[str, np.ndarray]]:
        # The subprocess already returned every recurrent layer's results of each call it ran.
        return sorted(self.layer_results[len(calls) - 1].items())

    def kernel_of(self, tensor: str) -> str:
        return f"Keras on {self.backend}"

    def kernel_summary(self) -> str:
        return f"Keras's own recurrent loop on the {self.backend} backend"

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                if self.process.stdin is not None:
                    self.process.stdin.close()
                self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.folder.cleanup()


def _reply(stream: TextIO, data: dict[str, Any]) -> None:
    stream.write(MARKER + json.dumps(data) + "\n")
    stream.flush()


def serve(model_path: str, stdin: TextIO, stdout: TextIO) -> int:
    """The subprocess: load the model under this process's Keras backend, then answer calls."""
    from rnnparity.files.model_file import ModelFileError, first_line
    from rnnparity.files.ports.common import KerasSide

    try:
        keras = KerasSide(model_path)
    except ModelFileError as exc:
        _reply(stdout, {"error": str(exc)})
        return 2
    except Exception as exc:  # a backend that fails on import or on loading
        _reply(stdout, {"error": first_line(exc)})
        return 2
    outputs = [
        (name, [None if d is None else int(d) for d in tensor.shape], str(getattr(tensor.dtype, "name", tensor.dtype)))
        for name, tensor in zip(keras.output_names, keras.model.outputs)
    ]
    _reply(
        stdout,
        {
            "keras": keras.handle.describe(),
            "inputs": [(s.name, list(s.shape), s.dtype) for s in keras.specs],
            "outputs": outputs,
        },
    )
    for line in stdin:
        request = json.loads(line)
        try:
            with np.load(request["inputs"], allow_pickle=False) as loaded:
                arrays = [loaded[f"arr_{i}"] for i in range(len(loaded.files))]
            results, layers = keras.call(arrays)
        except Exception as exc:  # reported to the parent as one line
            _reply(stdout, {"error": first_line(exc)})
            return 2
        named = {f"output_{i}": r for i, r in enumerate(results)}
        for layer, values in layers.items():
            named.update({f"{layer}/{i}": v for i, v in enumerate(values)})
        np.savez(request["outputs"], **named)  # type: ignore[arg-type]
        _reply(stdout, {"done": True})
    return 0


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1], sys.stdin, sys.stdout))
