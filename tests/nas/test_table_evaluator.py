"""The table evaluator: NAS-Bench-Graph answers without data, training or weights."""
from __future__ import annotations

import math
import random
from pathlib import Path

import optuna
import pytest
from nas_bench_graph.architecture import Arch
from nas_bench_graph.readbench import light_read

from nas.cli import main
from nas.evaluators import EVALUATORS, TableEvaluator, get_evaluator
from nas.evaluators._table import BENCHMARK_DATASETS, load_table, query
from nas.tasks import load_task
from search_spaces import GNNSpace, NasBenchGraphArchitecture, NasBenchGraphSpace
from storage import ModelStore

VALID = ["cora", "citeseer", "pubmed", "cs", "physics", "photo", "computers", "arxiv", "proteins"]


def test_registered_by_name() -> None:
    assert EVALUATORS["table"] is TableEvaluator
    evaluator = get_evaluator("table", epochs=5, patience=2)  # training options are dropped
    assert isinstance(evaluator, TableEvaluator) and not evaluator.needs_data


@pytest.mark.parametrize("dataset", ["cora", "photo", "arxiv"])
def test_lookups_equal_the_packages_own_reader(dataset: str) -> None:
    raw = light_read(dataset)
    for seed in range(6):
        arch = NasBenchGraphSpace().sample(seed)
        expected = raw[Arch(list(arch.links), list(arch.ops)).valid_hash()]
        row = query(arch, dataset)
        assert row.val_acc == pytest.approx(expected["valid_perf"])
        assert row.test_acc == pytest.approx(expected["perf"])
        assert row.latency == pytest.approx(expected["latency"])
        assert row.num_params == round(float(expected["para"]) * 1e6)
        assert 0.0 <= row.test_acc <= 1.0 and 0.0 <= row.val_acc <= 1.0


def test_isomorphic_forms_find_one_row_and_tables_are_cached() -> None:
    a = NasBenchGraphArchitecture((0, 1, 2, 1), ("gcn", "gin", "fc", "cheb"))
    b = NasBenchGraphArchitecture((0, 1, 1, 2), ("gcn", "gin", "cheb", "fc"))
    assert query(a, "citeseer") == query(b, "citeseer")
    assert load_table("cora") is load_table("Cora")
    assert len(load_table("cora")) == 26206


def test_evaluate_answers_without_touching_the_data(no_data: Path) -> None:
    task = load_task("photo")
    space = NasBenchGraphSpace()
    arch = space.sample(4)
    evaluation = TableEvaluator().evaluate(arch, space, task)
    row = query(arch, "photo")
    assert evaluation.metrics == {
        "val_acc": row.val_acc, "test_acc": row.test_acc, "latency": row.latency,
    }
    assert evaluation.num_params == row.num_params and evaluation.state_dict is None
    assert (evaluation.in_channels, evaluation.out_channels) == (745, 8)
    assert "dataset" not in vars(task) and "data" not in vars(task)  # lazy properties unread
    assert not any(no_data.iterdir())


def test_a_fixed_benchmark_dataset_overrides_the_tasks() -> None:
    arch = NasBenchGraphSpace().sample(0)
    evaluation = TableEvaluator("arxiv").evaluate(arch, NasBenchGraphSpace(), load_task("cora"))
    assert evaluation.metrics["test_acc"] == query(arch, "arxiv").test_acc


def test_unknown_benchmark_dataset_lists_the_valid_ones() -> None:
    assert list(BENCHMARK_DATASETS) == VALID
    with pytest.raises(ValueError, match=r"no dataset 'texas'.*\['cora', 'citeseer', 'pubmed', "
                       r"'cs', 'physics', 'photo', 'computers', 'arxiv', 'proteins'\]"):
        space = NasBenchGraphSpace()
        TableEvaluator().evaluate(space.sample(0), space, load_task("texas"))
    with pytest.raises(ValueError, match="no dataset 'ogbn'"):
        TableEvaluator("ogbn")


