"""The zero-cost benchmark's search protocol and its report (table lookups, no training)."""
from __future__ import annotations

import argparse

import pytest
from _scripts import load_script

from nas.evaluators._table import query
from nas.samplers import PrescreenSampler, get_sampler
from search_spaces.nasbench_graph import NasBenchGraphSpace

script = load_script


@pytest.mark.parametrize("strategy", ["tpe", "evolution"])
def test_plain_arm_reproduces_the_strategy_benchmark(strategy: str) -> None:
    space = NasBenchGraphSpace("cora")
    sampler = get_sampler(strategy, seed=3, space=space)
    run = script("zero_cost").search_once(space, sampler, "cora", 15, query)
    reference = script("nasbench_graph").search(strategy, "cora", seed=3, budgets=(15,))
    assert run["unique"] == 15 and run["trials"] == reference["trials"]
    assert 100 * run["test_of_best_val"] == pytest.approx(reference["scores"][15])


def test_prescreened_arm_counts_unique_architectures_and_follows_the_score() -> None:
    space = NasBenchGraphSpace("cora")

    def score(arch) -> float:  # a toy proxy: prefer cells with many "gcn" ops
        return float(arch.ops.count("gcn"))

    plain = script("zero_cost").search_once(
        space, get_sampler("random", seed=0), "cora", 12, query)
    screened_sampler = PrescreenSampler(get_sampler("random", seed=0), space, score, 4)
    screened = script("zero_cost").search_once(space, screened_sampler, "cora", 12, query)
    assert plain["unique"] == screened["unique"] == 12
    assert 0.0 < screened["test_of_best_val"] < 1.0


def test_status_names_what_is_short_and_labels_stand_ins() -> None:
    module = script("zero_cost")
    report = {
        "correlation": {"bench_cora": {p: {"n": 500} for p in module.PROXY_ORDER},
                        "trained_cora": {p: {"n": 50 if p != "gradsign" else 7}
                                         for p in module.PROXY_ORDER}},
        "search": {"search_pubmed_tpe_naswot_k3_on_cora": {"plain": {"seeds": 20},
                                                           "prescreen": {"seeds": 12},
                                                           "difference": {"mean": 0.01}}},
    }
    text = "\n".join(module.status_lines(report))
    assert "trained_cora/gradsign: n=7 of 50" in text and "bench_cora" not in text
    assert "search_pubmed_tpe_naswot_k3_on_cora: 12 of 20 seeds" in text
    assert "STAND-INS" in text
    report["search"] = {"search_cora_tpe_naswot_k3": {"plain": {"seeds": 20},
                                                      "prescreen": {"seeds": 20}}}
    report["correlation"].pop("trained_cora")
    text = "\n".join(module.status_lines(report))
    assert "Every setting reached" in text and "STAND-INS" not in text


def test_score_all_matches_each_proxy_computed_alone(tiny_graph) -> None:
    from nas.proxies import PROXIES, ProxyBatch
    from nas.train import seed_everything
    from search_spaces import get_space

    space = get_space("gnn")
    arch = space.sample(2)
    batches = [ProxyBatch((tiny_graph.x, tiny_graph.edge_index), tiny_graph.y, None)]

    def build():
        return space.build(arch, tiny_graph.num_features, 3, "node")

    names = ["params", "grad_norm", "naswot", "snip", "synflow"]
    row = script("zero_cost").score_all(build, batches, names, seed=5)
    for name in names:
        seed_everything(5)
        assert row[name] == pytest.approx(PROXIES[name](build().train(), batches), rel=1e-6), name
        assert row[f"{name}_s"] >= 0.0


def test_search_summary_pairs_seeds_and_reports_the_difference() -> None:
    runs = {
        "plain/0": {"best_val": 0.80, "test_of_best_val": 0.70},
        "prescreen/0": {"best_val": 0.81, "test_of_best_val": 0.74},
        "plain/1": {"best_val": 0.80, "test_of_best_val": 0.72},
        "prescreen/1": {"best_val": 0.79, "test_of_best_val": 0.70},
        "plain/2": {"best_val": 0.99, "test_of_best_val": 0.99},  # unpaired: left out
    }
    summary = script("zero_cost").search_summary(runs)
    assert summary["plain"]["seeds"] == summary["prescreen"]["seeds"] == 2
    assert summary["plain"]["test_mean"] == pytest.approx(0.71)
    difference = summary["difference"]
    assert difference["mean"] == pytest.approx(0.01) and difference["std"] == pytest.approx(0.03)
    assert (difference["better"], difference["worse"]) == (1, 1)
    assert 0.0 < difference["wilcoxon_p"] <= 1.0


