"""check --json reports and rnnparity diff: drift found and named, refusals, exit codes."""

from __future__ import annotations

import copy
import json
import pathlib

import pytest
from conftest import FLAVOR_MAJOR, flavor_available, keras_handle

from rnnparity.cli import main
from rnnparity.suite import matrix, parity, report

both_flavors = pytest.mark.skipif(
    not all(flavor_available(f) for f in FLAVOR_MAJOR), reason="needs both keras 3 and tf_keras installed"
)


def _cases(major: int) -> list[matrix.Case]:
    hard = [c for c in matrix.hard_sigmoid_cases(major) if c.input_scale == 3.0]
    plain = [
        c for c in matrix.default_cases(major) if c.recurrent_activation == "sigmoid" and not c.stateful and c.mask != "none"
    ][:12]
    return hard + plain


def _write(tmp_path, flavor: str) -> str:
    handle = keras_handle(flavor)
    records = []
    for case in _cases(handle.keras_version):
        result = parity.run_case(case, handle)
        assert result.ok, result.message
        records.append(report.case_record(result, result.checksums))
    path = tmp_path / f"{flavor}.json"
    report.write_report(str(path), report.build_report(report.environment(handle), records, {}))
    return str(path)


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, str]:
    if not all(flavor_available(f) for f in FLAVOR_MAJOR):
        pytest.skip("needs both keras 3 and tf_keras installed")
    tmp_path = tmp_path_factory.mktemp("reports")
    return {flavor: _write(tmp_path, flavor) for flavor in FLAVOR_MAJOR}


@both_flavors
def test_keras2_to_keras3_drift_is_hard_sigmoid_only(reports, capsys) -> None:
    assert main(["diff", reports["tf-keras"], reports["keras3"]]) == 1
    out = capsys.readouterr().out
    assert "DRIFT [hard-sigmoid-formula]" in out
    assert "(0 unexplained)" in out and "[unexplained]" not in out
    assert main(["diff", "--fail-on", "unexplained", reports["tf-keras"], reports["keras3"]]) == 0
    result = report.diff_reports(report.load_report(reports["tf-keras"]), report.load_report(reports["keras3"]))
    drifted = {d.case_id for d in result.drifted}
    hard_ids = {c.case_id for c in _cases(3) if c.recurrent_activation == "hard_sigmoid"}
    assert drifted == hard_ids
    assert result.identical + result.within_tolerance == len(_cases(3)) - len(hard_ids)


@both_flavors
def test_a_report_against_itself_has_no_drift(reports, capsys) -> None:
    assert main(["diff", reports["keras3"], reports["keras3"]]) == 0
    assert "NO DRIFT" in capsys.readouterr().out


@both_flavors
def test_configurations_fed_different_numbers_are_refused(reports, tmp_path, capsys) -> None:
    data = json.loads(pathlib.Path(reports["keras3"]).read_text())
    data["cases"][0]["weights_sha256"] = "0" * 64
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(data))
    assert main(["diff", reports["keras3"], str(tampered)]) == 2
    assert "fed different inputs or weights" in capsys.readouterr().err


@both_flavors
def test_a_known_difference_that_no_longer_shows_is_reported(reports, tmp_path, capsys) -> None:
    data = json.loads(pathlib.Path(reports["keras3"]).read_text())
    relabeled = copy.deepcopy(data)
    relabeled["environment"]["keras_major"] = 2
    path = tmp_path / "relabeled.json"
    path.write_text(json.dumps(relabeled))
    assert main(["diff", str(path), reports["keras3"]]) == 0
    assert "known difference hard-sigmoid-formula should apply" in capsys.readouterr().out


@both_flavors
def test_configurations_in_one_report_only_are_listed(reports, tmp_path, capsys) -> None:
    data = json.loads(pathlib.Path(reports["keras3"]).read_text())
    dropped = data["cases"].pop(0)["id"]
    path = tmp_path / "fewer.json"
    path.write_text(json.dumps(data))
    assert main(["diff", reports["keras3"], str(path)]) == 0
    out = capsys.readouterr().out
    assert "only in old report: 1 configurations" in out and dropped in out


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "no such file"),
        ("{not json", "not valid JSON"),
        ('{"format": "something-else"}', "not an rnnparity check report"),
        ('{"format": "rnnparity-check-report", "format_version": 99}', "report format version 99"),
        ('{"format": "rnnparity-check-report", "format_version": 1, "environment": {}, "cases": [{}]}', "case #0 lacks"),
    ],
)
def test_unreadable_reports_exit_2_with_one_line(tmp_path, capsys, content, reason) -> None:
    path = tmp_path / "report.json"
    if content is not None:
        path.write_text(content)
    assert main(["diff", str(path), str(path)]) == 2
    err = capsys.readouterr().err
    assert reason in err and err.count("\n") == 1


def test_check_refuses_an_unwritable_json_path(tmp_path, capsys) -> None:
    if not flavor_available("keras3"):
        pytest.skip("keras 3 is not installed")
    assert main(["check", "--keras", "keras3", "-k", "x3", "--json", str(tmp_path / "missing-dir" / "r.json")]) == 2
    assert "cannot write --json" in capsys.readouterr().err


@both_flavors
@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn"])
def test_stateful_initial_state_difference_still_holds(kind: str) -> None:
    """The known difference 'stateful-initial-state': same data, different Keras numbers
    from the second call on (where initial_state is passed again), identical before."""
    from rnnparity.suite.known_differences import explain

    case = matrix.Case(kind, 2, units=3, input_dim=2, timesteps=4, batch=2, stateful=True, initial_state=True, seed=5)
    old = parity.run_case(case, keras_handle("tf-keras"))
    new = parity.run_case(matrix.Case(**{**case.to_dict(), "keras_version": 3, "tags": ()}), keras_handle("keras3"))
    assert old.ok and new.ok
    first_old, first_new = old.keras_outputs[0], new.keras_outputs[0]
    assert report.checksum([first_old]) == report.checksum([first_new])
    assert report.checksum(old.keras_outputs[1:2]) != report.checksum(new.keras_outputs[1:2])
    assert [d.id for d in explain(case.to_dict(), {"keras_major": 2}, {"keras_major": 3})] == ["stateful-initial-state"]
