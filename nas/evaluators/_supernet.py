"""Score an architecture with weights inherited from a trained supernet (no training)."""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from nas.evaluators.base import Evaluation, Evaluator
from nas.train import TrainConfig, count_parameters, resolve_device, seed_everything, train_model

if TYPE_CHECKING:
    from nas.supernet import Supernet
    from nas.tasks import Task
    from nas.train import Reporter
    from search_spaces.base import Architecture, SearchSpace

SPLITS = ("train", "val", "test")


class SupernetEvaluator(Evaluator):
    """Extract the architecture's sub-network from a trained supernet and measure it.

    The stand-alone model of the space is built and the supernet's weights of its path copied in
    (architectures outside the supernet's sub-space are mapped by its stated rule, see
    :meth:`nas.supernet.Supernet.project`). BatchNorm statistics, shared by every path during
    supernet training, are recomputed on the training data (``recalibrate``); optionally a few
    epochs of fine-tuning follow (through the one training loop). Returns train/val/test accuracy
    of the inherited (or fine-tuned) weights; ``state_dict`` is ``None`` (inherited weights are
    not stored as a trained model).

    Args:
        supernet: checkpoint folder written by ``metanas supernet train``.
        recalibrate: recompute BatchNorm running statistics on the training split.
        finetune_epochs: epochs of fine-tuning of the extracted model (0: none). Default 5: on
            Cora (experiments/results/supernet_ranking_variants_ft5.md) 5 epochs raised Kendall
            tau against from-scratch accuracy from 0.03 to 0.42; BatchNorm recalibration alone
            did not change it.
        variant: ``"ft<N>"`` from ``"supernet:ft<N>"`` sets ``finetune_epochs``.
        strict: raise on architectures outside the supernet instead of mapping them.
        batch_size: graphs per mini-batch (graph tasks).
    """

    name = "supernet"

    def __init__(
        self, supernet: str | None = None, recalibrate: bool = True, finetune_epochs: int = 5,
        strict: bool = False, batch_size: int = 64, variant: str = "",
    ) -> None:
        if variant:  # "supernet:ft0" = inherited weights only, "supernet:ft10" = 10 epochs
            if not (variant.startswith("ft") and variant[2:].isdigit()):
                raise ValueError(
                    f"evaluator 'supernet' variant {variant!r} must be ft<N> (fine-tuning epochs), "
                    "e.g. supernet:ft0 or supernet:ft5"
                )
            finetune_epochs = int(variant[2:])
        if finetune_epochs < 0:
            raise ValueError(f"finetune_epochs must be >= 0, got {finetune_epochs}")
        self.path, self.recalibrate, self.finetune_epochs = supernet, recalibrate, finetune_epochs
        self.strict, self.batch_size = strict, batch_size
        self._loaded: dict[str, tuple[Supernet, dict[str, Any]]] = {}
        self._graphs: dict[tuple[str, str], tuple[Any, ...]] = {}  # fixed-graph inputs, one task

    def meta(self) -> dict[str, Any]:
        """The checkpoint's metadata; ``ValueError`` if no folder was given."""
        from nas.supernet import read_meta

        if not self.path:
            raise ValueError("evaluator 'supernet' needs a checkpoint: pass --supernet PATH")
        return read_meta(self.path)

    def scoring_weights(self, space: SearchSpace, task: Task) -> tuple[str, str]:
        """The checkpoint's weights, by content: the same supernet moved elsewhere resumes a
        study, another is refused."""
        from nas.supernet._checkpoint import weights_sha256

        self.meta()  # no folder given: the error naming --supernet
        return weights_sha256(self.path), f"--supernet {Path(self.path).resolve()}"

    def check_space(self, space: SearchSpace) -> None:
        meta = self.meta()
        trained = meta["space"]
        if trained != space.name:
            raise ValueError(
                f"supernet {self.path} was trained over space {trained!r}, not {space.name!r}"
            )
        # a conv the supernet lacks cannot be mapped: every trial drawing it would fail
        covered = meta.get("supernet", {}).get("convs")
        missing = [c for c in getattr(space, "convs", ()) if covered is not None and c not in covered]
        if missing:
            raise ValueError(
                f"supernet {self.path} covers convs {covered}, not {missing}; search only those "
                f"(--convs {','.join(covered)})"
            )

    def supernet(self, device: str | torch.device = "cpu") -> Supernet:
        """The trained supernet on ``device`` (loaded once per device)."""
        from nas.supernet import load_supernet

        key = str(device)
        if key not in self._loaded:
            self.meta()
            self._loaded[key] = load_supernet(self.path, device)  # type: ignore[arg-type]
        return self._loaded[key][0]

    def evaluate(
        self, arch: Architecture, space: SearchSpace, task: Task, *, seed: int = 0,
        device: str = "cpu", report: Reporter | None = None,
    ) -> Evaluation:
        start = time.perf_counter()
        device = str(resolve_device(device))
        self.check_task(task)
        supernet = self.supernet(device)
        projected = supernet.project(arch, strict=self.strict)
        seed_everything(seed)
        if not self.finetune_epochs and task.level == "node" and hasattr(supernet, "fixed_graph_inputs"):
            metrics = self._score_in_supernet(supernet, projected, task, device)
            if report is not None:
                report(0, metrics["val_acc"])
            metrics["mapped"] = float(projected != arch)
            return Evaluation(
                metrics=metrics, num_params=_path_parameters(supernet, projected), flops=None,
                state_dict=None, seconds=time.perf_counter() - start, epochs=0,
                in_channels=task.num_features, out_channels=task.num_classes,
            )
        model = self.inherited_model(projected, task, device)
        if self.finetune_epochs:
            config = finetune_config(space, arch, self.finetune_epochs, seed=seed, device=device,
                                     batch_size=self.batch_size)
            metrics = dict(train_model(model, task, config, report=report).metrics)
        else:
            metrics = accuracies(model, task, device, self.batch_size)
            if report is not None:
                report(0, metrics["val_acc"])
        metrics["mapped"] = float(projected != arch)
        return Evaluation(
            metrics=metrics, num_params=count_parameters(model), flops=None, state_dict=None,
            seconds=time.perf_counter() - start, epochs=self.finetune_epochs,
            in_channels=task.num_features, out_channels=task.num_classes,
        )

    def inherited_model(self, arch: Architecture, task: Task, device: str) -> nn.Module:
        """The stand-alone model of ``arch`` (already projected into the supernet's sub-space)
        with the supernet's weights of its path, BatchNorm statistics recomputed on the
        training split when ``recalibrate``: what the ``ftN`` scorers fine-tune."""
        model = self.supernet(device).extract(arch)
        if self.recalibrate:
            recalibrate_batchnorm(model, task, device, self.batch_size)
        return model

    @torch.no_grad()
    def _score_in_supernet(
        self, supernet: Supernet, arch: Architecture, task: Task, device: str,
    ) -> dict[str, float]:
        """Node tasks without fine-tuning: the path run inside the supernet on the cached fixed
        graph (no stand-alone model is built). Equals extracting, recalibrating and measuring
        the stand-alone model up to float rounding: one full-graph pass in train mode for the
        path's BatchNorm layers only gives the statistics recalibration computes; the
        supernet's own statistics are restored afterwards."""
        key = (task.name, device)
        if key not in self._graphs:
            data = task.data.to(device)
            self._graphs = {key: (*supernet.fixed_graph_inputs(data.x, data.edge_index), data)}  # type: ignore[operator]
        inputs, graph, data = self._graphs[key]
        supernet.eval()
        norms = [m for m in supernet.path_modules(arch) if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(), m.momentum)
                 for m in norms] if self.recalibrate else []
        try:
            if norms and self.recalibrate:
                _start_recalibration(norms)
                supernet(inputs, graph, arch=arch)
                for m in norms:
                    m.eval()
            out = supernet(inputs, graph, arch=arch)  # (N, C)
        finally:
            for m, (mean, var, count, momentum) in zip(norms, saved):
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)
                m.momentum = momentum
                m.eval()
        predicted = out.argmax(-1)
        metrics = {}
        for split in SPLITS:
            mask = data[f"{split}_mask"]
            count = int(mask.sum())
            metrics[f"{split}_acc"] = float((predicted[mask] == data.y[mask]).sum()) / count if count else math.nan
        return metrics

    def prepare(self, space: SearchSpace, task: Task) -> None:
        """Load the supernet once before any trial: a damaged or foreign checkpoint failed
        every trial, and the search exited 0 with none completed."""
        self.supernet("cpu")

    def check_task(self, task: Task) -> None:
        trained = self.meta()["dataset"]
        if trained != task.name:
            raise ValueError(
                f"supernet {self.path} was trained on dataset {trained!r}, not {task.name!r}"
            )

    def __repr__(self) -> str:
        return (
            f"SupernetEvaluator(supernet={self.path!r}, recalibrate={self.recalibrate}, "
            f"finetune_epochs={self.finetune_epochs})"
        )


