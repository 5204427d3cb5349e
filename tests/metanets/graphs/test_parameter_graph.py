"""Parameter graphs: round trips, permutation symmetry, structure, batching and errors."""
from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn
from torch_geometric.data import Batch
from torch_geometric.nn import models as pyg_models
from torch_geometric.utils import to_scipy_sparse_matrix

import search_spaces
from metanets.graphs import (
    EdgeFeature,
    EdgeType,
    NodeFeature,
    NodeType,
    UnsupportedOperationError,
    UntraceableModuleError,
    load_parameter_graph,
    to_parameter_graph,
)

X_GRAPH = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
EDGE_INDEX = torch.tensor([[0, 1, 2, 3, 4, 5, 0], [1, 2, 3, 4, 5, 0, 3]])
BATCH = torch.tensor([0, 0, 0, 1, 1, 1])


# tiny networks -------------------------------------------------------------------------------
class ResNetish(nn.Module):
    """Stem, a residual block with a projection shortcut, grouped/depthwise/dilated convs."""

    def __init__(self, c: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, c, 7, stride=2, padding=3)  # 49 entries: chunked kernels
        self.bn = nn.BatchNorm2d(c)
        self.conv1 = nn.Conv2d(c, 2 * c, 3, padding=2, dilation=2, groups=2, bias=False)
        self.bn1 = nn.BatchNorm2d(2 * c)
        self.dw = nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c)
        self.gn = nn.GroupNorm(2, 2 * c)
        self.down = nn.Conv2d(c, 2 * c, 1)
        self.fc = nn.Linear(2 * c * 16, 3)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.bn(self.stem(x)))  # (B, c, 4, 4)
        h = self.gn(self.dw(torch.relu(self.bn1(self.conv1(x)))))
        h = torch.relu(h + self.down(x))
        return self.fc(torch.flatten(h, 1))  # flatten: channel x position neurons


class TinyTransformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 8)
        layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2)
        self.pre = nn.TransformerEncoderLayer(8, 4, 8, dropout=0.0, batch_first=True,
                                              norm_first=True)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, tokens: Tensor) -> Tensor:
        h = self.pre(self.encoder(self.embed(tokens)))
        h, _ = self.attn(h, h, h)
        return self.head(h.mean(1))


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2))


def cnn_bn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, stride=2), nn.BatchNorm2d(6), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3),
    )


def conv1d() -> nn.Module:
    return nn.Sequential(nn.Conv1d(2, 4, 5, padding=2), nn.BatchNorm1d(4), nn.ReLU(),
                         nn.Conv1d(4, 4, 3, groups=4), nn.Flatten(), nn.Linear(28, 2))


class GinOfOneLinear(nn.Module):
    """A GINConv whose ``nn`` is a bare Linear (NAS-Bench-Graph's gin), not an MLP."""

    def __init__(self) -> None:
        super().__init__()
        from torch_geometric.nn import GINConv

        self.conv = GINConv(nn.Linear(5, 8), train_eps=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.head(self.conv(x, edge_index).relu())


IMAGE = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
NETWORKS: dict[str, tuple[Callable[[], nn.Module], tuple[Tensor, ...]]] = {
    "mlp": (mlp, (torch.randn(3, 4),)),
    "cnn_bn": (cnn_bn, (IMAGE,)),
    "resnet": (ResNetish, (IMAGE,)),
    "conv1d": (conv1d, (torch.randn(2, 2, 9),)),
    "transformer": (TinyTransformer, (torch.randint(0, 11, (2, 5)),)),
    "pyg_gcn": (lambda: pyg_models.GCN(5, 8, 2, 3, norm="batch_norm"), (X_GRAPH, EDGE_INDEX)),
    "pyg_sage": (lambda: pyg_models.GraphSAGE(5, 8, 2, 3, jk="cat"), (X_GRAPH, EDGE_INDEX)),
    "pyg_gin": (lambda: pyg_models.GIN(5, 8, 2, 3), (X_GRAPH, EDGE_INDEX)),
    "gin_of_one_linear": (GinOfOneLinear, (X_GRAPH, EDGE_INDEX)),
    "pyg_gat": (lambda: pyg_models.GAT(5, 8, 2, 3, heads=2), (X_GRAPH, EDGE_INDEX)),
    "pyg_gatv2": (lambda: pyg_models.GAT(5, 8, 2, 3, heads=4, v2=True), (X_GRAPH, EDGE_INDEX)),
    "pyg_mlp": (lambda: pyg_models.MLP([5, 8, 3]), (X_GRAPH,)),
}


def _build(factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    torch.manual_seed(seed)
    module = factory()
    with torch.no_grad():  # non-default statistics, so a missed buffer shows
        for name, tensor in module.state_dict().items():
            if "running_mean" in name:
                tensor.uniform_(-0.2, 0.2)
            elif "running_var" in name:
                tensor.uniform_(0.5, 1.5)
            elif "num_batches" in name:
                tensor.fill_(seed + 3)
    return module.eval()


def _same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]) for k in sa)