def test_bootstrap_spearman_brackets_the_estimate_and_pairs_with_params() -> None:
    import random

    from scipy.stats import spearmanr

    rng = random.Random(0)
    accuracy = [rng.random() for _ in range(80)]
    good = [a + 0.1 * rng.random() for a in accuracy]  # nearly the accuracy's order
    params = [rng.random() for _ in range(80)]  # unrelated
    module = script("zero_cost")
    boot = module.bootstrap_spearman(good, params, accuracy, resamples=300)
    rho = spearmanr(good, accuracy).statistic
    assert boot["n"] == 80 and boot["resamples"] == 300
    assert boot["ci95"][0] <= rho <= boot["ci95"][1] and boot["ci95"][0] > 0.8
    assert boot["diff_ci95"][0] > 0.5 and boot["p_better"] == 1.0
    # the same seed gives the same resamples; the proxy against itself never beats itself
    assert module.bootstrap_spearman(good, params, accuracy, resamples=300) == boot
    same = module.bootstrap_spearman(params, params, accuracy, resamples=300)
    assert same["diff_ci95"] == [0.0, 0.0] and same["p_better"] == 0.0
    # a column constant in a resample (rho undefined) is dropped, not propagated as NaN
    tiny = module.bootstrap_spearman([1.0, 2.0, 3.0], [3.0, 1.0, 2.0], [0.1, 0.2, 0.3])
    assert all(v == v for v in tiny["ci95"] + tiny["diff_ci95"])


def test_bench_recompute_rescores_a_cached_proxy_once(cora_available, tmp_path, monkeypatch) -> None:
    module = script("zero_cost")
    monkeypatch.setattr(module, "CACHE", tmp_path)
    skip = ["grad_norm", "snip", "synflow", "gradsign"]
    module.main(["bench", "--dataset", "cora", "--archs", "2", "--skip", *skip])
    cache = module.load_cache("bench_cora")
    assert len(cache["archs"]) == 2
    fresh = {h: entry["naswot"] for h, entry in cache["archs"].items()}
    for entry in cache["archs"].values():  # as if scored by an older definition of the proxy
        entry["naswot"] = -1.0
    module.save_cache("bench_cora", cache)

    module.main(["bench", "--dataset", "cora", "--archs", "2", "--skip", *skip])  # resume only
    assert all(e["naswot"] == -1.0 for e in module.load_cache("bench_cora")["archs"].values())

    module.main(["bench", "--dataset", "cora", "--archs", "2", "--skip", *skip,
                 "--recompute", "naswot"])
    cache = module.load_cache("bench_cora")
    for arch_hash, entry in cache["archs"].items():
        assert entry["naswot"] == pytest.approx(fresh[arch_hash])
        assert set(entry["recomputed"]) == {"naswot"} and entry["params"] > 0
    assert len(cache["runs"]) == 3

    for entry in cache["archs"].values():  # a resumed --recompute run does not redo them
        entry["naswot"] = -2.0
    module.save_cache("bench_cora", cache)
    module.main(["bench", "--dataset", "cora", "--archs", "2", "--skip", *skip,
                 "--recompute", "naswot"])
    assert all(e["naswot"] == -2.0 for e in module.load_cache("bench_cora")["archs"].values())


