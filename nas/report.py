"""``metanas report``: plots of a study (optimisation history, parameter importances, and the
Pareto front of multi-objective studies) written as PNG files."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna


def write_report(study: optuna.Study, out: str | Path) -> list[Path]:
    """Write the plots that the study's trials allow; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as plots

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not completed:
        raise KeyError(f"study {study.study_name!r} has no completed trial to report on")
    written = []
    multi = len(study.directions) > 1
    jobs = {
        "history.png": lambda: plots.plot_optimization_history(
            study, target=(lambda t: t.values[0]) if multi else None,
            target_name=objective_label(study, completed)),
    }
    if len(completed) >= 2:
        jobs["importances.png"] = lambda: plots.plot_param_importances(
            study, target=(lambda t: t.values[0]) if multi else None)
    if multi:
        jobs["pareto_front.png"] = lambda: plots.plot_pareto_front(study)
    for name, plot in jobs.items():
        try:
            with warnings.catch_warnings():  # "importance may be inaccurate" on small studies
                warnings.simplefilter("ignore")
                plot()
        except (ValueError, RuntimeError) as error:  # e.g. too few distinct parameters
            (folder / f"{name}.txt").write_text(f"not plotted: {error}\n")
            continue
        path = folder / name
        plt.gcf().set_size_inches(8, 5)
        plt.tight_layout()
        plt.savefig(path, dpi=120)
        plt.close("all")
        written.append(path)
    return written


def objective_label(study: optuna.Study, completed: list[optuna.trial.FrozenTrial]) -> str:
    """What the study's (first) objective measured: validation accuracy, or, when no trial
    measured one (a training-free evaluator), the score of the study's evaluator."""
    if any("val_acc" in t.user_attrs for t in completed) or not any("score" in t.user_attrs for t in completed):
        return "validation accuracy"
    evaluator = str(study.user_attrs.get("evaluation", "")).removeprefix("evaluator ")
    return f"score ({evaluator})" if evaluator else "score"
