"""Run as ``KERAS_BACKEND=name python tests/backend_probe.py``: per float64 layer configuration,
how far Keras on this backend is from the twin (an exact float64 computation), and whether
Keras's result holds float32 values only. Prints one JSON object; used by test_backends.py.

Weights and inputs are seeded random draws (never constant)."""

from __future__ import annotations

import json
import sys

import numpy as np

CONFIGS = {
    "lstm": ("LSTM", {}),
    "gru": ("GRU", {}),
    "gru_reset_before": ("GRU", {"reset_after": False}),
    "simple_rnn": ("SimpleRNN", {}),
    "simple_rnn_unrolled": ("SimpleRNN", {"unroll": True}),
}


def probe(name: str, masked: bool) -> dict[str, object]:
    import keras

    from rnnparity.suite.keras_adapter import from_keras

    class_name, options = CONFIGS[name]
    layer = getattr(keras.layers, class_name)(4, return_sequences=True, dtype="float64", **options)
    rng = np.random.default_rng(7)
    inputs = rng.normal(0.0, 1.5, size=(3, 5, 3))
    layer.build(inputs.shape)
    layer.set_weights([rng.normal(0.0, 0.6, w.shape) for w in layer.get_weights()])
    mask = np.ones((3, 5), dtype=bool)
    if masked:
        mask[1, 3:] = False
        mask[2, 1] = False
    try:
        result = keras.ops.convert_to_numpy(layer(inputs, mask=mask if masked else None))
    except Exception as exc:  # a configuration this backend cannot run
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
    twin = from_keras(layer)(inputs, mask=mask if masked else None)
    return {
        "dtype": str(result.dtype),
        "max_abs": float(np.max(np.abs(result - twin))),
        "float32_values_only": bool(np.all(result == result.astype(np.float32).astype(np.float64))),
    }


def main() -> None:
    import keras

    found: dict[str, object] = {"backend": keras.backend.backend()}
    for name in CONFIGS:
        for masked in (False, True):
            found[f"{name}{'-masked' if masked else ''}"] = probe(name, masked)
    sys.stdout.write("PROBE " + json.dumps(found) + "\n")


if __name__ == "__main__":
    main()
