"""``metanas metanet train|predict`` as a user runs them: what each refuses, and by name."""
from __future__ import annotations

from pathlib import Path

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
