"""GraphNAS-style macro search space over PyG convolutions.

An architecture is a stack of 1-4 message-passing layers, each with its own convolution, width,
attention heads, activation, neighbourhood aggregation, normalisation and input dropout; a skip
scheme across layers (none, residual, jumping knowledge); a readout for graph-level tasks; and
the optimiser's learning rate and weight decay. Every model ends in one linear classifier, whose
input is dropped out at the last layer's rate.

Reference: Gao et al., "GraphNAS: Graph Neural Architecture Search with Reinforcement
Learning", IJCAI 2020 (the per-layer macro space); Xu et al., "Representation Learning on Graphs
with Jumping Knowledge Networks", ICML 2018.
"""
from __future__ import annotations

import dataclasses
import numbers
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import Tensor, nn

from search_spaces.base import Architecture, SearchSpace, TaskLevel
from search_spaces.resolver import resolve_name
from search_spaces.static_graph import (
    StaticGraph, input_dropout, sparse_features, static_conv_forward,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    import optuna
    from torch_geometric.typing import Adj

#: convolutions of the space, by canonical name
CONVS: tuple[str, ...] = (
    "gcn", "gat", "gatv2", "sage", "gin", "graph", "cheb", "arma", "sg", "tag", "transformer",
    "linear",
)
#: convolutions with several attention heads (width is split across heads)
ATTENTION_CONVS: frozenset[str] = frozenset({"gat", "gatv2", "transformer"})
#: convolutions whose neighbourhood aggregation is a choice
AGGREGATING_CONVS: frozenset[str] = frozenset({"sage", "gin", "graph"})
WIDTHS: tuple[int, ...] = (16, 32, 64, 128, 256)
HEADS: tuple[int, ...] = (1, 2, 4, 8)
ACTIVATIONS: tuple[str, ...] = (
    "relu", "elu", "leaky_relu", "gelu", "tanh", "sigmoid", "softplus", "linear",
)
AGGREGATIONS: tuple[str, ...] = ("add", "mean", "max")
NORMS: tuple[str, ...] = ("none", "batch", "layer")
DROPOUTS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
SKIPS: tuple[str, ...] = ("none", "residual", "jk_cat")
READOUTS: tuple[str, ...] = ("mean", "sum", "max")
LEARNING_RATES: tuple[float, ...] = (5e-4, 1e-3, 5e-3, 1e-2, 2e-2)
WEIGHT_DECAYS: tuple[float, ...] = (0.0, 5e-5, 5e-4, 5e-3)
MAX_DEPTH = 4

DEFAULT_AGGREGATION = "add"


def _check_choice(field: str, value: Any, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{field} {value!r} is not among the choices {list(choices)}")


def _whole(field: str, value: Any) -> int:
    """``value`` as an ``int`` (``64.0`` -> ``64``); ``ValueError`` naming ``field`` if it is not
    a whole number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != int(value):
        raise ValueError(f"{field} {value!r} must be a whole number")
    return int(value)


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """One message-passing layer: ``dropout -> conv -> norm -> activation``."""

    conv: str = "gcn"          # one of CONVS
    width: int = 64            # output channels (all heads together)
    heads: int = 1             # attention heads; 1 for non-attention convs
    activation: str = "relu"   # one of ACTIVATIONS
    aggregation: str = "add"   # one of AGGREGATIONS; "add" for convs without the choice
    norm: str = "none"         # one of NORMS
    dropout: float = 0.5       # dropout on the layer's input features

    def __post_init__(self) -> None:
        _check_choice("conv", self.conv, CONVS)
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("aggregation", self.aggregation, AGGREGATIONS)
        _check_choice("norm", self.norm, NORMS)
        # one type per field, so that equal layers hash equally (64 and 64.0, 0 and 0.0)
        object.__setattr__(self, "width", _whole("width", self.width))
        object.__setattr__(self, "heads", _whole("heads", self.heads))
        object.__setattr__(self, "dropout", float(self.dropout))
        if self.width < 1 or self.heads < 1 or self.width % self.heads:
            raise ValueError(
                f"width {self.width} must be a positive multiple of heads {self.heads}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout {self.dropout} must lie in [0, 1)")

    def canonical(self) -> LayerSpec:
        """The same layer with choices that do not apply to its conv set to their defaults."""
        heads = self.heads if self.conv in ATTENTION_CONVS else 1
        aggregation = self.aggregation if self.conv in AGGREGATING_CONVS else DEFAULT_AGGREGATION
        return dataclasses.replace(self, heads=heads, aggregation=aggregation)


@dataclasses.dataclass(frozen=True)
class GNNArchitecture(Architecture):
    """A point of the GNN macro space (see the module docstring)."""

    layers: tuple[LayerSpec, ...] = (LayerSpec(), LayerSpec())  # 1..MAX_DEPTH layers
    skip: str = "none"            # one of SKIPS: how layer outputs combine
    readout: str = "mean"         # one of READOUTS: node -> graph pooling (graph tasks only)
    lr: float = 5e-3              # Adam learning rate
    weight_decay: float = 5e-4    # Adam weight decay

    def __post_init__(self) -> None:
        layers = tuple(
            layer if isinstance(layer, LayerSpec) else LayerSpec(**layer) for layer in self.layers
        )
        if not 1 <= len(layers) <= MAX_DEPTH:
            raise ValueError(f"depth {len(layers)} must lie in [1, {MAX_DEPTH}]")
        object.__setattr__(self, "layers", tuple(layer.canonical() for layer in layers))
        _check_choice("skip", self.skip, SKIPS)
        _check_choice("readout", self.readout, READOUTS)
        object.__setattr__(self, "lr", float(self.lr))  # one type per field: see LayerSpec
        object.__setattr__(self, "weight_decay", float(self.weight_decay))
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(f"lr {self.lr} must be > 0 and weight_decay {self.weight_decay} >= 0")

    @property
    def depth(self) -> int:
        return len(self.layers)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GNNArchitecture:
        try:
            fields = dict(data)
            fields["layers"] = tuple(LayerSpec(**layer) for layer in fields["layers"])
            return cls(**fields)
        except (KeyError, TypeError) as error:
            raise ValueError(f"malformed GNN architecture spec {data!r}: {error}") from error

    def short(self) -> str:
        """A one-line summary such as ``gcn64-gat128h4 res``."""
        parts = []
        for layer in self.layers:
            heads = f"h{layer.heads}" if layer.heads > 1 else ""
            parts.append(f"{layer.conv}{layer.width}{heads}")
        return "-".join(parts) + ("" if self.skip == "none" else f" {self.skip}")


class GNNSpace(SearchSpace):
    """GraphNAS-style macro space (see the module docstring).

    Args:
        max_depth: largest number of message-passing layers (1..4).
        convs: the convolutions to search over (a subset of :data:`CONVS`, any spelling; a
            string is a comma-separated list, as ``--convs`` takes it).
    """

    name = "gnn"

    def __init__(self, max_depth: int = MAX_DEPTH, convs: str | Sequence[str] | None = None) -> None:
        if not isinstance(max_depth, int) or not 1 <= max_depth <= MAX_DEPTH:
            raise ValueError(f"max_depth {max_depth!r} must be an integer in [1, {MAX_DEPTH}]")
        self.max_depth = max_depth
        if isinstance(convs, str):  # "gcn,gat" is two convs, not the letters of one
            convs = [name.strip() for name in convs.split(",") if name.strip()]
        self.convs = tuple(resolve_name(c, CONVS, "conv", suffix="conv") for c in (convs or CONVS))

    def suggest(self, trial: optuna.trial.BaseTrial) -> GNNArchitecture:
        depth = trial.suggest_int("depth", 1, self.max_depth)
        layers = tuple(self._suggest_layer(trial, i) for i in range(depth))
        return GNNArchitecture(
            layers=layers,
            skip=trial.suggest_categorical("skip", SKIPS) if depth > 1 else "none",
            readout=trial.suggest_categorical("readout", READOUTS),
            lr=trial.suggest_categorical("lr", LEARNING_RATES),
            weight_decay=trial.suggest_categorical("weight_decay", WEIGHT_DECAYS),
        )

    @staticmethod
    def trial_params(arch: GNNArchitecture) -> dict[str, Any]:
        """The trial parameters under which :meth:`suggest` returns ``arch`` (its inverse):
        ``suggest(optuna.trial.FixedTrial(trial_params(arch))) == arch``."""
        params: dict[str, Any] = {"depth": arch.depth}
        for i, layer in enumerate(arch.layers):
            params[f"l{i}_conv"] = layer.conv
            if layer.conv in ATTENTION_CONVS:
                params[f"l{i}_heads"] = layer.heads
            if layer.conv in AGGREGATING_CONVS:
                params[f"l{i}_aggregation"] = layer.aggregation
            params.update({
                f"l{i}_width": layer.width, f"l{i}_activation": layer.activation,
                f"l{i}_norm": layer.norm, f"l{i}_dropout": layer.dropout,
            })
        if arch.depth > 1:
            params["skip"] = arch.skip
        params.update(readout=arch.readout, lr=arch.lr, weight_decay=arch.weight_decay)
        return params

    def _suggest_layer(self, trial: optuna.trial.BaseTrial, i: int) -> LayerSpec:
        conv = trial.suggest_categorical(f"l{i}_conv", self.convs)
        heads = trial.suggest_categorical(f"l{i}_heads", HEADS) if conv in ATTENTION_CONVS else 1
        aggregation = (
            trial.suggest_categorical(f"l{i}_aggregation", AGGREGATIONS)
            if conv in AGGREGATING_CONVS
            else DEFAULT_AGGREGATION
        )
        return LayerSpec(
            conv=conv,
            width=trial.suggest_categorical(f"l{i}_width", WIDTHS),
            heads=heads,
            activation=trial.suggest_categorical(f"l{i}_activation", ACTIVATIONS),
            aggregation=aggregation,
            norm=trial.suggest_categorical(f"l{i}_norm", NORMS),
            dropout=trial.suggest_categorical(f"l{i}_dropout", DROPOUTS),
        )

    def build(
        self, arch: Architecture, in_channels: int, out_channels: int, level: TaskLevel = "node"
    ) -> GNN:
        self.check_level(level)
        if not isinstance(arch, GNNArchitecture):
            raise TypeError(f"space 'gnn' builds GNNArchitecture, not {type(arch).__name__}")
        return GNN(arch, in_channels, out_channels, level)

    def architecture_from_dict(self, data: dict[str, Any]) -> GNNArchitecture:
        return GNNArchitecture.from_dict(data)

    def __repr__(self) -> str:
        return f"GNNSpace(max_depth={self.max_depth}, convs={list(self.convs)})"


class LinearConv(nn.Module):
    """A plain per-node linear layer with the call signature of a PyG convolution."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.lin = nn.Linear(in_channels, out_channels)

    def reset_parameters(self) -> None:
        self.lin.reset_parameters()

    def forward(self, x: Tensor, edge_index: Adj) -> Tensor:  # noqa: ARG002 - graph unused
        return self.lin(x)  # (N, out)

    def __repr__(self) -> str:
        return f"LinearConv({self.lin.in_features}, {self.lin.out_features})"


def make_conv(layer: LayerSpec, in_channels: int, level: TaskLevel = "node") -> nn.Module:
    """Build the PyG convolution of ``layer`` with ``layer.width`` output channels."""
    import torch_geometric.nn as pyg

    out, heads, aggr = layer.width, layer.heads, layer.aggregation
    if layer.conv == "gcn":
        return pyg.GCNConv(in_channels, out)
    if layer.conv == "gat":
        return pyg.GATConv(in_channels, out // heads, heads=heads)
    if layer.conv == "gatv2":
        return pyg.GATv2Conv(in_channels, out // heads, heads=heads)
    if layer.conv == "transformer":
        return pyg.TransformerConv(in_channels, out // heads, heads=heads)
    if layer.conv == "sage":
        return pyg.SAGEConv(in_channels, out, aggr=aggr)
    if layer.conv == "gin":
        mlp = nn.Sequential(nn.Linear(in_channels, out), nn.ReLU(), nn.Linear(out, out))
        return pyg.GINConv(mlp, aggr=aggr)
    if layer.conv == "graph":
        return pyg.GraphConv(in_channels, out, aggr=aggr)
    if layer.conv == "cheb":
        return pyg.ChebConv(in_channels, out, K=2)
    if layer.conv == "arma":
        return pyg.ARMAConv(in_channels, out, num_stacks=1, num_layers=1)
    if layer.conv == "sg":
        return pyg.SGConv(in_channels, out, K=2)
    if layer.conv == "tag":
        return pyg.TAGConv(in_channels, out, K=2)
    if layer.conv == "linear":
        return LinearConv(in_channels, out)
    raise ValueError(f"could not resolve conv {layer.conv!r} among choices {list(CONVS)}")


def make_activation(name: str) -> nn.Module:
    """``nn.Module`` for an activation name of :data:`ACTIVATIONS`."""
    modules = {
        "relu": nn.ReLU, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU,
        "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "softplus": nn.Softplus, "linear": nn.Identity,
    }
    return modules[resolve_name(name, ACTIVATIONS, "activation")]()


def make_norm(name: str, channels: int) -> nn.Module:
    """Per-node normalisation over ``channels`` features."""
    if name == "batch":
        return nn.BatchNorm1d(channels)
    if name == "layer":
        return nn.LayerNorm(channels)
    return nn.Identity()


class GNNLayer(nn.Module):
    """``dropout -> conv -> norm -> activation`` with an optional residual connection.

    Args:
        layer: the layer's choices.
        in_channels: input features per node.
        residual: add the (projected if needed) input to the output.

    Shapes:
        - input: node features ``(N, in_channels)``, edge indices ``(2, E)``
        - output: node features ``(N, layer.width)``
    """

    def __init__(self, layer: LayerSpec, in_channels: int, residual: bool = False) -> None:
        super().__init__()
        self.spec = layer
        self.dropout = nn.Dropout(layer.dropout)
        self.conv = make_conv(layer, in_channels)
        self.norm = make_norm(layer.norm, layer.width)
        self.act = make_activation(layer.activation)
        self.res: nn.Module | None = None
        if residual:
            self.res = (
                nn.Identity() if in_channels == layer.width
                else nn.Linear(in_channels, layer.width, bias=False)
            )

    def forward(self, x: Tensor, edge_index: Adj) -> Tensor:
        h = self.act(self.norm(self.conv(self.dropout(x), edge_index)))  # (N, width)
        if self.res is not None:
            h = h + self.res(x)
        return h

    def forward_static(self, x: Tensor, graph: StaticGraph) -> Tensor:
        """:meth:`forward` on a fixed graph with cached propagation; ``x`` may be sparse (CSR),
        in which case dropout draws only over its stored values (see
        :mod:`search_spaces.static_graph`). Same parameters, same function."""
        dropped = input_dropout(x, self.dropout.p, self.training)
        h = self.act(self.norm(static_conv_forward(self.conv, self.spec, dropped, graph)))
        if self.res is not None:
            h = h + self.res(x)
        return h

    def __repr__(self) -> str:
        return f"GNNLayer({self.conv}, norm={self.spec.norm}, act={self.spec.activation})"


class GNN(nn.Module):
    r"""A model of the GNN macro space: message-passing layers, an optional jumping-knowledge
    combination, a readout for graph tasks and a linear classifier.

    Args:
        arch: the architecture.
        in_channels: input node features.
        out_channels: classes.
        level: ``"node"`` (a prediction per node) or ``"graph"`` (per graph, after readout).

    Shapes:
        - input: ``x (N, in_channels)``, ``edge_index (2, E)``, ``batch (N,)`` for graph tasks
        - output: ``(N, out_channels)`` for node tasks, ``(B, out_channels)`` for graph tasks
    """

    def __init__(
        self, arch: GNNArchitecture, in_channels: int, out_channels: int, level: TaskLevel = "node"
    ) -> None:
        super().__init__()
        self.arch, self.level = arch, level
        self.in_channels, self.out_channels = in_channels, out_channels
        self.layers = nn.ModuleList()
        channels = in_channels
        for i, layer in enumerate(arch.layers):
            residual = arch.skip == "residual" and i > 0
            self.layers.append(GNNLayer(layer, channels, residual=residual))
            channels = layer.width
        if arch.skip == "jk_cat":
            channels = sum(layer.width for layer in arch.layers)
        self.head_dropout = nn.Dropout(arch.layers[-1].dropout)  # the last layer's rate
        self.classifier = nn.Linear(channels, out_channels)

    def reset_parameters(self) -> None:
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def embed(self, x: Tensor, edge_index: Adj, batch: Tensor | None = None) -> Tensor:
        """Node embeddings (node tasks) or graph embeddings (graph tasks) before the classifier."""
        outputs = []
        for layer in self.layers:
            x = layer(x, edge_index)  # (N, width)
            outputs.append(x)
        if self.arch.skip == "jk_cat":
            x = torch.cat(outputs, dim=-1)  # (N, sum of widths)
        if self.level == "graph":
            x = readout(x, batch, self.arch.readout)  # (B, F)
        return x

    def forward(self, x: Tensor, edge_index: Adj, batch: Tensor | None = None) -> Tensor:
        return self.classifier(self.head_dropout(self.embed(x, edge_index, batch)))

    def fixed_graph_forward(self, x: Tensor, edge_index: Tensor) -> Callable[[], Tensor]:
        """A function computing ``self(x, edge_index)`` (node tasks) for repeated calls on one
        fixed graph, with everything that depends only on the graph computed once: sparse input
        features when mostly zero, cached normalised propagation matrices.

        The result follows the model's train/eval mode and current parameters at each call;
        with dropout off it equals ``self(x, edge_index)`` up to float rounding. Only valid while
        ``x`` and ``edge_index`` do not change (transductive node tasks).

        Shapes:
            - input: ``x (N, in_channels)``, ``edge_index (2, E)``
            - output of the returned function: ``(N, out_channels)``
        """
        if self.level != "node":
            raise ValueError(f"fixed_graph_forward is for node-level models, not {self.level!r}")
        graph = StaticGraph(edge_index, x.size(0))
        inputs = sparse_features(x)
        return lambda: self._forward_static(inputs, graph)

    def _forward_static(self, x: Tensor, graph: StaticGraph) -> Tensor:
        outputs = []
        for layer in self.layers:
            x = layer.forward_static(x, graph)  # (N, width)
            outputs.append(x)
        if self.arch.skip == "jk_cat":
            x = torch.cat(outputs, dim=-1)  # (N, sum of widths)
        return self.classifier(input_dropout(x, self.head_dropout.p, self.training))

    def __repr__(self) -> str:
        return (
            f"GNN({self.arch.short()}, in={self.in_channels}, out={self.out_channels}, "
            f"level={self.level})"
        )


def readout(x: Tensor, batch: Tensor | None, how: str) -> Tensor:
    """Pool node features ``(N, F)`` into graph features ``(B, F)``."""
    from torch_geometric.nn import global_add_pool, global_max_pool, global_mean_pool

    pools = {"mean": global_mean_pool, "sum": global_add_pool, "max": global_max_pool}
    return pools[how](x, batch)
