"""GRUCell and GRU, the NumPy twins of ``keras.layers.GRUCell`` / ``keras.layers.GRU``.

Gates in Keras's order ``z, r, h`` (update, reset, candidate). With ``x_z, x_r, x_h`` the
blocks of ``x_t @ kernel + input_bias`` and ``u_z, u_r, u_h`` those of
``recurrent_kernel``::

    z  = recurrent_activation(x_z + h_tm1 @ u_z + b_rz)
    r  = recurrent_activation(x_r + h_tm1 @ u_r + b_rr)
    reset_after=True  (Keras default, cuDNN-compatible):
        hh = activation(x_h + r * (h_tm1 @ u_h + b_rh))
    reset_after=False (original GRU, Keras 2.2 default):
        hh = activation(x_h + (r * h_tm1) @ u_h)
    h  = z * h_tm1 + (1 - z) * hh

Shapes: ``kernel (input_dim, 3 * units)``, ``recurrent_kernel (units, 3 * units)``;
``bias (2, 3 * units)`` with ``reset_after=True`` (row 0 input bias, row 1 recurrent bias
``b_r*``), else ``(3 * units,)`` (input bias only).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rnnparity.activations import ActivationLike
from rnnparity.rnn import Cell, RecurrentLayer, _check_bool


class GRUCell(Cell):
    """One GRU step: ``(x_t, [h_tm1]) -> (h, [h])``."""

    kind = "gru"
    n_states = 1
    step_order = ("z", "r", "h")

    def __init__(
        self,
        units: int,
        activation: ActivationLike = "tanh",
        recurrent_activation: ActivationLike = "sigmoid",
        use_bias: bool = True,
        reset_after: bool = True,
        dtype: Any = "float32",
        keras_version: int = 3,
        **training_only_args: Any,
    ) -> None:
        self.reset_after = _check_bool(reset_after, "reset_after")
        super().__init__(units, activation, recurrent_activation, use_bias, dtype, keras_version, **training_only_args)

    def _describe(self) -> str:
        return f"GRU(units={self.units}, use_bias={self.use_bias}, reset_after={self.reset_after})"

    def _extra_config(self) -> dict[str, Any]:
        return {"reset_after": self.reset_after}

    def _input_bias(self) -> np.ndarray | None:
        if self.bias is None:
            return None
        return self.bias[0] if self.reset_after else self.bias

    def _prepare(self) -> None:
        super()._prepare()
        self._recurrent_bias_gates = None
        if self.bias is not None and self.reset_after:
            self._recurrent_bias_gates = self.by_gate(self.bias[1])[:, None, :]

    def recurrent_step(self, x_proj: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        (h_tm1,) = states
        assert self._recurrent_gates is not None
        # x_proj is this step's own (3, batch, units) buffer, gates z, r, h: the gates are
        # computed into it in place, z and r (both recurrent_activation) in one call.
        activation, recurrent_activation = self._activation_in_place, self._recurrent_activation_in_place
        if self.reset_after:
            inner = np.matmul(h_tm1, self._recurrent_gates)
            if self._recurrent_bias_gates is not None:
                inner += self._recurrent_bias_gates
            z, r = recurrent_activation(np.add(x_proj[:2], inner[:2], out=x_proj[:2]))
            hh = activation(np.add(x_proj[2], np.multiply(r, inner[2], out=inner[2]), out=x_proj[2]))
        else:
            # reset_before multiplies r into h_tm1 before the candidate's matmul, so that
            # block needs its own matmul; z and r share one.
            z, r = recurrent_activation(np.add(x_proj[:2], np.matmul(h_tm1, self._recurrent_gates[:2]), out=x_proj[:2]))
            hh = activation(np.add(x_proj[2], (r * h_tm1) @ self._recurrent_gates[2], out=x_proj[2]))
        h = z * h_tm1
        h += np.multiply(1 - z, hh, out=hh)
        return h, [h]


class GRU(RecurrentLayer):
    """NumPy twin of ``keras.layers.GRU``; returns ``output`` or ``output, h``."""

    cell_class = GRUCell

    def __init__(
        self,
        units: int,
        activation: ActivationLike = "tanh",
        recurrent_activation: ActivationLike = "sigmoid",
        use_bias: bool = True,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        zero_output_for_mask: bool = False,
        reset_after: bool = True,
        dtype: Any = "float32",
        keras_version: int = 3,
        time_major: bool = False,
        backend: str = "tensorflow",
        **training_only_args: Any,
    ) -> None:
        cell = GRUCell(units, activation, recurrent_activation, use_bias, reset_after, dtype, keras_version, **training_only_args)
        super().__init__(cell, return_sequences, return_state, go_backwards, stateful, zero_output_for_mask, time_major, backend)

    @property
    def recurrent_activation(self) -> str:
        return self.cell.recurrent_activation_name

    @property
    def reset_after(self) -> bool:
        assert isinstance(self.cell, GRUCell)
        return self.cell.reset_after
