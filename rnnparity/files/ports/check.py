"""The port check: open the port, plan the calls, run both sides call by call, compare every
output with the one tolerance helper, and on a failure localize it (:mod:`.localize`) and say
whether a stateful model's state was carried."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from rnnparity.files.ports.common import (
    BACKENDS,
    PAD_CHOICES,
    KerasSide,
    Port,
    PortError,
    call_sizes,
    check_inputs,
    make_call_inputs,
    match_by_name_else_order,
)
from rnnparity.files.ports.localize import localize, match_layers
from rnnparity.files.ports.report import OutputResult, PortReport
from rnnparity.files.verify import DEFAULT_SEED

DEFAULT_STATEFUL_CALLS = 3


def open_port(against: str, model_path: str, *, float64: bool = False) -> Port:
    """The port for ``--against``: a backend name, a ``.onnx`` or a ``.tflite`` file.
    ``float64``: the model computes in float64 (JAX then needs x64 switched on)."""
    if against in BACKENDS:
        from rnnparity.files.ports.backend import BackendPort

        return BackendPort(against, model_path, x64=float64)
    suffix = os.path.splitext(against)[1].lower()
    if suffix not in (".onnx", ".tflite"):
        raise PortError(
            f"--against takes a .onnx file, a .tflite file or a Keras 3 backend ({', '.join(BACKENDS)}); got {against!r}"
        )
    if not os.path.isfile(against):
        raise PortError(f"--against {against}: no such file")
    if suffix == ".onnx":
        from rnnparity.files.ports.onnx import OnnxPort

        return OnnxPort(against)
    from rnnparity.files.ports.tflite import TflitePort

    return TflitePort(against)


@dataclass
class _Plan:
    """What the calls are: how many, why, the padding and every call's inputs (Keras order)."""

    calls: int
    note: str
    pad: str
    inputs: list[list[np.ndarray]]
    dtype: str


def verify_against(
    model_path: str,
    against: str,
    *,
    calls: int | None = None,
    pad: str | None = None,
    inputs_path: str | None = None,
    batch_size: int | None = None,
    timesteps: int | None = None,
    seed: int | None = None,
    dtype: str | None = None,
) -> PortReport:
    """Everything ``rnnparity verify MODEL --against PORT`` does, returned as a report:
    every model output compared call by call, each recurrent layer found in the port, and on
    a failure the first diverging layer and whether a stateful model's state was carried."""
    if calls is not None and calls < 1:
        raise ValueError(f"calls must be a positive integer; got {calls}")
    if pad is not None and pad not in PAD_CHOICES:
        raise ValueError(f"pad must be one of {PAD_CHOICES}; got {pad!r}")
    if dtype is not None and dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64'; got {dtype!r}")
    keras = KerasSide(model_path)
    float64 = dtype == "float64" or any(spec.dtype == "float64" for spec in keras.specs)
    port = open_port(against, model_path, float64=float64)
    try:
        input_order = match_by_name_else_order([s.name for s in keras.specs], [t.name for t in port.inputs], "input")
        output_order = match_by_name_else_order(keras.output_names, [t.name for t in port.outputs], "output")
        plan = _plan(keras, port, input_order, calls, pad, inputs_path, batch_size, timesteps, seed, dtype)
        report = PortReport(
            model=model_path,
            port=against,
            runtime=port.label,
            keras=keras.handle.describe(),
            inputs=[{"name": s.name, "shape": list(a.shape), "dtype": str(a.dtype)} for s, a in zip(keras.specs, plan.inputs[0])],
            calls=plan.calls,
            calls_note=plan.note,
            pad=plan.pad,
            seed=None if inputs_path else (DEFAULT_SEED if seed is None else seed),
            kernels=port.kernel_summary(),
        )
        keras_layers, port_outputs = _run_calls(keras, port, input_order, output_order, plan, report)
        failed = [row.call - 1 for row in report.outputs if row.status != "ok"]
        probed = failed[0] if failed else 0
        port_calls = [_port_order(arrays, input_order) for arrays in plan.inputs[: probed + 1]]
        report.layers = match_layers(keras, keras_layers[probed], port, port.intermediates(port_calls), plan.dtype)
        if failed:
            report.localization = f"call {probed + 1}: " + localize(report.layers)
            if keras.stateful_layers and probed > 0:
                report.state_note = _state_note(keras, output_order, plan, port_outputs, probed)
        return report
    finally:
        port.close()


