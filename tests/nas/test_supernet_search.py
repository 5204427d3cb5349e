"""End to end on Cora: train a supernet, score with inherited weights, search, train the best
from scratch; the gradient strategy records its derived architecture as a trained trial."""
from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import torch

from nas.cli import main
from nas.evaluators import SupernetEvaluator
from nas.tasks import load_task
from search_spaces.gnn import GNNArchitecture, GNNSpace, LayerSpec


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cora_supernet(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("supernet") / "cora"
    code = main([
        "supernet", "train", "--dataset", "cora", "--out", str(out), "--epochs", "30",
        "--device", "cpu", "--option", "convs=gcn,sage", "--option", "max_depth=1",
        "--checkpoint-every", "10",
    ])
    assert code == 0
    return out


@pytest.mark.timeout(600)
def test_inherited_weights_score_cora_above_chance(cora_available, cora_supernet) -> None:
    task, space = load_task("cora"), GNNSpace(convs=("gcn", "sage"))
    evaluator = SupernetEvaluator(str(cora_supernet), finetune_epochs=0)
    evaluator.check_space(space)
    arch = GNNArchitecture(layers=(LayerSpec("gcn", 64, dropout=0.5),))
    result = evaluator.evaluate(arch, space, task, device="cpu")
    assert result.metrics["val_acc"] > 0.45 and result.metrics["mapped"] == 0.0  # chance: ~0.14
    assert result.state_dict is None and result.num_params == 1433 * 64 + 64 + 64 * 7 + 7
    wide = GNNArchitecture(layers=(LayerSpec("gcn", 256), LayerSpec("sage", 16)))
    assert evaluator.evaluate(wide, space, task, device="cpu").metrics["mapped"] == 1.0
    with pytest.raises(ValueError, match="trained on dataset 'cora', not 'citeseer'"):
        evaluator.evaluate(arch, space, load_task("citeseer"), device="cpu")


def test_a_space_with_convs_the_supernet_lacks_is_refused_before_any_trial(
    cora_available, cora_supernet, sqlite_url, capsys,
) -> None:
    # README's pair (supernet train --option convs=..., then search without --convs) failed
    # every trial with "conv 'arma' is not in the supernet", using up the whole budget
    evaluator = SupernetEvaluator(str(cora_supernet))
    evaluator.check_space(GNNSpace(convs=("sage",)))
    with pytest.raises(ValueError, match=r"covers convs \['gcn', 'sage'\], not \['gat'\].*--convs gcn,sage"):
        evaluator.check_space(GNNSpace(convs=("gcn", "gat")))
    code = main([
        "search", "--dataset", "cora", "--evaluator", "supernet", "--supernet", str(cora_supernet),
        "--trials", "2", "--storage", sqlite_url, "--study", "all-convs", "--quiet",
    ])
    assert code == 2 and "--convs gcn,sage" in capsys.readouterr().err
    assert not optuna.get_all_study_summaries(sqlite_url)


def _supernet_search(supernet: Path, storage: str, study: str, evaluator: str, trials: int, *extra: str) -> int:
    """``metanas search`` of the random strategy over the supernet's convs (gcn, sage), trained
    5 epochs without patience on the CPU, quietly."""
    return main([
        "search", "--dataset", "cora", "--evaluator", evaluator, "--supernet", str(supernet),
        "--strategy", "random", "--convs", "gcn,sage", "--trials", str(trials), "--storage", storage,
        "--study", study, *extra, "--epochs", "5", "--patience", "0", "--device", "cpu", "--quiet",
    ])


@pytest.mark.timeout(600)
def test_supernet_search_then_final_training_from_scratch(
    cora_available, cora_supernet, sqlite_url, capsys,
) -> None:
    code = _supernet_search(cora_supernet, sqlite_url, "s", "supernet", 3, "--final-train")
    assert code == 0, capsys.readouterr().err
    assert "from scratch: trial" in capsys.readouterr().out
    searched = optuna.load_study(study_name="s", storage=sqlite_url)
    final = optuna.load_study(study_name="s-final", storage=sqlite_url)
    assert searched.user_attrs["final_study"] == "s-final"
    (trial,) = final.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    best = max(searched.get_trials(states=(optuna.trial.TrialState.COMPLETE,)), key=lambda t: t.value)
    assert trial.user_attrs["source_trial"] == best.number and trial.user_attrs["epochs"] == 5
    trained = GNNArchitecture.from_json(trial.user_attrs["arch"])
    assert trained.depth == 1 and trained.layers[0].width == 64  # the mapped (scored) architecture
    assert 0.0 < trial.user_attrs["test_acc"] <= 1.0
    # the three best, each trained once: the earlier one is reused, the best by val comes first
    code = _supernet_search(cora_supernet, sqlite_url, "s", "supernet", 3, "--final-train", "3")
    assert code == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("from scratch")]
    trials = final.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    distinct = {t.user_attrs["arch"] for t in trials}
    assert len(trials) == len(lines) == len(distinct) and trial.number in {t.number for t in trials}
    best_val = max(t.value for t in trials)
    assert lines[0].endswith("(best)") or len(lines) == 1
    assert f"val {best_val:.4f}" in lines[0]
    assert main(["search", "--dataset", "cora", "--storage", sqlite_url, "--final-train", "-1"]) == 2


