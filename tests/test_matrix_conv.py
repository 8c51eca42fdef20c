"""The ConvLSTM cases of the upgrade matrix (the ``conv`` family) in ``check``, in reports and
in ``diff``.

The default run checks the ``--quick`` sample of the family against each installed Keras;
``-m slow`` checks every case. Reproduce one case with ``pytest -k <case id>`` or
``rnnparity check --keras <flavour> -k <case id>``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from conftest import FLAVOR_MAJOR, assert_keras_still_fails, flavor_available, flavor_params, keras_handle

from rnnparity.activations import activations_for
from rnnparity.cli import main
from rnnparity.cli.check import FAMILIES
from rnnparity.cli.diff import family_of_id
from rnnparity.suite import check_matrix, conv_matrix, matrix, parity, report, wrapper_matrix
from rnnparity.suite.conv_matrix import ConvCase
from rnnparity.suite.known_differences import expected_keras_failure, explain

ROOT = pathlib.Path(__file__).resolve().parents[1]
both_flavors = pytest.mark.skipif(
    not all(flavor_available(f) for f in FLAVOR_MAJOR), reason="needs both keras 3 and tf_keras installed"
)


# --------------------------------------------------------------------------- the matrix itself (NumPy only)
@pytest.mark.parametrize("keras_version", [2, 3])
def test_conv_matrix_covers_every_option(keras_version: int) -> None:
    cases = conv_matrix.conv_cases(keras_version)
    assert 150 < len(cases) < 400
    for rank in conv_matrix.RANKS:
        mine = [c for c in cases if c.rank == rank]
        for dtype in conv_matrix.DTYPES:
            of_dtype = [c for c in mine if c.dtype == dtype]
            assert {c.tags[1] for c in of_dtype if c.tags[0] == "conv-geometry"} == set(conv_matrix.GEOMETRIES)
            assert {(c.return_sequences, c.return_state) for c in of_dtype} == {(a, b) for a in (0, 1) for b in (0, 1)}
            for option in ("go_backwards", "initial_state", "use_bias", "unit_forget_bias"):
                assert {getattr(c, option) for c in of_dtype} == {True, False}, (rank, dtype, option)
            assert {c.padding for c in of_dtype} == {"valid", "same"}
            assert {c.data_format for c in of_dtype} == {"channels_last", "channels_first"}
            assert any(max(c.strides) > 1 for c in of_dtype) and any(max(c.dilation_rate) > 1 for c in of_dtype)
            assert any(max(c.kernel_size) == 1 for c in of_dtype)
            assert any(c.go_backwards and c.initial_state and c.return_state for c in of_dtype)
        # Strides and dilation on a non-last axis too, for ConvLSTM2D and 3D.
        if rank > 1:
            assert any(max(c.strides[:-1]) > 1 for c in mine) and any(max(c.dilation_rate[:-1]) > 1 for c in mine)
    names = set(activations_for(keras_version))
    assert {c.activation for c in cases} == names
    assert {c.recurrent_activation for c in cases} == names
    assert {c.recurrent_activation for c in cases if "conv-core" in c.tags} == {"sigmoid", "hard_sigmoid"}
    # Small: the family must add little time to `check`.
    assert max(int(np.prod(c.spatial)) for c in cases) <= 64 and max(c.timesteps for c in cases) <= 4


def test_conv_ids_are_unique_shared_by_both_versions_and_apart_from_other_families() -> None:
    keras2 = {c.case_id: c for c in conv_matrix.conv_cases(2)}
    keras3 = {c.case_id: c for c in conv_matrix.conv_cases(3)}
    assert len(keras2) == len(conv_matrix.conv_cases(2)) and len(keras3) == len(conv_matrix.conv_cases(3))
    # Keras 3 has more activation names; everything else is the same configuration.
    assert set(keras2) < set(keras3)
    assert {c.activation for c in keras3.values() if c.case_id not in keras2} <= set(activations_for(3)) - set(
        activations_for(2)
    ) | {"tanh"}
    for case_id in list(keras2)[::11]:
        a, b = conv_matrix.make_conv_data(keras2[case_id]), conv_matrix.make_conv_data(keras3[case_id])
        assert report.data_checksums(a) == report.data_checksums(b)
    others = {c.case_id for c in matrix.all_cases(3)} | {c.case_id for c in wrapper_matrix.wrapper_cases(3)}
    assert not set(keras3) & others
    assert all(c.family == "conv" and family_of_id(c.case_id) == "conv" for c in keras3.values())
    case = next(iter(keras3.values()))
    assert case.case_id.startswith(f"conv_lstm{case.rank}d-filters{case.filters}-ch{case.channels}-in")


def test_conv_ids_say_the_geometry() -> None:
    case = ConvCase(
        rank=2,
        keras_version=3,
        filters=3,
        channels=1,
        spatial=(5, 4),
        kernel_size=(3, 2),
        strides=(1, 2),
        dilation_rate=(1, 1),
        padding="same",
        data_format="channels_first",
        unit_forget_bias=False,
        go_backwards=True,
        initial_state=True,
        dtype="float64",
        seed=7,
    )
    assert case.case_id == (
        "conv_lstm2d-filters3-ch1-in5x4-k3x2-str1x2-same-chfirst-t3-b2-tanh-sigmoid-bias-nufb-seq0-st0-back-init-f64-s7"
    )
    assert case.spatial_out == (5, 2) and case.state_shape() == (2, 3, 5, 2) and case.input_shape() == (2, 3, 1, 5, 4)


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"rank": 4}, "rank must be one of (1, 2, 3); got 4"),
        ({"kernel_size": (3, 3)}, "kernel_size must be a tuple of 1 integers for rank 1; got (3, 3)"),
        ({"padding": "causal"}, "padding must be one of ('valid', 'same'); got 'causal'"),
        ({"data_format": "NWC"}, "data_format must be one of"),
        ({"strides": (2,), "dilation_rate": (2,)}, "Keras refuses both above 1"),
        ({"spatial": (2,)}, "spatial (2,) is smaller than kernel_size (3,)"),
    ],
)
def test_impossible_conv_cases_are_refused(fields: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        ConvCase(**{"rank": 1, "keras_version": 3, **fields})
    assert fragment in str(info.value)


def test_conv_data_is_seeded_random_never_constant() -> None:
    for case in conv_matrix.conv_cases(3)[::4]:
        data = conv_matrix.make_conv_data(case)
        assert report.data_checksums(data) == report.data_checksums(conv_matrix.make_conv_data(case))
        for weight in data.weights:
            assert weight.dtype == np.dtype(case.dtype)
            assert np.unique(weight).size == weight.size, case.case_id
        (call,) = data.calls
        assert call.inputs.shape == case.input_shape() and call.mask is None
        if case.initial_state:
            assert call.initial_state is not None and [s.shape for s in call.initial_state] == [case.state_shape()] * 2
        twin = conv_matrix.conv_twin(case)
        assert [w.shape for w in twin.get_weights()] == [w.shape for w in data.weights], case.case_id
        output = twin(call.inputs, initial_state=call.initial_state)
        first = output[0] if case.return_state else output
        expected = case.state_shape()
        if case.return_sequences:
            expected = (expected[0], case.timesteps, *expected[1:])
        assert first.shape == expected, case.case_id


def test_quick_keeps_about_one_in_eight_of_the_conv_cases() -> None:
    full, quick = conv_matrix.conv_cases(3), conv_matrix.conv_cases(3, quick=True)
    assert len(full) / 14 < len(quick) < len(full) / 5
    assert {c.case_id for c in quick} <= {c.case_id for c in full}
    assert {c.rank for c in quick} == set(conv_matrix.RANKS) and {c.dtype for c in quick} == set(conv_matrix.DTYPES)


@pytest.mark.parametrize("keras_version", [2, 3])
def test_conv_cases_can_decide_parity_in_their_dtype(keras_version: int) -> None:
    """The twin in float32 against the twin in float64 (parity.compare_conditioning): rounding,
    amplified by the recurrence or by long convolution sums, cannot explain a mismatch."""
    for case in conv_matrix.conv_cases(keras_version):
        data = conv_matrix.make_conv_data(case)
        (call,) = data.calls
        results = {}
        for dtype in ("float32", "float64"):
            twin = conv_matrix.conv_twin(case, overrides={"dtype": dtype}, weights=[w.astype(dtype) for w in data.weights])
            inputs = call.inputs.astype(dtype)
            initial_state = None if call.initial_state is None else [s.astype(dtype) for s in call.initial_state]
            results[dtype] = twin(inputs, initial_state=initial_state)
        result = parity.compare_conditioning(results["float32"], results["float64"], case.dtype, context=case.case_id)
        assert result.ok, result.message


def test_check_runs_the_conv_family_with_the_others() -> None:
    cases = check_matrix.all_cases(3, quick=True)
    assert {c.family for c in cases} == set(check_matrix.family_names()) == set(FAMILIES) == {"layer", "wrapper", "conv"}
    assert [c.case_id for c in cases if c.family == "conv"] == [c.case_id for c in conv_matrix.conv_cases(3, quick=True)]
    counts = check_matrix.describe_counts(cases)
    assert counts.endswith(f", {len(conv_matrix.conv_cases(3, quick=True))} ConvLSTM (ConvLSTM1D, ConvLSTM2D, ConvLSTM3D)")
    assert {c.kind for c in cases if c.family == "conv"} == {"conv_lstm1d", "conv_lstm2d", "conv_lstm3d"}


def test_a_conv_hard_sigmoid_is_the_known_keras_2_to_3_difference() -> None:
    cases = conv_matrix.conv_cases(3)
    hard = next(c for c in cases if c.recurrent_activation == "hard_sigmoid" and c.activation == "tanh")
    plain = next(c for c in cases if (c.activation, c.recurrent_activation) == ("tanh", "sigmoid"))
    k2, k3 = {"keras_major": 2}, {"keras_major": 3}
    assert [d.id for d in explain(hard.to_dict(), k2, k3)] == ["hard-sigmoid-formula"]
    assert explain(plain.to_dict(), k2, k3) == []


# --------------------------------------------------------------------------- against Keras
def _params(quick: bool) -> list:
    params = []
    for flavor, major in FLAVOR_MAJOR.items():
        cases = conv_matrix.conv_cases(major, quick=quick)
        params += flavor_params(flavor, [(flavor, c) for c in cases], [f"{flavor}-{c.case_id}" for c in cases])
    return params


def _check(flavor: str, case: ConvCase) -> None:
    handle = keras_handle(flavor)
    failure = expected_keras_failure(case.to_dict(), handle.environment)
    if failure is not None:
        # Keras alone inside the check; the twin, which Keras cannot check here, against itself.
        assert_keras_still_fails(failure, handle, lambda: parity.keras_conv_results(case, handle))
        alone = parity.conv_twin_self_check(case, handle.backend)
        assert alone.ok, alone.message
        return
    result = check_matrix.run(case, handle)
    assert result.ok, result.message
    assert result.keras_outputs and all(isinstance(o, np.ndarray) for o in result.keras_outputs)
    assert len(result.keras_outputs) == (3 if case.return_state else 1)


@pytest.mark.parametrize(("flavor", "case"), _params(quick=True))
def test_conv_twin_matches_keras(flavor: str, case: ConvCase) -> None:
    _check(flavor, case)


@pytest.mark.slow
@pytest.mark.parametrize(("flavor", "case"), [p for p in _params(quick=False)])
def test_every_conv_case_matches_keras(flavor: str, case: ConvCase) -> None:
    _check(flavor, case)


def _swap(weights: list[np.ndarray], filters: int, a: int, b: int) -> list[np.ndarray]:
    """Gate blocks ``a`` and ``b`` (Keras order i, f, c, o) swapped in every weight."""
    swapped = []
    for weight in weights:
        copy = weight.copy()
        block_a, block_b = slice(a * filters, (a + 1) * filters), slice(b * filters, (b + 1) * filters)
        copy[..., block_a], copy[..., block_b] = weight[..., block_b], weight[..., block_a]
        swapped.append(copy)
    return swapped


@pytest.mark.parametrize("flavor", [p for f in FLAVOR_MAJOR for p in flavor_params(f, [(f,)], ids=[f])])
@pytest.mark.parametrize(("a", "b"), [(0, 1), (2, 3)], ids=["swap-i-f", "swap-c-o"])
def test_a_twin_with_swapped_gates_fails_its_conv_case(flavor: str, a: int, b: int) -> None:
    handle = keras_handle(flavor)
    case = next(
        c
        for c in conv_matrix.conv_cases(handle.keras_version)
        if c.rank == 2 and c.dtype == "float32" and c.data_format == "channels_last" and c.filters >= 2 and c.timesteps >= 2
    )
    assert parity.run_conv_case(case, handle).ok
    broken = parity.run_conv_case(case, handle, twin_weights=lambda w: _swap(w, case.filters, a, b))
    assert not broken.ok and case.case_id in broken.message
    assert broken.tolerance_used > 10


# --------------------------------------------------------------------------- reports and diff
def _some_cases(major: int) -> list[Any]:
    """Two layer cases, and conv cases of each rank: sigmoid ones and hard_sigmoid ones."""
    layer = [c for c in matrix.hard_sigmoid_cases(major) if c.input_scale == 3.0][:1]
    layer += [c for c in matrix.default_cases(major) if c.recurrent_activation == "sigmoid" and not c.stateful][:1]
    conv = [c for c in conv_matrix.core_conv_cases(major) if c.data_format == "channels_last"]
    picked = []
    for rank in conv_matrix.RANKS:
        for gate in ("sigmoid", "hard_sigmoid"):
            picked.append(next(c for c in conv if c.rank == rank and c.recurrent_activation == gate))
    return layer + picked


def _write(tmp_path: pathlib.Path, flavor: str) -> str:
    handle = keras_handle(flavor)
    records = []
    for case in _some_cases(handle.keras_version):
        result = check_matrix.run(case, handle)
        assert result.ok, result.message
        records.append(report.case_record(result, result.checksums))
    path = tmp_path / f"{flavor}.json"
    report.write_report(str(path), report.build_report(report.environment(handle), records, {}, check_matrix.family_names()))
    return str(path)


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if not all(flavor_available(f) for f in FLAVOR_MAJOR):
        pytest.skip("needs both keras 3 and tf_keras installed")
    tmp_path = tmp_path_factory.mktemp("conv-reports")
    return {flavor: _write(tmp_path, flavor) for flavor in FLAVOR_MAJOR}


def _load(path: str) -> dict[str, Any]:
    return json.loads(pathlib.Path(path).read_text())


def _save(data: dict[str, Any], path: pathlib.Path) -> str:
    path.write_text(json.dumps(data))
    return str(path)


@both_flavors
def test_conv_cases_go_into_format_2_reports(reports: dict[str, str]) -> None:
    data = report.load_report(reports["keras3"])
    assert data["format_version"] == 2 and data["families"] == ["layer", "wrapper", "conv"]
    assert data["summary"]["per_family"] == {"layer": 2, "wrapper": 0, "conv": 6}
    conv = [r for r in data["cases"] if r["family"] == "conv"]
    assert {r["config"]["kind"] for r in conv} == {"conv_lstm1d", "conv_lstm2d", "conv_lstm3d"}
    assert all(r["parity"]["ok"] and r["outputs_sample"]["total"] > 0 for r in conv)


@both_flavors
def test_diff_sees_a_changed_conv_case(reports: dict[str, str], tmp_path: pathlib.Path, capsys: Any) -> None:
    data = _load(reports["keras3"])
    record = next(r for r in data["cases"] if r["family"] == "conv" and r["config"]["rank"] == 3)
    middle = len(record["outputs_sample"]["values"]) // 2
    record["outputs_sample"]["values"][middle] += 1e-3
    record["outputs_sha256"] = "f" * 64
    changed = _save(data, tmp_path / "changed.json")
    assert main(["diff", reports["keras3"], changed]) == 1
    out = capsys.readouterr().out
    assert "8 shared configurations (6 conv, 2 layer): 7 identical" in out
    assert "DRIFT [unexplained] 1 configurations" in out and record["id"] in out
    assert "conv_lstm1d|2d|3d = a ConvLSTM case" in out  # the legend reads conv ids too


@both_flavors
def test_a_conv_case_in_one_report_only_is_listed(reports: dict[str, str], tmp_path: pathlib.Path, capsys: Any) -> None:
    data = _load(reports["keras3"])
    dropped = next(r for r in data["cases"] if r["family"] == "conv")
    data["cases"] = [r for r in data["cases"] if r is not dropped]
    fewer = _save(data, tmp_path / "fewer.json")
    assert main(["diff", fewer, reports["keras3"]]) == 0
    out = capsys.readouterr().out
    assert "only in new report: 1 configurations" in out and dropped["id"] in out
    assert "written by a version without" not in out
    # ... and with the reason, when the other report was written with --family.
    data["options"] = {"family": "layer"}
    layer_only = _save(data, tmp_path / "layer-only.json")
    assert main(["diff", layer_only, reports["keras3"]]) == 0
    assert "1: the old report was written with --family layer" in capsys.readouterr().out


@both_flavors
def test_keras2_to_keras3_conv_drift_is_hard_sigmoid_only(reports: dict[str, str], capsys: Any) -> None:
    result = report.diff_reports(report.load_report(reports["tf-keras"]), report.load_report(reports["keras3"]))
    hard = {c.case_id for c in _some_cases(3) if "hard_sigmoid" in c.case_id}
    assert {d.case_id for d in result.drifted} == hard
    assert all(d.causes == ["hard-sigmoid-formula"] for d in result.drifted)
    assert len([d for d in result.drifted if d.case_id.startswith("conv_lstm")]) == 3
    assert main(["diff", "--fail-on", "unexplained", reports["tf-keras"], reports["keras3"]]) == 0
    assert "(0 unexplained)" in capsys.readouterr().out


@both_flavors
def test_reports_written_before_the_conv_family_are_read(reports: dict[str, str], tmp_path: pathlib.Path, capsys: Any) -> None:
    """A format 2 report of an rnnparity without conv cases, and a format 1 report: their cases
    are compared, and the new report's conv cases are named as a family the old one lacked."""
    data = _load(reports["keras3"])
    before = {**data, "families": ["layer", "wrapper"], "cases": [r for r in data["cases"] if r["family"] != "conv"]}
    older = _save(before, tmp_path / "before-conv.json")
    assert main(["diff", older, reports["keras3"]]) == 0
    out = capsys.readouterr().out
    assert "2 shared configurations (2 layer): 2 identical" in out
    assert "not in the old report: 6 conv configurations: written by a version without conv cases (report format 2)" in out
    assert "only in new report" not in out and "NO DRIFT" in out

    version_1 = {k: v for k, v in before.items() if k != "families"}
    version_1["format_version"] = 1
    version_1["cases"] = [{k: v for k, v in r.items() if k != "family"} for r in before["cases"]]
    oldest = _save(version_1, tmp_path / "v1.json")
    assert main(["diff", reports["keras3"], oldest]) == 0
    out = capsys.readouterr().out
    assert "not in the new report: 6 conv configurations: written by a version without conv cases (report format 1)" in out


