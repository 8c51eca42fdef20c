"""Twins under the other Keras: :func:`retarget` turns a twin emulating one Keras into the same
twin (weights, settings, carried states) emulating the other, and :func:`known_causes` names the
entries of :mod:`rnnparity.suite.known_differences` that apply to it between the two.

``rnnparity drift`` (:mod:`rnnparity.files.drift`) predicts a whole model with them, and
``verify`` names the layers that would drift with :func:`drift_hint`.
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any


def retarget(twin: Any, keras_version: int, backend: str = "tensorflow") -> Any:
    """A copy of ``twin`` (a layer, cell or stack) emulating Keras ``keras_version`` instead:
    the same weights, settings and carried states, with the target's activation formulas,
    state rules and return types. Raises ``ValueError`` when the target Keras cannot have
    such a layer (an activation it lacks, ``time_major`` in Keras 3)."""
    from rnnparity.bidirectional import Bidirectional
    from rnnparity.rnn import SUPPORTED_BACKENDS, Cell, RecurrentLayer

    if keras_version not in (2, 3):
        raise ValueError(f"keras_version must be 2 or 3; got {keras_version!r}")
    if backend not in SUPPORTED_BACKENDS[keras_version]:
        backend = "tensorflow"
    if isinstance(twin, Bidirectional):
        wrapper = copy.deepcopy(twin)
        wrapper.forward_layer = retarget(twin.forward_layer, keras_version, backend)
        wrapper.backward_layer = retarget(twin.backward_layer, keras_version, backend)
        wrapper.keras_version = keras_version
        return wrapper
    if isinstance(twin, RecurrentLayer):
        if twin.time_major and keras_version == 3:
            raise ValueError("time_major=True exists in Keras 2 only; Keras 3 has no such layer")
        layer = copy.deepcopy(twin)
        layer.cell = _retarget_cell(twin.cell, keras_version)
        if hasattr(layer, "conv_cell"):  # ConvLSTM keeps its cell under both names
            layer.conv_cell = layer.cell
        layer.keras_version = keras_version
        layer.backend = backend
        return layer
    if isinstance(twin, Cell):
        return _retarget_cell(twin, keras_version)
    raise TypeError(f"twin must be an rnnparity layer, cell or Bidirectional; got {type(twin).__name__}")


def _retarget_cell(cell: Any, keras_version: int) -> Any:
    from rnnparity.activations import activations_for
    from rnnparity.conv_lstm import ConvLSTMCell
    from rnnparity.stacked import StackedRNNCells

    if isinstance(cell, StackedRNNCells):
        return StackedRNNCells([_retarget_cell(inner, keras_version) for inner in cell.cells])
    own = activations_for(cell.keras_version)

    def by_name(name: str, function: Any) -> Any:
        # A named Keras activation takes the target's formula; a NumPy callable stays itself.
        return name if own.get(name) is function else function

    if isinstance(cell, ConvLSTMCell):
        config = cell.get_config()
        config.pop("dtype")
        config["activation"] = by_name(cell.activation_name, cell.activation)
        config["recurrent_activation"] = by_name(cell.recurrent_activation_name, cell.recurrent_activation)
        conv = ConvLSTMCell(rank=cell.rank, dtype=cell.dtype, keras_version=keras_version, **config)
        conv.set_weights(cell.get_weights())
        return conv
    kwargs: dict[str, Any] = {"units": cell.units, "activation": by_name(cell.activation_name, cell.activation)}
    if cell.has_recurrent_activation:
        kwargs["recurrent_activation"] = by_name(cell.recurrent_activation_name, cell.recurrent_activation)
    for name in ("reset_after", "unit_forget_bias"):
        if hasattr(cell, name):
            kwargs[name] = getattr(cell, name)
    new = type(cell)(use_bias=cell.use_bias, dtype=cell.dtype, keras_version=keras_version, **kwargs, **cell.training_only_args)
    new.set_weights(cell.get_weights())
    return new


def _cells_of(twin: Any) -> list[Any]:
    from rnnparity.bidirectional import Bidirectional
    from rnnparity.stacked import StackedRNNCells

    if isinstance(twin, Bidirectional):
        return _cells_of(twin.forward_layer) + _cells_of(twin.backward_layer)
    cell = getattr(twin, "cell", twin)
    return list(cell.cells) if isinstance(cell, StackedRNNCells) else [cell]


def _masked_layer_config(twin: Any) -> dict[str, Any]:
    """``twin`` as a case config for the differences that depend on how masked steps are output."""
    from rnnparity.bidirectional import Bidirectional

    def one(layer: Any) -> dict[str, Any]:
        return {
            "kind": getattr(layer.cell, "kind", None),
            "return_sequences": bool(getattr(layer, "return_sequences", False)),
            "zero_output_for_mask": bool(getattr(layer, "zero_output_for_mask", False)),
        }

    if isinstance(twin, Bidirectional):
        return {"kind": "bidirectional", "layers": [one(twin.forward_layer), one(twin.backward_layer)], "mask": "given"}
    if hasattr(twin, "cell") and hasattr(twin, "return_sequences"):
        return {**one(twin), "mask": "given"}
    return {}


def known_causes(
    twin: Any, old: Mapping[str, Any], new: Mapping[str, Any], initial_state: bool, masked: bool = False
) -> list[str]:
    """Ids of the known differences between environments ``old`` and ``new`` that apply to ``twin``
    (``initial_state``: whether a call gave it one; ``masked``: whether a call gave it a mask)."""
    from rnnparity.suite.known_differences import explain

    stateful = bool(getattr(twin, "stateful", False))
    ids: list[str] = []
    for cell in _cells_of(twin):
        config = {
            "kind": cell.kind,
            "activation": cell.activation_name,
            "recurrent_activation": getattr(cell, "recurrent_activation_name", None),
            "stateful": stateful,
            "initial_state": initial_state,
            "dtype": cell.dtype.name,
        }
        ids.extend(d.id for d in explain(config, old, new) if d.id not in ids)
    if masked and (layer_config := _masked_layer_config(twin)):
        ids.extend(d.id for d in explain(layer_config, old, new) if d.id not in ids)
    return ids


def target_backend(keras_version: int, source_backend: str, load: bool = True) -> str:
    """The backend the target Keras runs on: TensorFlow for Keras 2; for Keras 3 the installed
    Keras 3's backend (imported to ask it; without ``load``, ``$KERAS_BACKEND`` or TensorFlow
    unless Keras 3 is imported already)."""
    if keras_version == 2:
        return "tensorflow"
    keras = sys.modules.get("keras")
    if not load and not str(getattr(keras, "__version__", "")).startswith("3."):
        return os.environ.get("KERAS_BACKEND", "tensorflow")
    try:
        from rnnparity.suite import keras_adapter

        return keras_adapter.load_keras("keras3").backend
    except ImportError:
        return source_backend


def environment(keras_version: int, backend: str) -> dict[str, Any]:
    from rnnparity.suite import keras_adapter

    return {"keras_major": keras_version, "keras_backend": backend, "jax_x64": keras_adapter.jax_x64_enabled(backend)}


def drift_hint(captures: Sequence[Any], handle: Any, path: str) -> str:
    """For ``verify``: one line naming the recurrent layers among ``captures`` (verify's recorded
    calls) whose results would change under the other Keras, with the known differences that
    cause it, pointing to ``rnnparity drift``; ``""`` when none would. Each layer's first call
    is replayed (a stateful layer from zero states, as a freshly loaded model starts)."""
    from rnnparity.compare import compare

    target = 5 - handle.keras_version
    to = "keras3" if target == 3 else "tf-keras"
    backend = target_backend(target, handle.backend, load=False)
    old, new = handle.environment, environment(target, backend)
    found: dict[str, str] = {}
    for capture in captures:
        name = capture.layer.name
        if name in found:
            continue
        found[name] = ""
        try:
            moved = retarget(capture.twin, target, backend)
            if getattr(moved, "stateful", False):
                moved.reset_state()
            predicted = moved(capture.inputs, initial_state=capture.initial_state, mask=capture.mask)
        except (ValueError, TypeError) as exc:
            found[name] = f"{name} (cannot exist there: {exc})"
            continue
        if not compare(capture.keras_result, predicted, check_container=False).ok:
            given_state, masked = capture.initial_state is not None, capture.mask is not None
            causes = known_causes(capture.twin, old, new, given_state, masked) or ["unexplained"]
            found[name] = f"{name} ({', '.join(causes)})"
    drifting = [text for text in found.values() if text]
    if not drifting:
        return ""
    label = "Keras 3" if target == 3 else "tf_keras (Keras 2)"
    return (
        f"under {label} these layers would compute other numbers: {'; '.join(drifting)} (see: rnnparity drift {path} --to {to})"
    )
