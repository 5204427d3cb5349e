"""Errors of structured pruning (both are ``ValueError``: bad input, exit code 2 in the CLI)."""
from __future__ import annotations

import math


class UnreachableSpeedupError(ValueError):
    """The requested MACs speed-up exceeds what pruning every group to one channel gives.

    Attributes:
        requested: the requested speed-up.
        largest: the largest reachable speed-up.
    """

    def __init__(self, requested: float, largest: float) -> None:
        self.requested, self.largest = requested, largest
        shown = _rounded_down(largest)  # the speed-up named can be asked for
        super().__init__(
            f"speed-up {requested:g}x cannot be reached: the largest reachable speed-up is "
            f"{shown:.3f}x (every prunable channel group at one channel)"
        )


def _rounded_down(largest: float) -> float:
    """The largest multiple of 0.001 at most ``largest``: ``floor(largest * 1000)`` alone lands
    one step low where the product falls just below an integer (4.02 * 1000 = 4019.9999...)."""
    steps = math.floor(largest * 1000)
    return (steps + 1) / 1000 if (steps + 1) / 1000 <= largest else steps / 1000


class UnsupportedLayerError(ValueError):
    """A layer the channel pruner (torch-pruning's dependency graph or the GNN pruner) cannot
    handle.

    Attributes:
        layer: the layer's class (or class and tensor).
        path: its module path in the model.
    """

    def __init__(self, layer: str, path: str, supported: list[str] | None = None) -> None:
        self.layer, self.path = layer, path
        hint = f"; supported layers: {supported}" if supported else ""
        super().__init__(f"cannot prune layer {layer} at {path or '<root>'!r}{hint}")
