"""``rnnparity bench``: the plumbing and the memory bound. Speed itself is measured by running
the benchmark (see the README), never asserted by a timed test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import flavor_params

import rnnparity
from rnnparity import rnn
from rnnparity.cli import main
from rnnparity.suite import bench, contention
from rnnparity.suite.matrix import random_weights


@pytest.mark.parametrize("flavor", flavor_params("keras3", [("keras3",)]))
def test_bench_times_every_contender_and_checks_parity(flavor: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", "--keras", flavor, "--shapes", "small", "--kinds", "gru", "--repeats", "2", "--no-decode", "--json", "-"]
    assert main(args) == 0
    payload = json.loads(capsys.readouterr().out)
    assert [(r["kind"], r["dtype"]) for r in payload["results"]] == [("gru", "float32"), ("gru", "float64")]
    for result in payload["results"]:
        assert set(result["median_ms"]) == set(bench.CONTENDERS)
        assert all(ms > 0 for ms in result["median_ms"].values())
        assert result["parity"] is True
        assert result["ratios"]["twin/tf_function"] == pytest.approx(
            result["median_ms"]["twin"] / result["median_ms"]["tf_function"]
        )
    assert "keras 3" in payload["environment"]["keras"]


@pytest.mark.parametrize("flavor", flavor_params("keras3", [("keras3",)]))
def test_bench_reports_a_broken_twin(flavor: str, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    def wrong_candidate(self, x_proj, states):  # the candidate with the reset gate's weights
        x_proj[2] = x_proj[1]
        return original(self, x_proj, states)

    original = rnnparity.GRUCell.recurrent_step
    monkeypatch.setattr(rnnparity.GRUCell, "recurrent_step", wrong_candidate)
    args = ["bench", "--keras", flavor, "--shapes", "small", "--kinds", "gru", "--dtypes", "float64", "--repeats", "1"]
    assert main([*args, "--contenders", "twin,tf_function", "--no-decode"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and "PARITY BROKEN in 1 configuration(s)" in out


def test_bench_without_keras_contenders_needs_only_numpy(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", "--shapes", "small", "--kinds", "simple_rnn", "--dtypes", "float32", "--repeats", "2"]
    assert main([*args, "--contenders", "twin,gemm_floor", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "decode: 10,000 simple_rnn cell steps" in out
    assert "| layer | shape | dtype | twin ms | gemm_floor ms | twin/gemm_floor |" in out
    assert "| SimpleRNN | small (B1 T20 D64 H128) | float32 |" in out
    assert "| layer | shape | dtype | input projection ms | recurrent steps ms | rest ms | gemm_floor ms |" in out
    assert "keras=" not in out


def test_twin_phases_split_a_call_and_leave_the_twin_as_it_was() -> None:
    rng = np.random.default_rng(3)
    twin = rnnparity.LSTM(8, return_sequences=True)
    twin.set_weights(random_weights(rng, "lstm", 8, 5))
    inputs = rng.normal(size=(2, 7, 5)).astype(np.float32)
    before = twin(inputs)
    phases = bench.twin_phases(twin, inputs, repeats=3)
    assert set(phases) == {"projection", "steps", "rest"}
    assert phases["projection"] > 0 and phases["steps"] > 0
    assert "input_projection" not in vars(twin.cell) and "recurrent_step" not in vars(twin.cell)
    np.testing.assert_array_equal(twin(inputs), before)


def test_bench_load_warning_uses_the_load_seen_before_timing(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    # The benchmark's own BLAS threads raise the load average while it runs: only the load
    # found before the first timing says whether other work disturbed the numbers.
    loads = iter([(0.1, 0.1, 0.1)] + [(5.0, 5.0, 5.0)] * 50)
    monkeypatch.setattr(bench.os, "getloadavg", lambda: next(loads))
    args = ["bench", "--shapes", "small", "--kinds", "simple_rnn", "--dtypes", "float32", "--repeats", "1"]
    assert main([*args, "--contenders", "twin", "--no-decode", "--json", "-"]) == 0
    captured = capsys.readouterr()
    assert "WARNING" not in captured.err
    assert json.loads(captured.out)["environment"]["load_average_1min"] == 0.1

    monkeypatch.setattr(bench.os, "getloadavg", lambda: (5.0, 5.0, 5.0))
    monkeypatch.setattr(bench.os, "cpu_count", lambda: 2)
    assert main([*args, "--contenders", "twin", "--no-decode"]) == 0
    out = capsys.readouterr().out
    assert out.count("WARNING: load average 5.0 on 2 cores") == 2  # under the header and after the results


def test_bench_refuses_an_unwritable_json_path_before_timing(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "missing-dir" / "bench.json"
    assert main(["bench", "--contenders", "twin", "--json", str(target)]) == 2
    assert f"cannot write --json {target}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--kinds", "lstm,cudnn", "--kinds takes a comma-separated subset of lstm,gru,simple_rnn; got 'lstm,cudnn'"),
        ("--shapes", "huge", "--shapes takes a comma-separated subset of small,medium,large"),
        ("--dtypes", "float16", "--dtypes takes a comma-separated subset of float32,float64"),
        ("--contenders", ",", "--contenders takes a comma-separated subset of"),
        ("--contenders", "twin,jax", "--contenders takes a comma-separated subset of twin,gemm_floor,eager"),
        ("--repeats", "0", "--repeats must be a positive integer; got 0"),
        ("--contention", "-1", "--contention must be 0 or a positive number of busy processes; got -1"),
        ("--blas-threads", "0", "--blas-threads must be 'auto', 'keep' or a positive integer number of BLAS threads; got '0'"),
        ("--shapes", "small --gradients", "--gradients times the medium and large shapes; --shapes chose neither"),
    ],
)
def test_bench_bad_options_exit_2(option: str, value: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    extra = [] if option == "--contenders" else ["--contenders", "twin"]  # never a real run
    assert main(["bench", *extra, option, *value.split()]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn"])
def test_forward_memory_is_the_result_the_inputs_and_one_projection_chunk(kind: str, monkeypatch) -> None:
    """Peak memory of a long sequence stays within the unavoidable arrays plus one bounded
    chunk of projected inputs: no per-timestep copies pile up."""
    batch, timesteps, input_dim, units = 4, 2000, 2, 16
    itemsize = 8
    monkeypatch.setattr(rnn, "PROJECTION_CHUNK_BYTES", 32 * 2**10)
    layer = {"lstm": rnnparity.LSTM, "gru": rnnparity.GRU, "simple_rnn": rnnparity.SimpleRNN}[kind](
        units, return_sequences=True, dtype="float64"
    )
    layer.set_weights(random_weights(np.random.default_rng(0), kind, units, input_dim, dtype="float64"))
    x = np.random.default_rng(1).normal(size=(batch, timesteps, input_dim))
    outputs = batch * timesteps * units * itemsize
    inputs = batch * timesteps * input_dim * itemsize  # the copy that protects the caller's array
    projection_per_step = batch * layer.cell.projection_width * itemsize
    whole_projection = timesteps * projection_per_step
    peak = bench.peak_memory_mib(lambda: layer(x)) * 2**20
    slack = 64 * 2**10  # per-step temporaries
    assert peak <= outputs + 2 * inputs + rnn.PROJECTION_CHUNK_BYTES + slack, f"peak {peak:.0f} B"
    assert rnn.PROJECTION_CHUNK_BYTES + slack < whole_projection / 4  # an unchunked projection would fail


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().split(")")[-1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


linux_only = pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads /proc (Linux)")


@linux_only
@pytest.mark.parametrize("work", contention.BUSY_KINDS)
def test_busy_processes_spin_and_are_gone_after_the_block(work: str) -> None:
    with contention.busy_processes(2, work) as pids:
        assert len(pids) == 2 and all(_alive(pid) for pid in pids)
        start = [_cpu_seconds(pid) for pid in pids]
        time.sleep(0.3)
        assert all(_cpu_seconds(pid) > s for pid, s in zip(pids, start)), "a busy process used no CPU"
    assert not any(_alive(pid) for pid in pids)


@linux_only
def test_busy_processes_are_stopped_on_an_error_and_when_their_parent_dies() -> None:
    with pytest.raises(KeyboardInterrupt), contention.busy_processes(1) as pids:
        raise KeyboardInterrupt  # as Ctrl-C in the middle of a benchmark
    assert not _alive(pids[0])

    # A benchmark killed outright runs no cleanup: its busy processes notice their parent is gone.
    script = (
        "import os\nfrom rnnparity.suite import contention\n"
        "with contention.busy_processes(1) as pids:\n    print(pids[0], flush=True)\n    os._exit(0)"
    )
    parent = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    orphan = int(parent.stdout.split()[0])
    deadline = time.monotonic() + 10
    while _alive(orphan) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(orphan), f"busy process {orphan} outlived the benchmark"


@linux_only
def test_bench_contention_records_n_and_leaves_no_busy_process(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    started: list[int] = []
    real = contention.busy_processes

    def recording(count, work="python"):
        manager = real(count, work)

        class Recorded:
            def __enter__(self):
                pids = manager.__enter__()
                started.extend(pids)
                return pids

            def __exit__(self, *exc):
                return manager.__exit__(*exc)

        return Recorded()

    monkeypatch.setattr(contention, "busy_processes", recording)
    args = ["bench", "--shapes", "small", "--kinds", "gru", "--dtypes", "float32", "--repeats", "2", "--no-decode"]
    assert main([*args, "--contenders", "twin,gemm_floor", "--contention", "1", "--json", "-"]) == 0
    captured = capsys.readouterr()
    payload = json.loads(captured.out)
    assert payload["environment"]["contention"] == 1 and payload["environment"]["contention_work"] == "python"
    assert payload["environment"]["blas_threads_setting"] == "auto"
    assert "with 1 busy process(es) (python) running beside the benchmark" in captured.err
    assert len(started) == 1 and not _alive(started[0])
    assert [r["kind"] for r in payload["results"]] == ["gru"]


@pytest.mark.parametrize("flavor", flavor_params("keras3", [("keras3",)]))
def test_bench_gradients_against_the_tape(flavor: str, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.setitem(bench.SHAPES, "medium", bench.Shape(3, 6, 4, 5))  # the plumbing, not the speed
    args = ["bench", "--keras", flavor, "--shapes", "small,medium", "--kinds", "lstm,simple_rnn", "--repeats", "2"]
    assert main([*args, "--dtypes", "float64", "--gradients-only", "--blas-threads", "1", "--json", "-"]) == 0
    captured = capsys.readouterr()
    payload = json.loads(captured.out)
    assert payload["results"] == [] and payload["decode"] == []
    assert [(g["kind"], g["shape"], g["dtype"]) for g in payload["gradients"]] == [
        ("lstm", "medium", "float64"),
        ("simple_rnn", "medium", "float64"),
    ]
    for grad in payload["gradients"]:
        assert grad["parity"] is True and grad["max_abs_error"] < 1e-9
        assert grad["ratios"]["twin/tape_tf_function"] == pytest.approx(
            grad["median_ms"]["twin"] / grad["median_ms"]["tape_tf_function"]
        )
    assert payload["environment"]["blas_threads_setting"] == 1
    assert "gradients: twin <= 1.0x tf.GradientTape in tf.function (aim)" in captured.err
    assert "| twin/tape |" not in captured.err and "twin/tape" in captured.err


@pytest.mark.parametrize("flavor", flavor_params("keras3", [("keras3",)]))
def test_bench_gradients_report_a_broken_backward_pass(flavor: str, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    from rnnparity import tapes

    monkeypatch.setitem(bench.SHAPES, "medium", bench.Shape(3, 6, 4, 5))
    original = tapes.CellTape.finish

    def doubled_input_grads(self, inputs, d_inputs):
        original(self, inputs, d_inputs)
        if d_inputs is not None:
            d_inputs *= 2

    monkeypatch.setattr(tapes.CellTape, "finish", doubled_input_grads)
    args = ["bench", "--keras", flavor, "--shapes", "medium", "--kinds", "gru", "--dtypes", "float64", "--repeats", "1"]
    assert main([*args, "--gradients-only"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and "PARITY BROKEN in 1 configuration(s)" in out


def test_target_lines_use_the_limits_under_load() -> None:
    def row(kind: str, shape: str, twin_over_tf: float) -> bench.Result:
        return bench.Result(kind, shape, {}, "float32", {}, None, None, 0.0, 0.0, 1, {"twin/tf_function": twin_over_tf})

    rows = [row("lstm", "medium", 1.1), row("gru", "large", 0.9), row("gru", "small", 3.0)]
    idle = bench.target_lines(rows, [])
    busy = bench.target_lines(rows, [], contention=2)
    assert idle[0].startswith("MISSED medium/large: twin <= 1.0x tf.function: worst 1.10x (lstm medium float32), 1/2 within")
    assert busy[0].startswith("met    medium/large: twin <= 1.2x tf.function with 2 busy processes: worst 1.10x")


@pytest.mark.parametrize("flavor", flavor_params("keras3", [("keras3",)]))
def test_bench_conv_times_a_conv_lstm2d_against_keras(flavor: str, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.setattr(bench, "CONV_SHAPE", bench.ConvShape(2, 3, 6, 5, 2, 3, 3))  # the plumbing, not the speed
    args = ["bench", "--keras", flavor, "--conv-only", "--repeats", "2", "--contenders", "twin,gemm_floor,tf_function"]
    assert main([*args, "--markdown", "--json", "-"]) == 0
    captured = capsys.readouterr()
    payload = json.loads(captured.out)
    rows = [(r["kind"], r["shape"], r["dtype"]) for r in payload["results"]]
    assert rows == [(bench.CONV_KIND, f"{p} padding", d) for p in ("same", "valid") for d in ("float32", "float64")]
    for result in payload["results"]:
        assert set(result["median_ms"]) == {"twin", "tf_function"}  # no GEMM floor for a convolution
        assert result["parity"] is True
    assert "| ConvLSTM2D | same padding (B2 T3 6x5x2 F3 k3x3) | float32 |" in captured.err
    assert "ConvLSTM2D: twin <= 1.5x tf.function" in captured.err
    assert "medium/large" not in captured.err  # the dense targets have no rows here


@pytest.mark.parametrize("flavor", flavor_params("keras3", [("keras3",)]))
def test_bench_conv_reports_a_broken_twin(flavor: str, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    from rnnparity.conv_lstm import ConvLSTMCell

    monkeypatch.setattr(bench, "CONV_SHAPE", bench.ConvShape(2, 3, 5, 5, 2, 3, 3))
    original = ConvLSTMCell.recurrent_step

    def forget_gate_as_input_gate(self, x_proj, states, record=None):
        x_proj[1] = x_proj[0]
        return original(self, x_proj, states, record)

    monkeypatch.setattr(ConvLSTMCell, "recurrent_step", forget_gate_as_input_gate)
    args = ["bench", "--keras", flavor, "--conv-only", "--repeats", "1", "--dtypes", "float64"]
    assert main([*args, "--contenders", "twin,tf_function"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and "PARITY BROKEN in 2 configuration(s)" in out


def test_bench_conv_only_refuses_gradients(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--conv-only", "--gradients"]) == 2
    assert "--conv-only" in capsys.readouterr().err
