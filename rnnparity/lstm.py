"""LSTMCell and LSTM, the NumPy twins of ``keras.layers.LSTMCell`` / ``keras.layers.LSTM``.

One step, with ``z = x_t @ kernel + h_tm1 @ recurrent_kernel + bias`` split into the gates
in Keras's order ``i, f, c, o`` (each ``(batch, units)``)::

    i = recurrent_activation(z_i)          # input gate
    f = recurrent_activation(z_f)          # forget gate
    c = f * c_tm1 + i * activation(z_c)    # new cell state
    o = recurrent_activation(z_o)          # output gate
    h = o * activation(c)                  # new hidden state = output

Shapes: ``kernel (input_dim, 4 * units)``, ``recurrent_kernel (units, 4 * units)``,
``bias (4 * units,)``. ``unit_forget_bias`` only changes how Keras *initializes* the
bias (ones in the ``f`` block); with weights set it changes nothing and is kept for config.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rnnparity.activations import ActivationLike
from rnnparity.rnn import Cell, RecurrentLayer, _check_bool


class LSTMCell(Cell):
    """One LSTM step: ``(x_t, [h_tm1, c_tm1]) -> (h, [h, c])``."""

    kind = "lstm"
    n_states = 2
    step_order = ("i", "f", "o", "c")  # the recurrent_activation gates first, adjacent

    def __init__(
        self,
        units: int,
        activation: ActivationLike = "tanh",
        recurrent_activation: ActivationLike = "sigmoid",
        use_bias: bool = True,
        unit_forget_bias: bool = True,
        dtype: Any = "float32",
        keras_version: int = 3,
        **training_only_args: Any,
    ) -> None:
        super().__init__(units, activation, recurrent_activation, use_bias, dtype, keras_version, **training_only_args)
        self.unit_forget_bias = _check_bool(unit_forget_bias, "unit_forget_bias")

    def _extra_config(self) -> dict[str, Any]:
        return {"unit_forget_bias": self.unit_forget_bias}

    def recurrent_step(self, x_proj: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        h_tm1, c_tm1 = states
        assert self._recurrent_gates is not None
        z = np.matmul(h_tm1, self._recurrent_gates)  # (4, batch, units), gates in step_order
        z += x_proj
        # Each gate is a contiguous block of z, activated in place: the three gates that
        # share recurrent_activation in one call. Same operations as the equations above.
        i, f, o = self._recurrent_activation_in_place(z[:3])
        candidate = self._activation_in_place(z[3])
        c = f * c_tm1
        c += np.multiply(i, candidate, out=i)
        h = o * self.activation(c)  # not in place: c is a state, and linear returns c itself
        return h, [h, c]


class LSTM(RecurrentLayer):
    """NumPy twin of ``keras.layers.LSTM``; returns ``output`` or ``output, h, c``."""

    cell_class = LSTMCell

    def __init__(
        self,
        units: int,
        activation: ActivationLike = "tanh",
        recurrent_activation: ActivationLike = "sigmoid",
        use_bias: bool = True,
        unit_forget_bias: bool = True,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        zero_output_for_mask: bool = False,
        dtype: Any = "float32",
        keras_version: int = 3,
        time_major: bool = False,
        backend: str = "tensorflow",
        **training_only_args: Any,
    ) -> None:
        cell = LSTMCell(
            units, activation, recurrent_activation, use_bias, unit_forget_bias, dtype, keras_version, **training_only_args
        )
        super().__init__(cell, return_sequences, return_state, go_backwards, stateful, zero_output_for_mask, time_major, backend)

    @property
    def recurrent_activation(self) -> str:
        return self.cell.recurrent_activation_name

    @property
    def unit_forget_bias(self) -> bool:
        assert isinstance(self.cell, LSTMCell)
        return self.cell.unit_forget_bias
