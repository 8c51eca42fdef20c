"""The wrapper cases of the upgrade matrix (Bidirectional, RNN(cell), stacked cells) in
``check``, in report format 2, and in ``diff`` (which still reads format 1 reports).

Reproduce one wrapper case with ``pytest -k <case id>`` or
``rnnparity check --keras <flavour> -k <case id>``.
"""

from __future__ import annotations

import json
import pathlib
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from conftest import FLAVOR_MAJOR, assert_keras_still_fails, flavor_available, flavor_params, keras_handle

from rnnparity.cli import main
from rnnparity.suite import check_matrix, matrix, parity, report, wrapper_matrix
from rnnparity.suite.known_differences import expected_keras_difference, expected_keras_failure, explain

both_flavors = pytest.mark.skipif(
    not all(flavor_available(f) for f in FLAVOR_MAJOR), reason="needs both keras 3 and tf_keras installed"
)


# --------------------------------------------------------------------------- the matrix itself (NumPy only)
@pytest.mark.parametrize("keras_version", [2, 3])
def test_wrapper_matrix_covers_every_merge_mode_cell_kind_and_stack(keras_version: int) -> None:
    cases = wrapper_matrix.wrapper_cases(keras_version)
    bidirectional = [c for c in cases if c.wrapper == "bidirectional"]
    for kind, reset_after in wrapper_matrix.VARIANTS:
        for merge_mode in wrapper_matrix.MERGE_MODES:
            for dtype in ("float32", "float64"):
                found = [
                    c
                    for c in bidirectional
                    if (c.layers[0].kind, c.layers[0].reset_after, c.merge_mode, c.dtype)
                    == (kind, reset_after, merge_mode, dtype)
                ]
                assert any(c.mask != "none" for c in found), (kind, merge_mode, dtype)
                assert any(c.initial_state for c in found), (kind, merge_mode, dtype)
                assert any(c.backward_layer for c in found), (kind, merge_mode, dtype)
                assert any(not (c.backward_layer or c.initial_state or c.mask != "none") for c in found)
        cells = [c for c in cases if c.wrapper == "rnn" and (c.layers[0].kind, c.layers[0].reset_after) == (kind, reset_after)]
        assert {c.dtype for c in cells} == {"float32", "float64"}
        assert any(c.mask != "none" and c.initial_state for c in cells)
    stacks = [c for c in cases if c.wrapper == "stacked"]
    assert {len(c.layers) for c in stacks} == {2, 3}
    assert all(len({cell.kind for cell in c.layers}) >= 2 or c.layers[0].reset_after != c.layers[1].reset_after for c in stacks)
    assert {c.bare_states for c in stacks if c.initial_state} == {True, False}
    for attribute in ("return_sequences", "return_state"):
        assert {getattr(c, attribute) for c in cases} == {True, False}
    assert {c.mask for c in cases} == {"none", "right_padded", "scattered"}


def test_wrapper_ids_are_unique_shared_by_both_versions_and_apart_from_single_layers() -> None:
    keras2 = {c.case_id: c for c in wrapper_matrix.wrapper_cases(2)}
    keras3 = {c.case_id: c for c in wrapper_matrix.wrapper_cases(3)}
    assert len(keras2) == len(wrapper_matrix.wrapper_cases(2)) and set(keras2) == set(keras3)
    for case_id in list(keras3)[::17]:
        a, b = wrapper_matrix.make_wrapper_data(keras2[case_id]), wrapper_matrix.make_wrapper_data(keras3[case_id])
        assert report.data_checksums(a) == report.data_checksums(b)
    assert not set(keras3) & {c.case_id for c in matrix.all_cases(3)}
    assert all(c.family == "wrapper" for c in keras3.values())
    assert all(c.family == "layer" for c in matrix.all_cases(3)[:5])


