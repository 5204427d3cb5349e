"""Multi-objective searches end to end (NAS-Bench-Graph tables: no training), the Pareto front
of ``metanas best`` and ``metanas report``, and the strategies' errors on bad input."""
from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from nas.cli import main
from nas.study import OBJECTIVES


def search(sqlite_url: str, strategy: str, objectives: str, trials: int = 12, study: str = "mo") -> list[str]:
    return [
        "search", "--space", "nasbench-graph", "--evaluator", "table", "--dataset", "cora",
        "--trials", str(trials), "--storage", sqlite_url, "--study", study, "--strategy", strategy,
        "--objectives", objectives, "--quiet",
    ]


def dominated(a: list[float], b: list[float], directions: list[str]) -> bool:
    """Whether ``b`` dominates ``a``."""
    better = [(y > x) if d == "maximize" else (y < x) for x, y, d in zip(a, b, directions)]
    worse = [(y < x) if d == "maximize" else (y > x) for x, y, d in zip(a, b, directions)]
    return any(better) and not any(worse)


@pytest.mark.parametrize(("strategy", "objectives"), [("nsga2", "accuracy,latency"), ("tpe", "accuracy,params")])
def test_best_shows_the_pareto_front(
    strategy: str, objectives: str, sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(search(sqlite_url, strategy, objectives)) == 0
    capsys.readouterr()
    assert main(["best", "--storage", sqlite_url, "--study", "mo", "--json"]) == 0
    best = json.loads(capsys.readouterr().out)
    assert best["objectives"] == objectives.split(",")
    assert best["directions"] == ["maximize", "minimize"]
    front = best["pareto_front"]
    study = optuna.load_study(study_name="mo", storage=sqlite_url)
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    on_front = {row["trial"] for row in front}
    for trial in completed:  # the front is exactly the non-dominated trials
        beaten = any(dominated(trial.values, o.values, best["directions"]) for o in completed)
        assert (trial.number in on_front) == (not beaten) or any(
            o.values == trial.values and o.number in on_front for o in completed
        )
    accuracies = [row["values"][0] for row in front]
    assert accuracies == sorted(accuracies, reverse=True)
    assert best["trial"] == front[0]["trial"] and best["val_acc"] == max(t.values[0] for t in completed)
    if objectives.endswith("latency"):
        assert all(row["values"][1] == row["latency"] for row in front)

    assert main(["best", "--storage", sqlite_url, "--study", "mo"]) == 0
    text = capsys.readouterr().out
    assert f"Pareto front of 'mo': {len(front)} trials" in text

    assert main(["report", "--storage", sqlite_url, "--study", "mo", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "pareto_front.png").stat().st_size > 1000


def test_single_objective_best_json_is_unchanged(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(search(sqlite_url, "evolution", "accuracy", trials=6)) == 0
    capsys.readouterr()
    assert main(["best", "--storage", sqlite_url, "--study", "mo", "--json"]) == 0
    best = json.loads(capsys.readouterr().out)
    assert "pareto_front" not in best and {"trial", "val_acc", "test_acc", "architecture"} <= set(best)


@pytest.mark.parametrize("strategy", ["predictor", "reinforce", "evolution"])
def test_proposing_strategies_search_the_benchmark(strategy: str, sqlite_url: str) -> None:
    """The study's space is replayed for hashes: no architecture is evaluated twice."""
    assert main(search(sqlite_url, strategy, "accuracy", trials=16)) == 0
    study = optuna.load_study(study_name="mo", storage=sqlite_url)
    hashes = [t.user_attrs["arch_hash"] for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(hashes) >= 15 and len(set(hashes)) == len(hashes)


def test_single_objective_strategy_refuses_two_objectives(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(search(sqlite_url, "evolution", "accuracy,params")) == 2
    err = capsys.readouterr().err
    assert "'evolution'" in err and "accuracy,params" in err and "nsga2" in err
    assert "mo" not in optuna.get_all_study_names(sqlite_url)


def test_latency_is_an_objective() -> None:
    direction, value = OBJECTIVES["latency"]
    assert direction == "minimize"
    from nas.evaluators import Evaluation

    assert value(Evaluation(metrics={"val_acc": 0.5, "latency": 0.004})) == 0.004


def test_forward_latency_of_a_trained_model(tiny_graph) -> None:
    """The train evaluator's latency: median seconds of an inference pass on the task."""
    import types

    from nas.train import forward_latency
    from search_spaces import GNNSpace

    model = GNNSpace().build(GNNSpace().sample(0), 4, 3)
    task = types.SimpleNamespace(level="node", data=tiny_graph)
    seconds = forward_latency(model, task)  # type: ignore[arg-type]
    assert seconds is not None and seconds > 0  # no upper bound: the test CPU is shared
