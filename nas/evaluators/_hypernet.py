"""Score an architecture by its accuracy with parameters predicted by a graph hypernetwork
(no training), as SMASH (Brock et al., ICLR 2018) and GHN (Zhang et al., ICLR 2019) do."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from nas.evaluators.base import Evaluation, Evaluator
from nas.train import count_parameters, forward_flops, seed_everything

if TYPE_CHECKING:
    from nas.tasks import Task
    from nas.train import Reporter
    from search_spaces.base import Architecture, SearchSpace


class HypernetEvaluator(Evaluator):
    """Accuracy of the architecture with GHN-predicted parameters on val (selects) and test
    (recorded); the predicted parameters are the stored ``state_dict``.

    Args:
        hypernet: GHN checkpoint path or ``pretrained:<name>``; default
            ``pretrained:<space>-<dataset>``. Also given as the variant: ``hypernet:PATH``.
    """

    name = "hypernet"

    def __init__(self, hypernet: str | None = None, variant: str = "") -> None:
        self.hypernet = variant or hypernet

    def checkpoint(self, space: SearchSpace, task: Task) -> str:
        from metanets.ghn_train import default_hypernet

        return self.hypernet or default_hypernet(space, task)

    def prepare(self, space: SearchSpace, task: Task) -> None:
        from metanets.ghn_train import load_hypernet

        load_hypernet(self.checkpoint(space, task), task)

    def scoring_weights(self, space: SearchSpace, task: Task) -> tuple[str, str]:
        return ghn_file_identity(self.checkpoint(space, task))

    def evaluate(
        self, arch: Architecture, space: SearchSpace, task: Task, *, seed: int = 0,
        device: str = "cpu", report: Reporter | None = None,
    ) -> Evaluation:
        from metanets.ghn_train import TaskBatches, accuracy, load_hypernet, predicted_model

        seed_everything(seed)
        start = time.perf_counter()
        ghn = load_hypernet(self.checkpoint(space, task), task)
        batches = TaskBatches(task, seed=seed)
        model = predicted_model(ghn, space, arch, task, batches)
        metrics = {f"{split}_acc": accuracy(model, batches, split) for split in ("train", "val", "test")}
        if report is not None:
            report(0, metrics["val_acc"])
        return Evaluation(
            metrics=metrics, num_params=count_parameters(model),
            flops=forward_flops(model, task, "cpu") if task.level != "image" else None,
            state_dict={k: v.detach().clone() for k, v in model.state_dict().items()},
            seconds=time.perf_counter() - start, epochs=0,
            in_channels=task.num_features, out_channels=task.num_classes,
        )

    def __repr__(self) -> str:
        return f"HypernetEvaluator(hypernet={self.hypernet!r})"


def ghn_file_identity(checkpoint: str) -> tuple[str, str]:
    """``(SHA-256, where)`` of a GHN checkpoint file (a path or ``pretrained:<name>``): a GHN
    retrained into the same file is other weights."""
    from metanets.ghn import resolve_checkpoint
    from storage.store import file_sha256

    path = resolve_checkpoint(checkpoint)
    where = checkpoint if checkpoint.startswith("pretrained:") else path.resolve()
    return file_sha256(path), f"GHN {where}"
