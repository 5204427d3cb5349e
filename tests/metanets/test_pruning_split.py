"""``metanas prune --seed N`` and ``prune-metanet --seed N`` measure and train on the split the
model was trained on: every search and zoo splits a dataset without a public split by seed 0.
Before, both split it by ``--seed``: ``metanas prune --seed 1`` of a MUTAG export printed a
"test acc before" of 0.80 for a model whose export recorded 0.75, measured on a test set holding
graphs it was trained on, and fine-tuned it on graphs of its test set."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from nas.export import export_model
from search_spaces.gnn import GNN, GNNArchitecture, LayerSpec


@pytest.fixture
def mutag_available() -> None:
    root = os.environ.get("METANAS_DATA")  # tests/conftest.py sets it to the shared datasets
    if not root or not (Path(root) / "TUDataset" / "MUTAG" / "raw").is_dir():
        pytest.skip("MUTAG raw files not found under METANAS_DATA")


def _export_mutag_model(tmp_path: Path) -> tuple[GNN, Path]:
    torch.manual_seed(0)
    arch = GNNArchitecture(layers=(LayerSpec("gcn", 16),))
    model = GNN(arch, 7, 2, level="graph").eval()
    folder = export_model(tmp_path / "model", space="gnn", spec=arch.to_dict(), in_channels=7,
                          out_channels=2, level="graph", state_dict=model.state_dict())
    return model, folder


def test_prune_with_another_seed_measures_on_the_search_split(mutag_available,
                                                              tmp_path: Path) -> None:
    from metanets.pruning.pipeline import evaluate
    from nas.prune import PruneJob, run_prune
    from nas.tasks import load_task

    model, folder = _export_mutag_model(tmp_path)
    search_split = evaluate(model, load_task("mutag"))  # what a search measured
    assert evaluate(model, load_task("mutag", seed=1))["test_loss"] != search_split["test_loss"]
    outcome, _ = run_prune(PruneJob(str(folder), "mutag", 2.0, str(tmp_path / "out"),
                                    finetune_epochs=0, seed=1))
    assert outcome.before["test_loss"] == pytest.approx(search_split["test_loss"])
    assert outcome.before["val_loss"] == pytest.approx(search_split["val_loss"])


def test_prune_metanet_with_another_seed_trains_on_the_search_split(monkeypatch,
                                                                    tmp_path: Path) -> None:
    """Its task loss reads the training nodes of the split (node datasets without a public
    split, e.g. computers): the split the zoo's networks were trained on."""
    import nas.prune
    from metanets.pruning.metanet import MetanetTrainConfig

    seeds: list[int] = []

    class Loaded(Exception):
        pass

    def spy(name: Any, root: Any = None, seed: int = 0) -> None:
        seeds.append(seed)
        raise Loaded

    monkeypatch.setattr(nas.prune, "load_task", spy)
    job = nas.prune.MetanetJob("computers", str(tmp_path / "metanet"), model_dirs=("m",),
                               config=MetanetTrainConfig(seed=1))
    with pytest.raises(Loaded):
        nas.prune.train_prune_metanet(job)
    assert seeds == [0]
