"""Attention convolutions (GAT, GATv2, graph transformer) on a fixed graph as sparse products.

PyG computes an attention layer edge by edge: it gathers an ``(E, heads, channels)`` tensor of
messages, scales it by the attention weights and scatters it back onto the nodes, and its
backward pass does the same again. On a fixed graph the edges can instead be held once as a
CSR matrix sorted by target node, so that

- the weighted sum of messages ``out[i] = sum_{j -> i} alpha_ji v_j`` is, per head, a sparse
  matrix (values ``alpha``) times the dense ``v``, whose backward is the transposed product for
  ``v`` and a *sampled* dense product (``torch.sparse.sampled_addmm``: ``g_i . v_j`` only on the
  graph's edges) for ``alpha`` (:func:`edge_aggregate`);
- the transformer's scores ``q_i . k_j`` on the edges are that sampled product in the forward
  pass and two sparse products in the backward pass (:func:`edge_dot`).

Neither materialises an ``(E, heads, channels)`` tensor; on Cora (one CPU thread) a 4-head,
256-wide GAT layer's forward and backward took 13 ms instead of 40 ms. GATv2 needs the per-edge
``(E, heads, channels)`` sum inside its score, so only its weighted sum takes the sparse form.

The forms below compute what the PyG modules compute, with their parameters, for the options
our spaces use (no edge features, no residual projection, no gated root weight); for anything
else :func:`static_attention_forward` returns ``None`` and the caller runs the module itself.
"""
from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

if TYPE_CHECKING:
    from search_spaces.static_graph import StaticGraph


class EdgeStructure:
    """A graph's edges as a CSR matrix ``A[dst, src]`` (edge ``e`` is its ``e``-th stored
    value; duplicate edges stay apart, as PyG keeps them).

    Several heads are one block-diagonal matrix with a block per head (head-major values), so
    that each product is one sparse call whatever the number of heads; its structure, and the
    plan of its transpose, are built once per number of heads.
    """

    def __init__(self, src: Tensor, dst: Tensor, num_nodes: int) -> None:
        self.src, self.dst, self.num_nodes = src, dst, num_nodes  # (E,), dst non-decreasing
        self._blocks: dict[tuple[int, torch.dtype], _Blocks] = {}

    def blocks(self, heads: int, dtype: torch.dtype) -> _Blocks:
        key = (heads, dtype)
        if key not in self._blocks:
            self._blocks[key] = _block_diagonal(self.src, self.dst, self.num_nodes, heads, dtype)
        return self._blocks[key]


class _Blocks(NamedTuple):
    crow: Tensor  # (H N + 1,) rows of the block-diagonal A over (head, target)
    col: Tensor  # (H E,) (head, source) columns
    transpose_crow: Tensor  # rows of A^T over (head, source)
    transpose_col: Tensor  # (head, target) columns of A^T
    order: Tensor  # (H E,) A^T's k-th value is A's order[k]-th
    pattern: Tensor  # A with ones as values: the sampling pattern of sampled_addmm
    size: int  # H N


def _block_diagonal(src: Tensor, dst: Tensor, num_nodes: int, heads: int, dtype: torch.dtype
                    ) -> _Blocks:
    n, e = num_nodes, src.numel()
    shift = torch.arange(heads, device=src.device).repeat_interleave(e) * n  # (H E,)
    rows, cols = dst.repeat(heads) + shift, src.repeat(heads) + shift
    order = torch.argsort(cols * (heads * n) + rows, stable=True)
    crow = _row_pointers(rows, heads * n)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": we use the stable core
        warnings.simplefilter("ignore", UserWarning)
        pattern = torch.sparse_csr_tensor(
            crow, cols, torch.ones(heads * e, dtype=dtype, device=src.device),
            (heads * n, heads * n))
    return _Blocks(crow, cols, _row_pointers(cols, heads * n), rows[order], order, pattern,
                   heads * n)


def edge_structure(edge_index: Tensor, num_nodes: int, self_loops: bool) -> EdgeStructure:
    """The attention edges of ``edge_index``: as given, or (``self_loops``) with every self loop
    removed and one added per node, as ``GATConv(add_self_loops=True)`` does."""
    if self_loops:
        from torch_geometric.utils import add_self_loops, remove_self_loops

        edge_index, _ = add_self_loops(remove_self_loops(edge_index)[0], num_nodes=num_nodes)
    src, dst = edge_index
    by_target = torch.argsort(dst * num_nodes + src, stable=True)
    return EdgeStructure(src[by_target], dst[by_target], num_nodes)


