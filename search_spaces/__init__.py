"""What can be built: search spaces, their architectures and the models built from them."""
from __future__ import annotations

from typing import Any

from search_spaces.base import Architecture, RandomTrial, SearchSpace
from search_spaces.cnn import CNNArchitecture, CNNSpace
from search_spaces.gnn import GNNArchitecture, GNNSpace, LayerSpec
from search_spaces.mlp import MLPArchitecture, MLPSpace
from search_spaces.nasbench_graph import NasBenchGraphArchitecture, NasBenchGraphSpace
from search_spaces.resolver import normalize, require_name, resolve, resolve_name

#: canonical space name -> class; extend by adding a line, not by registering at import time
SPACES: dict[str, type[SearchSpace]] = {
    "gnn": GNNSpace,
    "nasbench-graph": NasBenchGraphSpace,
    "cnn": CNNSpace,
    "mlp": MLPSpace,
}


def get_space(name: str | SearchSpace, **options: Any) -> SearchSpace:
    """Resolve a space by name (any spelling) and build it with ``options`` (e.g. ``convs`` of
    the GNN space); a given space is returned as it is, a space class of ``SPACES`` built.

    Raises:
        TypeError: ``name`` is neither a string, a space nor a space class.
        ValueError: no space has that name, or the space takes no such option.
    """
    if isinstance(name, SearchSpace):
        return name
    if name not in SPACES.values():
        require_name(name, SPACES, "space", "a SearchSpace")
    cls = resolve(name, SPACES, "space")
    options = {key: value for key, value in options.items() if value is not None}
    try:
        return cls(**options)
    except TypeError:
        raise ValueError(
            f"space {cls.name!r} takes no option(s) {sorted(options)}"
        ) from None


__all__ = [
    "Architecture", "CNNArchitecture", "CNNSpace", "GNNArchitecture", "GNNSpace", "LayerSpec",
    "MLPArchitecture", "MLPSpace", "NasBenchGraphArchitecture", "NasBenchGraphSpace",
    "RandomTrial", "SPACES", "SearchSpace", "get_space", "normalize", "resolve", "resolve_name",
]
