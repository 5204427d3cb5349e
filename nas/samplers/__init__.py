"""Search strategies: one ``optuna.samplers.BaseSampler`` per strategy, resolved by name."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import optuna

from nas.samplers._base import ProposalSampler, space_distributions
from nas.samplers._evolution import EvolutionSampler
from nas.samplers._gradient import GradientSampler
from nas.samplers._nac import NACSampler, nac_search
from nas.samplers._predictor import PredictorSampler
from nas.samplers._prescreen import PrescreenSampler, proxy_scorer
from nas.samplers._reinforce import ReinforceSampler
from search_spaces.resolver import require_name, resolve

if TYPE_CHECKING:
    from search_spaces.base import SearchSpace


#: what a search hands every strategy (``get_sampler(name, seed, space=..., task=...,
#: device=...)``): its space, the task it loaded and its device (``data_root=``, where a
#: data-bound strategy used outside a search loads the study's dataset, is context too); a
#: factory keeps those its strategy uses
SEARCH_CONTEXT: frozenset[str] = frozenset({"space", "task", "data_root", "device"})


def _strategy_options(options: dict[str, Any], *uses: str) -> dict[str, Any]:
    """``options`` without the search context (:data:`SEARCH_CONTEXT`) but what ``uses`` names."""
    return {key: value for key, value in options.items() if key not in SEARCH_CONTEXT or key in uses}


def _random(seed: int | None = None, **options: Any) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed, **_strategy_options(options))


def _tpe(seed: int | None = None, **options: Any) -> optuna.samplers.BaseSampler:
    # group=True models the conditional (depth-dependent) parameters of a space jointly;
    # constant_liar keeps parallel workers from proposing the same point.
    settings = dict(multivariate=True, group=True, constant_liar=True, n_startup_trials=10)
    return optuna.samplers.TPESampler(seed=seed, **{**settings, **_strategy_options(options)})


def _gradient(seed: int | None = None, **options: Any) -> optuna.samplers.BaseSampler:
    # the supernet covers the search's space; GDAS runs on the search's task, on its device
    return GradientSampler(seed=seed, **_strategy_options(options, "space", "task", "data_root", "device"))


def _gp(seed: int | None = None, **options: Any) -> optuna.samplers.BaseSampler:
    # Gaussian-process BO over the parameters every trial has; conditional ones (a deeper
    # layer's choices) are drawn at random by its independent sampler.
    settings = dict(n_startup_trials=10, warn_independent_sampling=False)
    return optuna.samplers.GPSampler(seed=seed, **{**settings, **_strategy_options(options)})


def _nsga2(seed: int | None = None, **options: Any) -> optuna.samplers.BaseSampler:
    # a population of 20 lets the genetic search start within budgets of 50-200 trials
    return optuna.samplers.NSGAIISampler(seed=seed, **{"population_size": 20, **_strategy_options(options)})


def _evolution(seed: int | None = None, **options: Any) -> optuna.samplers.BaseSampler:
    return EvolutionSampler(seed=seed, **_strategy_options(options, "space"))


def _reinforce(seed: int | None = None, **options: Any) -> optuna.samplers.BaseSampler:
    return ReinforceSampler(seed=seed, **_strategy_options(options, "space"))


def _predictor(seed: int | None = None, **options: Any) -> optuna.samplers.BaseSampler:
    return PredictorSampler(seed=seed, **_strategy_options(options, "space"))


def _nac(seed: int | None = None, **options: Any) -> optuna.samplers.BaseSampler:
    # candidates from the search's space; runs on the search's task, on its device
    return NACSampler(seed=seed, **_strategy_options(options, "space", "task", "data_root", "device"))


#: canonical strategy name -> factory ``(seed, **options) -> sampler``; of the search context
#: (:data:`SEARCH_CONTEXT`), ``space`` (a SearchSpace) lets the proposing strategies deduplicate
#: by architecture and bounds what NAC and the gradient strategy search, ``task`` and
#: ``device`` are what those two fit their supernet on and where (``data_root``: where they
#: load the study's dataset by name when given no task)
STRATEGIES: dict[str, Callable[..., optuna.samplers.BaseSampler]] = {
    "random": _random,
    "tpe": _tpe,
    "gp": _gp,
    "nsga2": _nsga2,
    "evolution": _evolution,
    "reinforce": _reinforce,
    "predictor": _predictor,
    "nac": _nac,  # training-free sparse-coding search of the gnn space (Xu et al. 2023)
    "gradient": _gradient,  # GDAS over the weight-sharing supernet
}

#: strategies that handle studies of one objective only
SINGLE_OBJECTIVE_ONLY: frozenset[str] = frozenset({"evolution", "reinforce", "predictor"})
#: strategies that read the study's task data themselves (NAC and the gradient strategy fit a
#: supernet on it): the search hands them its task, and outside a search they load the study's
#: dataset by name (``study.user_attrs["dataset"]``)
DATA_BOUND: frozenset[str] = frozenset({"nac", "gradient"})
#: strategies that need every parameter to have finitely many values
DISCRETE_ONLY: frozenset[str] = frozenset({"reinforce"})


def get_sampler(
    name: str | optuna.samplers.BaseSampler, seed: int | None = None, **options: Any
) -> optuna.samplers.BaseSampler:
    """The sampler of strategy ``name`` (any spelling), seeded; a sampler is returned as is.

    ``options`` go to the strategy's constructor (the search context ``space=``, ``task=``,
    ``data_root=``, ``device=`` is dropped by strategies that do not use it). ``TypeError`` if
    ``name`` is neither a string nor a sampler.
    """
    if isinstance(name, optuna.samplers.BaseSampler):
        return name
    require_name(name, STRATEGIES, "strategy", "an optuna sampler")
    return resolve(name, STRATEGIES, "strategy")(seed, **options)


def strategy_name(name: str) -> str:
    """The canonical name of a strategy (any spelling); ``ValueError`` listing the choices."""
    require_name(name, STRATEGIES, "strategy")
    factory = resolve(name, STRATEGIES, "strategy")
    return next(key for key, value in STRATEGIES.items() if value is factory)


def check_strategy(
    name: str | optuna.samplers.BaseSampler, space: SearchSpace | None = None,
    objectives: tuple[str, ...] = ("accuracy",),
) -> None:
    """Raise ``ValueError`` naming the strategy and the space or objectives it cannot handle.
    A sampler given as an object is the caller's responsibility and is not checked."""
    if isinstance(name, optuna.samplers.BaseSampler):
        return
    require_name(name, STRATEGIES, "strategy", "an optuna sampler")
    canonical = strategy_name(name)
    if len(objectives) > 1 and canonical in SINGLE_OBJECTIVE_ONLY:
        multi = sorted(set(STRATEGIES) - SINGLE_OBJECTIVE_ONLY)
        raise ValueError(
            f"strategy {canonical!r} handles one objective, not the {len(objectives)} objectives "
            f"{','.join(objectives)}; multi-objective strategies: {multi}"
        )
    if space is not None and canonical in DISCRETE_ONLY:
        from nas.samplers._base import finite_values

        for param, distribution in sorted(space_distributions(space).items()):
            if finite_values(distribution) is None:
                raise ValueError(
                    f"strategy {canonical!r} needs discrete choices, but space {space.name!r} "
                    f"has the continuous parameter {param!r} ({distribution!r})"
                )
    if space is not None and canonical in DATA_BOUND:
        _check_searchable(canonical, space)


