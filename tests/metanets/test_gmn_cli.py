"""``metanas metanet train|predict`` as a user runs them: what each refuses, and by name."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from metanets.accuracy import FitConfig
from metanets.gmn import GMN, GMNConfig, save_gmn
from nas.cli import main

TRAIN = ["--epochs", "2", "--hidden", "8", "--layers", "1", "--batch-size", "2", "--device", "cpu"]


def test_predict_refuses_a_pruning_metanetwork(tmp_path: Path, capsys, export_image_networks) -> None:
    """A prune-metanet folder loaded as an accuracy predictor: its untrained regression head
    printed a 'predicted value' for every network, exit 0."""
    pruning = save_gmn(GMN(GMNConfig(hidden=8, layers=1, out_edge=9)), tmp_path / "pruning",
                       metadata={"purpose": "pruning", "dataset": "mnist14"})
    argv = ["metanet", "predict", "--model", str(pruning), *export_image_networks(tmp_path, (0,))]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert (f"{pruning} holds a metanetwork trained for 'pruning' (metanas prune-metanet), not "
            "for accuracy prediction (metanas metanet train)") in captured.err


@pytest.mark.parametrize("lr", ["inf", "nan", "0", "-1"])
def test_train_refuses_an_lr_that_cannot_fit_by_its_flag(lr: str, sqlite_url: str, tmp_path: Path,
                                                         capsys, store_image_networks) -> None:
    """--lr inf trained to NaN weights and wrote them as a metanetwork (exit 0) whose every
    prediction was NaN (and `predict --json` printed NaN, no JSON); nan and -1 failed inside
    the optimizer ('Invalid learning rate: nan', no flag named), 0 trained nothing."""
    store_image_networks(sqlite_url)
    out = tmp_path / "gmn"
    argv = ["metanet", "train", "--zoo", sqlite_url, "--study", "z", "--out", str(out), *TRAIN]
    with pytest.raises(SystemExit) as refused:
        main([*argv, "--lr", lr])
    assert refused.value.code == 2
    assert f"argument --lr: must be a finite number > 0, got {lr}" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "gmn.state").exists()


@pytest.mark.parametrize("lr", [math.inf, math.nan, 0.0, -1.0])
def test_a_fit_config_refuses_an_lr_that_cannot_fit(lr: float) -> None:
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        FitConfig(lr=lr)


def test_a_diverged_fit_is_refused_not_kept(monkeypatch) -> None:
    """A fit whose training loss was NaN at every validated epoch kept the first one (the
    'lowest' NaN loss) and returned a model predicting NaN for every network."""
    import metanets.accuracy as accuracy
    from metanets.graphs import to_parameter_graph
    from search_spaces.cnn import CNNArchitecture, CNNSpace

    graphs = [to_parameter_graph(CNNSpace().build(CNNArchitecture(widths=(4,)), 1, 10),
                                 (torch.zeros(2, 1, 12, 12),)) for _ in range(4)]
    y = torch.linspace(0.1, 0.9, 4)
    monkeypatch.setattr(accuracy, "_train_epoch", lambda *args: math.nan)
    with pytest.raises(ValueError, match="the fit diverged: its training loss was nan at every "
                                         r"validated epoch \(lr 0.002\); lower the learning rate"):
        accuracy.fit_gmn(graphs, y, graphs[:1], y[:1], FitConfig(epochs=2, hidden=8, layers=1))


def test_a_diverged_fit_leaves_no_training_state_to_refuse_a_lower_lr(monkeypatch,
                                                                      tmp_path: Path) -> None:
    """The state of the diverged fit was written at its last epoch: the same command resumed it
    and diverged again, and the lower --lr the error advised was refused as another fit's."""
    import metanets.accuracy as accuracy
    from metanets.graphs import to_parameter_graph
    from search_spaces.cnn import CNNArchitecture, CNNSpace

    graphs = [to_parameter_graph(CNNSpace().build(CNNArchitecture(widths=(4,)), 1, 10),
                                 (torch.zeros(2, 1, 12, 12),)) for _ in range(4)]
    y, state = torch.linspace(0.1, 0.9, 4), tmp_path / "gmn.state"
    with monkeypatch.context() as patched:
        patched.setattr(accuracy, "_train_epoch", lambda *args: math.nan)
        with pytest.raises(ValueError, match="lower the learning rate \\(--lr\\); its training "
                                             "state was removed"):
            accuracy.fit_gmn(graphs, y, graphs[:2], y[:2], FitConfig(epochs=2, hidden=8, layers=1),
                             state=state)
    assert not state.exists()
    result = accuracy.fit_gmn(graphs, y, graphs[:2], y[:2],
                              FitConfig(epochs=2, hidden=8, layers=1, lr=1e-3), state=state)
    assert result.best_epoch in (1, 2)


def test_predict_takes_every_study_given(sqlite_url: str, tmp_path: Path, capsys,
                                         store_image_networks) -> None:
    """--study was a plain option: `--study a --study b` (as metanet train takes them) predicted
    for b only, saying nothing of a."""
    import json

    store_image_networks(sqlite_url, study="a", runs=3)
    store_image_networks(sqlite_url, study="b", runs=4)
    out = tmp_path / "gmn"
    zoo = ["--zoo", sqlite_url, "--study", "a", "--study", "b"]
    assert main(["metanet", "train", *zoo, "--out", str(out), *TRAIN]) == 0
    capsys.readouterr()
    assert main(["metanet", "predict", "--model", str(out), *zoo, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(row["study"], row["trial"]) for row in rows] == [
        ("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1), ("b", 2), ("b", 3)]
    assert main(["metanet", "predict", "--model", str(out), *zoo, "--study", "c"]) == 2
    assert "no study 'c'" in capsys.readouterr().err


def test_predict_names_a_network_without_checkpoints_by_its_trial(
        sqlite_url: str, tmp_path: Path, capsys, store_image_networks) -> None:
    """A search's networks (no checkpoints, epoch None) were printed as 'z trial 0 epoch None'."""
    store_image_networks(sqlite_url, runs=3)
    out = tmp_path / "gmn"
    zoo = ["--zoo", sqlite_url, "--study", "z"]
    assert main(["metanet", "train", *zoo, "--out", str(out), *TRAIN]) == 0
    capsys.readouterr()
    assert main(["metanet", "predict", "--model", str(out), *zoo]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["z trial 0", "z trial 1", "z trial 2"]
    assert all("(measured 0." in line for line in lines)


def test_train_names_a_missing_target_and_the_metrics_it_could_use(
        sqlite_url: str, tmp_path: Path, capsys, store_image_networks) -> None:
    """It listed a trial once per checkpoint ('trials [0, 0, 1, 1, 2]') and the metrics of the
    first network only, which others may lack."""
    store_image_networks(sqlite_url, runs=3)
    argv = ["metanet", "train", "--zoo", sqlite_url, "--study", "z", "--out", str(tmp_path / "g"),
            *TRAIN, "--target", "val_acc"]
    assert main(argv) == 2
    assert ("--target 'val_acc' was not measured for 3 of the 3 runs (study 'z' trial 0 first); "
            "metrics of every network: ['test_acc']") in capsys.readouterr().err
