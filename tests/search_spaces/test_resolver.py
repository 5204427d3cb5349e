from __future__ import annotations

import pytest

from search_spaces.resolver import normalize, resolve, resolve_name


@pytest.mark.parametrize("spelling", ["graph_conv", "GraphConv", "graphconv", "Graph-Conv"])
def test_spellings_normalise_to_one_name(spelling: str) -> None:
    assert normalize(spelling) == "graphconv"
    assert resolve(spelling, {"graphconv": 1, "gcn": 2}) == 1


def test_objects_pass_through_and_unknown_names_list_choices() -> None:
    marker = object()
    assert resolve(marker, {"a": 1}) is marker  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"could not resolve strategy 'foo' among choices \['a', 'b'\]"):
        resolve("foo", {"b": 1, "a": 2}, "strategy")
    assert resolve_name("TPE", ["random", "tpe"]) == "tpe"
