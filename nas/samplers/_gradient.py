"""The gradient strategy as an Optuna sampler: GDAS over the study's space, then its proposals.

On its first trial in a study the sampler runs a GDAS search (:mod:`nas.supernet._gradient`) on
the study's task (the one the search hands it) and space and stores the result (logits, derived
architecture, guard) as the study user attribute ``gradient_search``; every later trial, worker
or resumption reads it from there, so the strategy's state lives in the study's storage.
Proposals:

- the first trial that this sampler proposes in a study gets the *derived* architecture (argmax
  of the logits after the collapse guard), user attribute ``gradient_proposal = "derived"``;
- every further trial draws an architecture from the softmax of the logits (``"sampled"``;
  the study's duplicate check reuses a repeated architecture's result).

A pre-screen (:class:`~nas.samplers.PrescreenSampler`) screens the sampled trials only: its
further candidates are drawn from the logits too, so the label holds whichever it picks; the
derived architecture, the one the search exists to evaluate, is never screened away.

Each proposal is trained by the study's evaluator (from scratch with the default ``train``), so
its accuracy compares directly with every other strategy's trials. Parameters the proposal does
not fix (none for the GNN space) fall back to random sampling.

The supernet covers only the search's space: for a GNN space its convs, and at most its
``max_depth`` layers (:func:`supernet_options_within`), so every proposal is a point of it.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import optuna
from optuna.samplers import BaseSampler, RandomSampler

from nas.samplers._base import load_study_task

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.study import Study
    from optuna.trial import FrozenTrial

    from nas.supernet._gradient import GradientConfig, GradientResult
    from nas.tasks import Task
    from search_spaces.base import SearchSpace

RESULT_ATTR = "gradient_search"
PROPOSAL_ATTR = "gradient_proposal"


class GradientSampler(BaseSampler):
    """Propose architectures found by GDAS over the study's supernet (see the module docstring).

    Args:
        seed: seeds the search and the sampled proposals.
        config: GDAS settings (default :class:`nas.supernet.GradientConfig` with ``seed``).
        supernet_options: keyword arguments of the space's supernet (e.g. ``max_depth``); within
            ``space`` (see :func:`supernet_options_within`).
        data_root: dataset folder of the study's dataset, without ``task`` (default
            ``$METANAS_DATA``).
        space: the search's space, whose restrictions the supernet keeps.
        task: the task searched (a search hands its own, a :class:`~nas.tasks.DataTask` too;
            default: the study's dataset, loaded by name).
        device: where the search runs (``"auto"``: CUDA when available); replaces ``config``'s
            device (default: ``config``'s, ``"auto"``).
    """

    def __init__(
        self, seed: int | None = None, config: GradientConfig | None = None,
        supernet_options: dict[str, Any] | None = None, data_root: str | None = None, *,
        space: SearchSpace | None = None, device: str | None = None, task: Task | None = None,
    ) -> None:
        from nas.train import resolve_device

        self.seed = 0 if seed is None else seed
        self.config, self.data_root, self.task = config, data_root, task
        self.options = supernet_options_within(space, supernet_options or {})
        self.device = None if device is None else str(resolve_device(device))
        self._fallback = RandomSampler(seed=seed)
        self._proposals: dict[int, dict[str, Any]] = {}
        self._kinds: dict[int, str] = {}  # trial number -> "derived" or "sampled"

    def reseed_rng(self) -> None:
        self._fallback.reseed_rng()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        if trial.system_attrs.get("fixed_params"):  # an enqueued trial: not ours to propose
            return
        result = self.result(study)
        derived_taken = any(
            t.user_attrs.get(PROPOSAL_ATTR) == "derived" and t.number != trial.number
            for t in study.get_trials(deepcopy=False)
        )
        kind = "sampled" if derived_taken else "derived"
        params = result["derived_params"] if kind == "derived" else self._sampled(study, result, trial.number)
        study._storage.set_trial_user_attr(trial._trial_id, PROPOSAL_ATTR, kind)
        self._proposals[trial.number] = params
        self._kinds[trial.number] = kind

    def screens(self, study: Study, trial: FrozenTrial) -> bool:
        """Whether a pre-screen may evaluate another candidate in place of this trial's proposal:
        not in place of the derived architecture."""
        return self._kinds.get(trial.number) != "derived"

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution,
    ) -> Any:
        params = self._proposals.get(trial.number, {})
        if param_name in params and _contains(param_distribution, params[param_name]):
            return params[param_name]
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: Any, values: Any) -> None:
        self._proposals.pop(trial.number, None)
        self._kinds.pop(trial.number, None)

    # -- the search, once per study -----------------------------------------------------------

    def result(self, study: Study) -> dict[str, Any]:
        """The stored search result of ``study``, running the search if there is none yet."""
        stored = study.user_attrs.get(RESULT_ATTR)
        if stored is None:
            stored = self._search(study)
            study.set_user_attr(RESULT_ATTR, stored)
        self._check_covered(stored)
        return stored

    def search_config(self) -> GradientConfig:
        """The GDAS settings: ``config`` (default one seeded with ``seed``) on ``device``."""
        from nas.supernet._gradient import GradientConfig

        config = self.config or GradientConfig(seed=self.seed)
        return config if self.device is None else dataclasses.replace(config, device=self.device)

    def _check_covered(self, stored: dict[str, Any]) -> None:
        """``ValueError`` if the study's stored search covered convs outside this search's."""
        allowed = self.options.get("convs")
        if allowed is None:
            return
        outside = sorted(set(stored.get("supernet", {}).get("convs") or ()) - set(allowed))
        if outside:
            raise ValueError(
                f"the study's stored gradient search covers convs {outside} outside this search's "
                f"convs {list(allowed)}; search in a new study"
            )

    def _search(self, study: Study) -> dict[str, Any]:
        from nas.supernet import build_supernet
        from nas.supernet._gradient import gradient_search

        space = study.user_attrs.get("space")
        if space is None:
            raise ValueError("the gradient strategy needs a study made by run_search (its space attribute)")
        task = self.task if self.task is not None else load_study_task(study, "gradient", self.data_root)
        supernet = build_supernet(space, task, **self.options)
        result: GradientResult = gradient_search(supernet, task, self.search_config())
        payload = result.to_json_dict()
        payload["derived_params"] = supernet.trial_params(result.derived)
        payload["supernet"] = supernet.config()
        return json.loads(json.dumps(payload))  # JSON-clean (tuples -> lists)

    def candidate(self, study: Study, trial: FrozenTrial, j: int) -> dict[str, Any]:
        """The parameters of the trial's further candidate ``j`` (>= 1), for a pre-screen: an
        architecture drawn from the logits with a generator of its own."""
        return self._sampled(study, self.result(study), f"{trial.number}-{j}")

    def _sampled(self, study: Study, result: dict[str, Any], number: int | str) -> dict[str, Any]:
        from nas.supernet._gradient import sample_from_logits

        rng = random.Random(f"gradient-{self.seed}-{number}")
        picked = sample_from_logits(result["logits"], result["choices"], rng)
        supernet = _cached_supernet(study.user_attrs["space"], result["supernet"])
        return supernet.trial_params(supernet.from_decisions(picked))


def supernet_options_within(space: SearchSpace | None, options: Mapping[str, Any]) -> dict[str, Any]:
    """Supernet ``options`` narrowed to ``space``'s restrictions. A GNN space: ``convs``
    (default the space's; ``ValueError`` naming any outside it) and ``max_depth`` (default the
    supernet's, lowered to the space's; ``ValueError`` above it). Other spaces: as given."""
    from search_spaces.gnn import GNNSpace

    options = dict(options)
    if not isinstance(space, GNNSpace):
        return options
    convs = GNNSpace(convs=options["convs"]).convs if options.get("convs") else space.convs
    outside = [c for c in convs if c not in space.convs]
    if outside:
        raise ValueError(f"supernet convs {outside} are outside the space's convs {list(space.convs)}")
    depth = options.get("max_depth", min(_gnn_supernet_depth(), space.max_depth))
    if depth > space.max_depth:
        raise ValueError(f"supernet max_depth {depth} exceeds the space's max_depth {space.max_depth}")
    return {**options, "convs": convs, "max_depth": depth}


def _gnn_supernet_depth() -> int:
    """The GNN supernet's default ``max_depth``."""
    from nas.supernet import GNNSupernet

    return inspect.signature(GNNSupernet.__init__).parameters["max_depth"].default


_SUPERNETS: dict[str, Any] = {}


def _cached_supernet(space: str, config: dict[str, Any]) -> Any:
    """A supernet of the stored configuration (its decisions only are used; built once)."""
    from nas.supernet import SUPERNETS
    from search_spaces.resolver import resolve

    key = json.dumps([space, config], sort_keys=True)
    if key not in _SUPERNETS:
        _SUPERNETS[key] = resolve(space, SUPERNETS, "supernet space")(**config)
    return _SUPERNETS[key]


def _contains(distribution: BaseDistribution, value: Any) -> bool:
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return value in distribution.choices
    try:
        return bool(distribution._contains(distribution.to_internal_repr(value)))
    except (TypeError, ValueError):
        return False
