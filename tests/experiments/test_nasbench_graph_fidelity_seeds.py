"""Reading a joined fidelity record by seed: single seeds, triples, split halves, divergence."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from _scripts import load_script


def seeds_module():
    return load_script("nasbench_graph_fidelity_seeds")


def _joined(per_cell: dict[float, dict[str, dict]]) -> dict:
    """A --seed-mean record: table test accuracy -> each seed's result."""
    seeds = sorted({s for runs in per_cell.values() for s in runs})
    rows = [{"short": f"cell{table}", "table_test_acc": table, "per_seed": runs}
            for table, runs in per_cell.items()]
    return {"train_seeds": [int(s) for s in seeds], "rows": rows}


def _ok(test: float) -> dict:
    return {"val_acc": test, "test_acc": test, "best_epoch": 5}


def test_every_figure_on_a_record_worked_by_hand() -> None:
    # seed 0 ranks the cells as the table does, seed 1 in reverse, seed 2 as the table does
    record = _joined({
        0.5: {"0": _ok(0.1), "1": _ok(0.9), "2": _ok(0.2)},
        0.8: {"0": _ok(0.2), "1": _ok(0.8), "2": _ok(0.4)},
        0.9: {"0": _ok(0.3), "1": _ok(0.7), "2": _ok(0.9)},
    })
    s = seeds_module().summarise(record, upper=0.75)
    assert s["spearman_single"] == pytest.approx({"0": 1.0, "1": -1.0, "2": 1.0})
    # the mean of the three seeds: 0.4, 0.4667, 0.6333 -> the table's order
    assert s["spearman_mean_all"] == pytest.approx(1.0) and s["spearman_first3"] == pytest.approx(1.0)
    assert s["spearman_triples"]["n"] == 1
    # halves {0,1} vs {2}: means 0.5,0.5,0.5 (tied) rank nothing and are left out; {0,2} vs {1}
    # is -1 and {1,2} vs {0} (0.55, 0.6, 0.8 against a rising seed 0) is 1
    assert s["split_half"]["n"] == 2
    assert (s["split_half"]["min"], s["split_half"]["max"]) == pytest.approx((-1.0, 1.0))
    assert s["upper"]["n_cells"] == 2
    assert s["upper"]["ours"] == pytest.approx((0.4667 + 0.6333) / 2, abs=1e-3)
    assert s["upper"]["table"] == pytest.approx(0.85)
    assert s["diverged"] == []


def test_diverged_runs_are_listed_and_a_dropped_seed_is_left_out() -> None:
    record = _joined({
        0.5: {"0": _ok(0.1), "1": {"diverged": "loss nan at epoch 3"}},
        0.7: {"0": _ok(0.2), "1": _ok(0.3)},
        0.9: {"0": _ok(0.3), "1": {**_ok(0.5), "diverged_at": 40, "best_epoch": 31}},
    })
    s = seeds_module().summarise(record)
    assert s["spearman_single"]["1"] == pytest.approx(1.0)  # over the two cells seed 1 has
    assert [(d["short"], d["seed"]) for d in s["diverged"]] == [("cell0.5", "1"), ("cell0.9", "1")]
    assert s["diverged"][1]["kept"] == "epoch 31" and "dropped" in s["diverged"][0]["kept"]
    text = seeds_module().report(s)
    assert "diverged runs: 2" in text and "cell0.9 seed 1: diverged (40), kept epoch 31" in text


def test_a_single_seed_record_is_refused_by_name(tmp_path: Path, capsys) -> None:
    path = tmp_path / "one_seed.json"
    path.write_text(json.dumps({"rows": []}))
    with pytest.raises(SystemExit) as exit_info:
        seeds_module().main([str(path)])
    assert exit_info.value.code == 2
    assert "one_seed.json is not a --seed-mean record" in capsys.readouterr().err
