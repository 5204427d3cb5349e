"""Zero-cost proxies on tiny inline graphs: finite, deterministic, sensitive, resolvable."""
from __future__ import annotations

import math

import pytest
import torch

from nas.proxies import PROXIES, ProxyBatch, get_proxy, proxy_name
from search_spaces import GNNArchitecture, LayerSpec, get_space


def _node_batch(graph) -> list[ProxyBatch]:
    return [ProxyBatch((graph.x, graph.edge_index), graph.y[graph.train_mask], graph.train_mask)]


def _graph_batch(graph) -> list[ProxyBatch]:
    from torch_geometric.data import Batch

    graphs = Batch.from_data_list([graph.clone(), graph.clone()])
    return [ProxyBatch((graphs.x, graphs.edge_index, graphs.batch), torch.tensor([0, 2]))]


def _model(width: int = 16, depth: int = 2, level: str = "node", seed: int = 0, conv: str = "gcn"):
    torch.manual_seed(seed)
    arch = GNNArchitecture(layers=tuple(LayerSpec(conv, width, dropout=0.0) for _ in range(depth)))
    return get_space("gnn").build(arch, 4, 3, level)


@pytest.mark.parametrize("name", sorted(PROXIES))
@pytest.mark.parametrize("level", ["node", "graph"])
def test_proxy_is_a_finite_deterministic_float(name, level, tiny_graph):
    batches = _node_batch(tiny_graph) if level == "node" else _graph_batch(tiny_graph)
    proxy = get_proxy(name)
    first = proxy(_model(level=level, seed=3), batches)
    second = proxy(_model(level=level, seed=3), batches)
    assert isinstance(first, float) and math.isfinite(first)
    assert first == second


@pytest.mark.parametrize("name", sorted(PROXIES))
def test_proxy_leaves_the_model_unchanged(name, tiny_graph):
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    get_proxy(name)(model, _node_batch(tiny_graph))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert next(model.parameters()).dtype == torch.float32


@pytest.mark.parametrize("name", ["params", "synflow", "snip", "naswot", "gradsign"])
def test_wide_model_scores_higher_than_narrow(name, tiny_graph):
    batches = _node_batch(tiny_graph)
    narrow = get_proxy(name)(_model(width=2), batches)
    wide = get_proxy(name)(_model(width=64), batches)
    assert wide > narrow


def test_grad_norm_depends_on_the_initialisation(tiny_graph):
    batches = _node_batch(tiny_graph)
    assert PROXIES["grad_norm"](_model(seed=0), batches) != PROXIES["grad_norm"](_model(seed=1), batches)


def test_naswot_scores_distinct_codes_higher():
    """Samples with identical inputs share a code: the kernel is (nearly) singular."""
    edge_index = torch.tensor([[0, 1], [1, 0]])
    mask = torch.ones(4, dtype=torch.bool)
    targets = torch.zeros(4, dtype=torch.long)
    same = ProxyBatch((torch.ones(4, 4), edge_index), targets, mask)
    varied = ProxyBatch((torch.randn(4, 4, generator=torch.Generator().manual_seed(0)), edge_index), targets, mask)
    model = _model(width=64, conv="linear")
    assert PROXIES["naswot"](model, [varied]) > PROXIES["naswot"](model, [same])


@pytest.mark.parametrize("spelling, canonical", [
    ("SynFlow", "synflow"), ("grad-norm", "grad_norm"), ("GradNorm", "grad_norm"),
    ("NASWOT", "naswot"), ("snip", "snip"), ("GradSign", "gradsign"), ("Params", "params"),
])
def test_names_resolve_in_any_spelling(spelling, canonical):
    assert proxy_name(spelling) == canonical
    assert get_proxy(spelling) is PROXIES[canonical]


def test_unknown_proxy_lists_the_choices():
    with pytest.raises(ValueError, match=r"could not resolve zero-cost proxy 'jacob'.*synflow"):
        get_proxy("jacob")


@pytest.mark.parametrize("name", sorted(PROXIES))
def test_every_proxy_cites_its_paper(name):
    doc = PROXIES[name].__doc__
    assert doc and (name == "params" or any(year in doc for year in ("2019", "2020", "2021", "2022")))
