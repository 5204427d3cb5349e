"""GIN's MLP hidden channels are a pruning group of their own: they shrink, pruning channels that
carry nothing changes nothing, a pruned GIN export loads back, and speed-ups out of reach while
the hidden width stayed are reached. Before, the GNN pruner left the hidden width (about half of
a GIN layer's MACs) untouched, so a GIN model reached a speed-up only by cutting its output
channels twice as hard."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from metanets.pruning import count_macs, prune_model
from metanets.pruning.shapes import pruned_attributes
from nas.export import PRUNED_KEY, export_model, load_exported
from search_spaces.gnn import GNN, GNNArchitecture, LayerSpec

STEP = 0.05  # coarse steps keep the tests fast
WIDTH = 16


def _gin(skip: str = "none") -> GNN:
    torch.manual_seed(0)
    layers = (LayerSpec("gin", WIDTH, norm="batch"), LayerSpec("gin", WIDTH))
    return GNN(GNNArchitecture(layers=layers, skip=skip), 6, 3).eval()


def _graph() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(20, 6, generator=generator), torch.randint(0, 20, (2, 60),
                                                                   generator=generator)


def _hidden_widths(model: GNN) -> list[int]:
    """Every GIN layer's MLP hidden width, checked consistent across its tensors and attributes."""
    widths = []
    for layer in model.layers:
        first, second = layer.conv.nn[0], layer.conv.nn[2]
        assert first.weight.shape[0] == first.bias.shape[0] == first.out_features
        assert second.weight.shape[1] == second.in_features == first.out_features
        widths.append(first.out_features)
    return widths


def _without_hidden(model: GNN, keep: int) -> GNN:
    """A copy of ``model`` whose GIN MLPs keep their first ``keep`` hidden channels (by hand)."""
    narrow = copy.deepcopy(model)
    for layer in narrow.layers:
        first, second = layer.conv.nn[0], layer.conv.nn[2]
        layer.conv.nn[0] = nn.Linear(first.in_features, keep)
        layer.conv.nn[2] = nn.Linear(keep, second.out_features)
        with torch.no_grad():
            layer.conv.nn[0].weight.copy_(first.weight[:keep])
            layer.conv.nn[0].bias.copy_(first.bias[:keep])
            layer.conv.nn[2].weight.copy_(second.weight[:, :keep])
            layer.conv.nn[2].bias.copy_(second.bias)
    return narrow.eval()


@pytest.mark.parametrize("skip", ["none", "residual", "jk_cat"])
def test_pruning_a_gin_model_shrinks_its_mlp_hidden_width(skip: str) -> None:
    model, inputs = _gin(skip), _graph()
    result = prune_model(model, inputs, 2.0, step=STEP)
    assert result.speedup >= 2.0
    assert all(width < WIDTH for width in _hidden_widths(result.model))
    assert _hidden_widths(model) == [WIDTH, WIDTH]  # input untouched
    hidden = _hidden_widths(result.model)
    outputs = [layer.width for layer in result.model.arch.layers]
    # reported input to output: a layer's hidden width before its output width
    expected = ([hidden[0], outputs[0], hidden[1]] if skip == "residual"  # one coupled group
                else [hidden[0], outputs[0], hidden[1], outputs[1]])
    assert list(result.widths_after) == expected
    assert result.model(*inputs).shape == (20, 3)
    assert count_macs(result.model, inputs) == result.macs_after


@pytest.mark.parametrize("importance", ["magnitude", "random"])
def test_every_importance_prunes_the_hidden_channels(importance: str) -> None:
    result = prune_model(_gin(), _graph(), 2.0, importance=importance, seed=3, step=STEP)
    assert len(result.widths_before) == 4
    assert sum(_hidden_widths(result.model)) < 2 * WIDTH


