"""Fast full-graph forward passes for a graph that does not change between calls.

Transductive node tasks train on one fixed graph, so everything that depends on the graph only
is computed once here instead of once per forward pass:

- the input features are kept as a sparse CSR matrix when they are mostly zeros (Cora: 1.3% of
  its 2708 x 1433 entries are non-zero) and input dropout draws a mask only over the stored
  values (:func:`input_dropout`): dropping a zero changes nothing, so the distribution of the
  result is the one of dense dropout (same keep-rate, same ``1/(1-p)`` scaling);
- each convolution's normalised propagation matrix (GCN, SG, TAG, ARMA, Chebyshev, sum / mean
  neighbourhood aggregation) is built once as a CSR matrix, with its transpose for the backward
  pass (:class:`StaticGraph`): a sparse matrix product beats PyG's gather/scatter on a CPU;
- convolutions whose propagation is linear apply their weight matrices first when that is the
  cheaper order (always for sparse input): ``A (X W) = (A X) W``;
- the backward pass of ``X W`` on a sparse ``X`` needs ``X^T``: its structure is computed once
  (:func:`sparse_features` keeps a transpose plan with the features, and dropout carries it
  over), so each epoch only permutes the kept values instead of re-sorting the matrix
  (:func:`sparse_linear`; about 7x cheaper for that product's backward on Cora);
- max aggregation (SAGE, GraphConv, GIN) of sparse non-negative features stays sparse: which
  stored value competes for which output entry is computed once, and each call is a gather and
  a scatter-max over the stored values (:meth:`StaticGraph.max_aggregate`) instead of a
  scatter over the dense ``(E, F)`` messages;
- attention layers (GAT, GATv2, graph transformer) aggregate with per-head sparse products on
  the cached edge structure instead of gathering ``(E, heads, channels)`` messages
  (:mod:`search_spaces.static_attention`).

:func:`static_conv_forward` computes exactly what the PyG convolution computes (up to float
rounding from the changed order of sums), with the convolution's own parameters; convolutions
or options without a fast form (max aggregation of dense or signed features, attention options
that :mod:`search_spaces.static_attention` does not cover) call the PyG module itself.
"""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from search_spaces.static_attention import EdgeStructure, edge_structure, static_attention_forward

if TYPE_CHECKING:
    from search_spaces.gnn import LayerSpec

#: keep input features sparse when at most this fraction of them is non-zero
SPARSE_DENSITY = 0.25
#: aggregations with a linear (matrix) form
_LINEAR_AGGREGATIONS = frozenset({"add", "sum", "mean"})


#: attribute of a CSR tensor holding its :class:`_TransposePlan`
_PLAN = "_metanas_transpose_plan"


class _TransposePlan(NamedTuple):
    """The structure of ``X^T`` for a CSR ``X``: ``X^T`` is the CSR matrix
    ``(crow_indices, col_indices, X.values()[order])``."""

    crow_indices: Tensor
    col_indices: Tensor
    order: Tensor


def sparse_features(x: Tensor, max_density: float = SPARSE_DENSITY) -> Tensor:
    """``x`` as a CSR matrix when at most ``max_density`` of its entries are non-zero, else ``x``.

    The CSR matrix carries the structure of its transpose, for :func:`sparse_linear`.

    Shapes:
        - input: ``(N, F)`` dense
        - output: ``(N, F)`` CSR or the dense input
    """
    if x.layout != torch.strided or x.dim() != 2 or x.numel() == 0:
        return x
    if float(torch.count_nonzero(x)) > max_density * x.numel():
        return x
    with warnings.catch_warnings():  # "sparse CSR support is in beta": we use the stable core
        warnings.simplefilter("ignore", UserWarning)
        csr = x.to_sparse_csr()
    setattr(csr, _PLAN, _transpose_plan(csr.crow_indices(), csr.col_indices(), x.shape))
    return csr


