"""docs/upgrading.md runs as written: a tf_keras model with a hard_sigmoid GRU, its drift
under Keras 3 predicted by rnnparity and confirmed by Keras 3 itself."""

from __future__ import annotations

import pathlib
import re

import pytest
from conftest import flavor_available

PAGE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "upgrading.md"


@pytest.mark.keras
@pytest.mark.skipif(
    not (flavor_available("keras3") and flavor_available("tf-keras")),
    reason="the page compares tf_keras with Keras 3; both must be installed and selected",
)
def test_upgrading_page_examples_run(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)
    assert len(blocks) == 3
    monkeypatch.chdir(tmp_path)  # the example writes old_model.h5
    namespace: dict[str, object] = {}
    for block in blocks:  # in order, sharing names, as a reader would run them
        exec(compile(block, str(PAGE), "exec"), namespace)
    report = namespace["report"]
    assert report.verdict in PAGE.read_text()  # the printed output shown on the page is what runs
    assert callable(namespace["test_my_model_does_not_drift_under_keras3"])