def test_bench_refuses_to_recompute_a_skipped_proxy(tmp_path, monkeypatch, capsys) -> None:
    module = script("zero_cost")
    monkeypatch.setattr(module, "CACHE", tmp_path)
    with pytest.raises(SystemExit) as exit_:  # a ValueError once the task was loaded
        module.main(["bench", "--dataset", "cora", "--archs", "1", "--skip", "gradsign",
                     "--recompute", "gradsign"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert ("error: --recompute ['gradsign'] are skipped; proxies of this run: ['params', "
            "'grad_norm', 'snip', 'synflow', 'naswot']") in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.json"))


def test_search_once_queues_the_transferred_cells_first() -> None:
    space = NasBenchGraphSpace("cora")
    cells = script("nasbench_graph").transfer_cells("cora", 3)
    warm = [space.trial_params(arch) for arch in cells]
    run = script("zero_cost").search_once(
        space, get_sampler("random", seed=0), "cora", 3, query, warm)  # the budget: warm only
    best = max(cells, key=lambda arch: query(arch, "cora").val_acc)
    assert run["unique"] == 3 and run["test_of_best_val"] == query(best, "cora").test_acc
    screened = PrescreenSampler(get_sampler("random", seed=0), space, lambda arch: 0.0, 2)
    assert script("zero_cost").search_once(space, screened, "cora", 5, query, warm)["unique"] == 5


def test_prescreen_rule_names_the_run_and_bad_values_fail_before_any_work(tmp_path, monkeypatch,
                                                                         capsys) -> None:
    module = script("zero_cost")
    monkeypatch.setattr(module, "CACHE", tmp_path)
    assert module.rule_suffix(argparse.Namespace(rule="best", veto_quantile=0.25)) == ""
    assert module.rule_suffix(argparse.Namespace(rule="Veto", veto_quantile=0.25)) == "_veto25"
    assert module.rule_suffix(argparse.Namespace(rule="veto", veto_quantile=0.1)) == "_veto10"
    for argv, message in [
        (["--rule", "top"], "could not resolve prescreen rule 'top' among choices"),
        (["--rule", "veto", "--veto-quantile", "2"], "veto quantile must be in (0, 1), got 2.0"),
    ]:
        with pytest.raises(SystemExit) as exit_:  # a traceback before
            module.main(["prescreen", "--dataset", "cora", *argv])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and message in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.json"))


@pytest.mark.parametrize("argv, dataset", [
    (["bench", "--dataset", "CiteSeer"], "citeseer"),
    (["prescreen", "--dataset", "citeseer"], "citeseer"),
    # the search looks arxiv's table up; the proxy runs on Cora's data (arxiv does not load here)
    (["prescreen", "--dataset", "arxiv", "--proxy-dataset", "cora"], "arxiv"),
    (["trained", "--dataset", "MUTAG"], "mutag"),  # GNN-space models train on any dataset
])
def test_each_part_takes_the_datasets_it_can_run_on(monkeypatch, argv, dataset) -> None:
    module = script("zero_cost")
    runs = []
    for part in ("bench", "trained", "prescreen"):
        monkeypatch.setattr(module, f"run_{part}", runs.append)
    module.main(argv)
    assert [args.dataset for args in runs] == [dataset]


def test_vetoed_arm_keeps_the_plain_search_when_nothing_is_in_the_low_tail() -> None:
    space = NasBenchGraphSpace("cora")
    plain = script("zero_cost").search_once(
        space, get_sampler("predictor", seed=1, space=space), "cora", 20, query)
    vetoing = PrescreenSampler(get_sampler("predictor", seed=1, space=space), space,
                               lambda arch: 1.0, 2, "veto", reference=5)
    screened = script("zero_cost").search_once(space, vetoing, "cora", 20, query)
    assert "screened" not in plain
    assert screened["screened"] == {"trials": screened["trials"], "replaced": 0, "all_vetoed": 0}
    assert screened == {**plain, "seconds": screened["seconds"], "screened": screened["screened"]}


def test_vetoed_arm_counts_the_replaced_proposals() -> None:
    space = NasBenchGraphSpace("cora")

    def score(arch) -> float:  # a toy proxy whose low tail is every cell with a gcn
        return -float("gcn" in arch.ops)

    vetoing = PrescreenSampler(get_sampler("predictor", seed=1, space=space), space, score, 3,
                               "veto", veto_quantile=0.5, reference=50)
    assert vetoing.veto_threshold() == 0.0  # most random cells have no gcn: (8/9)^4 = 62%
    run = script("zero_cost").search_once(space, vetoing, "cora", 25, query)
    counts = run["screened"]
    assert counts["trials"] == run["trials"] and counts["replaced"] > 0