def _transpose_plan(crow: Tensor, col: Tensor, shape: torch.Size) -> _TransposePlan:
    rows = torch.repeat_interleave(torch.arange(shape[0], device=crow.device), crow.diff())
    order = torch.arange(col.numel(), device=crow.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        transposed = torch.sparse_coo_tensor(
            torch.stack([col, rows]), order, (shape[1], shape[0])).coalesce().to_sparse_csr()
    return _TransposePlan(transposed.crow_indices(), transposed.col_indices(), transposed.values())


def _with_values(x: Tensor, values: Tensor) -> Tensor:
    """The CSR matrix of ``x``'s structure with other ``values``, keeping its transpose plan."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = torch.sparse_csr_tensor(
            x.crow_indices(), x.col_indices(), values, x.shape, device=x.device)
    plan = getattr(x, _PLAN, None)
    if plan is not None:
        setattr(out, _PLAN, plan)
    return out


def sparse_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` for a dense or CSR ``x`` (gradients for ``weight`` and ``bias``).

    A CSR ``x`` from :func:`sparse_features` (or dropout of one) gets the weight gradient
    ``(X^T G)^T`` from its stored transpose structure; any other input is
    :func:`torch.nn.functional.linear` itself. The features take no gradient.

    Shapes:
        - input: ``x (N, F)``, ``weight (C, F)``, ``bias (C,)``
        - output: ``(N, C)``
    """
    plan = getattr(x, _PLAN, None) if is_sparse(x) else None
    if plan is None or not (weight.requires_grad and torch.is_grad_enabled()):
        return F.linear(x, weight, bias)
    out = _CsrLinear.apply(x, weight, plan)
    return out if bias is None else out + bias


class _CsrLinear(torch.autograd.Function):
    """``X W^T`` for a CSR ``X`` whose backward multiplies by ``X^T`` built from its plan."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, plan: _TransposePlan) -> Tensor:  # noqa: ANN001
        ctx.x, ctx.plan = x, plan
        return x @ weight.t()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[None, Tensor, None]:  # noqa: ANN001
        x, plan = ctx.x, ctx.plan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            transpose = torch.sparse_csr_tensor(
                plan.crow_indices, plan.col_indices, x.values()[plan.order],
                (x.size(1), x.size(0)), device=x.device)
        return None, (transpose @ grad).t(), None


def is_sparse(x: Tensor) -> bool:
    return x.layout != torch.strided


def input_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Dropout that keeps a sparse input sparse: the mask is drawn over the stored values only.

    Each stored value is zeroed with probability ``p`` and the kept ones scaled by ``1/(1-p)``,
    the distribution :func:`torch.nn.functional.dropout` gives the dense matrix (its zeros stay
    zero either way). Dense inputs go to :func:`torch.nn.functional.dropout` unchanged.
    """
    if not training or p == 0.0:
        return x
    if not is_sparse(x):
        return dropout(x, p)
    return _with_values(x, dropout(x.values(), p))  # (nnz,) values, the same structure


def dropout(x: Tensor, p: float) -> Tensor:
    """Training-mode dropout: each entry kept with probability ``1 - p`` and scaled by
    ``1/(1-p)``, the distribution of :func:`torch.nn.functional.dropout`.

    On a CPU the keep mask comes from one vectorised uniform draw (``rand >= p``), 2-3x faster
    than the per-element Bernoulli sampler that ``F.dropout`` uses; elsewhere (CUDA's fused
    kernel) ``F.dropout`` itself.
    """
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    scale = torch.rand_like(x).ge_(p).to(x.dtype).mul_(1.0 / (1.0 - p))  # 0 or 1/(1-p)
    return x * scale


class _PropagationMatrix:
    """A sparse ``(N, N)`` matrix ``M`` with its transpose; ``M @ h`` differentiable in ``h``."""

    def __init__(self, edge_index: Tensor, weight: Tensor, num_nodes: int) -> None:
        # message passing (source_to_target) sums weight * x[src] into out[dst]: M[dst, src]
        self.matrix = _csr(edge_index[1], edge_index[0], weight, num_nodes)
        self.transpose = _csr(edge_index[0], edge_index[1], weight, num_nodes)

    def __matmul__(self, h: Tensor) -> Tensor:
        return _SparseMatmul.apply(self.matrix, self.transpose, h)


def _csr(rows: Tensor, cols: Tensor, weight: Tensor, num_nodes: int) -> Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        coo = torch.sparse_coo_tensor(
            torch.stack([rows, cols]), weight, (num_nodes, num_nodes)
        ).coalesce()  # duplicate edges sum, as scatter-add does
        return coo.to_sparse_csr()


class _SparseMatmul(torch.autograd.Function):
    """``M @ h`` whose backward uses the stored transpose instead of transposing per call."""

    @staticmethod
    def forward(ctx, matrix: Tensor, transpose: Tensor, h: Tensor) -> Tensor:  # noqa: ANN001
        ctx.transpose = transpose
        return matrix @ h

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[None, None, Tensor]:  # noqa: ANN001
        return None, None, ctx.transpose @ grad


#: build no max-aggregation plan with more (edge, stored value) pairs than this
MAX_AGGREGATION_PAIRS = 20_000_000


class _MaxPlan(NamedTuple):
    """Where each stored value of ``x`` goes in a max aggregation: pair ``k`` (one edge and one
    stored value of its source row) sends ``x.values()[source[k]]`` to the output's stored value
    ``target[k]``; the output is the CSR matrix ``(crow_indices, col_indices)``."""

    source: Tensor
    target: Tensor
    crow_indices: Tensor
    col_indices: Tensor
    transpose: _TransposePlan


def _max_plan(edge_index: Tensor, crow: Tensor, col: Tensor, shape: torch.Size
              ) -> _MaxPlan | None:
    src, dst = edge_index
    num_nodes, num_features = shape
    counts = crow.diff()[src]  # stored values each edge carries
    total = int(counts.sum())
    if total > MAX_AGGREGATION_PAIRS:
        return None
    device = crow.device
    edge = torch.repeat_interleave(torch.arange(src.numel(), device=device), counts)
    first_pair = torch.cumsum(counts, 0) - counts
    source = crow[src][edge] + (torch.arange(total, device=device) - first_pair[edge])
    position = dst[edge] * num_features + col[source]  # row-major: sorted means CSR order
    stored, target = torch.unique(position, sorted=True, return_inverse=True)
    rows, cols = stored // num_features, stored % num_features
    out_crow = torch.zeros(num_nodes + 1, dtype=crow.dtype, device=device)
    out_crow[1:] = torch.cumsum(torch.bincount(rows, minlength=num_nodes), 0)
    out_col = cols.to(col.dtype)
    return _MaxPlan(source, target, out_crow, out_col,
                    _transpose_plan(out_crow, out_col, shape))


class StaticGraph:
    """One fixed graph and its propagation matrices, each built on first use.

    Args:
        edge_index: ``(2, E)`` edges (source, target).
        num_nodes: nodes of the graph.
    """

    def __init__(self, edge_index: Tensor, num_nodes: int) -> None:
        self.edge_index, self.num_nodes = edge_index, num_nodes
        self._matrices: dict[tuple, _PropagationMatrix] = {}
        self._max_plans: dict[tuple, tuple[Tensor, Tensor, _MaxPlan | None]] = {}
        self._attention_edges: dict[bool, EdgeStructure] = {}

    def attention_edges(self, self_loops: bool) -> EdgeStructure:
        """The edges as attention layers see them (:func:`edge_structure`), built once."""
        if self_loops not in self._attention_edges:
            self._attention_edges[self_loops] = edge_structure(
                self.edge_index, self.num_nodes, self_loops)
        return self._attention_edges[self_loops]

    def max_aggregate(self, x: Tensor) -> Tensor | None:
        """``out[i] = max_{j -> i} x[j]`` (PyG's ``aggr="max"``, 0 where no edge enters) for a
        CSR ``x`` with no negative value, as a CSR matrix; ``None`` for any other ``x``.

        Without negative values the maximum over a neighbourhood is the maximum over its
        stored values, so the result's structure depends on the graph and ``x``'s structure
        only. That structure, which stored value goes where, and the transpose plan that
        :func:`sparse_linear` needs are computed once per structure (dropout keeps it); each
        call is one gather and one scatter-max over the stored values.

        Shapes:
            - input: ``x (N, F)`` CSR
            - output: ``(N, F)`` CSR
        """
        if not is_sparse(x) or x.layout != torch.sparse_csr or x.size(0) != self.num_nodes:
            return None
        values = x.values()
        if values.numel() and bool(values.min() < 0):
            return None
        crow, col = x.crow_indices(), x.col_indices()
        key = (crow.data_ptr(), col.data_ptr(), col.numel(), tuple(x.shape))
        if key not in self._max_plans:  # the tensors stay referenced, so no pointer is reused
            self._max_plans[key] = (crow, col, _max_plan(self.edge_index, crow, col, x.shape))
        plan = self._max_plans[key][2]
        if plan is None:
            return None
        gathered = values[plan.source]
        aggregated = gathered.new_zeros(plan.col_indices.numel()).scatter_reduce_(
            0, plan.target, gathered, "amax", include_self=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            out = torch.sparse_csr_tensor(
                plan.crow_indices, plan.col_indices, aggregated, x.shape, device=x.device)
        setattr(out, _PLAN, plan.transpose)
        return out

    def matrix(self, kind: str, dtype: torch.dtype = torch.float32, conv: nn.Module | None = None
               ) -> _PropagationMatrix:
        """The propagation matrix of ``kind``: ``gcn`` (symmetric normalisation with self
        loops), ``gcn_no_loops``, ``cheb`` (``conv``'s scaled Laplacian minus the identity),
        ``add`` (adjacency) or ``mean`` (row-normalised adjacency)."""
        key = (kind, dtype, getattr(conv, "normalization", None))
        if key not in self._matrices:
            edge_index, weight = self._weights(kind, dtype, conv)
            self._matrices[key] = _PropagationMatrix(edge_index, weight, self.num_nodes)
        return self._matrices[key]

    def _weights(self, kind: str, dtype: torch.dtype, conv: nn.Module | None
                 ) -> tuple[Tensor, Tensor]:
        from torch_geometric.nn.conv.gcn_conv import gcn_norm
        from torch_geometric.utils import degree

        edge_index, n = self.edge_index, self.num_nodes
        if kind in ("gcn", "gcn_no_loops"):
            return gcn_norm(edge_index, None, n, False, kind == "gcn", "source_to_target", dtype)
        if kind == "cheb":
            return conv.__norm__(edge_index, n, None, conv.normalization, None, dtype=dtype)
        ones = torch.ones(edge_index.size(1), dtype=dtype, device=edge_index.device)
        if kind == "add":
            return edge_index, ones
        if kind == "mean":
            in_degree = degree(edge_index[1], n, dtype=dtype)
            return edge_index, ones / in_degree[edge_index[1]]
        raise ValueError(f"could not resolve propagation kind {kind!r} among choices "
                         f"['gcn', 'gcn_no_loops', 'cheb', 'add', 'mean']")


_linear = sparse_linear


def _propagate_linear(
    matrix: _PropagationMatrix, x: Tensor, weight: Tensor, hops: int = 1
) -> Tensor:
    """``M^hops x W^T`` in the cheaper order: weights first for sparse or narrowing inputs."""
    if is_sparse(x) or weight.size(0) <= weight.size(1):
        h = _linear(x, weight)
        for _ in range(hops):
            h = matrix @ h
        return h
    for _ in range(hops):
        x = matrix @ x
    return _linear(x, weight)


def static_conv_forward(
    conv: nn.Module, spec: LayerSpec, x: Tensor, graph: StaticGraph
) -> Tensor:
    """``conv(x, graph.edge_index)`` computed with cached propagation matrices.

    Args:
        conv: the PyG convolution built by :func:`search_spaces.gnn.make_conv` (or
            :func:`search_spaces.nasbench_graph.make_op`) for ``spec``.
        spec: anything with the layer's ``conv`` name and ``aggregation`` (a
            :class:`~search_spaces.gnn.LayerSpec`).
        x: node features, dense or CSR.
        graph: the fixed graph.

    Shapes:
        - input: ``x (N, F_in)``
        - output: ``(N, spec.width)``
    """
    name, dtype = spec.conv, conv_dtype(conv)
    if name == "gcn" and conv.normalize and not conv.improved:
        kind = "gcn" if conv.add_self_loops else "gcn_no_loops"
        out = graph.matrix(kind, dtype) @ _linear(x, conv.lin.weight)
        return out if conv.bias is None else out + conv.bias
    if name == "sg":
        kind = "gcn" if conv.add_self_loops else "gcn_no_loops"
        return _propagate_linear(graph.matrix(kind, dtype), x, conv.lin.weight, conv.K) + (
            0 if conv.lin.bias is None else conv.lin.bias
        )
    if name == "tag" and conv.normalize:
        return _tag(conv, x, graph.matrix("gcn_no_loops", dtype))
    if name == "cheb" and len(conv.lins) == 2:
        matrix = graph.matrix("cheb", dtype, conv)
        out = _linear(x, conv.lins[0].weight) + matrix @ _linear(x, conv.lins[1].weight)
        return out if conv.bias is None else out + conv.bias
    if name == "arma" and conv.num_layers == 1:
        return _arma(conv, x, graph.matrix("gcn_no_loops", dtype))
    linear_aggr = spec.aggregation in _LINEAR_AGGREGATIONS
    if name == "sage" and linear_aggr and not conv.project and not conv.normalize:
        matrix = graph.matrix(_aggr_kind(spec), dtype)
        out = _propagate_linear(matrix, x, conv.lin_l.weight)
        if conv.lin_l.bias is not None:
            out = out + conv.lin_l.bias
        return out + _linear(x, conv.lin_r.weight, conv.lin_r.bias) if conv.root_weight else out
    if name == "graph" and linear_aggr:
        matrix = graph.matrix(_aggr_kind(spec), dtype)
        out = _propagate_linear(matrix, x, conv.lin_rel.weight)
        if conv.lin_rel.bias is not None:
            out = out + conv.lin_rel.bias
        return out + _linear(x, conv.lin_root.weight, conv.lin_root.bias)
    if name == "gin" and linear_aggr:
        return _gin(conv, x, graph.matrix(_aggr_kind(spec), dtype))
    if name == "linear":
        return _linear(x, conv.lin.weight, conv.lin.bias)
    if spec.aggregation == "max" and name in ("sage", "graph", "gin") and is_sparse(x):
        out = _sparse_max_conv(conv, name, x, graph)
        if out is not None:
            return out
    if name in ("gat", "gatv2", "transformer"):
        out = static_attention_forward(conv, name, x, graph)
        if out is not None:
            return out
    if name in ("gcn", "gat", "gatv2", "transformer"):
        # their first operation on x is a linear layer, which takes a CSR x as it is
        return conv(x, graph.edge_index)
    return conv(x.to_dense() if is_sparse(x) else x, graph.edge_index)  # max aggregation


def conv_dtype(conv: nn.Module) -> torch.dtype:
    parameter = next(conv.parameters(), None)
    return torch.get_default_dtype() if parameter is None else parameter.dtype


def _aggr_kind(spec: LayerSpec) -> str:
    return "mean" if spec.aggregation == "mean" else "add"


def _tag(conv: nn.Module, x: Tensor, matrix: _PropagationMatrix) -> Tensor:
    # sum_k M^k x W_k  ==  x W_0 + M (x W_1 + M (x W_2 + ...))  (Horner, weights first)
    out = _linear(x, conv.lins[-1].weight)
    for lin in reversed(conv.lins[:-1]):
        out = _linear(x, lin.weight) + matrix @ out
    return out if conv.bias is None else out + conv.bias


def _arma(conv: nn.Module, x: Tensor, matrix: _PropagationMatrix) -> Tensor:
    stacks = []
    for k in range(conv.num_stacks):
        out = matrix @ _linear(x, conv.init_weight[k].t())  # (N, out)
        root = input_dropout(x, conv.dropout, conv.training)
        out = out + _linear(root, conv.root_weight[0, k].t())
        if conv.bias is not None:
            out = out + conv.bias[0, k]
        if conv.act is not None:
            out = conv.act(out)
        stacks.append(out)
    return torch.stack(stacks).mean(dim=0)


def _sparse_max_conv(conv: nn.Module, name: str, x: Tensor, graph: StaticGraph
                     ) -> Tensor | None:
    """SAGE, GraphConv or GIN with ``aggr="max"`` on sparse non-negative input features: the
    aggregation stays sparse (:meth:`StaticGraph.max_aggregate`) and meets the weights first."""
    if name == "sage" and (conv.project or conv.normalize):
        return None
    first = _first_linear(conv.nn) if name == "gin" else None
    if name == "gin" and first is None:
        return None
    aggregated = graph.max_aggregate(x)
    if aggregated is None:
        return None
    if name == "sage":
        out = _linear(aggregated, conv.lin_l.weight, conv.lin_l.bias)
        return out + _linear(x, conv.lin_r.weight, conv.lin_r.bias) if conv.root_weight else out
    if name == "graph":
        return (_linear(aggregated, conv.lin_rel.weight, conv.lin_rel.bias)
                + _linear(x, conv.lin_root.weight, conv.lin_root.bias))
    # GIN: first(max + (1+eps) x) == max W^T + (1+eps) x W^T + b
    out = _linear(aggregated, first.weight) + (1 + conv.eps) * _linear(x, first.weight)
    if first.bias is not None:
        out = out + first.bias
    return out if conv.nn is first else conv.nn[1:](out)


def _first_linear(mlp: nn.Module) -> nn.Linear | None:
    if isinstance(mlp, nn.Linear):  # GINConv(Linear(...)), as NAS-Bench-Graph builds it
        return mlp
    if isinstance(mlp, nn.Sequential) and isinstance(mlp[0], nn.Linear):
        return mlp[0]
    return None


def _gin(conv: nn.Module, x: Tensor, matrix: _PropagationMatrix) -> Tensor:
    mlp, first = conv.nn, _first_linear(conv.nn)
    if first is None or not is_sparse(x):
        if is_sparse(x):
            x = x.to_dense()
        return mlp(matrix @ x + (1 + conv.eps) * x)
    # first layer linear: (M x + (1+eps) x) W^T + b == M (x W^T) + (1+eps) x W^T + b
    h = _linear(x, first.weight)
    out = matrix @ h + (1 + conv.eps) * h
    if first.bias is not None:
        out = out + first.bias
    return out if mlp is first else mlp[1:](out)
