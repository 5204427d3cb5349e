"""``nn.Module`` -> computation graph: a node per operation, data-flow and virtual edges.

As graph hypernetworks use it (Knyazev et al., "Parameter Prediction for Unseen Deep
Architectures", NeurIPS 2021): node features are the op type and the shape of its main weight
(:class:`~metanets.graphs.features.OpFeature`), edges follow the data flow, and virtual edges
join every pair of ops whose shortest forward path has length ``2..max_distance``
(:class:`~metanets.graphs.features.OpEdgeFeature`). Here one node is one fx operation (a layer
with all its tensors), and ``param_names`` lists the state_dict keys a hypernetwork must fill.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import fx, nn
from torch_geometric.data import Data

from metanets.graphs.errors import UnsupportedOperationError
from metanets.graphs.features import OpEdgeFeature, OpFeature
from metanets.graphs._functional import describe
from metanets.graphs.parameter_graph import module_handlers, supported_operations
from metanets.graphs.tracing import module_path, trace

#: op-type vocabulary: ``op_type`` indexes it; ``"other"`` is for user ``leaf_modules``
OP_TYPES: tuple[str, ...] = ("input", "output", *supported_operations(), "other")
_OP_ID = {name: i for i, name in enumerate(OP_TYPES)}
_SKIPPED = ("size", "dim", "numel", "getattr", "_assert_is_none")


def _op_name(gm: fx.GraphModule, node: fx.Node, leaves: tuple[type, ...]) -> str:
    if node.op == "placeholder":
        return "input"
    if node.op == "output":
        return "output"
    if node.op == "call_module":
        module = gm.get_submodule(str(node.target))
        return "other" if isinstance(module, leaves) else type(module).__name__
    return describe(node)


def _module_of(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    return gm.get_submodule(str(node.target)) if node.op == "call_module" else None


def _features(module: nn.Module | None) -> list[float]:
    row = [0.0] * len(OpFeature)
    if module is None:
        row[OpFeature.HEADS] = 1.0
        return row
    params = list(module.parameters())
    row[OpFeature.NUM_PARAMS] = float(sum(p.numel() for p in params))
    weight = next((p for p in params if p.dim() >= 2), None)
    if weight is not None:
        shape = [*weight.shape, 1, 1, 1, 1]
        if weight.dim() > 2 and weight.shape[0] == 1:  # (1, heads, channels) attention vectors
            shape = [*weight.shape[1:], 1, 1, 1]
        row[OpFeature.OUT_DIM], row[OpFeature.IN_DIM] = float(shape[0]), float(shape[1])
        row[OpFeature.KERNEL_H], row[OpFeature.KERNEL_W] = float(shape[2]), float(shape[3])
    elif params:  # normalisation: per-channel vectors only
        row[OpFeature.OUT_DIM] = float(params[0].numel())
    row[OpFeature.HAS_BIAS] = float(any(n.endswith("bias") for n, _ in module.named_parameters()))
    row[OpFeature.HEADS] = float(_heads(module))
    return row


def _heads(module: nn.Module) -> int:
    """Attention heads of an op (PyG ``heads``, torch ``num_heads``, also inside encoders)."""
    for sub in module.modules():
        heads = getattr(sub, "heads", None) or getattr(sub, "num_heads", None)
        if isinstance(heads, int):
            return heads
    return 1


def _keep(node: fx.Node) -> bool:
    name = str(node.target).rsplit(".", 1)[-1] if node.op != "call_function" else getattr(
        node.target, "__name__", "")
    return node.op in ("placeholder", "output") or name not in _SKIPPED and (
        "tensor_meta" in node.meta or node.op == "call_module")


def _flow_edges(nodes: list[fx.Node]) -> list[tuple[int, int]]:
    index = {node: i for i, node in enumerate(nodes)}
    edges = []
    for node in nodes:
        for source in node.all_input_nodes:
            if source in index:
                edges.append((index[source], index[node]))
    return edges


def _distances(num_nodes: int, edges: list[tuple[int, int]], max_distance: int
               ) -> list[tuple[int, int, int]]:
    """``(u, v, d)`` for every forward shortest path of length ``1..max_distance``."""
    succ: list[list[int]] = [[] for _ in range(num_nodes)]
    for u, v in edges:
        succ[u].append(v)
    out = []
    for start in range(num_nodes):
        seen, queue = {start: 0}, deque([start])
        while queue:
            u = queue.popleft()
            if seen[u] == max_distance:
                continue
            for v in succ[u]:
                if v not in seen:
                    seen[v] = seen[u] + 1
                    out.append((start, v, seen[v]))
                    queue.append(v)
    return out


def to_computation_graph(
    module: nn.Module,
    example_inputs: Sequence[Any],
    *,
    max_distance: int = 50,
    leaf_modules: Iterable[type[nn.Module]] = (),
) -> Data:
    """The computation graph of ``module`` (see the module docstring).

    Returns ``Data`` with ``x`` ``(N, len(OpFeature))``, ``op_type`` ``(N,)`` (index into
    :data:`OP_TYPES`), ``edge_index`` ``(2, E)`` and ``edge_attr`` ``(E, 1)`` (distance; data
    flow first), ``node_names`` (module path or fx name), ``param_names`` per node and
    ``spatial`` ``(N,)`` (positions per channel of each node's output: ``H * W`` of a feature map
    for the example inputs, 1 for vectors).

    Raises:
        UnsupportedOperationError: an op outside :data:`OP_TYPES`.
        UntraceableModuleError: ``torch.fx`` cannot trace the network.
    """
    leaves = tuple(leaf_modules)
    gm = trace(module, example_inputs, leaf_types=(*module_handlers(), *leaves))
    nodes = [n for n in gm.graph.nodes if _keep(n)]
    names = [_op_name(gm, n, leaves) for n in nodes]
    for node, name in zip(nodes, names):
        if name not in _OP_ID:
            raise UnsupportedOperationError(name, _path(node), supported_operations(leaves))
    flow = _flow_edges(nodes)
    triples = _distances(len(nodes), flow, max_distance)
    edge_index = torch.tensor([[u, v] for u, v, _ in triples], dtype=torch.long).view(-1, 2)
    distance = torch.tensor([d for *_, d in triples], dtype=torch.float)
    order = torch.argsort(distance, stable=True)  # data flow first
    edge_attr = distance[order].view(-1, len(OpEdgeFeature))  # (E, 1): DISTANCE
    modules = [_module_of(gm, n) for n in nodes]
    return Data(
        x=torch.tensor([_features(m) for m in modules], dtype=torch.float),
        op_type=torch.tensor([_OP_ID[name] for name in names], dtype=torch.long),
        edge_index=edge_index[order].t().contiguous(), edge_attr=edge_attr,
        node_names=[module_path(str(n.target)) if n.op == "call_module" else n.name
                    for n in nodes],
        param_names=[_param_names(n, m) for n, m in zip(nodes, modules)],
        spatial=torch.tensor([_spatial_size(n) for n in nodes], dtype=torch.float),
        num_nodes=len(nodes),
    )


def _spatial_size(node: fx.Node) -> int:
    """Positions of the node's output per channel (``H * W`` of an image feature map; 1 for
    vectors, node features and values without a recorded shape)."""
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    return math.prod(shape[2:]) if shape is not None and len(shape) > 2 else 1


def _path(node: fx.Node) -> str:
    if node.op == "call_module":
        return module_path(str(node.target))
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack)[-1] if stack else ""


def _param_names(node: fx.Node, module: nn.Module | None) -> list[str]:
    if module is None:
        return []
    path = module_path(str(node.target))
    return [f"{path}.{name}".lstrip(".") for name in module.state_dict()]


__all__ = ["OP_TYPES", "to_computation_graph"]
