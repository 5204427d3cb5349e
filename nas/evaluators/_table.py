"""Score a NAS-Bench-Graph architecture by looking it up in the benchmark's tables (no training).

The tables are the "light" ones the ``nas-bench-graph`` package ships (one per dataset, keyed by
``Arch.valid_hash()``), each row holding:

- ``valid_perf``: validation accuracy, the mean over the benchmark's three seeds of the
  validation accuracy at the best validation epoch. Searches select on it (our ``val_acc``).
- ``perf``: test accuracy at that epoch, the same mean; recorded, never selected on (our
  ``test_acc``). This is the benchmark's protocol (README: "valid performance" /
  "test performance"; the paper reports search results as the test accuracy of the architecture
  the search chose by validation accuracy). For ogbn-proteins both are ROC-AUC.
- ``para``: parameters in millions (our ``num_params``, an integer count).
- ``latency``: seconds of one inference on the benchmark's GPU (our ``metrics["latency"]``).

The per-epoch curves (``dur``) live only in the full tables on figshare, which are not shipped.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, NamedTuple

from nas.evaluators.base import Evaluation, Evaluator
from search_spaces.nasbench_graph import (
    BENCHMARK_SETTINGS, PROTEINS_OPS, NasBenchGraphArchitecture, NasBenchGraphSpace,
    benchmark_dataset,
)

if TYPE_CHECKING:
    from nas.tasks import Task
    from nas.train import Reporter
    from search_spaces.base import Architecture, SearchSpace

#: the benchmark's datasets, in its own order (the package ships one light table per name)
BENCHMARK_DATASETS: tuple[str, ...] = tuple(BENCHMARK_SETTINGS)


class TableRow(NamedTuple):
    """One architecture's entry of a benchmark table."""

    val_acc: float     # ``valid_perf``: mean validation accuracy (fraction)
    test_acc: float    # ``perf``: mean test accuracy (fraction)
    num_params: int    # ``para`` (millions) as a count
    latency: float     # ``latency``: seconds per inference


def load_table(dataset: str) -> dict[int, TableRow]:
    """The benchmark's table of ``dataset`` (any spelling): ``valid_hash`` -> :class:`TableRow`.

    Read once per process and dataset, then served from memory.
    """
    return _load_table(_dataset(dataset))


@functools.lru_cache(maxsize=None)
def _dataset(name: str) -> str:
    return benchmark_dataset(name)


@functools.lru_cache(maxsize=None)
def _load_table(dataset: str) -> dict[int, TableRow]:
    # The package's own reader unpickles the table file installed with the package (part of the
    # nas-bench-graph wheel from PyPI); no other pickle is ever read.
    from nas_bench_graph.readbench import light_read

    raw = light_read(dataset)
    return {
        int(key): TableRow(
            float(row["valid_perf"]), float(row["perf"]), round(float(row["para"]) * 1e6),
            float(row["latency"]),
        )
        for key, row in raw.items()
    }


def query(arch: NasBenchGraphArchitecture, dataset: str) -> TableRow:
    """The table row of ``arch`` on ``dataset`` (any isomorphic form of a cell finds its row).

    Raises:
        ValueError: unknown dataset (the message lists the valid ones).
        KeyError: the architecture is not in that dataset's table (ogbn-proteins was evaluated
            only with the ops of :data:`PROTEINS_OPS`).
    """
    dataset = _dataset(dataset)
    row = _load_table(dataset).get(arch.bench_hash)
    if row is None:
        hint = f" (its table covers ops {list(PROTEINS_OPS)} only)" if dataset == "proteins" else ""
        raise KeyError(f"architecture {arch.short()} is not in the {dataset} table{hint}")
    return row


class TableEvaluator(Evaluator):
    """Answer from NAS-Bench-Graph's tables: no data, no training, no weights.

    Args:
        dataset: the benchmark dataset to read; ``None`` (default): the task's dataset.
    """

    name = "table"
    needs_data = False
    measures_latency = True

    def __init__(self, dataset: str | None = None) -> None:
        self.dataset = None if dataset is None else benchmark_dataset(dataset)

    def check_space(self, space: SearchSpace) -> None:
        if space.name != NasBenchGraphSpace.name:
            raise ValueError(
                f"evaluator {self.name!r} answers from NAS-Bench-Graph's tables and cannot score "
                f"space {space.name!r}; use space {NasBenchGraphSpace.name!r}"
            )

    def check_task(self, task: Task) -> None:
        if task.level != "node":  # e.g. TU's PROTEINS, not the benchmark's ogbn-proteins
            raise ValueError(
                f"dataset {task.name!r} is a {task.level} task; NAS-Bench-Graph's tables are node "
                f"tasks (cora, citeseer, pubmed, cs, physics, photo, computers, arxiv, "
                f"ogbn-proteins)"
            )
        if self.dataset is None:
            _dataset(task.name)  # ValueError listing the benchmark's datasets

    def evaluate(
        self, arch: Architecture, space: SearchSpace, task: Task, *, seed: int = 0,
        device: str = "cpu", report: Reporter | None = None,
    ) -> Evaluation:
        self.check_space(space)
        dataset = self.dataset or benchmark_dataset(task.name)
        row = query(arch, dataset)  # type: ignore[arg-type]
        setting = BENCHMARK_SETTINGS[dataset]
        return Evaluation(
            metrics={"val_acc": row.val_acc, "test_acc": row.test_acc, "latency": row.latency},
            num_params=row.num_params, state_dict=None, seconds=0.0, epochs=None,
            in_channels=setting.num_features, out_channels=setting.num_classes,
        )

    def __repr__(self) -> str:
        return f"TableEvaluator(dataset={self.dataset!r})"
