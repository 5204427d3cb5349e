"""README's self-contained Python examples run as written and print what their comments say."""
from __future__ import annotations

import contextlib
import inspect
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


def _pyg_classes_named_in(text: str) -> list[str]:
    """The dataset classes of ``torch_geometric.datasets`` that ``text`` names (CamelCase words)."""
    from torch_geometric import datasets as pyg_datasets

    words = dict.fromkeys(re.findall(r"\b[A-Z][A-Za-z0-9_]+\b", text))
    return [word for word in words if word in pyg_datasets.__all__]


def test_the_pyg_classes_whose_raw_readers_readme_warns_of_are_ones_metanas_reads() -> None:
    """Data root names the pyg: classes whose raw files PyG's readers unpickle (checked first, or
    to be used on a trusted data root): each must be one a pyg: name builds, not one refused by
    name before anything is read (regression, arguments a name cannot give), which would tell a
    user it is searched. It named QM9, GEDDataset, PascalVOCKeypoints and MixHopSyntheticDataset."""
    from torch_geometric import datasets as pyg_datasets

    from nas.pyg_classes import canonical_pyg_name, pyg_class

    text = (REPO / "README.md").read_text()
    start = text.index("A `pyg:` class reads\nits raw files with PyG's own reader.")
    paragraph = text[start:text.index("on a data root you trust.", start)]
    named = _pyg_classes_named_in(paragraph)
    assert "WikipediaNetwork" in named and "MNISTSuperpixels" in named  # the paragraph was found
    refused = []
    for class_name in named:
        takes_name = "name" in inspect.signature(getattr(pyg_datasets, class_name)).parameters
        name = f"pyg:{class_name}" + (":some-name" if takes_name else "")
        try:
            canonical_pyg_name(*pyg_class(name), name)
        except ValueError:
            refused.append(class_name)
    assert refused == [], f"README's Data root names classes metanas refuses by name: {refused}"
