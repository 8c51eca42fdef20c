"""An ``.onnx`` port, run by onnxruntime (``pip install 'rnnparity[onnx]'``).

onnxruntime keeps no state between calls: a model converted from a stateful Keras layer
starts every call from the initial state the graph holds. The intermediate tensors for the
localization are every node output of the main graph, exposed as extra graph outputs of a
second session (this needs the ``onnx`` package; without it, localization is skipped).
The recurrent kernels are the ``LSTM``/``GRU``/``RNN`` ops and the ``Loop``/``Scan`` nodes.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from rnnparity.files.model_file import first_line
from rnnparity.files.ports.common import Port, PortError, TensorInfo

RECURRENT_OPS = ("LSTM", "GRU", "RNN", "Loop", "Scan")
_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(bool)": "bool",
}


def _runtime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise PortError("checking an .onnx port needs onnxruntime: pip install 'rnnparity[onnx]'") from None
    return onnxruntime


class OnnxPort(Port):
    def __init__(self, path: str) -> None:
        ort = _runtime()
        self.path = path
        with open(path, "rb") as handle:
            self.blob = handle.read()
        self.label = f"onnxruntime {ort.__version__}"
        self.session = self._session(self.blob)
        self.inputs = [self._info(i) for i in self.session.get_inputs()]
        self.outputs = [self._info(o) for o in self.session.get_outputs()]
        self.graph = self._graph()
        self._producers: dict[str, Any] | None = None

    def _session(self, blob: bytes) -> Any:
        ort = _runtime()
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            return ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
            raise PortError(f"{self.path}: onnxruntime cannot load it: {first_line(exc)}") from None

    @staticmethod
    def _info(node: Any) -> TensorInfo:
        shape = tuple(d if isinstance(d, int) else None for d in (node.shape or []))
        return TensorInfo(node.name, shape, _TYPES.get(node.type, node.type))

    def _graph(self) -> Any:
        try:
            import onnx
        except ImportError:
            return None
        try:
            return onnx.load_model_from_string(self.blob)
        except Exception:  # onnxruntime read it, so this is the onnx package's own limit
            return None

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        feed = {info.name: array for info, array in zip(self.inputs, arrays)}
        try:
            return [np.asarray(r) for r in self.session.run(None, feed)]
        except Exception as exc:  # a shape or type the graph refuses at run time
            raise PortError(f"{self.path}: onnxruntime could not run it: {first_line(exc)}") from None

    def intermediates(self, calls: list[list[np.ndarray]]) -> list[tuple[str, np.ndarray]]:
        if self.graph is None:
            return []
        import onnx

        model = onnx.ModelProto()
        model.CopyFrom(self.graph)
        present = {o.name for o in model.graph.output}
        for node in model.graph.node:
            for name in node.output:
                if name and name not in present:
                    model.graph.output.append(onnx.ValueInfoProto(name=name))
                    present.add(name)
        session = self._session(model.SerializeToString())
        names = [o.name for o in session.get_outputs()]
        feed = {info.name: array for info, array in zip(self.inputs, calls[-1])}
        try:
            values = session.run(None, feed)
        except Exception:  # an exposed tensor the runtime cannot return: no localization
            return []
        return [(name, np.asarray(v)) for name, v in zip(names, values) if isinstance(v, np.ndarray)]

    def kernel_of(self, tensor: str) -> str:
        if self.graph is None:
            return ""
        if self._producers is None:
            self._producers = {name: node for node in self.graph.graph.node for name in node.output}
        producers = self._producers
        seen, frontier = set(), [tensor]
        while frontier:
            name = frontier.pop(0)
            node = producers.get(name)
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            if node.op_type in RECURRENT_OPS:
                return _describe(node)
            frontier.extend(i for i in node.input if i)
        return ""

    def kernel_summary(self) -> str:
        if self.graph is None:
            return "not read (the onnx package is not installed)"
        counts = Counter(node.op_type for node in self.graph.graph.node if node.op_type in RECURRENT_OPS)
        if not counts:
            return "no LSTM/GRU/RNN op and no Loop in the main graph"
        return ", ".join(f"{n} {op}{' op' if op not in ('Loop', 'Scan') else ''}" for op, n in sorted(counts.items()))


def _describe(node: Any) -> str:
    if node.op_type in ("Loop", "Scan"):
        return f"ONNX {node.op_type} (a step graph)"
    attributes = {a.name: a for a in node.attribute}
    direction = attributes["direction"].s.decode() if "direction" in attributes else "forward"
    text = f"ONNX {node.op_type} op ({direction}"
    if node.op_type == "GRU" and "linear_before_reset" in attributes:
        text += f", linear_before_reset={attributes['linear_before_reset'].i}"
    return text + ")"
