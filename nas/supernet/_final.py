"""Train a search's best architecture from scratch, as a trial of a companion study.

A supernet-scored search ranks architectures by inherited weights; its best one is then trained
from scratch by the ``train`` evaluator and stored like any trial: in the study
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


def final_train(config: SearchConfig) -> optuna.trial.FrozenTrial:
    """Train the best trial of ``config``'s study from scratch; returns the companion trial.

    With ``config.supernet`` set, the architecture is first mapped onto the supernet's covered
    sub-space (what was actually scored). Epochs and patience are ``config``'s.
    """
    import optuna

    from nas.export import best_trial
    from nas.study import counts_against_budget, create_or_load_study, run_search
    from nas.tasks import load_task

    source = optuna.load_study(study_name=config.study_name, storage=config.storage)
    best = best_trial(source)
    space = config.make_space()
    arch = space.architecture_from_dict(json.loads(best.user_attrs["arch"]))
    params = _trial_params(config, arch)
    name = f"{config.study_name}{FINAL_SUFFIX}"
    final = dataclasses.replace(
        config, evaluator="train", supernet=None, strategy="random", study_name=name, n_jobs=1,
    )
    task = load_task(config.dataset, config.data_root)
    study = create_or_load_study(final, task)
    source.set_user_attr("final_study", name)
    done = _find(study, best.number, config.study_name)
    if done is not None:
        return done
    study.enqueue_trial(
        params, user_attrs={"source_study": config.study_name, "source_trial": best.number},
    )
    final.n_trials = sum(counts_against_budget(t) for t in study.get_trials(deepcopy=False)) + 1
    run_search(final)
    found = _find(study, best.number, config.study_name)
    if found is None:
        raise RuntimeError(f"the from-scratch training of trial {best.number} did not complete")
    return found


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
