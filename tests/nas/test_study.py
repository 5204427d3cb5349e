from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from nas.evaluators import Evaluation, Evaluator, TrainEvaluator
from nas.cli import main
from nas.export import load_exported, load_trial_model
from nas.study import FAIL_REASON, FAIL_TRACEBACK, SearchConfig, run_search
from nas.train import DivergedError
from storage import ModelStore

FAST = dict(epochs=5, patience=0, convs=("gcn", "sage"), verbose=False)


def _complete(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def test_cora_search_stores_every_trial_and_its_weights(cora_available: None, sqlite_url: str) -> None:
    study = run_search(SearchConfig("cora", n_trials=3, storage=sqlite_url, **FAST))
    trials = _complete(study)
    assert len(trials) == 3
    store = ModelStore(sqlite_url)
    for trial in trials:
        assert 0.0 < trial.user_attrs["val_acc"] <= 1.0 and "test_acc" in trial.user_attrs
        source = trial.user_attrs.get("duplicate_of", trial.number)
        record = store.get(study.study_name, source)
        assert record.num_params == trial.user_attrs["num_params"] > 0
    model = load_trial_model(sqlite_url, study.study_name)
    from nas.tasks import load_task

    data = load_task("cora").data
    model.eval()
    acc = float((model(data.x, data.edge_index).argmax(-1) == data.y)[data.val_mask].float().mean())
    best = max(trials, key=lambda t: t.values[0])
    assert acc == pytest.approx(best.user_attrs["val_acc"], abs=1e-6)  # the stored weights are the best epoch's


def test_mutag_graph_search(sqlite_url: str) -> None:
    config = SearchConfig("MUTAG", n_trials=2, storage=sqlite_url, strategy="random", **FAST)
    study = run_search(config)
    assert len(_complete(study)) == 2
    assert study.user_attrs["task_level"] == "graph"
    assert ModelStore(sqlite_url).trial_numbers(study.study_name)


class _FlakyEvaluator(Evaluator):
    """Diverges on every trial whose seed is odd; otherwise a constant score."""

    name = "flaky"
    needs_data = False

    def evaluate(self, arch, space, task, *, seed=0, device="cpu", report=None) -> Evaluation:
        if seed % 2:
            raise DivergedError("training loss became nan at epoch 3")
        return Evaluation(metrics={"val_acc": 0.5, "test_acc": 0.4}, num_params=1)


def test_failing_trials_are_recorded_and_the_search_goes_on(sqlite_url: str) -> None:
    config = SearchConfig("cora", n_trials=6, storage=sqlite_url, evaluator=_FlakyEvaluator(),
                          strategy="random", verbose=False)
    study = run_search(config)
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(failed) == 3 and len(_complete(study)) == 3
    assert all("DivergedError" in t.user_attrs[FAIL_REASON] for t in failed)
    run_search(config)  # re-running a finished study runs nothing more
    assert len(optuna.load_study(study_name=study.study_name, storage=sqlite_url).trials) == 6


class _Records(logging.Handler):
    """What optuna's optimisation logger lets through its filters."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture()
def optuna_trial_logs() -> list[logging.LogRecord]:
    logger, handler = logging.getLogger("optuna.study._optimize"), _Records()
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)


@pytest.mark.parametrize("verbose", [True, False])
def test_a_failed_trial_is_one_line_and_its_traceback_is_stored(
    sqlite_url: str, optuna_trial_logs: list[logging.LogRecord], capsys, verbose: bool,
) -> None:
    config = SearchConfig("cora", n_trials=3, storage=sqlite_url, evaluator=_FlakyEvaluator(),
                          strategy="random", verbose=verbose)
    study = run_search(config)
    (failed,) = study.get_trials(states=(TrialState.FAIL,))  # trial 1: an odd seed
    assert 'raise DivergedError("training loss became nan at epoch 3")' in failed.user_attrs[FAIL_TRACEBACK]
    failures = [r for r in optuna_trial_logs if "failed with" in r.getMessage()]
    if verbose:  # the trial printer states it; optuna's two warnings and traceback are dropped
        assert "[trial 1] FAIL DivergedError: training loss became nan at epoch 3" in capsys.readouterr().out
        assert failures == []
    else:  # no printer: optuna's own report stays
        assert [r.exc_info is not None for r in failures] == [True, False]
    capsys.readouterr()
    assert main(["trials", "--storage", sqlite_url, "--study", study.study_name]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].split()[:2] == ["1", "FAIL"]
    assert lines[2].endswith("(DivergedError: training loss became nan at epoch 3)")


def test_rerun_continues_the_study(cora_available: None, sqlite_url: str) -> None:
    first = run_search(SearchConfig("cora", n_trials=2, storage=sqlite_url, **FAST))
    before = {t.number: (t.values, t.user_attrs["arch_hash"]) for t in _complete(first)}
    second = run_search(SearchConfig("cora", n_trials=4, storage=sqlite_url, **FAST))
    after = {t.number: (t.values, t.user_attrs["arch_hash"]) for t in _complete(second)}
    assert len(after) == 4 and all(after[n] == v for n, v in before.items())


def test_study_identity_is_checked(sqlite_url: str) -> None:
    run_search(SearchConfig("cora", n_trials=1, storage=sqlite_url, study_name="s",
                            evaluator=_FlakyEvaluator(), verbose=False))
    with pytest.raises(ValueError, match="created with dataset 'cora', not 'citeseer'"):
        run_search(SearchConfig("citeseer", n_trials=1, storage=sqlite_url, study_name="s",
                                evaluator=_FlakyEvaluator(), verbose=False))


@pytest.mark.timeout(60)  # before the fix: failed trials without end
def test_resuming_with_other_convs_is_refused_before_any_trial(sqlite_url: str) -> None:
    """Other --convs change optuna's choices: every trial would fail, without end."""
    def config(convs: tuple[str, ...], n_trials: int) -> SearchConfig:
        return SearchConfig("cora", convs=convs, n_trials=n_trials, storage=sqlite_url,
                            study_name="s", evaluator=_FlakyEvaluator(), seed=2, verbose=False)

    run_search(config(("gcn",), 1))
    with pytest.raises(ValueError, match=r"created with space_choices .*'gcn'.*not .*'gat'"):
        run_search(config(("gat", "sage"), 2))
    assert len(optuna.load_study(study_name="s", storage=sqlite_url).trials) == 1
    run_search(config(("gcn",), 2))  # the same choices resume it


def test_resuming_with_other_training_is_refused_and_the_same_resumes(sqlite_url: str) -> None:
    """Trials trained with other epochs, patience or init are not comparable: one study holds
    one kind; an evaluator that does not train ignores them."""
    from nas.study import create_or_load_study
    from nas.tasks import load_task

    task = load_task("cora")  # lazy: reads no data
    def config(study: str, **options) -> SearchConfig:
        return SearchConfig("cora", storage=sqlite_url, study_name=study, verbose=False, **options)

    create_or_load_study(config("t", epochs=200), task)
    for other, shown in (({"epochs": 50}, "epochs 50"), ({"patience": 5}, "patience 5"),
                         ({"init": "hypernet"}, "init hypernet"),
                         ({"select": "val_loss"}, "init random, select val_loss")):
        with pytest.raises(ValueError, match=rf"created with evaluation 'evaluator train, epochs 200, "
                                             rf"patience 50, init random', not '.*{shown}"):
            create_or_load_study(config("t", **other), task)
    create_or_load_study(config("t", epochs=200), task)  # the same training resumes it
    create_or_load_study(config("f", evaluator=_FlakyEvaluator(), epochs=5), task)
    create_or_load_study(config("f", evaluator=_FlakyEvaluator(), epochs=9), task)
    with pytest.raises(ValueError, match="created with evaluation 'evaluator flaky', not 'evaluator train"):
        create_or_load_study(config("f"), task)
    create_or_load_study(config("o", evaluator=TrainEvaluator(epochs=3)), task)  # its own epochs count
    with pytest.raises(ValueError, match="epochs 3, .*not 'evaluator train, epochs 4,"):
        create_or_load_study(config("o", evaluator=TrainEvaluator(epochs=4)), task)


class _UnmeasuredEvaluator(Evaluator):
    """Measures nothing: every objective value is NaN."""

    name = "unmeasured"
    needs_data = False

    def evaluate(self, arch, space, task, *, seed=0, device="cpu", report=None) -> Evaluation:
        return Evaluation(metrics={}, num_params=1)


@pytest.mark.timeout(60)  # before the fix: NaN trials failed without counting, for ever
def test_nan_objective_values_fail_trials_that_count_against_the_budget(sqlite_url: str) -> None:
    study = run_search(SearchConfig("cora", n_trials=2, storage=sqlite_url, strategy="random",
                                    evaluator=_UnmeasuredEvaluator(), verbose=False))
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(study.trials) == 2 and len(failed) == 2
    assert all("['accuracy'] not measured (NaN)" in t.user_attrs[FAIL_REASON] for t in failed)


def _search_command(storage: str, study: str, trials: int, *extra: str, epochs: int = 30) -> list[str]:
    return [
        sys.executable, "-m", "nas.cli", "search", "--dataset", "cora", "--convs", "gcn,sage",
        "--trials", str(trials), "--epochs", str(epochs), "--patience", "0", "--storage", storage,
        "--study", study, "--heartbeat", "1", "--grace-period", "3", *extra,
    ]


def _wait_for_completed(storage: str, study: str, count: int, process: subprocess.Popen, limit: float = 240) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            if len(_complete(optuna.load_study(study_name=study, storage=storage))) >= count:
                return
        except KeyError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{count} trials did not complete in {limit} s")


def test_killed_search_resumes_with_earlier_trials_intact(cora_available: None, sqlite_url: str) -> None:
    process = subprocess.Popen(_search_command(sqlite_url, "k", 5), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_for_completed(sqlite_url, "k", 2, process)
        time.sleep(1.0)  # let the next trial start, so the kill leaves it RUNNING
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    killed = optuna.load_study(study_name="k", storage=sqlite_url)
    before = {t.number: t.values for t in _complete(killed)}
    weights = {n: ModelStore(sqlite_url).load_state_dict("k", n) for n in before}
    result = subprocess.run(_search_command(sqlite_url, "k", 5), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    resumed = optuna.load_study(study_name="k", storage=sqlite_url)
    after = {t.number: t.values for t in _complete(resumed)}
    assert len(after) == 5
    assert all(after[n] == v for n, v in before.items())
    for n, state in weights.items():
        again = ModelStore(sqlite_url).load_state_dict("k", n)
        assert all(torch.equal(state[k], again[k]) for k in state)
    assert not resumed.get_trials(states=(TrialState.RUNNING,))


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_ctrl_c_stops_the_search_with_one_line(cora_available: None, sqlite_url: str, n_jobs: int) -> None:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while trials train:
    exit code 130, one line on stderr and no traceback from any worker, no trial left RUNNING."""
    command = _search_command(sqlite_url, "c", 4, "--n-jobs", str(n_jobs), epochs=100_000)
    # A program started from a terminal has SIGINT's default action; one started under a shell
    # that runs the test suite in the background inherits SIGINT ignored, and then Python never
    # turns it into KeyboardInterrupt (the search ran on, and this test failed, under `cmd &`).
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, preexec_fn=_default_sigint)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(KeyError):
                study = optuna.load_study(study_name="c", storage=sqlite_url)
                if len(study.get_trials(states=(TrialState.RUNNING,))) == n_jobs:
                    break
            time.sleep(0.5)
        time.sleep(1.0)  # into training
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            _, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # never leave a 100,000-epoch search behind
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    assert process.returncode == 130
    assert stderr.strip().splitlines() == [
        "metanas: interrupted; finished trials are stored, the interrupted ones failed (they do not "
        "count against --trials): the same command resumes the search"]
    states = [t.state for t in optuna.load_study(study_name="c", storage=sqlite_url).trials]
    assert states == [TrialState.FAIL] * n_jobs


def test_trial_of_a_worker_killed_before_its_first_heartbeat_is_failed(sqlite_url: str) -> None:
    from nas.study import _next_action
    from storage import make_optuna_storage

    storage = make_optuna_storage(sqlite_url, heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(storage=storage, study_name="silent")
    study.ask()  # RUNNING, and no heartbeat was ever recorded: the worker died right away
    assert _next_action(study, n_trials=1) == "wait"  # young: could be a live worker's
    deadline = time.monotonic() + 20
    while _next_action(study, n_trials=1) == "wait" and time.monotonic() < deadline:
        time.sleep(0.5)
    states = [t.state for t in study.get_trials()]
    assert states[0] == TrialState.FAIL  # failed by the heartbeat path, so it is retried
    assert _next_action(study, n_trials=1) == "run"


@pytest.mark.postgres
def test_two_workers_on_postgres(cora_available: None, postgres_url: str) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    workers = [
        subprocess.Popen(_search_command(postgres_url, "pg", 6, "--seed", str(seed), epochs=5), env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for seed in (1, 2)
    ]
    outputs = [w.communicate(timeout=600) for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    assert "metanas:metanas@" not in "".join(o for pair in outputs for o in pair)  # no password shown
    study = optuna.load_study(study_name="pg", storage=postgres_url)
    complete = _complete(study)
    assert 6 <= len(complete) <= 7  # two workers may race for the last trial
    assert len(study.trials) == len(complete)  # nothing failed, nothing lost
    assert len({t.number for t in complete}) == len(complete)
    store = ModelStore(postgres_url)
    stored = set(store.trial_numbers("pg"))
    for trial in complete:
        source = trial.user_attrs.get("duplicate_of", trial.number)
        assert source in stored
        assert store.load_state_dict("pg", source)
    lines = [line for out, _ in outputs for line in out.splitlines() if line.startswith("[trial")]
    assert len(lines) == len(complete)  # each trial reported once, by the worker that ran it


def test_export_round_trip(cora_available: None, sqlite_url: str, tmp_path: Path) -> None:
    from nas.export import export_trial, read_export

    study = run_search(SearchConfig("cora", n_trials=1, storage=sqlite_url, **FAST))
    folder = export_trial(sqlite_url, study.study_name, tmp_path / "best")
    document = read_export(folder)
    assert document["space"] == "gnn" and document["dataset"] == "cora" and document["trial"] == 0
    a, b = load_exported(folder), load_trial_model(sqlite_url, study.study_name)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key])
    assert not list(folder.glob("*.pt")) and not list(folder.glob("*.pkl"))
    json.loads((folder / "architecture.json").read_text())


def test_train_evaluator_rejects_bad_epochs() -> None:
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        TrainEvaluator(epochs=0)


def test_search_config_takes_objectives_as_a_comma_separated_string() -> None:
    # as --objectives takes them; iterating the string gave "could not resolve objective 'a'"
    assert SearchConfig("cora", objectives="accuracy, params").objectives == ("accuracy", "params")


@pytest.mark.parametrize("fields, message", [
    ({"n_trials": 0}, "n_trials must be >= 1, got 0"),
    ({"n_jobs": -1}, "n_jobs must be >= 1, got -1"),
    ({"timeout": 0.0}, "timeout must be > 0 seconds, got 0.0"),
    ({"warm_start": "study:x", "warm_start_k": 0}, "warm_start_k must be >= 1, got 0"),
])
def test_search_config_names_the_field_the_caller_set(fields, message) -> None:
    # from Python there is no --trials flag: the message named one (the CLI names its own flags)
    with pytest.raises(ValueError) as error:
        SearchConfig("cora", **fields)
    assert str(error.value) == message


def test_search_config_refuses_an_unknown_pruner_naming_the_choices() -> None:
    # a typo used to run the search without any pruner, silently
    with pytest.raises(ValueError, match=r"pruner 'medain' among choices \['none', 'median'\]"):
        SearchConfig("cora", pruner="medain")


def test_a_worker_waiting_for_a_trial_running_elsewhere_says_so_once(sqlite_url: str, no_data, capsys) -> None:
    """A resumed search whose last trial was left RUNNING by a killed worker sat silent until the
    heartbeat grace period failed and retried it (about 110 s on the CLI's defaults)."""
    from nas.study import create_or_load_study, run_worker
    from nas.tasks import load_task

    config = SearchConfig("cora", space="nasbench-graph", evaluator="table", n_trials=1,
                          storage=sqlite_url, study_name="w", timeout=2.5, heartbeat=1, grace_period=60)
    study = create_or_load_study(config, load_task("cora"))
    study.ask()  # the trial a killed worker left RUNNING
    run_worker(config)
    out = capsys.readouterr().out
    assert out.count("waiting for trial 0 running in other workers") == 1
    assert "retried once its heartbeat has been silent for 60 s" in out


def test_the_default_study_name_uses_canonical_names() -> None:
    """`--dataset Cora` made the study `Cora-gnn-tpe-train`, another study than `--dataset
    cora`'s, though dataset names are case-insensitive."""
    assert SearchConfig("Cora", space="GNN", strategy="TPE").study_name == "cora-gnn-tpe-train"
    assert SearchConfig("cora").study_name == "cora-gnn-tpe-train"


def test_a_search_with_several_workers_gives_the_callers_threads_back(sqlite_url: str, no_data) -> None:
    """Worker 0 runs in the caller's process and set its torch threads for good."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        run_search(SearchConfig("cora", space="nasbench-graph", evaluator="table", n_trials=4, n_jobs=2,
                                storage=sqlite_url, verbose=False))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_search_config_names_what_it_takes_as_dataset(tiny_graph) -> None:
    """A graph given as it is (not in a DataTask) was accepted whenever a study name was given,
    and failed later in normalize(); without one, obscurely."""
    from nas.tasks import DataTask

    with pytest.raises(TypeError, match=r"dataset must be a dataset name \(one of \[.*'cora'.*\], "
                                        r"tu:NAME or pyg:CLASS\[:NAME\]\) or a nas.tasks.Task \(graphs of one's own: "
                                        r"DataTask\(graphs, 'a-name'\)\), got Data Data\(x=\[6, 4\]"):
        SearchConfig(tiny_graph, study_name="mine")
    with pytest.raises(TypeError, match="got int 5"):
        SearchConfig(5)
    with pytest.raises(ValueError, match="could not resolve dataset 'coar' among choices"):
        SearchConfig("coar", study_name="mine")
    assert SearchConfig(DataTask(tiny_graph, "mine")).study_name == "mine-gnn-tpe-train"


def test_search_config_refuses_what_it_would_misread() -> None:
    """A space object with convs ignored the convs; n_trials 2.5 and seed 'a' were accepted."""
    from search_spaces import GNNSpace

    with pytest.raises(ValueError, match=r"convs narrows a space given by name"):
        SearchConfig("cora", space=GNNSpace(max_depth=1), convs=("gcn",))
    with pytest.raises(ValueError, match=r"n_trials must be an integer, got 2.5"):
        SearchConfig("cora", n_trials=2.5)
    with pytest.raises(ValueError, match=r"seed must be an integer, got 'a'"):
        SearchConfig("cora", seed="a")
    assert SearchConfig("cora", space=GNNSpace(convs=("gcn",))).make_space().convs == ("gcn",)


class _FailingStrategy(optuna.samplers.RandomSampler):
    """Fails as it prepares its first trial, as a GDAS search out of memory does."""

    def before_trial(self, study, trial) -> None:
        raise RuntimeError("CUDA out of memory (simulated) in the strategy's search")


@pytest.mark.timeout(60)
def test_a_strategy_error_fails_its_trial_and_the_rerun_goes_on(sqlite_url: str, no_data) -> None:
    """optuna creates the trial before the strategy prepares it: the error left it RUNNING
    without a heartbeat, and a re-run waited for it ("waiting for trial 0 running in other
    workers") for two grace periods."""
    def config(strategy) -> SearchConfig:
        return SearchConfig("cora", space="nasbench-graph", evaluator="table", strategy=strategy,
                            n_trials=2, storage=sqlite_url, study_name="s", verbose=False)

    with pytest.raises(RuntimeError, match="out of memory"):
        run_search(config(_FailingStrategy()))
    (trial,) = optuna.load_study(study_name="s", storage=sqlite_url).trials
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs[FAIL_REASON] == "RuntimeError: CUDA out of memory (simulated) in the strategy's search"
    assert "in before_trial" in trial.user_attrs[FAIL_TRACEBACK]
    study = run_search(config("random"))  # the re-run goes on, at once
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]


@pytest.mark.timeout(60)
def test_a_prescreen_that_scores_nothing_fails_its_trial(cora_available: None, sqlite_url: str, monkeypatch) -> None:
    """The veto threshold's "not finite on any reference architecture" left the trial RUNNING."""
    import math

    import nas.study

    monkeypatch.setattr(nas.study, "proxy_scorer", lambda *args, **kwargs: lambda arch: math.nan)
    config = SearchConfig("cora", space="nasbench-graph", evaluator="table", strategy="random", n_trials=2,
                          storage=sqlite_url, study_name="v", prescreen="naswot", prescreen_rule="veto",
                          verbose=False)
    with pytest.raises(ValueError, match="not finite on any reference architecture"):
        run_search(config)
    (trial,) = optuna.load_study(study_name="v", storage=sqlite_url).trials
    assert trial.state == TrialState.FAIL and "not finite" in trial.user_attrs[FAIL_REASON]


def test_evaluator_names_are_resolved_before_the_study_is_named_and_checked(sqlite_url: str) -> None:
    """`zero_cost:NASWOT` was refused on a study of `zero-cost:naswot` (or named another study),
    and `Train` was stored as 'evaluator Train' without its epochs: a study made with 2 epochs
    resumed with 9. Studies stored with canonical names resume as before."""
    from nas.study import create_or_load_study
    from nas.tasks import load_task

    task = load_task("cora")  # lazy: reads no data

    def config(study: str | None = None, **options) -> SearchConfig:
        return SearchConfig("cora", storage=sqlite_url, study_name=study, verbose=False, **options)

    assert config(evaluator="Zero_Cost:NASWOT").study_name == "cora-gnn-tpe-zero-cost:naswot"
    assert config(evaluator="Train").study_name == "cora-gnn-tpe-train"
    create_or_load_study(config("zz", evaluator="zero-cost:naswot"), task)
    create_or_load_study(config("zz", evaluator="zero_cost:NASWOT"), task)
    create_or_load_study(config("t", evaluator="Train", epochs=2), task)
    with pytest.raises(ValueError, match="created with evaluation 'evaluator train, epochs 2, .*epochs 9"):
        create_or_load_study(config("t", evaluator="Train", epochs=9), task)
    create_or_load_study(config("t", evaluator="train", epochs=2), task)
    with pytest.raises(ValueError, match=r"could not resolve evaluator 'trian' among choices \['hypernet'"):
        config(evaluator="trian")

    # identities as the code before stored them (the evaluator's name as given)
    made_before = {"old-zc": "evaluator zero-cost:naswot",
                   "old-train": "evaluator train, epochs 2, patience 50, init random"}
    for name, evaluation in made_before.items():
        _cora_study_made_before(sqlite_url, name, evaluation)
    create_or_load_study(config("old-zc", evaluator="ZERO-COST:NASWOT"), task)
    create_or_load_study(config("old-train", evaluator="Train", epochs=2), task)


def _cora_study_made_before(url: str, name: str, evaluation: str) -> optuna.Study:
    """A study of cora's default gnn space as the code before 1566c8b stored it, with one trial."""
    old = optuna.create_study(storage=url, study_name=name, direction="maximize")
    identity = {"dataset": "cora", "space": "gnn", "objectives": ["accuracy"],
                "space_choices": repr(SearchConfig("cora").make_space()), "evaluation": evaluation}
    for key, value in identity.items():
        old.set_user_attr(key, value)
    old.enqueue_trial({})
    return old


@pytest.mark.parametrize("old_study", [False, True])
def test_a_refused_search_under_an_old_spelling_writes_nothing_and_names_no_study(
    old_study: bool, tmp_path: Path, capsys,
) -> None:
    """The old-name lookup ran first in run_search: a search refused afterwards (here an
    objective the evaluator does not measure) had written optuna's 13 tables into the database,
    and said 'resuming study ...' before its refusal."""
    import sqlite3

    url = f"sqlite:///{tmp_path / 'z.db'}"
    if old_study:
        _cora_study_made_before(url, "cora-gnn-tpe-zero_cost:params", "evaluator zero_cost:params")
    else:
        with contextlib.closing(sqlite3.connect(tmp_path / "z.db")) as db:
            db.execute("create table notes (x)")
            db.commit()
    before = (tmp_path / "z.db").read_bytes()
    assert main(["search", "--dataset", "cora", "--evaluator", "zero_cost:params", "--trials", "1",
                 "--objectives", "accuracy,latency", "--storage", url]) == 2
    said = capsys.readouterr()
    assert "is not measured by evaluator 'zero-cost'" in said.err
    assert "resuming" not in said.out + said.err
    assert (tmp_path / "z.db").read_bytes() == before


def test_studies_named_by_an_evaluator_spelled_otherwise_before_1566c8b_resume(sqlite_url: str, capsys) -> None:
    """Since 1566c8b resolved evaluator names, a study made with `zero_cost:naswot` or `Train`
    (stored as 'evaluator zero_cost:naswot', 'evaluator Train') was refused for good with any
    spelling, and the same command without --study started a new, empty study
    'cora-gnn-tpe-zero-cost:naswot' beside it. Another evaluator is still refused."""
    from nas.study import create_or_load_study, resume_study_named_before
    from nas.tasks import load_task

    task = load_task("cora")  # lazy: reads no data

    def config(study: str | None = None, **options) -> SearchConfig:
        return SearchConfig("cora", storage=sqlite_url, study_name=study, verbose=False, **options)

    def resumed(config: SearchConfig) -> dict:
        study = create_or_load_study(config, task)
        assert len(study.trials) == 1  # the old study's, not a new one's
        return study.user_attrs

    for name in ("mine", "other"):
        _cora_study_made_before(sqlite_url, name, "evaluator zero_cost:naswot")
    for other in ("zero_cost:synflow", "zero-cost:naswot", "Zero_Cost:naswot"):
        with pytest.raises(ValueError, match="created with evaluation 'evaluator zero_cost:naswot'"):
            create_or_load_study(config("other", evaluator=other), task)
    assert resumed(config("mine", evaluator="zero_cost:naswot"))["evaluation"] == "evaluator zero-cost:naswot"
    resumed(config("mine", evaluator="zero-cost:NASWOT"))  # stored canonical: any spelling now

    _cora_study_made_before(sqlite_url, "t", "evaluator Train")  # no epochs: only `Train` again
    with pytest.raises(ValueError, match="created with evaluation 'evaluator Train'"):
        create_or_load_study(config("t", evaluator="train", epochs=2), task)
    assert resumed(config("t", evaluator="Train", epochs=2))["evaluation"] == \
        "evaluator train, epochs 2, patience 50, init random"
    with pytest.raises(ValueError, match="epochs 2, .*not 'evaluator train, epochs 9"):
        create_or_load_study(config("t", evaluator="Train", epochs=9), task)

    default = config(evaluator="zero_cost:naswot")
    assert default.study_name == "cora-gnn-tpe-zero-cost:naswot"
    resume_study_named_before(default)  # nothing of either name yet: the canonical one
    assert default.study_name == "cora-gnn-tpe-zero-cost:naswot"
    _cora_study_made_before(sqlite_url, "cora-gnn-tpe-zero_cost:naswot", "evaluator zero_cost:naswot")
    capsys.readouterr()
    resume_study_named_before(default)
    assert default.study_name == "cora-gnn-tpe-zero_cost:naswot"
    assert "resuming study 'cora-gnn-tpe-zero_cost:naswot'" in capsys.readouterr().out
    resumed(default)
    replaced = dataclasses.replace(default, study_name=None, n_trials=3)  # keeps the typed spelling
    resume_study_named_before(replaced)
    assert replaced.study_name == "cora-gnn-tpe-zero_cost:naswot"
    assert dataclasses.replace(default, evaluator="Train").evaluator_as_typed == "Train"
    typed_as_canonical = config(evaluator="zero-cost:naswot")  # names no study made before
    resume_study_named_before(typed_as_canonical)
    assert typed_as_canonical.study_name == "cora-gnn-tpe-zero-cost:naswot"


def test_the_search_command_reads_the_evaluator_in_any_spelling(tmp_path: Path, capsys) -> None:
    """`--evaluator Supernet --supernet DIR` was refused: '--supernet is read by --evaluator supernet'."""
    missing = tmp_path / "no-supernet"
    code = main(["search", "--dataset", "mutag", "--evaluator", "Supernet", "--supernet", str(missing),
                 "--storage", f"sqlite:///{tmp_path / 'db.sqlite'}", "--trials", "1"])
    err = capsys.readouterr().err
    assert code != 0 and "--supernet is read by" not in err and str(missing) in err


def test_a_study_scored_by_a_supernet_resumes_with_it_only(sqlite_url: str, tmp_path: Path) -> None:
    """A study scored with one supernet resumed with another one (--supernet sn2), silently
    mixing the scores of both; the same supernet moved to another folder resumes it."""
    import shutil

    from nas.study import create_or_load_study
    from nas.tasks import load_task

    for name, seed in (("sn", "0"), ("sn2", "1")):
        assert main(["supernet", "train", "--dataset", "mutag", "--out", str(tmp_path / name),
                     "--epochs", "1", "--seed", seed]) == 0
    task = load_task("mutag")

    def config(supernet: Path) -> SearchConfig:
        return SearchConfig("mutag", evaluator="supernet", supernet=str(supernet), storage=sqlite_url,
                            study_name="s", verbose=False)

    create_or_load_study(config(tmp_path / "sn"), task)
    with pytest.raises(ValueError, match=rf"scored with weights of SHA-256 .*\(--supernet {tmp_path / 'sn'}\), "
                                         rf"not with those of --supernet {tmp_path / 'sn2'} "):
        create_or_load_study(config(tmp_path / "sn2"), task)
    shutil.move(tmp_path / "sn", tmp_path / "moved")
    create_or_load_study(config(tmp_path / "moved"), task)


def test_a_search_scored_by_a_damaged_supernet_fails_once_naming_its_file(sqlite_url: str,
                                                                         tmp_path: Path, capsys) -> None:
    """Its weights were first loaded inside a trial: every trial failed and the search exited 0
    saying 'no completed trial yet'."""
    folder = tmp_path / "sn"
    assert main(["supernet", "train", "--dataset", "mutag", "--out", str(folder), "--epochs", "1"]) == 0
    weights = max(folder.glob("*.safetensors"), key=lambda p: p.stat().st_size)
    weights.write_bytes(weights.read_bytes()[:100])
    capsys.readouterr()
    assert main(["search", "--dataset", "mutag", "--evaluator", "supernet", "--supernet", str(folder),
                 "--trials", "2", "--storage", sqlite_url, "--study", "s", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert weights.name in err, err
    assert "s" not in optuna.get_all_study_names(storage=sqlite_url)  # refused before any trial


@pytest.mark.parametrize("evaluator, init", [("hypernet", "random"), ("train", "hypernet")])
def test_a_study_whose_trials_a_ghn_scores_or_starts_refuses_another_ghn_in_its_file(
    evaluator: str, init: str, sqlite_url: str, tmp_path: Path, cora_available: None,
) -> None:
    """The hypernet evaluator's GHN (and the train evaluator's with --init hypernet) was part of
    a study's identity by path only: a GHN retrained into the same file resumed the study and
    mixed the two GHNs' trials. By content, as a supernet's weights are."""
    import shutil

    from metanets.ghn import resolve_checkpoint
    from nas.study import create_or_load_study
    from nas.tasks import load_task

    task, ghn = load_task("cora"), tmp_path / "ghn.safetensors"
    shutil.copy(resolve_checkpoint("pretrained:gnn-cora"), ghn)
    config = SearchConfig("cora", evaluator=evaluator, init=init, hypernet=str(ghn),
                          storage=sqlite_url, study_name="s", verbose=False)
    create_or_load_study(config, task)
    create_or_load_study(config, task)  # the same GHN resumes it
    ghn.write_bytes(ghn.read_bytes()[:-4] + b"\0\0\0\0")  # "retrained" in place
    with pytest.raises(ValueError, match=rf"scored with weights of SHA-256 .*\(GHN {ghn}\), not "
                                         rf"with those of GHN {ghn} "):
        create_or_load_study(config, task)