def finetune_config(
    space: SearchSpace, arch: Architecture, epochs: int, *, seed: int, device: str,
    batch_size: int = 64,
) -> TrainConfig:
    """The settings an ``ftN`` scorer fine-tunes inherited weights with: the architecture's lr
    and weight decay, ``epochs`` epochs, no early stop, the best validation epoch kept (a
    fine-tune that blows up scores its best epoch before the NaN)."""
    return TrainConfig(
        **space.training_config(arch), epochs=epochs, patience=0, batch_size=batch_size,
        seed=seed, device=device, keep_best_on_divergence=True,
    )


def _start_recalibration(norms: list[nn.Module]) -> None:
    """BatchNorm layers that accumulate fresh statistics over the next forward passes."""
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the recalibration batches
        norm.train()


def _path_parameters(supernet: Supernet, arch: Architecture) -> int:
    """Parameters of the stand-alone model of ``arch``: those of the modules its path runs."""
    unique = {id(p): p for module in supernet.path_modules(arch) for p in module.parameters()}
    return sum(p.numel() for p in unique.values())


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module, task: Task, device: str | torch.device, batch_size: int = 64,
    max_batches: int = 20,
) -> None:
    """Replace every BatchNorm's running statistics by their average over the training split
    (forward passes in train mode for the BatchNorm layers only; dropout stays off)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    model.eval()
    _start_recalibration(norms)
    for inputs in _inputs(task, "train", device, batch_size)[:max_batches]:
        model(*inputs[:3])
    model.eval()


@torch.no_grad()
def accuracies(
    model: nn.Module, task: Task, device: str | torch.device, batch_size: int = 64,
) -> dict[str, float]:
    """``{split}_acc`` for train, val and test of ``model`` in eval mode."""
    model.eval()
    metrics = {}
    for split in SPLITS:
        correct, count = 0, 0
        for x, edge_index, batch, y, select in _inputs(task, split, device, batch_size):
            out = model(x, edge_index, batch)
            out = out[select] if select is not None else out
            correct += int((out.argmax(-1) == y).sum())
            count += y.numel()
        metrics[f"{split}_acc"] = correct / count if count else math.nan
    return metrics


def _inputs(
    task: Task, split: str, device: str | torch.device, batch_size: int,
) -> list[tuple[Tensor, Tensor, Tensor | None, Tensor, Tensor | None]]:
    """``(x, edge_index, batch, y, select)`` per forward pass over ``split``."""
    if task.level == "node":
        data = task.data.to(device)
        mask = data[f"{split}_mask"]
        return [(data.x, data.edge_index, None, data.y[mask], mask)]
    from torch_geometric.loader import DataLoader

    loader = DataLoader(task.dataset[task.splits[split]], batch_size=batch_size)
    return [
        (b.x, b.edge_index, b.batch, b.y.view(-1), None) for b in (b.to(device) for b in loader)
    ]
