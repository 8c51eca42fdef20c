"""Every ```python block of README.md and docs/*.md runs as written.

A page's blocks run in order in one namespace, as a reader would paste them into one
session, in a fresh working directory. A block that imports an optional package (Keras,
TensorFlow, tf_keras, torch, ...) runs only where it is installed (and, for Keras, where its
flavour is selected); the page stops there with a skip that names the block. An HTML comment
on the line before a block changes how it runs:

    <!-- docs-test: pytest -->        the block is a test module, run by pytest with this
                                      project's plugin; every test in it must pass
    <!-- docs-test: skip REASON -->   the block is not run (keep these rare; a reason is required)
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import pathlib
import re
import subprocess
import sys

import pytest
from conftest import flavor_available

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<mode>\S+)\s*(?P<reason>.*?)\s*-->\s*$")
MODES = ("pytest", "skip")
# Fence languages that would be Python but escape this test: the pages use ```python only.
OTHER_PYTHON_INFOS = ("py", "python3", "py3", "pycon", "ipython", "ipython3")


@dataclasses.dataclass(frozen=True)
class Block:
    page: pathlib.Path
    line: int  # 1-based line of the block's first line of code
    code: str
    mode: str  # "run", "pytest" or "skip"
    reason: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def fenced_blocks(page: pathlib.Path) -> list[tuple[str, int, str, str]]:
    """(info string, first code line, code, the last non-blank line before the fence) for every
    fenced block of a Markdown page; indented fences (inside list items) are dedented."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence, info = opening["indent"], opening["fence"], opening["info"].strip()
        end = i + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        if end == len(lines):
            raise AssertionError(f"{page.relative_to(ROOT)}:{i + 1}: a code fence that is never closed")
        body = [line[len(indent) :] if line.startswith(indent) else line.lstrip() for line in lines[i + 1 : end]]
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        found.append((info, i + 2, "\n".join(body) + "\n", before))
        i = end + 1
    return found


def python_blocks(page: pathlib.Path) -> list[Block]:
    blocks = []
    for info, line, code, before in fenced_blocks(page):
        if info != "python":
            continue
        marker = MARKER.match(before)
        mode, reason = (marker["mode"], marker["reason"]) if marker else ("run", "")
        blocks.append(Block(page, line, code, mode, reason))
    return blocks


def imported_packages(code: str) -> set[str]:
    """Top-level names of every package a block imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _keras_available() -> bool:
    return flavor_available("keras3") or flavor_available("tf-keras")


def missing_requirements(code: str) -> list[str]:
    """What a block imports that is not installed here (or, for a Keras flavour, not selected)."""
    missing = []
    for name in sorted(imported_packages(code)):
        if name == "keras":
            available = flavor_available("keras3")
        elif name == "tf_keras":
            available = flavor_available("tf-keras")
        elif name == "tensorflow":
            available = importlib.util.find_spec("tensorflow") is not None and _keras_available()
        else:
            available = importlib.util.find_spec(name) is not None
        if not available:
            missing.append(name)
    return missing


def _needs_keras(page: pathlib.Path) -> bool:
    return any(imported_packages(b.code) & {"keras", "tf_keras", "tensorflow"} for b in python_blocks(page))


PAGES_WITH_CODE = [
    pytest.param(page, id=str(page.relative_to(ROOT)), marks=[pytest.mark.keras] if _needs_keras(page) else [])
    for page in PAGES
    if python_blocks(page)
]


def run_test_module(block: Block, directory: pathlib.Path) -> None:
    """A ``docs-test: pytest`` block: a user's test module, run by pytest in a subprocess (so
    the installed plugin loads as in a user's suite, and nothing it imports stays in this
    process); every test in it must pass."""
    tests = [
        node.name for node in ast.parse(block.code).body if isinstance(node, ast.FunctionDef) and node.name.startswith("test")
    ]
    assert tests, f"{block.where}: a docs-test: pytest block defines no test function"
    module = directory / f"test_docs_block_{block.line}.py"
    module.write_text(block.code, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", module.name],
        cwd=directory,
        capture_output=True,
        text=True,
        check=False,
    )
    passed = re.search(r"(\d+) passed", result.stdout)
    assert result.returncode == 0 and passed and int(passed[1]) == len(tests), (
        f"{block.where}: expected {len(tests)} passed (exit 0), got exit {result.returncode}:\n{result.stdout}{result.stderr}"
    )


@pytest.mark.parametrize("page", PAGES_WITH_CODE)
def test_page_examples_run(page: pathlib.Path, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # examples may write files (docs/porting-keras2.md saves a model)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for block in python_blocks(page):
        if block.mode == "skip":
            continue
        missing = missing_requirements(block.code)
        if missing:
            pytest.skip(f"{block.where} and the blocks after it need {', '.join(missing)}: not installed or not selected")
        if block.mode == "pytest":
            run_test_module(block, tmp_path)
            continue
        # Padded so that tracebacks name the page's own line numbers.
        exec(compile("\n" * (block.line - 1) + block.code, str(block.page), "exec"), namespace)


def test_every_python_block_is_found_and_marked_correctly() -> None:
    """Nothing escapes: every Python fence is one this test runs, markers are well formed,
    sit right before a Python block, and skips (rare) say why."""
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        where = page.relative_to(ROOT)
        assert len(python_blocks(page)) == len(re.findall(r"^[ \t]*```python[ \t]*$", text, flags=re.MULTILINE)), where
        for info, line, _, before in fenced_blocks(page):
            language = info.split()[0] if info else ""
            assert language not in OTHER_PYTHON_INFOS, (
                f"{where}:{line - 1}: fence ```{info}: write ```python so the suite runs it"
            )
            if MARKER.match(before):
                assert info == "python", f"{where}:{line - 1}: a docs-test marker before a ```{info} block"
        for block in python_blocks(page):
            assert block.mode in ("run", *MODES), f"{block.where}: unknown docs-test mode {block.mode!r} (use one of {MODES})"
            if block.mode == "skip":
                assert block.reason, f"{block.where}: docs-test: skip needs a reason"
        stray = re.findall(r"^\s*<!--\s*docs-test:.*-->\s*$", text, flags=re.MULTILINE)
        marked = [b for b in python_blocks(page) if b.mode != "run"]
        assert len(stray) == len(marked), f"{where}: a docs-test marker not directly before a ```python block"
    skipped = [b.where for page in PAGES for b in python_blocks(page) if b.mode == "skip"]
    assert len(skipped) <= 3, f"too many examples that do not run: {skipped}"


def test_readme_links_resolve_and_keep_the_two_commands() -> None:
    """The README's links into docs/ point at files that exist (mkdocs --strict checks the
    site, not the README), and its test command is the one CI runs."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for target in re.findall(r"\]\((docs/[^)#\s]*)", readme):
        assert (ROOT / target).exists(), f"README.md links to {target}, which does not exist"
    head = readme.splitlines()[:13]
    assert any('pip install -e ".[tensorflow]" && rnnparity check' in line for line in head)
    assert any('pip install -e ".[test]" && python -m pytest -n auto' in line for line in head)
    assert "\npython -m pytest -n auto\n" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
