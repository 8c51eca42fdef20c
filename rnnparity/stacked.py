"""StackedRNNCells, the NumPy twin of ``keras.layers.StackedRNNCells``.

Several cells act as one: at each timestep the first cell reads ``x_t``, every later cell
reads the output of the cell before it, and the step's output is the last cell's output::

    y_0, s_0 = cell_0(x_t, s_0_tm1)
    y_1, s_1 = cell_1(y_0, s_1_tm1)
    ...
    output = y_last

The states are nested, one entry per cell, in the structure the emulated Keras uses:
Keras 3 gives every cell a list (``[[h0, c0], [h1]]`` for LSTM then GRU) unless the caller
passed a bare array for a one-state cell; Keras 2 gives one-state cells a bare array
(``[[h0, c0], h1]``). Inside the time loop they are one flat list ``[h0, c0, h1]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rnnparity.cell import Cell, StepRecord, call_one_step
from rnnparity.checks import ArrayLike


class StackedRNNCells:
    """Twin of ``keras.layers.StackedRNNCells(cells)``: one step of every cell in order.
    A :class:`~rnnparity.cell.RecurrentCell` made of cells (a stack may hold stacks)."""

    kind = "stacked"
    keras_version: int
    dtype: np.dtype
    units: int  # the last cell's
    use_bias: bool  # every cell's
    training_only_args: dict[str, Any]

    def __init__(self, cells: Sequence[Cell | StackedRNNCells]) -> None:
        if isinstance(cells, (Cell, StackedRNNCells)) or not isinstance(cells, Sequence) or isinstance(cells, (str, bytes)):
            raise TypeError(f"cells must be a list of rnnparity cells; got {type(cells).__name__}")
        cells = list(cells)
        if not cells:
            raise ValueError("cells must hold at least one cell; got an empty list")
        for index, cell in enumerate(cells):
            if not isinstance(cell, (Cell, StackedRNNCells)):
                raise TypeError(
                    f"cells[{index}] must be an rnnparity cell (LSTMCell, GRUCell, SimpleRNNCell or StackedRNNCells); "
                    f"got {type(cell).__name__}"
                )
        first = cells[0]
        for index, cell in enumerate(cells[1:], start=1):
            if cell.keras_version != first.keras_version:
                raise ValueError(
                    f"cells[{index}] emulates Keras {cell.keras_version}, cells[0] Keras {first.keras_version}; "
                    "every cell of a stack must emulate the same Keras"
                )
            if cell.dtype != first.dtype:
                raise ValueError(
                    f"cells[{index}] has dtype {cell.dtype.name}, cells[0] {first.dtype.name}; every cell of a stack "
                    "must have the same dtype"
                )
        self.cells: list[Cell | StackedRNNCells] = cells
        self._state_counts = [len(cell.flat_state_sizes) for cell in cells]  # per step, so computed once
        self.keras_version = first.keras_version
        self.dtype = first.dtype
        self.units = cells[-1].output_size
        self.use_bias = all(cell.use_bias for cell in cells)
        self.training_only_args: dict[str, Any] = {}

    # ------------------------------------------------------------------ description
    def describe(self) -> str:
        return f"StackedRNNCells([{', '.join(cell.describe() for cell in self.cells)}])"

    def __repr__(self) -> str:
        return self.describe()

    @property
    def built(self) -> bool:
        return all(cell.built for cell in self.cells)

    @property
    def input_dim(self) -> int | None:
        return self.cells[0].input_dim

    @property
    def dropout_active(self) -> bool:
        return any(cell.dropout_active for cell in self.cells)

    # ------------------------------------------------------------------ states
    @property
    def state_size(self) -> list[Any]:
        return [cell.state_size for cell in self.cells]

    @property
    def projection_width(self) -> int:
        return self.cells[0].projection_width

    @property
    def output_size(self) -> int:
        return self.cells[-1].output_size

    @property
    def flat_state_sizes(self) -> list[int]:
        return [size for cell in self.cells for size in cell.flat_state_sizes]

    @property
    def flat_state_names(self) -> list[str]:
        return [f"cell {index} {name}" for index, cell in enumerate(self.cells) for name in cell.flat_state_names]

    @property
    def output_state_index(self) -> int:
        # Keras's JAX loop repeats the first state of the last cell at a masked step.
        return len(self.flat_state_sizes) - len(self.cells[-1].flat_state_sizes) + self.cells[-1].output_state_index

    def flatten_states(self, states: Any, argument: str) -> tuple[list[Any], Any]:
        """Flatten ``[states of cell 0, states of cell 1, ...]``; a cell's entry is a list of its
        arrays, or one array for a one-state cell."""
        if not isinstance(states, (list, tuple)) or len(states) != len(self.cells):
            given = f"a {type(states).__name__} of {len(states)}" if isinstance(states, (list, tuple)) else type(states).__name__
            raise ValueError(
                f"{argument} must be a list with one entry per cell ({len(self.cells)}: "
                f"{[cell.flat_state_names for cell in self.cells]}); got {given}"
            )
        flat: list[Any] = []
        structure = []
        for index, (cell, entry) in enumerate(zip(self.cells, states)):
            entries, entry_structure = cell.flatten_states(entry, f"{argument}[{index}]")
            if len(entries) != len(cell.flat_state_sizes):
                raise ValueError(
                    f"{argument}[{index}] must hold {len(cell.flat_state_sizes)} array(s) {cell.flat_state_names} "
                    f"for {cell.describe()}; got {len(entries)}"
                )
            flat.extend(entries)
            structure.append(entry_structure)
        return flat, structure

    def pack_states(self, flat: list[np.ndarray], structure: Any = None) -> list[Any]:
        """Per-cell states after one step of the stack. Keras 3 keeps the structure it was
        given; Keras 2's stack always returns a one-state cell's state as a bare array."""
        return self._pack(flat, None if self.keras_version == 2 else structure)

    def pack_layer_states(self, flat: list[np.ndarray], structure: Any = None) -> list[Any]:
        """Per-cell states a layer returns: the structure of the given initial_state (both
        Kerases), else the structure Keras creates (:meth:`_pack`)."""
        return self._pack(flat, structure)

    def _pack(self, flat: list[np.ndarray], structure: Any) -> list[Any]:
        if structure is None:
            # What Keras builds when it creates the states itself: a list per cell in Keras 3;
            # in Keras 2 a bare array for a one-state cell.
            structure = [
                None
                if isinstance(cell, StackedRNNCells)
                else "single"
                if self.keras_version == 2 and len(cell.flat_state_sizes) == 1
                else "list"
                for cell in self.cells
            ]
        packed = []
        offset = 0
        for cell, entry_structure, count in zip(self.cells, structure, self._state_counts):
            chunk = flat[offset : offset + count]
            packed.append(
                cell._pack(chunk, entry_structure)
                if isinstance(cell, StackedRNNCells)
                else cell.pack_states(chunk, entry_structure)
            )
            offset += count
        return packed

    # ------------------------------------------------------------------ weights
    def set_weights(self, weights: Sequence[ArrayLike]) -> None:
        """Load every cell's Keras weights, concatenated in cell order (as Keras lists them)."""
        if isinstance(weights, np.ndarray) or not isinstance(weights, Sequence):
            raise TypeError(f"weights must be a list of arrays; got {type(weights).__name__}")
        counts = [cell.weight_count for cell in self.cells]
        if len(weights) != sum(counts):
            raise ValueError(
                f"{self.describe()} expects {sum(counts)} weights ({' + '.join(map(str, counts))} per cell); got {len(weights)}"
            )
        offset = 0
        for index, (cell, count) in enumerate(zip(self.cells, counts)):
            cell.set_weights(list(weights[offset : offset + count]))
            offset += count
            if index and cell.input_dim != self.cells[index - 1].output_size:
                raise ValueError(
                    f"cells[{index}] has input_dim {cell.input_dim}, but cells[{index - 1}] outputs "
                    f"{self.cells[index - 1].output_size} units; a stack feeds each cell the previous cell's output"
                )

    @property
    def weight_count(self) -> int:
        return sum(cell.weight_count for cell in self.cells)

    def get_weights(self) -> list[np.ndarray]:
        return [w for cell in self.cells for w in cell.get_weights()]

    def require_built(self) -> None:
        for cell in self.cells:
            cell.require_built()

    # ------------------------------------------------------------------ one step
    def input_projection(self, inputs: np.ndarray) -> np.ndarray:
        return self.cells[0].input_projection(inputs)

    def recurrent_step(
        self, x_proj: np.ndarray, states: list[np.ndarray], record: StepRecord | None = None
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Every cell's step in order; ``record`` (a record per cell, and slots for the input
        of each cell after the first) is filled cell by cell."""
        new_states: list[np.ndarray] = []
        output = x_proj
        offset = 0
        for index, (cell, count) in enumerate(zip(self.cells, self._state_counts)):
            cell_record = None if record is None else record.cells[index]
            if index == 0:
                projected = x_proj
            else:
                if record is not None:
                    record.cell_inputs[index - 1][...] = output
                projected = cell.input_projection(output)
            cell_states = states[offset : offset + count]
            if cell_record is None:
                output, cell_states = cell.recurrent_step(projected, cell_states)
            else:
                output, cell_states = cell.recurrent_step(projected, cell_states, cell_record)
            new_states.extend(cell_states)
            offset += count
        return output, new_states

    def __call__(self, inputs: ArrayLike, states: Any) -> tuple[np.ndarray, Any]:
        """One timestep of the stack: ``(x_t, per-cell states) -> (y_t, new per-cell states)``."""
        return call_one_step(self, inputs, states)

    def get_config(self) -> dict[str, Any]:
        return {"cells": [{"class_name": type(cell).__name__, "config": cell.get_config()} for cell in self.cells]}
