from __future__ import annotations

import re

import pytest

from search_spaces import GNNSpace, get_space
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


@pytest.mark.parametrize("value", [5, None, b"gnn", ["gnn"]])
def test_get_space_refuses_what_is_neither_a_name_nor_a_space(value) -> None:
    # resolve passes objects through, and get_space then failed on `<int>.name` (AttributeError)
    choices = r"a name among \['cnn', 'gnn', 'mlp', 'nasbench-graph'\] or a SearchSpace"
    with pytest.raises(TypeError, match=rf"^space must be {choices}, got {re.escape(repr(value))} "):
        get_space(value)


def test_get_space_builds_a_space_class_and_returns_a_space_as_it_is() -> None:
    space = GNNSpace(convs=("gcn",))
    assert get_space(space) is space
    assert get_space(GNNSpace, convs=("sage",)).convs == ("sage",)
