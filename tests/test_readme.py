"""The README's Python example runs as written."""

from __future__ import annotations

import pathlib
import re

import pytest
from conftest import flavor_params

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.parametrize("flavor", flavor_params("keras3", [("keras3",)]))
def test_readme_python_examples_run(flavor: str) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert blocks
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})
