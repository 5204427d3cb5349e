"""The supernet cost comparison's bookkeeping (synthetic pool rows, no training)."""
from __future__ import annotations

import argparse
import json
import sys

import pytest
from _scripts import load_script

import experiments._supernet_common as common


@pytest.fixture(scope="module")
def cost():
    return load_script("supernet_cost")


def _pool(scores: list[float], vals: list[float], tests: list[float]) -> list[dict]:
    return [{"summary": f"a{i}", "score": s, "score_seconds": 0.1, "val": v, "seconds": 2.0, "test": t}
            for i, (s, v, t) in enumerate(zip(scores, vals, tests))]


def test_supernet_search_trains_only_its_top_k_and_pays_for_the_supernet(cost) -> None:
    rows = _pool(scores=[0.9, 0.1, 0.5, 0.3], vals=[0.70, 0.80, 0.75, 0.60], tests=[0.71, 0.82, 0.74, 0.61])
    one = cost.compare(rows, supernet_seconds=10.0, top_k=1)
    assert one["full_pick"] == "a1" and one["full_test"] == pytest.approx(0.82)
    assert one["supernet_pick"] == "a0" and one["supernet_test"] == pytest.approx(0.71)
    assert one["full_seconds"] == pytest.approx(8.0)
    assert one["supernet_seconds"] == pytest.approx(10.0 + 0.4 + 2.0)
    two = cost.compare(rows, supernet_seconds=10.0, top_k=2)  # a0 and a2 trained; a2 has the better val
    assert two["supernet_pick"] == "a2" and two["final_seconds"] == pytest.approx(4.0)


def test_pool_rows_use_seed_zero_for_selection_and_the_seed_mean_for_test(cost) -> None:
    row = {"summary": "gcn64", "inherited_val": 0.5, "inherited_seconds": 0.1,
           "variants": {"0": {"val": 0.2, "test": 0.2, "seconds": 0.01},
                        "5": {"val": 0.6, "test": 0.6, "seconds": 0.2}},
           "scratch_runs": [{"val": 0.7, "test": 0.8, "seconds": 1.5}, {"val": 0.9, "test": 0.6, "seconds": 1.7}]}
    plain = cost._normalise(row, None)
    assert (plain["score"], plain["score_seconds"]) == (0.2, 0.01)
    tuned = cost._normalise(row, "5")
    assert (tuned["score"], tuned["val"], tuned["seconds"]) == (0.6, 0.7, 1.5)
    assert tuned["test"] == pytest.approx(0.7)


def test_a_cascade_re_scores_only_its_best_candidates_and_trains_the_best_by_the_second_score(cost) -> None:
    rows = _pool(scores=[0.9, 0.8, 0.7, 0.1], vals=[0.70, 0.75, 0.80, 0.90], tests=[0.71, 0.76, 0.81, 0.91])
    for row, refine in zip(rows, [0.2, 0.6, 0.4, 0.99]):
        row.update(refine=refine, refine_seconds=1.0)
    # ft0 keeps a0, a1, a2 (a3's second score is never looked at); the second score puts a1 first
    one = cost.compare(rows, supernet_seconds=10.0, top_k=1, refine_n=3)
    assert one["supernet_pick"] == "a1" and one["supernet_test"] == pytest.approx(0.76)
    assert one["refine_seconds"] == pytest.approx(3.0)
    assert one["supernet_seconds"] == pytest.approx(10.0 + 0.4 + 3.0 + 2.0)
    two = cost.compare(rows, supernet_seconds=10.0, top_k=2, refine_n=3)  # a1 and a2 trained
    assert two["supernet_pick"] == "a2" and two["final_seconds"] == pytest.approx(4.0)


def test_cascade_fractions_are_checked(cost) -> None:
    assert cost._fractions("0.1:0.01") == (0.1, 0.01)
    for bad in ("0.1", "x:0.1", "0.1:0.01:0.001"):
        with pytest.raises(argparse.ArgumentTypeError, match=rf"^takes N:K fractions such as 0.1:0.01, got '{bad}'$"):
            cost._fractions(bad)
    for bad in ("0.01:0.1", "0:0", "2:1"):
        with pytest.raises(argparse.ArgumentTypeError, match=rf"^'{bad}': need 0 < K <= N <= 1$"):
            cost._fractions(bad)


