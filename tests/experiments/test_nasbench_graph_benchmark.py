"""The strategy benchmark's protocol on NAS-Bench-Graph's tables (tiny budgets)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from _scripts import load_script

from nas.evaluators._table import load_table



def benchmark():
    return load_script("nasbench_graph")


@pytest.mark.parametrize("strategy", ["random", "evolution"])
def test_score_is_the_test_accuracy_of_the_best_validation_architecture(strategy: str) -> None:
    run = benchmark().search(strategy, "citeseer", seed=1, budgets=(5, 12))
    assert run["unique"] == 12 and run["trials"] >= 12 and set(run["scores"]) == {5, 12}
    table = load_table("citeseer")
    tests = {round(100 * row.test_acc, 6) for row in table.values()}
    assert all(round(score, 6) in tests for score in run["scores"].values())
    again = benchmark().search(strategy, "citeseer", seed=1, budgets=(5, 12))
    assert again["scores"] == run["scores"]  # seeded


def test_unknown_dataset_lists_the_valid_ones(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:  # a ValueError traceback before
        benchmark().main(["--datasets", "texas", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert re.search(r"error: argument --datasets: NAS-Bench-Graph has no dataset 'texas'.*'cora'.*'arxiv'", err)


def test_results_files_record_machine_load_command_and_date(tmp_path: Path) -> None:
    out = tmp_path / "nbg"
    assert benchmark().main([
        "--strategies", "random,evolution", "--datasets", "cora", "--seeds", "2",
        "--budgets", "4,8", "--processes", "1", "--out", str(out),
    ]) == 0
    document = json.loads(out.with_suffix(".json").read_text())
    assert {"machine", "cpus", "load", "command", "date"} <= set(document["meta"])
    assert document["summary"]["cora"]["evolution"]["8"]["n"] == 2
    text = out.with_suffix(".md").read_text()
    assert "| random |" in text and "@8" in text and "command:" in text
