"""Every ``--json`` output is strict JSON: json.dumps wrote a nan or infinite float as NaN or
Infinity, which JSON parsers (JavaScript's, jq, Go's) refuse; they come out as null."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy
import torch

from nas.cli import main
from nas.export import export_model
from storage.models import TrainedModelModel


def _strict(out: str) -> Any:
    """``out`` parsed by a parser that refuses NaN, Infinity and -Infinity."""
    return json.loads(out, parse_constant=lambda constant: pytest.fail(f"not strict JSON: {constant}"))


def _json_of(argv: list[str], capsys) -> Any:
    assert main([*argv, "--json"]) == 0
    return _strict(capsys.readouterr().out)


def test_trials_and_best_print_infinite_values_and_nan_metrics_as_null(tmp_path: Path, capsys) -> None:
    """optuna completes a trial whose objective is infinite; a metric may be stored as nan."""
    url = f"sqlite:///{tmp_path / 'metanas.db'}"
    study = optuna.create_study(storage=url, study_name="s", direction="maximize")
    study.enqueue_trial({})
    study.optimize(lambda trial: trial.set_user_attr("test_acc", math.nan) or math.inf, n_trials=1)
    study.optimize(lambda trial: 0.5, n_trials=1)
    trials = _json_of(["trials", "--storage", url, "--study", "s"], capsys)
    assert [(row["values"], row["test_acc"]) for row in trials] == [([None], None), ([0.5], None)]
    best = _json_of(["best", "--storage", url, "--study", "s"], capsys)
    assert best["trial"] == 0 and best["values"] == [None] and best["test_acc"] is None


def test_best_of_a_multi_objective_study_prints_infinite_values_as_null(tmp_path: Path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'metanas.db'}"
    study = optuna.create_study(storage=url, study_name="m", directions=["maximize", "minimize"])
    study.optimize(lambda trial: (math.inf, -math.inf), n_trials=1)
    best = _json_of(["best", "--storage", url, "--study", "m"], capsys)
    assert best["values"] == [None, None] and best["pareto_front"][0]["values"] == [None, None]


def _set_metrics(url: str, study: str, metrics: dict[int, dict[str, float]]) -> None:
    """Replace the stored metrics of trials of ``study`` (trial number: metrics)."""
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as connection:
        for trial, values in metrics.items():
            connection.execute(sqlalchemy.update(TrainedModelModel).filter_by(
                study_name=study, trial_number=trial).values(metrics=values))
    engine.dispose()


def test_zoo_info_over_networks_without_test_acc_prints_null(sqlite_url: str, store_image_networks,
                                                            capsys) -> None:
    store_image_networks(sqlite_url, runs=3)
    _set_metrics(sqlite_url, "z", {trial: {"val_acc": 0.5} for trial in range(3)})
    info = _json_of(["zoo", "info", "--storage", sqlite_url, "--study", "z"], capsys)
    assert info["runs"] == 3
    assert [info[f"test_acc_{which}"] for which in ("min", "median", "max")] == [None] * 3


def test_metanet_predict_prints_a_stored_nan_metric_as_null(
    tmp_path: Path, sqlite_url: str, store_image_networks, capsys,
) -> None:
    store_image_networks(sqlite_url, runs=4)
    store_image_networks(sqlite_url, study="n", runs=2)
    _set_metrics(sqlite_url, "n", {1: {"test_acc": math.nan}})
    small = ["--hidden", "8", "--layers", "1", "--device", "cpu"]
    assert main(["metanet", "train", "--zoo", sqlite_url, "--study", "z", "--out",
                 str(tmp_path / "m"), "--epochs", "1", *small]) == 0
    capsys.readouterr()
    rows = _json_of(["metanet", "predict", "--model", str(tmp_path / "m"), "--zoo", sqlite_url,
                     "--study", "n", "--device", "cpu"], capsys)
    assert [row["measured"] for row in rows] == [0.0, None]
    assert all(isinstance(row["prediction"], float) for row in rows)


def test_evaluate_of_a_model_of_nan_weights_prints_its_losses_as_null(
    mnist_available: None, tmp_path: Path, capsys,
) -> None:
    from search_spaces.cnn import CNN, CNNArchitecture

    arch = CNNArchitecture(widths=(4,), norm="batch")
    weights = {key: torch.full_like(value, math.nan) if value.is_floating_point() else value
               for key, value in CNN(arch, 1, 10).state_dict().items()}
    folder = export_model(tmp_path / "m", space="cnn", spec=arch.to_dict(), in_channels=1,
                          out_channels=10, level="image", state_dict=weights,
                          metadata={"dataset": "mnist14"})
    measured = _json_of(["evaluate", "--model", str(folder), "--device", "cpu"], capsys)
    assert [measured[f"{split}_loss"] for split in ("train", "val", "test")] == [None] * 3
