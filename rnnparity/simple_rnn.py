"""SimpleRNNCell and SimpleRNN, the NumPy twins of ``keras.layers.SimpleRNN(Cell)``.

One step: ``h = activation(x_t @ kernel + bias + h_tm1 @ recurrent_kernel)``, with
``kernel (input_dim, units)``, ``recurrent_kernel (units, units)``, ``bias (units,)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rnnparity.activations import ActivationLike
from rnnparity.cell import Cell, StepRecord
from rnnparity.layout import step_index
from rnnparity.rnn import RecurrentLayer

_H = step_index("simple_rnn")["h"]  # the one gate block


class SimpleRNNCell(Cell):
    """One SimpleRNN step: ``(x_t, [h_tm1]) -> (h, [h])``."""

    kind = "simple_rnn"
    n_states = 1
    has_recurrent_activation = False

    def __init__(
        self,
        units: int,
        activation: ActivationLike = "tanh",
        use_bias: bool = True,
        dtype: Any = "float32",
        keras_version: int = 3,
        **training_only_args: Any,
    ) -> None:
        super().__init__(units, activation, None, use_bias, dtype, keras_version, **training_only_args)

    def describe(self) -> str:
        return f"SimpleRNN(units={self.units}, use_bias={self.use_bias})"

    def recurrent_step(
        self, x_proj: np.ndarray, states: list[np.ndarray], record: StepRecord | None = None
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        (h_tm1,) = states
        assert self.recurrent_gates is not None
        h = h_tm1 @ self.recurrent_gates[_H]
        h += x_proj[_H]
        if record is not None:
            record.pre[_H] = h
            record.h_tm1[...] = h_tm1
        h = self._activation_in_place(h)
        return h, [h]


class SimpleRNN(RecurrentLayer):
    """NumPy twin of ``keras.layers.SimpleRNN``; returns ``output`` or ``output, h``."""

    cell_class = SimpleRNNCell

    def __init__(
        self,
        units: int,
        activation: ActivationLike = "tanh",
        use_bias: bool = True,
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
        cell = SimpleRNNCell(units, activation, use_bias, dtype, keras_version, **training_only_args)
        super().__init__(cell, return_sequences, return_state, go_backwards, stateful, zero_output_for_mask, time_major, backend)
