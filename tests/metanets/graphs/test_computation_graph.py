"""Computation graphs: op nodes, data-flow and shortest-path virtual edges, batching, errors."""
from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torch_geometric.data import Batch

import search_spaces
from metanets.graphs import (
    OP_TYPES,
    OpEdgeFeature,
    OpFeature,
    UnsupportedOperationError,
    to_computation_graph,
)


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.skip = nn.Conv2d(3, 4, 1, bias=False)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.bn(self.conv(x))) + self.skip(x)
        return self.fc(h.mean((2, 3)))


def _ops(data) -> list[str]:  # noqa: ANN001
    return [OP_TYPES[i] for i in data.op_type]


def test_nodes_are_operations_with_weight_shapes() -> None:
    data = to_computation_graph(Residual(), (torch.randn(1, 3, 5, 5),))
    assert _ops(data) == ["input", "Conv2d", "BatchNorm2d", "torch.relu", "Conv2d",
                          "operator.add", "Tensor.mean", "Linear", "output"]
    conv = data.x[1]
    assert conv[OpFeature.OUT_DIM] == 4 and conv[OpFeature.IN_DIM] == 3
    assert conv[OpFeature.KERNEL_H] == conv[OpFeature.KERNEL_W] == 3
    assert conv[OpFeature.HAS_BIAS] == 1 and data.x[4, OpFeature.HAS_BIAS] == 0
    assert data.x[:, OpFeature.NUM_PARAMS].sum() == sum(
        p.numel() for p in Residual().parameters())
    assert data.param_names[2] == ["bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
                                   "bn.num_batches_tracked"]


@pytest.mark.parametrize("max_distance", [1, 2, 50])
def test_virtual_edges_follow_shortest_paths(max_distance: int) -> None:
    data = to_computation_graph(Residual(), (torch.randn(1, 3, 5, 5),), max_distance=max_distance)
    distance = data.edge_attr[:, OpEdgeFeature.DISTANCE]
    flow = data.edge_index[:, distance == 1].t().tolist()
    assert [0, 1] in flow and [0, 4] in flow and [4, 5] in flow and len(flow) == 9
    assert distance.max() == min(max_distance, 6)  # input -> conv -> bn -> relu -> add ...
    pairs = {tuple(e) for e in data.edge_index.t().tolist()}
    assert len(pairs) == data.num_edges  # one edge per pair, at its shortest distance
    if max_distance >= 2:
        skip_path = data.edge_index[:, distance == 2].t().tolist()
        assert [0, 5] in skip_path  # via the 1x1 skip, shorter than via conv -> bn -> relu


def test_gnn_space_graphs_batch() -> None:
    space = search_spaces.get_space("gnn")
    x, edge_index = torch.randn(4, 5), torch.tensor([[0, 1, 2], [1, 2, 3]])
    graphs = [to_computation_graph(space.build(space.sample(seed), 5, 3), (x, edge_index))
              for seed in range(5)]
    batch = Batch.from_data_list(graphs)
    assert batch.num_graphs == 5 and batch.x.shape[1] == len(OpFeature)
    assert all("output" in _ops(g) for g in graphs)


def test_unsupported_op_names_it() -> None:
    net = nn.Sequential(nn.Linear(3, 3), nn.Sequential(nn.LSTMCell(3, 3)))
    with pytest.raises(UnsupportedOperationError, match=r"'LSTMCell' at '1.0'"):
        to_computation_graph(net, (torch.randn(2, 3),))