def _round_trip(factory: Callable[[], nn.Module], inputs: tuple[Tensor, ...]):  # noqa: ANN202
    source, fresh = _build(factory, 0), _build(factory, 1)
    assert not _same_state(source, fresh)  # the load below has something to do
    data = to_parameter_graph(source, inputs)
    load_parameter_graph(fresh, data)
    assert _same_state(source, fresh)
    assert torch.equal(source(*inputs), fresh(*inputs))
    return data


def _connected(data) -> bool:  # noqa: ANN001
    from scipy.sparse.csgraph import connected_components

    adjacency = to_scipy_sparse_matrix(data.edge_index, num_nodes=data.num_nodes)
    return connected_components(adjacency, directed=True, connection="weak")[0] == 1


# round trips ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(NETWORKS))
def test_round_trip(name: str) -> None:
    _round_trip(*NETWORKS[name])


@pytest.mark.parametrize("seed", range(100))
def test_round_trip_gnn_space(seed: int) -> None:
    space = search_spaces.get_space("gnn")
    arch, level = space.sample(seed), ("node", "graph")[seed % 2]
    data = _round_trip(lambda: space.build(arch, 5, 3, level), (X_GRAPH, EDGE_INDEX, BATCH))
    assert _connected(data)


def test_edited_features_change_the_module() -> None:
    source = _build(mlp, 0)
    data = to_parameter_graph(source, NETWORKS["mlp"][1])
    data.x[:, NodeFeature.BIAS] += 1.0
    data.edge_attr[:, EdgeFeature.WEIGHT] *= 2.0
    target = load_parameter_graph(_build(mlp, 1), data)
    assert torch.equal(target[0].bias, source[0].bias + 1.0)
    assert torch.equal(target[0].weight, source[0].weight * 2.0)


# structure -----------------------------------------------------------------------------------
def _mark_entries(module: nn.Module) -> Tensor:
    """Give every float state entry a distinct value >= 2; return all entries."""
    values, start = [], 2.0
    with torch.no_grad():
        for tensor in module.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.arange(tensor.numel()).view_as(tensor) + start)
                start += tensor.numel()
            values.append(tensor.reshape(-1).float())
    return torch.cat(values)


def _graph_values(data) -> Tensor:  # noqa: ANN001
    weights = data.edge_attr[~_weight_free(data)]
    positions = torch.arange(weights.shape[1])
    mask = positions < data.edge_kernel_len[~_weight_free(data)].long().unsqueeze(1)
    nodes = data.x[data.x != 0]
    return torch.cat([weights[mask], nodes, data.scalars.float()])


def _weight_free(data) -> Tensor:  # noqa: ANN001
    return (data.edge_type == EdgeType.IDENTITY) | (data.edge_type == EdgeType.ATTENTION)


@pytest.mark.parametrize("name", list(NETWORKS))
def test_every_parameter_once(name: str) -> None:
    factory, inputs = NETWORKS[name]
    module = _build(factory, 0)
    expected = _mark_entries(module)
    found = _graph_values(to_parameter_graph(module, inputs))
    assert torch.equal(found.sort().values, expected.sort().values)


@pytest.mark.parametrize("name", list(NETWORKS))
def test_connected(name: str) -> None:
    factory, inputs = NETWORKS[name]
    assert _connected(to_parameter_graph(_build(factory, 0), inputs))


def test_disconnected_graph_is_detected() -> None:
    data = to_parameter_graph(_build(mlp, 0), NETWORKS["mlp"][1])
    assert not _connected(data.edge_subgraph(data.edge_layer != 2))  # drop the middle layer


