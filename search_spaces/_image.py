"""What the image spaces (:mod:`search_spaces.cnn`, :mod:`search_spaces.mlp`) share: the checks
of their narrowed choices and the training settings a model zoo varies."""
from __future__ import annotations

from typing import Any

from search_spaces.base import Architecture, SearchSpace


class ImageSpace(SearchSpace):
    """A space of image classifiers whose architectures carry ``lr``, ``weight_decay`` and
    ``train_fraction`` (the share of the training images a run sees)."""

    levels = ("image",)

    def training_config(self, arch: Architecture) -> dict[str, float]:
        """Learning rate, weight decay and the training-data fraction."""
        return {**super().training_config(arch), "train_fraction": float(arch.train_fraction)}  # type: ignore[attr-defined]


def check_depths(min_depth: int, max_depth: int, most: int) -> None:
    """``ValueError`` unless ``1 <= min_depth <= max_depth <= most``."""
    if not 1 <= min_depth <= max_depth <= most:
        raise ValueError(
            f"depths must satisfy 1 <= min_depth ({min_depth}) <= max_depth ({max_depth}) <= {most}")


def check_subset(field: str, values: tuple[Any, ...], choices: tuple[Any, ...]) -> None:
    """``ValueError`` naming ``field``'s values and the valid ones unless they are a non-empty
    subset of ``choices``."""
    if not values or any(v not in choices for v in values):
        raise ValueError(f"{field} {list(values)!r} must be a non-empty subset of {list(choices)}")


def check_widths(widths: tuple[int, ...], unit: str) -> None:
    """``ValueError`` unless ``widths`` are positive counts of ``unit`` (channels, neurons)."""
    if not widths or min(widths) < 1:
        raise ValueError(f"widths {list(widths)!r} must be positive {unit} counts")


def check_fractions(train_fractions: tuple[float, ...]) -> None:
    """``ValueError`` unless every training-data fraction lies in (0, 1]."""
    if not train_fractions or not all(0 < f <= 1 for f in train_fractions):
        raise ValueError(f"train_fractions {list(train_fractions)!r} must lie in (0, 1]")
