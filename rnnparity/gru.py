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
from rnnparity.cell import Cell, StepRecord
from rnnparity.checks import check_bool
from rnnparity.layout import step_index, step_span
from rnnparity.rnn import RecurrentLayer

# Where the step finds each gate in its gate-major arrays (layout.STEP_ORDER["gru"]): z and
# r are adjacent, so one recurrent_activation call activates both.
_GATE = step_index("gru")
_Z, _R, _H = _GATE["z"], _GATE["r"], _GATE["h"]
_ZR = step_span("gru", "zr")
# With reset_after, a record keeps a 4th block after the gates: h_tm1 @ U_h + br_h, the
# candidate's recurrent part before the reset gate multiplies it.
RECURRENT_CANDIDATE = len(_GATE)


class GRUCell(Cell):
    """One GRU step: ``(x_t, [h_tm1]) -> (h, [h])``."""

    kind = "gru"
    n_states = 1

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
        self.reset_after = check_bool(reset_after, "reset_after")
        super().__init__(units, activation, recurrent_activation, use_bias, dtype, keras_version, **training_only_args)

    def describe(self) -> str:
        return f"GRU(units={self.units}, use_bias={self.use_bias}, reset_after={self.reset_after})"

    def _extra_config(self) -> dict[str, Any]:
        return {"reset_after": self.reset_after}

    def _input_bias(self) -> np.ndarray | None:
        if self.bias is None:
            return None
        return self.bias[0] if self.reset_after else self.bias

    def _prepare(self) -> None:
        super()._prepare()
        # The recurrent bias (reset_after only), gate-major like input_bias_gates.
        self.recurrent_bias_gates: np.ndarray | None = None
        if self.bias is not None and self.reset_after:
            self.recurrent_bias_gates = self.by_gate(self.bias[1])[:, None, :]

    @property
    def record_blocks(self) -> int:
        """The gates' pre-activation blocks, and ``RECURRENT_CANDIDATE`` with ``reset_after``."""
        return len(_GATE) + 1 if self.reset_after else len(_GATE)

    def recurrent_step(
        self, x_proj: np.ndarray, states: list[np.ndarray], record: StepRecord | None = None
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """The equations above. ``x_proj`` is this step's own ``(3, batch, units)`` buffer
        (gates in STEP_ORDER): each gate is computed into its block, in place."""
        (h_tm1,) = states
        assert self.recurrent_gates is not None
        if self.reset_after:
            inner = np.matmul(h_tm1, self.recurrent_gates)  # h_tm1 @ U, every gate
            if self.recurrent_bias_gates is not None:
                inner += self.recurrent_bias_gates
            inner_zr = inner[_ZR]
        else:
            # r multiplies h_tm1 before the candidate's matmul: only z and r share one.
            inner_zr = np.matmul(h_tm1, self.recurrent_gates[_ZR])
        zr = np.add(x_proj[_ZR], inner_zr, out=x_proj[_ZR])
        if record is not None:
            record.pre[_ZR] = zr
            record.h_tm1[...] = h_tm1
        self._recurrent_activation_in_place(zr)  # z and r in one call
        z, r = x_proj[_Z], x_proj[_R]
        if self.reset_after:
            if record is not None:
                record.pre[RECURRENT_CANDIDATE] = inner[_H]
            reset_inner = np.multiply(r, inner[_H], out=inner[_H])  # r * (h_tm1 @ U_h + br_h)
        else:
            reset_h = r * h_tm1
            reset_inner = reset_h @ self.recurrent_gates[_H]  # (r * h_tm1) @ U_h
        x_h = np.add(x_proj[_H], reset_inner, out=x_proj[_H])
        if record is not None:
            record.pre[_H] = x_h
        hh = self._activation_in_place(x_h)
        h = z * h_tm1
        one_minus_z = 1 - z
        update = np.multiply(one_minus_z, hh, out=hh)
        h += update
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
        assert isinstance(self.cell, GRUCell)
        return self.cell.recurrent_activation_name

    @property
    def reset_after(self) -> bool:
        assert isinstance(self.cell, GRUCell)
        return self.cell.reset_after
