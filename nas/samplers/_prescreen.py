"""Pre-screening: a base strategy proposes several candidates, a cheap score picks one to evaluate.

Like :class:`optuna.samplers.PartialFixedSampler`, :class:`PrescreenSampler` wraps a base
sampler. Before each trial it asks the base sampler for ``candidates`` complete proposals (each
drawn the way ``optuna.Trial`` draws one: the base's relative sample, then its independent sample
for every remaining parameter; for the proposing strategies of :mod:`nas.samplers._base`, the
first is the strategy's own proposal and the others come from its ``propose`` with generators of
their own), turns each into an architecture with the space's own ``suggest``,
scores them (a zero-cost proxy, see :func:`proxy_scorer`) and lets the trial take the best one.
Only that one is evaluated (trained, or looked up in a table); the others cost a proxy each.

The base strategy keeps its own state (it sees the study's trials as usual), so any strategy of
:data:`nas.samplers.STRATEGIES` can be pre-screened: ``metanas search --strategy tpe
--prescreen synflow``.
"""
from __future__ import annotations

import copy
import json
import math
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import (
    BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution,
    _get_single_value,
)
from optuna.trial import FrozenTrial, TrialState

from nas.samplers._base import ChosenParams, ProposalSampler, ReplayTrial

if TYPE_CHECKING:
    from collections.abc import Sequence

    from nas.tasks import Task
    from search_spaces.base import Architecture, SearchSpace

#: system attribute of a trial: the proxy scores of its candidates and the index chosen
PRESCREEN_ATTR = "prescreen"


class PrescreenSampler(optuna.samplers.BaseSampler):
    """Evaluate only the best of ``candidates`` base proposals, ranked by ``score``.

    Args:
        base: the strategy proposing candidates (any optuna sampler).
        space: the search space; its ``suggest`` turns a proposal into an architecture.
        score: architecture -> float, higher is better (e.g. :func:`proxy_scorer`).
        candidates: proposals drawn per trial (1: the base strategy unchanged).

    Proposals whose parameters equal an already evaluated trial's are dropped first (when some
    remain), so that a deterministic score does not pick the same architecture again and again.
    Proposals the space refuses (its ``suggest`` raises ``optuna.TrialPruned``) are dropped too.
    Trials with fixed parameters (``study.enqueue_trial``) are left alone.
    """

    def __init__(
        self, base: optuna.samplers.BaseSampler, space: SearchSpace,
        score: Callable[[Architecture], float], candidates: int = 10,
    ) -> None:
        if candidates < 1:
            raise ValueError(f"prescreen candidates must be >= 1, got {candidates}")
        self.base, self.space, self.score, self.candidates = base, space, score, candidates
        self._chosen = ChosenParams()

    def reseed_rng(self) -> None:
        self.base.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.base.before_trial(study, trial)
        if "fixed_params" in trial.system_attrs:
            return
        proposals = []
        for j in range(self.candidates):
            try:
                proposals.append(self._propose(study, trial, j))
            except optuna.TrialPruned:  # a candidate the space refuses (NAS-Bench-Graph's
                continue  # all-skip cell): not a candidate
        if not proposals:  # every candidate refused: the trial samples (and is pruned) as usual
            return
        proposals = _unseen(study, proposals) or proposals
        scores = [self._safe_score(arch) for _, arch in proposals]
        best = max(range(len(proposals)), key=lambda i: (scores[i], -i))
        self._chosen.set(trial, proposals[best][0])
        record = {"scores": [s if math.isfinite(s) else None for s in scores], "chosen": best}
        study._storage.set_trial_system_attr(trial._trial_id, PRESCREEN_ATTR, json.dumps(record))

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._chosen.sample(self.base, study, trial, param_name, param_distribution)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None,
    ) -> None:
        self._chosen.forget(trial)
        self.base.after_trial(study, trial, state, values)

    def _propose(
        self, study: optuna.Study, trial: FrozenTrial, j: int
    ) -> tuple[dict[str, Any], Architecture]:
        if j > 0 and isinstance(self.base, ProposalSampler):
            # a proposing strategy (evolution, predictor, reinforce) fixes one proposal per trial
            # in before_trial; further candidates come from its propose() with their own
            # generators, derived from the trial's (so a re-run proposes the same candidates)
            rng = random.Random(f"prescreen:{self.base.trial_rng(trial.number).random()}:{j}")
            params = self.base.propose(study, self.base.archive(study, trial.number), rng)
            replay = ReplayTrial(params, rng)
            arch = self.space.suggest(replay)  # type: ignore[arg-type]
            return replay.params, arch
        proposal = _ProposalTrial(study, trial, self.base)
        arch = self.space.suggest(proposal)  # type: ignore[arg-type]
        return proposal.params, arch

    def _safe_score(self, arch: Architecture) -> float:
        try:
            value = float(self.score(arch))
        except Exception:  # noqa: BLE001 - a model the proxy cannot score ranks last, it does not
            return -math.inf  # stop the search
        return value if not math.isnan(value) else -math.inf

    def __repr__(self) -> str:
        return f"PrescreenSampler({self.base!r}, candidates={self.candidates})"


class _ProposalTrial:
    """The ``suggest_*`` part of ``optuna.Trial``, answered by a base sampler without creating
    a trial in the storage: relative parameters first, independent sampling for the rest."""

    def __init__(self, study: optuna.Study, trial: FrozenTrial, base: optuna.samplers.BaseSampler) -> None:
        self.study, self.base = study, base
        self.frozen = copy.deepcopy(trial)
        self.frozen.params, self.frozen.distributions = {}, {}
        self.relative_space = base.infer_relative_search_space(study, self.frozen)
        self.relative = base.sample_relative(study, self.frozen, self.relative_space)
        self.params: dict[str, Any] = {}

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self._suggest(name, CategoricalDistribution(tuple(choices)))

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        return self._suggest(name, IntDistribution(low, high, log=log, step=step))

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        return self._suggest(name, FloatDistribution(low, high, log=log, step=step))

    def _suggest(self, name: str, distribution: BaseDistribution) -> Any:
        if name in self.params:
            return self.params[name]
        if distribution.single():
            value = _get_single_value(distribution)
        elif name in self.relative and self.relative_space.get(name) == distribution:
            value = self.relative[name]
        else:
            value = self.base.sample_independent(self.study, self.frozen, name, distribution)
        self.params[name] = value
        self.frozen.params = {**self.frozen.params, name: value}
        self.frozen.distributions = {**self.frozen.distributions, name: distribution}
        return value


def _unseen(
    study: optuna.Study, proposals: list[tuple[dict[str, Any], Architecture]]
) -> list[tuple[dict[str, Any], Architecture]]:
    """The proposals whose architecture no finished or running trial of the study has."""
    seen = {
        t.user_attrs.get("arch_hash")
        for t in study.get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.PRUNED)
    }
    return [(params, arch) for params, arch in proposals if arch.arch_hash not in seen]


def proxy_scorer(
    space: SearchSpace, task: Task, proxy: str, seed: int = 0, device: str = "cpu",
) -> Callable[[Architecture], float]:
    """``arch -> proxy score`` of ``arch`` built for ``task`` (seeded initialisation), memoised
    by architecture hash."""
    from nas.evaluators import get_evaluator

    evaluator = get_evaluator(f"zero-cost:{proxy}")
    cache: dict[str, float] = {}

    def score(arch: Architecture) -> float:
        if arch.arch_hash not in cache:
            evaluation = evaluator.evaluate(arch, space, task, seed=seed, device=device)
            cache[arch.arch_hash] = evaluation.metrics["score"]
        return cache[arch.arch_hash]

    return score
