"""Score an architecture by training it from scratch with the one training loop."""
from __future__ import annotations

from typing import TYPE_CHECKING

from nas.evaluators.base import Evaluation, Evaluator
from nas.train import (
    SELECTIONS,
    TrainConfig,
    count_parameters,
    forward_flops,
    forward_latency,
    seed_everything,
    train_model,
)

if TYPE_CHECKING:
    from torch import nn

    from metanets.ghn import GraphHyperNetwork
    from nas.tasks import Task
    from nas.train import Reporter
    from search_spaces.base import Architecture, SearchSpace

#: how :class:`TrainEvaluator` initialises a model before training
INITS: tuple[str, ...] = ("random", "hypernet")


class TrainEvaluator(Evaluator):
    """Train from scratch (seeded), select the best validation epoch, keep its weights.

    Args:
        epochs: most training epochs.
        patience: early-stopping patience in epochs (0: never stop early).
        batch_size: graphs per mini-batch for graph tasks.
        progress: show a per-epoch progress bar.
        init: ``"random"`` (the layers' own initialisation) or ``"hypernet"``: start from
            parameters predicted by a graph hypernetwork (:mod:`metanets.ghn`).
        hypernet: GHN checkpoint for ``init="hypernet"`` (default ``pretrained:<space>-<dataset>``).
        checkpoint_epochs: epochs after which metrics and weights are kept as well
            (``Evaluation.checkpoints``; a search stores them as model-zoo checkpoints).
        select: which validated epoch a trial keeps (see ``TrainConfig.select``): the highest
            validation accuracy, or ``"val_loss"``, the lowest validation loss
            (NAS-Bench-Graph's rule).
        batch_size applies to graph and image tasks (graphs or images per mini-batch).
    """

    name = "train"
    measures_latency = True

    def __init__(
        self, epochs: int = 200, patience: int = 50, batch_size: int = 64, progress: bool = False,
        init: str = "random", hypernet: str | None = None,
        checkpoint_epochs: tuple[int, ...] = (), select: str = "val_acc",
    ) -> None:
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        if patience < 0:
            raise ValueError(f"patience must be >= 0 (0: never stop early), got {patience}")
        self.epochs, self.patience, self.batch_size = epochs, patience, batch_size
        self.progress = progress
        if select not in SELECTIONS:
            raise ValueError(f"could not resolve select {select!r} among choices {list(SELECTIONS)}")
        self.select = select
        if init not in INITS:
            raise ValueError(f"could not resolve init {init!r} among choices {list(INITS)}")
        self.init, self.hypernet = init, hypernet
        bad = [e for e in checkpoint_epochs if not 1 <= e <= epochs]
        if bad:
            raise ValueError(f"checkpoint epochs {bad} are outside 1..{epochs} (the epochs)")
        self.checkpoint_epochs = tuple(sorted(set(int(e) for e in checkpoint_epochs)))

    def evaluate(
        self, arch: Architecture, space: SearchSpace, task: Task, *, seed: int = 0,
        device: str = "cpu", report: Reporter | None = None,
    ) -> Evaluation:
        seed_everything(seed)
        model = (
            self._predicted(arch, space, task) if self.init == "hypernet"
            else space.build(arch, task.num_features, task.num_classes, task.level)
        )
        config = TrainConfig(
            **space.training_config(arch), epochs=self.epochs, patience=self.patience,
            batch_size=self.batch_size, seed=seed, device=device,
            checkpoint_epochs=self.checkpoint_epochs, select=self.select,
        )
        result = train_model(model, task, config, report=report, progress=self.progress)
        return Evaluation(
            metrics={
                **result.metrics, "best_epoch": result.best_epoch,
                **_latency(forward_latency(model, task, device)),
            },
            num_params=count_parameters(model), flops=forward_flops(model, task, device),
            state_dict=result.state_dict, seconds=result.seconds, epochs=result.epochs_run,
            in_channels=task.num_features, out_channels=task.num_classes,
            checkpoints=result.checkpoints or None,
        )

    def prepare(self, space: SearchSpace, task: Task) -> None:
        if self.init == "hypernet":
            self._hypernet(space, task)

    def scoring_weights(self, space: SearchSpace, task: Task) -> tuple[str, str] | None:
        """With ``init="hypernet"``, the GHN whose predicted parameters every trial starts from."""
        if self.init != "hypernet":
            return None
        from nas.evaluators._hypernet import ghn_file_identity

        return ghn_file_identity(self.checkpoint(space, task))

    def _predicted(self, arch: Architecture, space: SearchSpace, task: Task) -> nn.Module:
        """The model with GHN-predicted parameters (BatchNorm statistics from training data)."""
        from metanets.ghn_train import predicted_model

        return predicted_model(self._hypernet(space, task), space, arch, task).train()

    def checkpoint(self, space: SearchSpace, task: Task) -> str:
        """The GHN of ``init="hypernet"``: ``hypernet``, else the default for the task."""
        from metanets.ghn_train import default_hypernet

        return self.hypernet or default_hypernet(space, task)

    def _hypernet(self, space: SearchSpace, task: Task) -> GraphHyperNetwork:
        from metanets.ghn_train import load_hypernet

        return load_hypernet(self.checkpoint(space, task), task)

    def __repr__(self) -> str:
        init = "" if self.init == "random" else f", init={self.init!r}"
        select = "" if self.select == "val_acc" else f", select={self.select!r}"
        return f"TrainEvaluator(epochs={self.epochs}, patience={self.patience}{init}{select})"


def _latency(seconds: float | None) -> dict[str, float]:
    """``{"latency": seconds}`` of one inference pass (the table evaluator's key), if measured."""
    return {} if seconds is None else {"latency": seconds}
