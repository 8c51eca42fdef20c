"""What every port shares: the :class:`Port` interface, the Keras side, and the inputs.

The Keras side runs a *probe*: a functional model over the same layers whose outputs are the
model's outputs followed by every recurrent layer's results (output, then states). One call of
the probe gives both, with the layers' carried state advancing exactly as in the model, so a
stateful model is compared call by call.

A port (:class:`Port`) runs one call at a time in one session, so a runtime that keeps state
between calls (TFLite's variables) keeps it. It also lists its intermediate tensors for the
localization (:mod:`.localize`).

Inputs are matched to the port's by name, else by order; shapes and dtypes are checked with an
error naming both sides; a port's fixed batch and time sizes become the call's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnnparity.files.verify import DEFAULT_BATCH_SIZE, DEFAULT_TIMESTEPS, ModelFileError

BACKENDS = ("jax", "torch", "numpy", "tensorflow")
PAD_CHOICES = ("right", "left", "none")


class PortError(ModelFileError):
    """The port cannot be read or run, or does not fit the model (the CLI's exit 2)."""


@dataclass(frozen=True)
class TensorInfo:
    """One input or output of a port: its name, shape (None: any size) and dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} ({dims}) {self.dtype}"


class Port:
    """A model converted to, or run on, another runtime. Subclasses fill ``label``,
    ``inputs`` and ``outputs`` and implement :meth:`run` and :meth:`intermediates`."""

    label: str = ""
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """One call (state carried from the previous call where the runtime keeps it);
        the results in the order of :attr:`outputs`."""
        raise NotImplementedError

    def intermediates(self, calls: list[list[np.ndarray]]) -> list[tuple[str, np.ndarray]]:
        """Replay ``calls`` in a fresh session; every floating tensor the runtime exposes
        during the last one, as ``(name, array)``."""
        raise NotImplementedError

    def kernel_of(self, tensor: str) -> str:
        """The recurrent kernel that computed ``tensor`` (e.g. ``ONNX LSTM op``), or ''."""
        return ""

    def kernel_summary(self) -> str:
        """One line: the recurrent kernels the port contains."""
        return ""

    def close(self) -> None:
        """Release the runtime's resources (a subprocess's files)."""


# --------------------------------------------------------------------------- the Keras side
@dataclass
class RecurrentInfo:
    name: str
    type: str
    stateful: bool
    first: int  # index of its first result among the probe's outputs
    count: int  # how many results (output, then states)


class KerasSide:
    """The loaded model, its probe and what the report needs to know about it."""

    def __init__(self, model_path: str) -> None:
        from rnnparity.files import verify

        self.model_file = verify.read_model_file(model_path)
        self.handle, self.model = verify.load_model(self.model_file)
        self.specs = verify.input_specs(self.model)
        self.output_names = [str(n) for n in getattr(self.model, "output_names", None) or []]
        self.n_outputs = len(self.model.outputs)
        if len(self.output_names) != self.n_outputs:
            self.output_names = [f"output_{i}" for i in range(self.n_outputs)]
        self.recurrent: list[RecurrentInfo] = []
        self.not_probed: list[str] = []
        self.probe = self._build_probe()

    def _build_probe(self) -> Any:
        from rnnparity.files import verify

        extra: list[Any] = []
        position = self.n_outputs
        for layer in verify.layers_of(self.model):
            if not verify.is_recurrent(layer):
                continue
            inner = getattr(layer, "forward_layer", layer)
            stateful = bool(getattr(inner, "stateful", False))
            try:
                result = layer.output
            except Exception:  # a layer called more than once, or inside a nested model
                self.not_probed.append(layer.name)
                self.recurrent.append(RecurrentInfo(layer.name, type(layer).__name__, stateful, -1, 0))
                continue
            results = list(result) if isinstance(result, (list, tuple)) else [result]
            self.recurrent.append(RecurrentInfo(layer.name, type(layer).__name__, stateful, position, len(results)))
            extra.extend(results)
            position += len(results)
        if not extra:
            return self.model
        try:
            return self.handle.module.Model(self.model.inputs, [*self.model.outputs, *extra])
        except Exception:  # a model whose graph cannot be reopened (subclassed models)
            self.not_probed = [info.name for info in self.recurrent]
            for info in self.recurrent:
                info.first, info.count = -1, 0
            return self.model

    @property
    def stateful_layers(self) -> list[str]:
        return [info.name for info in self.recurrent if info.stateful]

    def call(self, arrays: list[np.ndarray]) -> tuple[list[np.ndarray], dict[str, list[np.ndarray]]]:
        """One call: the model's outputs and, per probed recurrent layer, its results."""
        from rnnparity.suite import keras_adapter

        try:
            # The probe is built on the list model.inputs, so it takes a list even for one input.
            given = list(arrays) if self.probe is not self.model or len(arrays) > 1 else arrays[0]
            raw = self.probe(given, training=False)
        except Exception as exc:  # the model itself failed on these inputs
            from rnnparity.files.model_file import first_line

            raise PortError(f"the Keras model could not run on the inputs: {first_line(exc)}") from None
        flat = [keras_adapter.to_numpy(v) for v in (raw if isinstance(raw, (list, tuple)) else [raw])]
        outputs = flat[: self.n_outputs]
        layers = {info.name: flat[info.first : info.first + info.count] for info in self.recurrent if info.count}
        return outputs, layers

    def reset_states(self) -> None:
        from rnnparity.files import verify
        from rnnparity.suite import keras_adapter

        for layer in verify.layers_of(self.model):
            if verify.is_recurrent(layer) and getattr(getattr(layer, "forward_layer", layer), "stateful", False):
                keras_adapter.reset_layer_state(self.handle, layer)

    def mask_source(self) -> tuple[str, float] | None:
        """``("masking", mask_value)`` or ``("embedding", 0)`` when the model makes a mask."""
        from rnnparity.files import verify

        for layer in verify.layers_of(self.model):
            kind = type(layer).__name__
            if kind == "Masking":
                return "masking", float(layer.mask_value)
            if kind == "Embedding" and getattr(layer, "mask_zero", False):
                return "embedding", 0.0
        return None


