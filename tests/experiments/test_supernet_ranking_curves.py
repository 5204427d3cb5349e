"""Statistics of fine-tuning curves (supernet_ranking_curves.py): what each reads, the choice."""
from __future__ import annotations

import json
import math

import pytest
from _scripts import load_script


def curves_module():
    return load_script("supernet_ranking_curves")


def _curve(accs: list[float], losses: list[float]) -> list[dict[str, float]]:
    return [{"val_acc": a, "val_loss": loss, "test_acc": a} for a, loss in zip(accs, losses)]


def test_each_statistic_reads_only_the_first_n_epochs_worked_by_hand() -> None:
    m = curves_module()
    curve = _curve([0.5, 0.7, 0.6, 0.9], [1.0, 0.6, 0.8, 0.1])
    assert m.score(curve, 3, "best_acc") == pytest.approx(0.7)  # epoch 4's 0.9 is not read
    assert m.score(curve, 3, "lowest_loss") == pytest.approx(-0.6)
    # the second half of 3 epochs is epochs 2 and 3
    assert m.score(curve, 3, "late_acc") == pytest.approx(0.65)
    assert m.score(curve, 3, "late_loss") == pytest.approx(-0.7)
    assert m.score(curve, 4, "late_loss") == pytest.approx(-0.45)


def test_a_diverged_curve_is_read_as_far_as_it_goes_and_a_nan_loss_is_the_worst() -> None:
    m = curves_module()
    short = _curve([0.4, 0.6], [1.2, float("nan")])  # stopped after 2 of 20 epochs
    assert m.score(short, 20, "best_acc") == pytest.approx(0.6)
    assert m.score(short, 20, "lowest_loss") == pytest.approx(-1.2)
    assert m.score(short, 20, "late_loss") == -math.inf
    assert m.score([], 5, "best_acc") == -math.inf


def test_an_unknown_statistic_is_refused_by_name_with_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"'median'.*best_acc.*late_acc"):
        curves_module().score(_curve([0.5], [1.0]), 1, "median")


def test_the_choice_takes_the_highest_tau_and_on_a_tie_the_fewer_epochs() -> None:
    m = curves_module()
    assert m.choose({(5, "best_acc"): 0.3, (20, "late_loss"): 0.5, (10, "lowest_loss"): 0.4}) == (20, "late_loss")
    assert m.choose({(20, "best_acc"): 0.5, (10, "late_acc"): 0.5, (10, "lowest_loss"): 0.5}) == (10, "lowest_loss")


def _rows(n: int, ft_good: bool) -> list[dict]:
    """Rows whose reference rises with position; the ft curve ranks them right (ft_good) or
    backwards, the control's is always backwards."""
    rows = []
    for i in range(n):
        up, down = 0.5 + i / 100, 0.9 - i / 100
        rows.append({"position": i, "scratch_test": up, "scratch_val": up,
                     "curves": {"ft": _curve([up if ft_good else down] * 20, [1.0] * 20),
                                "scratch": _curve([down] * 20, [1.0] * 20)}})
    return rows


def test_paired_bootstrap_of_a_scorer_that_ranks_against_one_that_ranks_backwards() -> None:
    m = curves_module()
    rows = _rows(12, ft_good=True)
    diff, low, high = m.paired_bootstrap(rows, lambda r: m.score(r["curves"]["ft"], 20, "best_acc"),
                                         lambda r: m.score(r["curves"]["scratch"], 20, "best_acc"), resamples=200)
    assert diff == pytest.approx(2.0) and low > 1.5 and high == pytest.approx(2.0)


def test_read_chooses_on_the_first_rows_and_reads_on_the_others(tmp_path, monkeypatch) -> None:
    import experiments._supernet_common as common

    m = curves_module()
    monkeypatch.setattr(m, "RESULTS", tmp_path)
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    machine = {"command": "python collect", "platform": "test", "cpu_count": 2, "loadavg_at_start": [0, 0, 0],
               "date": "2026-12-07"}
    rows = _rows(20, ft_good=True)
    for r in rows:
        r["reproduces"] = {"ft": False, "scratch": True}
        # on the reading half only, late accuracy ranks backwards: the choice must not see it
        if r["position"] >= 10:
            r["curves"]["ft"][10:] = _curve([0.9 - r["position"] / 100] * 10, [1.0] * 10)
    for name, part in (("a", rows[:10]), ("b", rows[10:])):
        (tmp_path / f"{name}.json").write_text(json.dumps(
            {"machine": machine, "args": {"rows": "pool"}, "rows": part}))
    monkeypatch.setattr("sys.argv", ["supernet_ranking_curves.py", "--read", "a", "b", "--split", "10",
                                     "--name", "out"])
    m.main()
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["chosen"] == {"epochs": 5, "statistic": "best_acc"}  # every statistic ties; fewest epochs, first
    assert out["reproduced"] == {"ft": 0, "scratch": 20}
    assert out["tau"]["reading"]["ft"]["20:late_acc"] == pytest.approx(-1.0)
    assert out["tau"]["reading"]["ft"]["5:best_acc"] == pytest.approx(1.0)
    assert out["tau"]["reading"]["scratch"]["5:best_acc"] == pytest.approx(-1.0)
