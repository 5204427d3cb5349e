"""The interface of an evaluator: a way to score an architecture on a task."""
from __future__ import annotations

import abc
import dataclasses
import math
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from torch import Tensor

    from nas.tasks import Task
    from nas.train import Reporter
    from search_spaces.base import Architecture, SearchSpace


#: metrics that count something: recorded as ints (every other metric as a float)
COUNT_METRICS = ("best_epoch",)


@dataclasses.dataclass
class Evaluation:
    """An evaluator's answer for one architecture.

    ``metrics["val_acc"]`` is what a search selects on; ``metrics["test_acc"]`` is recorded and
    never used to select. A training-free evaluator has neither and instead returns
    ``metrics["score"]``, an estimate that ranks like accuracy (higher: predicted more accurate;
    not comparable to an accuracy). ``state_dict`` (trained weights) is stored when present.
    """

    metrics: dict[str, float]
    num_params: int | None = None
    flops: int | None = None
    state_dict: dict[str, Tensor] | None = None
    seconds: float = 0.0
    epochs: int | None = None
    in_channels: int | None = None
    out_channels: int | None = None
    #: epoch -> (metrics of every split, weights) after that epoch, when asked for (model zoos)
    checkpoints: dict[int, tuple[dict[str, float], dict[str, Tensor]]] | None = None

    def accuracy_estimate(self) -> float:
        """What the "accuracy" objective maximises: ``val_acc`` when the evaluation has one,
        else a training-free ``score``; NaN when it has neither."""
        value = self.metrics.get("val_acc", self.metrics.get("score", math.nan))
        return float(value)

    def recorded_metrics(self) -> dict[str, float | int]:
        """The metrics as a trial records them: :data:`COUNT_METRICS` (``best_epoch``) as
        ints, every other one as a float (NumPy and torch scalars included)."""
        return {key: int(value) if key in COUNT_METRICS else float(value)
                for key, value in self.metrics.items()}


class Evaluator(abc.ABC):
    """Scores architectures. Subclasses set :attr:`name` and implement :meth:`evaluate`."""

    name: ClassVar[str]
    #: whether :meth:`evaluate` reads the task's data (a table lookup does not)
    needs_data: ClassVar[bool] = True
    #: whether :meth:`evaluate` measures ``latency`` (the objective of that name needs it)
    measures_latency: ClassVar[bool] = False

    @classmethod
    def variant_name(cls, variant: str) -> str:
        """The canonical spelling of ``variant`` (of ``"name:variant"``); as given by default."""
        return variant

    @abc.abstractmethod
    def evaluate(
        self, arch: Architecture, space: SearchSpace, task: Task, *, seed: int = 0,
        device: str = "cpu", report: Reporter | None = None,
    ) -> Evaluation:
        """Score ``arch``; may raise ``optuna.TrialPruned`` through ``report``."""

    def check_space(self, space: SearchSpace) -> None:
        """Raise ``ValueError`` naming both if this evaluator cannot score ``space``."""

    def check_task(self, task: Task) -> None:
        """Raise ``ValueError`` if this evaluator cannot score architectures on ``task`` (must not
        load the task's data)."""

    def prepare(self, space: SearchSpace, task: Task) -> None:
        """Load what every trial needs (may read the task's data), so that bad input such as a
        missing checkpoint fails the search once, before any trial, not every trial."""

    def scoring_weights(self, space: SearchSpace, task: Task) -> tuple[str, str] | None:
        """``(SHA-256, where)`` of the trained weights besides the architecture's own that this
        evaluator's numbers depend on (a supernet's, a graph hypernetwork's), which a study
        records so that a resume with other weights is refused; None where there are none."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
