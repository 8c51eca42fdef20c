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
from rnnparity.cell import Cell, StepRecord
from rnnparity.checks import check_bool
from rnnparity.layout import step_index, step_span
from rnnparity.rnn import RecurrentLayer

# Where the step finds each gate in its gate-major arrays (layout.STEP_ORDER["lstm"]), and
# the adjacent i, f, o blocks that one recurrent_activation call activates together.
_GATE = step_index("lstm")
_I, _F, _O, _C = _GATE["i"], _GATE["f"], _GATE["o"], _GATE["c"]
_IFO = step_span("lstm", "ifo")


class LSTMCell(Cell):
    """One LSTM step: ``(x_t, [h_tm1, c_tm1]) -> (h, [h, c])``."""

    kind = "lstm"
    n_states = 2

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
        self.unit_forget_bias = check_bool(unit_forget_bias, "unit_forget_bias")

    def _extra_config(self) -> dict[str, Any]:
        return {"unit_forget_bias": self.unit_forget_bias}

    def recurrent_step(
        self, x_proj: np.ndarray, states: list[np.ndarray], record: StepRecord | None = None
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """The equations above; every gate is a contiguous ``(batch, units)`` block of ``z``,
        activated in place (the step owns ``z``)."""
        h_tm1, c_tm1 = states
        assert self.recurrent_gates is not None
        z = np.matmul(h_tm1, self.recurrent_gates)  # (4, batch, units), gates in STEP_ORDER
        z += x_proj
        if record is not None:
            record.pre[...] = z
            record.h_tm1[...] = h_tm1
        self._recurrent_activation_in_place(z[_IFO])  # i, f and o in one call
        i, f, o = z[_I], z[_F], z[_O]
        candidate = self._activation_in_place(z[_C])
        c = f * c_tm1
        gated_candidate = np.multiply(i, candidate, out=i)  # i's block is not read again
        c += gated_candidate
        activated_c = self.activation(c)  # not in place: c is a state, and linear returns c itself
        h = o * activated_c
        if record is not None:
            record.keep(c_tm1, c)
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
        assert isinstance(self.cell, LSTMCell)
        return self.cell.recurrent_activation_name

    @property
    def unit_forget_bias(self) -> bool:
        assert isinstance(self.cell, LSTMCell)
        return self.cell.unit_forget_bias