def test_wrapper_data_is_seeded_random_never_constant() -> None:
    for case in wrapper_matrix.wrapper_cases(3)[::5]:
        data = wrapper_matrix.make_wrapper_data(case)
        again = wrapper_matrix.make_wrapper_data(case)
        assert report.data_checksums(data) == report.data_checksums(again)
        for weight in data.weights:
            assert weight.dtype == np.dtype(case.dtype)
            assert weight.size < 2 or np.unique(weight).size == weight.size, case.case_id
        twin = wrapper_matrix.wrapper_twin(case)
        assert [w.shape for w in twin.get_weights()] == [w.shape for w in data.weights], case.case_id


def test_quick_keeps_about_one_in_eight_of_every_wrapper() -> None:
    full, quick = wrapper_matrix.wrapper_cases(3), wrapper_matrix.wrapper_cases(3, quick=True)
    assert {c.wrapper for c in quick} == set(wrapper_matrix.WRAPPERS)
    assert len(full) / 12 < len(quick) < len(full) / 5
    assert {c.case_id for c in quick} <= {c.case_id for c in full}


def test_check_runs_every_family() -> None:
    cases = check_matrix.all_cases(3, quick=True)
    assert {c.family for c in cases} == set(check_matrix.family_names()) == {"layer", "wrapper", "conv"}
    assert [c.case_id for c in cases if c.family == "layer"] == [c.case_id for c in matrix.all_cases(3, quick=True)]
    layer, wrapper = len(matrix.all_cases(3, quick=True)), len(wrapper_matrix.wrapper_cases(3, quick=True))
    assert check_matrix.describe_counts(cases).startswith(f"{layer} single-layer (LSTM, GRU, SimpleRNN), {wrapper} wrapper (")


def test_a_hard_sigmoid_inside_a_wrapper_is_a_known_difference() -> None:
    cases = wrapper_matrix.wrapper_cases(3)
    hard = next(c for c in cases if c.wrapper == "stacked" and c.layers[-1].recurrent_activation == "hard_sigmoid")
    plain = next(c for c in cases if all(cell.recurrent_activation == "sigmoid" for cell in c.layers))
    k2, k3 = {"keras_major": 2}, {"keras_major": 3}
    assert [d.id for d in explain(hard.to_dict(), k2, k3)] == ["hard-sigmoid-formula"]
    assert explain(plain.to_dict(), k2, k3) == []


def test_the_stacked_bare_state_difference_is_scoped_to_jax_and_numpy_and_the_bare_form() -> None:
    """keras3-scan-stacked-bare-state (measured by tests/test_backends.py) applies on Keras 3's JAX
    and NumPy backends only, to masked stacks given an initial state whose first or last item is
    a bare array; diff names it for a case a report does not hold."""
    from rnnparity.cli.diff import absence_reason

    cases = wrapper_matrix.wrapper_cases(3)
    scan, other = {"keras_major": 3, "keras_backend": "numpy"}, {"keras_major": 3, "keras_backend": "torch"}
    matched = [c for c in cases if expected_keras_difference(c.to_dict(), scan) is not None]
    assert matched and all(expected_keras_difference(c.to_dict(), {**scan, "keras_backend": "jax"}) for c in matched)
    assert all(c.wrapper == "stacked" and c.mask != "none" and c.initial_state and c.bare_states for c in matched)
    assert all(c.layers[0].kind != "lstm" or c.layers[-1].kind != "lstm" for c in matched)
    for env in (other, {"keras_major": 3, "keras_backend": "tensorflow"}, {"keras_major": 2, "keras_backend": "tensorflow"}):
        assert not any(expected_keras_difference(c.to_dict(), env) for c in cases), env
    listed = [replace(c, bare_states=False) for c in matched]
    assert not any(expected_keras_difference(c.to_dict(), scan) for c in listed)
    report = {"environment": scan, "options": {}}
    reason = absence_reason(matched[0].to_dict(), matched[0].case_id, report, "new")
    assert "keras3-scan-stacked-bare-state" in reason


