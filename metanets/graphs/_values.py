"""What the walker knows about each fx value: which neurons carry its features."""
from __future__ import annotations

import dataclasses
from typing import Any, Union

import torch
from torch import Tensor, fx


@dataclasses.dataclass(frozen=True)
class Group:
    """The neurons of a tensor: ``nodes[c]`` is the node of feature ``c`` along axis ``dim``."""

    nodes: Tensor   # (C,) node ids
    dim: int        # feature axis (non-negative)

    def __len__(self) -> int:
        return len(self.nodes)


@dataclasses.dataclass(frozen=True)
class Pending:
    """A network input (or a reshaped one) whose neurons exist once a layer reads it."""

    name: str


Value = Union[Group, Pending, None, tuple[Any, ...], list[Any], dict[str, Any]]


def shape_of(arg: Any) -> torch.Size:
    """Shape of an fx value, from the shape pass (:func:`~metanets.graphs.tracing.trace`)."""
    meta = arg.meta.get("tensor_meta") if isinstance(arg, fx.Node) else None
    if meta is None or not hasattr(meta, "shape"):
        raise ValueError(f"no tensor shape recorded for {arg}")
    return meta.shape
