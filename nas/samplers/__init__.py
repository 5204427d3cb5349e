"""Search strategies: one ``optuna.samplers.BaseSampler`` per strategy, resolved by name."""
from __future__ import annotations

from collections.abc import Callable

import optuna

from nas.samplers._gradient import GradientSampler
from search_spaces.resolver import resolve


def _random(seed: int | None) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


def _tpe(seed: int | None) -> optuna.samplers.BaseSampler:
    # group=True models the conditional (depth-dependent) parameters of a space jointly;
    # constant_liar keeps parallel workers from proposing the same point.
    return optuna.samplers.TPESampler(
        seed=seed, multivariate=True, group=True, constant_liar=True, n_startup_trials=10
    )


def _gradient(seed: int | None) -> optuna.samplers.BaseSampler:
    return GradientSampler(seed=seed)


#: canonical strategy name -> factory taking a seed
STRATEGIES: dict[str, Callable[[int | None], optuna.samplers.BaseSampler]] = {
    "random": _random,
    "tpe": _tpe,
    "gradient": _gradient,
}


def get_sampler(name: str | optuna.samplers.BaseSampler, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """The sampler of strategy ``name`` (any spelling), seeded; a sampler is returned as is."""
    if isinstance(name, optuna.samplers.BaseSampler):
        return name
    return resolve(name, STRATEGIES, "strategy")(seed)


__all__ = ["GradientSampler", "STRATEGIES", "get_sampler"]
