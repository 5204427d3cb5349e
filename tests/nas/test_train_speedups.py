"""The fixed-graph fast path of node-task training computes exactly what the plain PyG path
computes: same outputs and gradients with dropout off, the same dropout distribution on sparse
input features, reproducible training, graph-level tasks untouched."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.nn import functional as F

from nas.train import TrainConfig, train_model
from search_spaces.gnn import (
    AGGREGATING_CONVS, ATTENTION_CONVS, CONVS, GNN, GNNArchitecture, GNNSpace, LayerSpec,
)
from search_spaces.static_graph import StaticGraph, input_dropout, sparse_features

CASES = [
    (conv, aggregation)
    for conv in CONVS
    for aggregation in (("add", "mean", "max") if conv in AGGREGATING_CONVS else ("add",))
]


def _arch(conv: str, aggregation: str, width: int = 8, skip: str = "none", norm: str = "none",
          dropout: float = 0.0) -> GNNArchitecture:
    heads = 2 if conv in ATTENTION_CONVS else 1
    if conv in ATTENTION_CONVS:  # 8 channels per head: the sparse attention form's range
        width = max(width, 16)
    layer = LayerSpec(conv=conv, width=width, heads=heads, aggregation=aggregation, norm=norm,
                      dropout=dropout, activation="elu")
    return GNNArchitecture(layers=(layer, dataclasses.replace(layer, width=2 * width)), skip=skip)


@pytest.fixture
def sparse_graph():
    """7 nodes with 12 mostly-zero features, a duplicate edge, a self loop, an isolated node."""
    from torch_geometric.data import Data

    generator = torch.Generator().manual_seed(0)
    x = torch.rand(7, 12, generator=generator)
    x[x < 0.8] = 0.0  # ~20% non-zero: kept sparse
    edge_index = torch.tensor([[0, 1, 1, 2, 3, 4, 4, 5, 0, 2], [1, 0, 2, 1, 4, 3, 5, 4, 1, 2]])
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    masks = {f"{split}_mask": torch.tensor(bits, dtype=torch.bool) for split, bits in
             (("train", [1, 1, 1, 0, 0, 0, 0]), ("val", [0, 0, 0, 1, 1, 0, 0]),
              ("test", [0, 0, 0, 0, 0, 1, 1]))}
    return Data(x=x, edge_index=edge_index, y=y, **masks)


class _NodeTask:
    """The part of :class:`nas.tasks.Task` that training reads, around an inline graph."""

    level = "node"

    def __init__(self, data) -> None:  # noqa: ANN001
        self.data = data
        self.num_features, self.num_classes = data.num_features, int(data.y.max()) + 1


def _grads(model: torch.nn.Module) -> list[torch.Tensor]:
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in model.parameters()]


def _assert_same_function(model: GNN, x: torch.Tensor, edge_index: torch.Tensor) -> None:
    fast = model.fixed_graph_forward(x, edge_index)
    model.eval()
    torch.testing.assert_close(fast(), model(x, edge_index), rtol=1e-4, atol=1e-5)
    model.train()  # dropout is 0: training mode differs only through batch norm statistics
    reference = model(x, edge_index)
    reference.square().sum().backward()
    expected = _grads(model)
    model.zero_grad()
    out = fast()
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-5)
    out.square().sum().backward()
    for got, want in zip(_grads(model), expected):
        scale = max(float(want.abs().max()), 1.0)
        torch.testing.assert_close(got / scale, want / scale, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize(
    ("conv", "aggregation", "skip"),
    [(*case, ("none", "residual", "jk_cat")[i % 3]) for i, case in enumerate(CASES)],
)
def test_fast_path_equals_pyg_path_on_tiny_graph(sparse_graph, conv, aggregation, skip) -> None:
    torch.manual_seed(0)
    assert sparse_features(sparse_graph.x).layout == torch.sparse_csr
    model = GNN(_arch(conv, aggregation, skip=skip, norm="batch"), 12, 3)
    _assert_same_function(model, sparse_graph.x, sparse_graph.edge_index)


@pytest.mark.parametrize(("conv", "aggregation"), CASES)
def test_fast_path_equals_pyg_path_with_dense_features(tiny_graph, conv, aggregation) -> None:
    torch.manual_seed(0)
    assert sparse_features(tiny_graph.x).layout == torch.strided  # 23 of 24 entries non-zero
    model = GNN(_arch(conv, aggregation, norm="layer"), 4, 3)
    _assert_same_function(model, tiny_graph.x, tiny_graph.edge_index)


@pytest.fixture(scope="module")
def cora():
    from nas.tasks import load_task

    try:
        return load_task("cora").data
    except FileNotFoundError:
        pytest.skip("Cora raw files not found under METANAS_DATA")


@pytest.mark.parametrize(("conv", "aggregation"), CASES)
def test_fast_path_equals_pyg_path_on_cora(cora, conv, aggregation) -> None:
    torch.manual_seed(0)
    arch = _arch(conv, aggregation, width=8)
    model = GNN(dataclasses.replace(arch, layers=arch.layers[:1]), cora.num_features, 7)
    _assert_same_function(model, cora.x, cora.edge_index)


@pytest.mark.parametrize("p", [0.2, 0.5, 0.7])
@pytest.mark.parametrize("layout", ["sparse", "dense"])
def test_input_dropout_matches_torch_dropout_statistics(p: float, layout: str) -> None:
    torch.manual_seed(0)
    x = torch.rand(200, 50) + 0.5
    x[torch.rand(200, 50) < 0.9] = 0.0
    inputs = sparse_features(x) if layout == "sparse" else x
    assert (inputs.layout == torch.sparse_csr) == (layout == "sparse")
    nonzero = x != 0
    draws = 40
    kept_ours = kept_torch = 0.0
    for _ in range(draws):
        out = input_dropout(inputs, p, training=True)
        out = out.to_dense() if layout == "sparse" else out
        reference = F.dropout(x, p, training=True)
        assert torch.all(out[~nonzero] == 0)  # zeros stay zero
        kept = out != 0
        torch.testing.assert_close(out[kept], x[kept] / (1 - p))  # the 1/(1-p) scaling
        kept_ours += float(kept.sum()) / float(nonzero.sum()) / draws
        kept_torch += float((reference[nonzero] != 0).sum()) / float(nonzero.sum()) / draws
    # ~40k Bernoulli draws each: standard error of the keep rate < 0.003
    assert kept_ours == pytest.approx(1 - p, abs=0.015)
    assert kept_ours == pytest.approx(kept_torch, abs=0.02)


def test_input_dropout_mean_is_unbiased() -> None:
    torch.manual_seed(0)
    x = sparse_features(torch.eye(300) * 3.0)
    mean = sum(input_dropout(x, 0.6, training=True).to_dense() for _ in range(200)) / 200
    assert float(mean.diagonal().mean()) == pytest.approx(3.0, rel=0.03)


def test_sparse_input_dropout_is_identity_in_eval_mode_and_at_zero() -> None:
    x = sparse_features(torch.eye(6))
    assert input_dropout(x, 0.5, training=False) is x
    assert input_dropout(x, 0.0, training=True) is x


def test_sparse_features_keeps_dense_input_dense() -> None:
    assert sparse_features(torch.ones(4, 3)).layout == torch.strided
    assert sparse_features(torch.eye(8)).layout == torch.sparse_csr


def test_static_graph_rejects_unknown_kind(tiny_graph) -> None:
    with pytest.raises(ValueError, match="could not resolve propagation kind 'nope'"):
        StaticGraph(tiny_graph.edge_index, 6).matrix("nope")


def test_graph_level_models_have_no_fixed_graph_path() -> None:
    model = GNN(GNNArchitecture(), 4, 2, level="graph")
    with pytest.raises(ValueError, match="node-level"):
        model.fixed_graph_forward(torch.zeros(3, 4), torch.zeros(2, 0, dtype=torch.long))


@pytest.mark.parametrize("fixed_graph", [True, False])
def test_training_is_reproducible_with_a_seed(sparse_graph, fixed_graph: bool) -> None:
    arch = GNNSpace().sample(3)
    arch = dataclasses.replace(arch, layers=tuple(
        dataclasses.replace(layer, dropout=0.5) for layer in arch.layers))
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        model = GNN(arch, 12, 3)
        config = TrainConfig(epochs=15, patience=0, fixed_graph=fixed_graph)
        results.append(train_model(model, _NodeTask(sparse_graph), config))
    assert results[0].metrics == results[1].metrics
    assert results[0].history == results[1].history
    for key, value in results[0].state_dict.items():
        assert torch.equal(value, results[1].state_dict[key]), key


def test_fast_and_plain_training_agree_without_dropout(sparse_graph) -> None:
    arch = _arch("gcn", "add", skip="jk_cat")
    histories = []
    for fixed_graph in (True, False):
        torch.manual_seed(0)
        model = GNN(arch, 12, 3)
        config = TrainConfig(epochs=20, patience=0, fixed_graph=fixed_graph)
        result = train_model(model, _NodeTask(sparse_graph), config)
        histories.append((result.history, result.metrics["test_acc"]))
    assert histories[0] == histories[1]


def test_graph_task_training_does_not_use_the_fixed_graph_path(monkeypatch) -> None:
    from torch_geometric.data import Data

    graphs = [Data(x=torch.rand(4, 3), edge_index=torch.tensor([[0, 1, 2], [1, 2, 3]]),
                   y=torch.tensor([i % 2])) for i in range(8)]

    class Graphs(list):
        def __getitem__(self, index):  # noqa: ANN001, ANN204 - a tensor of indices, as PyG takes
            return [list.__getitem__(self, int(i)) for i in index]

    class GraphTask:
        level, num_features, num_classes = "graph", 3, 2
        dataset = Graphs(graphs)
        splits = {"train": torch.arange(4), "val": torch.arange(4, 6), "test": torch.arange(6, 8)}

    def forbidden(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("graph tasks must not use the fixed-graph path")

    monkeypatch.setattr(GNN, "fixed_graph_forward", forbidden)
    torch.manual_seed(0)
    result = train_model(GNN(GNNArchitecture(), 3, 2, level="graph"), GraphTask(),
                         TrainConfig(epochs=2, batch_size=2))
    assert result.epochs_run == 2


# NAS-Bench-Graph cells take the same fast path -------------------------------------------------

def _nasbench_cells() -> list[tuple[int, tuple[str, ...], int]]:
    """(pattern, ops, num_pre): every op three times over the nine link patterns, skip chains
    from the raw input, with and without a linear layer before the cell."""
    from search_spaces.nasbench_graph import LINK_PATTERNS, OPS

    cells = [
        (pattern, tuple(OPS[(3 * (pattern % 3) + i) % len(OPS)] for i in range(4)), pattern % 2)
        for pattern in range(len(LINK_PATTERNS))
    ]
    return cells + [(pattern, ("skip", "skip", "skip", "gin"), 0) for pattern in (0, 4, 8)]


def _nasbench_model(pattern: int, ops: tuple[str, ...], num_pre: int, dropout: float = 0.0):
    from search_spaces.nasbench_graph import (
        BENCHMARK_SETTINGS, NasBenchGraphArchitecture, NasBenchGraphNet,
    )

    setting = dataclasses.replace(BENCHMARK_SETTINGS["cora"], dim=8, dropout=dropout,
                                  num_pre=num_pre, num_pro=1 - num_pre)
    torch.manual_seed(0)
    return NasBenchGraphNet(NasBenchGraphArchitecture.from_pattern(pattern, ops), 12, 3, setting)


@pytest.mark.parametrize(("pattern", "ops", "num_pre"), _nasbench_cells())
def test_nasbench_graph_fast_path_equals_pyg_path(sparse_graph, pattern, ops, num_pre) -> None:
    model = _nasbench_model(pattern, ops, num_pre)
    _assert_same_function(model, sparse_graph.x, sparse_graph.edge_index)


def test_nasbench_graph_fast_path_drops_at_the_benchmarks_rates(sparse_graph, monkeypatch) -> None:
    """The raw input gets sparse-aware input dropout and hidden features plain dropout, both at
    the setting's rate (their distributions are tested above), only in training mode."""
    import search_spaces.nasbench_graph as nbg

    calls = []
    for name in ("input_dropout", "dropout"):
        original = getattr(nbg, name)
        monkeypatch.setattr(nbg, name, lambda x, p, *rest, _f=original, _n=name: (
            calls.append((_n, p, x.layout)), _f(x, p, *rest))[1])
    model = _nasbench_model(8, ("gcn", "sage", "gat", "fc"), 0, dropout=0.6)  # a chain: 3 hidden
    fast = model.fixed_graph_forward(sparse_graph.x, sparse_graph.edge_index)
    out = fast()
    assert ("input_dropout", 0.6, torch.sparse_csr) in calls
    assert [c for c in calls if c[0] == "dropout"] == [("dropout", 0.6, torch.strided)] * 3
    calls.clear()
    model.eval()
    fast()
    assert all(c[0] == "input_dropout" for c in calls)  # which returns its input in eval mode
    assert torch.isfinite(out).all() and out.shape == (7, 3)