@pytest.mark.timeout(600)
def test_refine_re_scores_the_best_and_final_training_takes_the_best_of_those(
    cora_available, cora_supernet, sqlite_url, capsys,
) -> None:
    code = _supernet_search(cora_supernet, sqlite_url, "r", "supernet:ft0", 6, "--refine", "3",
                            "--refine-evaluator", "supernet:ft2", "--final-train")
    assert code == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "re-scored the" in out
    searched = optuna.load_study(study_name="r", storage=sqlite_url)
    refined = optuna.load_study(study_name="r-refine", storage=sqlite_url)
    assert searched.user_attrs["refine_study"] == "r-refine"
    done = optuna.trial.TrialState.COMPLETE
    rescored = refined.get_trials(states=(done,))
    assert 1 <= len(rescored) <= 3 and all(t.user_attrs["epochs"] == 2 for t in rescored)
    # the re-scored ones are the search's best, each architecture (as mapped) once
    ranked = sorted(searched.get_trials(states=(done,)), key=lambda t: (-t.value, t.number))
    assert ranked[0].number in {t.user_attrs["source_trial"] for t in rescored}
    assert len({t.user_attrs["arch"] for t in rescored}) == len(rescored)
    # from-scratch training takes the refined study's best, not the search's
    (final,) = optuna.load_study(study_name="r-final", storage=sqlite_url).get_trials(states=(done,))
    best_refined = min(rescored, key=lambda t: (-t.value, t.number))
    assert final.user_attrs["source_study"] == "r-refine"
    assert final.user_attrs["source_trial"] == best_refined.number
    # and says so: the trial number is the refine study's (it named the search's study)
    assert f"from scratch: trial {best_refined.number} of 'r-refine' -> trial" in out
    assert final.user_attrs["arch"] == best_refined.user_attrs["arch"]
    base = ["search", "--dataset", "cora", "--storage", sqlite_url, "--quiet"]
    assert main([*base, "--refine", "-1"]) == 2
    assert main([*base, "--refine", "2", "--refine-evaluator", "bogus"]) == 2
    assert "bogus" in capsys.readouterr().err
    # the default refine evaluator needs a supernet: said before any trial runs
    assert main([*base, "--study", "no-supernet", "--refine", "2"]) == 2
    assert "--supernet" in capsys.readouterr().err
    assert "no-supernet" not in [s.study_name for s in optuna.get_all_study_summaries(sqlite_url)]


def test_supernet_evaluator_variant_sets_fine_tuning() -> None:
    from nas.evaluators import get_evaluator

    assert get_evaluator("supernet:ft0").finetune_epochs == 0
    assert get_evaluator("supernet", supernet="x").finetune_epochs == 5
    with pytest.raises(ValueError, match="must be ft<N>"):
        get_evaluator("supernet:fast")


def test_supernet_evaluator_needs_a_checkpoint(tmp_path) -> None:
    with pytest.raises(ValueError, match="--supernet PATH"):
        SupernetEvaluator().check_space(GNNSpace())
    with pytest.raises(FileNotFoundError, match="no supernet checkpoint"):
        SupernetEvaluator(str(tmp_path)).check_space(GNNSpace())


def test_supernet_train_rejects_unknown_options(capsys) -> None:
    code = main(["supernet", "train", "--dataset", "cora", "--out", "/nonexistent", "--option", "depth=3"])
    assert code == 2 and "valid: ['convs', 'dropouts', 'heads', 'max_depth', 'split', 'widths']" in capsys.readouterr().err


