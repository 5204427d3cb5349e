"""The shipped pretrained GHNs are what ``experiments/train_hypernets.py`` writes."""
from __future__ import annotations

import json

import pytest
from _scripts import load_script

from metanets.ghn import GraphHyperNetwork
from metanets.ghn_train import sample_architectures
from search_spaces import get_space


@pytest.mark.parametrize("name", ["gnn-cora", "cnn-mnist"])
def test_shipped_checkpoints_were_trained_with_their_setup(name: str) -> None:
    """Weight normalisation, steps and training pool of the shipped file match its setup, so
    ``python -m experiments.train_hypernets --only NAME`` reproduces it and the held-out
    evaluation excludes the right pool."""
    space_name, _, config = load_script("train_hypernets").SETUPS[name]
    ghn = GraphHyperNetwork.load(f"pretrained:{name}")
    assert ghn.config.weight_norm == config.weight_norm
    assert ghn.metadata["train_config"]["steps"] == config.steps
    pool = sample_architectures(get_space(space_name), config.pool_size, config.seed,
                                max_depth=config.max_depth, max_width=config.max_width)
    assert ghn.metadata["train_hashes"] == [a.arch_hash for a in pool]


def test_a_variant_goes_to_its_out_dir_with_its_override_and_leaves_the_shipped_files(
    tmp_path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from metanets.ghn import resolve_checkpoint

    script = load_script("train_hypernets")
    shipped = resolve_checkpoint("pretrained:cnn-mnist")
    before = shipped.read_bytes()
    record_before = (script.RESULTS / "train_hypernets.json").read_bytes()
    monkeypatch.setattr("sys.argv", ["train_hypernets", "--only", "cnn-mnist", "--steps", "2",
                                     "--max-distance", "3", "--out-dir", str(tmp_path)])
    monkeypatch.setenv("METANAS_CACHE", str(tmp_path / "cache"))
    script.main()
    # the training state was written (at the last step) and removed once the checkpoint was
    assert (tmp_path / "cache" / "train_hypernets").is_dir()
    assert not list((tmp_path / "cache" / "train_hypernets").iterdir())
    ghn = GraphHyperNetwork.load(tmp_path / "cnn-mnist.safetensors")
    assert ghn.config.max_distance == 3 and ghn.metadata["train_config"]["max_distance"] == 3
    assert ghn.metadata["train_config"]["steps"] == 2
    record = json.loads((tmp_path / "train_hypernets.json").read_text())
    assert record["runs"]["cnn-mnist"]["config"]["max_distance"] == 3
    assert "| cnn-mnist | cnn | mnist | 2 |" in (tmp_path / "train_hypernets.md").read_text()
    assert shipped.read_bytes() == before
    assert (script.RESULTS / "train_hypernets.json").read_bytes() == record_before