def test_input_used_twice_has_one_set_of_neurons() -> None:
    class Skip(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.drop = nn.Dropout(0.1)

        def forward(self, x: Tensor) -> Tensor:
            return self.lin(self.drop(x)) + x

    data = to_parameter_graph(Skip(), (torch.randn(2, 4),))
    assert int((data.node_type == NodeType.INPUT).sum()) == 4


def test_neurons_and_kernels() -> None:
    net = _build(cnn_bn, 0)
    data = to_parameter_graph(net, (IMAGE,))
    types = data.node_type.long()
    assert (types == NodeType.INPUT).sum() == 3 and (types == NodeType.OUTPUT).sum() == 3
    assert (types == NodeType.NORM).sum() == 4 + 6
    conv = data.edge_type == EdgeType.CONV
    assert conv.sum() == 3 * 4 + 4 * 6
    first = torch.nonzero(conv)[0, 0]
    assert torch.equal(data.edge_attr[first], net[0].weight[0, 0].reshape(-1))
    assert data.layer_kernels[int(data.edge_layer[first])] == (3, 3)


def test_large_kernels_are_chunked() -> None:
    conv = nn.Conv2d(1, 2, 7)
    data = to_parameter_graph(conv, (torch.randn(1, 1, 9, 9),), kernel_width=9)
    assert data.num_edges == 2 * 6  # ceil(49 / 9) chunks per channel pair
    assert data.edge_kernel_pos[:6].tolist() == [0, 9, 18, 27, 36, 45]
    assert data.edge_kernel_len[:6].tolist() == [9, 9, 9, 9, 9, 4]
    pos = int(data.edge_kernel_pos[7])  # output 1, chunk 1
    assert torch.equal(data.edge_attr[7], conv.weight[1, 0].reshape(-1)[pos:pos + 9])


@pytest.mark.parametrize("width", [1, 4, 9, 49])
def test_any_kernel_width_round_trips(width: int) -> None:
    source, fresh = _build(ResNetish, 0), _build(ResNetish, 1)
    data = to_parameter_graph(source, (IMAGE,), kernel_width=width)
    assert data.edge_attr.shape[1] == width
    assert _same_state(source, load_parameter_graph(fresh, data))


def test_flatten_spreads_channels_over_positions() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.Flatten(), nn.Linear(2 * 9, 1))
    data = to_parameter_graph(net, (torch.randn(1, 1, 3, 3),))
    positions = torch.nonzero(data.node_type == NodeType.POSITION).view(-1)
    assert len(positions) == 18
    into = torch.isin(data.edge_index[1], positions) & (data.edge_type == EdgeType.IDENTITY)
    channel_of_position = data.edge_index[0, into] - data.edge_index[0, into].min()
    assert channel_of_position.tolist() == [0] * 9 + [1] * 9  # (C, H, W) flatten order


def test_attention_heads() -> None:
    net = nn.MultiheadAttention(8, 4, batch_first=True)
    x = torch.randn(1, 3, 8)
    data = to_parameter_graph(net, (x, x, x))
    query = data.node_type == NodeType.QUERY
    assert data.node_head[query].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    gat = to_parameter_graph(pyg_models.GAT(5, 6, 1, heads=3), (X_GRAPH, EDGE_INDEX))
    message = gat.edge_type == EdgeType.MESSAGE
    assert sorted(set(gat.edge_head[message].tolist())) == [0, 1, 2]


def test_batch_of_architectures() -> None:
    names = ["mlp", "resnet", "transformer", "pyg_gat"]
    modules = {n: _build(NETWORKS[n][0], 0) for n in names}
    graphs = [to_parameter_graph(modules[n], NETWORKS[n][1]) for n in names]
    batch = Batch.from_data_list(graphs)
    assert batch.num_graphs == 4 and batch.num_nodes == sum(g.num_nodes for g in graphs)
    for i, name in enumerate(names):
        fresh = load_parameter_graph(_build(NETWORKS[name][0], 1), batch.get_example(i))
        assert _same_state(modules[name], fresh)


# symmetry ------------------------------------------------------------------------------------
def _permute_mlp(net: nn.Module, perm: Tensor, couple: bool) -> nn.Module:
    with torch.no_grad():
        net[0].weight.copy_(net[0].weight[perm])
        net[0].bias.copy_(net[0].bias[perm])
        if couple:
            net[2].weight.copy_(net[2].weight[:, perm])
    return net


def _permute_cnn(net: nn.Module, perm: Tensor, couple: bool) -> nn.Module:
    with torch.no_grad():
        for tensor in (net[0].weight, net[0].bias, net[1].weight, net[1].bias,
                       net[1].running_mean, net[1].running_var):
            tensor.copy_(tensor[perm])
        if couple:
            net[4].weight.copy_(net[4].weight[:, perm])
    return net


def _node_map(data, layers: list[int], perm: Tensor) -> Tensor:  # noqa: ANN001
    """New node id -> old node id when the neurons of ``layers`` are permuted by ``perm``."""
    mapping = torch.arange(data.num_nodes)
    for layer in layers:
        nodes = torch.nonzero(data.node_layer == layer).view(-1)
        mapping[nodes] = nodes[perm]
    return mapping


