"""The shipped pretrained GHNs are what ``experiments/train_hypernets.py`` writes."""
from __future__ import annotations

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
