"""Pre-screening: the wrapper evaluates the best-scoring of several base-strategy proposals."""
from __future__ import annotations

import json
import math

import numpy as np
import optuna
import pytest

from nas.samplers import PrescreenSampler, get_sampler
from nas.samplers._prescreen import PRESCREEN_ATTR
from search_spaces import GNNSpace, get_space


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


@pytest.mark.parametrize("strategy", ["random", "tpe", "evolution", "predictor", "reinforce"])
def test_prescreen_takes_the_best_scored_proposal(strategy):
    space = get_space("gnn")
    options = {"space": space} if strategy in ("evolution", "predictor", "reinforce") else {}
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


# ----------------------------------------------------------------------------------------------
# rule "veto": the strategy's own order, minus the candidates in the score's low tail


def _veto(strategy: str, score, seed: int = 0, candidates: int = 4, **options) -> PrescreenSampler:
    space = get_space("gnn")
    extra = {"space": space} if strategy in ("evolution", "predictor", "reinforce") else {}
    base = get_sampler(strategy, seed=seed, **extra)
    return PrescreenSampler(base, space, score, candidates, "veto", **options)


def test_veto_threshold_is_the_quantile_of_the_reference_sample():
    sampler = _veto("random", _width, veto_quantile=0.3, reference=40, reference_seed=7)
    widths = [_width(arch) for arch in sampler.reference_architectures()]
    assert len(widths) == 40 and len(set(widths)) > 5
    assert sampler.veto_threshold() == pytest.approx(float(np.quantile(widths, 0.3)))
    # a function of the space, the score and the settings: another instance agrees
    again = _veto("random", _width, veto_quantile=0.3, reference=40, reference_seed=7)
    assert again.veto_threshold() == sampler.veto_threshold()


@pytest.mark.parametrize("strategy", ["random", "evolution", "predictor", "reinforce"])
def test_veto_removes_only_low_tail_candidates(strategy):
    sampler = _veto(strategy, _width)
    threshold = sampler.veto_threshold()
    study = _run(sampler, n_trials=15)
    vetoed_any = False
    for trial, width in zip(study.trials, _widths(study)):
        record = json.loads(trial.system_attrs[PRESCREEN_ATTR])
        scores, chosen = record["scores"], record["chosen"]
        assert record["rule"] == "veto" and record["threshold"] == pytest.approx(threshold)
        assert width == scores[chosen]
        # every candidate before the chosen one was in the low tail (the base's order is kept)
        assert all(s < threshold for s in scores[:chosen])
        if record["all_vetoed"]:
            assert chosen == 0 and len(scores) == 4 and all(s < threshold for s in scores)
        else:
            assert scores[chosen] >= threshold and len(scores) == chosen + 1  # scored lazily
        vetoed_any |= chosen > 0
    assert vetoed_any  # the test exercised a veto


@pytest.mark.parametrize("strategy", ["random", "evolution", "predictor"])
def test_veto_that_never_fires_leaves_the_strategy_unchanged(strategy):
    space = get_space("gnn")
    options = {"space": space} if strategy in ("evolution", "predictor") else {}
    plain = _run(get_sampler(strategy, seed=2, **options), n_trials=14)
    screened = _run(_veto(strategy, lambda arch: 1.0, seed=2), n_trials=14)
    assert [t.params for t in screened.trials] == [t.params for t in plain.trials]


def test_informative_veto_changes_which_architectures_are_evaluated():
    threshold = _veto("predictor", _width).veto_threshold()
    space = get_space("gnn")
    plain = _widths(_run(get_sampler("predictor", seed=0, space=space), n_trials=15))
    screened = _widths(_run(_veto("predictor", _width), n_trials=15))
    assert screened != plain
    assert sum(w < threshold for w in screened) < sum(w < threshold for w in plain)


def test_veto_decisions_survive_a_resumed_study(tmp_path):
    storage = f"sqlite:///{tmp_path / 'veto.db'}"
    space = get_space("gnn")
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: optuna.Trial) -> float:
        arch = space.suggest(trial)
        trial.set_user_attr("arch_hash", arch.arch_hash)
        return -float(arch.layers[0].dropout)

    def run(name: str, chunks: list[int]) -> optuna.Study:
        for n in chunks:  # a fresh sampler per chunk, as a restarted worker builds one
            study = optuna.create_study(study_name=name, storage=storage, direction="maximize",
                                        sampler=_veto("predictor", _width), load_if_exists=True)
            study.optimize(objective, n_trials=n)
        return study

    whole, resumed = run("whole", [16]), run("resumed", [6, 5, 5])
    assert [t.params for t in resumed.trials] == [t.params for t in whole.trials]
    records = [json.loads(t.system_attrs[PRESCREEN_ATTR]) for t in resumed.trials]
    assert records == [json.loads(t.system_attrs[PRESCREEN_ATTR]) for t in whole.trials]
    assert any(r["chosen"] > 0 for r in records)