def _row_pointers(rows: Tensor, size: int) -> Tensor:
    crow = torch.zeros(size + 1, dtype=torch.long, device=rows.device)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=size), 0)
    return crow


def _heads_first(x: Tensor) -> Tensor:
    """``(N, H, C)`` -> ``(H N, C)``, head-major, as the block-diagonal matrices index rows."""
    return x.permute(1, 0, 2).reshape(-1, x.size(2))


def _nodes_first(x: Tensor, heads: int) -> Tensor:
    """``(H N, C)`` -> ``(N, H, C)``."""
    return x.view(heads, -1, x.size(1)).permute(1, 0, 2)


def _matrix(blocks: _Blocks, values: Tensor, transpose: bool = False) -> Tensor:
    """The block-diagonal ``A`` (or ``A^T``) with per-edge, per-head ``values (E, H)``."""
    flat = values.t().reshape(-1)  # (H E,) head-major, A's order
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if transpose:
            return torch.sparse_csr_tensor(blocks.transpose_crow, blocks.transpose_col,
                                           flat[blocks.order], (blocks.size, blocks.size))
        return torch.sparse_csr_tensor(blocks.crow, blocks.col, flat, (blocks.size, blocks.size))


#: below this many channels per head the PyG module is as fast on a CPU (measured on Cora:
#: ``sampled_addmm`` does not vectorise 2 or 4 channels, and per-edge gathers are small there)
MIN_CHANNELS_PER_HEAD = 8


