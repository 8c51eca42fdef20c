"""ConvLSTM1D/2D/3D, the NumPy twins of ``keras.layers.ConvLSTM{1,2,3}D``: the layers around
:class:`~rnnparity.conv_lstm_cell.ConvLSTMCell` (the step, its convolutions and the shapes
are described there). A call converts Keras's layout ``(batch, time, *S, C)`` (or
``(batch, time, C, *S)``) to the time loop's rows once, runs the shared time loop
(:func:`rnnparity.rnn.run_time_loop`: masks, ``go_backwards``, output repetition, states)
with the cell bound to the inputs' spatial size, and converts the outputs and states back.
The cell classes are importable from here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from rnnparity.activations import ActivationLike
from rnnparity.cell import dtype_config
from rnnparity.checks import as_float_array, as_float_array_or_self, check_bool
from rnnparity.conv_lstm_cell import (
    DATA_FORMATS,
    GATES,
    KERAS_DEFAULT,
    PADDINGS,
    STEP_ORDER,
    ConvLSTM1DCell,
    ConvLSTM2DCell,
    ConvLSTM3DCell,
    ConvLSTMCell,
)
from rnnparity.rnn import ArrayLike, LayerCall, LayerOutput, Recorder, RecurrentLayer, run_time_loop


@dataclass
class ConvLayerCall(LayerCall):
    """A ConvLSTM call in the time loop's rows: ``inputs`` ``(T, batch, C * prod(S))``,
    ``input_shape`` their batch-major shape ``(batch, T, C * prod(S))``, states and outputs
    ``(..., F * prod(S_out))`` (the output sequence time-major), and the cell bound to the
    inputs' spatial size, which runs it."""

    cell: ConvLSTMCell | None = None


