"""Pre-screening: the wrapper evaluates the best-scoring of several base-strategy proposals."""
from __future__ import annotations

import json

import optuna
import pytest

from nas.samplers import PrescreenSampler, get_sampler
from nas.samplers._prescreen import PRESCREEN_ATTR
from search_spaces import get_space


def _width(arch) -> float:
    return float(sum(layer.width for layer in arch.layers))


def _run(sampler, n_trials: int = 12) -> optuna.Study:
    space = get_space("gnn")
    study = optuna.create_study(direction="maximize", sampler=sampler)

    def objective(trial: optuna.Trial) -> float:
        arch = space.suggest(trial)
        trial.set_user_attr("arch_hash", arch.arch_hash)
        return -float(arch.layers[0].dropout)  # unrelated to the pre-screening score

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=n_trials)
    return study


def _widths(study: optuna.Study) -> list[float]:
    space = get_space("gnn")
    return [_width(space.suggest(optuna.trial.FixedTrial(t.params))) for t in study.trials]


@pytest.mark.parametrize("strategy", ["random", "tpe", "evolution", "predictor"])
def test_prescreen_takes_the_best_scored_proposal(strategy):
    space = get_space("gnn")
    options = {"space": space} if strategy in ("evolution", "predictor") else {}
    plain = _run(get_sampler(strategy, seed=0, **options))
    screened = _run(PrescreenSampler(get_sampler(strategy, seed=0, **options), space, _width, candidates=8))
    assert _widths(screened) != _widths(plain)  # the wrapper changes which candidate is evaluated
    assert sum(_widths(screened)) > 1.5 * sum(_widths(plain))
    for trial, width in zip(screened.trials, _widths(screened)):
        record = json.loads(trial.system_attrs[PRESCREEN_ATTR])
        assert len(record["scores"]) >= 1
        assert width == max(record["scores"]) == record["scores"][record["chosen"]]


@pytest.mark.parametrize("strategy", ["random", "evolution"])
def test_one_candidate_leaves_the_strategy_unchanged(strategy):
    space = get_space("gnn")
    options = {"space": space} if strategy == "evolution" else {}
    plain = _run(get_sampler(strategy, seed=3, **options), n_trials=5)
    screened = _run(PrescreenSampler(get_sampler(strategy, seed=3, **options), space, _width, candidates=1), n_trials=5)
    assert [t.params for t in screened.trials] == [t.params for t in plain.trials]


def test_enqueued_trials_keep_their_parameters():
    space = get_space("gnn")
    params = {
        "depth": 1, "l0_conv": "gcn", "l0_width": 16, "l0_activation": "relu", "l0_norm": "none",
        "l0_dropout": 0.5, "readout": "mean", "lr": 0.01, "weight_decay": 0.0005,
    }
    sampler = PrescreenSampler(get_sampler("random", seed=0), space, _width, candidates=4)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial(params)
    study.optimize(lambda t: _width(space.suggest(t)), n_trials=1)
    assert study.trials[0].params == params
    assert PRESCREEN_ATTR not in study.trials[0].system_attrs


def test_unscorable_proposals_rank_last():
    space = get_space("gnn")

    def score(arch) -> float:
        if arch.layers[0].conv == "gcn":
            raise RuntimeError("cannot score")
        return 1.0

    study = _run(PrescreenSampler(get_sampler("random", seed=1), space, score, candidates=6), n_trials=6)
    record = [json.loads(t.system_attrs[PRESCREEN_ATTR]) for t in study.trials]
    assert all(r["scores"][r["chosen"]] == 1.0 for r in record if 1.0 in r["scores"])


def test_bad_candidate_count():
    with pytest.raises(ValueError, match="candidates must be >= 1"):
        PrescreenSampler(get_sampler("random"), get_space("gnn"), _width, candidates=0)


def test_candidates_the_space_refuses_are_dropped_not_fatal():
    from search_spaces.nasbench_graph import NasBenchGraphSpace

    space = NasBenchGraphSpace("cora")

    class RefusesGcn(NasBenchGraphSpace):
        """Prunes every cell whose first op is gcn, as the real space prunes the all-skip one."""

        def suggest(self, trial):
            arch = super().suggest(trial)
            if arch.ops[0] == "gcn":
                raise optuna.TrialPruned("refused")
            return arch

    refusing = RefusesGcn("cora")
    sampler = PrescreenSampler(get_sampler("random", seed=0), refusing, lambda arch: 0.0, 6)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(lambda t: float(len(refusing.suggest(t).ops)), n_trials=15)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(study.trials) == 15 and len(complete) >= 14
    for trial in complete:
        record = json.loads(trial.system_attrs[PRESCREEN_ATTR])
        assert 1 <= len(record["scores"]) <= 6
        assert space.suggest(optuna.trial.FixedTrial(trial.params)).ops[0] != "gcn"
