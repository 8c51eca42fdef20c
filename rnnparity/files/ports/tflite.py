"""A ``.tflite`` port, run by the LiteRT interpreter (``pip install 'rnnparity[tflite]'``), else
by TensorFlow's ``tf.lite.Interpreter``.

One interpreter serves every call, so the resource variables a stateful Keras layer becomes
keep their values between calls as they do on a device. The intermediate tensors come from a
second interpreter built with ``experimental_preserve_all_tensors=True`` and without the
default delegates (XNNPACK would fold ops away), replaying the same calls. The recurrent
kernels are the fused sequence ops (``UNIDIRECTIONAL_SEQUENCE_LSTM``, ...) and ``WHILE`` loops.
"""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Any

import numpy as np

from rnnparity.files.model_file import first_line
from rnnparity.files.ports.common import Port, PortError, TensorInfo

RECURRENT_OPS = (
    "UNIDIRECTIONAL_SEQUENCE_LSTM",
    "BIDIRECTIONAL_SEQUENCE_LSTM",
    "UNIDIRECTIONAL_SEQUENCE_RNN",
    "BIDIRECTIONAL_SEQUENCE_RNN",
    "LSTM",
    "WHILE",
)


def _interpreter_module() -> tuple[Any, str]:
    """The interpreter module and a label with its version: LiteRT first, then TensorFlow."""
    from importlib import metadata

    try:
        from ai_edge_litert import interpreter

        return interpreter, f"ai-edge-litert {metadata.version('ai-edge-litert')} interpreter"
    except ImportError:
        pass
    try:
        import tensorflow as tf
    except ImportError:
        raise PortError("checking a .tflite port needs ai-edge-litert (pip install 'rnnparity[tflite]') or TensorFlow") from None
    return tf.lite, f"tf.lite.Interpreter (TensorFlow {tf.__version__})"


class TflitePort(Port):
    def __init__(self, path: str) -> None:
        self.module, self.label = _interpreter_module()
        self.path = path
        with open(path, "rb") as handle:
            self.blob = handle.read()
        self.interpreter = self._interpreter(preserve=False)
        self._inputs = self.interpreter.get_input_details()
        self._outputs = self.interpreter.get_output_details()
        self.inputs = [self._info(d) for d in self._inputs]
        self.outputs = [self._info(d) for d in self._outputs]
        self._probe: Any = None

    def _interpreter(self, preserve: bool) -> Any:
        kwargs: dict[str, Any] = {"model_content": self.blob}
        if preserve:
            kwargs["experimental_preserve_all_tensors"] = True
            kwargs["experimental_op_resolver_type"] = self.module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            with warnings.catch_warnings():
                # LiteRT warns that preserving every tensor costs memory: that is the point here.
                warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors", category=UserWarning)
                interpreter = self.module.Interpreter(**kwargs)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise PortError(f"{self.path}: the TFLite interpreter cannot load it: {first_line(exc)}") from None
        return interpreter

    @staticmethod
    def _info(detail: dict[str, Any]) -> TensorInfo:
        signature = detail.get("shape_signature", detail["shape"])
        shape = tuple(None if int(d) < 0 else int(d) for d in signature)
        return TensorInfo(str(detail["name"]), shape, np.dtype(detail["dtype"]).name)

    def _invoke(self, interpreter: Any, arrays: list[np.ndarray]) -> None:
        current = {int(d["index"]): tuple(d["shape"]) for d in interpreter.get_input_details()}
        resized = False
        for detail, array in zip(self._inputs, arrays):
            if current[int(detail["index"])] != array.shape:
                interpreter.resize_tensor_input(detail["index"], array.shape)
                resized = True
        if resized:
            interpreter.allocate_tensors()
        for detail, array in zip(self._inputs, arrays):
            interpreter.set_tensor(detail["index"], np.ascontiguousarray(array))
        try:
            interpreter.invoke()
        except (ValueError, RuntimeError) as exc:
            raise PortError(f"{self.path}: the TFLite interpreter could not run it: {first_line(exc)}") from None

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        self._invoke(self.interpreter, arrays)
        return [np.array(self.interpreter.get_tensor(d["index"])) for d in self._outputs]

    def intermediates(self, calls: list[list[np.ndarray]]) -> list[tuple[str, np.ndarray]]:
        self._probe = self._interpreter(preserve=True)
        for arrays in calls:
            self._invoke(self._probe, arrays)
        found = []
        for detail in self._probe.get_tensor_details():
            # Only float tensors are read. A resource tensor (a stateful layer's variables)
            # comes back as an object array built over the handle's raw bytes, which NumPy
            # dereferences as Python objects when the array is freed: a crash, some runs.
            if np.dtype(detail["dtype"]).kind != "f":
                continue
            try:
                value = self._probe.get_tensor(detail["index"])
            except ValueError:  # a float tensor without data (an unused slot)
                continue
            if isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.size:
                found.append((str(detail["name"]), np.array(value)))
        return found

    def _ops(self) -> list[dict[str, Any]]:
        interpreter = self._probe or self.interpreter
        try:
            return list(interpreter._get_ops_details())
        except AttributeError:  # an interpreter without the (private) op listing
            return []

    def kernel_of(self, tensor: str) -> str:
        interpreter = self._probe or self.interpreter
        index = {str(d["name"]): int(d["index"]) for d in interpreter.get_tensor_details()}.get(tensor)
        if index is None:
            return ""
        producers = {int(out): op for op in self._ops() for out in op["outputs"]}
        seen, frontier = set(), [index]
        while frontier:
            op = producers.get(frontier.pop(0))
            if op is None or op["index"] in seen:
                continue
            seen.add(op["index"])
            if op["op_name"] in RECURRENT_OPS:
                return f"TFLite {op['op_name']}" + (" (a step subgraph)" if op["op_name"] == "WHILE" else " (fused)")
            frontier.extend(int(i) for i in op["inputs"] if int(i) >= 0)
        return ""

    def kernel_summary(self) -> str:
        ops = self._ops()
        if not ops:
            return "not read (the interpreter does not list its ops)"
        counts = Counter(op["op_name"] for op in ops if op["op_name"] in RECURRENT_OPS)
        if not counts:
            return "no fused sequence op and no WHILE loop in the main subgraph"
        return ", ".join(f"{n} {op}" for op, n in sorted(counts.items()))