def test_a_report_of_a_newer_format_is_refused_in_one_line(tmp_path: pathlib.Path, capsys: Any) -> None:
    data = {"format": "rnnparity-check-report", "format_version": 3, "environment": {}, "families": ["conv"], "cases": []}
    path = _save(data, tmp_path / "newer.json")
    assert main(["diff", path, path]) == 2
    err = capsys.readouterr().err
    assert "report format version 3; this rnnparity reads versions 1 and 2" in err and err.count("\n") == 1


def test_check_family_conv_writes_a_conv_case(tmp_path: pathlib.Path, capsys: Any) -> None:
    if not flavor_available("keras3"):
        pytest.skip("keras 3 is not installed")
    case = next(c for c in conv_matrix.conv_cases(3) if c.rank == 3 and c.initial_state and c.return_state)
    path = tmp_path / "r.json"
    assert main(["check", "--keras", "keras3", "--family", "conv", "-k", case.case_id, "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "1 configurations: 1 ConvLSTM (ConvLSTM1D, ConvLSTM2D, ConvLSTM3D)" in out and "conv_lstm3d" in out
    data = report.load_report(str(path))
    (record,) = data["cases"]
    assert record["id"] == case.case_id and record["family"] == "conv" and record["parity"]["ok"]
    assert data["options"]["family"] == "conv"
    assert record["weights_sha256"] == report.data_checksums(conv_matrix.make_conv_data(case))["weights_sha256"]
    # --family conv leaves the other families out.
    assert main(["check", "--keras", "keras3", "--family", "conv", "-k", "lstm-u"]) == 2
    assert "no case id contains 'lstm-u'" in capsys.readouterr().err


# --------------------------------------------------------------------------- other Keras 3 backends
BACKEND_NEEDS = {"torch": ("torch",), "jax": ("jax",), "numpy": ("scipy",)}


def _backend_param(backend: str, *marks: Any) -> Any:
    missing = [name for name in BACKEND_NEEDS[backend] if importlib.util.find_spec(name) is None]
    skip = pytest.mark.skipif(bool(missing), reason=f"the {backend} backend needs {', '.join(missing)}")
    return pytest.param(backend, marks=[skip, *marks], id=backend)


@pytest.mark.keras
@pytest.mark.skipif(not flavor_available("keras3"), reason="backends are Keras 3's")
@pytest.mark.parametrize("backend", [_backend_param("torch"), _backend_param("numpy"), _backend_param("jax", pytest.mark.slow)])
def test_check_family_conv_on_another_backend(backend: str, tmp_path: pathlib.Path) -> None:
    """The quick conv cases under another Keras 3 backend, in a subprocess (check --backend)."""
    path = tmp_path / "report.json"
    command = [sys.executable, "-m", "rnnparity", "check", "--backend", backend, "--quick", "--family", "conv"]
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    done = subprocess.run([*command, "--json", str(path)], env=env, capture_output=True, text=True, check=False, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert f"backend {backend})" in done.stdout and "PARITY HOLDS" in done.stdout
    data = report.load_report(str(path))
    assert data["environment"]["keras_backend"] == backend
    cases = data["cases"]
    assert len(cases) == len(conv_matrix.conv_cases(3, quick=True))
    assert {c["config"]["rank"] for c in cases} == {1, 2, 3} and {c["config"]["dtype"] for c in cases} == {"float32", "float64"}


CONSTANTS_PROBE = """
import numpy as np, keras
from rnnparity.activations import gelu, leaky_relu
from rnnparity.compare import compare
x = np.random.default_rng(3).normal(0.0, 3.0, 4096)
for name, twin in (("gelu", gelu), ("leaky_relu", leaky_relu)):
    got = keras.ops.convert_to_numpy(keras.activations.get(name)(keras.ops.convert_to_tensor(x, dtype="float64")))
    exact = compare(got, twin(x), dtype="float64")
    near = compare(got, twin(x), dtype="float32", check_dtype=False)
    print(name, exact.ok, near.ok, exact.max_abs)
    assert not exact.ok and near.ok, (name, exact.message, near.message)
"""

# On JAX the known Keras failure of the conv cases must still happen (and the twin check itself).
JAX_FAILURE_PROBE = """
from rnnparity.suite import conv_matrix, keras_adapter, parity
from rnnparity.suite.known_differences import KNOWN_KERAS_FAILURES, expected_keras_failure
handle = keras_adapter.load_keras("keras3")
failure = next(f for f in KNOWN_KERAS_FAILURES if f.id == "jax-x64-conv-lstm-float64-tanh-tanh")
(case,) = [c for c in conv_matrix.conv_cases(3) if expected_keras_failure(c.to_dict(), handle.environment) is failure]
try:
    parity.keras_conv_results(case, handle)
    raise AssertionError(f"{failure.id} no longer happens: update the table")
except TypeError as exc:
    assert failure.matches_error(exc), exc
alone = parity.conv_twin_self_check(case, handle.backend)
assert alone.ok, alone.message
print(case.case_id, "still fails in Keras")
"""


@pytest.mark.keras
@pytest.mark.skipif(not flavor_available("keras3"), reason="backends are Keras 3's")
@pytest.mark.parametrize("backend", [_backend_param("torch"), _backend_param("jax")])
def test_float64_activation_constants_still_differ_on_jax_and_torch(backend: str) -> None:
    """float64-activation-constants is data: Keras on JAX and torch computes float64 gelu and
    leaky_relu with float64 constants, so the twins (TensorFlow's float32 constants) still miss the
    float64 tolerance there, and stay within the float32 one. On JAX, the conv case of
    jax-x64-conv-lstm-float64-tanh-tanh must still fail in Keras."""
    from rnnparity.suite.known_differences import KNOWN_DIFFERENCES, tolerance_for

    entry = next(d for d in KNOWN_DIFFERENCES if d.id == "float64-activation-constants")
    case = next(c for c in conv_matrix.conv_cases(3) if c.activation == "gelu" and c.dtype == "float64")
    assert entry.matches_case is not None and entry.matches_case(case.to_dict())
    assert tolerance_for("float64", backend, case.to_dict()) != (None, None)
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_ENABLE_X64": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    probe = CONSTANTS_PROBE + (JAX_FAILURE_PROBE if backend == "jax" else "") + "print('ok')\n"
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout + done.stderr[-3000:]
