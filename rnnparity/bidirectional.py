"""Bidirectional, the NumPy twin of ``keras.layers.Bidirectional``.

Two copies of a recurrent layer read the same sequence, one forwards and one backwards, and
their outputs are merged::

    y     = forward_layer(x)            # go_backwards as given
    y_rev = backward_layer(x)           # go_backwards flipped
    y_rev = y_rev reversed in time      # only with return_sequences, so steps line up
    output = concat(y, y_rev) | y + y_rev | y * y_rev | (y + y_rev) / 2 | [y, y_rev]

What Keras does, and the twin with it:

* the forward layer is a fresh copy of ``layer`` (no carried state); the backward layer is
  another copy with ``go_backwards=True`` (Keras 3) or ``not go_backwards`` (Keras 2), or
  the given ``backward_layer``;
* both layers get ``zero_output_for_mask = return_sequences``: masked steps output zeros;
* ``initial_state`` is split in halves: the first half for the forward layer;
* with ``return_state`` the result is ``output, *forward_states, *backward_states``
  (``output, h_fwd, c_fwd, h_bwd, c_bwd`` for LSTM); with ``merge_mode=None`` the output
  itself is two items, ``y, y_rev``;
* weights are the forward layer's followed by the backward layer's;
* around a ConvLSTM1D/2D/3D the same holds, the time axis still axis 1; ``concat`` joins
  the last axis of Keras's layout (the filters with ``channels_last``, the last spatial axis
  with ``channels_first``, as Keras does);
* the wrapper has a dtype of its own (Keras's default float32 unless given). When it
  differs from the wrapped layers', Keras casts floating inputs to it first (Keras 3 also
  the initial states), and Keras 3 casts the merged outputs to it (not the states).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rnnparity.checks import ArrayLike, as_float_array, cast_nested, check_dtype
from rnnparity.rnn import LayerOutput, RecurrentLayer

MERGE_MODES = ("concat", "sum", "mul", "ave", None)


class Bidirectional:
    """Twin of ``keras.layers.Bidirectional(layer, merge_mode, backward_layer)``."""

    def __init__(
        self,
        layer: RecurrentLayer,
        merge_mode: str | None = "concat",
        backward_layer: RecurrentLayer | None = None,
        dtype: Any = "float32",
    ) -> None:
        if not isinstance(layer, RecurrentLayer):
            raise TypeError(
                "layer must be an rnnparity recurrent layer (LSTM, GRU, SimpleRNN, RNN, ConvLSTM1D/2D/3D); "
                f"got {type(layer).__name__}"
            )
        if merge_mode not in MERGE_MODES:
            raise ValueError(f"merge_mode must be one of {MERGE_MODES}; got {merge_mode!r}")
        self.keras_version = layer.keras_version
        self.merge_mode = merge_mode
        self.dtype = check_dtype(dtype)
        self.forward_layer = layer.fresh_copy()
        if backward_layer is None:
            self.backward_layer = layer.fresh_copy()
            self.backward_layer.go_backwards = True if self.keras_version == 3 else not layer.go_backwards
        else:
            if not isinstance(backward_layer, RecurrentLayer):
                raise TypeError(
                    f"backward_layer must be an rnnparity recurrent layer or None; got {type(backward_layer).__name__}"
                )
            self.backward_layer = backward_layer
        self._check_pair()
        for wrapped in (self.forward_layer, self.backward_layer):
            wrapped.zero_output_for_mask = wrapped.return_sequences

    def _check_pair(self) -> None:
        forward, backward = self.forward_layer, self.backward_layer
        if forward.go_backwards == backward.go_backwards:
            raise ValueError(
                "the forward and backward layers must read in opposite directions; got go_backwards="
                f"{forward.go_backwards} for both"
                + (" (in Keras 3 the backward copy always has go_backwards=True)" if self.keras_version == 3 else "")
            )
        for name in ("stateful", "return_sequences", "return_state", "keras_version", "time_major"):
            if getattr(forward, name) != getattr(backward, name):
                raise ValueError(
                    f"the forward and backward layers must have the same {name}; got {getattr(forward, name)!r} "
                    f"and {getattr(backward, name)!r}"
                )

    # ------------------------------------------------------------------ attributes
    @property
    def return_sequences(self) -> bool:
        return self.forward_layer.return_sequences

    @property
    def return_state(self) -> bool:
        return self.forward_layer.return_state

    @property
    def stateful(self) -> bool:
        return self.forward_layer.stateful

    @property
    def built(self) -> bool:
        return self.forward_layer.built and self.backward_layer.built

    @property
    def states(self) -> list[Any] | None:
        """Forward then backward carried states of a stateful pair (None before a call)."""
        forward, backward = self.forward_layer.states, self.backward_layer.states
        return None if forward is None or backward is None else [*forward, *backward]

    def set_weights(self, weights: Sequence[ArrayLike]) -> None:
        """Keras order: the forward layer's weights, then the backward layer's."""
        if isinstance(weights, np.ndarray) or not isinstance(weights, Sequence):
            raise TypeError(f"weights must be a list of arrays; got {type(weights).__name__}")
        n_forward = self.forward_layer.cell.weight_count
        n_backward = self.backward_layer.cell.weight_count
        if len(weights) != n_forward + n_backward:
            raise ValueError(
                f"Bidirectional expects {n_forward + n_backward} weights ({n_forward} forward, then {n_backward} "
                f"backward); got {len(weights)}"
            )
        self.forward_layer.set_weights(list(weights[:n_forward]))
        self.backward_layer.set_weights(list(weights[n_forward:]))

    def get_weights(self) -> list[np.ndarray]:
        return [*self.forward_layer.get_weights(), *self.backward_layer.get_weights()]

    def reset_state(self, states: Any = None) -> None:
        """Zero both layers' carried states, or set them: forward half first."""
        if states is None:
            self.forward_layer.reset_state()
            self.backward_layer.reset_state()
            return
        forward, backward = self.split_states(states, "states")
        self.forward_layer.reset_state(forward)
        self.backward_layer.reset_state(backward)

    def reset_states(self, states: Any = None) -> None:
        """Keras 2 name of :meth:`reset_state`."""
        self.reset_state(states)

    @staticmethod
    def split_states(states: Any, argument: str) -> tuple[list[Any], list[Any]]:
        """``states`` (the forward layer's, then the backward layer's) split in its two halves."""
        if not isinstance(states, (list, tuple)) or len(states) % 2:
            given = f"{len(states)} items" if isinstance(states, (list, tuple)) else type(states).__name__
            raise ValueError(
                f"{argument} must be a list with the forward layer's states followed by the backward layer's "
                f"(an even count); got {given}"
            )
        half = len(states) // 2
        return list(states[:half]), list(states[half:])

    # ------------------------------------------------------------------ call
    def __call__(
        self,
        inputs: ArrayLike,
        initial_state: Any = None,
        mask: ArrayLike | None = None,
        training: bool | None = None,
    ) -> LayerOutput:
        forward_state = backward_state = None
        if self.dtype != self.forward_layer.dtype:
            inputs = as_float_array(inputs, self.dtype, "inputs")
            if initial_state is not None and self.keras_version == 3:
                initial_state = cast_nested(initial_state, self.dtype)
        if initial_state is not None:
            forward_state, backward_state = self.split_states(initial_state, "initial_state")
        y = self.forward_layer(inputs, initial_state=forward_state, mask=mask, training=training)
        y_rev = self.backward_layer(inputs, initial_state=backward_state, mask=mask, training=training)
        states: list[Any] = []
        if self.return_state:
            assert isinstance(y, (list, tuple)) and isinstance(y_rev, (list, tuple))
            states = [*y[1:], *y_rev[1:]]
            y, y_rev = y[0], y_rev[0]
        assert isinstance(y, np.ndarray) and isinstance(y_rev, np.ndarray)
        if self.keras_version == 3:
            y, y_rev = y.astype(self.dtype, copy=False), y_rev.astype(self.dtype, copy=False)
        if self.return_sequences:
            time_axis = 0 if self.forward_layer.time_major else 1
            y_rev = np.flip(y_rev, axis=time_axis)
        output: Any
        with np.errstate(over="ignore", invalid="ignore"):
            if self.merge_mode == "concat":
                output = np.concatenate([y, y_rev], axis=-1)
            elif self.merge_mode == "sum":
                output = y + y_rev
            elif self.merge_mode == "ave":
                output = (y + y_rev) / 2
            elif self.merge_mode == "mul":
                output = y * y_rev
            else:
                output = [y, np.ascontiguousarray(y_rev)]
        container = tuple if self.keras_version == 3 else list
        if self.merge_mode is None:
            items = [*output, *states]
        elif self.return_state:
            items = [output, *states]
        else:
            return output
        return container(items)

    def __repr__(self) -> str:
        return f"Bidirectional({self.forward_layer!r}, merge_mode={self.merge_mode!r})"
