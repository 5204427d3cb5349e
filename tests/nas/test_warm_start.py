"""Warm start: a search's first trials are the best architectures of earlier studies or of other
NAS-Bench-Graph tables, queued once per study, and every space can queue its architectures."""
from __future__ import annotations

import random
import optuna
import pytest

from nas.cli import main
from nas.evaluators._table import load_table
from nas.study import SearchConfig, run_search
from nas.warm_start import (
    describe, enqueue_warm_start, parse_source, warm_start_architectures,
)
from search_spaces import (
    CNNSpace, GNNSpace, MLPSpace, NasBenchGraphArchitecture, NasBenchGraphSpace,
)


@pytest.mark.parametrize("space", [GNNSpace(), NasBenchGraphSpace(), CNNSpace(), MLPSpace()],
                         ids=lambda s: s.name)
def test_trial_params_is_the_inverse_of_suggest(space) -> None:
    rng = random.Random(0)
    for _ in range(25):
        arch = space.sample(rng)
        again = space.suggest(optuna.trial.FixedTrial(space.trial_params(arch)))
        assert again.arch_hash == arch.arch_hash


def test_nasbench_trial_params_of_a_non_pattern_cell_is_its_canonical_form() -> None:
    space = NasBenchGraphSpace()
    cell = next(a for a in (space.sample(i) for i in range(200)) if a.links != a.canonical().links)
    params = space.trial_params(cell)
    assert space.suggest(optuna.trial.FixedTrial(params)).arch_hash == cell.arch_hash


@pytest.mark.parametrize("bad", ["cora", "table:cora", "study:", "nasbench-graph: , "])
def test_malformed_sources_name_the_valid_forms(bad: str) -> None:
    with pytest.raises(ValueError, match="study:NAME") as error:
        parse_source(bad)
    assert repr(bad) in str(error.value)


def test_benchmark_source_ranks_cells_by_the_source_tables() -> None:
    space = NasBenchGraphSpace("cora")
    archs = warm_start_architectures("nasbench-graph:citeseer", space, 5, dataset="cora")
    table = load_table("citeseer")
    values = [table[a.bench_hash].val_acc for a in archs]
    assert len(archs) == 5 and values == sorted(values, reverse=True)
    assert values[0] == max(row.val_acc for row in table.values())
    two = warm_start_architectures("nasbench-graph:citeseer,pubmed", space, 5, dataset="cora")
    assert [a.arch_hash for a in two] != [a.arch_hash for a in archs]  # both tables count


def test_benchmark_source_refuses_the_searchs_own_table_and_other_spaces() -> None:
    with pytest.raises(ValueError, match="own dataset"):
        warm_start_architectures("nasbench-graph:citeseer,cora", NasBenchGraphSpace(), 3,
                                 dataset="cora")
    with pytest.raises(ValueError, match="'gnn'"):
        warm_start_architectures("nasbench-graph:citeseer", GNNSpace(), 3, dataset="cora")
    with pytest.raises(ValueError, match="citeseer"):  # the valid datasets are listed
        warm_start_architectures("nasbench-graph:nosuchset", NasBenchGraphSpace(), 3)


def _study_with_values(storage: str, name: str, values: list[float]) -> list[str]:
    """A maximising study whose trials hold benchmark cells with the given values."""
    space = NasBenchGraphSpace()
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    hashes = []
    for seed, value in enumerate(values):
        arch = space.sample(seed)
        trial = study.ask()
        trial.set_user_attr("arch", arch.to_json())
        study.tell(trial, value)
        hashes.append(arch.arch_hash)
    failed = study.ask()  # failed trials and trials without an architecture are ignored
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    return hashes


def test_study_source_takes_the_best_completed_trials(sqlite_url: str) -> None:
    hashes = _study_with_values(sqlite_url, "earlier", [0.5, 0.9, 0.7, 0.8])
    archs = warm_start_architectures("study:earlier", NasBenchGraphSpace(), 2, storage=sqlite_url)
    assert [a.arch_hash for a in archs] == [hashes[1], hashes[3]]
    with pytest.raises(ValueError, match=r"'nope'.*\['earlier'\]"):
        warm_start_architectures("study:nope", NasBenchGraphSpace(), 2, storage=sqlite_url)


def test_enqueued_architectures_come_first_and_only_once(sqlite_url: str) -> None:
    space = NasBenchGraphSpace()
    archs = [space.sample(seed) for seed in range(3)]
    study = optuna.create_study(storage=sqlite_url, study_name="s", direction="maximize")
    assert enqueue_warm_start(study, space, archs, "study:x") == 3
    assert enqueue_warm_start(study, space, archs, "study:x") == 0  # resumed: not again
    assert describe(study) == {"source": "study:x", "queued": 3}
    proposed = []
    for _ in range(4):
        trial = study.ask()
        proposed.append(space.suggest(trial).arch_hash)
        study.tell(trial, 0.5)
    assert proposed[:3] == [a.arch_hash for a in archs]


