"""The sampler conformance suite: every strategy, on a real search space and SQLite storage."""
from __future__ import annotations

import json
import math
import random
import re
import statistics
import warnings
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from nas.samplers import DATA_BOUND, STRATEGIES, check_strategy, get_sampler, strategy_name
from nas.samplers._base import PROPOSAL_ATTR, ReplayTrial
from nas.samplers._predictor import Encoder
from nas.samplers._reinforce import POLICY_ATTR
from nas.study import sampler_seed
from search_spaces import GNNSpace, SearchSpace
from search_spaces.base import Architecture

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
optuna.logging.set_verbosity(optuna.logging.WARNING)

#: a small GNN space keeps the model-based samplers (GP above all) fast
SPACE = GNNSpace(max_depth=3, convs=("gcn", "gat", "sage", "gin"))
#: start-up phases short enough for a test of a few dozen trials
FAST: dict[str, dict[str, Any]] = {
    "tpe": {"n_startup_trials": 5},
    "gp": {"n_startup_trials": 5},
    "nsga2": {"population_size": 4},
    "evolution": {"population_size": 4, "tournament_size": 2},
    "predictor": {"n_startup_trials": 5, "epochs": 20, "mutations_per_parent": 4, "top_k": 4},
}
ALL = sorted(set(STRATEGIES) - DATA_BOUND)  # NAC reads task data: tests/nas/test_nac.py
PROPOSING = ("evolution", "predictor", "reinforce")
N_TRIALS = {"gp": 8}  # GP's acquisition optimisation is the slowest by far


def make_sampler(name: str, seed: int | None, space: SearchSpace | None = SPACE) -> optuna.samplers.BaseSampler:
    options = dict(FAST.get(name, {}))
    if name in PROPOSING:
        options["space"] = space
    return get_sampler(name, seed, **options)


def synthetic(trial: optuna.Trial, space: SearchSpace = SPACE) -> float:
    """Fraction of choices that agree with a hidden target architecture (optimum 1.0)."""
    arch = space.suggest(trial)
    return score(arch)


TARGET = {"depth": 3, "skip": "residual", "lr": 1e-2, "weight_decay": 5e-4, "readout": "max"}
TARGET_LAYER = {"conv": "sage", "width": 128, "activation": "elu", "norm": "batch", "dropout": 0.3}


def score(arch: Any) -> float:
    hits = [arch.depth == TARGET["depth"], arch.skip == TARGET["skip"], arch.lr == TARGET["lr"],
            arch.weight_decay == TARGET["weight_decay"], arch.readout == TARGET["readout"]]
    for i in range(TARGET["depth"]):
        layer = arch.layers[i] if i < arch.depth else None
        hits += [layer is not None and getattr(layer, key) == value for key, value in TARGET_LAYER.items()]
    return sum(hits) / len(hits)


def param_sets(study: optuna.Study) -> list[tuple]:
    return [tuple(sorted(t.params.items())) for t in study.get_trials(deepcopy=False) if t.params]


def arch_hashes(trials: list[optuna.trial.FrozenTrial], space: SearchSpace = SPACE) -> list[str]:
    return [space.suggest(ReplayTrial(t.params, random.Random(0))).arch_hash for t in trials if t.params]  # type: ignore[arg-type]


def run(study: optuna.Study, n: int, objective: Any = synthetic) -> optuna.Study:
    study.optimize(objective, n_trials=n, catch=(RuntimeError,))
    return study


def new_study(url: str, name: str, sampler: optuna.samplers.BaseSampler, **kw: Any) -> optuna.Study:
    return optuna.create_study(storage=url, study_name=name, sampler=sampler, load_if_exists=True,
                               direction=kw.get("direction", "maximize"))


@pytest.mark.parametrize("name", ALL)
def test_same_seed_gives_same_trials(name: str, sqlite_url: str) -> None:
    n = N_TRIALS.get(name, 10)
    first = run(new_study(sqlite_url, "a", make_sampler(name, 3)), n)
    second = run(new_study(sqlite_url, "b", make_sampler(name, 3)), n)
    other = run(new_study(sqlite_url, "c", make_sampler(name, 4)), n)
    assert param_sets(first) == param_sets(second)
    assert param_sets(first) != param_sets(other)


@pytest.mark.parametrize("name", ALL)
def test_resumed_search_continues(name: str, sqlite_url: str) -> None:
    """A new process (new sampler, study loaded from storage) seeded as ``run_search`` seeds it
    continues the search instead of replaying the first session's proposals."""
    n = N_TRIALS.get(name, 12) // 2
    study = new_study(sqlite_url, "s", make_sampler(name, sampler_seed(0, 0, optuna.create_study())))
    run(study, n)
    resumed = optuna.load_study(study_name="s", storage=sqlite_url)
    resumed.sampler = make_sampler(name, sampler_seed(0, 0, resumed))
    run(resumed, n)
    trials = resumed.get_trials(deepcopy=False)
    assert len(trials) == 2 * n and all(t.state == TrialState.COMPLETE for t in trials)
    before, after = set(arch_hashes(trials[:n])), arch_hashes(trials[n:])
    assert sum(h in before for h in after) <= 1


