"""Parameter-free functions and tensor methods: how each moves, merges or keeps neurons.

Every handler is ``handler(walker, node) -> Value``. Elementwise ops keep the neuron group,
shape ops move its feature axis, ``add``/``mul`` create SUM/PRODUCT neurons fed by IDENTITY
edges, ``cat`` concatenates groups and ``flatten`` spreads a channel over POSITION neurons.
"""
from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import fx
from torch.fx._symbolic_trace import _assert_is_none

from metanets.graphs._values import Group, Pending, Value, shape_of
from metanets.graphs.errors import UnsupportedOperationError
from metanets.graphs.features import EdgeType, NodeType

if TYPE_CHECKING:
    from metanets.graphs.parameter_graph import ParameterGraphWalker

Handler = Callable[["ParameterGraphWalker", fx.Node], Value]


_MODULE_ALIASES = {
    "torch.nn.functional": "F", "torch._C._nn": "F", "_operator": "operator", "builtins": "",
    "torch_geometric.nn.pool.glob": "torch_geometric.nn", "torch._C._VariableFunctions": "torch",
}


def function_name(fn: Any) -> str:
    """Readable name of a traced function (``F.relu``, ``operator.add``, ``torch.cat``)."""
    module = getattr(fn, "__module__", None) or ""
    name = getattr(fn, "__name__", repr(fn))
    return f"{_MODULE_ALIASES.get(module, module)}.{name}".lstrip(".")


def describe(node: fx.Node) -> str:
    """Name of a function or method node's op (``torch.cat``, ``Tensor.view``)."""
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    if node.op == "call_function":
        return function_name(node.target)
    return str(node.target)


def _unsupported(w: ParameterGraphWalker, node: fx.Node, reason: str) -> UnsupportedOperationError:
    return UnsupportedOperationError(describe(node), w.path_of(node), w.supported(), reason)


def _arg(node: fx.Node, index: int, name: str, default: Any = None) -> Any:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _ndim(arg: Any) -> int:
    return len(shape_of(arg))


# elementwise ---------------------------------------------------------------------------------
def passthrough(w: ParameterGraphWalker, node: fx.Node) -> Value:
    """Elementwise / pooling: the output's features are the input's neurons."""
    value = w.value(node.args[0]) if node.args else None
    return value if isinstance(value, (Group, Pending)) else None


def no_features(w: ParameterGraphWalker, node: fx.Node) -> Value:  # noqa: ARG001
    """Shapes, sizes, dtypes: values that are no neurons."""
    return None


def _binary(node_type: NodeType, sign: float = 1.0) -> Handler:
    def handler(w: ParameterGraphWalker, node: fx.Node) -> Value:
        a, b = node.args[0], node.args[1]
        va, vb = w.value(a), w.value(b)
        if not isinstance(va, Group) and not isinstance(vb, Group):
            return va if isinstance(va, Pending) else vb if isinstance(vb, Pending) else None
        group_arg, group = (a, va) if isinstance(va, Group) else (b, vb)
        dim = _ndim(node) - (_ndim(group_arg) - group.dim)
        groups = [g for g in (_operand(w, node, arg, dim) for arg in (a, b)) if g is not None]
        if len(groups) == 1:
            return groups[0]
        return _merge(w, node, groups, node_type, sign, dim)

    return handler


def _operand(w: ParameterGraphWalker, node: fx.Node, arg: Any, dim: int) -> Group | None:
    value = w.value(arg)
    if not isinstance(value, (Group, Pending)):
        return None
    arg_dim = dim - (_ndim(node) - _ndim(arg))
    if arg_dim < 0:
        raise _unsupported(w, node, "operand broadcast over the feature axis")
    group = w.group(arg, arg_dim, node)
    return Group(group.nodes, dim)


def _merge(w: ParameterGraphWalker, node: fx.Node, groups: list[Group], node_type: NodeType,
           sign: float, dim: int) -> Group:
    if len({len(g) for g in groups}) != 1:
        raise _unsupported(w, node, "operands with different feature counts")
    b = w.builder
    layer = b.new_layer(f"{w.path_of(node)}:{node.name}")
    nodes = b.add_nodes(len(groups[0]), node_type, layer)
    for i, group in enumerate(groups):
        b.identity(group.nodes, nodes, EdgeType.IDENTITY, layer, sign if i else 1.0)
    return Group(nodes, dim)


