"""The fidelity experiment's bookkeeping: joining training seeds (synthetic records, no training)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from _scripts import load_script



def fidelity():
    return load_script("nasbench_graph_fidelity")


def _record(train_seed: int, tests: dict[int, float | None], **extra) -> dict:
    rows = []
    for bench_hash, test in tests.items():
        row = {"arch": {}, "short": f"cell{bench_hash}", "bench_hash": bench_hash,
               "table_val_acc": bench_hash / 10, "table_test_acc": bench_hash / 10}
        if test is None:
            row["diverged"] = "training loss became nan at epoch 3"
        else:
            row.update(val_acc=test, test_acc=test, best_epoch=7, seconds=1.0)
        rows.append(row)
    return {"dataset": "cora", "seed": 0, "epochs": 10, "eval_every": 1, "train_seed": train_seed,
            "command": f"run {train_seed}", "date": "d", "loadavg_start": [0.0, 0.0, 0.0],
            "machine": {"platform": "p", "cpu_count": 2}, "setting": {"epochs": 10},
            "complete": True, "n_archs": len(rows), "rows": rows, **extra}


def _write(folder: Path, record: dict) -> Path:
    folder.mkdir()
    path = folder / "nasbench_graph_fidelity.json"
    path.write_text(json.dumps(record))
    return path


def test_seed_mean_averages_the_seeds_that_did_not_diverge(tmp_path: Path) -> None:
    module = fidelity()
    first = _write(tmp_path / "s0", _record(0, {1: 0.2, 2: 0.4, 3: None, 4: None}))
    second = _write(tmp_path / "s1", _record(1, {1: 0.4, 2: 0.2, 3: 0.9, 4: None},
                                               divergence="best"))
    module.seed_mean([first, second], tmp_path / "out")
    record = json.loads((tmp_path / "out" / "nasbench_graph_fidelity.json").read_text())
    rows = {row["bench_hash"]: row for row in record["rows"]}
    assert rows[1]["test_acc"] == pytest.approx(0.3) and rows[2]["test_acc"] == pytest.approx(0.3)
    assert rows[3]["test_acc"] == pytest.approx(0.9)  # seed 0 diverged: the mean of seed 1 only
    assert rows[3]["per_seed"]["0"] == {"diverged": "training loss became nan at epoch 3"}
    assert rows[4]["diverged"] == "every seed diverged" and "test_acc" not in rows[4]
    assert record["train_seeds"] == [0, 1] and record["divergence"] == ["best", "drop"]
    assert record["spearman_test"] == pytest.approx(3 ** 0.5 / 2)  # ranks 1.5,1.5,3 vs 1,2,3
    text = (tmp_path / "out" / "nasbench_graph_fidelity.md").read_text()
    assert "mean over training seeds [0, 1]" in text and "0.3000 (0.200 / 0.400)" in text
    assert "0.9000 (x / 0.900)" in text


def test_seed_mean_refuses_runs_that_do_not_match(tmp_path: Path) -> None:
    module = fidelity()
    first = _write(tmp_path / "a", _record(0, {1: 0.2}))
    same_seed = _write(tmp_path / "b", _record(0, {1: 0.3}))
    with pytest.raises(ValueError, match="own training seed"):
        module.seed_mean([first, same_seed], tmp_path / "out")
    other_epochs = _record(1, {1: 0.3})
    other_epochs["epochs"] = 20
    with pytest.raises(ValueError, match="different"):
        module.seed_mean([first, _write(tmp_path / "c", other_epochs)], tmp_path / "out")


def test_runs_of_another_epoch_selection_are_not_joined(tmp_path: Path) -> None:
    module = fidelity()
    old = _write(tmp_path / "a", _record(0, {1: 0.2}))  # written before --select: val_acc
    by_loss = _write(tmp_path / "b", _record(1, {1: 0.3}, select="val_loss"))
    with pytest.raises(ValueError, match="different .*'select'"):
        module.seed_mean([old, by_loss], tmp_path / "out")
    with pytest.raises(ValueError, match="different .*'select'"):
        module.merge([old, by_loss], tmp_path / "out")
    other = _write(tmp_path / "c", _record(2, {1: 0.5}, select="val_loss"))
    module.seed_mean([by_loss, other], tmp_path / "out")
    text = (tmp_path / "out" / "nasbench_graph_fidelity.md").read_text()
    assert "the epoch of lowest validation loss kept" in text

