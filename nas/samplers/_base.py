"""What the proposing strategies share: a whole architecture is proposed per trial, and the
trial's ``suggest_*`` calls are answered from that proposal.

A :class:`ProposalSampler` proposes a full parameter set in :meth:`~ProposalSampler.before_trial`
(the way optuna's NSGA-II and CMA-ES samplers answer from a precomputed point) and answers each
``sample_independent`` call from it. A parameter the proposal lacks (say the fourth layer's
choices after a mutation deepened the network) is drawn at random, so conditional spaces work
without the sampler knowing their structure.

Everything a proposal depends on is read from the study (its trials, their parameters, values
and distributions) or from a generator seeded by ``(seed, trial number)``: a resumed search, a
second worker and a re-run with the same seed all continue from the same state. The proposal is
also written to the trial's system attributes, so another worker can avoid proposing an
architecture that a running trial has not yet suggested.

When the sampler knows the :class:`~search_spaces.base.SearchSpace` (given, or named by the
study's ``space`` user attribute that ``nas.study`` sets), proposals are replayed through the
space's own ``suggest``: that yields exactly the parameters the space will ask for, and the
architecture's canonical hash, so proposals are deduplicated by architecture, not by parameter
spelling (NAS-Bench-Graph has many parameter sets per architecture).
"""
from __future__ import annotations

import abc
import functools
import json
import math
import random
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

if TYPE_CHECKING:
    from optuna.study import Study
    from optuna.trial import FrozenTrial

    from nas.tasks import Task
    from search_spaces.base import SearchSpace

#: trial system attribute holding the proposed parameters (JSON)
PROPOSAL_ATTR = "metanas:proposal"
#: key prefix of a parameter set the space refuses to build
INVALID = "invalid:"
#: how often a duplicate proposal is redrawn before it is accepted anyway
MAX_REDRAWS = 64

Params = dict[str, Any]


# --- values of an optuna distribution ----------------------------------------------------------


def random_value(distribution: BaseDistribution, rng: random.Random) -> Any:
    """One value drawn uniformly from ``distribution`` (log-uniformly for ``log=True``)."""
    if isinstance(distribution, CategoricalDistribution):
        return distribution.choices[rng.randrange(len(distribution.choices))]
    if isinstance(distribution, IntDistribution):
        if distribution.log:
            raw = math.exp(rng.uniform(math.log(distribution.low), math.log(distribution.high + 1)))
            return min(distribution.high, max(distribution.low, int(raw)))
        return rng.randrange(distribution.low, distribution.high + 1, distribution.step)
    if isinstance(distribution, FloatDistribution):
        if distribution.log:
            return math.exp(rng.uniform(math.log(distribution.low), math.log(distribution.high)))
        if distribution.step is not None:
            n = int(round((distribution.high - distribution.low) / distribution.step))
            return distribution.low + rng.randint(0, n) * distribution.step
        return rng.uniform(distribution.low, distribution.high)
    raise TypeError(f"unsupported distribution {distribution!r}")


def contains(distribution: BaseDistribution, value: Any) -> bool:
    """Whether ``value`` is a point of ``distribution``."""
    try:
        return bool(distribution._contains(distribution.to_internal_repr(value)))
    except (ValueError, TypeError, IndexError):
        return False


def finite_values(distribution: BaseDistribution, limit: int = 1024) -> list[Any] | None:
    """Every value of a discrete distribution (at most ``limit``), or ``None`` if continuous."""
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    if isinstance(distribution, IntDistribution):
        n = (distribution.high - distribution.low) // distribution.step + 1
        return None if n > limit else list(range(distribution.low, distribution.high + 1, distribution.step))
    if isinstance(distribution, FloatDistribution) and distribution.step is not None:
        n = int(round((distribution.high - distribution.low) / distribution.step)) + 1
        if n <= limit:
            return [distribution.low + i * distribution.step for i in range(n)]
    return None