# concatenation -------------------------------------------------------------------------------
def cat(w: ParameterGraphWalker, node: fx.Node) -> Value:
    tensors = list(_arg(node, 0, "tensors"))
    dim = _arg(node, 1, "dim", 0) % _ndim(node)
    values = [w.value(t) for t in tensors]
    if not any(isinstance(v, Group) for v in values):
        return next((v for v in values if isinstance(v, Pending)), None)
    feature_dim = next(v.dim for v in values if isinstance(v, Group))
    if dim == feature_dim:
        groups = [w.group(t, dim, node) for t in tensors]
        return Group(torch.cat([g.nodes for g in groups]), dim)
    groups = [v for v in values if isinstance(v, Group)]
    if len(groups) != len(values) or any(not torch.equal(g.nodes, groups[0].nodes) for g in groups):
        raise _unsupported(w, node, "concatenating different neurons along a non-feature axis")
    return groups[0]


# shape ops -----------------------------------------------------------------------------------
def flatten(w: ParameterGraphWalker, node: fx.Node) -> Value:
    value = w.value(node.args[0])
    if not isinstance(value, Group):
        return value if isinstance(value, Pending) else None
    n = _ndim(node.args[0])
    start, end = _arg(node, 1, "start_dim", 0) % n, _arg(node, 2, "end_dim", -1) % n
    return _flatten_group(w, node, value, start, end)


def _flatten_group(w: ParameterGraphWalker, node: fx.Node, g: Group, start: int, end: int
                   ) -> Group:
    """Merge axes ``start..end``; a channel spread over positions gets POSITION neurons."""
    if g.dim < start:
        return g
    if g.dim > end:
        return Group(g.nodes, g.dim - (end - start))
    merged = tuple(shape_of(node.args[0])[start:end + 1])
    if math.prod(merged) == len(g):
        return Group(g.nodes, start)
    view = [1] * len(merged)
    view[g.dim - start] = len(g)
    channel = torch.arange(len(g)).view(view).expand(merged).reshape(-1)  # (C * positions,)
    b = w.builder
    spatial = tuple(s for i, s in enumerate(merged) if i != g.dim - start)
    layer = b.new_layer(f"{w.path_of(node)}:{node.name}", kernel=spatial)
    nodes = b.add_nodes(len(channel), NodeType.POSITION, layer)
    b.identity(g.nodes[channel], nodes, EdgeType.IDENTITY, layer)
    return Group(nodes, start)


def reshape(w: ParameterGraphWalker, node: fx.Node) -> Value:
    """``view`` / ``reshape`` that keep the feature axis, or flatten trailing axes."""
    value = w.value(node.args[0])
    if not isinstance(value, Group):
        return value if isinstance(value, Pending) else None
    s, t = tuple(shape_of(node.args[0])), tuple(shape_of(node))
    prefix = next((i for i, (p, q) in enumerate(zip(s, t)) if p != q), min(len(s), len(t)))
    suffix = next((i for i, (p, q) in enumerate(zip(s[::-1], t[::-1])) if p != q),
                  min(len(s), len(t)))
    if value.dim < prefix:
        return value
    if value.dim >= len(s) - suffix:
        return Group(value.nodes, len(t) - (len(s) - value.dim))
    if prefix == len(t) - 1:
        return _flatten_group(w, node, value, prefix, len(s) - 1)
    raise _unsupported(w, node, f"reshape {s} -> {t} splits or merges the feature axis")


def permute(w: ParameterGraphWalker, node: fx.Node) -> Value:
    value = w.value(node.args[0])
    if not isinstance(value, Group):
        return value if isinstance(value, Pending) else None
    dims = node.args[1:] if len(node.args) > 2 else _arg(node, 1, "dims")
    dims = [d % len(dims) for d in dims]
    return Group(value.nodes, dims.index(value.dim))


def transpose(w: ParameterGraphWalker, node: fx.Node) -> Value:
    value = w.value(node.args[0])
    if not isinstance(value, Group):
        return value if isinstance(value, Pending) else None
    n = _ndim(node)
    a, b = _arg(node, 1, "dim0") % n, _arg(node, 2, "dim1") % n
    swap = {a: b, b: a}
    return Group(value.nodes, swap.get(value.dim, value.dim))


def unsqueeze(w: ParameterGraphWalker, node: fx.Node) -> Value:
    value = w.value(node.args[0])
    if not isinstance(value, Group):
        return value if isinstance(value, Pending) else None
    dim = _arg(node, 1, "dim") % _ndim(node)
    return Group(value.nodes, value.dim + (dim <= value.dim))


def squeeze(w: ParameterGraphWalker, node: fx.Node) -> Value:
    value = w.value(node.args[0])
    if not isinstance(value, Group):
        return value if isinstance(value, Pending) else None
    shape = shape_of(node.args[0])
    dim = _arg(node, 1, "dim")
    dims = [i for i, s in enumerate(shape) if s == 1] if dim is None else [dim % len(shape)]
    dims = [d for d in dims if shape[d] == 1 and d != value.dim]
    return Group(value.nodes, value.dim - sum(d < value.dim for d in dims))