def _sampled_dot(blocks: _Blocks, left: Tensor, right: Tensor) -> Tensor:
    """``(left[dst_e, h] . right[src_e, h])_{e, h}`` for ``(N, H, C)`` inputs as ``(E, H)``,
    without gathering per edge."""
    heads = left.size(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = torch.sparse.sampled_addmm(
            blocks.pattern, _heads_first(left), _heads_first(right).t(), beta=0.0).values()
    return out.view(heads, -1).t()


class _EdgeAggregate(torch.autograd.Function):
    """``out[i, h] = sum_{e: dst_e = i} alpha[e, h] value[src_e, h]``."""

    @staticmethod
    def forward(ctx, alpha: Tensor, value: Tensor, edges: EdgeStructure) -> Tensor:  # noqa: ANN001
        ctx.save_for_backward(alpha, value)
        ctx.blocks = blocks = edges.blocks(value.size(1), value.dtype)
        return _nodes_first(_matrix(blocks, alpha) @ _heads_first(value), value.size(1))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:  # noqa: ANN001
        alpha, value = ctx.saved_tensors
        grad_alpha = grad_value = None
        if ctx.needs_input_grad[0]:
            grad_alpha = _sampled_dot(ctx.blocks, grad, value)
        if ctx.needs_input_grad[1]:
            grad_value = _nodes_first(
                _matrix(ctx.blocks, alpha, transpose=True) @ _heads_first(grad), value.size(1))
        return grad_alpha, grad_value, None


class _EdgeDot(torch.autograd.Function):
    """``score[e, h] = query[dst_e, h] . key[src_e, h]``."""

    @staticmethod
    def forward(ctx, query: Tensor, key: Tensor, edges: EdgeStructure) -> Tensor:  # noqa: ANN001
        ctx.save_for_backward(query, key)
        ctx.blocks = edges.blocks(query.size(1), query.dtype)
        return _sampled_dot(ctx.blocks, query, key)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:  # noqa: ANN001
        query, key = ctx.saved_tensors
        heads = query.size(1)
        grad_query = grad_key = None
        if ctx.needs_input_grad[0]:
            grad_query = _nodes_first(_matrix(ctx.blocks, grad) @ _heads_first(key), heads)
        if ctx.needs_input_grad[1]:
            grad_key = _nodes_first(
                _matrix(ctx.blocks, grad, transpose=True) @ _heads_first(query), heads)
        return grad_query, grad_key, None


def edge_aggregate(alpha: Tensor, value: Tensor, edges: EdgeStructure) -> Tensor:
    """Attention-weighted sum of source features onto each target node.

    Shapes:
        - input: ``alpha (E, H)``, ``value (N, H, C)``
        - output: ``(N, H, C)``
    """
    return _EdgeAggregate.apply(alpha, value, edges)


def edge_dot(query: Tensor, key: Tensor, edges: EdgeStructure) -> Tensor:
    """Per-edge, per-head dot product of the target's query and the source's key.

    Shapes:
        - input: ``query (N, H, C)``, ``key (N, H, C)``
        - output: ``(E, H)``
    """
    return _EdgeDot.apply(query, key, edges)


def static_attention_forward(conv: nn.Module, name: str, x: Tensor, graph: StaticGraph
                             ) -> Tensor | None:
    """``conv(x, graph.edge_index)`` for ``name`` in ``gat``, ``gatv2``, ``transformer`` with
    sparse products, or ``None`` when ``conv`` uses an option without a fast form here (or, on
    a CPU, has fewer than :data:`MIN_CHANNELS_PER_HEAD` channels per head)."""
    if conv.out_channels < MIN_CHANNELS_PER_HEAD and x.device.type == "cpu":
        return None
    if name == "gat":
        return _gat(conv, x, graph)
    if name == "gatv2":
        return _gatv2(conv, x, graph)
    if name == "transformer":
        return _transformer(conv, x, graph)
    return None


def _softmax(scores: Tensor, edges: EdgeStructure, p: float, training: bool) -> Tensor:
    from torch_geometric.utils import softmax

    from search_spaces.static_graph import dropout

    alpha = softmax(scores, edges.dst, num_nodes=edges.num_nodes)  # PyG's own, (E, H)
    return dropout(alpha, p) if training and p > 0.0 else alpha


def _heads_out(conv: nn.Module, out: Tensor) -> Tensor:
    return out.reshape(out.size(0), -1) if conv.concat else out.mean(dim=1)


def _gat(conv: nn.Module, x: Tensor, graph: StaticGraph) -> Tensor | None:
    from search_spaces.static_graph import sparse_linear

    if conv.lin is None or conv.lin_edge is not None or getattr(conv, "res", None) is not None:
        return None
    heads, channels = conv.heads, conv.out_channels
    h = sparse_linear(x, conv.lin.weight, conv.lin.bias).view(-1, heads, channels)
    score_src, score_dst = (h * conv.att_src).sum(-1), (h * conv.att_dst).sum(-1)  # (N, H)
    edges = graph.attention_edges(self_loops=conv.add_self_loops)
    scores = F.leaky_relu(score_src[edges.src] + score_dst[edges.dst], conv.negative_slope)
    alpha = _softmax(scores, edges, conv.dropout, conv.training)
    out = _heads_out(conv, edge_aggregate(alpha, h, edges))
    return out if conv.bias is None else out + conv.bias


def _gatv2(conv: nn.Module, x: Tensor, graph: StaticGraph) -> Tensor | None:
    from search_spaces.static_graph import sparse_linear

    if conv.lin_edge is not None or getattr(conv, "res", None) is not None:
        return None
    heads, channels = conv.heads, conv.out_channels
    x_l = sparse_linear(x, conv.lin_l.weight, conv.lin_l.bias).view(-1, heads, channels)
    x_r = x_l if conv.share_weights else sparse_linear(
        x, conv.lin_r.weight, conv.lin_r.bias).view(-1, heads, channels)
    edges = graph.attention_edges(self_loops=conv.add_self_loops)
    pair = F.leaky_relu(x_l[edges.src] + x_r[edges.dst], conv.negative_slope)  # (E, H, C)
    alpha = _softmax((pair * conv.att).sum(-1), edges, conv.dropout, conv.training)
    out = _heads_out(conv, edge_aggregate(alpha, x_l, edges))
    return out if conv.bias is None else out + conv.bias


def _transformer(conv: nn.Module, x: Tensor, graph: StaticGraph) -> Tensor | None:
    from search_spaces.static_graph import sparse_linear

    if conv.lin_edge is not None or conv.lin_beta is not None:
        return None
    heads, channels = conv.heads, conv.out_channels

    def project(lin: nn.Linear) -> Tensor:
        return sparse_linear(x, lin.weight, lin.bias).view(-1, heads, channels)

    query, key, value = project(conv.lin_query), project(conv.lin_key), project(conv.lin_value)
    edges = graph.attention_edges(self_loops=False)
    scores = edge_dot(query, key, edges) / math.sqrt(channels)
    alpha = _softmax(scores, edges, conv.dropout, conv.training)
    out = _heads_out(conv, edge_aggregate(alpha, value, edges))
    if conv.root_weight:
        out = out + sparse_linear(x, conv.lin_skip.weight, conv.lin_skip.bias)
    return out