def mutate_value(distribution: BaseDistribution, value: Any, rng: random.Random) -> Any:
    """A value of ``distribution`` other than ``value`` (a uniform other choice for discrete
    distributions, a Gaussian step of a tenth of the range for continuous ones)."""
    values = finite_values(distribution)
    if values is not None:
        others = [v for v in values if v != value]
        return others[rng.randrange(len(others))] if others else value
    assert isinstance(distribution, FloatDistribution)
    low, high = distribution.low, distribution.high
    if distribution.log:
        low, high, value = math.log(low), math.log(high), math.log(value)
    new = min(high, max(low, value + rng.gauss(0.0, 0.1 * (high - low))))
    return math.exp(new) if distribution.log else new


def mutable(distribution: BaseDistribution) -> bool:
    values = finite_values(distribution)
    return values is None or len(values) > 1


# --- replaying a proposal through a space ------------------------------------------------------


class ChosenParams:
    """Parameters a sampler fixes for a trial in ``before_trial`` and answers from in
    ``sample_independent`` (anything the trial asks beyond them goes to ``fallback``), until
    ``after_trial`` forgets them."""

    def __init__(self) -> None:
        self._by_trial: dict[int, dict[str, Any]] = {}

    def set(self, trial: FrozenTrial, params: dict[str, Any]) -> None:
        self._by_trial[trial._trial_id] = params

    def sample(
        self, fallback: optuna.samplers.BaseSampler, study: Study, trial: FrozenTrial,
        param_name: str, param_distribution: BaseDistribution,
    ) -> Any:
        chosen = self._by_trial.get(trial._trial_id, {})
        if param_name in chosen:
            return chosen[param_name]
        return fallback.sample_independent(study, trial, param_name, param_distribution)

    def forget(self, trial: FrozenTrial) -> None:
        self._by_trial.pop(trial._trial_id, None)


class ReplayTrial:
    """The ``suggest_*`` part of a trial, answered from given parameters where they fit and at
    random otherwise; records what the space asked for.

    ``space.suggest(ReplayTrial(params, rng))`` turns a (partial, possibly stale) parameter set
    into exactly the parameters a real trial of that space would get, and their distributions.
    """

    def __init__(self, params: Params, rng: random.Random) -> None:
        self.given, self.rng = params, rng
        self.params: Params = {}
        self.distributions: dict[str, BaseDistribution] = {}
        self.drew = False  # whether a value had to be drawn at random

    def _suggest(self, name: str, distribution: BaseDistribution) -> Any:
        if name in self.params:
            return self.params[name]
        value = self.given.get(name, _MISSING)
        if value is _MISSING or not contains(distribution, value):
            value = random_value(distribution, self.rng)
            self.drew = True
        self.params[name], self.distributions[name] = value, distribution
        return value

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self._suggest(name, _categorical(tuple(choices)))

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        return self._suggest(name, IntDistribution(low, high, log=log, step=step))

    def suggest_float(
        self, name: str, low: float, high: float, step: float | None = None, log: bool = False
    ) -> float:
        return self._suggest(name, FloatDistribution(low, high, log=log, step=step))


_MISSING = object()


@functools.lru_cache(maxsize=1024)
def _categorical(choices: tuple[Any, ...]) -> CategoricalDistribution:
    return CategoricalDistribution(choices)


def space_distributions(space: SearchSpace, samples: int = 64, seed: int = 0) -> dict[str, BaseDistribution]:
    """The distributions of every parameter ``space`` asks for, over ``samples`` random draws."""
    rng = random.Random(seed)
    found: dict[str, BaseDistribution] = {}
    for _ in range(samples):
        trial = ReplayTrial({}, rng)
        try:
            space.suggest(trial)  # type: ignore[arg-type]
        except optuna.TrialPruned:  # a refused combination still asked for its parameters
            pass
        found.update(trial.distributions)
    return found


