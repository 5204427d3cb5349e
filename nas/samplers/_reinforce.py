"""A GraphNAS-style controller trained with REINFORCE.

Reference: Gao et al., "GraphNAS: Graph Neural Architecture Search with Reinforcement
Learning", IJCAI 2020; Williams, "Simple statistical gradient-following algorithms for
connectionist reinforcement learning", 1992.

The policy is factorised: one vector of logits per parameter of the space (one logit per
choice), so conditional parameters (a fourth layer's choices) are simply not used when the
space does not ask for them. After every completed trial the logits of the choices the trial
made move along ``advantage * grad log pi(choice)``, where the advantage is the reward minus a
moving-average baseline, divided by a moving standard deviation (so one learning rate fits
accuracies and parameter counts alike).

The controller lives in the study's storage: its logits, baseline and the set of trials it has
learned from are a JSON study system attribute, updated after each trial. A resumed search or a
second worker loads it and continues the same policy; if two workers race, a trial missing from
the stored state is learned from at the next update, so each completed trial is used once. A
stored policy that is not finite (stored before infinite rewards were skipped) is relearned
from the study's completed trials.
"""
from __future__ import annotations

import json
import math
import random
from typing import TYPE_CHECKING, Any

from optuna.distributions import BaseDistribution, distribution_to_json
from optuna.trial import TrialState

from nas.samplers._base import Archive, Params, ProposalSampler, finite_values

if TYPE_CHECKING:
    from collections.abc import Sequence

    from optuna.study import Study
    from optuna.trial import FrozenTrial

    from search_spaces.base import SearchSpace

#: study system attribute holding the controller (JSON)
POLICY_ATTR = "metanas:reinforce:policy"


class Controller:
    """Factorised softmax policy over the choices of every parameter, with a reward baseline.

    Args:
        state: a dict from :meth:`to_dict` (default: a fresh, uniform policy).
    """

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        state = state or {}
        #: parameter name -> {"distribution": optuna JSON, "logits": [...]}
        self.params: dict[str, dict[str, Any]] = state.get("params", {})
        self.baseline: float | None = state.get("baseline")
        self.variance: float = state.get("variance", 0.0)
        self.seen: set[int] = set(state.get("seen", []))

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": self.params, "baseline": self.baseline, "variance": self.variance,
            "seen": sorted(self.seen),
        }

    def is_finite(self) -> bool:
        """Whether the baseline, variance and every logit are finite (a policy stored before
        infinite rewards were skipped may hold a baseline of -inf and NaN logits)."""
        numbers = [self.variance, *(v for entry in self.params.values() for v in entry["logits"])]
        if self.baseline is not None:
            numbers.append(self.baseline)
        return all(math.isfinite(v) for v in numbers)

    def logits(self, name: str, distribution: BaseDistribution) -> list[float]:
        """The logits of ``name``, reset to uniform if its distribution changed."""
        spec = distribution_to_json(distribution)
        entry = self.params.get(name)
        if entry is None or entry["distribution"] != spec:
            values = finite_values(distribution)
            entry = {"distribution": spec, "logits": [0.0] * len(values or [])}
            self.params[name] = entry
        return entry["logits"]

    def probabilities(self, name: str, distribution: BaseDistribution) -> list[float]:
        logits = self.logits(name, distribution)
        top = max(logits)
        weights = [math.exp(v - top) for v in logits]
        total = sum(weights)
        return [w / total for w in weights]

    def sample(self, name: str, distribution: BaseDistribution, rng: random.Random) -> Any:
        values = finite_values(distribution)
        assert values is not None
        return rng.choices(values, weights=self.probabilities(name, distribution))[0]

    def learn(self, trial: FrozenTrial, reward: float, learning_rate: float, decay: float) -> None:
        """One REINFORCE step on the choices of ``trial`` that earned ``reward`` (none for an
        infinite reward, which has no advantage to step by: it would make every logit NaN)."""
        self.seen.add(trial.number)
        if not math.isfinite(reward):
            return
        if self.baseline is None:
            self.baseline = reward
            return
        advantage = reward - self.baseline
        self.variance = decay * self.variance + (1 - decay) * advantage**2
        self.baseline = decay * self.baseline + (1 - decay) * reward
        scaled = advantage / math.sqrt(self.variance + 1e-12)
        for name, value in trial.params.items():
            distribution = trial.distributions[name]
            values = finite_values(distribution)
            if values is None or value not in values:
                continue
            probs = self.probabilities(name, distribution)
            logits = self.logits(name, distribution)
            chosen = values.index(value)
            for i, p in enumerate(probs):  # d log softmax / d logit_i = [i == chosen] - p_i
                logits[i] += learning_rate * scaled * ((i == chosen) - p)


