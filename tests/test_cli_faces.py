"""The command line as users meet it: help texts with exit codes, `--json -`, one Keras
flag, explain's kinds and refusals, diff's readable output, verify's tolerance column and
reasons, export's folder rules and index, TensorFlow's start-up noise kept out."""

from __future__ import annotations

import copy
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import flavor_available, keras_handle

from rnnparity.cli import main, table
from rnnparity.cli.common import EXIT_ERROR, EXIT_MISMATCH, EXIT_OK, is_tensorflow_noise
from rnnparity.cli.diff import CASE_ID_LEGEND, legend, unexplained_parts
from rnnparity.cli.parser import SUBCOMMANDS
from rnnparity.suite import check_matrix, matrix, report

# masked: Keras's masked step makes oneDNN log a DT_BOOL note mid-run, after the start-up lines
ONE_CASE = next(
    c.case_id for c in matrix.default_cases(3) if c.kind == "simple_rnn" and c.dtype == "float32" and c.mask != "none"
)
needs_keras3 = pytest.mark.skipif(not flavor_available("keras3"), reason="keras 3 is not installed")


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --------------------------------------------------------------------------- the table renderer
def test_one_table_renderer_aligns_text_and_markdown() -> None:
    text = table.render(("name", "ms"), [("lstm", "1.50"), ("simple_rnn", "12.00")], right=[1])
    assert text.splitlines() == ["name           ms", "----------  -----", "lstm         1.50", "simple_rnn  12.00"]
    markdown = table.render(("name", "ms"), [("lstm", "1.50")], right=[1], markdown=True)
    assert markdown.splitlines() == ["| name | ms |", "|---|---:|", "| lstm | 1.50 |"]
    with pytest.raises(ValueError, match=r"row 0 has 1 cells; the header has 2"):
        table.render(("a", "b"), [("only one",)])


# --------------------------------------------------------------------------- help and exit codes
@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_every_subcommand_has_a_description_and_its_exit_codes(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, command, "--help")
    assert code == EXIT_OK
    flat = " ".join(out.split())
    assert f"exit codes: {EXIT_OK}:" in flat and f"{EXIT_ERROR}:" in flat
    description = flat.split("positional arguments:")[0].split("options:")[0]
    assert len(description.split()) > 20, description  # usage line plus a real description


def test_exit_codes_are_named_constants() -> None:
    assert (EXIT_OK, EXIT_MISMATCH, EXIT_ERROR) == (0, 1, 2)


