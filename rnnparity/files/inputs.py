"""The inputs ``rnnparity verify`` feeds a model: a seeded random batch (:func:`make_inputs`)
or the user's arrays (:func:`read_inputs`).

Axes of unknown size get ``batch_size`` (axis 0), ``timesteps`` (axis 1) and
``DEFAULT_OTHER_SIZE`` (any other axis). Integer inputs draw token ids below the smallest
``Embedding`` vocabulary, with right padding of id 0 in some rows; when the model has a
``Masking`` layer, padded steps of float inputs hold its ``mask_value``, so masks are exercised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rnnparity.files.model_file import ModelFileError, layers_of

DEFAULT_BATCH_SIZE = 2
DEFAULT_TIMESTEPS = 8
DEFAULT_SEED = 0
# Any other input axis of unknown size (an image axis inside TimeDistributed, ...).
DEFAULT_OTHER_SIZE = 8


@dataclass
class InputSpec:
    name: str
    shape: tuple[int | None, ...]
    dtype: str


def input_specs(model: Any) -> list[InputSpec]:
    specs = []
    for index, tensor in enumerate(model.inputs):
        shape = tuple(None if d is None else int(d) for d in tensor.shape)
        dtype = getattr(tensor.dtype, "name", tensor.dtype)
        name = getattr(tensor, "name", None) or f"input_{index}"
        specs.append(InputSpec(str(name).split(":")[0], shape, str(dtype)))
    return specs


def make_inputs(
    model: Any,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    timesteps: int = DEFAULT_TIMESTEPS,
    seed: int = DEFAULT_SEED,
) -> list[np.ndarray]:
    """A seeded random batch for every model input (see the module docstring)."""
    rng = np.random.default_rng(seed)
    layers = layers_of(model)
    vocab = [int(layer.input_dim) for layer in layers if type(layer).__name__ == "Embedding"]
    masking = [float(layer.mask_value) for layer in layers if type(layer).__name__ == "Masking"]
    arrays = []
    for spec in input_specs(model):
        shape = []
        for axis, size in enumerate(spec.shape):
            if size is not None:
                shape.append(size)
            else:
                shape.append(batch_size if axis == 0 else timesteps if axis == 1 else DEFAULT_OTHER_SIZE)
        lengths = None
        if len(shape) >= 2 and shape[0] >= 2 and shape[1] >= 2:
            # Right padding: row 0 keeps every step, the others a random length >= 1.
            lengths = rng.integers(1, shape[1] + 1, size=shape[0])
            lengths[0] = shape[1]
        if np.issubdtype(np.dtype(spec.dtype), np.integer):
            high = min(vocab) if vocab else 10
            values = rng.integers(1, max(high, 2), size=shape).astype(spec.dtype)
            if lengths is not None and vocab:
                values[np.arange(shape[1])[None, :] >= lengths[:, None]] = 0
        else:
            values = rng.normal(0.0, 1.5, size=shape).astype(spec.dtype)
            if lengths is not None and masking:
                values[np.arange(shape[1])[None, :] >= lengths[:, None]] = masking[0]
        arrays.append(values)
    return arrays


def read_inputs(path: str, model: Any) -> list[np.ndarray]:
    """Arrays from a ``.npy`` (one input) or ``.npz`` (by input name, else in order)."""
    specs = input_specs(model)
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"--inputs {path}: cannot read it as .npy/.npz ({exc})") from None
    if isinstance(loaded, np.ndarray):
        arrays = [loaded]
    else:
        with loaded:
            keys = list(loaded.keys())
            if all(spec.name in keys for spec in specs):
                arrays = [loaded[spec.name] for spec in specs]
            else:
                arrays = [loaded[key] for key in keys]
    if len(arrays) != len(specs):
        raise ModelFileError(
            f"--inputs {path} holds {len(arrays)} array(s); the model has {len(specs)} input(s) {[s.name for s in specs]}"
        )
    for spec, array in zip(specs, arrays):
        fits = len(array.shape) == len(spec.shape) and all(d is None or d == a for d, a in zip(spec.shape, array.shape))
        if not fits:
            raise ModelFileError(
                f"--inputs {path}: input {spec.name!r} has shape {tuple(array.shape)}; the model expects "
                f"{tuple(spec.shape)} (None: any size), rank {len(spec.shape)}"
            )
    return arrays
