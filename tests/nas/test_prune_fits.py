"""``metanas prune`` and ``prune-metanet`` refuse a dataset whose level, input features or
classes are not the model's, naming both, as ``metanas evaluate`` does (one check,
:func:`nas.export.check_fits`), before anything is pruned or trained and with nothing written
to ``--out``. Before, they compared level and classes only: prune of a MUTAG export (7 input
features) on PROTEINS (3) failed inside the model with torch's bare 'mat1 and mat2 shapes cannot
be multiplied (2415x3 and 7x16)', exit 1."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from nas.cli import main
from nas.export import export_model
from search_spaces.gnn import GNN, GNNArchitecture, LayerSpec


def _need(*folders: str) -> None:
    root = os.environ.get("METANAS_DATA")  # tests/conftest.py sets it to the shared datasets
    for folder in folders:
        if not root or not (Path(root) / folder / "raw").is_dir():
            pytest.skip(f"{folder} raw files not found under METANAS_DATA")


def _export_gnn(folder: Path, level: str, in_channels: int, out_channels: int,
                dataset: str) -> Path:
    torch.manual_seed(0)
    arch = GNNArchitecture(layers=(LayerSpec("gcn", 8),))
    model = GNN(arch, in_channels, out_channels, level=level)
    return export_model(folder, space="gnn", spec=arch.to_dict(), in_channels=in_channels,
                        out_channels=out_channels, level=level, state_dict=model.state_dict(),
                        metadata={"dataset": dataset})


def _never(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("pruned or trained a model that does not fit the dataset")


def test_prune_refuses_a_dataset_of_other_input_features_naming_both(monkeypatch, capsys,
                                                                     tmp_path: Path) -> None:
    import nas.prune

    _need("TUDataset/MUTAG", "TUDataset/PROTEINS")
    monkeypatch.setattr(nas.prune, "prune_and_finetune", _never)
    model = _export_gnn(tmp_path / "model", "graph", 7, 2, "mutag")  # MUTAG's dimensions
    out = tmp_path / "out"
    assert main(["prune", "--model", str(model), "--dataset", "proteins", "--speedup", "1.5",
                 "--device", "cpu", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert ("dataset 'proteins' (graph level, 3 input features, 2 classes) does not fit the "
            "model trained on 'mutag' (graph level, 7 input features, 2 classes)") in err
    assert "Traceback" not in err and not out.exists()


def test_prune_metanet_refuses_a_zoo_of_other_input_features_naming_both(monkeypatch, capsys,
                                                                         tmp_path: Path) -> None:
    import metanets.pruning.metanet

    _need("Planetoid/Cora")
    monkeypatch.setattr(metanets.pruning.metanet, "fit_pruning_metanet", _never)
    model = _export_gnn(tmp_path / "model", "node", 3703, 7, "citeseer")  # Cora's classes
    out = tmp_path / "metanet"
    assert main(["prune-metanet", "--dataset", "cora", "--model-dir", str(model), "--steps", "2",
                 "--device", "cpu", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert ("dataset 'cora' (node level, 1433 input features, 7 classes) does not fit the model "
            "trained on 'citeseer' (node level, 3703 input features, 7 classes)") in err
    assert "Traceback" not in err and not out.exists()


@pytest.mark.parametrize("out", ["model", "model/pruned", "model/a/b", "link"])
def test_prune_refuses_an_out_in_the_input_folder(out: str, monkeypatch, capsys,
                                                  tmp_path: Path) -> None:
    """The input folder is never modified (README): an --out inside it (model/pruned) was
    written there, two files more in the input's folder, where --out model was refused."""
    import nas.prune

    monkeypatch.setattr(nas.prune, "prune_and_finetune", _never)
    model = _export_gnn(tmp_path / "model", "node", 1433, 7, "cora")
    (tmp_path / "link").symlink_to(model)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(["prune", "--model", str(model), "--dataset", "cora", "--speedup", "1.5",
                 "--device", "cpu", "--out", str(tmp_path / out), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert f"--out {str(tmp_path / out)!r} is " in err and "input model's folder" in err, err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def _export_mnist14_cnn(folder: Path) -> Path:
    from search_spaces.cnn import CNN, CNNArchitecture

    arch = CNNArchitecture(widths=(4,), norm="batch")
    return export_model(folder, space="cnn", spec=arch.to_dict(), in_channels=1, out_channels=10,
                        level="image", state_dict=CNN(arch, 1, 10).state_dict(),
                        metadata={"dataset": "mnist14"})


class _Pruned(Exception):
    """Raised where pruning would start: what was said before it is what the test reads."""


@pytest.mark.parametrize("dataset, said", [
    ("MNIST", ["note: pruning on 'mnist', a dataset other than the one the model was trained on "
               "('mnist14')"]),
    ("mnist14", []),
])
def test_prune_notes_a_dataset_other_than_the_models_before_pruning(
    dataset: str, said: list[str], mnist_available, monkeypatch, tmp_path: Path,
) -> None:
    """As evaluate notes it: prune of a mnist14 CNN on mnist (28x28 images, which the CNN takes)
    said nothing while its accuracy before pruning fell to 0.13."""
    import nas.prune
    from nas.prune import PruneJob, run_prune

    def stop(*args: Any, **kwargs: Any) -> None:
        raise _Pruned

    monkeypatch.setattr(nas.prune, "prune_and_finetune", stop)
    model = _export_mnist14_cnn(tmp_path / "m")
    notes: list[str] = []
    with pytest.raises(_Pruned):
        run_prune(PruneJob(str(model), dataset, 1.5, str(tmp_path / "out")), say=notes.append)
    assert notes == said


def test_prune_prints_the_note_on_stderr_with_json(mnist_available, monkeypatch, capsys,
                                                   tmp_path: Path) -> None:
    import nas.prune

    def stop(*args: Any, **kwargs: Any) -> None:
        raise _Pruned("stopped where pruning starts")

    monkeypatch.setattr(nas.prune, "prune_and_finetune", stop)
    model = _export_mnist14_cnn(tmp_path / "m")
    assert main(["prune", "--model", str(model), "--dataset", "mnist", "--speedup", "1.5",
                 "--json", "--device", "cpu", "--out", str(tmp_path / "out")]) == 1
    said = capsys.readouterr()
    assert said.out == "" and said.err.startswith("note: pruning on 'mnist', a dataset other")
    assert "stopped where pruning starts" in said.err
