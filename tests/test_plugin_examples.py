"""The pytest-plugin examples in the README and docs/ are run as the user would run them.

Every ```python block of README.md or docs/*.md that defines a test function using the
plugin's fixtures is written to a file of its own and run by pytest in a subprocess; each must
collect at least one test and pass.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import flavor_available

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ("assert_parity", "check_parity", "rnnparity_twin")
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def plugin_examples() -> list[tuple[str, str]]:
    examples = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        if not page.exists():
            continue
        for number, block in enumerate(BLOCK.findall(page.read_text(encoding="utf-8"))):
            defines = re.findall(r"^def (test_\w+)\(([^)]*)\)", block, re.MULTILINE)
            if any(fixture in arguments for _, arguments in defines for fixture in FIXTURES):
                examples.append((f"{page.relative_to(ROOT)}#{number}", block))
    return examples


EXAMPLES = plugin_examples()


def test_the_plugin_examples_are_found() -> None:
    assert EXAMPLES, "no pytest-plugin example (a python block defining a test that uses the plugin's fixtures) was found"


@pytest.mark.skipif(not flavor_available("keras3"), reason="the examples import keras 3")
@pytest.mark.parametrize(("where", "source"), EXAMPLES, ids=[where for where, _ in EXAMPLES])
def test_plugin_example_runs(where: str, source: str, pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_example=source)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:randomly")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 1 and not outcomes.get("failed") and not outcomes.get("error"), f"{where}:\n" + "\n".join(
        result.outlines[-30:]
    )