def test_hidden_channels_that_carry_nothing_go_first_and_change_nothing() -> None:
    """Hidden channels 8-15 of both GIN layers have zero weights in and out (ReLU(0) = 0): the
    model pruned to the speed-up of removing exactly them computes what the original does."""
    model, inputs, keep = _gin(), _graph(), WIDTH // 2
    with torch.no_grad():
        for layer in model.layers:
            layer.conv.nn[0].weight[keep:] = 0.0
            layer.conv.nn[0].bias[keep:] = 0.0
            layer.conv.nn[2].weight[:, keep:] = 0.0
    narrow = _without_hidden(model, keep)
    before, after = count_macs(model, inputs), count_macs(narrow, inputs)
    assert torch.allclose(narrow(*inputs), model(*inputs), atol=1e-6)  # the construction is right
    result = prune_model(model, inputs, before / (after + 0.5), step=STEP)
    assert _hidden_widths(result.model) == [keep, keep]
    assert [layer.width for layer in result.model.arch.layers] == [WIDTH, WIDTH]
    assert result.macs_after == after
    assert torch.allclose(result.model(*inputs), model(*inputs), atol=1e-6)


def test_a_gin_model_reaches_speedups_its_output_channels_alone_could_not() -> None:
    """With the hidden width kept, one channel per layer output left this model at 6.2x."""
    model, inputs = _gin(), _graph()
    result = prune_model(model, inputs, 8.0, step=STEP)
    assert result.speedup >= 8.0
    assert max(_hidden_widths(result.model)) < WIDTH


def test_the_metanetworks_channel_groups_are_the_pruners_groups() -> None:
    """The pruning metanetwork rewrites and penalises the GIN MLP's hidden channels as channel
    groups of the parameter graph; the pruner now prunes the same groups (it had two of four)."""
    from metanets.pruning._gnn import build_groups
    from metanets.pruning.metanet import PruningMetanet, coupled_channels
    from metanets.zoo import example_inputs

    for skip in ("none", "residual"):
        model = _gin(skip)
        graph = PruningMetanet.create(example_inputs("node", 6)).graph_of(model)
        _, groups = coupled_channels(graph)
        sizes = torch.unique(groups, return_counts=True)[1].tolist()
        assert sorted(sizes) == sorted(g.units * g.heads for g in build_groups(model))


def test_pruned_gin_export_round_trips(tmp_path: Path) -> None:
    model, inputs = _gin("residual"), _graph()
    spec = model.arch.to_dict()
    result = prune_model(model, inputs, 2.0, step=STEP)
    folder = export_model(
        tmp_path / "pruned", space="gnn", spec=spec, in_channels=6, out_channels=3, level="node",
        state_dict=result.model.state_dict(),
        metadata={PRUNED_KEY: {"attributes": pruned_attributes(model, result.model)}},
    )
    loaded = load_exported(folder)
    assert _hidden_widths(loaded) == _hidden_widths(result.model) != [WIDTH, WIDTH]
    assert loaded.arch == result.model.arch
    assert torch.allclose(loaded(*inputs), result.model.eval()(*inputs), atol=1e-6)
    assert count_macs(loaded, inputs) == result.macs_after


def test_metanas_prune_of_a_gin_export_loads_back(cora_available, tmp_path: Path) -> None:
    """``metanas prune`` on a GIN export: the written folder rebuilds the pruned model (hidden
    widths included) and gives the outputs of the model it pruned, and its printed widths say
    which are the hidden ones."""
    from nas.prune import PruneJob, format_outcome, run_prune
    from nas.tasks import load_task

    task = load_task("cora")
    torch.manual_seed(0)
    arch = GNNArchitecture(layers=(LayerSpec("gin", WIDTH), LayerSpec("gin", WIDTH)))
    source = export_model(tmp_path / "model", space="gnn", spec=arch.to_dict(),
                          in_channels=task.num_features, out_channels=task.num_classes,
                          level="node",
                          state_dict=GNN(arch, task.num_features, task.num_classes).state_dict())
    outcome, folder = run_prune(PruneJob(str(source), "cora", 2.0, str(tmp_path / "out"),
                                         finetune_epochs=0))
    loaded = load_exported(folder)
    assert _hidden_widths(loaded) == _hidden_widths(outcome.model) != [WIDTH, WIDTH]
    inputs = (task.data.x, task.data.edge_index)
    assert torch.allclose(loaded(*inputs), outcome.model.eval()(*inputs), atol=1e-5)
    assert "GIN layers: MLP hidden width, then output width" in format_outcome(outcome)
