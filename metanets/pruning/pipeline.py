"""Prune an exported model for a task and fine-tune it with the one training loop.

Methods (all at the same MACs speed-up and the same fine-tuning budget):

- ``magnitude``: remove the channel groups with the smallest L2 group norm;
- ``random``: remove random channels (seeded);
- ``metanet``: a graph metanetwork first rewrites the weights so that unimportant channel
  groups become small (:mod:`metanets.pruning.metanet`), then magnitude pruning of the rewritten
  network, then fine-tuning.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import TYPE_CHECKING, Any, Callable

from torch import nn

from metanets.pruning.core import PruneResult, prune_model

if TYPE_CHECKING:
    from nas.tasks import Task
    from nas.train import TrainConfig

METHODS: tuple[str, ...] = ("metanet", "magnitude", "random")

#: ``transform(model) -> model``: rewrites a network's weights before magnitude pruning
Transform = Callable[[nn.Module], nn.Module]


@dataclasses.dataclass(frozen=True)
class PruneOutcome:
    """Accuracies around one pruning run (``*_acc`` dicts hold train/val/test accuracies)."""

    method: str
    result: PruneResult           # the pruned (not fine-tuned) model and MACs / params
    model: nn.Module              # the fine-tuned pruned model
    before: dict[str, float]      # metrics of the input model
    transformed: dict[str, float] | None  # metrics after the metanetwork's rewrite (metanet)
    pruned: dict[str, float]      # right after pruning
    finetuned: dict[str, float]   # after fine-tuning (best validation epoch)
    finetune_seconds: float

    def summary(self) -> dict[str, Any]:
        r = self.result
        return {
            "method": self.method, "speedup": r.speedup, "speedup_asked": r.speedup_asked,
            "macs_before": r.macs_before,
            "macs_after": r.macs_after, "params_before": r.params_before,
            "params_after": r.params_after, "widths_before": list(r.widths_before),
            "widths_after": list(r.widths_after),
            "acc_before": self.before["test_acc"], "acc_pruned": self.pruned["test_acc"],
            "acc_finetuned": self.finetuned["test_acc"],
            "val_acc_before": self.before["val_acc"], "val_acc_finetuned":
                self.finetuned["val_acc"],
            "acc_transformed": None if self.transformed is None else self.transformed["test_acc"],
            "finetune_seconds": self.finetune_seconds,
        }


def resolve_method(method: str) -> str:
    from search_spaces.resolver import resolve_name

    return resolve_name(method, METHODS, "pruning method")


def example_inputs(task: Task, count: int = 64) -> tuple[Any, ...]:
    """One forward pass worth of inputs: the whole graph (node tasks), ``count`` training
    graphs in one batch (graph tasks) or ``count`` training images (image tasks)."""
    if task.level == "node":
        return task.data.x, task.data.edge_index
    if task.level == "graph":
        from torch_geometric.data import Batch

        batch = Batch.from_data_list(list(task.dataset[task.splits["train"][:count]]))
        return batch.x, batch.edge_index, batch.batch
    return _image_inputs(task, count)


def _image_inputs(task: Task, count: int) -> tuple[Any, ...]:
    return (task.dataset.x["train"][:count],)  # (count, C, H, W)


def evaluate(model: nn.Module, task: Task, device: str = "cpu") -> dict[str, float]:
    """Train/val/test accuracy and loss of ``model`` as it is (the training loop, 0 epochs)."""
    from nas.train import TrainConfig, train_model

    return train_model(copy.deepcopy(model), task, TrainConfig(epochs=0, device=device)).metrics


def prune_and_finetune(
    model: nn.Module, task: Task, speedup: float, method: str, finetune: TrainConfig,
    transform: Transform | None = None, seed: int = 0, before: dict[str, float] | None = None,
) -> PruneOutcome:
    """Prune a copy of ``model`` to ``speedup`` with ``method`` and fine-tune it.

    Args:
        model: the trained model (not modified).
        task: the task it was trained on (accuracy, fine-tuning, example inputs).
        speedup: target MACs ratio before / after.
        method: one of :data:`METHODS`.
        finetune: the fine-tuning budget (``train_model``'s config).
        transform: the metanetwork's rewrite (required for ``metanet``).
        seed: seed of random pruning.
        before: ``evaluate(model, task)`` when the caller has it (saves one evaluation).
    """
    from nas.train import train_model

    method = resolve_method(method)
    device = finetune.device
    before = before if before is not None else evaluate(model, task, device)
    inputs = example_inputs(task)
    source, transformed = model, None
    if method == "metanet":
        if transform is None:
            raise ValueError("method 'metanet' needs a trained metanetwork (--metanet PATH)")
        source = transform(copy.deepcopy(model))
        transformed = evaluate(source, task, device)
    importance = "random" if method == "random" else "magnitude"
    result = prune_model(source, inputs, speedup, importance=importance, seed=seed)
    pruned = evaluate(result.model, task, device)
    tuned = copy.deepcopy(result.model)
    trained = train_model(tuned, task, finetune)
    return PruneOutcome(method, result, tuned.cpu(), before, transformed, pruned,
                        trained.metrics, trained.seconds)
