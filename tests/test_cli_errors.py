"""The command line under hostile input: every refusal is one line on stderr, exit code 2,
no traceback — bad options, missing and corrupted files, unwritable output paths."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import FLAVOR_MAJOR, flavor_params, keras_handle
from hypothesis import given
from hypothesis import strategies as st

from rnnparity import cli
from rnnparity.suite import report


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(args))
    except SystemExit as exc:  # argparse exits itself
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


# --------------------------------------------------------------------------- options
BAD_OPTIONS = [
    ([], "the following arguments are required: command"),
    (["bogus"], "invalid choice: 'bogus'"),
    (["check", "--no-such-option"], "unrecognized arguments: --no-such-option"),
    (["check", "--keras", "keras4"], "invalid choice: 'keras4'"),
    (["check", "--show-failures", "many"], "invalid int value: 'many'"),
    (["check", "--show-failures", "-1"], "--show-failures must be 0 or more"),
    (["diff", "only-one.json"], "the following arguments are required: NEW.json"),
    (["diff", "a.json", "b.json", "--rtol", "nan"], "--rtol must be a finite number >= 0"),
    (["diff", "a.json", "b.json", "--atol", "-1"], "--atol must be a finite number >= 0"),
    (["diff", "a.json", "b.json", "--show", "-2"], "--show must be 0 or more"),
    (["explain"], "the following arguments are required: KIND|MODEL"),
    (["explain", "lstm", "--units", "abc"], "invalid int value: 'abc'"),
    (["explain", "lstm", "--units", "-3"], "units and input_dim must be positive"),
    (["explain", "lstmm"], "expected one of lstm, gru, simple_rnn, conv_lstm1d, conv_lstm2d, conv_lstm3d (or the Keras class"),
    (["explain", "lstm", "--reset-after", "false"], "--reset-after applies to GRU only; got lstm"),
    (["explain", "SimpleRNN", "--reset-after", "true"], "--reset-after applies to GRU only; got SimpleRNN"),
    (["explain", "model.keras", "--units", "5"], "--units describe a layer kind; model.keras is a file"),
    (["verify", "model.keras", "--force"], "--force replaces an earlier --export; there is no --export"),
    (["verify", "model.keras", "--keras", "keras4"], "invalid choice: 'keras4'"),
    (["bench", "--contenders", "twin", "--kinds", "LSTM,Conv"], "--kinds takes a comma-separated subset of"),
    (["explain", "gru", "--format", "yaml"], "invalid choice: 'yaml'"),
    (["verify"], "the following arguments are required: MODEL"),
    (["verify", "model.keras", "--timesteps", "0"], "--timesteps must be a positive integer"),
    (["verify", "model.keras", "--batch-size", "-4"], "--batch-size must be a positive integer"),
    (["verify", "model.keras", "--seed", "-1"], "--seed must be a non-negative integer"),
    (["verify", "model.keras", "--inputs", "x.npy", "--seed", "3"], "--inputs gives the inputs"),
]


@pytest.mark.parametrize(("args", "message"), BAD_OPTIONS, ids=[" ".join(a) or "nothing" for a, _ in BAD_OPTIONS])
def test_bad_options_get_one_line_and_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, *args)
    _one_line_error(code, err, message)
    assert out == ""


def test_help_and_version_still_work(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "verify", "--help")
    assert code == 0 and "--export" in out
    code, out, _ = _run(capsys, "--version")
    assert code == 0 and out.startswith("rnnparity ")


def test_the_installed_command_prints_no_usage_block() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rnnparity", "check", "--bogus"], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "rnnparity check: error: unrecognized arguments: --bogus (see rnnparity check --help)\n"


# --------------------------------------------------------------------------- files
@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("absent.keras", None, "no such file"),
        ("model.keras", b"", "is not a Keras model file"),
        ("model.keras", b"\x00\xff" * 50, "is not a Keras model file"),
        ("model.h5", b"\x89HDF\r\n\x1a\n" + b"\xff" * 100, "corrupted HDF5 file"),
        ("model.keras", b'{"class_name": "Sequential"}', "is not a Keras model file"),
        ("model.keras", b"PK\x05\x06" + b"\x00" * 18, "without config.json"),
    ],
    ids=["missing", "empty", "binary", "broken-hdf5", "json-not-archive", "empty-zip"],
)
@pytest.mark.parametrize("command", ["verify", "explain"])
def test_unloadable_model_files(
    command: str, name: str, content: bytes | None, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    code, out, err = _run(capsys, command, str(path))
    _one_line_error(code, err, message)
    assert out == ""


def test_a_directory_is_not_a_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "verify", str(tmp_path))
    _one_line_error(code, err, "is a directory")


def _valid_report() -> dict[str, Any]:
    record = {
        "id": "lstm-u3-d4-t5-b2-tanh-sigmoid-bias-seq0-st0-f32-s1",
        "config": {"kind": "lstm", "dtype": "float32", "recurrent_activation": "sigmoid"},
        "seed": 1,
        "inputs_sha256": "a" * 64,
        "weights_sha256": "b" * 64,
        "outputs_sha256": "c" * 64,
        "outputs_sample": {"total": 3, "indices": [0, 1, 2], "values": [0.25, -0.5, 0.125]},
        "parity": {"ok": True, "max_abs_err": 0.0, "max_rel_err": 0.0, "tolerance_used": 0.0, "message": "match"},
    }
    environment = {"keras_major": 3, "keras_backend": "tensorflow", "keras_package": "keras"}
    return report.build_report(environment, [record], {})


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            paths += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            paths += _paths(item, (*prefix, index))
    return paths


@given(data=st.data())
def test_any_corruption_of_a_report_is_refused_in_one_line_or_compared(data: st.DataObject, tmp_path_factory) -> None:
    """Replace any part of a valid report with any JSON value (or delete a key): ``diff`` either
    compares (exit 0/1) or refuses in one line (exit 2), never a traceback."""
    valid = _valid_report()
    corrupt = copy.deepcopy(valid)
    path = data.draw(st.sampled_from(_paths(valid)[1:]), label="path")
    parent = corrupt
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, dict) and data.draw(st.booleans(), label="delete"):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(JSON_VALUES, label="value")
    directory = tmp_path_factory.mktemp("reports")
    good, bad = directory / "good.json", directory / "bad.json"
    good.write_text(json.dumps(valid))
    bad.write_text(json.dumps(corrupt, allow_nan=True))
    for pair in ((good, bad), (bad, good)):
        code = cli.main(["diff", *map(str, pair)])
        assert code in (0, 1, 2)


@given(content=st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_any_bytes_as_a_report_are_refused_in_one_line(content: bytes, tmp_path_factory) -> None:
    path = tmp_path_factory.mktemp("reports") / "report.json"
    path.write_bytes(content)
    with pytest.raises(report.ReportError) as info:
        report.load_report(str(path))
    assert "\n" not in str(info.value)


def test_report_type_errors_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = {
        "id": ({"id": ["not", "a", "string"]}, "'id' must be a string"),
        "config": ({"config": "lstm"}, "'config' must be an object"),
        "dtype": ({"config": {"dtype": "float16"}}, "config 'dtype' must be"),
        "sample": ({"outputs_sample": {"total": 1, "indices": [0], "values": ["x"]}}, "'outputs_sample.values'"),
        "sha": ({"outputs_sha256": 5}, "'outputs_sha256' must be a string"),
    }
    for name, (change, message) in cases.items():
        broken = _valid_report()
        broken["cases"][0].update(change)
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(broken))
        code, _, err = _run(capsys, "diff", str(path), str(path))
        _one_line_error(code, err, message, "case #0 is malformed")
    twice = _valid_report()
    twice["cases"].append(dict(twice["cases"][0]))
    path = tmp_path / "twice.json"
    path.write_text(json.dumps(twice))
    code, _, err = _run(capsys, "diff", str(path), str(path))
    _one_line_error(code, err, "appears twice")


# --------------------------------------------------------------------------- output paths
def test_check_refuses_output_paths_before_loading_keras(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    for target, message in ((blocker / "report.json", "cannot write --json"), (tmp_path, "it is a directory")):
        code, out, err = _run(capsys, "check", "--keras", "keras3", "--json", str(target))
        _one_line_error(code, err, message)
        assert out == ""  # refused before the versions line, i.e. before TensorFlow is imported


def test_explain_refuses_an_unwritable_plot_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, _, err = _run(capsys, "explain", "lstm", "--plot", str(blocker / "layout.png"))
    _one_line_error(code, err, "cannot write --plot")


@pytest.mark.parametrize("flavor", [p for f in FLAVOR_MAJOR for p in flavor_params(f, [(f,)], ids=[f])])
def test_verify_refuses_output_paths_before_running(flavor: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    handle = keras_handle(flavor)
    k = handle.module
    model = k.Sequential([k.Input((None, 3)), k.layers.GRU(2)])
    path = tmp_path / ("model.keras" if handle.keras_version == 3 else "model.h5")
    model.save(str(path))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    refusals = [
        (["--json", str(blocker / "report.json")], "cannot write --json"),
        (["--json", str(tmp_path)], "cannot write --json"),
        (["--export", str(blocker)], "cannot write --export"),
        (["--export", str(blocker / "vectors")], "is not a directory"),
    ]
    for extra, message in refusals:
        code, out, err = _run(capsys, "verify", str(path), *extra)
        _one_line_error(code, err, message)
        assert out == ""
    code, out, err = _run(capsys, "verify", str(path), "--json", str(tmp_path / "r.json"), "--export", str(tmp_path / "v" / "w"))
    assert code == 0, err
    assert (tmp_path / "v" / "w" / "index.json").exists() and json.loads((tmp_path / "r.json").read_text())
