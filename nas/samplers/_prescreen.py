"""Pre-screening: a base strategy proposes several candidates, a cheap score picks one to evaluate.

Like :class:`optuna.samplers.PartialFixedSampler`, :class:`PrescreenSampler` wraps a base
sampler. Before each trial it asks the base sampler for ``candidates`` complete proposals (each
drawn the way ``optuna.Trial`` draws one: the base's relative sample, then its independent sample
for every remaining parameter; for the proposing strategies of :mod:`nas.samplers._base`, the
first is the strategy's own proposal and the others come from its ``propose`` with generators of
their own), turns each into an architecture with the space's own ``suggest``,
scores them (a zero-cost proxy, see :func:`proxy_scorer`) and lets the trial take the best one.
Only that one is evaluated (trained, or looked up in a table); the others cost a proxy each.

Two rules decide which candidate is evaluated (:data:`RULES`):

- ``"best"``: the candidate of highest score. The score overrides the base strategy's own
  ranking completely, which helps a strategy that proposes at random or nearly so (TPE early
  on) and can only hurt one whose proposals are already better than the score can tell
  (a warm-started predictor, see ``experiments/results/zero_cost_notes.md``).
- ``"veto"``: the base strategy's order is kept and the score can only *remove* candidates
  whose score is clearly low: below the ``veto_quantile`` quantile of the scores of a fixed
  reference sample of the space (``reference`` architectures drawn uniformly with
  ``space.sample`` from ``random.Random(reference_seed)``). The base's own proposal is
  evaluated unless it is vetoed; then its next candidate, and so on; when all ``candidates``
  are vetoed, the base's own proposal is evaluated after all. Candidates are proposed and
  scored lazily, so a trial whose first candidate passes costs one score. The threshold is a
  function of the space and the score only (not of the study), so resumed studies and several
  workers apply the same one.

The base strategy keeps its own state (it sees the study's trials as usual), so any strategy of
:data:`nas.samplers.STRATEGIES` can be pre-screened: ``metanas search --strategy tpe
--prescreen synflow`` (rule ``best``), ``metanas search --strategy predictor --prescreen naswot
--prescreen-rule veto``.
"""
from __future__ import annotations

import copy
import json
import math
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

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


class Candidate(NamedTuple):
    """One of a trial's candidates: its number (0: the base strategy's own proposal), its
    parameters and its architecture."""

    number: int
    params: dict[str, Any]
    arch: Architecture


#: the chosen candidate and the record stored in the trial's PRESCREEN_ATTR
Pick = tuple[Candidate, dict[str, Any]]
#: how a pre-screen picks the evaluated candidate (see the module docstring)
RULES: tuple[str, ...] = ("best", "veto")
#: rule "veto": candidates scoring below this quantile of the reference sample are removed
VETO_QUANTILE = 0.25
#: rule "veto": architectures of the reference sample the quantile is taken over
VETO_REFERENCE = 100


def resolve_rule(rule: str) -> str:
    """``rule`` normalised (``"Veto"`` -> ``"veto"``), or a ``ValueError`` naming the choices."""
    name = str(rule).strip().lower()
    if name not in RULES:
        raise ValueError(f"could not resolve prescreen rule {rule!r} among choices {list(RULES)}")
    return name


def check_veto_quantile(quantile: float) -> float:
    """``quantile`` if it lies strictly between 0 and 1, else a ``ValueError``."""
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"prescreen veto quantile must be in (0, 1), got {quantile}")
    return float(quantile)


