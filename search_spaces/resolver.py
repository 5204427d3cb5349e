"""Name resolution in the style of ``torch_geometric.resolver``.

A name is accepted as a string in any of its spellings (``'graph_conv'``, ``'GraphConv'`` and
``'graphconv'`` are one name) and resolved against an explicit mapping of choices; there is no
global mutable registry.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

T = TypeVar("T")


def normalize(name: str) -> str:
    """Lower-case a name and drop separators: ``'Graph-Conv_'`` -> ``'graphconv'``."""
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def resolve(query: str | T, choices: Mapping[str, T], kind: str = "name", suffix: str = "") -> T:
    """Return ``choices[query]`` under normalised names.

    Args:
        query: a name in any spelling, or an object that is already one of the values (it is
            returned as it is).
        choices: canonical name -> value.
        kind: what is being resolved, used in the error message ("dataset", "strategy", ...).
        suffix: a class-name suffix that may be dropped, as PyG does (``"GraphConv"`` resolves
            to ``"graph"`` with ``suffix="conv"``).

    Raises:
        ValueError: ``could not resolve 'foo' among choices [...]`` when nothing matches.
    """
    if not isinstance(query, str):
        return query
    by_key = {normalize(key): value for key, value in choices.items()}
    key = normalize(query)
    if key in by_key:
        return by_key[key]
    if suffix and key.endswith(normalize(suffix)) and key[: -len(normalize(suffix))] in by_key:
        return by_key[key[: -len(normalize(suffix))]]
    raise ValueError(f"could not resolve {kind} {query!r} among choices {sorted(choices)}")


def require_name(
    query: object, choices: Mapping[str, object], kind: str, alternative: str | None = None,
) -> None:
    """``TypeError`` naming ``query`` and the names of ``choices`` unless ``query`` is a string.

    :func:`resolve` hands back any object that is not a string, as it may be a ready value; a
    resolver that takes ready values (a space, an evaluator, a sampler) passes those on first and
    calls this for the rest, which would otherwise fail later and obscurely (``get_space(5)`` on
    ``<int>.name``). ``alternative`` names what else it takes (``"a SearchSpace"``).
    """
    if isinstance(query, str):
        return
    other = f" or {alternative}" if alternative else ""
    raise TypeError(
        f"{kind} must be a name among {sorted(choices)}{other}, got {query!r} ({type(query).__name__})"
    )


def resolve_name(
    query: str, choices: Mapping[str, object] | Iterable[str], kind: str = "name", suffix: str = ""
) -> str:
    """Return the canonical spelling of ``query`` among ``choices`` (see :func:`resolve`)."""
    names = list(choices)
    return resolve(query, {name: name for name in names}, kind, suffix)
