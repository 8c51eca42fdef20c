"""Run as ``KERAS_BACKEND=name python tests/backend_probe.py``: per float64 layer configuration,
how far Keras on this backend is from the twin (an exact float64 computation), and whether
Keras's result holds float32 values only. With an argument, one of MODES: ``stacked-bare-state``
(how Keras answers a masked stack given a bare last-cell state) or ``quick-float64`` (the quick
matrix's float64 cases at the float64 tolerance). Prints one JSON object; used by test_backends.py.

Weights and inputs are seeded random draws (never constant)."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from typing import Any

import numpy as np

CONFIGS = {
    "lstm": ("LSTM", {}),
    "gru": ("GRU", {}),
    "gru_reset_before": ("GRU", {"reset_after": False}),
    "simple_rnn": ("SimpleRNN", {}),
    "simple_rnn_unrolled": ("SimpleRNN", {"unroll": True}),
    "bidirectional_lstm": ("Bidirectional", {}),  # around an LSTM
    "rnn_lstm_cell": ("RNN", {}),  # RNN(LSTMCell)
}


def _layer(keras: Any, class_name: str, options: dict[str, Any]) -> Any:
    layers = keras.layers
    if class_name == "Bidirectional":
        return layers.Bidirectional(layers.LSTM(4, return_sequences=True, dtype="float64"), dtype="float64")
    if class_name == "RNN":
        return layers.RNN(layers.LSTMCell(4, dtype="float64"), return_sequences=True, dtype="float64")
    return getattr(layers, class_name)(4, return_sequences=True, dtype="float64", **options)


def probe(name: str, masked: bool) -> dict[str, object]:
    import keras

    from rnnparity.suite.keras_adapter import from_keras

    class_name, options = CONFIGS[name]
    layer = _layer(keras, class_name, options)
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


# A masked stack whose last cell (a GRUCell) is given its initial state as a bare array
# (known_differences: keras3-scan-stacked-bare-state), from the wrapper matrix.
STACKED_BARE_CASE = (
    "stacked-lstm-u1-sigmoid-sigmoid-nufb+simple_rnn-u5-softsign+gru-ra-u5-relu-hard_sigmoid-d4-t5-b4-seq1-st0-"
    "mask-scattered-init-bare-f64-s586779578"
)


def probe_stacked_bare_state() -> dict[str, object]:
    """Keras on this backend against the twin on STACKED_BARE_CASE, as given (bare) and with the
    bare states put in one-item lists; and against what repeating batch row 0's carried h of the
    last cell at every masked step gives (built from the twin's own outputs)."""
    import keras

    from rnnparity.cli import main
    from rnnparity.compare import compare
    from rnnparity.suite import keras_adapter, parity, wrapper_matrix

    handle = keras_adapter.load_keras("keras3")
    case = next(c for c in wrapper_matrix.wrapper_cases(3) if c.case_id == STACKED_BARE_CASE)
    data = wrapper_matrix.make_wrapper_data(case)
    (call,) = data.calls
    listed = [s if isinstance(s, list) else [s] for s in call.initial_state]
    twin = wrapper_matrix.wrapper_twin(
        case, backend=handle.backend, resolve=lambda options: keras_adapter.twin_activations(options, handle.backend)
    )
    expected = twin(call.inputs, initial_state=listed, mask=call.mask)  # (batch, T, units): return_sequences
    last_h = listed[-1][0]
    row_0 = expected.copy()
    for t in range(case.timesteps):
        carried = last_h[0] if t == 0 else expected[0, t - 1]  # row 0's h entering step t
        row_0[~call.mask[:, t], t] = carried
    found: dict[str, object] = {"backend": keras.backend.backend()}
    for name, states in (("bare", call.initial_state), ("listed", listed)):
        layer = parity.keras_wrapper_layer(case, handle, data.weights)
        result = keras_adapter.call_layer(handle, layer, call.inputs, states, call.mask)
        for against, value in (("twin", expected), ("row_0", row_0)):
            comparison = compare(result, value, dtype="float32")  # numpy's float64 is float32-accurate
            found[f"{name}-vs-{against}"] = {"ok": comparison.ok, "max_abs": comparison.max_abs}
    # What `rnnparity check` says about the case on this backend.
    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(io.StringIO()):
        code = main(["check", "--keras", "keras3", "--family", "wrapper", "-k", STACKED_BARE_CASE])
    found["check"] = {"exit_code": code, "output": output.getvalue()}
    return found


def probe_quick_float64() -> dict[str, object]:
    """Every float64 case of the quick matrix, compared at the float64 tolerance, and whether
    tolerance_for would widen it on this backend."""
    import keras

    from rnnparity.suite import check_matrix, keras_adapter, parity
    from rnnparity.suite.known_differences import expected_keras_difference, tolerance_for

    handle = keras_adapter.load_keras("keras3")
    widen = parity.tolerance_for
    parity.tolerance_for = lambda dtype, backend, config=None: (None, None)  # type: ignore[assignment]
    found: dict[str, object] = {"backend": keras.backend.backend()}
    try:
        for case in check_matrix.all_cases(3, quick=True):
            if case.dtype != "float64" or expected_keras_difference(case.to_dict(), handle.environment) is not None:
                continue
            result = check_matrix.run(case, handle)
            widened = tolerance_for(case.dtype, handle.backend, case.to_dict()) != (None, None)
            found[case.case_id] = {"ok": result.ok, "max_abs": result.max_abs, "widened": widened}
    finally:
        parity.tolerance_for = widen
    return found


MODES = {"stacked-bare-state": probe_stacked_bare_state, "quick-float64": probe_quick_float64}


def main() -> None:
    import keras

    if sys.argv[1:]:
        sys.stdout.write("PROBE " + json.dumps(MODES[sys.argv[1]]()) + "\n")
        return
    found: dict[str, object] = {"backend": keras.backend.backend()}
    for name in CONFIGS:
        for masked in (False, True):
            found[f"{name}{'-masked' if masked else ''}"] = probe(name, masked)
    # The cause named in known_differences: keras.ops.matmul's dtype for two float64 operands.
    operand = np.random.default_rng(3).normal(size=(2, 2))
    found["matmul_float64_gives"] = str(keras.ops.convert_to_numpy(keras.ops.matmul(operand, operand)).dtype)
    sys.stdout.write("PROBE " + json.dumps(found) + "\n")


if __name__ == "__main__":
    main()