def _check_searchable(canonical: str, space: SearchSpace) -> None:
    """``ValueError`` naming the space (or its convs) that NAC or the gradient strategy cannot
    search, and what they can: NAC searches the GNN space over its candidate convolutions, the
    gradient strategy a space with a supernet."""
    if canonical == "nac":
        from nas.samplers._nac import NAC_CONVS

        if space.name != "gnn":
            raise ValueError(f"strategy 'nac' searches space 'gnn', not {space.name!r}")
        outside = [conv for conv in getattr(space, "convs", ()) if conv not in NAC_CONVS]
        if outside:
            raise ValueError(
                f"strategy 'nac' cannot search the convs {outside}; its candidates: {list(NAC_CONVS)}"
            )
    elif canonical == "gradient":
        from nas.supernet import SUPERNETS

        if space.name not in SUPERNETS:
            raise ValueError(
                f"strategy 'gradient' needs a space with a supernet, not {space.name!r}; "
                f"spaces with one: {sorted(SUPERNETS)}"
            )


__all__ = [
    "DATA_BOUND", "DISCRETE_ONLY", "EvolutionSampler", "GradientSampler", "NACSampler",
    "PredictorSampler", "PrescreenSampler", "ProposalSampler", "ReinforceSampler", "SEARCH_CONTEXT",
    "SINGLE_OBJECTIVE_ONLY", "STRATEGIES",
    "check_strategy", "get_sampler", "nac_search", "proxy_scorer", "strategy_name",
]
