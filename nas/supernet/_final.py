"""Re-score a search's best architectures, and train the best from scratch, as trials of
companion studies.

A supernet-scored search ranks architectures by inherited weights; its best one (or its ``K``
best, of which the best from-scratch validation accuracy wins: inherited weights rank
imperfectly) is then trained from scratch by the ``train`` evaluator and stored like any trial: in the study
``<study>-final`` of the same storage (same dataset and space), as an enqueued trial with fixed
parameters (user attributes ``source_study``, ``source_trial``). The search's study records the
companion's name in its user attribute ``final_study``. Re-running does not train twice.

Between the two, :func:`refine` can re-score the search's ``N`` best with a costlier evaluator
that ranks better (``supernet:ft20``: inherited weights fine-tuned 20 epochs) in the study
``<study>-refine`` (user attribute ``refine_study``); :func:`final_train` then takes its ``K``
best by that score: a two-fidelity search that spends the fine-tuning only where it matters.
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
REFINE_SUFFIX = "-refine"
#: the second fidelity of a refined supernet search (experiments/results/supernet_ranking_notes.md)
DEFAULT_REFINE_EVALUATOR = "supernet:ft20"


def refine(
    config: SearchConfig, top_n: int, evaluator: str = DEFAULT_REFINE_EVALUATOR,
) -> list[optuna.trial.FrozenTrial]:
    """Re-score the ``top_n`` best trials of ``config``'s study with ``evaluator`` (same supernet,
    epochs and patience), as trials of the study ``<study>-refine``; returns them, best first.
    A later :func:`final_train` ranks by these scores.

    Raises:
        ValueError: ``top_n`` < 1, or an unknown ``evaluator`` (naming the valid ones).
        KeyError: the study has no completed trial.
    """
    import optuna

    if top_n < 1:
        raise ValueError(f"--refine takes a number of architectures >= 1, got {top_n}")
    name = f"{config.study_name}{REFINE_SUFFIX}"
    target = dataclasses.replace(config, evaluator=evaluator, strategy="random", study_name=name, n_jobs=1)
    target.make_evaluator()  # an unknown evaluator fails before any work
    trials = _rescore(config, config.study_name, top_n, target)
    optuna.load_study(study_name=config.study_name, storage=config.storage).set_user_attr("refine_study", name)
    return trials


def final_train(config: SearchConfig, top_k: int = 1) -> list[optuna.trial.FrozenTrial]:
    """Train the ``top_k`` best trials of ``config``'s study (of its ``<study>-refine`` study when
    :func:`refine` ran) from scratch; returns the companion trials, best validation accuracy first
    (the search's answer is the first).

    With ``config.supernet`` set, each architecture is first mapped onto the supernet's covered
    sub-space (what was actually scored); trials that map to the same architecture count once.
    Epochs and patience are ``config``'s. Ranking is by the study's first objective.

    Raises:
        ValueError: ``top_k`` < 1.
        KeyError: the study has no completed trial.
    """
    import optuna

    if top_k < 1:
        raise ValueError(f"--final-train takes a number of architectures >= 1, got {top_k}")
    searched = optuna.load_study(study_name=config.study_name, storage=config.storage)
    source = searched.user_attrs.get("refine_study", config.study_name)
    name = f"{config.study_name}{FINAL_SUFFIX}"
    target = dataclasses.replace(
        config, evaluator="train", supernet=None, strategy="random", study_name=name, n_jobs=1,
    )
    trials = _rescore(config, source, top_k, target)
    searched.set_user_attr("final_study", name)
    return trials


def _rescore(
    config: SearchConfig, source_name: str, top_k: int, target: SearchConfig,
) -> list[optuna.trial.FrozenTrial]:
    """Evaluate the ``top_k`` best distinct architectures of the study ``source_name`` again, as
    enqueued trials of ``target``'s study (``target``'s evaluator); trials already there are not
    evaluated twice. Returns them, best first objective first."""
    import optuna

    from nas.export import best_trial
    from nas.study import counts_against_budget, create_or_load_study, run_search
    from nas.tasks import load_task

    source = optuna.load_study(study_name=source_name, storage=config.storage)
    best_trial(source)  # KeyError naming the study when nothing completed
    space = config.make_space()
    chosen: dict[str, tuple[int, dict[str, Any]]] = {}
    for trial in _ranked(source):
        params = _trial_params(config, space.architecture_from_dict(json.loads(trial.user_attrs["arch"])))
        chosen.setdefault(json.dumps(params, sort_keys=True), (trial.number, params))
        if len(chosen) == top_k:
            break
    task = load_task(config.dataset, config.data_root)
    study = create_or_load_study(target, task)
    todo = [(number, params) for number, params in chosen.values()
            if _find(study, number, source_name) is None]
    for number, params in todo:
        study.enqueue_trial(params, user_attrs={"source_study": source_name, "source_trial": number})
    if todo:
        target.n_trials = sum(counts_against_budget(t) for t in study.get_trials(deepcopy=False)) + len(todo)
        run_search(target)
    done = []
    for number, _ in chosen.values():
        found = _find(study, number, source_name)
        if found is None:
            raise RuntimeError(f"the {target.evaluator} evaluation of trial {number} of {source_name!r} did not complete")
        done.append(found)
    sign = -1 if study.directions[0].name == "MAXIMIZE" else 1
    return sorted(done, key=lambda t: (sign * t.values[0], t.number))


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