@pytest.mark.parametrize("name", PROPOSING)
def test_resume_equals_uninterrupted_run(name: str, sqlite_url: str) -> None:
    """The proposing strategies derive their state from storage: stopping and resuming with the
    same seed proposes exactly what one uninterrupted session would have."""
    whole = run(new_study(sqlite_url, "whole", make_sampler(name, 5)), 11)
    part = run(new_study(sqlite_url, "part", make_sampler(name, 5)), 6)
    part = optuna.load_study(study_name="part", storage=sqlite_url, sampler=make_sampler(name, 5))
    run(part, 5)
    assert param_sets(part) == param_sets(whole)


def flaky(trial: optuna.Trial) -> float:
    """Fails a fifth of the trials, prunes another fifth."""
    arch = SPACE.suggest(trial)
    if trial.number % 5 == 1:
        raise RuntimeError("diverged")
    if trial.number % 5 == 3:
        trial.report(0.1, step=1)
        raise optuna.TrialPruned()
    return score(arch)


@pytest.mark.parametrize("name", ALL)
def test_failed_and_pruned_trials_are_handled(name: str, sqlite_url: str) -> None:
    n = N_TRIALS.get(name, 12)
    study = run(new_study(sqlite_url, "f", make_sampler(name, 0)), n, flaky)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert len(states) == n
    assert states.count(TrialState.FAIL) == len(range(1, n, 5))
    assert states.count(TrialState.PRUNED) == len(range(3, n, 5))
    assert all(t.params for t in study.get_trials(deepcopy=False))


@pytest.mark.parametrize("name", ALL)
def test_two_workers_propose_few_duplicates(name: str, sqlite_url: str) -> None:
    """Two workers (two study objects, two samplers, one storage) ask before either tells."""
    workers = [
        new_study(sqlite_url, "w", make_sampler(name, sampler_seed(0, i, optuna.create_study())))
        for i in range(2)
    ]
    rounds = N_TRIALS.get(name, 12) // 2
    for _ in range(rounds):
        asked = [(study, study.ask()) for study in workers]
        for study, trial in asked:
            arch = SPACE.suggest(trial)
            study.tell(trial, score(arch))
    hashes = arch_hashes(workers[0].get_trials(deepcopy=False))
    assert len(hashes) == 2 * rounds
    assert len(hashes) - len(set(hashes)) <= 1


class TinySpace(SearchSpace):
    """Twelve architectures: small enough that a careless sampler repeats itself."""

    name = "tiny"

    def suggest(self, trial: Any) -> Architecture:
        return TinyArch(trial.suggest_categorical("a", ["x", "y", "z"]), trial.suggest_int("b", 0, 3))

    def build(self, arch: Any, in_channels: int, out_channels: int, level: str = "node") -> Any:
        raise NotImplementedError

    def architecture_from_dict(self, data: dict[str, Any]) -> Architecture:
        return TinyArch(**data)


class TinyArch(Architecture):
    def __init__(self, a: str, b: int) -> None:
        self.a, self.b = a, b

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TinyArch:
        return cls(**data)


@pytest.mark.parametrize("with_space", [True, False])
@pytest.mark.parametrize("name", PROPOSING)
def test_no_duplicates_until_space_is_exhausted(name: str, with_space: bool, sqlite_url: str) -> None:
    """Two interleaved workers cover all twelve architectures of a tiny space in twelve trials:
    a proposal avoids completed trials and the running trial's proposal of the other worker."""
    space = TinySpace()
    options = {"evolution": {"population_size": 3, "tournament_size": 2},
               "predictor": {"n_startup_trials": 3, "epochs": 10}}.get(name, {})
    workers = [
        new_study(sqlite_url, "tiny", get_sampler(name, i, space=space if with_space else None, **options))
        for i in range(2)
    ]
    for _ in range(6):
        asked = [(study, study.ask()) for study in workers]
        for study, trial in asked:
            arch = space.suggest(trial)
            assert trial.study.get_trials(deepcopy=False)[trial.number].system_attrs[PROPOSAL_ATTR]
            study.tell(trial, ord(arch.a) + arch.b)
    hashes = {space.suggest(ReplayTrial(t.params, random.Random(0))).arch_hash for t in workers[0].trials}  # type: ignore[arg-type]
    assert len(hashes) == 12


