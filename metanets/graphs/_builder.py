"""Accumulates a parameter graph: node groups, lazily materialised edge blocks, and the map from
every graph entry back to its ``(state_dict key, flat index)``.

Edges are recorded as blocks and written once into preallocated tensors by :meth:`finish`, so
converting a network costs one pass over its weights and no concatenation copies.
"""
from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import torch
from torch import Tensor
from torch_geometric.data import Data

from metanets.graphs.features import EdgeFeature, EdgeType, NodeFeature, NodeType

INDEX_DTYPE = torch.int16   # node_layer, node_head, edge_layer, edge_head, edge_kernel_pos
TYPE_DTYPE = torch.uint8    # node_type, edge_type, edge_kernel_len


class ParamSlot(NamedTuple):
    """Where the flat entries ``[offset, offset + numel)`` of a state_dict tensor live.

    ``where`` is ``"edge"`` (rows ``[start, start + count)`` of ``edge_attr``, ``kernel``
    entries per (input, output) pair in ``count / (numel / kernel)`` chunks), ``"node"`` (rows
    ``[start, start + numel)`` of ``x`` column ``column``) or ``"scalar"`` (``scalars[start]``).
    """

    name: str
    where: str
    start: int
    count: int
    offset: int
    numel: int
    kernel: int = 1
    column: int = -1


