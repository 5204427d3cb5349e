"""``metanas prune``: prune an exported model for a task, fine-tune it and export the result.

The pruned folder has the export format of :mod:`nas.export` with a ``"pruned"`` entry (width
attributes, the method, the speed-up, accuracies before and after) so that
:func:`nas.export.load_exported` rebuilds the narrower model.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from metanets.pruning.pipeline import PruneOutcome, prune_and_finetune, resolve_method
from metanets.pruning.shapes import pruned_attributes
from nas.export import PRUNED_KEY, export_model, load_exported, read_export
from nas.tasks import load_task
from nas.train import TrainConfig


@dataclasses.dataclass(frozen=True)
class PruneJob:
    """One ``metanas prune`` call."""

    model: str                  # exported model folder (read only)
    dataset: str                # task to measure accuracy on and fine-tune with
    speedup: float              # target MACs ratio before / after
    out: str                    # folder to write the pruned model into
    method: str = "magnitude"   # metanet, magnitude or random
    finetune_epochs: int = 10   # epochs of fine-tuning (0: none)
    metanet: str | None = None  # trained pruning metanetwork (method metanet)
    seed: int = 0
    device: str = "cpu"


def run_prune(job: PruneJob) -> tuple[PruneOutcome, Path]:
    """Prune, fine-tune and export; returns the outcome and the written folder."""
    method = resolve_method(job.method)
    if Path(job.out).resolve() == Path(job.model).resolve():
        raise ValueError(f"--out {job.out!r} is the input model's folder; the input is never "
                         "overwritten")
    document = read_export(job.model)
    model = load_exported(job.model)
    task = load_task(job.dataset, seed=job.seed)
    _check_task(document, task)
    transform = _transform(job.metanet) if method == "metanet" else None
    defaults = _training_defaults(document)
    config = TrainConfig(epochs=job.finetune_epochs, patience=0, seed=job.seed,
                         device=job.device, **defaults)
    outcome = prune_and_finetune(model, task, job.speedup, method, config, transform, job.seed)
    folder = _export(job, document, model, outcome)
    return outcome, folder


def _check_task(document: dict[str, Any], task: Any) -> None:
    if document["level"] != task.level or document["out_channels"] != task.num_classes:
        raise ValueError(
            f"dataset {task.name!r} ({task.level}, {task.num_classes} classes) does not fit the "
            f"model ({document['level']}, {document['out_channels']} classes)")


def _training_defaults(document: dict[str, Any]) -> dict[str, float]:
    arch = document.get("architecture", {})
    return {key: float(arch[key]) for key in ("lr", "weight_decay", "train_fraction") if key in arch}


def _transform(path: str | None) -> Any:
    if path is None:
        raise ValueError("method 'metanet' needs --metanet PATH (a trained pruning metanetwork)")
    from metanets.pruning.metanet import load_pruning_metanet

    return load_pruning_metanet(path).transform


def _export(job: PruneJob, document: dict[str, Any], original: Any,
            outcome: PruneOutcome) -> Path:
    keep = {k: v for k, v in document.items()
            if k not in ("format", "space", "architecture", "in_channels", "out_channels",
                         "level", PRUNED_KEY)}
    pruned = {"attributes": pruned_attributes(original, outcome.model),
              "source": str(job.model), "dataset": job.dataset,
              "finetune_epochs": job.finetune_epochs, **outcome.summary()}
    from search_spaces.gnn import GNN

    if isinstance(outcome.model, GNN):  # the GNN pruner narrows the architecture's widths too
        pruned["architecture"] = outcome.model.arch.to_dict()  # for reading; not for building
    return export_model(
        job.out, space=document["space"], spec=document["architecture"],
        in_channels=document["in_channels"], out_channels=document["out_channels"],
        level=document["level"], state_dict=outcome.model.state_dict(),
        metadata={**keep, PRUNED_KEY: pruned, "metrics": outcome.finetuned,
                  "num_params": outcome.result.params_after},
    )


def format_outcome(outcome: PruneOutcome) -> str:
    """The before/after table ``metanas prune`` prints."""
    r = outcome.result
    rows = [("", "before", "after"),
            ("MACs", f"{r.macs_before:,}", f"{r.macs_after:,}"),
            ("params", f"{r.params_before:,}", f"{r.params_after:,}"),
            ("test acc", f"{outcome.before['test_acc']:.4f}",
             f"{outcome.finetuned['test_acc']:.4f}"),
            ("val acc", f"{outcome.before['val_acc']:.4f}", f"{outcome.finetuned['val_acc']:.4f}")]
    lines = [f"{a:<10}{b:>18}{c:>18}" for a, b, c in rows]
    lines.append(f"method {outcome.method}: speed-up {r.speedup:.2f}x, test acc right after "
                 f"pruning {outcome.pruned['test_acc']:.4f}, widths {list(r.widths_before)} -> "
                 f"{list(r.widths_after)}")
    return "\n".join(lines)
