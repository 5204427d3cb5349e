"""Score an architecture without training it: a zero-cost proxy of its initialised model."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch

from nas.evaluators.base import Evaluation, Evaluator
from nas.proxies import PROXIES, ProxyBatch, get_proxy, proxy_batches, proxy_name
from nas.train import count_parameters, seed_everything

if TYPE_CHECKING:
    from nas.tasks import Task
    from nas.train import Reporter
    from search_spaces.base import Architecture, SearchSpace


class ZeroCostEvaluator(Evaluator):
    """Build the architecture's model (seeded initialisation), compute one proxy of
    :data:`nas.proxies.PROXIES` on a few batches of the task's training data, and return it as
    ``metrics["score"]`` (no ``val_acc``/``test_acc``: nothing is trained). The "accuracy"
    objective maximises ``score`` when an evaluation has no ``val_acc``
    (:meth:`nas.evaluators.Evaluation.accuracy_estimate`). No weights are stored.

    ``get_evaluator("zero-cost:synflow")`` makes one with ``variant="synflow"``.

    Args:
        variant: the proxy name, any spelling (``"SynFlow"``, ``"grad-norm"``, ``"NASWOT"``).
        num_batches: mini-batches of training graphs (graph tasks; node tasks use one batch: the
            whole graph, scored on its training nodes).
        batch_size: graphs per mini-batch (graph tasks).
        data_seed: which training graphs form the batches; fixed, so that every architecture
            is scored on the same data (the trial seed only seeds the initialisation).
    """

    name = "zero-cost"

    def __init__(
        self, variant: str = "", num_batches: int = 2, batch_size: int = 64,
        data_seed: int = 0,
    ) -> None:
        if not variant:
            raise ValueError(
                f"the zero-cost evaluator needs a proxy ('zero-cost:NAME'), NAME among choices "
                f"{sorted(PROXIES)}"
            )
        self.proxy_name = proxy_name(variant)
        self.proxy = get_proxy(self.proxy_name)
        if num_batches < 1 or batch_size < 1:
            raise ValueError(f"num_batches {num_batches} and batch_size {batch_size} must be >= 1")
        self.num_batches, self.batch_size, self.data_seed = num_batches, batch_size, data_seed
        self._batches: dict[tuple[str, str], list[ProxyBatch]] = {}

    @classmethod
    def variant_name(cls, variant: str) -> str:
        return proxy_name(variant)  # "NASWOT" -> "naswot"

    def batches(self, task: Task, device: str = "cpu") -> list[ProxyBatch]:
        """The task's proxy batches on ``device`` (made once per task and device)."""
        key = (task.name, str(device))
        if key not in self._batches:
            made = proxy_batches(task, self.num_batches, self.batch_size, self.data_seed)
            self._batches[key] = [batch.to(device) for batch in made]
        return self._batches[key]

    def evaluate(
        self, arch: Architecture, space: SearchSpace, task: Task, *, seed: int = 0,
        device: str = "cpu", report: Reporter | None = None,
    ) -> Evaluation:
        start = time.perf_counter()
        batches = self.batches(task, device)
        seed_everything(seed)  # the initialisation the proxy sees
        model = space.build(arch, task.num_features, task.num_classes, task.level)
        score = self.score(model, batches, seed)
        return Evaluation(
            metrics={"score": score}, num_params=count_parameters(model),
            seconds=time.perf_counter() - start, epochs=0,
            in_channels=task.num_features, out_channels=task.num_classes,
        )

    def score(self, model: torch.nn.Module, batches: list[ProxyBatch], seed: int = 0) -> float:
        """The proxy of an initialised ``model`` on ``batches`` (``seed`` seeds dropout)."""
        model = model.to(batches[0].inputs[0].device).train()
        torch.manual_seed(seed)
        return float(self.proxy(model, batches))

    def __repr__(self) -> str:
        return f"ZeroCostEvaluator({self.proxy_name!r})"
