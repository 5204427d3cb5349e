"""Adapter of the GNN channel pruner to the backend interface of :mod:`.core`."""
from __future__ import annotations

from torch import Tensor, nn

from metanets.pruning import _gnn


class GNNBackend:
    """Channel groups of a GNN-space model (see :mod:`metanets.pruning._gnn`)."""

    def scores(self, model: nn.Module) -> list[Tensor]:
        return _gnn.unit_scores(_gnn.build_groups(model))

    def apply(self, model: nn.Module, drops: list[Tensor]) -> None:
        _gnn.prune_groups(model, _gnn.build_groups(model), drops)

    def layer_order(self, model: nn.Module) -> list[int]:
        """The groups by position in the model: they come in layer order already."""
        return list(range(len(_gnn.build_groups(model))))
