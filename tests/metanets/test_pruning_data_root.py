"""``metanas prune`` and ``prune-metanet`` read a dataset from ``--data-root`` as ``search``,
``zoo build`` and ``hypernet train`` do. Before, they took no ``--data-root`` (exit 2,
unrecognized arguments): a model searched with ``--data-root DIR`` was pruned only by setting
``$METANAS_DATA``."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from nas.export import export_model
from search_spaces.gnn import GNN, GNNArchitecture, LayerSpec


def _data_root_holding(dataset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data root of its own holding ``dataset`` (its folder under ``$METANAS_DATA``, which
    tests/conftest.py sets to the shared datasets), with ``$METANAS_DATA`` then at an empty
    folder: the dataset is found through ``--data-root`` only."""
    source = Path(os.environ.get("METANAS_DATA", "")) / dataset / "raw"
    if not source.is_dir():
        pytest.skip(f"{dataset} raw files not found under METANAS_DATA")
    root = tmp_path / "data"
    shutil.copytree(source, root / dataset / "raw")
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("METANAS_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("METANAS_CACHE", str(tmp_path / "cache"))
    return root


def _export_gcn(tmp_path: Path, in_channels: int, out_channels: int, level: str) -> Path:
    torch.manual_seed(0)
    arch = GNNArchitecture(layers=(LayerSpec("gcn", 16),))
    model = GNN(arch, in_channels, out_channels, level=level)
    return export_model(tmp_path / "model", space="gnn", spec=arch.to_dict(),
                        in_channels=in_channels, out_channels=out_channels, level=level,
                        state_dict=model.state_dict())


def test_prune_reads_the_dataset_from_data_root(tmp_path: Path, monkeypatch, capsys) -> None:
    from nas.cli import main

    root = _data_root_holding("TUDataset/MUTAG", tmp_path, monkeypatch)
    folder = _export_gcn(tmp_path, 7, 2, "graph")
    out = tmp_path / "pruned"
    assert main(["prune", "--model", str(folder), "--dataset", "mutag", "--speedup", "2.0",
                 "--out", str(out), "--finetune-epochs", "0", "--device", "cpu",
                 "--data-root", str(root)]) == 0
    assert f"pruned model written to {out}" in capsys.readouterr().out
    assert not any((tmp_path / "empty").iterdir())


def test_prune_metanet_reads_the_dataset_from_data_root(tmp_path: Path, monkeypatch) -> None:
    from nas.cli import main

    root = _data_root_holding("Planetoid/Cora", tmp_path, monkeypatch)
    folder = _export_gcn(tmp_path, 1433, 7, "node")
    out = tmp_path / "metanet"
    assert main(["prune-metanet", "--dataset", "cora", "--model-dir", str(folder),
                 "--out", str(out), "--steps", "2", "--hidden", "8", "--layers", "1",
                 "--quiet", "--device", "cpu", "--data-root", str(root)]) == 0
    assert (out / "metanet.json").is_file()
    assert not any((tmp_path / "empty").iterdir())