def test_other_spaces_are_refused_naming_both() -> None:
    with pytest.raises(ValueError, match=r"evaluator 'table'.*space 'gnn'.*'nasbench-graph'"):
        TableEvaluator().check_space(GNNSpace())
    TableEvaluator().check_space(NasBenchGraphSpace())


def test_proteins_covers_its_own_ops_only() -> None:
    inside = NasBenchGraphArchitecture((0, 1, 2, 3), ("gcn", "sage", "arma", "fc"))
    assert 0.0 < query(inside, "proteins").test_acc <= 1.0
    outside = NasBenchGraphArchitecture((0, 1, 2, 3), ("gat", "sage", "arma", "fc"))
    with pytest.raises(KeyError, match=r"not in the proteins table.*\['gcn', 'sage', 'arma'"):
        query(outside, "proteins")


def test_many_lookups_are_fast() -> None:
    rng = random.Random(0)
    archs = [NasBenchGraphSpace().sample(rng) for _ in range(2000)]
    load_table("cs")
    import time

    start = time.perf_counter()
    values = [query(a, "cs").val_acc for _ in range(5) for a in archs]
    assert len(values) == 10_000 and all(not math.isnan(v) for v in values)
    assert time.perf_counter() - start < 5.0  # microseconds each; generous for a shared CPU


def test_cli_search_on_photo_needs_no_data_and_stores_no_weights(
    no_data: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "search", "--space", "nasbench-graph", "--evaluator", "table", "--dataset", "photo",
        "--trials", "5", "--storage", sqlite_url, "--study", "nbg", "--strategy", "random",
    ]
    assert main(argv) == 0
    study = optuna.load_study(study_name="nbg", storage=sqlite_url)
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == 5
    for trial in trials:
        arch = NasBenchGraphArchitecture.from_json(trial.user_attrs["arch"])
        row = query(arch, "photo")
        assert trial.value == row.val_acc and trial.user_attrs["test_acc"] == row.test_acc
        assert trial.user_attrs["num_params"] == row.num_params
    assert ModelStore(sqlite_url).list_models("nbg") == []
    assert not any(no_data.iterdir())
    assert "None ep" not in capsys.readouterr().out


def test_cli_refuses_the_table_for_another_space(sqlite_url: str, capsys) -> None:
    argv = ["search", "--space", "gnn", "--evaluator", "table", "--dataset", "cora",
            "--trials", "1", "--storage", sqlite_url]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "'table'" in err and "'gnn'" in err


@pytest.mark.slow
def test_cli_trains_benchmark_architectures_with_the_benchmarks_optimizer(
    cora_available, sqlite_url: str
) -> None:
    argv = [
        "search", "--space", "nasbench-graph", "--evaluator", "train", "--dataset", "cora",
        "--trials", "1", "--epochs", "2", "--storage", sqlite_url, "--study", "nbg-train",
        "--device", "cpu",
    ]
    assert main(argv) == 0
    (trial,) = optuna.load_study(study_name="nbg-train", storage=sqlite_url).trials
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.user_attrs["epochs"] == 2
    (stored,) = ModelStore(sqlite_url).list_models("nbg-train")  # trained weights are stored
    arch = NasBenchGraphArchitecture.from_json(trial.user_attrs["arch"])
    assert stored.num_params == trial.user_attrs["num_params"]
    assert abs(stored.num_params - query(arch, "cora").num_params) <= 4 * 2 * 256  # unused BNs


def test_cli_refuses_a_dataset_the_benchmark_lacks_before_any_trial(
    no_data: Path, sqlite_url: str, capsys
) -> None:
    argv = ["search", "--space", "nasbench-graph", "--evaluator", "table", "--dataset", "texas",
            "--trials", "3", "--storage", sqlite_url, "--study", "nbg-texas"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "'texas'" in err and "'cora', 'citeseer', 'pubmed'" in err and "'arxiv'" in err
    assert "nbg-texas" not in optuna.get_all_study_names(sqlite_url)