def test_sparse_linear_weight_gradient_equals_dense_linear(sparse_graph) -> None:
    """The cached-transpose backward gives F.linear's gradients, after dropout too; a CSR
    matrix without a plan (built elsewhere) falls back to F.linear."""
    from search_spaces.static_graph import sparse_linear

    torch.manual_seed(0)
    x = sparse_features(sparse_graph.x)
    dropped = input_dropout(x, 0.5, training=True)
    foreign = sparse_graph.x.to_sparse_csr()
    for features in (x, dropped, foreign):
        weight = torch.randn(5, 12, requires_grad=True)
        bias = torch.randn(5, requires_grad=True)
        out = sparse_linear(features, weight, bias)
        grad = torch.randn_like(out)
        out.backward(grad)
        dense = features.to_dense()
        expected_w, expected_b = grad.t() @ dense, grad.sum(0)
        torch.testing.assert_close(out, dense @ weight.t() + bias)
        torch.testing.assert_close(weight.grad, expected_w)
        torch.testing.assert_close(bias.grad, expected_b)
    assert not torch.equal(dropped.to_dense(), x.to_dense())  # the plan followed new values


def _pyg_max_aggregation(x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
    from torch_geometric.utils import scatter

    return scatter(x[edge_index[0]], edge_index[1], 0, dim_size=x.size(0), reduce="max")


def test_sparse_max_aggregation_equals_pyg_scatter_max(sparse_graph) -> None:
    """Isolated node (row of zeros), duplicate edge and self loop included; after dropout the
    same structure gives the maximum of the new values."""
    torch.manual_seed(0)
    graph = StaticGraph(sparse_graph.edge_index, 7)
    x = sparse_features(sparse_graph.x)
    for features in (x, input_dropout(x, 0.5, training=True), input_dropout(x, 0.9, True)):
        out = graph.max_aggregate(features)
        assert out.layout == torch.sparse_csr
        expected = _pyg_max_aggregation(features.to_dense(), sparse_graph.edge_index)
        torch.testing.assert_close(out.to_dense(), expected, rtol=0, atol=0)
    assert graph.max_aggregate(x).to_dense()[6].abs().sum() == 0  # node 6 has no in-edge


def test_sparse_max_aggregation_declines_negative_or_dense_features(sparse_graph) -> None:
    graph = StaticGraph(sparse_graph.edge_index, 7)
    signed = sparse_graph.x.clone()
    signed[0, signed[0].nonzero()[0]] = -1.0  # a max over stored values would miss the zeros
    assert graph.max_aggregate(sparse_features(signed)) is None
    assert graph.max_aggregate(sparse_graph.x) is None


@pytest.mark.parametrize("conv", ["sage", "graph", "gin"])
def test_max_aggregation_with_signed_features_falls_back_to_pyg(sparse_graph, conv) -> None:
    torch.manual_seed(0)
    x = sparse_graph.x.clone()
    x[x > 0.9] *= -1.0
    model = GNN(_arch(conv, "max"), 12, 3)
    _assert_same_function(model, x, sparse_graph.edge_index)


def test_max_aggregation_plan_is_built_once_per_training(sparse_graph, monkeypatch) -> None:
    """The sparse path is the one taken, and its plan is reused across epochs and dropout."""
    from search_spaces import static_graph

    calls = []
    build = static_graph._max_plan
    monkeypatch.setattr(static_graph, "_max_plan", lambda *a: calls.append(1) or build(*a))
    arch = _arch("sage", "max", dropout=0.5)
    model = GNN(dataclasses.replace(arch, layers=arch.layers[:1]), 12, 3)
    forward = model.fixed_graph_forward(sparse_graph.x, sparse_graph.edge_index)
    outputs = [forward() for _ in range(3)]
    assert len(calls) == 1
    assert not torch.equal(outputs[0], outputs[1])  # dropout drew new masks each call