class ConvLSTM(RecurrentLayer):
    """The layer around a :class:`ConvLSTMCell`: Keras's ``ConvLSTM`` base (an ``RNN``).
    Returns ``output`` or ``output, h, c`` (a tuple in Keras 3, a list in Keras 2).
    ``zero_output_for_mask`` acts with ``keras_version=3`` only: tf_keras's ConvLSTM accepts
    it and ignores it."""

    rank: ClassVar[int]
    cell_class = ConvLSTMCell

    def __init__(
        self,
        filters: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] = 1,
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: int | Sequence[int] = 1,
        activation: ActivationLike = "tanh",
        recurrent_activation: ActivationLike = KERAS_DEFAULT,
        use_bias: bool = True,
        unit_forget_bias: bool = True,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        zero_output_for_mask: bool = False,
        dtype: Any = "float32",
        keras_version: int = 3,
        backend: str = "tensorflow",
        time_major: bool = False,
        **training_only_args: Any,
    ) -> None:
        if check_bool(time_major, "time_major"):
            raise ValueError("time_major=True is not supported by Keras's ConvLSTM layers; got time_major=True")
        if training_only_args.get("unroll"):
            raise ValueError("unroll=True is refused by Keras's ConvLSTM layers; got unroll=True")
        cell = ConvLSTMCell(
            self.rank,
            filters,
            kernel_size,
            strides,
            padding,
            data_format,
            dilation_rate,
            activation,
            recurrent_activation,
            use_bias,
            unit_forget_bias,
            dtype,
            keras_version,
            **training_only_args,
        )
        super().__init__(cell, return_sequences, return_state, go_backwards, stateful, zero_output_for_mask, False, backend)
        self.conv_cell = cell

    # Keras's attribute names
    @property
    def filters(self) -> int:
        return self.conv_cell.filters

    @property
    def kernel_size(self) -> tuple[int, ...]:
        return self.conv_cell.kernel_size

    @property
    def strides(self) -> tuple[int, ...]:
        return self.conv_cell.strides

    @property
    def padding(self) -> str:
        return self.conv_cell.padding

    @property
    def data_format(self) -> str:
        return self.conv_cell.data_format

    @property
    def dilation_rate(self) -> tuple[int, ...]:
        return self.conv_cell.dilation_rate

    @property
    def recurrent_activation(self) -> str:
        return self.conv_cell.recurrent_activation_name

    @property
    def unit_forget_bias(self) -> bool:
        return self.conv_cell.unit_forget_bias

    # ------------------------------------------------------------------ state
    def reset_state(self, states: Any = None) -> None:
        """Zero the carried states of a stateful layer, or set them to ``states`` ``[h, c]``
        in Keras's layout."""
        if not self.stateful:
            raise ValueError("reset_state() is for stateful layers; this layer was built with stateful=False")
        if states is None:
            if self._states is not None:
                self._states = [np.zeros_like(s) for s in self._states]
            return
        if not isinstance(states, (list, tuple)) or len(states) != 2:
            raise ValueError(f"states must be a list [h, c] of 2 arrays; got {type(states).__name__}")
        arrays = [as_float_array(s, self.dtype, f"states ({n})") for s, n in zip(states, ("h", "c"))]
        if arrays[0].shape != arrays[1].shape or arrays[0].ndim != self.rank + 2:
            raise ValueError(
                f"states (h, c) must both have rank {self.rank + 2} and one shape; got {arrays[0].shape} and {arrays[1].shape}"
            )
        if self._expected_batch_size is not None and arrays[0].shape[0] != self._expected_batch_size:
            raise ValueError(
                f"states have batch size {arrays[0].shape[0]}; this stateful layer carries batch size {self._expected_batch_size}"
            )
        self._states = arrays
        self._expected_batch_size = arrays[0].shape[0]

    # ------------------------------------------------------------------ call
    def _sequence_inputs(self, x: np.ndarray) -> tuple[np.ndarray, ConvLSTMCell]:
        """``x`` checked; returns the time-major loop rows ``(T, batch, C * prod(S))`` and the bound cell."""
        cell = self.conv_cell
        if x.ndim != self.rank + 3:
            layout = (
                "(batch, time, channels, *spatial)"
                if cell.data_format == "channels_first"
                else "(batch, time, *spatial, channels)"
            )
            raise ValueError(f"inputs must be rank {self.rank + 3} {layout} for ConvLSTM{self.rank}D; got shape {x.shape}")
        channel_axis = 2 if cell.data_format == "channels_first" else -1
        if x.shape[channel_axis] != cell.input_dim:
            raise ValueError(
                f"inputs have {x.shape[channel_axis]} channels (axis {channel_axis}, {cell.data_format}); "
                f"{cell.describe()} was given weights for {cell.input_dim}"
            )
        if x.shape[1] == 0:
            raise ValueError(f"inputs have 0 timesteps (shape {x.shape}); Keras refuses an empty sequence too")
        spatial = x.shape[3:] if cell.data_format == "channels_first" else x.shape[2:-1]
        bound = cell.bind(tuple(spatial))
        rows = bound.to_rows(x)  # (batch, T, C * prod(S))
        return rows.transpose(1, 0, 2), bound

    def _starting_states(self, initial_state: Any, bound: ConvLSTMCell, batch: int) -> tuple[list[np.ndarray], bool]:
        """The state rows the call starts from, and whether they are the given ``initial_state``."""
        if self.stateful and self._expected_batch_size is not None and batch != self._expected_batch_size:
            raise ValueError(
                f"this stateful layer carries states for batch size {self._expected_batch_size}; "
                f"got inputs with batch size {batch} (build a new layer)"
            )
        carried = None
        if self.stateful and self._states is not None:
            if self._states[0].shape != bound.state_shape(batch):
                raise ValueError(
                    f"this stateful layer carries states of shape {self._states[0].shape}; inputs of shape "
                    f"{bound.input_shape(batch)} per step need {bound.state_shape(batch)}"
                )
            carried = [bound.to_rows(s).copy() for s in self._states]
        if initial_state is not None:
            given = bound.check_states(initial_state, batch, "initial_state")
            if carried is not None and self.keras_version == 2 and any(np.count_nonzero(s) for s in carried):
                return carried, False  # Keras 2 uses the carried states whenever any is non-zero
            return given, True
        if carried is not None:
            return carried, False
        return [np.zeros((batch, bound.output_size), dtype=self.dtype) for _ in range(2)], False

    def __call__(
        self,
        inputs: ArrayLike,
        initial_state: Any = None,
        mask: ArrayLike | None = None,
        training: bool | None = None,
    ) -> LayerOutput:
        """Run the layer on ``(batch, time, *S, C)`` (or ``(batch, time, C, *S)``) inputs;
        ``mask`` is ``(batch, time)``. Returns exactly what the emulated Keras returns."""
        return super().__call__(inputs, initial_state, mask, training)

    def call_cell(self, call: LayerCall) -> ConvLSTMCell:
        assert isinstance(call, ConvLayerCall) and call.cell is not None
        return call.cell

    def prepare_call(
        self,
        inputs: ArrayLike,
        initial_state: Any = None,
        mask: ArrayLike | None = None,
        training: bool | None = None,
        copy_inputs: bool = True,
    ) -> ConvLayerCall:
        """The call checked, not yet run, in the loop's rows (see :class:`ConvLayerCall`)."""
        self.cell.require_built()
        if training and self.cell.dropout_active:
            raise ValueError(
                "training=True with dropout > 0 draws random masks that a twin cannot reproduce; call with training=False"
            )
        convert = as_float_array if copy_inputs else as_float_array_or_self
        x = convert(inputs, self.dtype, "inputs")
        time_rows, bound = self._sequence_inputs(x)
        timesteps, batch, width = time_rows.shape
        time_mask = self._check_mask(mask, batch, timesteps)
        states, used_initial_state = self._starting_states(initial_state, bound, batch)
        return ConvLayerCall(time_rows, (batch, timesteps, width), time_mask, states, None, used_initial_state, cell=bound)

    @property
    def zeroes_masked_output(self) -> bool:
        """tf_keras's convolutional RNN never hands ``zero_output_for_mask`` to its loop (a
        Bidirectional sets it in vain): masked steps repeat the last output there."""
        return self.zero_output_for_mask and self.keras_version == 3

    def run_call(self, call: LayerCall, recorder: Recorder | None = None, keep_sequence: bool = True) -> None:
        """Run ``call`` through the time loop (see :meth:`RecurrentLayer.run_call`); the output
        sequence is kept time-major, in rows, and a stateful layer carries its states in Keras's layout."""
        bound = self.call_cell(call)
        timesteps, batch, _ = call.inputs.shape
        outputs = None
        if self.return_sequences and keep_sequence:
            outputs = np.empty((timesteps, batch, bound.output_size), dtype=self.dtype)
        with np.errstate(over="ignore", invalid="ignore"), self.conv_cell.scratch.lend() as arrays:
            # The layer's kept buffers, for this loop only; the projection reuses one buffer
            # only in a plain call (a recorded call's cell may outlive the loop).
            bound._arrays, bound._reuse_projection = arrays, recorder is None
            try:
                last_output, call.final_states = run_time_loop(
                    bound,
                    call.inputs,
                    call.states,
                    call.mask,
                    self.go_backwards,
                    self.zeroes_masked_output,
                    outputs,
                    self.backend,
                    recorder,
                )
            finally:
                bound._arrays, bound._reuse_projection = {}, False
        call.output = outputs if outputs is not None else last_output
        if self.stateful:
            self._states = [bound.from_rows(s).copy() for s in call.final_states]
            self._expected_batch_size = batch

    def pack_result(self, call: LayerCall) -> LayerOutput:
        """What the emulated Keras returns, in its layout, for a call that has run."""
        bound = self.call_cell(call)
        assert call.output is not None
        if call.output.ndim == 3:  # the output sequence, time-major rows
            output = np.ascontiguousarray(bound.from_rows(call.output).swapaxes(0, 1))
        else:
            output = bound.from_rows(call.output)
        if not self.return_state:
            return output
        packed = [output, *(bound.from_rows(s) for s in call.final_states)]
        return tuple(packed) if self.keras_version == 3 else packed

    def call_output_shape(self, call: LayerCall) -> tuple[int, ...]:
        """The shape of the output ``call`` returns, in Keras's layout (before it has run)."""
        timesteps, batch, _ = call.inputs.shape
        state_shape = self.call_cell(call).state_shape(batch)
        return (batch, timesteps, *state_shape[1:]) if self.return_sequences else state_shape

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict[str, Any]:
        """The Keras ``get_config()`` keys that decide what the layer computes."""
        args = self.cell.training_only_args
        config = self._rnn_config(args.get("name"), args.get("trainable", True), False)
        config.pop("time_major", None)
        config.update(self.conv_cell.get_config())
        config["dtype"] = dtype_config(self.dtype, self.keras_version)
        return config

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(filters={self.filters}, kernel_size={self.kernel_size}, "
            f"keras_version={self.keras_version}, dtype={self.dtype.name!r}, data_format={self.data_format!r}, "
            f"return_sequences={self.return_sequences}, return_state={self.return_state})"
        )


class ConvLSTM1D(ConvLSTM):
    """NumPy twin of ``keras.layers.ConvLSTM1D``: inputs ``(batch, time, length, channels)``."""

    rank = 1


class ConvLSTM2D(ConvLSTM):
    """NumPy twin of ``keras.layers.ConvLSTM2D``: inputs ``(batch, time, rows, cols, channels)``."""

    rank = 2


class ConvLSTM3D(ConvLSTM):
    """NumPy twin of ``keras.layers.ConvLSTM3D``: inputs ``(batch, time, d1, d2, d3, channels)``."""

    rank = 3


# The cell classes and the layout constants, importable from the layer's module as well.
__all__ = [
    "DATA_FORMATS",
    "GATES",
    "KERAS_DEFAULT",
    "PADDINGS",
    "STEP_ORDER",
    "ConvLSTM",
    "ConvLSTM1D",
    "ConvLSTM1DCell",
    "ConvLSTM2D",
    "ConvLSTM2DCell",
    "ConvLSTM3D",
    "ConvLSTM3DCell",
    "ConvLSTMCell",
    "ConvLayerCall",
]
