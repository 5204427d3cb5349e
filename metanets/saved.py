"""Reading back what metanas saved beside a network's weights (a GHN checkpoint, a metanetwork
folder): the config, from JSON, checked field by field against its dataclass, and the tensors
loaded into the module built from it. A hand-edited or foreign file is refused naming the
field or tensor that is wrong, instead of failing inside torch as the module is built or
loaded (``"hidden": 8.5`` failed in ``torch.empty``; load_state_dict's error lists every
tensor)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, TypeVar

from torch import Tensor, nn

Config = TypeVar("Config")
Module = TypeVar("Module", bound=nn.Module)


def config_from_json(cls: type[Config], data: dict[str, Any], what: str) -> Config:
    """``cls(**data)`` for a dataclass ``cls`` (a ``what`` config) read from JSON;
    ``ValueError`` naming unknown fields or a field whose value is not of its type
    (:func:`of_type`). Missing fields and the dataclass's own checks raise as ``cls`` does."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    names = {field.name for field in fields}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {what} config fields {unknown}; known: {sorted(names)}")
    for field in fields:
        if field.name in data and not of_type(data[field.name], str(field.type)):
            raise ValueError(f"{what} config field {field.name} is {data[field.name]!r}, not of "
                             f"type {field.type}")
    return cls(**data)


_KINDS: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "str": (str,),
                                       "bool": (bool,)}


def of_type(value: Any, annotation: str) -> bool:
    """Whether ``value`` (read from JSON) is of a config field's ``annotation``: ``int``,
    ``float`` (an int too), ``str``, ``bool`` (no other is a bool, though Python's bool is an
    int), ``X | None`` and ``tuple[X, ...]`` (a JSON list) of those; any other annotation
    passes."""
    if annotation.endswith(" | None"):
        return value is None or of_type(value, annotation[:-len(" | None")])
    if annotation.startswith("tuple[") and annotation.endswith(", ...]"):
        return (isinstance(value, (list, tuple))
                and all(of_type(v, annotation[len("tuple["):-len(", ...]")]) for v in value))
    kinds = _KINDS.get(annotation)
    if kinds is None:  # an annotation of another form: left to the dataclass's own checks
        return True
    return isinstance(value, kinds) and (annotation == "bool" or not isinstance(value, bool))


def built(cls: Callable[[Config], Module], config: Config, path: Path, what: str) -> Module:
    """``cls(config)``, the ``what`` of a config read from ``path``; ``ValueError`` naming the
    file where the config passes its own checks but builds no module (``"dropout": 2``, which
    torch's Dropout refuses, naming no file)."""
    try:
        return cls(config)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"{path}: its config builds no {what} ({error})") from None


def load_checked(module: nn.Module, tensors: dict[str, Tensor], path: Path, what: str) -> None:
    """Load ``tensors`` (read from ``path``) into ``module``, a ``what`` built from its saved
    config; ``ValueError`` naming the file and the tensors the config lacks, does not know or
    needs in another shape (load_state_dict's error lists every tensor, and exits 1)."""
    own = module.state_dict()
    missing, unexpected = sorted(own.keys() - tensors.keys()), sorted(tensors.keys() - own.keys())
    wrong = [f"tensor {name!r} has shape {tuple(tensors[name].shape)}, its config needs "
             f"{tuple(tensor.shape)}" for name, tensor in own.items()
             if name in tensors and tensors[name].shape != tensor.shape]
    parts = [f"{label} tensors {', '.join(map(repr, names[:3]))}"
             + (f", ... ({len(names)} in all)" if len(names) > 3 else "")
             for label, names in (("missing", missing), ("unexpected", unexpected)) if names]
    if parts or wrong:
        raise ValueError(f"{path} holds no {what} of its config: {'; '.join(parts + wrong[:1])}")
    module.load_state_dict(tensors)
