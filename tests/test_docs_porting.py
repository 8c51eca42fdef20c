"""docs/porting-keras2.md runs as written: a model trained and saved with tf_keras (Keras 2), its
predictions changed by Keras 3's hard_sigmoid, and both ways of keeping the old numbers."""

from __future__ import annotations

import pathlib
import re

import pytest
from conftest import flavor_available, flavor_params

PAGE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "porting-keras2.md"


@pytest.mark.parametrize("flavor", flavor_params("tf-keras", [("tf-keras",)]))
def test_porting_page_examples_run(flavor: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not flavor_available("keras3"):
        pytest.skip("the page compares tf_keras with Keras 3, which is not installed or not selected")
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)
    assert len(blocks) == 4
    monkeypatch.chdir(tmp_path)  # the example writes old_model.h5
    namespace: dict[str, object] = {}
    for block in blocks:  # in order, sharing names, as a reader would run them
        exec(compile(block, str(PAGE), "exec"), namespace)
    assert (tmp_path / "old_model.h5").exists()