def reduce(w: ParameterGraphWalker, node: fx.Node) -> Value:
    """``mean`` / ``sum`` / ``amax`` over non-feature axes (spatial or token pooling)."""
    value = w.value(node.args[0])
    if not isinstance(value, Group):
        return value if isinstance(value, Pending) else None
    dim, n = _arg(node, 1, "dim"), _ndim(node.args[0])
    if dim is None:
        raise _unsupported(w, node, "reduces over the feature axis")
    dims = {d % n for d in (dim if isinstance(dim, (list, tuple)) else [dim])}
    if value.dim in dims:
        raise _unsupported(w, node, "reduces over the feature axis")
    if _arg(node, 2, "keepdim", False):
        return value
    return Group(value.nodes, value.dim - sum(d < value.dim for d in dims))


def getitem(w: ParameterGraphWalker, node: fx.Node) -> Value:
    """Tuple element, or tensor indexing that keeps every feature (``x[:, 0]``)."""
    base, index = node.args
    value = w.value(base)
    if isinstance(value, (tuple, list)):
        return value[index]
    if isinstance(value, dict):
        return value[index]
    if not isinstance(value, Group):
        return value if isinstance(value, Pending) else None
    return Group(value.nodes, _indexed_dim(w, node, value.dim, _ndim(base), index))


def _indexed_dim(w: ParameterGraphWalker, node: fx.Node, dim: int, ndim: int, index: Any) -> int:
    items = list(index) if isinstance(index, tuple) else [index]
    explicit = sum(1 for i in items if i is not None and i is not Ellipsis)
    in_axis = out_axis = 0
    for item in items:
        if item is Ellipsis:
            skip = ndim - explicit
            if in_axis <= dim < in_axis + skip:
                return out_axis + dim - in_axis
            in_axis, out_axis = in_axis + skip, out_axis + skip
        elif item is None:
            out_axis += 1
        elif in_axis == dim:
            if item != slice(None):
                raise _unsupported(w, node, "indexing selects features")
            return out_axis
        else:
            in_axis, out_axis = in_axis + 1, out_axis + (not isinstance(item, int))
    return out_axis + dim - in_axis


# tables --------------------------------------------------------------------------------------
_ELEMENTWISE_FUNCTIONS = (
    torch.relu, torch.sigmoid, torch.tanh, torch.exp, torch.abs, torch.clamp, torch.neg,
    F.relu, F.relu6, F.gelu, F.elu, F.selu, F.silu, F.mish, F.leaky_relu, F.softplus,
    F.sigmoid, F.tanh, F.hardswish, F.hardtanh, F.dropout, F.dropout1d, F.dropout2d,
    F.softmax, F.log_softmax, F.max_pool1d, F.max_pool2d, F.avg_pool1d, F.avg_pool2d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_max_pool1d, F.adaptive_max_pool2d,
    operator.neg, operator.truediv, torch.div,
)


def _global_pools() -> dict[Any, Handler]:
    from torch_geometric.nn import global_add_pool, global_max_pool, global_mean_pool

    from search_spaces.gnn import readout

    return {f: passthrough for f in (global_add_pool, global_mean_pool, global_max_pool, readout)}


FUNCTIONS: dict[Any, Handler] = {
    **{f: passthrough for f in _ELEMENTWISE_FUNCTIONS},
    **_global_pools(),
    operator.add: _binary(NodeType.SUM), torch.add: _binary(NodeType.SUM),
    operator.sub: _binary(NodeType.SUM, -1.0), torch.sub: _binary(NodeType.SUM, -1.0),
    operator.mul: _binary(NodeType.PRODUCT), torch.mul: _binary(NodeType.PRODUCT),
    torch.cat: cat, torch.concat: cat, torch.flatten: flatten, torch.reshape: reshape,
    torch.permute: permute, torch.transpose: transpose, torch.unsqueeze: unsqueeze,
    torch.squeeze: squeeze, torch.mean: reduce, torch.sum: reduce, torch.amax: reduce,
    operator.getitem: getitem, getattr: no_features,
    _assert_is_none: no_features,  # fx's guard for optional inputs fixed at None
}

METHODS: dict[str, Handler] = {
    **{m: passthrough for m in (
        "relu", "sigmoid", "tanh", "exp", "abs", "clamp", "softmax", "contiguous", "clone",
        "float", "to", "type_as", "detach", "neg", "div", "__truediv__")},
    **{m: no_features for m in ("size", "dim", "numel", "type")},
    "add": _binary(NodeType.SUM), "add_": _binary(NodeType.SUM),
    "sub": _binary(NodeType.SUM, -1.0), "mul": _binary(NodeType.PRODUCT),
    "flatten": flatten, "view": reshape, "reshape": reshape, "permute": permute,
    "transpose": transpose, "unsqueeze": unsqueeze, "squeeze": squeeze,
    "mean": reduce, "sum": reduce, "amax": reduce,
}
