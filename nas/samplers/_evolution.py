"""Regularized (aging) evolution.

Reference: Real et al., "Regularized Evolution for Image Classifier Architecture Search",
AAAI 2019. The population is the ``population_size`` most recent completed trials (the oldest
dies, not the worst); a parent is the best of ``tournament_size`` members drawn at random; the
child is the parent with one choice mutated (:func:`nas.samplers._base.mutate`), so a mutation
respects the space's structure: changing the depth adds a freshly drawn layer or drops the last.
Until ``population_size`` trials completed, children are drawn uniformly at random.
"""
from __future__ import annotations

import random
from typing import TYPE_CHECKING

from nas.samplers._base import Archive, Params, ProposalSampler

if TYPE_CHECKING:
    from optuna.study import Study

    from search_spaces.base import SearchSpace


class EvolutionSampler(ProposalSampler):
    """Regularized evolution with tournament selection (see the module docstring).

    Args:
        population_size: completed trials that form the population (the most recent ones).
        tournament_size: members drawn per tournament; the best is the parent.
        seed: seed of every random choice.
        space: the search space to replay proposals through (default: the study's).
    """

    strategy = "evolution"

    def __init__(
        self, population_size: int = 20, tournament_size: int = 5, *, seed: int | None = None,
        space: SearchSpace | None = None,
    ) -> None:
        if population_size < 2 or not 1 <= tournament_size <= population_size:
            raise ValueError(
                f"evolution needs population_size >= 2 and 1 <= tournament_size <= "
                f"population_size, got {population_size} and {tournament_size}"
            )
        super().__init__(seed=seed, space=space)
        self.population_size, self.tournament_size = population_size, tournament_size

    def propose(self, study: Study, archive: Archive, rng: random.Random) -> Params:
        if len(archive.completed) < self.population_size:
            return {}  # random: completed through the space, or drawn per parameter
        population = list(zip(archive.scores, archive.completed))[-self.population_size:]
        contestants = rng.sample(population, self.tournament_size)
        _, parent = max(contestants, key=lambda pair: (pair[0], -pair[1].number))
        return self.mutate(study, parent.params, archive, rng)

    def __repr__(self) -> str:
        return (
            f"EvolutionSampler(population_size={self.population_size}, "
            f"tournament_size={self.tournament_size})"
        )
