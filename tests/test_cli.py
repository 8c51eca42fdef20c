"""``rnnparity check``: output, exit codes, and that a broken twin makes it fail."""

from __future__ import annotations

import pytest
from conftest import flavor_params

from rnnparity import activations
from rnnparity.cli import main


@pytest.mark.parametrize("flavor", flavor_params("keras3", [("keras3",)]))
def test_check_passes_and_prints_versions(flavor: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--keras", flavor, "--quick", "-k", "simple_rnn"]) == 0
    out = capsys.readouterr().out
    assert "numpy" in out and "keras 3" in out and "PARITY HOLDS" in out and "simple_rnn" in out


@pytest.mark.parametrize("flavor", flavor_params("keras3", [("keras3",)]))
def test_check_fails_on_a_broken_twin(flavor: str, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.setitem(activations.KERAS3_ACTIVATIONS, "hard_sigmoid", activations.hard_sigmoid_keras2)
    assert main(["check", "--keras", flavor, "-k", "hard_sigmoid-bias-seq1-st1-f32-x3"]) == 1
    out = capsys.readouterr().out
    assert "PARITY BROKEN" in out and "MISMATCH" in out


@pytest.mark.parametrize("flavor", flavor_params("keras3", [("keras3",)]))
def test_check_with_no_matching_case_is_an_error(flavor: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--keras", flavor, "-k", "no-such-case"]) == 2
    assert "no case id contains" in capsys.readouterr().err


def test_unknown_option_exits_2() -> None:
    with pytest.raises(SystemExit) as info:
        main(["check", "--no-such-option"])
    assert info.value.code == 2
