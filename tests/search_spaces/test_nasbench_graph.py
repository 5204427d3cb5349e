"""NAS-Bench-Graph's cell space: the benchmark's architectures, hashes and models."""
from __future__ import annotations

import dataclasses
import itertools
import json
import random

import pytest
import torch
from nas_bench_graph.architecture import Arch
from nas_bench_graph.readbench import light_read

from search_spaces import SPACES, GNNSpace, get_space
from search_spaces.base import RandomTrial
from search_spaces.nasbench_graph import (
    BENCHMARK_SETTINGS, LINK_PATTERNS, NUM_ARCHITECTURES, OPS, NasBenchGraphArchitecture,
    NasBenchGraphNet, NasBenchGraphSpace,
)

Arch_ = NasBenchGraphArchitecture
TINY = dataclasses.replace(BENCHMARK_SETTINGS["cora"], dim=8, dropout=0.5)


def _all_cells() -> list[tuple[tuple[int, ...], tuple[str, ...]]]:
    return [
        (links, ops) for links in LINK_PATTERNS for ops in itertools.product(OPS, repeat=4)
        if set(ops) != {"skip"}
    ]


def test_space_is_registered_under_any_spelling() -> None:
    assert SPACES["nasbench-graph"] is NasBenchGraphSpace
    assert isinstance(get_space("NasBenchGraph"), NasBenchGraphSpace)
    assert get_space("nasbench_graph").name == "nasbench-graph"


@pytest.mark.parametrize("seed", range(5))
def test_json_round_trip_keeps_the_given_form_and_hash(seed: int) -> None:
    arch = NasBenchGraphSpace().sample(seed)
    again = Arch_.from_json(arch.to_json())
    assert again == arch and again.arch_hash == arch.arch_hash
    assert json.loads(arch.to_json()) == {"links": list(arch.links), "ops": list(arch.ops)}
    assert NasBenchGraphSpace().architecture_from_dict(arch.to_dict()) == arch


def test_hash_is_deterministic_and_differs_between_classes() -> None:
    a = Arch_((0, 1, 2, 3), ("gcn", "gat", "fc", "sage"))
    assert a.arch_hash == Arch_((0, 1, 2, 3), ("gcn", "gat", "fc", "sage")).arch_hash
    assert len(a.arch_hash) == 64
    assert a.arch_hash != Arch_((0, 1, 2, 3), ("gcn", "gat", "fc", "gin")).arch_hash


def test_reordered_nodes_are_one_architecture() -> None:
    a = Arch_((0, 1, 2, 1), ("gcn", "gin", "fc", "cheb"))  # fc reads gin, cheb reads gcn
    b = Arch_((0, 1, 1, 2), ("gcn", "gin", "cheb", "fc"))  # the same cell, nodes renumbered
    assert a != b  # the given forms stay as given ...
    assert a.arch_hash == b.arch_hash and a.canonical() == b.canonical()  # ... the class is one
    assert a.bench_hash == Arch([0, 1, 2, 1], ["gcn", "gin", "fc", "cheb"]).valid_hash()
    # the package README's second spelling lets fc read cheb: another cell, also for valid_hash
    c = Arch_((0, 1, 1, 2), ("gcn", "cheb", "gin", "fc"))
    assert c.arch_hash != a.arch_hash and c.bench_hash != a.bench_hash


def test_hash_classes_are_exactly_the_benchmarks_valid_hash_classes() -> None:
    rng = random.Random(0)
    cells = rng.sample(_all_cells(), 4000)
    # every cell of the benchmark's 24 link lists (not only the 9 canonical ones) is accepted
    cells += [((0, a, b, c), tuple(rng.choice(OPS[:-1]) for _ in range(4)))
              for a in range(2) for b in range(3) for c in range(4)]
    by_valid: dict[int, set[str]] = {}
    by_ours: dict[str, set[int]] = {}
    for links, ops in cells:
        ours = Arch_(links, ops).arch_hash
        valid = Arch(list(links), list(ops)).valid_hash()
        by_valid.setdefault(valid, set()).add(ours)
        by_ours.setdefault(ours, set()).add(valid)
    assert all(len(hashes) == 1 for hashes in by_valid.values())
    assert all(len(hashes) == 1 for hashes in by_ours.values())
    merged = len(cells) - len(by_ours)
    assert merged > 100  # the sample really contains isomorphic duplicates


def test_all_architectures_are_the_benchmarks_table_keys() -> None:
    archs = NasBenchGraphSpace().all_architectures()
    assert len(archs) == NUM_ARCHITECTURES == 26206
    assert {a.bench_hash for a in archs} == set(light_read("cora"))
    assert len({a.arch_hash for a in archs}) == NUM_ARCHITECTURES
    assert all(a.canonical() == a and a.links in LINK_PATTERNS for a in archs[:500])


