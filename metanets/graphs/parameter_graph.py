"""``nn.Module`` -> parameter graph (a node per neuron / channel, an edge per weight) and back.

The network is traced with ``torch.fx`` (:mod:`metanets.graphs.tracing`) and the fx graph is
walked like ``torch.fx.Interpreter``, one method per node kind; each fx value carries the
:class:`~metanets.graphs._values.Group` of neurons its features live on. Layers with parameters
are converted by handlers (:mod:`._torch_layers`, :mod:`._pyg_layers`), parameter-free
functions and methods by :mod:`._functional`. Column names: :mod:`metanets.graphs.features`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, fx, nn

from metanets.graphs import _functional, _pyg_layers, _torch_layers
from metanets.graphs._builder import GraphBuilder
from metanets.graphs._functional import describe
from metanets.graphs._values import Group, Pending, Value, shape_of
from metanets.graphs.errors import UnsupportedOperationError
from metanets.graphs.features import EdgeFeature, NodeType
from metanets.graphs.tracing import LEAF_ROOT, module_path, trace

if TYPE_CHECKING:
    from torch_geometric.data import Data

#: ``handler(walker, node, module, path) -> Value``: converts one leaf module
ModuleHandler = Callable[["ParameterGraphWalker", fx.Node, nn.Module, str], Value]


def module_handlers() -> dict[type[nn.Module], ModuleHandler]:
    """Leaf module class -> handler, for every supported layer."""
    return {**_torch_layers.HANDLERS, **_pyg_layers.handlers()}


def supported_operations(extra: Iterable[type[nn.Module]] = ()) -> list[str]:
    """Names of every module, function and method the converters understand."""
    modules = [cls.__name__ for cls in (*module_handlers(), *extra)]
    ops = _functional.no_features  # shape queries are no operations
    functions = [_functional.function_name(f) for f, h in _functional.FUNCTIONS.items() if h != ops]
    methods = [f"Tensor.{name}" for name, h in _functional.METHODS.items() if h != ops]
    return sorted({*modules, *functions, *methods})


class ParameterGraphWalker:
    """Walks a traced network and adds its neurons and weights to a :class:`GraphBuilder`.

    Args:
        gm: the traced network (with shapes, see :func:`~metanets.graphs.tracing.trace`).
        builder: the graph being built.
        handlers: leaf module class -> :data:`ModuleHandler`.
        passthrough: parameter-free leaf classes treated as elementwise ops.
        prefix: module path of ``gm`` inside the converted network (for nested walks).
    """

    def __init__(
        self,
        gm: fx.GraphModule,
        builder: GraphBuilder,
        handlers: Mapping[type[nn.Module], ModuleHandler],
        passthrough: tuple[type[nn.Module], ...] = (),
        prefix: str = "",
    ) -> None:
        self.gm, self.builder, self.handlers = gm, builder, handlers
        self.passthrough, self.prefix = passthrough, prefix
        self.env: dict[str, Value] = {}
        self._inputs: list[Value] = []
        self._input_nodes: dict[tuple[str, tuple[int, ...], int], Group] = {}
        self._called: set[str] = set()

    # running ---------------------------------------------------------------------------------
    def run(self, inputs: Sequence[Value] = ()) -> Value:
        """Walk every node; ``inputs`` replace the placeholders (default: network inputs)."""
        self._inputs = list(inputs)
        for node in self.gm.graph.nodes:
            self.env[node.name] = getattr(self, node.op)(node)
        return self.env["output"]

    def placeholder(self, node: fx.Node) -> Value:
        if self._inputs:
            return self._inputs.pop(0)
        return Pending(node.name)

    def get_attr(self, node: fx.Node) -> Value:
        value = _fetch_attr(self.gm, str(node.target))
        if isinstance(value, nn.Parameter):
            raise UnsupportedOperationError(
                f"parameter {node.target}", self.path_of(node), self.supported(),
                "free parameters outside a supported layer have no neurons")
        return None

    def call_module(self, node: fx.Node) -> Value:
        module = self.gm.get_submodule(str(node.target))
        path = self.qualify(str(node.target))
        if isinstance(module, self.passthrough):
            if next(iter(module.state_dict()), None) is not None:
                raise UnsupportedOperationError(
                    type(module).__name__, path, self.supported(),
                    "a leaf module with parameters needs an entry in handlers=")
            return _functional.passthrough(self, node)
        handler = _resolve_handler(type(module), self.handlers)
        if handler is None:
            raise UnsupportedOperationError(type(module).__name__, path, self.supported())
        self._check_once(module, path)
        return handler(self, node, module, path)

    def call_function(self, node: fx.Node) -> Value:
        handler = _functional.FUNCTIONS.get(node.target)
        if handler is None:
            name = _functional.function_name(node.target)
            raise UnsupportedOperationError(name, self.path_of(node), self.supported())
        return handler(self, node)

    def call_method(self, node: fx.Node) -> Value:
        handler = _functional.METHODS.get(str(node.target))
        if handler is None:
            raise UnsupportedOperationError(
                f"Tensor.{node.target}", self.path_of(node), self.supported())
        return handler(self, node)

    def output(self, node: fx.Node) -> Value:
        return self.value(node.args[0])

    # helpers for handlers --------------------------------------------------------------------
    def value(self, arg: Any) -> Value:
        """The walker value of an fx argument (nested lists / tuples / dicts follow)."""
        if isinstance(arg, fx.Node):
            return self.env[arg.name]
        if isinstance(arg, (list, tuple)):
            return type(arg)(self.value(a) for a in arg)
        if isinstance(arg, dict):
            return {k: self.value(v) for k, v in arg.items()}
        return None

    def group(self, arg: Any, dim: int, node: fx.Node) -> Group:
        """Neurons of ``arg`` along axis ``dim``, creating input neurons for network inputs."""
        dim = dim % len(shape_of(arg))
        value = self.value(arg)
        if isinstance(value, Pending):
            return self._input_group(value, arg, dim)
        if isinstance(value, Group) and value.dim == dim:
            return value
        found = f"features on axis {value.dim}" if isinstance(value, Group) else "no features"
        raise UnsupportedOperationError(
            self.describe(node), self.path_of(node), self.supported(),
            f"expects features on axis {dim} of its input, found {found}")

    def _input_group(self, value: Pending, arg: fx.Node, dim: int) -> Group:
        """Input neurons of a network input, shared by all readers that see the same shape."""
        key = (value.name, tuple(shape_of(arg)), dim)
        if key not in self._input_nodes:
            nodes = self.builder.add_nodes(shape_of(arg)[dim], NodeType.INPUT, 0)
            self._input_nodes[key] = Group(nodes, dim)
        return self._input_nodes[key]

    def qualify(self, target: str) -> str:
        """Module path in the converted network of a module target of ``gm``."""
        target = module_path(target)
        return f"{self.prefix}.{target}" if self.prefix and target else self.prefix or target

    def path_of(self, node: fx.Node) -> str:
        """Module path an fx node runs in (its target for modules)."""
        if node.op == "call_module":
            return self.qualify(str(node.target))
        stack = node.meta.get("nn_module_stack") or {}
        return self.qualify(list(stack)[-1] if stack else "")

    def describe(self, node: fx.Node) -> str:
        """Name of the op of an fx node (module class, function or ``Tensor.method``)."""
        if node.op == "call_module":
            return type(self.gm.get_submodule(str(node.target))).__name__
        return describe(node)

    def supported(self) -> list[str]:
        return supported_operations([*self.handlers, *self.passthrough])

    def walk_submodule(self, module: nn.Module, path: str, inputs: Sequence[Value],
                       example_inputs: Sequence[Any]) -> Value:
        """Convert a leaf's child network (GIN's MLP, or a single layer) with the same builder."""
        gm = trace(module, example_inputs, leaf_types=tuple(self.handlers))
        if not hasattr(gm, LEAF_ROOT):  # a single layer is checked when its graph calls it
            self._check_once(module, path)
        walker = ParameterGraphWalker(gm, self.builder, self.handlers, self.passthrough, path)
        walker._called = self._called
        return walker.run(inputs)

    def _check_once(self, module: nn.Module, path: str) -> None:
        stateful = next(iter(module.state_dict(keep_vars=True)), None) is not None
        if stateful and path in self._called:
            raise UnsupportedOperationError(
                type(module).__name__, path, self.supported(),
                "a layer called twice shares its weights, which one graph cannot show")
        self._called.add(path)


def _resolve_handler(cls: type, handlers: Mapping[type, ModuleHandler]) -> ModuleHandler | None:
    for base in cls.__mro__:
        if base in handlers:
            return handlers[base]
    return None


def _fetch_attr(root: nn.Module, target: str) -> Any:
    value: Any = root
    for atom in target.split("."):
        value = getattr(value, atom)
    return value


def _mark_outputs(builder: GraphBuilder, value: Value) -> None:
    if isinstance(value, Group):
        builder.set_node_type(value.nodes, NodeType.OUTPUT)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _mark_outputs(builder, item)
    elif isinstance(value, dict):
        for item in value.values():
            _mark_outputs(builder, item)


def _param_dtype(module: nn.Module) -> torch.dtype:
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)


def to_parameter_graph(
    module: nn.Module,
    example_inputs: Sequence[Any],
    *,
    kernel_width: int = 9,
    leaf_modules: Iterable[type[nn.Module]] = (),
    handlers: Mapping[type[nn.Module], ModuleHandler] | None = None,
) -> Data:
    r"""The parameter graph of ``module``: a node per input, hidden and output neuron or channel,
    an edge per weight (a convolution's kernel on its (in, out) channel edge), biases and
    normalisation parameters and statistics as node features. Columns and types:
    :mod:`metanets.graphs.features`; ``param_slots`` maps every entry back to its state_dict
    key for :func:`load_parameter_graph`.

    Representation choices: a residual ``a + b`` creates SUM nodes fed by IDENTITY edges from
    both operands; a normalisation layer creates NORM nodes (one IDENTITY edge per channel)
    that carry its parameters; ``flatten`` of ``(B, C, H, W)`` creates ``C*H*W`` POSITION nodes,
    each fed by an IDENTITY edge from its channel (nothing new when ``H*W == 1``); pooling,
    activations and dropout leave the neurons unchanged; ``cat`` concatenates neuron groups;
    attention heads are in ``node_head`` / ``edge_head``.

    Args:
        module: the network (any ``nn.Module`` that ``torch.fx`` can trace).
        example_inputs: positional inputs of ``module.forward`` (shapes matter, values do not).
        kernel_width: ``edge_attr`` columns; use the same value for graphs to be batched.
        leaf_modules: extra module classes not to trace inside; parameter-free ones convert as
            elementwise ops, others need an entry in ``handlers``.
        handlers: extra ``{module class: ModuleHandler}`` (see :mod:`._torch_layers`).

    Raises:
        UnsupportedOperationError: an op without conversion (names op, module path, the list).
        UntraceableModuleError: ``torch.fx`` cannot trace the network.
    """
    all_handlers = {**module_handlers(), **(handlers or {})}
    leaves = tuple(leaf_modules)
    passthrough = tuple(c for c in leaves if c not in all_handlers)
    gm = trace(module, example_inputs, leaf_types=(*all_handlers, *leaves))
    builder = GraphBuilder(kernel_width, _param_dtype(module))
    walker = ParameterGraphWalker(gm, builder, all_handlers, passthrough)
    _mark_outputs(builder, walker.run())
    data = builder.finish()
    _check_coverage(module, data)
    return data


def _check_coverage(module: nn.Module, data: Data) -> None:
    """Every state_dict entry must be in the graph exactly once."""
    covered: dict[str, int] = {}
    for slot in data.param_slots:
        covered[slot.name] = covered.get(slot.name, 0) + slot.numel
    state = module.state_dict(keep_vars=True)
    wrong = sorted(k for k, v in state.items() if covered.get(k, 0) != v.numel())
    wrong += sorted(set(covered) - set(state))
    if wrong:
        raise UnsupportedOperationError(
            f"state_dict entries {wrong}", "", supported_operations(),
            "not placed exactly once in the graph")


def load_parameter_graph(module: nn.Module, data: Data) -> nn.Module:
    """Write the (edited) graph features of ``data`` back into ``module`` (in place).

    ``module`` must have the architecture ``data`` was made from; the state_dict it ends with is
    bit-identical to the converted one if the features were not edited. Returns ``module``.
    """
    state = module.state_dict(keep_vars=True)
    _check_same_tensors(state, data)
    width = data.edge_attr.shape[1]
    with torch.no_grad():
        for slot in data.param_slots:
            target = state[slot.name].data.view(-1)[slot.offset:slot.offset + slot.numel]
            target.copy_(_slot_values(data, slot, width))
    return module


def _check_same_tensors(state: dict[str, Tensor], data: Data) -> None:
    """``ValueError`` naming the tensors of ``state`` whose sizes are not those the graph holds
    (``module`` is of another architecture: writing would scramble its weights)."""
    held: dict[str, int] = {}
    for slot in data.param_slots:
        held[slot.name] = held.get(slot.name, 0) + slot.numel
    wrong = sorted(name for name in held.keys() | state.keys()
                   if held.get(name) != (state[name].numel() if name in state else None))
    if wrong:
        shown = ", ".join(f"{name} ({held.get(name, 0)} entries in the graph, "
                          f"{state[name].numel() if name in state else 0} in the module)" for name in wrong[:3])
        raise ValueError(f"the module is not of the architecture the graph was made from: {shown}"
                         + (f" and {len(wrong) - 3} more" if len(wrong) > 3 else ""))


def _slot_values(data: Data, slot: Any, width: int) -> Tensor:
    if slot.where == "node":
        return data.x[slot.start:slot.start + slot.count, slot.column]
    if slot.where == "scalar":
        return data.scalars[slot.start:slot.start + 1]
    attr = data.edge_attr[slot.start:slot.start + slot.count, EdgeFeature.WEIGHT:]
    rows = slot.numel // slot.kernel
    return attr.reshape(rows, -1)[:, :slot.kernel].reshape(-1)
