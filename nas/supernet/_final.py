"""Train a search's best architecture(s) from scratch, as trials of a companion study.

A supernet-scored search ranks architectures by inherited weights; its best one (or its ``K``
best, of which the best from-scratch validation accuracy wins: inherited weights rank
imperfectly) is then trained from scratch by the ``train`` evaluator and stored like any trial: in the study
``<study>-final`` of the same storage (same dataset and space), as an enqueued trial with fixed
parameters (user attributes ``source_study``, ``source_trial``). The search's study records the
companion's name in its user attribute ``final_study``. Re-running does not train twice.
"""
from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

from optuna.trial import TrialState

if TYPE_CHECKING:
    import optuna

    from nas.study import SearchConfig

FINAL_SUFFIX = "-final"


def final_train(config: SearchConfig, top_k: int = 1) -> list[optuna.trial.FrozenTrial]:
    """Train the ``top_k`` best trials of ``config``'s study from scratch; returns the companion
    trials, best validation accuracy first (the search's answer is the first).

    With ``config.supernet`` set, each architecture is first mapped onto the supernet's covered
    sub-space (what was actually scored); trials that map to the same architecture count once.
    Epochs and patience are ``config``'s. Ranking is by the study's first objective.

    Raises:
        ValueError: ``top_k`` < 1.
        KeyError: the study has no completed trial.
    """
    import optuna

    from nas.export import best_trial
    from nas.study import counts_against_budget, create_or_load_study, run_search
    from nas.tasks import load_task

    if top_k < 1:
        raise ValueError(f"--final-train takes a number of architectures >= 1, got {top_k}")
    source = optuna.load_study(study_name=config.study_name, storage=config.storage)
    best_trial(source)  # KeyError naming the study when nothing completed
    space = config.make_space()
    chosen: dict[str, tuple[int, dict[str, Any]]] = {}
    for trial in _ranked(source):
        params = _trial_params(config, space.architecture_from_dict(json.loads(trial.user_attrs["arch"])))
        chosen.setdefault(json.dumps(params, sort_keys=True), (trial.number, params))
        if len(chosen) == top_k:
            break
    name = f"{config.study_name}{FINAL_SUFFIX}"
    final = dataclasses.replace(
        config, evaluator="train", supernet=None, strategy="random", study_name=name, n_jobs=1,
    )
    task = load_task(config.dataset, config.data_root)
    study = create_or_load_study(final, task)
    source.set_user_attr("final_study", name)
    todo = [(number, params) for number, params in chosen.values()
            if _find(study, number, config.study_name) is None]
    for number, params in todo:
        study.enqueue_trial(
            params, user_attrs={"source_study": config.study_name, "source_trial": number},
        )
    if todo:
        final.n_trials = sum(counts_against_budget(t) for t in study.get_trials(deepcopy=False)) + len(todo)
        run_search(final)
    trained = []
    for number, _ in chosen.values():
        found = _find(study, number, config.study_name)
        if found is None:
            raise RuntimeError(f"the from-scratch training of trial {number} did not complete")
        trained.append(found)
    return sorted(trained, key=lambda t: (-t.values[0], t.number))


def _ranked(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Completed trials, best first objective first (ties: earlier trial first)."""
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    sign = -1 if study.directions[0].name == "MAXIMIZE" else 1
    return sorted(completed, key=lambda t: (sign * t.values[0], t.number))


def _trial_params(config: SearchConfig, arch: Any) -> dict[str, Any]:
    from nas.supernet import SUPERNETS, read_meta
    from search_spaces.resolver import resolve

    cls = resolve(config.space, SUPERNETS, "supernet space")
    if not config.supernet:
        return cls.trial_params(arch)
    supernet = cls(**read_meta(config.supernet)["supernet"])
    return supernet.trial_params(supernet.project(arch))


def _find(study: optuna.Study, number: int, source: str) -> optuna.trial.FrozenTrial | None:
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        attrs = trial.user_attrs
        if attrs.get("source_trial") == number and attrs.get("source_study") == source:
            return trial
    return None