@pytest.mark.timeout(600)
def test_gradient_strategy_records_its_derived_architecture_as_a_trained_trial(
    cora_available, sqlite_url,
) -> None:
    from nas.samplers import GradientSampler
    from nas.study import SearchConfig, run_search
    from nas.supernet import GradientConfig

    sampler = GradientSampler(
        seed=0, config=GradientConfig(epochs=8, warmup_epochs=3, device="cpu"),
        supernet_options={"max_depth": 1, "convs": ("gcn", "linear")},
    )
    config = SearchConfig(
        dataset="cora", strategy=sampler, convs=("gcn", "linear"), n_trials=2, storage=sqlite_url,
        study_name="g", epochs=5, patience=0, device="cpu", verbose=False,
    )
    study = run_search(config)
    stored = study.user_attrs["gradient_search"]
    assert stored["guard"] == {"shortcut_penalty": 0.5, "max_shortcuts": 1, "warmup_epochs": 3}
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    derived = [t for t in trials if t.user_attrs.get("gradient_proposal") == "derived"]
    assert len(derived) == 1 and len(trials) == 2
    assert json.loads(derived[0].user_attrs["arch"]) == stored["derived"]
    assert derived[0].user_attrs["epochs"] == 5 and 0.0 < derived[0].user_attrs["test_acc"] <= 1.0


def test_supernet_train_rejects_an_unknown_sampling(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["supernet", "train", "--dataset", "cora", "--out", "/nonexistent", "--sampling", "fairest"])
    assert exit_.value.code == 2 and "invalid choice: 'fairest'" in capsys.readouterr().err


@pytest.mark.timeout(600)
def test_a_fine_tune_that_diverges_scores_its_best_epoch_before_the_nan(
    cora_available, cora_supernet, monkeypatch,
) -> None:
    import math

    import nas.train

    task, space = load_task("cora"), GNNSpace(convs=("gcn", "sage"))
    arch = GNNArchitecture(layers=(LayerSpec("gcn", 64, dropout=0.5),))
    train_epoch, calls = nas.train._NodeLoop.train_epoch, []

    def nan_at_epoch_4(self, model, optimizer):
        calls.append(1)
        return math.nan if len(calls) == 4 else train_epoch(self, model, optimizer)

    monkeypatch.setattr(nas.train._NodeLoop, "train_epoch", nan_at_epoch_4)
    result = SupernetEvaluator(str(cora_supernet), finetune_epochs=10).evaluate(arch, space, task, device="cpu")
    assert len(calls) == 4 and result.metrics["val_acc"] > 0.45  # chance: ~0.14


@pytest.mark.parametrize("flag", ["--refine", "--final-train"])
def test_refine_or_final_train_of_zero_is_refused_before_the_search(flag, cora_available, sqlite_url, capsys) -> None:
    """0 was taken as the flag left out: the search ran and the step was skipped without a word
    (exit 0), while -1 was refused as a number of architectures below 1."""
    argv = ["search", "--dataset", "cora", "--storage", sqlite_url, "--quiet", "--trials", "1",
            "--evaluator", "zero-cost:naswot", flag, "0"]
    assert main(argv) == 2
    assert f"{flag} takes a number of architectures >= 1, got 0" in capsys.readouterr().err
    assert optuna.study.get_all_study_names(sqlite_url) == []


def test_the_weights_a_study_records_are_named_by_absolute_paths(tmp_path, monkeypatch) -> None:
    """A study resumed from another folder with a relative --supernet sn was refused saying
    '(--supernet sn), not with those of --supernet sn': both named by the path as typed."""
    import shutil

    from metanets.ghn import resolve_checkpoint
    from nas.evaluators import HypernetEvaluator

    monkeypatch.chdir(tmp_path)
    assert main(["supernet", "train", "--dataset", "mutag", "--out", "sn", "--epochs", "1"]) == 0
    shutil.copy(resolve_checkpoint("pretrained:gnn-cora"), "ghn.safetensors")
    space, task = GNNSpace(), load_task("mutag")
    _, where = SupernetEvaluator(supernet="sn").scoring_weights(space, task)
    assert where == f"--supernet {tmp_path / 'sn'}"
    _, where = HypernetEvaluator(hypernet="ghn.safetensors").scoring_weights(space, task)
    assert where == f"GHN {tmp_path / 'ghn.safetensors'}"
    _, where = HypernetEvaluator(hypernet="pretrained:gnn-cora").scoring_weights(space, task)
    assert where == "GHN pretrained:gnn-cora"
