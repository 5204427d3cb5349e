"""Symbolic tracing with ``torch.fx``: which modules are leaves, and shapes of every value."""
from __future__ import annotations

import inspect
from types import SimpleNamespace
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import fx, nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.passes.fake_tensor_prop import FakeTensorProp
from torch.fx.passes.shape_prop import ShapeProp

from metanets.graphs.errors import UntraceableModuleError


def _autowrap_functions() -> tuple[Callable[..., Any], ...]:
    """Functions traced as one call (their insides branch on tensors): PyG's global pools."""
    from torch_geometric.nn import global_add_pool, global_max_pool, global_mean_pool

    from search_spaces.gnn import readout

    return (global_add_pool, global_mean_pool, global_max_pool, readout)


class GraphTracer(fx.Tracer):
    """``fx.Tracer`` that keeps converter-known modules (``leaf_types``) and every PyG
    ``MessagePassing`` layer as leaves, besides torch's own ``torch.nn`` layers.

    Args:
        leaf_types: module classes not to trace inside.
    """

    def __init__(self, leaf_types: Iterable[type[nn.Module]] = ()) -> None:
        super().__init__(autowrap_functions=_autowrap_functions())
        from torch_geometric.nn import MessagePassing

        self.leaf_types = (MessagePassing, *leaf_types)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, self.leaf_types):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def trace(
    module: nn.Module, example_inputs: Sequence[Any], leaf_types: Iterable[type[nn.Module]] = ()
) -> fx.GraphModule:
    """Trace ``module`` and record every value's shape in ``node.meta["tensor_meta"]``.

    Raises:
        UntraceableModuleError: if symbolic tracing or the shape pass fails.
    """
    tracer = GraphTracer(leaf_types)
    if tracer.is_leaf_module(module, ""):
        gm = _leaf_root_graph(module, len(example_inputs))
        _propagate_shapes(gm, example_inputs)
        return gm
    try:
        graph = tracer.trace(module, concrete_args=_defaults_after(module, len(example_inputs)))
        gm = fx.GraphModule(tracer.root, graph, type(module).__name__)
    except Exception as error:  # noqa: BLE001 - any tracing failure gets the same advice
        raise UntraceableModuleError(type(module).__name__, error) from error
    _propagate_shapes(gm, example_inputs)
    return gm


#: attribute under which a network that is itself a leaf (a bare ``Conv2d``) is traced
LEAF_ROOT = "leaf_root"


def _leaf_root_graph(module: nn.Module, num_inputs: int) -> fx.GraphModule:
    """A one-op graph for a network that is itself a leaf (see :func:`module_path`)."""
    graph = fx.Graph()
    names = list(inspect.signature(module.forward).parameters)[:num_inputs]
    args = tuple(graph.placeholder(name) for name in names)
    graph.output(graph.call_module(LEAF_ROOT, args))
    return fx.GraphModule(nn.ModuleDict({LEAF_ROOT: module}), graph, type(module).__name__)


def module_path(target: str) -> str:
    """Path in the user's network of a traced module target (undoes :func:`_leaf_root_graph`)."""
    if target == LEAF_ROOT:
        return ""
    return target.removeprefix(LEAF_ROOT + ".")


def _defaults_after(module: nn.Module, given: int) -> dict[str, Any]:
    """Optional ``forward`` arguments not among the example inputs are fixed at their defaults
    (PyG's models branch on ``batch_size is None`` and the like)."""
    params = list(inspect.signature(module.forward).parameters.values())[given:]
    return {p.name: p.default for p in params
            if p.default is not inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _propagate_shapes(gm: fx.GraphModule, example_inputs: Sequence[Any]) -> None:
    """Record every value's shape in ``node.meta["tensor_meta"]`` (with ``.shape``).

    Shapes come from fake tensors (no arithmetic, so a 25M-parameter CNN costs a fraction of a
    second); networks with PyG layers, whose sizes depend on values, and any op fake tensors
    cannot run, take one real forward pass. Both run in eval mode, so BatchNorm statistics stay
    untouched.
    """
    modes = {m: m.training for m in gm.modules()}
    gm.eval()
    try:
        with torch.no_grad():
            fake = not _data_dependent(gm) and _fake_shapes(gm, example_inputs)
            fake or ShapeProp(gm).propagate(*example_inputs)
    finally:
        for m, mode in modes.items():
            m.training = mode


def _data_dependent(gm: fx.GraphModule) -> bool:
    """Whether the graph has PyG ops (message passing, pooling) whose sizes depend on values."""
    from torch_geometric.nn import MessagePassing

    functions = set(_autowrap_functions())
    return any(
        node.op == "call_module" and isinstance(gm.get_submodule(str(node.target)), MessagePassing)
        or node.op == "call_function" and node.target in functions
        for node in gm.graph.nodes)


def _fake_shapes(gm: fx.GraphModule, example_inputs: Sequence[Any]) -> bool:
    try:
        FakeTensorProp(gm, FakeTensorMode(allow_non_fake_inputs=True)).propagate(*example_inputs)
    except Exception:  # noqa: BLE001 - any op fake tensors cannot run: use real tensors
        return False
    for node in gm.graph.nodes:
        value = node.meta.pop("val", None)
        if isinstance(value, (torch.Tensor, list, tuple)):
            node.meta["tensor_meta"] = _shapes(value)
    return True


def _shapes(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return SimpleNamespace(shape=value.shape)
    if isinstance(value, (list, tuple)):
        return type(value)(_shapes(v) for v in value)
    return value
