"""``rnnparity verify MODEL --against PORT``: the same Keras model, converted or run elsewhere.

A port is a ``.onnx`` file (run by onnxruntime, :mod:`.onnx`), a ``.tflite`` file (the LiteRT
interpreter, else ``tf.lite.Interpreter``, :mod:`.tflite`) or a Keras 3 backend name (the same
``.keras`` file run in a subprocess with ``KERAS_BACKEND`` set, :mod:`.backend`). Each runtime
is imported only in its own module, and only when a port of that kind is checked.
:mod:`.common` holds what every port shares (the port interface, the Keras side, the inputs),
:mod:`.check` the call loop and the comparison, :mod:`.localize` the search for the first
diverging recurrent layer, :mod:`.report` the report (printed by ``rnnparity.cli.against``).
"""

from __future__ import annotations

from rnnparity.files.ports.check import DEFAULT_STATEFUL_CALLS, open_port, verify_against
from rnnparity.files.ports.common import BACKENDS, PAD_CHOICES, PortError
from rnnparity.files.ports.report import PortReport

__all__ = [
    "BACKENDS",
    "DEFAULT_STATEFUL_CALLS",
    "PAD_CHOICES",
    "PortError",
    "PortReport",
    "open_port",
    "verify_against",
]