def test_search_warm_started_from_other_tables_and_resumed(no_data, sqlite_url: str) -> None:
    """The queued cells are the study's first trials; resuming queues nothing more; no data."""
    config = dict(dataset="cora", space="nasbench-graph", evaluator="table", strategy="evolution",
                  storage=sqlite_url, study_name="warm", warm_start="nasbench-graph:citeseer,pubmed",
                  warm_start_k=4, verbose=False)
    study = run_search(SearchConfig(n_trials=6, **config))
    expected = [a.arch_hash for a in warm_start_architectures(
        "nasbench-graph:citeseer,pubmed", NasBenchGraphSpace("cora"), 4, dataset="cora")]
    trials = sorted(study.trials, key=lambda t: t.number)
    assert [t.user_attrs["arch_hash"] for t in trials[:4]] == expected
    assert len(trials) == 6
    resumed = run_search(SearchConfig(n_trials=9, **config))
    hashes = [t.user_attrs.get("arch_hash") for t in resumed.trials]
    assert len(resumed.trials) == 9 and sum(h in expected for h in hashes) == 4


def test_cli_rejects_a_bad_warm_start_with_exit_2(no_data, sqlite_url: str, capsys) -> None:
    argv = ["search", "--space", "nasbench-graph", "--evaluator", "table", "--dataset", "cora",
            "--trials", "2", "--storage", sqlite_url, "--warm-start", "nasbench-graph:cora"]
    assert main(argv) == 2
    assert "own dataset" in capsys.readouterr().err
    assert main([*argv[:-1], "tables:citeseer"]) == 2
    assert "study:NAME" in capsys.readouterr().err


def test_warm_start_k_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"^warm_start_k must be >= 1, got 0$"):
        SearchConfig("cora", warm_start="study:x", warm_start_k=0)
    with pytest.raises(ValueError, match=r"^k must be >= 1, got 0$"):
        warm_start_architectures("study:x", NasBenchGraphSpace(), 0)


def test_queued_cells_of_the_cli_search_are_in_the_benchmark(no_data, sqlite_url: str) -> None:
    argv = ["search", "--space", "nasbench-graph", "--evaluator", "table", "--dataset", "photo",
            "--trials", "3", "--storage", sqlite_url, "--study", "p", "--warm-start",
            "nasbench-graph:cora", "--warm-start-k", "2", "--strategy", "random"]
    assert main(argv) == 0
    study = optuna.load_study(study_name="p", storage=sqlite_url)
    first = NasBenchGraphArchitecture.from_json(study.trials[0].user_attrs["arch"])
    cora = load_table("cora")
    assert cora[first.bench_hash].val_acc == max(row.val_acc for row in cora.values())


def test_warm_start_queues_only_what_the_searchs_space_can_propose(sqlite_url: str) -> None:
    """ogbn-proteins' table covers five ops and --convs narrows the GNN space: the sources'
    best cells outside them were queued, failed their trials and used up the budget."""
    from search_spaces.nasbench_graph import PROTEINS_OPS

    proteins = NasBenchGraphSpace("proteins")
    cells = warm_start_architectures("nasbench-graph:cora", proteins, 10, dataset="ogbn-proteins")
    assert len(cells) == 10 and all(op in PROTEINS_OPS for c in cells for op in c.ops)
    assert any(op not in PROTEINS_OPS for c in warm_start_architectures(
        "nasbench-graph:cora", NasBenchGraphSpace(), 10) for op in c.ops)  # what was queued before

    wide, narrow = GNNSpace(), GNNSpace(convs=("gcn",))
    study = optuna.create_study(study_name="wide", storage=sqlite_url, direction="maximize")
    rng = random.Random(0)
    kept = []
    for value in range(200):
        arch = wide.sample(rng)
        trial = study.ask()
        trial.set_user_attr("arch", arch.to_json())
        study.tell(trial, float(value))
        if {layer.conv for layer in arch.layers} == {"gcn"}:
            kept.append(arch.arch_hash)
    archs = warm_start_architectures("study:wide", narrow, 200, storage=sqlite_url)
    assert len(kept) >= 2 and [a.arch_hash for a in archs] == kept[::-1]  # best first, all-gcn only


def test_a_search_warm_started_across_op_sets_completes_every_trial(no_data, sqlite_url: str) -> None:
    config = SearchConfig("ogbn-proteins", space="nasbench-graph", evaluator="table", strategy="predictor",
                          n_trials=4, storage=sqlite_url, warm_start="nasbench-graph:cora", warm_start_k=3,
                          verbose=False)
    study = run_search(config)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 4
