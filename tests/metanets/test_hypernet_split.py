"""``metanas hypernet train --seed N`` trains the GHN on the split every search and zoo uses
(seed 0), whose test graphs ``--evaluator hypernet`` and ``predict-params`` models are measured
on. Before, it split a dataset without a public split by ``--seed``: ``--seed 1`` on MUTAG
trained on 15 of the 20 graphs of seed 0's test split."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def mutag_available() -> None:
    root = os.environ.get("METANAS_DATA")  # tests/conftest.py sets it to the shared datasets
    if not root or not (Path(root) / "TUDataset" / "MUTAG" / "raw").is_dir():
        pytest.skip("MUTAG raw files not found under METANAS_DATA")


def test_hypernet_train_with_another_seed_trains_on_the_search_split(
        mutag_available, monkeypatch, tmp_path: Path) -> None:
    import metanets.ghn_train
    from nas.cli import main
    from nas.tasks import load_task

    search_split = load_task("mutag").splits  # the split a search and a zoo use
    seed_1_train = set(load_task("mutag", seed=1).splits["train"].tolist())
    assert seed_1_train & set(search_split["test"].tolist())  # what training by --seed read
    trained_on: list[Any] = []

    def spy(space: Any, task: Any, config: Any, **_: Any) -> None:
        trained_on.append(task.splits)
        raise RuntimeError("stopped before training")  # main prints it and exits 1

    monkeypatch.setattr(metanets.ghn_train, "train_hypernet", spy)
    assert main(["hypernet", "train", "--dataset", "mutag", "--out",
                 str(tmp_path / "ghn.safetensors"), "--seed", "1", "--device", "cpu"]) == 1
    assert len(trained_on) == 1
    assert {name: indices.tolist() for name, indices in trained_on[0].items()} == \
        {name: indices.tolist() for name, indices in search_split.items()}