@dataclasses.dataclass
class DenseBlock:
    """Edges of a weight tensor ``(*rows, *kernel)``: one per row entry and kernel chunk.

    ``in_axis`` / ``out_axis`` index the input / output neuron along the row dims; ``head_axis``
    (optional) gives ``edge_head``; with ``groups > 1`` outputs see their group's inputs only.
    """

    weight: Tensor
    src: Tensor              # (in,) node ids of the input neurons
    dst: Tensor              # (out,) node ids of the output neurons
    in_axis: int
    out_axis: int
    kernel_dims: int
    edge_type: EdgeType
    layer: int
    width: int
    groups: int = 1
    head: int | str | None = None   # constant, "src", "dst", "axis" (head_axis) or None
    head_axis: int = -1

    @property
    def row_shape(self) -> tuple[int, ...]:
        return tuple(self.weight.shape[: self.weight.dim() - self.kernel_dims])

    @property
    def kernel(self) -> int:
        return math.prod(self.weight.shape[self.weight.dim() - self.kernel_dims:])

    @property
    def chunks(self) -> int:
        return -(-self.kernel // self.width)

    @property
    def count(self) -> int:
        return math.prod(self.row_shape) * self.chunks

    def _axis_index(self, axis: int) -> Tensor:
        shape = self.row_shape
        view = [1] * len(shape)
        view[axis] = shape[axis]
        return torch.arange(shape[axis]).view(view).expand(shape).reshape(-1)

    def fill(self, out: _EdgeViews, node_head: Tensor) -> None:
        rows, k, chunks, width = math.prod(self.row_shape), self.kernel, self.chunks, self.width
        attr = out.attr.view(rows, chunks * width)
        attr[:, :k] = self.weight.detach().reshape(rows, k)
        attr[:, k:] = 0
        if chunks > 1:
            pos = (torch.arange(chunks) * width).repeat(rows)
            out.kernel_pos.copy_(pos)
            out.kernel_len.copy_((k - pos).clamp(max=width))
        else:
            out.kernel_pos.zero_()
            out.kernel_len.fill_(k)
        if self.in_axis == 1 and self.out_axis == 0 and len(self.row_shape) == 2:
            self._fill_index_fast(out.index, chunks)
        else:
            self._fill_index(out.index, chunks)
        out.fill_meta(self.edge_type, self.layer)
        self._fill_heads(out, node_head, chunks)

    def _fill_index_fast(self, index: Tensor, chunks: int) -> None:
        """``(out, in)`` rows (Linear, Conv): broadcast copies, no gathers."""
        o, i = self.row_shape
        g = self.groups
        src = self.src.view(g, 1, i, 1).expand(g, o // g, i, chunks)
        index[0].view(g, o // g, i, chunks).copy_(src)
        index[1].view(o, i, chunks).copy_(self.dst.view(o, 1, 1).expand(o, i, chunks))

    def _fill_index(self, index: Tensor, chunks: int) -> None:
        i, o = self._axis_index(self.in_axis), self._axis_index(self.out_axis)
        if self.groups > 1:
            i = i + (o // (len(self.dst) // self.groups)) * self.weight.shape[self.in_axis]
        index[0].view(-1, chunks).copy_(self.src[i].unsqueeze(1).expand(-1, chunks))
        index[1].view(-1, chunks).copy_(self.dst[o].unsqueeze(1).expand(-1, chunks))

    def _fill_heads(self, out: _EdgeViews, node_head: Tensor, chunks: int) -> None:
        if self.head is None or isinstance(self.head, int):
            out.head.fill_(-1 if self.head is None else self.head)
        elif self.head == "axis":
            heads = self._axis_index(self.head_axis)
            out.head.view(-1, chunks).copy_(heads.unsqueeze(1).expand(-1, chunks))
        else:
            out.head.copy_(node_head[out.index[0 if self.head == "src" else 1]])

@dataclasses.dataclass
class IdentityBlock:
    """Weight-free edges ``src[j] -> dst[j]`` with a constant weight."""

    src: Tensor
    dst: Tensor
    edge_type: EdgeType
    layer: int
    weight: float = 1.0

    @property
    def count(self) -> int:
        return len(self.src)

    def fill(self, out: _EdgeViews, node_head: Tensor) -> None:  # noqa: ARG002
        out.index[0], out.index[1] = self.src, self.dst
        out.attr.zero_()
        out.attr[:, EdgeFeature.WEIGHT] = self.weight
        out.kernel_pos.zero_()
        out.kernel_len.fill_(1)
        out.fill_meta(self.edge_type, self.layer)
        out.head.fill_(-1)


@dataclasses.dataclass
class _EdgeViews:
    """Slices ``[start, start + count)`` of the final edge tensors."""

    index: Tensor
    attr: Tensor
    kernel_pos: Tensor
    kernel_len: Tensor
    type: Tensor
    layer: Tensor
    head: Tensor

    def fill_meta(self, edge_type: EdgeType, layer: int) -> None:
        self.type.fill_(int(edge_type))
        self.layer.fill_(layer)


class GraphBuilder:
    """Mutable state of one conversion (see the module docstring).

    Args:
        kernel_width: columns of ``edge_attr``; kernels with more entries are chunked.
        dtype: dtype of ``x`` and ``edge_attr`` (the network's parameter dtype).
    """

    def __init__(self, kernel_width: int = 9, dtype: torch.dtype = torch.float32) -> None:
        self.kernel_width, self.dtype = kernel_width, dtype
        self.num_nodes = 0
        self._node_meta: list[tuple[int, NodeType, int, Tensor | int]] = []
        self._node_values: list[tuple[Tensor, int, Tensor]] = []
        self._blocks: list[DenseBlock | IdentityBlock] = []
        self.num_edges = 0
        self.slots: list[ParamSlot] = []
        self._scalars: list[float] = []
        self.layer_names: list[str] = ["input"]
        self.layer_kernels: list[tuple[int, ...]] = [()]

    # layers and nodes ------------------------------------------------------------------------
    def new_layer(self, name: str, kernel: tuple[int, ...] = ()) -> int:
        """Open a layer (an operation that creates neurons); returns its index."""
        self.layer_names.append(name.lstrip(".:"))
        self.layer_kernels.append(tuple(kernel))
        return len(self.layer_names) - 1

    def add_nodes(
        self, count: int, node_type: NodeType, layer: int, head: Tensor | int = -1
    ) -> Tensor:
        """``count`` new neurons; returns their (contiguous) ids."""
        start = self.num_nodes
        self.num_nodes += count
        self._node_meta.append((count, node_type, layer, head))
        return torch.arange(start, start + count)

    def set_node_type(self, nodes: Tensor, node_type: NodeType) -> None:
        self._node_values.append((nodes, -1, torch.full((len(nodes),), float(node_type))))

    # parameters ------------------------------------------------------------------------------
    def node_param(self, name: str, tensor: Tensor, nodes: Tensor, column: NodeFeature,
                   offset: int = 0) -> None:
        """Write a per-neuron parameter or buffer (``tensor.numel() == len(nodes)``; a slice of
        the state_dict entry ``name`` from flat ``offset`` on)."""
        name, flat = name.lstrip("."), tensor.detach().reshape(-1)
        if flat.numel() != len(nodes) or not _contiguous(nodes):
            raise ValueError(f"{name}: {flat.numel()} values for {len(nodes)} neurons")
        self._node_values.append((nodes, int(column), flat))
        self.slots.append(ParamSlot(name, "node", int(nodes[0]), len(nodes), offset, flat.numel(),
                                    column=int(column)))

    def dense(self, name: str, block: DenseBlock, offset: int = 0) -> None:
        """Record the edges of a weight (``block.weight`` = entries from ``offset`` on)."""
        self.slots.append(ParamSlot(name.lstrip("."), "edge", self.num_edges, block.count, offset,
                                    block.weight.numel(), kernel=block.kernel))
        self._add_block(block)

    def identity(self, src: Tensor, dst: Tensor, edge_type: EdgeType, layer: int,
                 weight: float = 1.0) -> None:
        self._add_block(IdentityBlock(src, dst, edge_type, layer, weight))

    def scalar(self, name: str, tensor: Tensor) -> None:
        """A per-layer scalar (stored exactly in float64)."""
        self.slots.append(ParamSlot(name.lstrip("."), "scalar", len(self._scalars), 1, 0, 1))
        self._scalars.append(tensor.detach().reshape(()).item())

    def _add_block(self, block: DenseBlock | IdentityBlock) -> None:
        self._blocks.append(block)
        self.num_edges += block.count

    # output ----------------------------------------------------------------------------------
    def finish(self) -> Data:
        node_type, node_layer, node_head = self._node_tensors()
        x = torch.zeros(self.num_nodes, len(NodeFeature), dtype=self.dtype)
        for nodes, column, values in self._node_values:
            if column < 0:
                node_type[nodes] = values.to(TYPE_DTYPE)
            else:
                x[nodes, column] = values.to(self.dtype)
        data = Data(x=x, node_type=node_type, node_layer=node_layer, node_head=node_head,
                    num_nodes=self.num_nodes)
        self._fill_edges(data, node_head.long())
        data.scalars = torch.tensor(self._scalars, dtype=torch.float64)
        data.param_slots = list(self.slots)
        data.layer_names = list(self.layer_names)
        data.layer_kernels = list(self.layer_kernels)
        return data

    def _node_tensors(self) -> tuple[Tensor, Tensor, Tensor]:
        node_type = torch.empty(self.num_nodes, dtype=TYPE_DTYPE)
        node_layer = torch.empty(self.num_nodes, dtype=INDEX_DTYPE)
        node_head = torch.empty(self.num_nodes, dtype=INDEX_DTYPE)
        start = 0
        for count, kind, layer, head in self._node_meta:
            node_type[start:start + count] = int(kind)
            node_layer[start:start + count] = layer
            node_head[start:start + count] = head
            start += count
        return node_type, node_layer, node_head

    def _fill_edges(self, data: Data, node_head: Tensor) -> None:
        e, w = self.num_edges, self.kernel_width
        data.edge_index = torch.empty(2, e, dtype=torch.long)
        data.edge_attr = torch.empty(e, w, dtype=self.dtype)  # every block writes all columns
        data.edge_kernel_pos = torch.empty(e, dtype=INDEX_DTYPE)
        data.edge_kernel_len = torch.empty(e, dtype=TYPE_DTYPE)
        data.edge_type = torch.empty(e, dtype=TYPE_DTYPE)
        data.edge_layer = torch.empty(e, dtype=INDEX_DTYPE)
        data.edge_head = torch.empty(e, dtype=INDEX_DTYPE)
        start = 0
        for block in self._blocks:
            stop = start + block.count
            block.fill(_EdgeViews(
                data.edge_index[:, start:stop], data.edge_attr[start:stop],
                data.edge_kernel_pos[start:stop], data.edge_kernel_len[start:stop],
                data.edge_type[start:stop], data.edge_layer[start:stop],
                data.edge_head[start:stop]), node_head)
            start = stop


def _contiguous(nodes: Tensor) -> bool:
    return len(nodes) == 0 or int(nodes[-1]) - int(nodes[0]) + 1 == len(nodes) and bool(
        (nodes[1:] > nodes[:-1]).all())
