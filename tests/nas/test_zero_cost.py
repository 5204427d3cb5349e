"""The zero-cost evaluator: resolution by name, evaluations, and a search that trains nothing."""
from __future__ import annotations

import json
import math
import re

import pytest

from nas.evaluators import EVALUATORS, Evaluation, ZeroCostEvaluator, get_evaluator
from nas.study import OBJECTIVES
from search_spaces import get_space


class _TinyTask:
    """A node task around the ``tiny_graph`` fixture."""

    name, level, num_features, num_classes = "tiny", "node", 4, 3

    def __init__(self, data) -> None:
        self.data = data


@pytest.mark.parametrize("query, proxy", [
    ("zero-cost:synflow", "synflow"), ("zero-cost:SynFlow", "synflow"),
    ("ZeroCost:grad-norm", "grad_norm"), ("zero_cost:NASWOT", "naswot"),
])
def test_get_evaluator_passes_the_proxy_as_variant(query, proxy):
    evaluator = get_evaluator(query, epochs=5, patience=2)
    assert isinstance(evaluator, ZeroCostEvaluator)
    assert evaluator.proxy_name == proxy


@pytest.mark.parametrize("query, match", [
    ("zero-cost:jacob", r"could not resolve zero-cost proxy 'jacob' among choices \[.*'synflow'"),
    ("zero-cost", r"needs a proxy.*'gradsign'"),
])
def test_bad_proxy_names_the_choices(query, match):
    with pytest.raises(ValueError, match=match):
        get_evaluator(query)


@pytest.mark.parametrize("value", [5, None, b"train", ["train"]])
def test_an_evaluator_that_is_neither_a_name_nor_an_evaluator_is_named(value):
    # resolve passes objects through, and get_evaluator then failed on `<int>.partition`
    choices = re.escape(repr(sorted(EVALUATORS)))
    got = rf"got {re.escape(repr(value))} \({type(value).__name__}\)$"
    with pytest.raises(TypeError, match=rf"^evaluator must be a name among {choices} or an Evaluator, {got}"):
        get_evaluator(value)
    evaluator = get_evaluator("zero-cost:synflow")
    assert get_evaluator(evaluator) is evaluator


def test_evaluation_has_a_score_and_no_accuracy(tiny_graph):
    space = get_space("gnn")
    arch = space.sample(0)
    evaluation = get_evaluator("zero-cost:snip").evaluate(arch, space, _TinyTask(tiny_graph), seed=1)
    assert set(evaluation.metrics) == {"score"}
    assert math.isfinite(evaluation.metrics["score"]) and evaluation.num_params > 0
    assert evaluation.state_dict is None
    again = get_evaluator("zero-cost:snip").evaluate(arch, space, _TinyTask(tiny_graph), seed=1)
    assert again.metrics == evaluation.metrics


def test_accuracy_objective_uses_val_acc_else_the_score():
    accuracy = OBJECTIVES["accuracy"][1]
    assert accuracy(Evaluation(metrics={"val_acc": 0.5, "test_acc": 0.4})) == 0.5
    assert accuracy(Evaluation(metrics={"score": 123.0})) == 123.0
    assert math.isnan(accuracy(Evaluation(metrics={})))


@pytest.mark.slow
def test_search_with_a_proxy_end_to_end_on_cora(cora_available, sqlite_url, capsys):
    from nas.cli import main

    argv = ["search", "--dataset", "cora", "--evaluator", "zero-cost:synflow", "--strategy",
            "random", "--trials", "3", "--storage", sqlite_url, "--study", "zc", "--device", "cpu"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "best: trial" in out and "score" in out
    assert main(["trials", "--storage", sqlite_url, "--study", "zc", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3 and all(row["state"] == "COMPLETE" for row in rows)
    assert all(row["values"][0] == row["score"] and row["val_acc"] is None for row in rows)
    assert main(["best", "--storage", sqlite_url, "--study", "zc", "--json"]) == 0
    best = json.loads(capsys.readouterr().out)
    assert best["score"] == max(row["score"] for row in rows) and best["test_acc"] is None


@pytest.mark.slow
def test_prescreened_search_end_to_end_on_cora(cora_available, sqlite_url, capsys):
    from nas.cli import main

    argv = ["search", "--dataset", "cora", "--evaluator", "zero-cost:params", "--strategy", "random",
            "--prescreen", "NASWOT", "--prescreen-k", "3", "--trials", "2", "--storage", sqlite_url,
            "--study", "ps", "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    import optuna

    study = optuna.load_study(study_name="ps", storage=sqlite_url)
    records = [json.loads(t.system_attrs["prescreen"]) for t in study.trials]
    assert [len(r["scores"]) for r in records] == [3, 3]


@pytest.mark.slow
def test_vetoing_search_end_to_end_on_cora(cora_available, sqlite_url):
    import optuna

    from nas.cli import main

    argv = ["search", "--dataset", "cora", "--evaluator", "zero-cost:params", "--strategy", "random",
            "--prescreen", "naswot", "--prescreen-k", "3", "--prescreen-rule", "veto",
            "--prescreen-veto", "0.9", "--trials", "3", "--storage", sqlite_url, "--study", "veto",
            "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    study = optuna.load_study(study_name="veto", storage=sqlite_url)
    records = [json.loads(t.system_attrs["prescreen"]) for t in study.trials]
    assert len(records) == 3 and all(r["rule"] == "veto" for r in records)
    assert len({r["threshold"] for r in records}) == 1  # one reference sample for the study
    for r in records:  # lazily scored: stops at the first candidate at or above the threshold
        passed = [i for i, s in enumerate(r["scores"]) if s >= r["threshold"]]
        assert (r["chosen"], len(r["scores"])) == ((passed[0], passed[0] + 1) if passed else (0, 3))


def test_bad_prescreen_proxy_exits_2(sqlite_url, capsys):
    from nas.cli import main

    argv = ["search", "--dataset", "cora", "--prescreen", "jacob", "--storage", sqlite_url]
    assert main(argv) == 2
    assert "could not resolve zero-cost proxy 'jacob' among choices" in capsys.readouterr().err
