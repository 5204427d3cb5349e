"""The Python entry points of nas.export that README shows: load_trial_model, export_trial."""
from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch

from nas.export import export_trial, load_exported, load_trial_model
from nas.study import SearchConfig, run_search

FAST = dict(epochs=3, patience=0, convs=("gcn",), verbose=False, strategy="random")


@pytest.fixture
def duplicated_study(sqlite_url: str) -> optuna.Study:
    """MUTAG study whose trial 1 repeats trial 0's architecture (weights stored once, at 0)."""
    study = run_search(SearchConfig("mutag", n_trials=1, storage=sqlite_url, **FAST))
    study.enqueue_trial(study.trials[0].params)
    study = run_search(SearchConfig("mutag", n_trials=2, storage=sqlite_url, **FAST))
    assert study.trials[1].user_attrs["duplicate_of"] == 0
    return study


def test_load_trial_model_of_a_duplicate_trial_loads_the_weights_it_reuses(
    duplicated_study: optuna.Study, sqlite_url: str, tmp_path: Path,
) -> None:
    name = duplicated_study.study_name
    original = load_trial_model(sqlite_url, name, 0)
    duplicate = load_trial_model(sqlite_url, name, 1)
    exported = load_exported(export_trial(sqlite_url, name, tmp_path / "t1", 1))
    for model in (duplicate, exported):
        for key, value in original.state_dict().items():
            assert torch.equal(model.state_dict()[key], value)


def test_load_trial_model_names_the_valid_trials(duplicated_study: optuna.Study, sqlite_url: str) -> None:
    with pytest.raises(KeyError, match=r"no trial 7 .*0\.\.1"):
        load_trial_model(sqlite_url, duplicated_study.study_name, 7)


def test_load_trial_model_names_the_studies_of_the_storage(
    duplicated_study: optuna.Study, sqlite_url: str,
) -> None:
    with pytest.raises(KeyError, match=rf"no study 'nope' .*{duplicated_study.study_name}"):
        load_trial_model(sqlite_url, "nope")


def test_load_trial_model_never_creates_a_missing_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "typo.db"
    with pytest.raises(FileNotFoundError, match="typo.db"):
        load_trial_model(f"sqlite:///{path}", "any")
    with pytest.raises(FileNotFoundError, match="typo.db"):
        export_trial(f"sqlite:///{path}", "any", tmp_path / "out")
    assert not path.exists()