class PrescreenSampler(optuna.samplers.BaseSampler):
    """Evaluate only the best of ``candidates`` base proposals, ranked by ``score``.

    Args:
        base: the strategy proposing candidates (any optuna sampler).
        space: the search space; its ``suggest`` turns a proposal into an architecture.
        score: architecture -> float, higher is better (e.g. :func:`proxy_scorer`).
        candidates: proposals drawn per trial (1: the base strategy unchanged); with rule
            ``"veto"``, the most proposals tried.
        rule: ``"best"`` or ``"veto"`` (see the module docstring).
        veto_quantile: rule ``"veto"``: the quantile of the reference scores below which a
            candidate is removed (0.25: the bottom quarter of the space by score).
        reference: rule ``"veto"``: size of the reference sample.
        reference_seed: rule ``"veto"``: seed of the reference sample.

    Rule ``"best"``: proposals whose parameters equal an already evaluated trial's are dropped
    first (when some remain), so that a deterministic score does not pick the same architecture
    again and again. Proposals the space refuses (its ``suggest`` raises ``optuna.TrialPruned``)
    are dropped under both rules. Trials with fixed parameters (``study.enqueue_trial``) are
    left alone, and so is a trial whose base says its proposal must be evaluated as it is
    (its ``screens(study, trial)`` is False: the gradient strategy's derived architecture). A
    base with a ``screened(study, trial, j)`` is told which candidate the trial evaluates (NAC
    then stores that candidate's search as the trial's record).
    """

    def __init__(
        self, base: optuna.samplers.BaseSampler, space: SearchSpace,
        score: Callable[[Architecture], float], candidates: int = 10, rule: str = "best", *,
        veto_quantile: float = VETO_QUANTILE, reference: int = VETO_REFERENCE,
        reference_seed: int = 0,
    ) -> None:
        if candidates < 1:
            raise ValueError(f"prescreen candidates must be >= 1, got {candidates}")
        if reference < 1:
            raise ValueError(f"prescreen veto reference sample must be >= 1, got {reference}")
        self.base, self.space, self.score, self.candidates = base, space, score, candidates
        self.rule, self.veto_quantile = resolve_rule(rule), check_veto_quantile(veto_quantile)
        self.reference, self.reference_seed = reference, reference_seed
        self._threshold: float | None = None
        self._chosen = ChosenParams()

    def reseed_rng(self) -> None:
        self.base.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.base.before_trial(study, trial)
        if "fixed_params" in trial.system_attrs or not self._screens(study, trial):
            return
        pick = (self._pick_best if self.rule == "best" else self._pick_unvetoed)(study, trial)
        if pick is None:  # every candidate refused: the trial samples (and is pruned) as usual
            return
        candidate, record = pick
        self._chosen.set(trial, candidate.params)
        study._storage.set_trial_system_attr(trial._trial_id, PRESCREEN_ATTR, json.dumps(record))
        screened = getattr(self.base, "screened", None)
        if screened is not None:
            screened(study, trial, candidate.number)

    def _screens(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """Whether the base strategy lets this trial's proposal be screened (the gradient
        strategy's derived architecture is evaluated as it is: see its ``screens``)."""
        screens = getattr(self.base, "screens", None)
        return screens is None or bool(screens(study, trial))

    def _pick_best(self, study: optuna.Study, trial: FrozenTrial) -> Pick | None:
        """Rule "best": the parameters of the highest-scoring candidate, and the record."""
        proposals = [p for j in range(self.candidates) if (p := self._try_propose(study, trial, j))]
        if not proposals:
            return None
        proposals = _unseen(study, proposals) or proposals
        scores = [self._safe_score(candidate.arch) for candidate in proposals]
        best = max(range(len(proposals)), key=lambda i: (scores[i], -i))
        return proposals[best], {"rule": "best", "scores": _finite(scores), "chosen": best}

    def _pick_unvetoed(self, study: optuna.Study, trial: FrozenTrial) -> Pick | None:
        """Rule "veto": the first candidate in the base's order not scoring below the threshold
        (the first candidate when all are vetoed), and the record."""
        threshold = self.veto_threshold()
        proposals: list[Candidate] = []
        scores: list[float] = []
        chosen = None
        for j in range(self.candidates):
            proposal = self._try_propose(study, trial, j)
            if proposal is None:
                continue
            proposals.append(proposal)
            scores.append(self._safe_score(proposal.arch))
            if scores[-1] >= threshold:
                chosen = len(proposals) - 1
                break
        if not proposals:
            return None
        vetoed = chosen is None
        chosen = 0 if chosen is None else chosen
        record = {"rule": "veto", "scores": _finite(scores), "chosen": chosen,
                  "threshold": threshold, "all_vetoed": vetoed}
        return proposals[chosen], record

    def veto_threshold(self) -> float:
        """The ``veto_quantile`` quantile of the reference sample's finite scores (computed once;
        a function of the space, the score and the settings only)."""
        if self._threshold is None:
            scores = [s for arch in self.reference_architectures()
                      if math.isfinite(s := self._safe_score(arch))]
            if not scores:
                raise ValueError(
                    "prescreen veto: the score is not finite on any reference architecture"
                )
            self._threshold = quantile(scores, self.veto_quantile)
        return self._threshold

    def reference_architectures(self) -> list[Architecture]:
        """The reference sample: ``reference`` architectures of the space drawn uniformly from
        ``random.Random(reference_seed)`` (ones the space refuses are skipped)."""
        rng = random.Random(self.reference_seed)
        archs = []
        for _ in range(self.reference):
            try:
                archs.append(self.space.sample(rng))
            except optuna.TrialPruned:
                continue
        return archs

    def _try_propose(self, study: optuna.Study, trial: FrozenTrial, j: int) -> Candidate | None:
        try:
            return Candidate(j, *self._propose(study, trial, j))
        except optuna.TrialPruned:  # a candidate the space refuses (NAS-Bench-Graph's all-skip
            return None  # cell): not a candidate

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
        if j > 0 and hasattr(self.base, "candidate"):
            # a strategy that fixes one architecture per trial (NAC, gradient) draws its further
            # candidates itself: asked again, it would answer its own proposal k times
            rng = random.Random(f"prescreen:{trial.number}:{j}")
            replay = ReplayTrial(self.base.candidate(study, trial, j), rng)
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
        veto = f", veto_quantile={self.veto_quantile}" if self.rule == "veto" else ""
        return (f"PrescreenSampler({self.base!r}, candidates={self.candidates}, "
                f"rule={self.rule!r}{veto})")


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values``, interpolated linearly between order statistics (as
    ``numpy.quantile``'s default)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


def _finite(scores: list[float]) -> list[float | None]:
    return [s if math.isfinite(s) else None for s in scores]


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


def _unseen(study: optuna.Study, proposals: list[Candidate]) -> list[Candidate]:
    """The proposals whose architecture no finished or running trial of the study has."""
    seen = {
        t.user_attrs.get("arch_hash")
        for t in study.get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.PRUNED)
    }
    return [candidate for candidate in proposals if candidate.arch.arch_hash not in seen]


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