@pytest.mark.parametrize("name", ["evolution", "predictor"])
def test_beats_random_search(name: str) -> None:
    """On an objective with a known optimum, guided search finds better architectures than
    random search within the same budget (mean over seeds)."""
    budget = {"evolution": 120, "predictor": 60}[name]  # in-memory storage: fast trials

    def best(sampler: optuna.samplers.BaseSampler) -> float:
        study = optuna.create_study(direction="maximize", sampler=sampler)
        return run(study, budget).best_value

    seeds = range(4)
    options = {"evolution": {"population_size": 10, "tournament_size": 3},
               "predictor": {"n_startup_trials": 10, "epochs": 30}}[name]
    guided = statistics.mean(best(get_sampler(name, s, space=SPACE, **options)) for s in seeds)
    baseline = statistics.mean(best(get_sampler("random", s)) for s in seeds)
    assert guided > baseline + 0.05


def test_reinforce_keeps_its_policy_in_storage(sqlite_url: str) -> None:
    study = run(new_study(sqlite_url, "r", make_sampler("reinforce", 0)), 12)
    stored = json.loads(study._storage.get_study_system_attrs(study._study_id)[POLICY_ATTR])
    assert stored["seen"] == list(range(12))
    assert any(any(v != 0.0 for v in entry["logits"]) for entry in stored["params"].values())
    resumed = optuna.load_study(study_name="r", storage=sqlite_url, sampler=make_sampler("reinforce", 1))
    run(resumed, 4)
    continued = json.loads(resumed._storage.get_study_system_attrs(resumed._study_id)[POLICY_ATTR])
    assert continued["seen"] == list(range(16))
    assert continued["baseline"] != stored["baseline"]


@pytest.mark.parametrize("bad", [-math.inf, math.inf])
def test_reinforce_skips_an_infinite_reward(bad: float, sqlite_url: str) -> None:
    # an objective that returned -inf (optuna completes such a trial) made every logit NaN in
    # the stored policy: each later trial, and every resumed search, failed with "Total of
    # weights must be finite"
    def objective(trial: optuna.Trial) -> float:
        value = synthetic(trial)
        return bad if trial.number == 2 else value

    study = run(new_study(sqlite_url, "inf", make_sampler("reinforce", 0)), 8, objective)
    assert all(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
    stored = json.loads(study._storage.get_study_system_attrs(study._study_id)[POLICY_ATTR])
    assert stored["seen"] == list(range(8))
    assert math.isfinite(stored["baseline"]) and math.isfinite(stored["variance"])
    assert all(math.isfinite(v) for entry in stored["params"].values() for v in entry["logits"])


@pytest.mark.parametrize("poison", [{"baseline": -math.inf}, {"variance": math.nan}, {"logits": math.nan}])
def test_reinforce_relearns_a_stored_policy_that_is_not_finite(poison: dict, sqlite_url: str) -> None:
    # a policy stored before 0cceee2 (baseline -inf, NaN logits after a -inf reward) still
    # failed every resumed search with "Total of weights must be finite"
    def objective(trial: optuna.Trial) -> float:
        value = synthetic(trial)
        return -math.inf if trial.number == 2 else value

    study = run(new_study(sqlite_url, "poisoned", make_sampler("reinforce", 0)), 6, objective)
    learned = study._storage.get_study_system_attrs(study._study_id)[POLICY_ATTR]
    state = json.loads(learned)
    if "logits" in poison:
        for entry in state["params"].values():
            entry["logits"] = [poison["logits"]] * len(entry["logits"])
    state.update({k: v for k, v in poison.items() if k != "logits"})
    study._storage.set_study_system_attr(study._study_id, POLICY_ATTR, json.dumps(state))
    resumed = optuna.load_study(study_name="poisoned", storage=sqlite_url, sampler=make_sampler("reinforce", 0))
    assert json.dumps(resumed.sampler.controller(resumed).to_dict()) == learned  # relearned from the trials
    run(resumed, 2)
    assert all(t.state == TrialState.COMPLETE for t in resumed.get_trials(deepcopy=False))


def test_reinforce_learns_the_rewarded_choice() -> None:
    sampler = get_sampler("reinforce", 0, space=SPACE, learning_rate=0.5)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    run(study, 60, lambda t: float(SPACE.suggest(t).layers[0].conv == "sage"))
    late = [t.params["l0_conv"] for t in study.trials[-15:]]
    assert late.count("sage") >= 8  # uniform would give about 4 of 15


def test_predictor_encoding() -> None:
    distributions = {
        "depth": optuna.distributions.IntDistribution(1, 2),
        "l0_conv": optuna.distributions.CategoricalDistribution(("gcn", "gat")),
        "l1_conv": optuna.distributions.CategoricalDistribution(("gcn", "gat")),
        "lr": optuna.distributions.FloatDistribution(1e-3, 1e-1, log=True),
    }
    encode = Encoder(distributions)
    # depth one-hot | l0 one-hot | l1 one-hot | lr scaled | conv counts
    assert encode({"depth": 1, "l0_conv": "gat", "lr": 1e-2}) == [1, 0, 0, 1, 0, 0, 0.5, 0, 1]
    assert encode({"depth": 2, "l0_conv": "gat", "l1_conv": "gat", "lr": 1e-3}) == [0, 1, 0, 1, 0, 1, 0, 0, 2]


@pytest.mark.parametrize("name", PROPOSING)
def test_single_objective_strategies_refuse_multi_objective(name: str) -> None:
    with pytest.raises(ValueError, match=rf"strategy '{name}'.*accuracy,params.*nsga2"):
        check_strategy(name, SPACE, ("accuracy", "params"))
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler(name, 0))
    with pytest.raises(ValueError, match=rf"strategy '{name}' handles single-objective"):
        study.ask()


