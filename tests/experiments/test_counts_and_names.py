"""Zero counts and unknown names are refused by the benchmark's parser (exit 2, naming the value
and, for names, the choices) before any work: ``nasbench_graph --seeds 0``, ``batched_training --epochs 0`` or
``hypernet_scales --per-kind 0`` exited 0 after overwriting their result with an empty table,
``search_cora --retrain-seeds 0`` or ``train_hypernets --steps 0`` started hours of training."""
from __future__ import annotations

import argparse
import sys

import pytest
from _scripts import load_script

from experiments._results import named_counts, positive_int, positive_ints

#: functions that start a benchmark's work; the test makes each raise if reached
WORK = ("load_task", "run_search", "train_hypernet", "_run_child", "write_results", "machine", "_search")

CASES = [
    ("batched_training", ["--epochs", "0"], "0"),
    ("batched_training", ["--members", "1,0"], "0"),
    ("batched_training", ["--widths", "16,x"], "x"),
    ("framework_overhead", ["--repeats", "0"], "0"),
    ("graph_conversion", ["--only", "nope"], "nope"),
    ("graph_conversion", ["--repeats", "-1"], "-1"),
    ("hypernet_scales", ["--setup", "cnn-mnist", "--per-kind", "0"], "0"),
    ("hypernet_scales", ["--setup", "cnn-mnist", "--label", "../x"], "../x"),
    ("hypernet_scales", ["--setup", "gnn-cora"], "gnn-cora"),  # image setups only: it crashed later
    ("search_cora", ["--retrain-seeds", "0"], "0"),
    ("train_hypernets", ["--steps", "0"], "0"),
    ("train_hypernets", ["--only", "nope"], "nope"),
    ("train_speed", ["--archs", "0"], "0"),
    ("zero_cost", ["bench", "--archs", "0"], "0"),
    ("nasbench_graph", ["--seeds", "0"], "0"),
    ("nasbench_graph_fidelity", ["--archs", "0"], "0"),  # a traceback after loading the table
    ("nasbench_graph_fidelity", ["--epochs", "0"], "0"),  # silently the benchmark's epochs
    ("nasbench_graph_fidelity", ["--workers", "0"], "0"),
    ("supernet_ranking", ["--archs", "0"], "0"),  # a traceback after training the supernet
    ("supernet_ranking", ["--supernet-epochs", "0"], "0"),
    ("nasbench_graph", ["--budgets", "5,0", "--seeds", "1", "--strategies", "random",
                        "--datasets", "cora", "--processes", "1"], "0"),
    # --processes 1: a regression reaches the patched _search in this process, not a pool's
    ("nasbench_graph", ["--processes", "1", "--seeds-for", "gp=x"], "x"),  # a traceback
    ("nasbench_graph", ["--processes", "1", "--max-budget-for", "gp=0"], "0"),
    ("nasbench_graph", ["--processes", "1", "--seeds-for", "gp"], "gp"),
    # supernet_cost's counts, cascades and rows exited 1 through SystemExit("...") (its --budgets,
    # --draws and every supernet benchmark's --name: test_result_names.py)
    ("supernet_cost", ["--top-k", "1", "0"], "0"),
    ("supernet_cost", ["--cascade", "0.01:0.1"], "0.01:0.1"),
    ("supernet_cost", ["--cascade", "x"], "x"),
    ("supernet_cost", ["--rows", "../x"], "../x"),
    ("supernet_cost", ["--rows", "nosuchrows"], "nosuchrows"),  # a FileNotFoundError traceback
    ("supernet_search_cli", ["--refine", "0"], "0"),  # exited 1 (--trials 0: test_result_names.py)
    ("supernet_search_cli", ["--final-train", "-1"], "-1"),
]


def _work_started(*args, **kwargs):
    raise RuntimeError("the benchmark started its work")


def _refused(script: str, argv: list[str], tmp_path, monkeypatch, capsys) -> str:  # noqa: ANN001
    """The standard error of ``script`` run with ``argv`` (its work made to raise), which must
    exit 2 before writing anything."""
    module = load_script(script)
    for name in WORK:
        if hasattr(module, name):
            monkeypatch.setattr(module, name, _work_started)
    monkeypatch.setattr("nas.cli.main", _work_started)  # supernet_search_cli runs the CLI in-process
    monkeypatch.setenv("METANAS_CACHE", str(tmp_path))  # a cache write is a write under tmp_path
    writes_out = script in ("nasbench_graph", "nasbench_graph_fidelity")  # not experiments/results
    extra = ["--out", str(tmp_path / "out")] if writes_out else []
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *argv, *extra])
    with pytest.raises(SystemExit) as exit_:
        module.main()
    assert exit_.value.code == 2
    assert not list(tmp_path.iterdir())
    return capsys.readouterr().err


@pytest.mark.parametrize("script, argv, value", CASES)
def test_bad_argument_exits_2_naming_it_before_any_work(script, argv, value, tmp_path, monkeypatch,
                                                        capsys) -> None:
    assert f"'{value}'" in _refused(script, argv, tmp_path, monkeypatch, capsys)


