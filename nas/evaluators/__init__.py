"""Ways to score an architecture, resolved by name (``"train"``, ``"zero-cost:synflow"``)."""
from __future__ import annotations

from typing import Any

from nas.evaluators._hypernet import HypernetEvaluator
from nas.evaluators._supernet import SupernetEvaluator, finetune_config
from nas.evaluators._table import TableEvaluator
from nas.evaluators._train import TrainEvaluator
from nas.evaluators._zero_cost import ZeroCostEvaluator
from nas.evaluators.base import Evaluation, Evaluator
from search_spaces.resolver import require_name, resolve, resolve_name

#: canonical evaluator name -> class
EVALUATORS: dict[str, type[Evaluator]] = {
    "train": TrainEvaluator,
    "table": TableEvaluator,
    "zero-cost": ZeroCostEvaluator,
    "supernet": SupernetEvaluator,
    "hypernet": HypernetEvaluator,
}


def get_evaluator(name: str | Evaluator, **options: Any) -> Evaluator:
    """Resolve ``"name"`` or ``"name:variant"`` (the variant goes to the class as ``variant=``);
    options the class does not take are dropped; an evaluator is returned as it is.

    Raises:
        TypeError: ``name`` is neither a string nor an evaluator.
        ValueError: no evaluator has that name, or it takes no such variant.
    """
    if isinstance(name, Evaluator):
        return name
    require_name(name, EVALUATORS, "evaluator", "an Evaluator")
    base, _, variant = name.partition(":")
    cls = resolve(base, EVALUATORS, "evaluator")
    accepted = _accepted(cls, {**options, "variant": variant})
    if variant and "variant" not in accepted:
        raise ValueError(f"evaluator {base!r} takes no variant, got {name!r}")
    if not variant:
        accepted.pop("variant", None)
    return cls(**accepted)


def evaluator_name(name: str) -> str:
    """The canonical spelling of evaluator ``name`` and its variant (``"Zero_Cost:NASWOT"`` ->
    ``"zero-cost:naswot"``, ``"Train"`` -> ``"train"``): what names a study and its identity.

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: no evaluator has that name (the choices are listed).
    """
    require_name(name, EVALUATORS, "evaluator")
    base, _, variant = name.partition(":")
    canonical = resolve_name(base, EVALUATORS, "evaluator")
    return f"{canonical}:{EVALUATORS[canonical].variant_name(variant)}" if variant else canonical


def _accepted(cls: type, options: dict[str, Any]) -> dict[str, Any]:
    import inspect

    parameters = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return options
    return {key: value for key, value in options.items() if key in parameters}


__all__ = [
    "EVALUATORS", "Evaluation", "Evaluator", "HypernetEvaluator", "SupernetEvaluator",
    "TableEvaluator", "TrainEvaluator", "ZeroCostEvaluator", "evaluator_name", "finetune_config",
    "get_evaluator",
]
