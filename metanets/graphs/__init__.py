"""Networks as graphs: any traceable ``nn.Module`` to a parameter graph (neurons as nodes,
weights as edges) and a computation graph (operations as nodes), both
``torch_geometric.data.Data``, and parameter graphs back into modules."""
from __future__ import annotations

from metanets.graphs.computation_graph import OP_TYPES, to_computation_graph
from metanets.graphs.errors import UnsupportedOperationError, UntraceableModuleError
from metanets.graphs.features import (
    EdgeFeature,
    EdgeType,
    NodeFeature,
    NodeType,
    OpEdgeFeature,
    OpFeature,
)
from metanets.graphs.parameter_graph import (
    ModuleHandler,
    load_parameter_graph,
    supported_operations,
    to_parameter_graph,
)

__all__ = [
    "OP_TYPES", "EdgeFeature", "EdgeType", "ModuleHandler", "NodeFeature", "NodeType",
    "OpEdgeFeature", "OpFeature", "UnsupportedOperationError", "UntraceableModuleError",
    "load_parameter_graph", "supported_operations", "to_computation_graph", "to_parameter_graph",
]
