"""Start a search from architectures that did well elsewhere (transfer across datasets).

``metanas search --warm-start SOURCE`` queues the ``k`` best architectures of ``SOURCE`` as the
study's first trials (``optuna.Study.enqueue_trial``) before any strategy proposes anything;
the strategy then goes on from them as from any completed trials: regularized evolution takes
them as its first population, the predictor as its first training data, TPE and GP as their
first observations. They count towards the trial budget like every other trial.

``SOURCE`` is one of

- ``study:NAME[,NAME...]``: the best completed trials (by the first objective) of earlier
  studies in the same storage, e.g. the same space searched on a related dataset;
- ``nasbench-graph:DATASET[,DATASET...]``: NAS-Bench-Graph cells ranked by their mean rank of
  validation accuracy in those datasets' tables (space ``nasbench-graph`` only). The search's
  own dataset is refused as a source: queueing the cells its own table ranks best would select
  on the table the search is scored by.

A resumed study is not queued again (the study remembers its warm start), and architectures the
study already holds are skipped.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from search_spaces.base import Architecture, SearchSpace

#: kinds of warm-start source
SOURCES = ("study", "nasbench-graph")
#: architectures queued by default: chosen on NAS-Bench-Graph's tuning datasets (cora,
#: citeseer, pubmed) as the k of 10, 20, 30, 50 with the best mean @100 of the predictor
#: strategy (experiments/results/nasbench_graph_transfer.md)
WARM_START_K = 30
#: study user attribute recording that (and from what) the study was warm-started
WARM_START_ATTR = "warm_start"


def parse_source(source: str) -> tuple[str, tuple[str, ...]]:
    """``"kind:a,b"`` -> ``(kind, ("a", "b"))``; a clear error for anything else."""
    kind, sep, names = source.partition(":")
    kind = kind.strip().lower().replace("_", "-")
    parts = tuple(name.strip() for name in names.split(",") if name.strip())
    if not sep or kind not in SOURCES or not parts:
        raise ValueError(
            f"could not resolve warm-start source {source!r}: expected one of "
            f"{[kind + ':NAME[,NAME...]' for kind in SOURCES]}"
        )
    return kind, parts


def warm_start_architectures(
    source: str, space: SearchSpace, k: int, *, storage: str | None = None,
    dataset: str | None = None,
) -> list[Architecture]:
    """The ``k`` best architectures of ``source`` (see the module docstring), best first.

    Args:
        source: ``study:NAME[,NAME...]`` or ``nasbench-graph:DATASET[,DATASET...]``.
        space: the search's space (it decodes stored architectures and must be
            ``nasbench-graph`` for benchmark sources).
        k: how many (at least 1).
        storage: SQLAlchemy URL of the studies (``study:`` sources).
        dataset: the search's dataset, refused as a benchmark source.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    kind, names = parse_source(source)
    if kind == "study":
        if storage is None:
            raise ValueError("a study: warm-start source needs the storage URL of its studies")
        return _best_of_studies(names, space, k, storage)
    return _best_benchmark_cells(names, space, k, dataset)


def _admitted_by(space: SearchSpace) -> Any:
    """``arch -> bool``: whether the search's space can propose ``arch`` (a source's best may
    use a conv outside ``--convs``, or an op ogbn-proteins' table lacks: queued, it would fail
    its trial and use up budget)."""
    from nas.samplers._base import space_admits, space_distributions

    return space_admits(space, space_distributions(space))


def _best_of_studies(names: tuple[str, ...], space: SearchSpace, k: int, storage: str
                     ) -> list[Architecture]:
    import optuna

    from storage import make_optuna_storage, redact
    from storage.engine import existing_database

    try:
        existing_database(storage)  # a missing SQLite file holds no study and is not created
    except FileNotFoundError:
        raise ValueError(f"could not resolve warm-start studies {list(names)}: there is no database "
                         f"at {redact(storage)} yet") from None
    backend = make_optuna_storage(storage)
    known = optuna.get_all_study_names(backend)
    ranked: list[tuple[float, Architecture]] = []
    for name in names:
        if name not in known:
            raise ValueError(f"could not resolve warm-start study {name!r} among choices {sorted(known)}")
        study = optuna.load_study(study_name=name, storage=backend)
        sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            spec = trial.user_attrs.get("arch")
            if spec is None or trial.values is None:
                continue
            arch = space.architecture_from_dict(json.loads(spec) if isinstance(spec, str) else spec)
            ranked.append((sign * trial.values[0], arch))
    if not ranked:
        raise ValueError(f"warm-start studies {list(names)} have no completed trial with an architecture")
    ranked.sort(key=lambda item: item[0])  # best first (stable: earlier trials win ties)
    admits = _admitted_by(space)
    return _unique([arch for _, arch in ranked if admits(arch)])[:k]


def _best_benchmark_cells(names: tuple[str, ...], space: SearchSpace, k: int,
                          dataset: str | None) -> list[Architecture]:
    from nas.evaluators._table import load_table
    from search_spaces.nasbench_graph import NasBenchGraphSpace, benchmark_dataset

    if not isinstance(space, NasBenchGraphSpace):
        raise ValueError(
            f"warm start from nasbench-graph tables needs space 'nasbench-graph', not {space.name!r}"
        )
    sources = tuple(benchmark_dataset(name) for name in names)  # unknown: lists valid ones
    if dataset is not None:
        target = benchmark_dataset(dataset) if _is_benchmark(dataset) else dataset
        if target in sources:
            raise ValueError(
                f"warm-start source {target!r} is the search's own dataset: its table is what "
                f"the search is scored by; choose other datasets"
            )
    admits = _admitted_by(space)
    archs = [arch for arch in space.all_architectures() if admits(arch)]
    ranks = [0.0] * len(archs)
    for name in sources:
        table = load_table(name)
        order = sorted(range(len(archs)), key=lambda i: -table[archs[i].bench_hash].val_acc)
        for rank, i in enumerate(order):
            ranks[i] += rank / len(sources)
    best = sorted(range(len(archs)), key=lambda i: ranks[i])[:k]  # stable: table order on ties
    return [archs[i] for i in best]


def _is_benchmark(dataset: str) -> bool:
    from search_spaces.nasbench_graph import benchmark_dataset

    try:
        benchmark_dataset(dataset)
    except ValueError:
        return False
    return True


def _unique(archs: list[Architecture]) -> list[Architecture]:
    seen: set[str] = set()
    out = []
    for arch in archs:
        if arch.arch_hash not in seen:
            seen.add(arch.arch_hash)
            out.append(arch)
    return out


def enqueue_warm_start(study: optuna.Study, space: SearchSpace, archs: list[Architecture],
                       source: str) -> int:
    """Queue ``archs`` as ``study``'s next trials, once per study; returns how many.

    A study that was already warm-started (a resumed search) queues nothing; architectures the
    study already holds (by ``arch_hash``) are skipped.
    """
    if study.user_attrs.get(WARM_START_ATTR):
        return 0
    held = {t.user_attrs.get("arch_hash") for t in study.get_trials(deepcopy=False)}
    queued = 0
    for arch in archs:
        if arch.arch_hash in held:
            continue
        study.enqueue_trial(space.trial_params(arch), skip_if_exists=True)
        queued += 1
    study.set_user_attr(WARM_START_ATTR, {"source": source, "queued": queued})
    return queued


def describe(study: optuna.Study) -> dict[str, Any] | None:
    """What the study was warm-started from (``None``: it was not)."""
    return study.user_attrs.get(WARM_START_ATTR)
