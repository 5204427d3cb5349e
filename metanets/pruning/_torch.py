"""Channel pruning of plain torch models with torch-pruning's dependency graph.

torch-pruning (Fang et al., "DepGraph: Towards Any Structural Pruning", CVPR 2023) traces the
model's autograd graph and groups every tensor slice that must go together when one channel is
removed (residual adds, concatenations, normalisation layers). We take its groups and their
channel importances, and choose the channels ourselves (:mod:`metanets.pruning.core` ranks all
groups together to hit a MACs target).
"""
from __future__ import annotations

from typing import Any

import torch
import torch_pruning as tp
from torch import Tensor, nn

from metanets.pruning.errors import UnsupportedLayerError
from nas.train import kept_modes

#: leaf layers with parameters torch-pruning's dependency graph knows how to prune
SUPPORTED: tuple[type[nn.Module], ...] = (
    nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._BatchNorm, nn.LayerNorm,
    nn.GroupNorm, nn.modules.instancenorm._InstanceNorm, nn.PReLU, nn.Embedding,
)
ROOT_TYPES = [nn.modules.conv._ConvNd, nn.Linear]


def check_layers(model: nn.Module) -> None:
    """``UnsupportedLayerError`` naming the first layer with own parameters that torch-pruning
    has no pruning function for (it would silently keep stale shapes)."""
    for path, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if own and not isinstance(module, SUPPORTED):
            names = sorted(cls.__name__ for cls in SUPPORTED)
            kind = type(module)  # PyG's Linear is not the Linear named as supported
            name = f"{kind.__module__}.{kind.__qualname__}" if kind.__name__ in names else kind.__name__
            raise UnsupportedLayerError(name, path, names)


def output_layer(model: nn.Module, inputs: tuple[Any, ...]) -> nn.Module:
    """The last Linear / Conv layer run by a forward pass: its outputs (classes) stay."""
    order: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda mod, i, o: order.append(mod))
             for m in model.modules() if isinstance(m, tuple(ROOT_TYPES))]
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for hook in hooks:
            hook.remove()
    if not order:
        raise UnsupportedLayerError(type(model).__name__, "", ["a model with a Linear or Conv"])
    return order[-1]


def _groups(model: nn.Module, inputs: tuple[Any, ...]) -> tuple[tp.DependencyGraph, list]:
    with kept_modes(model):
        model.eval()
        graph = tp.DependencyGraph().build_dependency(
            model, example_inputs=inputs if len(inputs) > 1 else inputs[0])
        ignored = [output_layer(model, inputs)]
        groups = list(graph.get_all_groups(ignored_layers=ignored, root_module_types=ROOT_TYPES))
    return graph, groups


class TorchBackend:
    """Channel groups of a torch model from torch-pruning's dependency graph."""

    def __init__(self, inputs: tuple[Any, ...]) -> None:
        self.inputs = inputs
        self._model: nn.Module | None = None
        self._graph: tp.DependencyGraph | None = None
        self._roots: list[tuple[nn.Module, Any]] = []

    def scores(self, model: nn.Module) -> list[Tensor]:
        """Per-channel L2 group norm (unnormalised) of every prunable group."""
        check_layers(model)
        _, groups = _groups(model, self.inputs)
        importance = tp.importance.GroupMagnitudeImportance(p=2, normalizer=None)
        with torch.no_grad():
            return [importance(group).detach().float().cpu() for group in groups]

    def layer_order(self, model: nn.Module) -> list[int]:
        """Group indices by the position of their root layer in ``model`` (torch-pruning lists
        the groups from the output back; the pruning itself keeps its order)."""
        _, groups = _groups(model, self.inputs)
        position = {module: i for i, module in enumerate(model.modules())}
        return sorted(range(len(groups)), key=lambda g: position[groups[g][0].dep.target.module])

    def apply(self, model: nn.Module, drops: list[Tensor]) -> None:
        """Remove the ``drops`` channels (current positions) of each group, in place. The
        dependency graph of ``model`` is built on the first call and reused (it follows the
        pruned shapes)."""
        if self._model is not model:
            self._model = model
            self._graph, groups = _groups(model, self.inputs)
            self._roots = [(g[0].dep.target.module, g[0].dep.handler) for g in groups]
        for (module, handler), drop in zip(self._roots, drops, strict=True):
            if not len(drop):
                continue
            group = self._graph.get_pruning_group(module, handler, drop.tolist())
            if not self._graph.check_pruning_group(group):
                raise UnsupportedLayerError(type(module).__name__, self._graph._module2name[module])
            group.prune()
