"""Build model zoos: many small networks trained with varied architectures and training
hyper-parameters, their weights and measured accuracies stored at several epochs.

A zoo is a random search whose every trial is kept: :func:`build_zoo` runs
:func:`nas.study.run_search` with the ``random`` strategy and a
:class:`~nas.evaluators.TrainEvaluator` that records checkpoints, so a zoo is resumable (re-run
the same command: finished networks stay, the rest are trained) and parallel (``n_jobs`` worker
processes, or several machines on one PostgreSQL storage) exactly like a search. The final
(best-validation) network of each run is in ``metanas_trained_models``, the network at every
checkpoint epoch in ``metanas_zoo_checkpoints`` (:class:`storage.models.ZooCheckpointModel`).
Reading zoos for metanetworks: :mod:`metanets.zoo`.

(Zoo *building* lives here rather than in ``metanets/zoo.py`` because it runs a search, and
``nas.study`` sits above ``metanets`` in the layering.)
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from storage import DEFAULT_STORAGE

if TYPE_CHECKING:
    from collections.abc import Callable

    import optuna


@dataclasses.dataclass
class ZooConfig:
    """What ``metanas zoo build`` parses its options into."""

    dataset: str = "mnist14"               # image task (nas.tasks.DATASETS)
    space: str = "cnn"                     # search space of the networks
    size: int = 1000                       # networks (training runs) in the zoo, finished ones count
    epochs: int = 3                        # epochs of every run
    checkpoint_epochs: tuple[int, ...] | None = None  # default: every epoch 1..epochs
    batch_size: int = 128                  # images per mini-batch
    storage: str = DEFAULT_STORAGE         # SQLAlchemy URL
    study_name: str | None = None          # default: "zoo-<dataset>-<space>"
    seed: int = 0                          # sampler seed; run i is trained with seed + i
    n_jobs: int = 1                        # worker processes
    data_root: str | None = None
    device: str = "cpu"                    # cpu, cuda or auto (nas.train.resolve_device)
    timeout: float | None = None           # seconds after which no new run starts
    space_options: dict[str, Any] = dataclasses.field(default_factory=dict)  # e.g. max_depth
    verbose: bool = True
    heartbeat: int = 30                    # seconds between heartbeats of a running run
    grace_period: int | None = None        # seconds before a silent RUNNING run is failed and retried

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"size must be >= 1, got {self.size}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.checkpoint_epochs is None:
            self.checkpoint_epochs = tuple(range(1, self.epochs + 1))
        if self.study_name is None:
            self.study_name = f"zoo-{self.dataset}-{self.space}"

    def search_config(self) -> Any:
        """The :class:`nas.study.SearchConfig` of the zoo's random search."""
        from nas.evaluators import TrainEvaluator
        from nas.study import SearchConfig
        from search_spaces import get_space

        evaluator = TrainEvaluator(
            epochs=self.epochs, patience=0, batch_size=self.batch_size,
            checkpoint_epochs=tuple(self.checkpoint_epochs or ()),
        )
        return SearchConfig(
            dataset=self.dataset, space=get_space(self.space, **self.space_options),
            strategy="random", evaluator=evaluator, n_trials=self.size, timeout=self.timeout,
            storage=self.storage, study_name=self.study_name, seed=self.seed, device=self.device,
            data_root=self.data_root, n_jobs=self.n_jobs, epochs=self.epochs, patience=0,
            verbose=self.verbose, heartbeat=self.heartbeat, grace_period=self.grace_period,
        )


def build_zoo(config: ZooConfig,
              on_study: Callable[[optuna.Study], object] | None = None) -> optuna.Study:
    """Train (the rest of) the zoo and return its study; see the module docstring.
    ``on_study`` as :func:`nas.study.run_search` says (called once the zoo's study exists).

    Raises:
        ValueError: ``config.device`` is cuda without CUDA (before any data or study is touched).
    """
    from nas.study import run_search
    from nas.tasks import load_task
    from nas.train import resolve_device

    resolve_device(config.device)
    task = load_task(config.dataset, config.data_root)
    if task.level != "image":
        raise ValueError(
            f"zoo build trains image networks; dataset {config.dataset!r} is a {task.level} "
            f"task (use an image dataset such as mnist or mnist14, or `metanas search` for GNNs, "
            f"whose stored networks are zoo entries too)"
        )
    return run_search(config.search_config(), on_study)