def test_veto_with_a_score_that_fails_everywhere_is_a_clear_error():
    def fails(arch) -> float:
        raise RuntimeError("cannot score")

    with pytest.raises(ValueError, match="not finite on any reference architecture"):
        _veto("random", fails).veto_threshold()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rule": "top"}, r"could not resolve prescreen rule 'top' among choices \['best', 'veto'\]"),
        ({"rule": "veto", "veto_quantile": 0.0}, r"veto quantile must be in \(0, 1\), got 0.0"),
        ({"rule": "veto", "veto_quantile": 1.5}, r"veto quantile must be in \(0, 1\), got 1.5"),
        ({"rule": "veto", "reference": 0}, "reference sample must be >= 1, got 0"),
    ],
)
def test_bad_rule_settings_name_the_value_and_the_choices(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PrescreenSampler(get_sampler("random"), get_space("gnn"), _width, 2, **kwargs)


def test_rule_names_are_normalised():
    sampler = PrescreenSampler(get_sampler("random"), get_space("gnn"), _width, 2, " Veto ")
    assert sampler.rule == "veto" and "rule='veto'" in repr(sampler)


@pytest.mark.parametrize("q", [0.0, 0.1, 0.25, 0.5, 0.9, 1.0])
def test_quantile_matches_numpy(q):
    from nas.samplers._prescreen import quantile

    values = [3.0, -1.0, 7.5, 2.0, 2.0, 10.0, 0.5]
    assert quantile(values, q) == pytest.approx(float(np.quantile(values, q)))
    assert quantile([4.0], q) == 4.0


class _TinyTask:
    """A node task around the ``tiny_graph`` fixture, for the data-bound strategies."""

    name, level, num_features, num_classes = "tiny", "node", 4, 3

    def __init__(self, data) -> None:
        self.data = data


def _arch_score(arch) -> float:
    """A score that tells every architecture apart."""
    return float(int(arch.arch_hash[:8], 16))


@pytest.mark.parametrize("strategy", ["gradient", "nac"])
def test_strategies_that_fix_one_architecture_per_trial_screen_distinct_candidates(strategy, tiny_graph):
    # --strategy gradient|nac --prescreen synflow: the k candidates were k copies of the
    # strategy's own proposal (k equal scores, chosen 0), so nothing was screened
    from nas.supernet import GradientConfig

    space = GNNSpace(convs=("gcn", "gat", "sage"))
    options = (dict(config=GradientConfig(epochs=6, warmup_epochs=2)) if strategy == "gradient"
               else dict(width=16, steps=3))
    base = get_sampler(strategy, seed=0, space=space, task=_TinyTask(tiny_graph), device="cpu", **options)
    sampler = PrescreenSampler(base, space, _arch_score, candidates=4)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.set_user_attr("space", "gnn")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(lambda t: float(space.suggest(t).depth), n_trials=3)
    screened = [t for t in study.trials if t.user_attrs.get("gradient_proposal") != "derived"]
    assert len(screened) == (2 if strategy == "gradient" else 3)  # the derived one is evaluated as it is
    records = [json.loads(t.system_attrs[PRESCREEN_ATTR]) for t in screened]
    assert all(len(r["scores"]) == 4 for r in records)
    assert any(len(set(r["scores"])) > 1 for r in records)
    for trial, record in zip(screened, records):  # the trial evaluates the best candidate
        arch = space.suggest(optuna.trial.FixedTrial(trial.params))
        assert _arch_score(arch) == max(record["scores"]) == record["scores"][record["chosen"]]


def test_a_screened_nac_trial_records_the_search_of_the_candidate_it_evaluates(tiny_graph):
    """With --strategy nac --prescreen, a trial evaluating candidate j > 0 stored the alpha of
    candidate 0's search (seed + trial number), which derives another architecture."""
    from nas.samplers._nac import NAC_ATTR

    space = GNNSpace(convs=("gcn", "gat", "sage"))
    base = get_sampler("nac", seed=0, space=space, task=_TinyTask(tiny_graph), device="cpu", width=16, steps=3)
    study = optuna.create_study(direction="maximize", sampler=PrescreenSampler(base, space, _arch_score, candidates=4))
    study.set_user_attr("space", "gnn")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(lambda t: float(space.suggest(t).depth), n_trials=4)
    assert any(json.loads(t.system_attrs[PRESCREEN_ATTR])["chosen"] > 0 for t in study.trials)
    for trial in study.trials:
        record = json.loads(trial.system_attrs[NAC_ATTR])
        derived = [record["convs"][max(range(len(row)), key=lambda i: abs(row[i]))] for row in record["alpha"]]
        evaluated = space.suggest(optuna.trial.FixedTrial(trial.params))
        assert [layer.conv for layer in evaluated.layers] == derived
        arch, _ = base.derive(_TinyTask(tiny_graph), seed=record["seed"])  # the search it is of
        assert arch.layers == evaluated.layers


def test_the_gradient_strategys_derived_architecture_is_never_screened_away(tiny_graph):
    """With --prescreen, the trial labelled gradient_proposal="derived" evaluated whichever
    candidate the proxy preferred: the label was wrong, the derived architecture never trained."""
    from nas.supernet import GradientConfig

    space = GNNSpace(convs=("gcn", "gat", "sage"))
    base = get_sampler("gradient", seed=0, space=space, task=_TinyTask(tiny_graph), device="cpu",
                       config=GradientConfig(epochs=6, warmup_epochs=2))
    study = optuna.create_study(direction="maximize")

    def derived_scores_lowest(arch) -> float:
        derived = space.suggest(optuna.trial.FixedTrial(study.user_attrs["gradient_search"]["derived_params"]))
        return -math.inf if arch.arch_hash == derived.arch_hash else _arch_score(arch)

    study.sampler = PrescreenSampler(base, space, derived_scores_lowest, candidates=4)
    study.set_user_attr("space", "gnn")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(lambda t: float(space.suggest(t).depth), n_trials=3)
    (derived,) = [t for t in study.trials if t.user_attrs["gradient_proposal"] == "derived"]
    assert derived.params == study.user_attrs["gradient_search"]["derived_params"]
    assert PRESCREEN_ATTR not in derived.system_attrs
    sampled = [t for t in study.trials if t.user_attrs["gradient_proposal"] == "sampled"]
    assert len(sampled) == 2 and all(PRESCREEN_ATTR in t.system_attrs for t in sampled)
