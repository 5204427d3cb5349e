"""What can be built: search spaces, their architectures and the models built from them."""
from __future__ import annotations

from search_spaces.base import Architecture, RandomTrial, SearchSpace
from search_spaces.gnn import GNNArchitecture, GNNSpace, LayerSpec
from search_spaces.nasbench_graph import NasBenchGraphArchitecture, NasBenchGraphSpace
from search_spaces.resolver import normalize, resolve, resolve_name

#: canonical space name -> class; extend by adding a line, not by registering at import time
SPACES: dict[str, type[SearchSpace]] = {
    "gnn": GNNSpace,
    "nasbench-graph": NasBenchGraphSpace,
}


def get_space(name: str | SearchSpace) -> SearchSpace:
    """Resolve a space by name (any spelling) or return a given space as it is."""
    if isinstance(name, SearchSpace):
        return name
    return resolve(name, SPACES, "space")()


__all__ = [
    "Architecture", "GNNArchitecture", "GNNSpace", "LayerSpec", "NasBenchGraphArchitecture",
    "NasBenchGraphSpace", "RandomTrial", "SPACES",
    "SearchSpace", "get_space", "normalize", "resolve", "resolve_name",
]
