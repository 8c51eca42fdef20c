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
    "compare",
    "from_keras",
    "gradients",
    "legacy",
]


def from_keras(layer: Any) -> Any:
    """A twin with ``layer``'s configuration and a copy of its weights (see keras_adapter)."""
    from rnnparity.suite.keras_adapter import from_keras as _from_keras

    return _from_keras(layer)