#: unknown names that ended in a traceback (exit 1) once the run had started, some after
#: loading data or training: (script, argv, the bad value, one of the valid choices)
NAMES = [
    ("batched_training", ["--dataset", "nosuchname"], "nosuchname", "'cora'"),
    ("nasbench_graph", ["--strategies", "random,nosuchname"], "nosuchname", "'tpe'"),
    ("nasbench_graph", ["--datasets", "nosuchname"], "nosuchname", "'citeseer'"),
    ("nasbench_graph", ["--processes", "1", "--seeds-for", "random=2,gpp=5"], "gpp", "'gp'"),  # ignored
    ("nasbench_graph", ["--processes", "1", "--max-budget-for", "tpee=100"], "tpee", "'tpe'"),
    ("zero_cost", ["bench", "--dataset", "nosuchname"], "nosuchname", "'cora'"),
    ("zero_cost", ["prescreen", "--proxy-dataset", "nosuchname"], "nosuchname", "'cora'"),
    # not NAS-Bench-Graph datasets (PROTEINS is TU's graph dataset, the benchmark's ogbn-proteins):
    # accepted, then the run crashed on the benchmark's table or space
    ("zero_cost", ["bench", "--dataset", "mutag"], "mutag", "'citeseer'"),
    ("zero_cost", ["bench", "--dataset", "proteins"], "proteins", "'citeseer'"),
    ("zero_cost", ["prescreen", "--dataset", "texas"], "texas", "'citeseer'"),
    ("zero_cost", ["prescreen", "--dataset", "arxiv"], "arxiv", "no --proxy-dataset"),  # no data here
    ("zero_cost", ["prescreen", "--dataset", "texas", "--proxy-dataset", "cora"], "texas", "'arxiv'"),
    ("zero_cost", ["prescreen", "--proxy-dataset", "mutag"], "mutag", "'citeseer'"),
    ("zero_cost", ["prescreen", "--strategy", "nosuchname"], "nosuchname", "'tpe'"),
    ("zero_cost", ["prescreen", "--proxy", "nosuchname"], "nosuchname", "'naswot'"),
    ("zero_cost", ["prescreen", "--rule", "top"], "top", "'veto'"),
    ("zero_cost", ["bench", "--skip", "naswot", "nosuchname"], "nosuchname", "'synflow'"),  # ignored
    ("zero_cost", ["bench", "--recompute", "nosuchname"], "nosuchname", "'synflow'"),
    ("supernet_ranking", ["--dataset", "nosuchname"], "nosuchname", "'cora'"),
    # refused by the metanas commands it runs: the dataset by the supernet training (exit 1),
    # the refine evaluator by the search, after hours of supernet training
    ("supernet_search_cli", ["--dataset", "nosuchname"], "nosuchname", "'cora'"),
    ("supernet_search_cli", ["--dataset", "mnist14"], "mnist14", "['node', 'graph']"),
    ("supernet_search_cli", ["--refine-evaluator", "nosuchname"], "nosuchname", "'train'"),
    ("supernet_search_cli", ["--refine-evaluator", "supernet:fast"], "fast", "supernet:ft5"),
    ("supernet_search_cli", ["--refine-evaluator", "table"], "table", "cannot score space 'gnn'"),
    ("supernet_search_cli", ["--option", "depth=2"], "depth", "'max_depth'"),  # exit 1, in the training
    ("metanet_accuracy", ["--zoo", "sqlite://", "--study", "z", "--label", "z", "--splits", "id",
                          "nosuchname"], "nosuchname", "'ood'"),  # after loading the zoo
    ("nasbench_graph", ["--processes", "1", "--seeds-for", "gp=5,gp=3"], "gp", "given twice"),
    # result files read by name: a FileNotFoundError traceback, some after training the supernet
    ("supernet_ranking", ["--merge", "supernet_ranking", "nosuchname"], "nosuchname",
     "a result of supernet_ranking.py"),
    ("supernet_ranking", ["--supernet", "/nonexistent", "--rescore", "nosuchname"], "nosuchname",
     "a result of supernet_ranking.py"),
    ("supernet_ranking", ["--reuse-reference", "../x"], "../x", "(a file stem)"),
]


@pytest.mark.parametrize("script, argv, value, choice", NAMES)
def test_unknown_name_exits_2_with_one_line_naming_it_and_the_choices(
    script, argv, value, choice, tmp_path, monkeypatch, capsys,
) -> None:
    err = _refused(script, argv, tmp_path, monkeypatch, capsys)
    assert "Traceback" not in err and f"'{value}'" in err and choice in err
    assert err.strip().splitlines()[-1].startswith(f"{script}.py: error: ")


def test_positive_int_parses_counts_and_refuses_the_rest() -> None:
    assert positive_int("3") == 3 and positive_ints("1,2,8") == [1, 2, 8]
    for text in ("0", "-2", "x", ""):
        with pytest.raises(argparse.ArgumentTypeError, match=repr(text)):
            positive_int(text)


def test_named_counts_resolve_each_name_and_count() -> None:
    from nas.samplers import strategy_name

    parse = named_counts(strategy_name)
    assert parse("GP=5, tpe=10") == {"gp": 5, "tpe": 10} and parse("") == {}


def test_a_max_budget_below_every_budget_exits_2_naming_it(tmp_path, monkeypatch, capsys) -> None:
    # the strategy's runs had no budget left: a ValueError traceback in the search worker
    err = _refused("nasbench_graph", ["--processes", "1", "--budgets", "50,100", "--max-budget-for", "gp=20"],
                   tmp_path, monkeypatch, capsys)
    assert err.splitlines()[-1] == ("nasbench_graph.py: error: --max-budget-for gp=20 is below the "
                                    "smallest of --budgets 50,100")