@pytest.mark.parametrize("name", ["random", "tpe", "gp", "nsga2"])
def test_multi_objective_strategies(name: str) -> None:
    check_strategy(name, SPACE, ("accuracy", "params"))
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler(name, 0))
    study.optimize(lambda t: (synthetic(t), SPACE.suggest(t).depth), n_trials=N_TRIALS.get(name, 10))
    assert study.best_trials


class FloatSpace(TinySpace):
    name = "floaty"

    def suggest(self, trial: Any) -> Architecture:
        return TinyArch(trial.suggest_categorical("a", ["x"]), trial.suggest_float("b", 0.0, 1.0))


def test_reinforce_refuses_continuous_parameters() -> None:
    with pytest.raises(ValueError, match=r"strategy 'reinforce'.*space 'floaty'.*'b'"):
        check_strategy("reinforce", FloatSpace())
    check_strategy("evolution", FloatSpace())  # mutations handle continuous choices


def test_unknown_strategy_lists_the_choices() -> None:
    with pytest.raises(ValueError, match=r"could not resolve strategy 'bananas'.*predictor"):
        get_sampler("bananas")
    assert type(get_sampler("Evolution")).__name__ == "EvolutionSampler"


@pytest.mark.parametrize("value", [5, None, b"tpe", ["tpe"]])
def test_a_strategy_that_is_neither_a_name_nor_a_sampler_is_named(value) -> None:
    # resolve passes objects through: get_sampler(5) called the int (TypeError: 'int' object is
    # not callable), check_strategy(5) ended in a StopIteration
    choices = rf"a name among {re.escape(repr(sorted(STRATEGIES)))}"
    got = rf"got {re.escape(repr(value))} \({type(value).__name__}\)$"
    with pytest.raises(TypeError, match=rf"^strategy must be {choices} or an optuna sampler, {got}"):
        get_sampler(value, 0)
    with pytest.raises(TypeError, match=rf"^strategy must be {choices} or an optuna sampler, {got}"):
        check_strategy(value)
    with pytest.raises(TypeError, match=rf"^strategy must be {choices}, {got}"):
        strategy_name(value)


@pytest.mark.parametrize("name", ALL)
def test_get_sampler_keeps_its_old_signature(name: str) -> None:
    assert isinstance(get_sampler(name, 0), optuna.samplers.BaseSampler)
    assert isinstance(STRATEGIES[name](None), optuna.samplers.BaseSampler)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_takes_the_search_context(name: str) -> None:
    # run_worker hands every strategy the search's space, task and device; those that do not
    # use one drop it (and data_root, where NAC and gradient load a study's dataset by name)
    sampler = get_sampler(name, 0, space=SPACE, task=object(), data_root="/nowhere", device="cpu")
    assert isinstance(sampler, optuna.samplers.BaseSampler)


def test_a_search_hands_its_strategy_the_space_task_and_device(
    sqlite_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # --data-root and --device did not reach NAC and the gradient strategy, which read the
    # default data root ("Cora is missing ... point --data-root") and ran wherever they chose;
    # they reloaded the task by name, which a DataTask has none of
    import nas.study
    from nas.study import SearchConfig, run_worker
    from nas.tasks import load_task

    given = {}

    class Stop(Exception):
        pass

    def get_sampler(name, seed=None, **options):
        given.update(options, name=name)
        raise Stop

    monkeypatch.setattr(nas.study, "get_sampler", get_sampler)
    config = SearchConfig(
        dataset="cora", strategy="nac", convs=("gcn", "gat"), storage=sqlite_url,
        data_root=str(tmp_path), device="cpu", verbose=False,
    )
    task = load_task("cora", str(tmp_path))
    with pytest.raises(Stop):
        run_worker(config, task=task)
    assert given["name"] == "nac" and given["space"].convs == ("gcn", "gat")
    assert given["task"] is task and given["device"] == "cpu"
