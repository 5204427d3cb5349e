"""Structured pruning: channel groups removed to reach a MACs speed-up, ranked by L2 group norm
(magnitude), at random, or by group norm after a metanetwork rewrote the weights to be sparse
(Meta Pruning via Graph Metanetworks).

torch models go through torch-pruning's dependency graph (:mod:`._torch`); models of the GNN
space through a small pruner of their own (:mod:`._gnn`), because the dependency graph does not
know PyG's message passing.
"""
from __future__ import annotations

from metanets.pruning.core import (
    IMPORTANCES,
    PruneResult,
    count_macs,
    count_params,
    prune_model,
)
from metanets.pruning.errors import UnreachableSpeedupError, UnsupportedLayerError

__all__ = [
    "IMPORTANCES", "PruneResult", "UnreachableSpeedupError", "UnsupportedLayerError",
    "count_macs", "count_params", "prune_model",
]
