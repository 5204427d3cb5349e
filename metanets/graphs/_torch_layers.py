"""Handlers of ``torch.nn`` layers: which neurons each creates and where its parameters go.

A handler is ``handler(walker, node, module, path) -> Value`` (see
:data:`~metanets.graphs.parameter_graph.ModuleHandler`); the ``*_nodes`` functions work on
neuron ids directly, so composite layers (transformer encoder) reuse them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, fx, nn

from metanets.graphs._builder import DenseBlock, GraphBuilder
from metanets.graphs._functional import _flatten_group, passthrough
from metanets.graphs._values import Group, Value, shape_of
from metanets.graphs.errors import UnsupportedOperationError
from metanets.graphs.features import EdgeType, NodeFeature, NodeType

if TYPE_CHECKING:
    from metanets.graphs.parameter_graph import ParameterGraphWalker


def _out_dim(node: fx.Node) -> int:
    return len(shape_of(node)) - 1


# reusable pieces -----------------------------------------------------------------------------
def dense_edges(b: GraphBuilder, name: str, weight: Tensor, src: Tensor, dst: Tensor,
                edge_type: EdgeType, layer: int, head: int | str | None = None,
                offset: int = 0) -> None:
    """Edges of an ``(out, in)`` weight (or a row slice of one starting at flat ``offset``)."""
    block = DenseBlock(weight, src, dst, in_axis=1, out_axis=0, kernel_dims=0,
                       edge_type=edge_type, layer=layer, width=b.kernel_width, head=head)
    b.dense(name, block, offset)


def bias(b: GraphBuilder, name: str, tensor: Tensor | None, nodes: Tensor,
         column: NodeFeature = NodeFeature.BIAS, offset: int = 0) -> None:
    if tensor is not None:
        b.node_param(name, tensor, nodes, column, offset)


def linear_nodes(b: GraphBuilder, module: nn.Module, path: str, src: Tensor,
                 node_type: NodeType = NodeType.HIDDEN, head: Tensor | int = -1,
                 edge_type: EdgeType = EdgeType.DENSE) -> Tensor:
    """A ``Linear``-like layer (``weight (out, in)``, optional ``bias``) on neurons ``src``."""
    layer = b.new_layer(path)
    out = b.add_nodes(module.weight.shape[0], node_type, layer, head)
    dense_edges(b, f"{path}.weight", module.weight, src, out, edge_type, layer,
                head="dst" if isinstance(head, Tensor) else None)
    bias(b, f"{path}.bias", module.bias, out)
    return out


def norm_nodes(b: GraphBuilder, module: nn.Module, path: str, src: Tensor,
               head: Tensor | int = -1) -> Tensor:
    """NORM neurons (one per channel, IDENTITY edges) carrying affine params and statistics."""
    layer = b.new_layer(path)
    out = b.add_nodes(len(src), NodeType.NORM, layer, head)
    b.identity(src, out, EdgeType.IDENTITY, layer)
    bias(b, f"{path}.weight", getattr(module, "weight", None), out, NodeFeature.NORM_WEIGHT)
    bias(b, f"{path}.bias", getattr(module, "bias", None), out, NodeFeature.NORM_BIAS)
    bias(b, f"{path}.running_mean", getattr(module, "running_mean", None), out,
         NodeFeature.RUNNING_MEAN)
    bias(b, f"{path}.running_var", getattr(module, "running_var", None), out,
         NodeFeature.RUNNING_VAR)
    if getattr(module, "num_batches_tracked", None) is not None:
        b.scalar(f"{path}.num_batches_tracked", module.num_batches_tracked)
    return out


def sum_nodes(b: GraphBuilder, path: str, a: Tensor, c: Tensor) -> Tensor:
    """Residual ``a + c``: SUM neurons fed by IDENTITY edges from both."""
    layer = b.new_layer(path)
    out = b.add_nodes(len(a), NodeType.SUM, layer)
    b.identity(a, out, EdgeType.IDENTITY, layer)
    b.identity(c, out, EdgeType.IDENTITY, layer)
    return out


# handlers ------------------------------------------------------------------------------------
def linear(w: ParameterGraphWalker, node: fx.Node, m: nn.Module, path: str) -> Value:
    src = w.group(node.args[0], -1, node)
    return Group(linear_nodes(w.builder, m, path, src.nodes), _out_dim(node))


def conv(w: ParameterGraphWalker, node: fx.Node, m: nn.Module, path: str) -> Value:
    """``Conv1d`` / ``Conv2d`` / ``Conv3d``: a CONV edge per (in, out) channel, kernel on it."""
    src, b = w.group(node.args[0], 1, node), w.builder
    layer = b.new_layer(path, kernel=tuple(m.kernel_size))
    out = b.add_nodes(m.out_channels, NodeType.HIDDEN, layer)
    block = DenseBlock(m.weight, src.nodes, out, in_axis=1, out_axis=0,
                       kernel_dims=m.weight.dim() - 2, edge_type=EdgeType.CONV, layer=layer,
                       width=b.kernel_width, groups=m.groups)
    b.dense(f"{path}.weight", block)
    bias(b, f"{path}.bias", m.bias, out)
    return Group(out, 1)


def batch_norm(w: ParameterGraphWalker, node: fx.Node, m: nn.Module, path: str) -> Value:
    src = w.group(node.args[0], 1, node)
    return Group(norm_nodes(w.builder, m, path, src.nodes), 1)


def group_norm(w: ParameterGraphWalker, node: fx.Node, m: nn.GroupNorm, path: str) -> Value:
    src = w.group(node.args[0], 1, node)
    groups = torch.arange(m.num_channels) // (m.num_channels // m.num_groups)
    return Group(norm_nodes(w.builder, m, path, src.nodes, head=groups), 1)


def layer_norm(w: ParameterGraphWalker, node: fx.Node, m: nn.LayerNorm, path: str) -> Value:
    if len(m.normalized_shape) != 1:
        raise UnsupportedOperationError(
            "LayerNorm", path, w.supported(), "normalises over more than the feature axis")
    src = w.group(node.args[0], -1, node)
    return Group(norm_nodes(w.builder, m, path, src.nodes), _out_dim(node))


def embedding(w: ParameterGraphWalker, node: fx.Node, m: nn.Embedding, path: str) -> Value:
    """A TOKEN neuron per table row, an EMBEDDING edge per entry to the output features."""
    b = w.builder
    layer = b.new_layer(path)
    tokens = b.add_nodes(m.num_embeddings, NodeType.TOKEN, layer)
    out = b.add_nodes(m.embedding_dim, NodeType.HIDDEN, layer)
    block = DenseBlock(m.weight, tokens, out, in_axis=0, out_axis=1, kernel_dims=0,
                       edge_type=EdgeType.EMBEDDING, layer=layer, width=b.kernel_width)
    b.dense(f"{path}.weight", block)
    return Group(out, _out_dim(node))


def flatten_module(w: ParameterGraphWalker, node: fx.Node, m: nn.Flatten, path: str) -> Value:
    value = w.value(node.args[0])
    if not isinstance(value, Group):
        return value
    n = len(shape_of(node.args[0]))
    return _flatten_group(w, node, value, m.start_dim % n, m.end_dim % n)


# attention -----------------------------------------------------------------------------------
def attention_nodes(b: GraphBuilder, m: nn.MultiheadAttention, path: str, query: Tensor,
                    key: Tensor, value: Tensor) -> Tensor:
    """QUERY / KEY / VALUE neurons with ``node_head``; ATTENTION edges pair query and key
    neurons; the output projection reads the VALUE neurons. Returns the output neurons."""
    if m.bias_k is not None or m.bias_v is not None:
        raise UnsupportedOperationError("MultiheadAttention(add_bias_kv=True)", path, [])
    e = m.embed_dim
    heads = torch.arange(e) // m.head_dim
    layer = b.new_layer(path)
    roles = (NodeType.QUERY, NodeType.KEY, NodeType.VALUE)
    sources = (query, key, value)
    qkv = [b.add_nodes(e, role, layer, heads) for role in roles]
    for i, (src, dst) in enumerate(zip(sources, qkv)):
        if m.in_proj_weight is not None:
            weight, name, offset = m.in_proj_weight[i * e:(i + 1) * e], "in_proj_weight", i * e
        else:
            name, offset = f"{'qkv'[i]}_proj_weight", 0
            weight = getattr(m, name)
        dense_edges(b, f"{path}.{name}", weight, src, dst, EdgeType.DENSE, layer, "dst",
                    offset * weight.shape[1])
        if m.in_proj_bias is not None:
            bias(b, f"{path}.in_proj_bias", m.in_proj_bias[i * e:(i + 1) * e], dst,
                 offset=i * e)
    b.identity(qkv[0], qkv[1], EdgeType.ATTENTION, layer)
    out_layer = b.new_layer(f"{path}.out_proj")
    out = b.add_nodes(e, NodeType.HIDDEN, out_layer)
    dense_edges(b, f"{path}.out_proj.weight", m.out_proj.weight, qkv[2], out, EdgeType.DENSE,
                out_layer, "src")
    bias(b, f"{path}.out_proj.bias", m.out_proj.bias, out)
    return out


def multihead_attention(w: ParameterGraphWalker, node: fx.Node, m: nn.MultiheadAttention,
                        path: str) -> Value:
    args = [node.args[i] if len(node.args) > i else node.kwargs[n]
            for i, n in enumerate(("query", "key", "value"))]
    groups = [w.group(a, -1, node).nodes for a in args]
    out = attention_nodes(w.builder, m, path, *groups)
    return (Group(out, _out_dim(node.args[0])), None)


def encoder_layer_nodes(b: GraphBuilder, m: nn.TransformerEncoderLayer, path: str,
                        x: Tensor) -> Tensor:
    """Self-attention and feed-forward blocks with residual SUMs and LayerNorms."""
    def attend(h: Tensor) -> Tensor:
        return attention_nodes(b, m.self_attn, f"{path}.self_attn", h, h, h)

    def feed_forward(h: Tensor) -> Tensor:
        h = linear_nodes(b, m.linear1, f"{path}.linear1", h)
        return linear_nodes(b, m.linear2, f"{path}.linear2", h)

    norm1 = lambda h: norm_nodes(b, m.norm1, f"{path}.norm1", h)  # noqa: E731
    norm2 = lambda h: norm_nodes(b, m.norm2, f"{path}.norm2", h)  # noqa: E731
    if m.norm_first:
        x = sum_nodes(b, f"{path}:add1", x, attend(norm1(x)))
        return sum_nodes(b, f"{path}:add2", x, feed_forward(norm2(x)))
    x = norm1(sum_nodes(b, f"{path}:add1", x, attend(x)))
    return norm2(sum_nodes(b, f"{path}:add2", x, feed_forward(x)))


def encoder_layer(w: ParameterGraphWalker, node: fx.Node, m: nn.TransformerEncoderLayer,
                  path: str) -> Value:
    x = w.group(node.args[0], -1, node)
    return Group(encoder_layer_nodes(w.builder, m, path, x.nodes), x.dim)


def encoder(w: ParameterGraphWalker, node: fx.Node, m: nn.TransformerEncoder,
            path: str) -> Value:
    x = w.group(node.args[0], -1, node)
    nodes = x.nodes
    for i, layer in enumerate(m.layers):
        nodes = encoder_layer_nodes(w.builder, layer, f"{path}.layers.{i}", nodes)
    if m.norm is not None:
        nodes = norm_nodes(w.builder, m.norm, f"{path}.norm", nodes)
    return Group(nodes, x.dim)


def _passthrough_module(w: ParameterGraphWalker, node: fx.Node, m: nn.Module, path: str
                        ) -> Value:  # noqa: ARG001
    return passthrough(w, node)


_PASSTHROUGH = (
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.ReLU, nn.ReLU6, nn.GELU, nn.ELU,
    nn.SELU, nn.SiLU, nn.Mish, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Hardswish,
    nn.Hardtanh, nn.Softmax, nn.LogSoftmax, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d,
    nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
)

HANDLERS = {
    **{cls: _passthrough_module for cls in _PASSTHROUGH},
    nn.Linear: linear, nn.Conv1d: conv, nn.Conv2d: conv, nn.Conv3d: conv,
    nn.BatchNorm1d: batch_norm, nn.BatchNorm2d: batch_norm, nn.BatchNorm3d: batch_norm,
    nn.GroupNorm: group_norm, nn.LayerNorm: layer_norm, nn.Embedding: embedding,
    nn.Flatten: flatten_module, nn.MultiheadAttention: multihead_attention,
    nn.TransformerEncoderLayer: encoder_layer, nn.TransformerEncoder: encoder,
}