# --------------------------------------------------------------------------- against Keras
def _params() -> list:
    params = []
    for flavor, major in FLAVOR_MAJOR.items():
        cases = wrapper_matrix.wrapper_cases(major)
        params += flavor_params(flavor, [(flavor, c) for c in cases], [f"{flavor}-{c.case_id}" for c in cases])
    return params


@pytest.mark.parametrize(("flavor", "case"), _params())
def test_wrapper_twin_matches_keras(flavor: str, case: wrapper_matrix.WrapperCase) -> None:
    handle = keras_handle(flavor)
    failure = expected_keras_failure(case.to_dict(), handle.environment)
    if failure is not None:
        assert_keras_still_fails(failure, handle, lambda: parity.run_wrapper_case(case, handle))
        pytest.skip(f"known Keras failure {failure.id}: {failure.reason}")
    # Where Keras's numbers (or its failure) are a known Keras bug, a mismatch is shown as that.
    wrong = expected_keras_difference(case.to_dict(), handle.environment)
    try:
        result = check_matrix.run(case, handle)
    except Exception as exc:
        if wrong is None:
            raise
        pytest.xfail(f"known Keras difference {wrong.id} (Keras fails: {exc!r:.200}): {wrong.reason}")
    if wrong is not None and not result.ok:
        pytest.xfail(f"known Keras difference {wrong.id}: {wrong.reason}\n{result.message}")
    assert result.ok, result.message
    assert result.keras_outputs and all(isinstance(o, np.ndarray) for o in result.keras_outputs)


def _pick(major: int, wrapper: str, **fields: Any) -> wrapper_matrix.WrapperCase:
    return next(
        c
        for c in wrapper_matrix.wrapper_cases(major)
        if c.wrapper == wrapper and all(getattr(c, k) == v for k, v in fields.items())
    )


@pytest.mark.parametrize("flavor", [p for f in FLAVOR_MAJOR for p in flavor_params(f, [(f,)], ids=[f])])
def test_a_corrupted_twin_fails_its_wrapper_case(flavor: str) -> None:
    """The wrapper runner can fail: directions swapped in a Bidirectional, cells swapped in a
    stack of equal cells, a gate order broken inside a cell."""
    handle = keras_handle(flavor)
    major = handle.keras_version
    bidirectional = _pick(major, "bidirectional", merge_mode="concat", backward_layer=False, dtype="float32", mask="none")
    assert parity.run_wrapper_case(bidirectional, handle).ok
    half = len(wrapper_matrix.make_wrapper_data(bidirectional).weights) // 2
    swapped = parity.run_wrapper_case(bidirectional, handle, twin_weights=lambda w: w[half:] + w[:half])
    assert not swapped.ok and bidirectional.case_id in swapped.message

    inner = wrapper_matrix.Inner("gru", 3, use_bias=True)
    stack = replace(_pick(major, "stacked", dtype="float32"), layers=(inner, inner), input_dim=3, initial_state=False)
    assert parity.run_wrapper_case(stack, handle).ok
    reordered = parity.run_wrapper_case(stack, handle, twin_weights=lambda w: w[3:] + w[:3])
    assert not reordered.ok

    def swap_first_two_gates(weights: list[np.ndarray]) -> list[np.ndarray]:
        kernel = weights[0].copy()
        units = kernel.shape[1] // 4
        kernel[:, :units], kernel[:, units : 2 * units] = weights[0][:, units : 2 * units], weights[0][:, :units]
        return [kernel, *weights[1:]]

    lstm_cell = _pick(major, "rnn", dtype="float32")
    lstm_cell = replace(lstm_cell, layers=(wrapper_matrix.Inner("lstm", 4),))
    assert parity.run_wrapper_case(lstm_cell, handle).ok
    assert not parity.run_wrapper_case(lstm_cell, handle, twin_weights=swap_first_two_gates).ok