def _port_words(message: str) -> str:
    """The tolerance helper's message with the port named as such (it calls the other side the twin)."""
    return message.replace(", twin=", ", port=")


def _port_order(arrays: list[np.ndarray], input_order: list[int]) -> list[np.ndarray]:
    """Arrays in the Keras model's input order, rearranged into the port's."""
    return [arrays[input_order.index(i)] for i in range(len(arrays))]


def _plan(
    keras: KerasSide,
    port: Port,
    input_order: list[int],
    calls: int | None,
    pad: str | None,
    inputs_path: str | None,
    batch_size: int | None,
    timesteps: int | None,
    seed: int | None,
    dtype: str | None,
) -> _Plan:
    from rnnparity.files import verify

    stateful = keras.stateful_layers
    if calls is None:
        calls = DEFAULT_STATEFUL_CALLS if stateful else 1
        note = f"{calls} calls: the model has stateful layer(s) {', '.join(stateful)}, whose state must carry over"
        note = note if stateful else "1 call"
    else:
        note = f"{calls} call(s) (--calls)"
    source = keras.mask_source()
    if pad is None:
        pad = "right" if source else "none"
    elif pad != "none" and source is None:
        raise PortError(f"--pad {pad}: the model has no Masking or Embedding(mask_zero=True) layer, so nothing is padded")
    if inputs_path is not None:
        if calls != 1:
            raise PortError(f"--inputs gives the inputs of one call; --calls {calls} needs fresh inputs per call")
        all_inputs = [verify.read_inputs(inputs_path, keras.model)]
        if dtype is not None:
            all_inputs = [[a.astype(dtype) if a.dtype.kind == "f" else a for a in all_inputs[0]]]
    else:
        sizes = call_sizes(keras, port, input_order, batch_size, timesteps)
        base_seed = DEFAULT_SEED if seed is None else seed
        all_inputs = [make_call_inputs(keras, *sizes, base_seed, call, pad, dtype) for call in range(calls)]
    float_dtype = dtype or next((str(a.dtype) for a in all_inputs[0] if a.dtype.kind == "f"), "float32")
    return _Plan(calls, note, pad if source else "none (the model has no mask)", all_inputs, float_dtype)


def _run_calls(
    keras: KerasSide, port: Port, input_order: list[int], output_order: list[int], plan: _Plan, report: PortReport
) -> tuple[list[dict[str, list[np.ndarray]]], list[list[np.ndarray]]]:
    """Each call on both sides, every output compared; per call the Keras layers' results
    and the port's outputs."""
    from rnnparity.compare import compare_arrays

    keras_layers, port_outputs = [], []
    for call, arrays in enumerate(plan.inputs, start=1):
        check_inputs(keras, port, input_order, arrays)
        expected, layer_results = keras.call(arrays)
        keras_layers.append(layer_results)
        got = port.run(_port_order(arrays, input_order))
        port_outputs.append(got)
        for name, index, reference in zip(keras.output_names, output_order, expected):
            theirs = got[index]
            if theirs.shape != reference.shape:
                raise PortError(
                    f"output {name!r} has shape {reference.shape} in Keras; the port's output {port.outputs[index].name!r} "
                    f"returned {theirs.shape}"
                )
            result = compare_arrays(reference, theirs.astype(reference.dtype), dtype=plan.dtype, context=f"call {call} {name}")
            status = "ok" if result.ok else "MISMATCH"
            report.outputs.append(
                OutputResult(
                    call, name, status, result.max_abs, result.max_rel, result.tolerance_used, _port_words(result.message)
                )
            )
    return keras_layers, port_outputs


def _state_note(keras: KerasSide, output_order: list[int], plan: _Plan, port_outputs: list[list[np.ndarray]], call: int) -> str:
    """Whether the port's first failing call equals Keras restarted from zero state."""
    from rnnparity.compare import compare_arrays

    keras.reset_states()
    fresh, _ = keras.call(plan.inputs[call])
    keras.reset_states()
    restarted = all(
        compare_arrays(reference, port_outputs[call][index].astype(reference.dtype), dtype=plan.dtype).ok
        for reference, index in zip(fresh, output_order)
    )
    if restarted:
        return (
            f"the state was not carried: call 1 agrees, and the port's call {call + 1} equals the Keras model restarted from "
            f"zero state; the port starts every call from zero instead of continuing the stateful layer(s) "
            f"{', '.join(keras.stateful_layers)}"
        )
    return f"call {call + 1} differs, and not only because the port restarted from zero state (that does not match either)"