def test_suggest_uses_one_categorical_per_choice() -> None:
    trial = RandomTrial(random.Random(3))
    arch = NasBenchGraphSpace().suggest(trial)
    assert set(trial.params) == {"link_pattern", "op0", "op1", "op2", "op3"}
    assert arch.links == LINK_PATTERNS[trial.params["link_pattern"]]
    assert arch.ops == tuple(trial.params[f"op{i}"] for i in range(4))
    assert NasBenchGraphSpace().sample(11) == NasBenchGraphSpace().sample(11)


def test_suggest_with_optuna_fixed_trial() -> None:
    import optuna

    params = {"link_pattern": 4, "op0": "gat", "op1": "skip", "op2": "cheb", "op3": "fc"}
    arch = NasBenchGraphSpace().suggest(optuna.trial.FixedTrial(params))
    assert arch == Arch_((0, 0, 1, 3), ("gat", "skip", "cheb", "fc"))
    all_skip = {**params, "op0": "skip", "op2": "skip", "op3": "skip"}
    with pytest.raises(optuna.TrialPruned, match="all-skip"):
        NasBenchGraphSpace().suggest(optuna.trial.FixedTrial(all_skip))


def test_sample_draws_valid_cells_uniformly() -> None:
    rng = random.Random(0)
    archs = [NasBenchGraphSpace().sample(rng) for _ in range(20000)]  # ~3 all-skip redraws
    assert all(set(a.ops) != {"skip"} for a in archs)
    counts = [sum(a.links == links for a in archs) for links in LINK_PATTERNS]
    assert min(counts) > 20000 / 9 * 0.9 and max(counts) < 20000 / 9 * 1.1


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"links": [0, 1, 2], "ops": ["gcn"] * 3}, "4 nodes"),
        ({"links": [0, 2, 1, 1], "ops": ["gcn"] * 4}, r"links\[1\] = 2"),
        ({"links": [0, 1, 2, 3], "ops": ["gcn", "gcn", "mlp", "gcn"]}, "'mlp' is not among"),
        ({"links": [0, 0, 0, 0], "ops": ["skip"] * 4}, "all-skip"),
        ({"links": [0, 0, 0, 0]}, "keys"),
        ({"links": [0, 0, 0, 0], "ops": ["gcn"] * 4, "lr": 0.1}, "keys"),
    ],
)
def test_bad_architectures_are_refused(spec: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Arch_.from_dict(spec)


def test_bad_pattern_and_unknown_dataset_name_the_choices() -> None:
    with pytest.raises(ValueError, match=r"link pattern 9 is not among 0..8"):
        Arch_.from_pattern(9, ("gcn",) * 4)
    with pytest.raises(ValueError, match=r"'mutag'.*\['cora', 'citeseer'.*'arxiv', 'proteins'\]"):
        NasBenchGraphSpace("mutag")


def test_graph_level_is_refused_with_a_clear_error() -> None:
    space = NasBenchGraphSpace()
    with pytest.raises(ValueError, match=r"nasbench-graph.*'graph'.*\['node'\]"):
        space.build(space.sample(0), 4, 3, "graph")
    model = NasBenchGraphNet(space.sample(0), 4, 3, TINY)
    with pytest.raises(ValueError, match="node-level"):
        model(torch.randn(5, 4), torch.tensor([[0, 1], [1, 0]]), torch.zeros(5, dtype=torch.long))


def _check_forward_backward(model: NasBenchGraphNet, graph) -> None:
    out = model(graph.x, graph.edge_index)
    assert out.shape == (6, 3) and torch.isfinite(out).all()
    out.logsumexp(-1).sum().backward()
    # PyG's ARMAConv keeps a ``weight`` for stacked layers 2.. that one layer never uses
    missing = [
        name for name, p in model.named_parameters()
        if p.grad is None and not (name.endswith(".weight") and "ARMA" in repr(
            model.get_submodule(name.rsplit(".", 1)[0])))
    ]
    assert not missing, f"{model}: no gradient for {missing}"
    model.eval()
    assert torch.equal(model(graph.x, graph.edge_index), model(graph.x, graph.edge_index))


@pytest.mark.parametrize("pattern", range(len(LINK_PATTERNS)))
def test_every_pattern_runs_every_op_forward_and_backward(tiny_graph, pattern: int) -> None:
    for k, num_pre in ((0, 0), (3, 1), (6, 0)):  # three cells per pattern cover all nine ops
        ops = tuple(OPS[(k + i) % len(OPS)] for i in range(4))
        setting = dataclasses.replace(TINY, num_pre=num_pre, num_pro=1 - num_pre)
        model = NasBenchGraphNet(Arch_.from_pattern(pattern, ops), 4, 3, setting)
        _check_forward_backward(model, tiny_graph)


@pytest.mark.parametrize("pattern", range(len(LINK_PATTERNS)))
def test_skip_chains_from_the_raw_input(tiny_graph, pattern: int) -> None:
    """Skips that pass the raw input on keep its width; the op reading them takes that width."""
    arch = Arch_.from_pattern(pattern, ("skip", "skip", "skip", "gin"))
    _check_forward_backward(NasBenchGraphNet(arch, 4, 3, TINY), tiny_graph)


def test_models_have_the_benchmarks_parameter_counts() -> None:
    """``para`` of the table == our count, plus the BatchNorm the benchmark's code creates (and
    never applies) for every op that reads the raw input."""
    table, setting = light_read("cora"), BENCHMARK_SETTINGS["cora"]
    archs = random.Random(5).sample(NasBenchGraphSpace().all_architectures(), 12)
    for arch in archs:
        model = NasBenchGraphSpace("cora").build(arch, setting.num_features, setting.num_classes)
        unused = sum(isinstance(n, torch.nn.Identity) for n in model.cell.norms)
        count = sum(p.numel() for p in model.parameters()) + 2 * setting.dim * unused
        assert count == round(float(table[arch.bench_hash]["para"]) * 1e6), arch.short()


def test_settings_follow_the_dataset() -> None:
    space = NasBenchGraphSpace()
    arch = space.sample(1)
    assert space.build(arch, 3703, 6).setting == BENCHMARK_SETTINGS["citeseer"]  # recognised
    assert space.build(arch, 4, 3).setting == BENCHMARK_SETTINGS["cora"]  # default
    assert NasBenchGraphSpace("photo").build(arch, 4, 3).setting == BENCHMARK_SETTINGS["photo"]
    assert space.training_config(arch) == {"lr": 0.1, "weight_decay": 5e-4, "optimizer": "sgd"}
    assert NasBenchGraphSpace("computers").training_config(arch)["optimizer"] == "adam"


def test_training_config_is_accepted_by_the_training_loop() -> None:
    from nas.train import TrainConfig, make_optimizer

    space = NasBenchGraphSpace()
    model = space.build(space.sample(2), 4, 3)
    optimizer = make_optimizer(model, TrainConfig(**space.training_config(space.sample(2))))
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["lr"] == 0.1
    with pytest.raises(ValueError, match=r"'rmsprop' among choices \['adam', 'sgd'\]"):
        make_optimizer(model, TrainConfig(optimizer="rmsprop"))


def test_for_dataset_picks_the_benchmarks_setting() -> None:
    space = get_space("nasbench-graph")
    citeseer = space.for_dataset("citeseer")
    assert citeseer.dataset == "citeseer" and space.dataset is None
    assert citeseer.training_config(space.sample(0))["lr"] == BENCHMARK_SETTINGS["citeseer"].lr
    assert space.for_dataset("texas") is space  # not a benchmark dataset: shapes decide
    assert citeseer.for_dataset("cora") is citeseer  # an explicit choice is kept
    assert GNNSpace().for_dataset("cora").name == "gnn"


def test_building_an_architecture_of_another_space_names_both() -> None:
    from search_spaces.gnn import GNNArchitecture

    with pytest.raises(TypeError, match="space 'nasbench-graph' builds NasBenchGraphArchitecture, not GNNArchitecture"):
        NasBenchGraphSpace().build(GNNArchitecture(), 1433, 7)


@pytest.mark.parametrize("pattern", range(len(LINK_PATTERNS)))
def test_every_op_converts_to_a_parameter_graph_and_back(tiny_graph, pattern: int) -> None:
    """Networks as data: a benchmark model traces (its fc op too) and its parameter graph
    loads into a fresh model of the cell that then computes the same function."""
    from metanets.graphs import load_parameter_graph, to_parameter_graph

    for k, num_pre in ((0, 0), (3, 1), (6, 0)):  # three cells per pattern cover all nine ops
        ops = tuple(OPS[(k + i) % len(OPS)] for i in range(4))
        setting = dataclasses.replace(TINY, num_pre=num_pre, num_pro=1 - num_pre)
        arch = Arch_.from_pattern(pattern, ops)
        model = NasBenchGraphNet(arch, 4, 3, setting).eval()
        graph = to_parameter_graph(model, (tiny_graph.x, tiny_graph.edge_index))
        weights = sum(p.numel() for p in model.parameters())
        assert graph.num_edges > 0 and graph.num_nodes > 0, arch.short()
        fresh = NasBenchGraphNet(arch, 4, 3, setting).eval()
        load_parameter_graph(fresh, graph)
        torch.testing.assert_close(
            fresh(tiny_graph.x, tiny_graph.edge_index), model(tiny_graph.x, tiny_graph.edge_index),
            msg=f"{arch.short()} ({weights} weights)")