def space_admits(space: SearchSpace, distributions: dict[str, BaseDistribution]) -> Callable[[Any], bool]:
    """``arch -> bool``: whether ``space`` (its ``distributions``, see :func:`space_distributions`)
    can propose ``arch``, i.e. every trial parameter of it is among that parameter's choices
    (an architecture of a wider space, e.g. a conv outside ``--convs``, is not)."""
    def admits(arch: Any) -> bool:
        for name, value in space.trial_params(arch).items():
            distribution = distributions.get(name)
            if distribution is None:
                return False
            try:
                if not distribution._contains(distribution.to_internal_repr(value)):
                    return False
            except (ValueError, TypeError):  # a value of another kind than the choices
                return False
        return True

    return admits


def resolve_study_space(study: Study) -> SearchSpace | None:
    """The space named by the study's ``space`` user attribute (set by ``nas.study``), if any."""
    name = study.user_attrs.get("space")
    if not name:
        return None
    from search_spaces import get_space

    try:
        return get_space(name)
    except ValueError:
        return None


def load_study_task(study: Study, strategy: str, data_root: str | None = None) -> Task:
    """The task of the study's ``dataset`` user attribute (set by ``nas.study``), loaded by name
    from ``data_root``: for a data-bound strategy (NAC, gradient) used outside a search, which
    hands it its task. ``ValueError`` naming the strategy if the study records no dataset, or
    one that is no name metanas loads (a :class:`~nas.tasks.DataTask`'s: pass the task)."""
    from nas.tasks import load_task, resolve_dataset

    name = study.user_attrs.get("dataset")
    if name is None:
        raise ValueError(f"strategy {strategy!r} needs the study's task: give the sampler "
                         f"task=..., or run it with run_search / metanas search")
    try:
        resolve_dataset(name)
    except ValueError:
        raise ValueError(
            f"strategy {strategy!r} cannot load the study's dataset {name!r} by name (graphs of "
            f"one's own, a DataTask?): give the sampler task=..., as run_search does"
        ) from None
    return load_task(name, data_root)


# --- what the study already holds --------------------------------------------------------------


class Archive:
    """A snapshot of a study's trials as a strategy sees them.

    Attributes:
        completed: COMPLETE trials in order of their number.
        scores: each completed trial's objective, sign-adjusted so that larger is better.
        distributions: the latest distribution of every parameter seen so far.
        taken: architecture keys of every trial that exists or is proposed (any state).
        taken_params: the parameter sets behind ``taken``.
    """

    def __init__(self, study: Study, trials: list[FrozenTrial], key: Any, current: int) -> None:
        sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
        self.completed = [t for t in trials if t.state == TrialState.COMPLETE and t.values]
        self.scores = [sign * t.values[0] for t in self.completed]
        self.distributions: dict[str, BaseDistribution] = {}
        self.taken: set[str] = set()
        self.taken_params: list[Params] = []
        #: whatever a strategy attaches while it proposes (e.g. its controller)
        self.state: Any = None
        for trial in trials:
            self.distributions.update(trial.distributions)
            if trial.number == current:
                continue
            params = trial.params
            proposal = trial.system_attrs.get(PROPOSAL_ATTR)
            if not trial.state.is_finished() and proposal:
                params = {**json.loads(proposal), **params}
            if params:
                self.taken.add(key(params, trial))
                self.taken_params.append(params)

    def ranked(self) -> list[tuple[float, FrozenTrial]]:
        """Completed trials, best first (ties: the earlier trial first)."""
        pairs = zip(self.scores, self.completed)
        return sorted(pairs, key=lambda pair: (-pair[0], pair[1].number))


