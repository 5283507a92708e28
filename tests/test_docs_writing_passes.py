"""Run the python blocks of docs/writing-passes.md in order, so the tutorial cannot rot."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "writing-passes.md"


def python_blocks(text: str) -> list[str]:
    """The bodies of the ```python fenced blocks of a markdown text."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_writing_passes_tutorial_runs():
    blocks = python_blocks(DOC.read_text())
    assert len(blocks) >= 4, "the tutorial lost its code blocks"
    namespace: dict = {"__name__": "writing_passes_tutorial"}
    for i, block in enumerate(blocks):
        code = compile(block, f"{DOC.name}[block {i + 1}]", "exec")
        exec(code, namespace)  # noqa: S102 - running our own documentation
    assert "recognize_silu" in namespace
