"""README's self-contained Python examples run as written and print what their comments say."""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _python_block_after(heading: str) -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index(f"\n{heading}\n"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_networks_as_graphs_example_runs_and_prints_its_comments() -> None:
    code = _python_block_after("## Networks as graphs")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md (Networks as graphs)", "exec"), {})  # noqa: S102
    # each print's comment starts with what it prints
    said = [line.split("#", 1)[1].strip() for line in code.splitlines() if line.startswith("print(")]
    shown = printed.getvalue().splitlines()
    assert len(shown) == len(said) == 4
    for out, comment in zip(shown, said):
        assert comment.startswith(out), (out, comment)