class ProposalSampler(optuna.samplers.BaseSampler, abc.ABC):
    """Base of strategies that propose one whole architecture per trial (see the module docs).

    Subclasses set :attr:`strategy` and implement :meth:`propose`.

    Args:
        seed: seed of every random choice; a trial's choices depend on ``(seed, trial number)``.
        space: the search space, to replay proposals through (default: the one the study's
            ``space`` user attribute names, if any; else parameters are compared as given).
    """

    #: the strategy's name in error messages
    strategy: ClassVar[str]
    #: whether multi-objective studies are supported
    multi_objective: ClassVar[bool] = False

    def __init__(self, *, seed: int | None = None, space: SearchSpace | None = None) -> None:
        self._seed = seed if seed is not None else random.SystemRandom().randrange(2**31)
        self._space = space
        self._space_resolved = space is not None
        self._proposals: dict[int, Params] = {}
        self._rngs: dict[int, random.Random] = {}
        self._keys: dict[tuple[int, int], str] = {}  # (study id, trial number) -> key, finished trials
        self._distributions: dict[str, BaseDistribution] = {}  # known to the latest archive
        self._completed: dict[str, tuple[Params, str]] = {}  # complete() of full parameter sets
        self._lock = threading.RLock()

    # optuna's interface ---------------------------------------------------------------------

    def reseed_rng(self) -> None:
        self._seed = random.SystemRandom().randrange(2**31)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> Params:
        return {}

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self.check_study(study)
        rng = self.trial_rng(trial.number)
        archive = self.archive(study, trial.number)
        proposal = self._propose_new(study, trial, archive, rng)
        with self._lock:
            self._proposals[trial._trial_id] = proposal
            self._rngs[trial._trial_id] = rng
        study._storage.set_trial_system_attr(
            trial._trial_id, PROPOSAL_ATTR, json.dumps(proposal, sort_keys=True, default=str)
        )

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        with self._lock:
            proposal = self._proposals.get(trial._trial_id)
            rng = self._rngs.get(trial._trial_id)
        if proposal is None:  # a trial this sampler did not start (e.g. created by another one)
            proposal, rng = {}, self.trial_rng(trial.number)
            with self._lock:
                self._proposals[trial._trial_id], self._rngs[trial._trial_id] = proposal, rng
        value = proposal.get(param_name, _MISSING)
        if value is not _MISSING and contains(param_distribution, value):
            return value
        return random_value(param_distribution, rng)

    def after_trial(
        self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        with self._lock:
            self._proposals.pop(trial._trial_id, None)
            self._rngs.pop(trial._trial_id, None)

    # for subclasses -------------------------------------------------------------------------

    @abc.abstractmethod
    def propose(self, study: Study, archive: Archive, rng: random.Random) -> Params:
        """A (possibly partial) parameter set for the next trial."""

    def check_study(self, study: Study) -> None:
        """Raise ``ValueError`` naming the strategy and the study if it cannot serve it."""
        if len(study.directions) > 1 and not self.multi_objective:
            raise ValueError(
                f"strategy {self.strategy!r} handles single-objective studies only; study "
                f"{study.study_name!r} has {len(study.directions)} objectives (use one of: "
                f"random, tpe, gp, nsga2)"
            )

    def trial_rng(self, number: int) -> random.Random:
        return random.Random(f"{type(self).__name__}:{self._seed}:{number}")

    def space(self, study: Study) -> SearchSpace | None:
        if not self._space_resolved:
            self._space = resolve_study_space(study)
            self._space_resolved = True
        return self._space

    def complete(self, study: Study, params: Params, rng: random.Random) -> tuple[Params, str]:
        """The parameters a trial proposed ``params`` really gets, and its architecture key."""
        space = self.space(study)
        if space is None:  # draw the known parameters the proposal lacks; the trial asks for
            # those it needs (duplicates compare on a trial's own parameters, see is_taken)
            missing = {n: d for n, d in sorted(self._distributions.items()) if n not in params}
            params = {**random_params(missing, rng), **params}
            return params, json.dumps(params, sort_keys=True, default=str)
        text = json.dumps(params, sort_keys=True, default=str)
        if text in self._completed:
            return dict(self._completed[text][0]), self._completed[text][1]
        replay = ReplayTrial(params, rng)
        try:
            key = space.suggest(replay).arch_hash  # type: ignore[arg-type]
        except optuna.TrialPruned:  # a combination the space refuses (NAS-Bench-Graph's all-skip cell)
            key = INVALID + json.dumps(replay.params, sort_keys=True, default=str)
        if not replay.drew:  # the answer depends on the parameters alone: remember it
            if len(self._completed) > 100_000:
                self._completed.clear()
            self._completed[text] = (replay.params, key)
        return dict(replay.params), key

    def archive(self, study: Study, current: int) -> Archive:
        trials = study.get_trials(deepcopy=False)
        archive = Archive(study, trials, lambda params, trial: self._key(study, params, trial), current)
        self._distributions = archive.distributions
        return archive

    def is_taken(self, study: Study, archive: Archive, params: Params, key: str) -> bool:
        """Whether a trial of the study already has (or was proposed) this architecture.

        With a space, architectures compare by hash. Without one, ``params`` duplicates a trial
        when it agrees on all of that trial's parameters: a space asks for its parameters in an
        order decided by the values given, so it would ask for exactly those again.
        """
        if key.startswith(INVALID):
            return True
        if self.space(study) is not None:
            return key in archive.taken
        return any(
            all(params.get(name, _MISSING) == value for name, value in other.items())
            for other in archive.taken_params
        )

    def mutate(self, study: Study, params: Params, archive: Archive, rng: random.Random,
               edits: int = 1) -> Params:
        """``params`` with ``edits`` single-choice mutations, completed through the space after
        each so that a later edit sees the choices an earlier one made active."""
        child = dict(params)
        for _ in range(edits):
            child = self.complete(study, mutate(child, archive.distributions, rng), rng)[0]
        return child

    def _key(self, study: Study, params: Params, trial: FrozenTrial | None) -> str:
        if trial is None or not trial.state.is_finished():
            return self.complete(study, params, random.Random(0))[1]
        cache = (study._study_id, trial.number)
        if cache not in self._keys:
            self._keys[cache] = self.complete(study, params, random.Random(0))[1]
        return self._keys[cache]

    def _propose_new(self, study: Study, trial: FrozenTrial, archive: Archive, rng: random.Random) -> Params:
        """A proposal whose architecture no trial has, redrawn up to :data:`MAX_REDRAWS` times."""
        params: Params = {}
        for attempt in range(MAX_REDRAWS):
            # the strategy's own proposals first; then uniform ones, when the strategy keeps
            # proposing known architectures (a converged policy, an exhausted neighbourhood)
            proposal = self.propose(study, archive, rng) if attempt < MAX_REDRAWS // 2 else {}
            params, key = self.complete(study, proposal, rng)
            if not self.is_taken(study, archive, params, key):
                break
        return params


def random_params(distributions: dict[str, BaseDistribution], rng: random.Random) -> Params:
    """A uniform draw of every known parameter (completed through the space later)."""
    return {name: random_value(d, rng) for name, d in sorted(distributions.items())}


def mutate(
    params: Params, distributions: dict[str, BaseDistribution], rng: random.Random, edits: int = 1
) -> Params:
    """``params`` with ``edits`` choices changed, each to another value of its distribution.

    The changed choice is drawn uniformly among the parameter's active, mutable choices; when a
    change adds conditional choices (a deeper network, an attention conv's heads), the space
    draws them fresh when the proposal is completed, and choices a change removes are dropped.
    """
    child = dict(params)
    for _ in range(edits):
        names = [n for n in sorted(child) if n in distributions and mutable(distributions[n])]
        if not names:
            break
        name = names[rng.randrange(len(names))]
        child[name] = mutate_value(distributions[name], child[name], rng)
    return child