def _graphs_correspond(old, new, mapping: Tensor) -> bool:  # noqa: ANN001
    if not torch.equal(new.x, old.x[mapping]):
        return False
    n = old.num_nodes

    def canonical(index: Tensor, attr: Tensor) -> tuple[Tensor, Tensor]:
        order = torch.argsort(index[0] * n + index[1], stable=True)
        return index[:, order], attr[order]

    index_new, attr_new = canonical(mapping[new.edge_index], new.edge_attr)
    index_old, attr_old = canonical(old.edge_index, old.edge_attr)
    return torch.equal(index_new, index_old) and torch.equal(attr_new, attr_old)


@pytest.mark.parametrize("couple", [True, False])
@pytest.mark.parametrize(("factory", "permute", "layers", "width", "inputs"), [
    (mlp, _permute_mlp, [1], 6, (torch.randn(3, 4),)),
    (cnn_bn, _permute_cnn, [1, 2], 4, (IMAGE,)),
])
def test_permutation_symmetry(  # noqa: ANN001
        factory, permute, layers, width, inputs, couple) -> None:
    net = _build(factory, 0)
    perm = torch.randperm(width, generator=torch.Generator().manual_seed(3))
    old = to_parameter_graph(net, inputs)
    before = net(*inputs)
    new = to_parameter_graph(permute(net, perm, couple), inputs)
    same_function = torch.allclose(net(*inputs), before, atol=1e-6)
    corresponds = _graphs_correspond(old, new, _node_map(old, layers, perm))
    assert same_function == couple and corresponds == couple


# errors --------------------------------------------------------------------------------------
class Blocks(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.blocks = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.ReLU(), inner))

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(x)


class FeatureSum(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.sum(-1, keepdim=True)


class Branchy(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x if x.sum() > 0 else -x


class Scale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(4))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale if x.sum() > 0 else x


def test_unsupported_module_names_op_path_and_list() -> None:
    net = Blocks(nn.GRUCell(4, 4))
    with pytest.raises(UnsupportedOperationError, match=r"'GRUCell' at 'blocks.1.1'.*'Linear'"):
        to_parameter_graph(net, (torch.randn(2, 4),))


def test_unsupported_function_names_op_and_path() -> None:
    with pytest.raises(UnsupportedOperationError, match=r"Tensor.sum' at 'blocks.1.1'"):
        to_parameter_graph(Blocks(FeatureSum()), (torch.randn(2, 4),))


def test_untraceable_module_explains_leaves() -> None:
    with pytest.raises(UntraceableModuleError, match="leaf_modules="):
        to_parameter_graph(Blocks(Branchy()), (torch.randn(2, 4),))


def test_leaf_modules_make_it_convert() -> None:
    data = to_parameter_graph(Blocks(Branchy()), (torch.randn(2, 4),), leaf_modules=(Branchy,))
    assert data.num_nodes == 8


def test_handlers_convert_parametric_leaves() -> None:
    def scale(walker, node, module, path):  # noqa: ANN001, ANN202
        group = walker.group(node.args[0], -1, node)
        walker.builder.node_param(f"{path}.scale", module.scale, group.nodes,
                                  NodeFeature.NORM_WEIGHT)
        return group

    net = Blocks(Scale())
    with pytest.raises(UnsupportedOperationError, match="'Scale'"):
        to_parameter_graph(net, (torch.randn(2, 4),), leaf_modules=(Scale,))
    data = to_parameter_graph(net, (torch.randn(2, 4),), handlers={Scale: scale})
    assert torch.equal(data.x[4:, NodeFeature.NORM_WEIGHT], torch.ones(4))


def test_shared_weights_are_refused() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x: Tensor) -> Tensor:
            return self.lin(self.lin(x))

    with pytest.raises(UnsupportedOperationError, match="called twice"):
        to_parameter_graph(Twice(), (torch.randn(2, 4),))


def test_loading_into_a_module_of_another_architecture_is_refused() -> None:
    """The flat slices were copied anyway: 8 of 9 rows of each layer got scrambled weights."""
    from metanets.graphs import load_parameter_graph, to_parameter_graph

    torch.manual_seed(0)
    source = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    target = nn.Sequential(nn.Linear(4, 9), nn.ReLU(), nn.Linear(9, 2))
    before = {k: v.clone() for k, v in target.state_dict().items()}
    graph = to_parameter_graph(source, (torch.randn(1, 4),))
    with pytest.raises(ValueError, match=r"not of the architecture .*0.weight \(32 entries in the graph, 36 in the module\)"):
        load_parameter_graph(target, graph)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())