def test_a_cascade_needs_the_second_score_of_every_candidate_it_re_scores(cost) -> None:
    row = {"summary": "gcn64", "variants": {"0": {"val": 0.2, "test": 0.2, "seconds": 0.01}},
           "scratch_runs": [{"val": 0.7, "test": 0.8, "seconds": 1.5}]}
    assert cost._normalise(row, "0", "0")["refine"] == 0.2
    assert "refine" not in cost._normalise(row, "0", "20")  # re-scored only when among the best
    rows = _pool(scores=[0.9, 0.8], vals=[0.7, 0.8], tests=[0.7, 0.8])
    rows[0].update(refine=0.5, refine_seconds=1.0)
    assert cost.compare(rows, 1.0, top_k=1, refine_n=1)["supernet_pick"] == "a0"
    with pytest.raises(SystemExit, match="did not re-score a1"):
        cost.compare(rows, 1.0, top_k=1, refine_n=2)


def _write_ranking(folder) -> None:  # noqa: ANN001
    """A ranking run of two architectures: ft0 scored both, ft20 only the best (--refine-top 1)."""
    scorer = {"val": 0.5, "test": 0.5, "seconds": 0.1}
    rows = [{"arch": {"i": i}, "summary": f"a{i}", "scratch_runs": [{"val": 0.7, "test": 0.7, "seconds": 1.0}],
             "variants": {"0": scorer, **({"20": scorer} if i == 0 else {})}} for i in range(2)]
    machine = {"command": "python experiments/supernet_ranking.py", "date": "d", "loadavg_at_start": [0.0]}
    (folder / "ranking.json").write_text(json.dumps({"rows": rows, "supernet_seconds": 1.0, "machine": machine}))


@pytest.mark.parametrize("argv, message", [
    (["--variant", "5"], "--variant '5' is not a scorer of every row of --rows ['ranking']; those are ['0']"),
    (["--variant", "20"], "--variant '20' is not a scorer of every row of --rows ['ranking']; those are ['0']"),
    (["--refine", "5"], "--refine '5' is not a scorer of --rows ['ranking']; they have ['0', '20']"),
    (["--cascade", "0.5:0.5"], "--cascade needs --refine FT (the second scorer)"),  # exit 1
])
def test_an_unknown_scorer_exits_2_naming_it_and_the_rows_scorers(cost, tmp_path, monkeypatch, capsys,
                                                                  argv, message) -> None:
    # --variant: a KeyError traceback; --refine: exit 1
    monkeypatch.setattr(cost, "RESULTS", tmp_path)
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    _write_ranking(tmp_path)
    monkeypatch.setattr(sys, "argv", ["supernet_cost.py", "--rows", "ranking", *argv])
    with pytest.raises(SystemExit) as exit_:
        cost.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"supernet_cost.py: error: {message}" in err and "Traceback" not in err
    assert [path.name for path in tmp_path.iterdir()] == ["ranking.json"]


def test_rows_of_other_architectures_exit_2_naming_them(cost, tmp_path, monkeypatch, capsys) -> None:
    # exit 1 through SystemExit("...") once the machine was recorded
    monkeypatch.setattr(cost, "RESULTS", tmp_path)
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    _write_ranking(tmp_path)
    other = json.loads((tmp_path / "ranking.json").read_text())
    other["rows"][1]["arch"] = {"i": 7}
    (tmp_path / "other.json").write_text(json.dumps(other))
    monkeypatch.setattr(sys, "argv", ["supernet_cost.py", "--rows", "ranking", "other", "--name", "cost"])
    with pytest.raises(SystemExit) as exit_:
        cost.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert err.splitlines()[-1] == ("supernet_cost.py: error: --rows ['ranking', 'other']: not the same "
                                    "architectures in every file")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["other.json", "ranking.json"]


def test_the_rows_scorers_are_accepted(cost, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(cost, "RESULTS", tmp_path)
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    _write_ranking(tmp_path)
    monkeypatch.setattr(sys, "argv", ["supernet_cost.py", "--rows", "ranking", "--budgets", "2",
                                      "--variant", "0", "--refine", "20", "--cascade", "0.5:0.5",
                                      "--name", "cost"])
    cost.main()
    result = json.loads((tmp_path / "cost.json").read_text())
    assert result["variant"] == "0" and result["refine"] == "20" and len(result["budgets"]) == 2
