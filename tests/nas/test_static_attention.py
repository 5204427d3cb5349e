"""Attention layers on a fixed graph as sparse products compute what the PyG modules compute:
same outputs and gradients for GAT, GATv2 and the graph transformer, with their options, on
sparse and dense input, with duplicate edges and self loops in the graph."""
from __future__ import annotations

import pytest
import torch
import torch_geometric.nn as pyg

from search_spaces.static_attention import (
    MIN_CHANNELS_PER_HEAD, edge_aggregate, edge_dot, edge_structure, static_attention_forward,
)
from search_spaces.static_graph import StaticGraph, sparse_features

#: 7 nodes: a duplicate edge (0 -> 1 twice), a self loop (2 -> 2), an isolated node (6)
EDGES = torch.tensor([[0, 1, 1, 2, 3, 4, 4, 5, 0, 2], [1, 0, 2, 1, 4, 3, 5, 4, 1, 2]])


@pytest.fixture
def features() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(7, 12, generator=generator)
    x[x < 0.8] = 0.0
    return x


def _convs() -> list[tuple[str, torch.nn.Module]]:
    torch.manual_seed(0)
    return [
        ("gat", pyg.GATConv(12, 8, heads=3)),
        ("gat", pyg.GATConv(12, 8, heads=2, concat=False, negative_slope=0.1)),
        ("gat", pyg.GATConv(12, 16, heads=1, add_self_loops=False)),
        ("gatv2", pyg.GATv2Conv(12, 8, heads=3)),
        ("gatv2", pyg.GATv2Conv(12, 8, heads=2, share_weights=True, concat=False)),
        ("transformer", pyg.TransformerConv(12, 8, heads=3)),
        ("transformer", pyg.TransformerConv(12, 8, heads=2, concat=False, root_weight=False)),
    ]


@pytest.mark.parametrize("case", range(len(_convs())))
@pytest.mark.parametrize("layout", ["sparse", "dense"])
def test_sparse_attention_equals_pyg_module(features, case: int, layout: str) -> None:
    name, conv = _convs()[case]
    conv.eval()
    x = sparse_features(features) if layout == "sparse" else features
    assert x.layout == (torch.sparse_csr if layout == "sparse" else torch.strided)
    out = static_attention_forward(conv, name, x, StaticGraph(EDGES, 7))
    assert out is not None  # the sparse form handles these options
    expected = conv(features, EDGES)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)

    weights = torch.randn_like(expected)
    (expected * weights).sum().backward()
    want = _grads(conv)
    conv.zero_grad()
    (out * weights).sum().backward()
    for got, wanted in zip(_grads(conv), want):
        torch.testing.assert_close(got, wanted, rtol=1e-4, atol=1e-5)


def _grads(module: torch.nn.Module) -> list[torch.Tensor]:  # unused parameters: zero
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone()
            for p in module.parameters()]


def test_options_without_a_sparse_form_are_left_to_pyg(features) -> None:
    graph = StaticGraph(EDGES, 7)
    narrow = pyg.GATConv(12, MIN_CHANNELS_PER_HEAD // 2, heads=4)
    with_edges = pyg.GATConv(12, 8, edge_dim=3)
    gated = pyg.TransformerConv(12, 8, beta=True)
    for name, conv in (("gat", narrow), ("gat", with_edges), ("transformer", gated)):
        assert static_attention_forward(conv, name, features, graph) is None


def test_edge_aggregate_and_edge_dot_gradients() -> None:
    """Both sparse-product functions pass autograd's numerical gradient check (double)."""
    edges = edge_structure(EDGES, 7, self_loops=True)
    num_edges = edges.src.numel()
    assert num_edges == 7 + 9  # the self loop 2 -> 2 replaced by one loop per node
    alpha = torch.rand(num_edges, 2, dtype=torch.double, requires_grad=True)
    value = torch.randn(7, 2, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, v: edge_aggregate(a, v, edges), (alpha, value))
    query = torch.randn(7, 2, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda q, k: edge_dot(q, k, edges), (query, value))


def test_edge_dot_is_query_of_target_dot_key_of_source() -> None:
    edges = edge_structure(EDGES, 7, self_loops=False)
    query, key = torch.randn(7, 2, 8), torch.randn(7, 2, 8)
    expected = (query[EDGES[1]] * key[EDGES[0]]).sum(-1)  # PyG's order: edge_index as given
    got = edge_dot(query, key, edges)
    order = torch.argsort(EDGES[1] * 7 + EDGES[0], stable=True)
    torch.testing.assert_close(got, expected[order])


def test_attention_dropout_keeps_rate_in_training(features) -> None:
    torch.manual_seed(0)
    conv = pyg.GATConv(12, 8, heads=2, dropout=0.5)
    graph = StaticGraph(EDGES, 7)
    conv.train()
    first = static_attention_forward(conv, "gat", features, graph)
    second = static_attention_forward(conv, "gat", features, graph)
    assert not torch.equal(first, second)  # a new mask each call
    conv.eval()
    torch.testing.assert_close(static_attention_forward(conv, "gat", features, graph),
                               conv(features, EDGES), rtol=1e-4, atol=1e-5)
