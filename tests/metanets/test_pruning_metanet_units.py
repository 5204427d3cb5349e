"""The pruning metanetwork's channel groups (what it gates, penalises and drops) are the GNN
pruner's units, read from the pruner's own groups (``build_groups``): on a ``gat32h4-gat32h2``
residual model the metanetwork had 32 channels where the pruner has 8 units of 4 (one channel in
each of 4 blocks), so the network it trained to survive dropping its lowest channels (14 channels
over 7 units, no unit emptied) was one the pruner cannot produce; and an attention layer's own
weights (those into its value neurons) were left out of every channel's norm. CNNs keep
torch-pruning's coupled channels, GCNs the channels they had."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call

from metanets.graphs import NodeType
from metanets.pruning._gnn import build_groups, prune_groups, unit_scores
from metanets.pruning.metanet import (
    PruningMetanet,
    _channel_mask,
    _coupled_norms,
    coupled_channels,
    drop_lowest,
    state_from_graph,
)
from metanets.zoo import example_inputs
from search_spaces.cnn import CNN, CNNArchitecture
from search_spaces.gnn import GNN, GNNArchitecture, LayerSpec


def _gnn(conv: str, heads: tuple[int, ...], skip: str = "none", norm: str = "none",
         width: int = 32) -> GNN:
    torch.manual_seed(0)
    layers = tuple(LayerSpec(conv, width, h, norm=norm, activation="relu") for h in heads)
    return GNN(GNNArchitecture(layers=layers, skip=skip), 6, 3).eval()


def _graph_of(model: nn.Module, inputs: tuple[torch.Tensor, ...] | None = None):
    return PruningMetanet.create(inputs or example_inputs("node", 6)).graph_of(model)


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(20, 6, generator=generator), torch.randint(0, 20, (2, 60),
                                                                   generator=generator)


UNIT_CASES = {  # name: (conv, heads, skip, norm, width)
    "gat-1-head": ("gat", (1, 1), "none", "none", 32),
    "gat-2-heads": ("gat", (2, 2), "none", "batch", 32),
    "gat-4-heads-residual": ("gat", (4, 4), "residual", "none", 32),
    "gat-8-heads": ("gat", (8, 8), "none", "none", 32),
    "gat-mixed-4-2-residual": ("gat", (4, 2), "residual", "none", 32),
    "gat-mixed-2-8-residual": ("gat", (2, 8), "residual", "batch", 32),
    "gat-mixed-3-2-residual": ("gat", (3, 2), "residual", "none", 12),
    "gatv2-mixed-4-2-residual": ("gatv2", (4, 2), "residual", "none", 32),
    "transformer-mixed-2-4-residual": ("transformer", (2, 4), "residual", "none", 32),
    "gat-jk-cat": ("gat", (4, 2), "jk_cat", "none", 32),
    "gcn-jk-cat": ("gcn", (1, 1), "jk_cat", "batch", 32),
    "gin": ("gin", (1, 1), "none", "batch", 16),
    "gin-residual": ("gin", (1, 1), "residual", "none", 16),
    "gin-jk-cat": ("gin", (1, 1), "jk_cat", "none", 16),
}


@pytest.mark.parametrize("case", list(UNIT_CASES))
def test_the_metanetworks_channels_are_the_pruners_units(case: str) -> None:
    """Unit by unit, the norm of the weights the metanetwork counts for a channel is the
    pruner's group norm of that unit (every parameter it keeps on neurons zeroed, since the
    metanetwork rewrites weights only): the same units, in the same groups and order, with the
    same tensor entries. GIN and the GCN already agreed; attention layers did not (32 channels
    for 8 units; with one head, the layer's own weights were missing)."""
    model = _gnn(*UNIT_CASES[case])
    tensors = model.state_dict(keep_vars=True)
    with torch.no_grad():
        for slot in _graph_of(model).param_slots:
            if slot.where == "node":  # biases, attention vectors, normalisation parameters
                tensors[slot.name].zero_()
    graph, groups = _graph_of(model), build_groups(model)
    ids, group_ids = coupled_channels(graph)
    sizes = torch.tensor([g.units for g in groups])
    order = torch.unique(group_ids, return_inverse=True)[1]  # the groups, in the pruner's order
    assert torch.equal(order, torch.repeat_interleave(torch.arange(len(groups)), sizes))
    norms = _coupled_norms(graph, graph.edge_attr.float(), ids, len(group_ids))
    assert torch.allclose(norms, torch.cat(unit_scores(groups)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", [
    ("gat", (4, 2), "residual", "none"),
    ("gat", (4, 4), "none", "batch"),
    ("gat", (2, 8), "jk_cat", "none"),
    ("gatv2", (4, 2), "residual", "batch"),
    ("transformer", (2, 4), "residual", "none"),
    ("transformer", (4, 4), "none", "batch"),
])
def test_the_dropped_network_is_the_one_the_pruner_leaves(case: tuple) -> None:
    """The network the metanetwork trains to survive (its lowest channels dropped) computes
    what the pruner's model computes when it removes the same units. TransformerConv included:
    pruning changed its attention's 1 / sqrt(channels per head) scale, so every score moved
    (7e-3 on the output) until the pruner scaled its query rows to keep it."""
    model, inputs = _gnn(*case), _inputs()
    graph = _graph_of(model)
    ids, groups = coupled_channels(graph)
    pruner = build_groups(model)
    assert len(groups) == sum(g.units for g in pruner)  # one metanetwork channel per unit
    dropped = drop_lowest(graph, graph.edge_attr.float(), 0.45)
    gone = _coupled_norms(graph, dropped, ids, len(groups)) < 1e-5
    drops = [gone[groups == g].nonzero()[:, 0] for g in range(len(pruner))]
    assert [len(d) for d in drops] == [int(0.45 * g.units) for g in pruner]
    pruned = copy.deepcopy(model)
    prune_groups(pruned, build_groups(pruned), drops)
    with torch.no_grad():
        expected = pruned(*inputs)
        got = functional_call(model, state_from_graph(graph, dropped, model), inputs)
    assert torch.allclose(got, expected, atol=1e-5)


def test_cnn_channels_are_unchanged() -> None:
    """A CNN keeps the parameter graph's coupled channels (torch-pruning's groups): residual
    stages couple every layer of a stage, plain layers are groups of their own."""
    for residual, ids, groups in (
        (True, [0, 1, 2, 3] * 7 + list(range(4, 12)) * 4, [1] * 4 + [8] * 8),
        (False, [0, 1, 2, 3] * 2 + [4, 5, 6, 7] * 2 + list(range(8, 16)) * 2,
         [1] * 4 + [3] * 4 + [5] * 8),
    ):
        torch.manual_seed(0)
        model = CNN(CNNArchitecture(widths=(4, 4, 8), norm="batch", residual=residual), 1, 10)
        graph = _graph_of(model.eval(), (torch.zeros(2, 1, 8, 8),))
        assert "channel_unit" not in graph
        assert coupled_channels(graph)[0].tolist() == ids
        assert coupled_channels(graph)[1].tolist() == groups


def test_gcn_channels_are_unchanged() -> None:
    """A GCN's units are single channels: its channel neurons (conv outputs, normalised copies,
    residual sums) and their coupling are what they were."""
    model = GNN(GNNArchitecture(layers=(LayerSpec("gcn", 8, norm="batch"), LayerSpec("gcn", 8)),
                                skip="residual"), 6, 3).eval()
    graph = _graph_of(model)
    types = graph.node_type[_channel_mask(graph)].tolist()
    hidden, norm, total = int(NodeType.HIDDEN), int(NodeType.NORM), int(NodeType.SUM)
    assert types == [hidden] * 8 + [norm] * 8 + [hidden] * 8 + [total] * 8
    ids, groups = coupled_channels(graph)
    assert ids.tolist() == list(range(8)) * 4 and len(groups) == 8
    assert len(torch.unique(groups)) == 1  # one group: the residual couples both layers


def test_a_saved_metanetworks_gate_empties_an_attention_layers_own_weights(tmp_path) -> None:
    """A gate closes a whole unit, the attention layer's weights into its value neurons among
    them (what the pruner's group norm counts): they were never gated, so a closed gate left
    the first layer of a GAT as it was. A saved metanetwork holds no group structure (its gate
    head reads a neuron's embedding and its unit's relative norm) and loads to do the same."""
    from metanets.pruning.metanet import load_pruning_metanet

    metanet = PruningMetanet.create(example_inputs("node", 6), hidden=8, layers=1, gate=True)
    with torch.no_grad():
        metanet.gate[-1].bias.fill_(-30.0)  # every gate 2 * sigmoid(-30): closed
    loaded = load_pruning_metanet(metanet.save(tmp_path / "metanet"))
    model = _gnn("gat", (4, 2), "residual")
    rewritten = loaded.transform(copy.deepcopy(model))
    assert float(model.layers[0].conv.lin.weight.abs().max()) > 0.1
    for layer in rewritten.layers:
        assert float(layer.conv.lin.weight.abs().max()) < 1e-6
    assert float(rewritten.classifier.weight.abs().max()) < 1e-6
