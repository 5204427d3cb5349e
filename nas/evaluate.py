"""``metanas evaluate``: loss and accuracy of an exported model on the splits of a task.

Reads any folder of the export format of :mod:`nas.export` (``metanas export``, ``prune``,
``predict-params``) and never writes to it. The task defaults to the one the model was last
trained on as the export records it (a pruned model's fine-tuning dataset, else ``dataset``),
split as every search, zoo and ``metanas prune`` splits it (:func:`nas.tasks.load_task`, seed 0,
or the dataset's official split); the measurement is ``metanas prune``'s "before"
(:func:`metanets.pruning.pipeline.evaluate`, the training loop run for 0 epochs), and MACs are
counted on the inputs prune counts them on.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from nas.export import (
    canonical_dataset, check_fits, check_model_folder, load_exported, read_export,
    recorded_dataset,
)
from nas.tasks import load_task, resolve_dataset


@dataclasses.dataclass(frozen=True)
class EvaluateJob:
    """One ``metanas evaluate`` call."""

    model: str                    # exported model folder (read only)
    dataset: str | None = None    # task to evaluate on (default: the one the export records)
    device: str = "cpu"           # cpu or cuda (resolve auto with nas.train.resolve_device)
    data_root: str | None = None  # dataset folder (default $METANAS_DATA, see nas.tasks)


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """What ``metanas evaluate`` measured."""

    model: str                    # the exported folder
    dataset: str                  # canonical name of the task evaluated on
    trained_on: str | None        # the dataset the export records (None: none it records)
    metric: str                   # the task's metric ("accuracy")
    metrics: dict[str, float]     # {train,val,test}_{acc,loss}
    macs: int                     # one forward pass on prune's example inputs
    params: int

    @property
    def other_dataset(self) -> bool:
        """Whether the task is not the one the export records the model was trained on."""
        return self.trained_on is not None and self.trained_on != self.dataset

    def summary(self) -> dict[str, Any]:
        return {"model": self.model, "dataset": self.dataset, "trained_on": self.trained_on,
                "other_dataset": self.other_dataset, "metric": self.metric, **self.metrics,
                "macs": self.macs, "params": self.params}


def dataset_to_evaluate(job: EvaluateJob, recorded: str | None) -> str:
    """The canonical name of ``job.dataset``, else of ``recorded``; ``ValueError`` naming the
    bad value and the choices, or saying that the export records no dataset metanas loads."""
    if job.dataset is not None:
        return resolve_dataset(job.dataset)
    spec = Path(job.model) / "architecture.json"
    if recorded is None:
        raise ValueError(f"{spec} records no dataset the model was trained on: pass "
                         f"--dataset NAME")
    try:
        return resolve_dataset(recorded)
    except ValueError as error:
        raise ValueError(f"{spec} records dataset {recorded!r}, which metanas does not load by "
                         f"name (a model searched on data held in memory, a DataTask, whose "
                         f"split is not recorded): pass --dataset NAME; {error}") from None


def run_evaluate(job: EvaluateJob) -> Evaluation:
    """Evaluate the exported model ``job.model`` (see the module docstring)."""
    from metanets.pruning.core import count_macs, count_params
    from metanets.pruning.pipeline import evaluate, example_inputs

    folder = Path(job.model)
    check_model_folder(folder)
    document = read_export(folder)
    trained_on = recorded_dataset(document)
    name = dataset_to_evaluate(job, trained_on)
    model = load_exported(folder, document)
    task = load_task(name, job.data_root)  # split as a search splits it (seed 0)
    check_fits(document, task, trained_on)
    metrics = evaluate(model, task, job.device)
    macs = count_macs(model, example_inputs(task))
    return Evaluation(str(job.model), task.name, canonical_dataset(trained_on), task.metric, metrics,
                      macs, count_params(model))


def format_evaluation(evaluation: Evaluation) -> str:
    """The table ``metanas evaluate`` prints."""
    m = evaluation.metrics
    lines = [f"{evaluation.model} on {evaluation.dataset!r} (the split searches use)",
             f"{'split':<8}{'loss':>12}{evaluation.metric:>12}"]
    lines += [f"{split:<8}{m[f'{split}_loss']:>12.4f}{m[f'{split}_acc']:>12.4f}"
              for split in ("train", "val", "test")]
    lines.append(f"MACs {evaluation.macs:,}, params {evaluation.params:,}")
    return "\n".join(lines)