# --------------------------------------------------------------------------- reports and diff
def _some_cases(major: int) -> list[Any]:
    layer = [c for c in matrix.hard_sigmoid_cases(major) if c.input_scale == 3.0][:2]
    layer += [c for c in matrix.default_cases(major) if c.recurrent_activation == "sigmoid" and not c.stateful][:3]
    wrappers = wrapper_matrix.wrapper_cases(major)
    hard = [c for c in wrappers if any(cell.recurrent_activation == "hard_sigmoid" for cell in c.layers)]
    plain = [c for c in wrappers if all(cell.recurrent_activation == "sigmoid" for cell in c.layers)]
    picked = [hard[0], *[c for c in hard if c.wrapper == "stacked"][:1], plain[0], *[c for c in plain if c.wrapper == "rnn"][:1]]
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
    tmp_path = tmp_path_factory.mktemp("wrapper-reports")
    return {flavor: _write(tmp_path, flavor) for flavor in FLAVOR_MAJOR}


def _load(path: str) -> dict[str, Any]:
    return json.loads(pathlib.Path(path).read_text())


def _save(data: dict[str, Any], path: pathlib.Path) -> str:
    path.write_text(json.dumps(data))
    return str(path)


@both_flavors
def test_reports_are_format_2_with_families(reports: dict[str, str]) -> None:
    data = report.load_report(reports["keras3"])
    assert data["format_version"] == 2 and data["families"] == ["layer", "wrapper", "conv"]
    assert {r["family"] for r in data["cases"]} == {"layer", "wrapper"}
    assert data["summary"]["per_family"] == {"layer": 5, "wrapper": 4, "conv": 0}
    wrapper = next(r for r in data["cases"] if r["family"] == "wrapper")
    assert wrapper["config"]["layers"] and wrapper["outputs_sample"]["total"] > 0


@both_flavors
def test_diff_sees_a_changed_wrapper_case(reports: dict[str, str], tmp_path: pathlib.Path, capsys: Any) -> None:
    data = _load(reports["keras3"])
    record = next(r for r in data["cases"] if r["family"] == "wrapper" and r["config"]["wrapper"] == "bidirectional")
    middle = len(record["outputs_sample"]["values"]) // 2
    record["outputs_sample"]["values"][middle] += 1e-3
    record["outputs_sha256"] = "f" * 64
    changed = _save(data, tmp_path / "changed.json")
    assert main(["diff", reports["keras3"], changed]) == 1
    out = capsys.readouterr().out
    assert "9 shared configurations (5 layer, 4 wrapper): 8 identical" in out
    assert "DRIFT [unexplained] 1 configurations" in out and record["id"] in out
    assert main(["diff", reports["keras3"], reports["keras3"]]) == 0
    assert "NO DRIFT" in capsys.readouterr().out


@both_flavors
def test_keras2_to_keras3_wrapper_drift_is_hard_sigmoid_only(reports: dict[str, str], capsys: Any) -> None:
    old, new = report.load_report(reports["tf-keras"]), report.load_report(reports["keras3"])
    result = report.diff_reports(old, new)
    hard = {c.case_id for c in _some_cases(3) if "hard_sigmoid" in c.case_id}
    assert {d.case_id for d in result.drifted} == hard
    assert all(d.causes == ["hard-sigmoid-formula"] for d in result.drifted)
    assert len([d for d in result.drifted if "layers" in d.config]) == 2  # wrapper cases drift too
    assert main(["diff", "--fail-on", "unexplained", reports["tf-keras"], reports["keras3"]]) == 0
    assert "(0 unexplained)" in capsys.readouterr().out


def _as_version_1(data: dict[str, Any]) -> dict[str, Any]:
    """What the rnnparity before wrapper cases wrote: format 1, no families, layer cases only."""
    old = {k: v for k, v in data.items() if k != "families"}
    old["format_version"] = 1
    old["summary"] = {k: v for k, v in data["summary"].items() if k != "per_family"}
    old["cases"] = [{k: v for k, v in r.items() if k != "family"} for r in data["cases"] if r["family"] == "layer"]
    return old