class ReinforceSampler(ProposalSampler):
    """REINFORCE over a factorised policy kept in the study's storage (see the module docs).

    Args:
        learning_rate: step size of the logits per (normalised) advantage.
        baseline_decay: decay of the moving-average baseline and of the advantage variance.
        seed: seed of every random choice.
        space: the search space to replay proposals through (default: the study's).
    """

    strategy = "reinforce"

    def __init__(
        self, learning_rate: float = 0.2, baseline_decay: float = 0.9, *, seed: int | None = None,
        space: SearchSpace | None = None,
    ) -> None:
        if learning_rate <= 0 or not 0 <= baseline_decay < 1:
            raise ValueError(
                f"reinforce needs learning_rate > 0 and 0 <= baseline_decay < 1, got "
                f"{learning_rate} and {baseline_decay}"
            )
        super().__init__(seed=seed, space=space)
        self.learning_rate, self.baseline_decay = learning_rate, baseline_decay

    def check_study(self, study: Study) -> None:
        super().check_study(study)
        for trial in study.get_trials(deepcopy=False)[-1:]:
            for name, distribution in trial.distributions.items():
                if finite_values(distribution) is None:
                    raise ValueError(
                        f"strategy 'reinforce' needs discrete choices; parameter {name!r} of "
                        f"study {study.study_name!r} is continuous ({distribution!r})"
                    )

    def controller(
        self, study: Study, finished: FrozenTrial | None = None, value: float | None = None
    ) -> Controller:
        """The stored controller, brought up to date with every completed trial (and with
        ``finished``, a trial being told ``value`` that storage does not yet show COMPLETE).

        A stored controller that is not finite (see :meth:`Controller.is_finite`) is relearned
        from the study's completed trials, infinite rewards skipped, and stored again."""
        text = study._storage.get_study_system_attrs(study._study_id).get(POLICY_ATTR)
        controller = Controller(json.loads(text) if text else None)
        relearn = not controller.is_finite()
        if relearn:
            controller = Controller()
        sign = 1.0 if study.direction.name == "MAXIMIZE" else -1.0
        fresh = [
            (t, t.values[0])
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.number not in controller.seen and t.values
        ]
        if finished is not None and value is not None and finished.number not in controller.seen:
            fresh.append((finished, value))
        for trial, reward in sorted(fresh, key=lambda pair: pair[0].number):
            controller.learn(trial, sign * reward, self.learning_rate, self.baseline_decay)
        if fresh or relearn:
            study._storage.set_study_system_attr(
                study._study_id, POLICY_ATTR, json.dumps(controller.to_dict())
            )
        return controller

    def propose(self, study: Study, archive: Archive, rng: random.Random) -> Params:
        controller = archive.state
        return {
            name: controller.sample(name, distribution, rng)
            for name, distribution in sorted(archive.distributions.items())
            if finite_values(distribution) is not None
        }

    def archive(self, study: Study, current: int) -> Archive:
        """The study's archive with the controller attached as its ``state``: what every
        proposal samples from, the trial's own and a pre-screen's further candidates alike."""
        archive = super().archive(study, current)
        archive.state = self.controller(study)
        return archive

    def after_trial(
        self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        super().after_trial(study, trial, state, values)
        if state == TrialState.COMPLETE and values:
            self.controller(study, trial, values[0])  # learn now and store the controller

    def __repr__(self) -> str:
        return (
            f"ReinforceSampler(learning_rate={self.learning_rate}, "
            f"baseline_decay={self.baseline_decay})"
        )