# --------------------------------------------------------------------------- explain
@pytest.mark.parametrize(("class_name", "kind"), [("LSTM", "lstm"), ("GRU", "gru"), ("SimpleRNN", "simple_rnn")])
def test_explain_takes_keras_class_names(class_name: str, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, by_class, _ = _run(capsys, "explain", class_name, "--units", "3", "--format", "json")
    assert code == EXIT_OK
    _, by_kind, _ = _run(capsys, "explain", kind, "--units", "3", "--format", "json")
    assert json.loads(by_class) == json.loads(by_kind)
    assert json.loads(by_class)["kind"] == kind


def test_explain_gru_reset_after_still_applies(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "explain", "GRU", "--reset-after", "false", "--format", "json")
    assert code == EXIT_OK and json.loads(out)["reset_after"] is False


def test_explain_plot_of_a_wide_layer_stays_readable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread

    from rnnparity.cli.plot import MAX_HEIGHT_PX, MAX_WIDTH_PX

    sizes = {}
    for units in (4, 50, 300):
        path = tmp_path / f"lstm{units}.png"
        code, _, err = _run(capsys, "explain", "lstm", "--units", str(units), "--input-dim", "20", "--plot", str(path))
        assert code == EXIT_OK, err
        height, width = imread(str(path)).shape[:2]
        sizes[units] = (width, height)
        assert width <= MAX_WIDTH_PX and height <= MAX_HEIGHT_PX, (units, width, height)
    # one block per gate once units are grouped: each of the 4 gate labels gets >= 1/5 of the width
    assert sizes[50][0] / 5 >= 300 and sizes[300] == sizes[50]


# --------------------------------------------------------------------------- diff (synthetic reports: presentation only)
def _record(case_id: str, values: list[float], config: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": case_id,
        "config": config or {"kind": "lstm", "dtype": "float32", "recurrent_activation": "sigmoid"},
        "seed": 1,
        "inputs_sha256": "a" * 64,
        "weights_sha256": "b" * 64,
        "outputs_sha256": report.checksum([np.asarray(values)]),
        "outputs_sample": {"total": len(values), "indices": list(range(len(values))), "values": values},
        "parity": {"ok": True, "max_abs_err": 0.0, "max_rel_err": 0.0, "tolerance_used": 0.0, "message": "match"},
    }


def _reports(tmp_path: Path, drifted: int) -> tuple[str, str]:
    env = {"keras_major": 3, "keras_backend": "tensorflow", "keras_package": "keras", "rnnparity": "0.1.0"}
    base = [0.25, -0.5, 0.125]
    old = [_record(f"lstm-u3-d4-t5-b2-tanh-sigmoid-bias-seq0-st0-f32-s{i}", base) for i in range(drifted + 2)]
    new = copy.deepcopy(old)
    new[0] = _record(old[0]["id"], [0.25, -0.5, 0.125 + 1e-7])  # within f32 tolerance
    for record in new[2:]:
        record.update(_record(record["id"], [0.25, -0.5, 0.2]))  # drift, unexplained
    time_major = {"kind": "gru", "dtype": "float32", "recurrent_activation": "sigmoid", "time_major": True}
    old.append(_record("gru-ra-u3-d4-t5-b2-tanh-sigmoid-bias-seq1-st0-tmajor-f32-s9", base, time_major))
    paths = []
    for name, records, major in (("old", old, 2), ("new", new, 3)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(report.build_report({**env, "keras_major": major}, records, {})))
        paths.append(str(path))
    return paths[0], paths[1]


def test_diff_names_changes_within_tolerance_the_show_option_and_one_sided_reasons(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = _reports(tmp_path, drifted=7)
    code, out, _ = _run(capsys, "diff", old, new)
    assert code == EXIT_MISMATCH
    assert "changed within tolerance: 1 configurations" in out
    assert "lstm-u3-d4-t5-b2-tanh-sigmoid-bias-seq0-st0-f32-s0" in out.split("changed within tolerance:")[1]
    assert "... and 2 more (--show N lists N per group)" in out
    assert "only in old report: 1 configurations" in out
    assert "time_major exists in Keras 2 only; the new report is Keras 3" in out
    assert legend() in out
    code, out, _ = _run(capsys, "diff", old, new, "--show", "10")
    assert "more (--show N" not in out


def test_every_case_id_in_the_matrix_is_explained_by_the_legend() -> None:
    ids = {case.case_id for major in (2, 3) for case in check_matrix.all_cases(major)}
    assert len(ids) > 1000
    unexplained = {part for case_id in ids for part in unexplained_parts(case_id)}
    assert not unexplained, sorted(unexplained)
    assert unexplained_parts("lstm-u3-zz9-f32-s0") == ["zz9"]  # the check itself can fail
    assert all(meaning for _, _, meaning in CASE_ID_LEGEND)


def test_diff_refusal_does_not_suggest_writing_over_the_users_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mine.json"
    path.write_text('{"format": "something-else"}')
    code, _, err = _run(capsys, "diff", str(path), str(path))
    assert code == EXIT_ERROR and "not an rnnparity check report" in err
    assert f"--json {path}" not in err


# --------------------------------------------------------------------------- Keras-backed faces
@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not flavor_available("keras3"):
        pytest.skip("keras 3 is not installed")
    k = keras_handle("keras3").module
    model = k.Sequential([k.Input((None, 3)), k.layers.LSTM(4, return_sequences=True, name="lstm"), k.layers.GRU(2, name="gru")])
    rng = np.random.default_rng(3)  # random weights everywhere, biases included: gate-order bugs cannot hide
    model.set_weights([rng.uniform(-0.8, 0.8, w.shape).astype(w.dtype) for w in model.get_weights()])
    path = tmp_path_factory.mktemp("model") / "model.keras"
    model.save(str(path))
    return path


@needs_keras3
def test_check_json_dash_goes_to_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(capsys, "check", "--keras", "keras3", "-k", ONE_CASE, "--json", "-")
    assert code == EXIT_OK, err
    data = json.loads(out)
    assert data["format"] == "rnnparity-check-report" and data["cases"]
    assert "PARITY HOLDS" in err and not (tmp_path / "-").exists()


def test_verify_json_dash_table_and_tolerance(
    saved_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(capsys, "verify", str(saved_model), "--json", "-")
    assert code == EXIT_OK, err
    assert {row["name"] for row in json.loads(out)["layers"]} == {"lstm", "gru"}
    assert not (tmp_path / "-").exists()
    header = next(line for line in err.splitlines() if line.startswith("layer "))
    assert "tolerance (rtol, atol)" in header and "used" in header
    lstm_row = next(line for line in err.splitlines() if line.startswith("lstm "))
    assert "1e-05, 1e-06" in lstm_row and lstm_row.rstrip().endswith("ok")
    assert "a layer passes when every |twin - keras| <= atol + rtol * |keras|" in err


def test_verify_keras_flag_and_wrong_inputs(saved_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "verify", str(saved_model), "--keras", "tf-keras")
    assert code == EXIT_ERROR and "written by keras3" in err and "--keras chooses only for weights-only files" in err
    code, _, err = _run(capsys, "verify", str(saved_model), "--keras", "keras3")
    assert code == EXIT_OK, err
    wrong = tmp_path / "x.npy"
    np.save(wrong, np.ones((2, 8), "float32"))
    code, out, err = _run(capsys, "verify", str(saved_model), "--inputs", str(wrong))
    assert code == EXIT_ERROR and out == "" and err.count("\n") == 1
    assert "has shape (2, 8); the model expects (None, None, 3)" in err


@needs_keras3
def test_verify_keras_flag_picks_the_keras_for_a_weights_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    k = keras_handle("keras3").module
    model = k.Sequential([k.Input((5, 3)), k.layers.SimpleRNN(2, name="rnn")])
    path = tmp_path / "only.weights.h5"
    model.save_weights(str(path))
    code, out, err = _run(capsys, "verify", str(path), "--keras", "keras3")
    assert code == EXIT_OK, err
    assert "keras 3" in out
    code, _, err = _run(capsys, "verify", str(path), "--keras", "keras3", "--set", "keras_version=2")
    assert code == EXIT_ERROR and "--keras keras3 is Keras 3, but --set keras_version=2" in err


def test_explain_on_a_model_names_each_layer_once(saved_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "explain", str(saved_model))
    assert code == EXIT_OK, err
    assert "lstm: LSTM\n" in out and "gru: GRU\n" in out and "LSTM LSTM" not in out


def test_export_folder_rules_and_index(saved_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "vectors"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    code, _, err = _run(capsys, "export", str(saved_model), str(target))
    assert code == EXIT_ERROR and "it is not empty" in err
    code, _, err = _run(capsys, "export", str(saved_model), str(target), "--force")
    assert code == EXIT_ERROR and "notes.txt is not part of one" in err
    (target / "notes.txt").unlink()
    code, _, err = _run(capsys, "export", str(saved_model), str(target), "--seed", "1")
    assert code == EXIT_OK, err
    (target / "99_stale.npz").write_bytes(b"")
    code, _, err = _run(capsys, "verify", str(saved_model), "--export", str(target))
    assert code == EXIT_ERROR and "it is not empty" in err
    index = json.loads((target / "index.json").read_text())
    index["calls"].append({"file": "99_stale.npz"})  # as if an earlier export had written it
    (target / "index.json").write_text(json.dumps(index))
    code, _, err = _run(capsys, "export", str(saved_model), str(target), "--force")
    assert code == EXIT_OK, err
    assert not (target / "99_stale.npz").exists()
    index = json.loads((target / "index.json").read_text())
    gates = {call["layer"]: call["gate_order"] for call in index["calls"]}
    assert gates == {
        "lstm": dict.fromkeys(("kernel", "recurrent_kernel", "bias"), "i, f, c, o"),
        "gru": dict.fromkeys(("kernel", "recurrent_kernel", "bias"), "z, r, h"),
    }
    assert "rnnparity.layout" not in index["note"] and "LSTM: i, f, c, o" in index["note"]
    for call in index["calls"]:
        assert call["recommended_tolerance"]["rtol"] == 1e-5 and call["recommended_tolerance"]["atol"] == 1e-6
    assert index["model_file"] == "model.npz"
    k = keras_handle("keras3").module
    model = k.models.load_model(str(saved_model))
    with np.load(target / "model.npz") as saved:
        names = [n for n in saved if n.startswith("inputs.")]
        assert len(names) == 1
        inputs = saved[names[0]]
        assert inputs.shape == (2, 8, 3)
        from rnnparity import assert_parity

        assert_parity(np.asarray(model(inputs, training=False)), saved["outputs.0"])


def test_a_keras_error_keeps_its_reason() -> None:
    from rnnparity.files import verify

    keras_style = ValueError(
        "Exception encountered when calling Functional.call().\n\n"
        "Input 0 of layer 'lstm' is incompatible with the layer: expected ndim=3, found ndim=2.\n\n"
        "Arguments received by Functional.call():\n  * inputs=tf.Tensor(shape=(2, 8), dtype=float32)"
    )
    reason = "Input 0 of layer 'lstm' is incompatible with the layer: expected ndim=3, found ndim=2."
    assert verify.first_line(keras_style) == reason
    assert verify.first_line(ValueError("one line\nmore")) == "one line"


# --------------------------------------------------------------------------- TensorFlow's start-up noise
def test_noise_filter_keeps_other_lines() -> None:
    assert is_tensorflow_noise("I0000 00:00:1.0  7658 port.cc:153] oneDNN custom operations are on. You may see")
    assert is_tensorflow_noise("E0000 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error")
    assert is_tensorflow_noise("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR")
    assert not is_tensorflow_noise("ValueError: Input 0 of layer 'lstm' is incompatible with the layer")


def test_cli_output_has_no_tensorflow_start_up_lines(saved_model: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "x.npy"
    np.save(wrong, np.ones((2, 8), "float32"))
    runs = {
        "verify": [str(saved_model)],
        "explain": [str(saved_model)],
        "check": ["--keras", "keras3", "-k", ONE_CASE],
        "verify-bad-inputs": [str(saved_model), "--inputs", str(wrong)],
    }
    for name, args in runs.items():
        command = name.split("-")[0]
        # A user's shell, not this test process's (keras_adapter may have set TensorFlow's log level here).
        env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
        done = subprocess.run(
            [sys.executable, "-m", "rnnparity", command, *args], capture_output=True, text=True, check=False, timeout=300, env=env
        )
        both = done.stdout + done.stderr
        for marker in ("cuInit", "oneDNN", "cudart_stub", "absl::InitializeLog"):
            assert marker not in both, (name, both)
        if name == "verify-bad-inputs":
            assert done.returncode == EXIT_ERROR and "the model expects (None, None, 3)" in done.stderr
        else:
            assert done.returncode == EXIT_OK, both


# --------------------------------------------------------------------------- bench
def test_bench_takes_class_names_and_returns_named_codes(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", "--kinds", "SimpleRNN", "--shapes", "small", "--dtypes", "float64", "--repeats", "1", "--no-decode"]
    code, out, err = _run(capsys, *args, "--contenders", "twin", "--json", "-")
    assert code == EXIT_OK, err
    assert [r["kind"] for r in json.loads(out)["results"]] == ["simple_rnn"]


def test_tensorflow_retracing_warnings_are_dropped_and_other_warnings_kept(caplog: pytest.LogCaptureFixture) -> None:
    from rnnparity.cli.common import import_tensorflow_quietly

    import_tensorflow_quietly()
    logger = logging.getLogger("tensorflow")
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        logger.warning("5 out of the last 5 calls to <function conv> triggered tf.function retracing. Tracing is expensive")
        logger.warning("a warning TensorFlow wants read")
    assert [r.getMessage() for r in caplog.records] == ["a warning TensorFlow wants read"]
