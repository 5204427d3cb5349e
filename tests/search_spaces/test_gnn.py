from __future__ import annotations

import dataclasses
import json
import random

import optuna
import pytest
import torch

from search_spaces import get_space
from search_spaces.gnn import (
    ATTENTION_CONVS, CONVS, GNN, GNNArchitecture, GNNSpace, LayerSpec,
)


def _graph_batch(num_features: int = 5):
    torch.manual_seed(0)
    x = torch.randn(9, num_features)
    edge_index = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7, 1, 3], [1, 2, 0, 4, 5, 3, 7, 8, 0, 5]])
    batch = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    return x, edge_index, batch


@pytest.mark.parametrize("level", ["node", "graph"])
def test_200_sampled_architectures_run_forward_and_backward(level: str) -> None:
    space = GNNSpace()
    x, edge_index, batch = _graph_batch()
    convs_seen = set()
    for seed in range(200):
        arch = space.sample(random.Random(seed))
        convs_seen.update(layer.conv for layer in arch.layers)
        model = space.build(arch, in_channels=5, out_channels=3, level=level)
        out = model(x, edge_index, batch)
        assert out.shape == ((9, 3) if level == "node" else (3, 3))
        out.square().mean().backward()
        grads = [p.grad for p in model.classifier.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert convs_seen == set(CONVS)


def test_every_conv_builds_with_every_skip() -> None:
    x, edge_index, batch = _graph_batch()
    for conv in CONVS:
        for skip in ("none", "residual", "jk_cat"):
            layer = LayerSpec(conv=conv, width=8, heads=2 if conv in ATTENTION_CONVS else 1)
            arch = GNNArchitecture(layers=(layer, dataclasses.replace(layer, width=16)), skip=skip)
            out = GNN(arch, 5, 4, "graph")(x, edge_index, batch)
            assert out.shape == (3, 4), (conv, skip)


def test_json_round_trip_and_hash_are_stable() -> None:
    space = GNNSpace()
    for seed in range(50):
        arch = space.sample(seed)
        again = space.architecture_from_dict(json.loads(arch.to_json()))
        assert again == arch
        assert again.arch_hash == arch.arch_hash
        assert hash(again) == hash(arch)
    a, b = space.sample(1), space.sample(2)
    assert a.arch_hash != b.arch_hash


def test_irrelevant_choices_are_canonicalised() -> None:
    # heads mean nothing to GCN, aggregation nothing to GAT: equal models hash equally
    a = GNNArchitecture(layers=(LayerSpec("gcn", 16, heads=1),))
    b = GNNArchitecture(layers=(LayerSpec("gcn", 16, heads=4, aggregation="max"),))
    assert a == b and a.arch_hash == b.arch_hash
    c = GNNArchitecture(layers=(LayerSpec("sage", 16, aggregation="max"),))
    d = GNNArchitecture(layers=(LayerSpec("sage", 16, aggregation="mean"),))
    assert c.arch_hash != d.arch_hash


@pytest.mark.parametrize(
    "field, value",
    [("conv", "foo"), ("activation", "swish"), ("norm", "group"), ("aggregation", "median")],
)
def test_bad_choice_names_value_and_choices(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=rf"{value!r}.*choices"):
        LayerSpec(**{field: value})


def test_bad_structure_is_rejected() -> None:
    with pytest.raises(ValueError, match="multiple of heads"):
        LayerSpec("gat", width=10, heads=4)
    with pytest.raises(ValueError, match="depth 5"):
        GNNArchitecture(layers=(LayerSpec(),) * 5)
    with pytest.raises(ValueError, match="malformed"):
        GNNArchitecture.from_dict({"skip": "none"})


def test_space_resolves_convs_in_any_spelling_and_rejects_unknown() -> None:
    space = get_space("GNN", convs=("GraphConv", "gat_v2", "SAGE"))
    assert space.convs == ("graph", "gatv2", "sage")
    with pytest.raises(ValueError, match=r"could not resolve conv 'foo' among choices \["):
        get_space("gnn", convs=("foo",))
    with pytest.raises(ValueError, match="could not resolve space 'nope'"):
        get_space("nope")


def test_suggest_uses_only_the_trial_and_is_conditional() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    space = GNNSpace(convs=("gcn", "gat"))
    for _ in range(20):
        trial = study.ask()
        arch = space.suggest(trial)
        depth = trial.params["depth"]
        assert arch.depth == depth
        assert all(f"l{i}_conv" in trial.params for i in range(depth))
        assert f"l{depth}_conv" not in trial.params  # no parameters for absent layers
        for i, layer in enumerate(arch.layers):
            assert (f"l{i}_heads" in trial.params) == (layer.conv == "gat")
        study.tell(trial, 0.0)


def test_sample_is_deterministic_per_seed() -> None:
    space = GNNSpace()
    assert space.sample(7) == space.sample(7)
    assert len({space.sample(s).arch_hash for s in range(30)}) > 25


def test_repr_is_readable() -> None:
    arch = GNNArchitecture(layers=(LayerSpec("gat", 64, heads=8), LayerSpec("gcn", 16)), skip="residual")
    model = GNN(arch, 10, 3)
    assert repr(model) == "GNN(gat64h8-gcn16 residual, in=10, out=3, level=node)"
    with pytest.raises(ValueError, match="graph"):
        get_space("gnn").check_level("edge")


def test_trial_params_inverts_suggest() -> None:
    space = GNNSpace()
    for seed in range(100):
        arch = space.sample(seed)
        params = space.trial_params(arch)
        assert space.suggest(optuna.trial.FixedTrial(params)) == arch
    gcn = GNNArchitecture(layers=(LayerSpec("gcn", 16),))
    assert "l0_heads" not in space.trial_params(gcn) and "skip" not in space.trial_params(gcn)


def test_convs_as_a_comma_separated_string_are_several_convs() -> None:
    # as --convs takes them; iterating the string gave "could not resolve conv 'g'"
    assert get_space("gnn", convs="gcn, GraphConv").convs == ("gcn", "graph")
    assert GNNSpace(convs="sage").convs == ("sage",)


def test_equal_architectures_hash_equally_whatever_the_number_types() -> None:
    """64 and 64.0, 0 and 0.0 made equal architectures with different hashes (duplicate
    trials went undetected)."""
    a = GNNArchitecture.from_dict({"layers": [{"width": 64, "dropout": 0}], "weight_decay": 0})
    b = GNNArchitecture.from_dict({"layers": [{"width": 64.0, "dropout": 0.0}], "weight_decay": 0.0})
    assert a == b and a.arch_hash == b.arch_hash and isinstance(b.layers[0].width, int)
    with pytest.raises(ValueError, match="width 64.5 must be a whole number"):
        GNNArchitecture.from_dict({"layers": [{"width": 64.5}]})
    sampled = GNNSpace().sample(0)  # what the space proposes keeps the hash it had
    assert GNNArchitecture.from_dict(json.loads(json.dumps(sampled.to_dict()))).arch_hash == sampled.arch_hash