@both_flavors
def test_a_version_1_report_is_read_and_its_cases_compared(reports: dict[str, str], tmp_path: pathlib.Path, capsys: Any) -> None:
    version_1 = _save(_as_version_1(_load(reports["keras3"])), tmp_path / "v1.json")
    assert main(["diff", version_1, reports["keras3"]]) == 0
    out = capsys.readouterr().out
    assert "5 shared configurations (5 layer): 5 identical" in out
    assert "not in the old report: 4 wrapper configurations: written by a version without wrapper cases (report format 1)" in out
    assert "only in new report" not in out and "NO DRIFT" in out
    assert main(["diff", reports["keras3"], version_1]) == 0
    assert (
        "not in the new report: 4 wrapper configurations: written by a version without wrapper cases" in capsys.readouterr().out
    )

    # A version-1 report's layer cases still drift where Keras changed (hard_sigmoid, Keras 2 -> 3).
    keras2_version_1 = _save(_as_version_1(_load(reports["tf-keras"])), tmp_path / "v1-keras2.json")
    assert main(["diff", keras2_version_1, reports["keras3"]]) == 1
    assert "DRIFT [hard-sigmoid-formula] 2 configurations" in capsys.readouterr().out


@both_flavors
def test_wrapper_cases_left_out_by_k_are_only_in_one_report(reports: dict[str, str], tmp_path: pathlib.Path, capsys: Any) -> None:
    """A format 2 report whose rnnparity had wrapper cases but did not write them (``-k``)
    lists them as only in one report, not as written by an older version."""
    data = _load(reports["keras3"])
    data["cases"] = [r for r in data["cases"] if r["family"] == "layer"]
    fewer = _save(data, tmp_path / "fewer.json")
    assert main(["diff", fewer, reports["keras3"]]) == 0
    out = capsys.readouterr().out
    assert "only in new report: 4 configurations" in out and "written by a version without" not in out


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ({"format_version": 3}, "report format version 3; this rnnparity reads versions 1 and 2"),
        ({"format_version": "2"}, "report format version '2'; this rnnparity reads versions 1 and 2"),
        ({"format_version": 2, "families": "layer"}, "needs a 'families' list"),
        ({"format_version": 2, "families": ["layer"], "cases": [{"id": "x"}]}, "case #0 lacks one of ['id', 'family'"),
    ],
)
def test_unreadable_versions_are_refused_in_one_line(tmp_path: pathlib.Path, capsys: Any, content: dict, reason: str) -> None:
    data = {"format": "rnnparity-check-report", "environment": {}, "cases": [], **content}
    path = _save(data, tmp_path / "report.json")
    assert main(["diff", path, path]) == 2
    err = capsys.readouterr().err
    assert reason in err and err.count("\n") == 1


def test_check_writes_a_wrapper_case_into_a_format_2_report(tmp_path: pathlib.Path, capsys: Any) -> None:
    if not flavor_available("keras3"):
        pytest.skip("keras 3 is not installed")
    case = _pick(3, "stacked", mask="scattered", initial_state=True)
    path = tmp_path / "r.json"
    assert main(["check", "--keras", "keras3", "-k", case.case_id, "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "1 configurations: 1 wrapper (Bidirectional, RNN(cell), stacked cells)" in out and "rnn(stacked cells)" in out
    data = report.load_report(str(path))
    assert data["families"] == ["layer", "wrapper", "conv"]
    (record,) = data["cases"]
    assert record["id"] == case.case_id and record["family"] == "wrapper" and record["parity"]["ok"]
    assert record["inputs_sha256"] == report.data_checksums(wrapper_matrix.make_wrapper_data(case))["inputs_sha256"]
