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


def _random(seed: int | None = None, **options: Any) -> optuna.samplers.BaseSampler:
    options.pop("space", None)
    return optuna.samplers.RandomSampler(seed=seed, **options)


def _tpe(seed: int | None = None, **options: Any) -> optuna.samplers.BaseSampler:
    # group=True models the conditional (depth-dependent) parameters of a space jointly;
    # constant_liar keeps parallel workers from proposing the same point.
    options.pop("space", None)
    settings = dict(multivariate=True, group=True, constant_liar=True, n_startup_trials=10)
    return optuna.samplers.TPESampler(seed=seed, **{**settings, **options})


def _gradient(seed: int | None = None, **options: Any) -> optuna.samplers.BaseSampler:
    options.pop("space", None)
    return GradientSampler(seed=seed, **options)


def _gp(seed: int | None = None, **options: Any) -> optuna.samplers.BaseSampler:
    # Gaussian-process BO over the parameters every trial has; conditional ones (a deeper
    # layer's choices) are drawn at random by its independent sampler.
    options.pop("space", None)
    settings = dict(n_startup_trials=10, warn_independent_sampling=False)
    return optuna.samplers.GPSampler(seed=seed, **{**settings, **options})


def _nsga2(seed: int | None = None, **options: Any) -> optuna.samplers.BaseSampler:
    # a population of 20 lets the genetic search start within budgets of 50-200 trials
    options.pop("space", None)
    return optuna.samplers.NSGAIISampler(seed=seed, **{"population_size": 20, **options})


def _evolution(seed: int | None = None, **options: Any) -> optuna.samplers.BaseSampler:
    return EvolutionSampler(seed=seed, **options)


def _reinforce(seed: int | None = None, **options: Any) -> optuna.samplers.BaseSampler:
    return ReinforceSampler(seed=seed, **options)


def _predictor(seed: int | None = None, **options: Any) -> optuna.samplers.BaseSampler:
    return PredictorSampler(seed=seed, **options)


def _nac(seed: int | None = None, **options: Any) -> optuna.samplers.BaseSampler:
    options.pop("space", None)
    return NACSampler(seed=seed, **options)


#: canonical strategy name -> factory ``(seed, **options) -> sampler``; the option ``space``
#: (a SearchSpace) lets the proposing strategies deduplicate by architecture
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
#: supernet on it), so they run only in studies made by ``metanas search``
#: (``study.user_attrs["dataset"]``)
DATA_BOUND: frozenset[str] = frozenset({"nac", "gradient"})
#: strategies that need every parameter to have finitely many values
DISCRETE_ONLY: frozenset[str] = frozenset({"reinforce"})


def get_sampler(
    name: str | optuna.samplers.BaseSampler, seed: int | None = None, **options: Any
) -> optuna.samplers.BaseSampler:
    """The sampler of strategy ``name`` (any spelling), seeded; a sampler is returned as is.

    ``options`` go to the strategy's constructor (``space=`` is dropped by strategies that do
    not use it). ``TypeError`` if ``name`` is neither a string nor a sampler.
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


__all__ = [
    "DATA_BOUND", "DISCRETE_ONLY", "EvolutionSampler", "NACSampler", "PredictorSampler", "PrescreenSampler",
    "ProposalSampler", "ReinforceSampler", "SINGLE_OBJECTIVE_ONLY", "STRATEGIES",
    "check_strategy", "get_sampler", "nac_search", "proxy_scorer", "strategy_name",
]
