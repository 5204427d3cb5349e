"""Handlers of the PyG convolutions of our GNN space (leaves: ``MessagePassing`` cannot be
traced inside). Neighbour weights are MESSAGE edges, self weights ROOT edges, polynomial filter
weights HOP edges with their order in ``edge_head``; attention convs get QUERY / KEY / VALUE
neurons with ``node_head`` like ``nn.MultiheadAttention``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, fx, nn

from metanets.graphs._builder import DenseBlock, GraphBuilder
from metanets.graphs._torch_layers import bias, dense_edges, linear_nodes, norm_nodes
from metanets.graphs._values import Group, Value, shape_of
from metanets.graphs.errors import UnsupportedOperationError
from metanets.graphs.features import EdgeType, NodeFeature, NodeType

if TYPE_CHECKING:
    from metanets.graphs.parameter_graph import ParameterGraphWalker


def _input(w: ParameterGraphWalker, node: fx.Node, path: str) -> Tensor:
    if isinstance(node.args[0], (tuple, list)):
        raise UnsupportedOperationError(
            str(node.target), path, w.supported(), "bipartite (tuple) inputs")
    return w.group(node.args[0], -1, node).nodes


def _lins(b: GraphBuilder, m: nn.Module, path: str, parts: dict[str, EdgeType], src: Tensor,
          out: Tensor, layer: int, heads: dict[str, int] | None = None) -> None:
    """Weights of sub-linears ``parts`` (name -> edge type) from ``src`` to ``out``."""
    for name, edge_type in parts.items():
        lin = m.get_submodule(name)
        head = (heads or {}).get(name)
        dense_edges(b, f"{path}.{name}.weight", lin.weight, src, out, edge_type, layer, head)
        bias(b, f"{path}.{name}.bias", getattr(lin, "bias", None), out)


def _simple(parts: Callable[[nn.Module], dict[str, EdgeType]], hops: bool = False
            ) -> Callable[..., Value]:
    """A conv whose sub-linears all map the input to the output neurons (GCN, SAGE, ...)."""
    def handler(w: ParameterGraphWalker, node: fx.Node, m: nn.Module, path: str) -> Value:
        src, b = _input(w, node, path), w.builder
        layer = b.new_layer(path)
        out = b.add_nodes(m.out_channels, NodeType.HIDDEN, layer)
        named = parts(m)
        heads = {name: i for i, name in enumerate(named)} if hops else None
        _lins(b, m, path, named, src, out, layer, heads)
        bias(b, f"{path}.bias", getattr(m, "bias", None), out)
        return Group(out, 1)

    return handler


def _root(m: nn.Module, neighbour: str, root: str) -> dict[str, EdgeType]:
    parts = {neighbour: EdgeType.MESSAGE}
    if getattr(m, root, None) is not None:
        parts[root] = EdgeType.ROOT
    return parts


def gin(w: ParameterGraphWalker, node: fx.Node, m: nn.Module, path: str) -> Value:
    """GIN: ``eps`` as a scalar; its MLP converts like any network, on the input neurons."""
    src = _input(w, node, path)
    w.builder.scalar(f"{path}.eps", m.eps)
    example = torch.zeros(shape_of(node.args[0]))
    return w.walk_submodule(m.nn, f"{path}.nn", [Group(src, 1)], [example])


def gat(w: ParameterGraphWalker, node: fx.Node, m: nn.Module, path: str) -> Value:
    """GAT: VALUE neurons per head carry the attention vectors; heads concatenate or average."""
    src, b = _input(w, node, path), w.builder
    layer = b.new_layer(path)
    h, c = m.heads, m.out_channels
    value = b.add_nodes(h * c, NodeType.VALUE, layer, torch.arange(h * c) // c)
    _lins(b, m, path, {"lin": EdgeType.MESSAGE}, src, value, layer, {"lin": "dst"})
    bias(b, f"{path}.att_src", m.att_src, value, NodeFeature.ATTENTION_SRC)
    bias(b, f"{path}.att_dst", m.att_dst, value, NodeFeature.ATTENTION_DST)
    return Group(_combine_heads(b, m, path, value, h, c, layer), 1)


def gatv2(w: ParameterGraphWalker, node: fx.Node, m: nn.Module, path: str) -> Value:
    """GATv2: VALUE neurons (``lin_l``, attention vector) and QUERY neurons (``lin_r``)."""
    src, b = _input(w, node, path), w.builder
    if m.share_weights:
        raise UnsupportedOperationError("GATv2Conv(share_weights=True)", path, w.supported())
    layer = b.new_layer(path)
    h, c = m.heads, m.out_channels
    heads = torch.arange(h * c) // c
    value = linear_nodes(b, m.lin_l, f"{path}.lin_l", src, NodeType.VALUE, heads,
                         EdgeType.MESSAGE)
    query = linear_nodes(b, m.lin_r, f"{path}.lin_r", src, NodeType.QUERY, heads)
    b.identity(query, value, EdgeType.ATTENTION, layer)
    bias(b, f"{path}.att", m.att, value, NodeFeature.ATTENTION_SRC)
    return Group(_combine_heads(b, m, path, value, h, c, layer), 1)


def _combine_heads(b: GraphBuilder, m: nn.Module, path: str, value: Tensor, h: int, c: int,
                   layer: int) -> Tensor:
    """Output neurons: heads concatenated (one per value neuron) or averaged (``c``)."""
    count = h * c if m.concat else c
    out = b.add_nodes(count, NodeType.HIDDEN, layer)
    target = torch.arange(h * c) % count
    b.identity(value, out[target], EdgeType.IDENTITY, layer)
    bias(b, f"{path}.bias", m.bias, out)
    return out


def transformer(w: ParameterGraphWalker, node: fx.Node, m: nn.Module, path: str) -> Value:
    """TransformerConv: QUERY / KEY / VALUE neurons per head; ``lin_skip`` as ROOT edges."""
    src, b = _input(w, node, path), w.builder
    if m.beta or m.lin_edge is not None:
        raise UnsupportedOperationError(
            "TransformerConv(beta=True or edge_dim)", path, w.supported())
    h, c = m.heads, m.out_channels
    heads = torch.arange(h * c) // c
    query = linear_nodes(b, m.lin_query, f"{path}.lin_query", src, NodeType.QUERY, heads)
    key = linear_nodes(b, m.lin_key, f"{path}.lin_key", src, NodeType.KEY, heads)
    value = linear_nodes(b, m.lin_value, f"{path}.lin_value", src, NodeType.VALUE, heads,
                         EdgeType.MESSAGE)
    layer = b.new_layer(path)
    b.identity(query, key, EdgeType.ATTENTION, layer)
    count = h * c if m.concat else c
    out = b.add_nodes(count, NodeType.HIDDEN, layer)
    b.identity(value, out[torch.arange(h * c) % count], EdgeType.IDENTITY, layer)
    if m.lin_skip is not None:
        _lins(b, m, path, {"lin_skip": EdgeType.ROOT}, src, out, layer)
    return Group(out, 1)


def arma(w: ParameterGraphWalker, node: fx.Node, m: nn.Module, path: str) -> Value:
    """ARMA: stack index in ``edge_head``; ``weight`` (recursion) as RECURRENT out->out edges."""
    src, b = _input(w, node, path), w.builder
    if m.bias is not None and m.bias.shape[0] * m.bias.shape[1] != 1:
        raise UnsupportedOperationError(
            "ARMAConv", path, w.supported(), "num_stacks * num_layers > 1 biases per neuron")
    layer = b.new_layer(path)
    out = b.add_nodes(m.out_channels, NodeType.HIDDEN, layer)
    blocks = {  # name -> (weight, source neurons, in axis, edge type)
        "init_weight": (src, 1, EdgeType.MESSAGE), "root_weight": (src, 2, EdgeType.ROOT),
        "weight": (out, 2, EdgeType.RECURRENT),
    }
    for name, (source, in_axis, edge_type) in blocks.items():
        weight = getattr(m, name)
        block = DenseBlock(weight, source, out, in_axis=in_axis, out_axis=in_axis + 1,
                           kernel_dims=0, edge_type=edge_type, layer=layer,
                           width=b.kernel_width, head="axis", head_axis=in_axis - 1)
        b.dense(f"{path}.{name}", block)
    bias(b, f"{path}.bias", m.bias, out)
    return Group(out, 1)


def pyg_linear(w: ParameterGraphWalker, node: fx.Node, m: nn.Module, path: str) -> Value:
    src = w.group(node.args[0], -1, node)
    return Group(linear_nodes(w.builder, m, path, src.nodes), len(shape_of(node)) - 1)


def pyg_norm(w: ParameterGraphWalker, node: fx.Node, m: nn.Module, path: str) -> Value:
    """PyG's ``LayerNorm`` (node or graph mode): NORM neurons with the affine parameters."""
    src = _input(w, node, path)
    return Group(norm_nodes(w.builder, m, path, src), 1)


def handlers() -> dict[type[nn.Module], Any]:
    """PyG class -> handler."""
    import torch_geometric.nn as pyg
    from torch_geometric.nn.dense.linear import Linear

    lins = lambda m: {f"lins.{k}": EdgeType.HOP for k in range(len(m.lins))}  # noqa: E731
    return {
        pyg.GCNConv: _simple(lambda m: {"lin": EdgeType.MESSAGE}),
        pyg.SGConv: _simple(lambda m: {"lin": EdgeType.MESSAGE}),
        pyg.SAGEConv: _simple(lambda m: _root(m, "lin_l", "lin_r")),
        pyg.GraphConv: _simple(lambda m: _root(m, "lin_rel", "lin_root")),
        pyg.ChebConv: _simple(lins, hops=True),
        pyg.TAGConv: _simple(lins, hops=True),
        pyg.GINConv: gin, pyg.GATConv: gat, pyg.GATv2Conv: gatv2,
        pyg.TransformerConv: transformer, pyg.ARMAConv: arma, Linear: pyg_linear,
        pyg.LayerNorm: pyg_norm,
    }
