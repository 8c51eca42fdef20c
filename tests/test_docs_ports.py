"""docs/ports.md runs as written: the model saved, converted with tf2onnx and the TFLite
converter, and both ports verified by the commands the page shows."""

from __future__ import annotations

import importlib.util
import pathlib
import re

import pytest
from conftest import flavor_available

PAGE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "ports.md"
NEEDED = ("onnxruntime", "onnx", "tf2onnx", "ai_edge_litert")


@pytest.mark.keras
@pytest.mark.skipif(not flavor_available("keras3"), reason="the page converts a Keras 3 model")
@pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in NEEDED),
    reason="the page needs onnxruntime, onnx, tf2onnx and ai-edge-litert: pip install -e '.[onnx,tflite]'",
)
def test_ports_page_runs(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from rnnparity.cli import main

    text = PAGE.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) == 3
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for block in blocks:  # in order, sharing names, as a reader would run them
        exec(compile(block, str(PAGE), "exec"), namespace)
    commands = re.findall(r"^rnnparity (verify model\.keras --against model\.\w+)$", text, flags=re.MULTILINE)
    assert commands == ["verify model.keras --against model.onnx", "verify model.keras --against model.tflite"]
    capsys.readouterr()
    for command in commands:
        assert main(command.split()) == 0
        assert "PORT AGREES" in capsys.readouterr().out