# --------------------------------------------------------------------------- inputs
def _plain_name(name: str) -> str:
    """A port tensor name without runtime decorations (``serving_default_x:0`` -> ``x``)."""
    name = name.split(":")[0]
    for prefix in ("serving_default_",):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return name


def match_by_name_else_order(ours: Sequence[str], theirs: Sequence[str], what: str) -> list[int]:
    """For each of ``ours`` (the Keras model's names), the index of the port's tensor."""
    if len(ours) != len(theirs):
        raise PortError(
            f"the port has {len(theirs)} {what}(s) {list(theirs)}; the Keras model has {len(ours)} {what}(s) {list(ours)}"
        )
    plain = [_plain_name(t) for t in theirs]
    if sorted(ours) == sorted(plain) and len(set(plain)) == len(plain):
        return [plain.index(name) for name in ours]
    return list(range(len(ours)))


def call_sizes(keras: KerasSide, port: Port, order: list[int], batch_size: int | None, timesteps: int | None) -> tuple[int, int]:
    """Batch and time sizes: the user's, else the port's fixed ones, else the defaults; a
    fixed size of the model or the port that differs from what is asked is an error."""
    chosen = {0: batch_size, 1: timesteps}
    options = {0: "--batch-size", 1: "--timesteps"}
    for spec, index in zip(keras.specs, order):
        port_shape = port.inputs[index].shape
        for axis in (0, 1):
            if axis >= len(spec.shape) or axis >= len(port_shape):
                continue
            fixed = [s for s in (spec.shape[axis], port_shape[axis]) if s is not None]
            if len(set(fixed)) > 1:
                raise PortError(
                    f"input {spec.name!r} axis {axis}: the Keras model fixes {spec.shape[axis]}, "
                    f"the port's {port.inputs[index].name!r} fixes {port_shape[axis]}"
                )
            if fixed:
                if chosen[axis] is not None and chosen[axis] != fixed[0]:
                    raise PortError(
                        f"{options[axis]} {chosen[axis]}: input {spec.name!r} has a fixed size {fixed[0]} on axis {axis} "
                        f"(Keras {spec.shape}, port {port.inputs[index].describe()})"
                    )
                chosen[axis] = fixed[0]
    return (chosen[0] or DEFAULT_BATCH_SIZE, chosen[1] or DEFAULT_TIMESTEPS)


def check_inputs(keras: KerasSide, port: Port, order: list[int], arrays: list[np.ndarray]) -> None:
    """Shapes and dtypes of the arrays against the port's inputs; the error names both sides."""
    for spec, index, array in zip(keras.specs, order, arrays):
        theirs = port.inputs[index]
        if len(theirs.shape) != array.ndim or any(d is not None and d != s for d, s in zip(theirs.shape, array.shape)):
            raise PortError(
                f"input {spec.name!r} has shape {array.shape} (Keras {spec.shape}); the port's input {theirs.describe()} "
                "does not take it"
            )
        if np.dtype(theirs.dtype) != array.dtype:
            raise PortError(f"input {spec.name!r} is {array.dtype} (Keras {spec.dtype}); the port's input {theirs.describe()}")


def make_call_inputs(
    keras: KerasSide, batch_size: int, timesteps: int, seed: int, call: int, pad: str, dtype: str | None
) -> list[np.ndarray]:
    """Fresh seeded inputs for one call, padded as ``pad`` asks when the model masks."""
    from rnnparity.files import verify

    arrays = verify.make_inputs(keras.model, batch_size=batch_size, timesteps=timesteps, seed=seed + 1000 * call)
    if dtype is not None:
        arrays = [a.astype(dtype) if a.dtype.kind == "f" else a for a in arrays]
    source = keras.mask_source()
    if source is None or pad == "right":
        return arrays
    rng = np.random.default_rng(seed + 1000 * call + 1)
    padded_inputs = []
    for array in arrays:
        if array.ndim < 2:
            padded_inputs.append(array)
            continue
        if source[0] == "embedding" and array.dtype.kind in "iu":
            padded = array == 0
        elif source[0] == "masking" and array.dtype.kind == "f":
            padded = np.all(array.reshape(*array.shape[:2], -1) == source[1], axis=-1)
        else:
            padded_inputs.append(array)
            continue
        if pad == "none":
            fresh = (
                rng.integers(1, max(int(array.max()), 2), size=array.shape).astype(array.dtype)
                if array.dtype.kind in "iu"
                else rng.normal(0.0, 1.5, size=array.shape).astype(array.dtype)
            )
            where = padded.reshape(*padded.shape, *([1] * (array.ndim - 2)))
            padded_inputs.append(np.where(where, fresh, array))
        else:  # left: each row's padding moved to its start
            rows = [np.roll(row, int(count), axis=0) for row, count in zip(array, padded.sum(axis=1))]
            padded_inputs.append(np.stack(rows))
    return padded_inputs
