"""NumPy twins of the Keras recurrent layers, and the tools that prove they match Keras.

``import rnnparity`` loads NumPy only; Keras is imported lazily by :func:`from_keras`, and
h5py by :mod:`rnnparity.files.legacy` (old Keras HDF5 files) when it reads one.
"""

from __future__ import annotations

from typing import Any

from rnnparity.backprop import gradients
from rnnparity.bidirectional import Bidirectional
from rnnparity.compare import assert_parity, compare
from rnnparity.conv_lstm import ConvLSTM1D, ConvLSTM2D, ConvLSTM3D, ConvLSTMCell
from rnnparity.files import legacy
from rnnparity.gru import GRU, GRUCell
from rnnparity.lstm import LSTM, LSTMCell
from rnnparity.rnn import RNN
from rnnparity.simple_rnn import SimpleRNN, SimpleRNNCell
from rnnparity.stacked import StackedRNNCells
from rnnparity.threads import blas_threads

__version__ = "0.1.0"

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "Bidirectional",
    "ConvLSTM1D",
    "ConvLSTM2D",
    "ConvLSTM3D",
    "ConvLSTMCell",
    "GRUCell",
    "LSTMCell",
    "SimpleRNN",
    "SimpleRNNCell",
    "StackedRNNCells",
    "assert_parity",
    "blas_threads",
    "compare",
    "drift",
    "from_keras",
    "gradients",
    "legacy",
    "verify",
]


def from_keras(layer: Any) -> Any:
    """A twin with ``layer``'s configuration and a copy of its weights (see keras_adapter)."""
    from rnnparity.suite.keras_adapter import from_keras as _from_keras

    return _from_keras(layer)


def verify(path: str, **options: Any) -> Any:
    """Run the saved model ``path`` and check every recurrent layer's twin against what Keras
    computed; returns a report (``.ok``, ``.layers``). Options as
    :func:`rnnparity.files.verify.verify` (``inputs_path``, ``batch_size``, ``timesteps``, ``seed``, ...)."""
    from rnnparity.files.verify import verify as _verify

    return _verify(path, **options)


def drift(path: str, *, to: str = "keras3", inputs: Any = None, **options: Any) -> Any:
    """Would the saved model ``path`` compute other numbers under the Keras ``to`` (``"keras3"``
    or ``"tf-keras"``)? Returns a report (``.drifts``, ``.layers``, ``.outputs``, ``.verdict``,
    ``.before``/``.after``). Options as :func:`rnnparity.files.drift.drift`."""
    from rnnparity.files.drift import drift as _drift

    return _drift(path, to=to, inputs=inputs, **options)
