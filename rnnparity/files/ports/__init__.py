"""``rnnparity verify MODEL --against PORT``: the same Keras model, converted or run elsewhere.

A port is a ``.onnx`` file (run by onnxruntime, :mod:`.onnx`), a ``.tflite`` file (the LiteRT
interpreter, else ``tf.lite.Interpreter``, :mod:`.tflite`) or a Keras 3 backend name (the same
``.keras`` file run in a subprocess with ``KERAS_BACKEND`` set, :mod:`.backend`). Each runtime
is imported only in its own module, and only when a port of that kind is checked.
:mod:`.common` holds what every port shares: matching inputs and outputs, the call loop, the
comparison, localizing the first diverging recurrent layer, and the report.
"""

from __future__ import annotations

from rnnparity.files.ports.common import (
    BACKENDS,
    PAD_CHOICES,
    PortError,
    PortReport,
    format_report,
    open_port,
    verify_against,
)

__all__ = ["BACKENDS", "PAD_CHOICES", "PortError", "PortReport", "format_report", "open_port", "verify_against"]
