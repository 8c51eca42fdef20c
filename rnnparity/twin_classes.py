"""Which twin class serves each layer kind, and which recurrent Keras classes have none.

One table for the parity suite, the benchmark, the Keras adapter and the file readers, so a
new kind (or a new twin for a class listed in :data:`NO_TWIN`) is added in one place. The
kinds are those of :data:`rnnparity.layout.GATE_ORDER`; the Keras class names those of
:data:`rnnparity.layout.KERAS_CLASS_NAME`.
"""

from __future__ import annotations

from rnnparity.conv_lstm import ConvLSTM1D, ConvLSTM2D, ConvLSTM3D
from rnnparity.gru import GRU, GRUCell
from rnnparity.layout import KERAS_CLASS_NAME
from rnnparity.lstm import LSTM, LSTMCell
from rnnparity.rnn import Cell, RecurrentLayer
from rnnparity.simple_rnn import SimpleRNN, SimpleRNNCell

# The twin layer and the twin cell of each kind.
TWIN_CLASSES: dict[str, type[RecurrentLayer]] = {"lstm": LSTM, "gru": GRU, "simple_rnn": SimpleRNN}
TWIN_CELL_CLASSES: dict[str, type[Cell]] = {"lstm": LSTMCell, "gru": GRUCell, "simple_rnn": SimpleRNNCell}

# The same, by Keras class name: "LSTM" -> LSTM, "LSTMCell" -> LSTMCell.
TWIN_BY_KERAS_NAME: dict[str, type[RecurrentLayer]] = {KERAS_CLASS_NAME[kind]: cls for kind, cls in TWIN_CLASSES.items()}
TWIN_CELL_BY_KERAS_NAME: dict[str, type[Cell]] = {f"{KERAS_CLASS_NAME[kind]}Cell": cls for kind, cls in TWIN_CELL_CLASSES.items()}

# The convolutional recurrent layers, by Keras class name (one cell class for every rank).
CONV_TWIN_BY_KERAS_NAME: dict[str, type[RecurrentLayer]] = {
    "ConvLSTM1D": ConvLSTM1D,
    "ConvLSTM2D": ConvLSTM2D,
    "ConvLSTM3D": ConvLSTM3D,
}

# Recurrent Keras classes that weight files may hold but that the HDF5 readers (weights-only
# files, explain FILE.h5) do not plan twins for, and why. Empty: every class above is read
# (ConvLSTM1D/2D/3D since their kernels are recognised by shape, rnnparity.files.hdf5).
NO_TWIN: dict[str, str] = {}
