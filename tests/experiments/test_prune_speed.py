"""``experiments/prune_speed.py``: ``prune_model`` counting MACs from weights' shapes against
every step counted forward, on one small network at the smallest budget; the files it writes,
and a disagreement between the two ways of counting reported (exit 1), not hidden."""
from __future__ import annotations

import json

import pytest
from _scripts import load_script

import experiments._results as results
import metanets.pruning.core as core

TINY = ["--networks", "cnn", "--speedups", "2", "--repeats", "1", "--name", "ps"]


@pytest.fixture
def speed(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "RESULTS", tmp_path)
    return load_script("prune_speed")


def _written(tmp_path) -> tuple[dict, str]:
    return json.loads((tmp_path / "ps.json").read_text()), (tmp_path / "ps.md").read_text()


def test_a_tiny_run_times_both_modes_and_finds_the_same_result(
        mnist_available: None, speed, tmp_path) -> None:
    assert speed.main(TINY) == 0
    document, table = _written(tmp_path)
    assert {"command", "date", "machine", "load_start", "load_end"} <= document.keys()
    [row] = document["rows"]
    assert (row["network"], row["speedup"], row["same_result"]) == ("MNIST CNN c8-c16", 2.0, True)
    # from weights: the model and its one-channel copy only; forward: every step besides
    assert row["weights_forward_passes"] == 2 < row["forward_forward_passes"]
    assert row["macs_before"] / row["macs_after"] == row["speedup_reached"] >= 2
    for mode in ("weights", "forward"):
        assert len(row[f"{mode}_s"]["runs"]) == 1 and row[f"{mode}_s"]["median"] > 0
    assert row["gain"] == row["forward_s"]["median"] / row["weights_s"]["median"]
    assert (f"| MNIST CNN c8-c16 | 2x | {row['macs_before']:,} -> {row['macs_after']:,} "
            f"({row['speedup_reached']:.3f}x) | {'-'.join(map(str, row['widths_after']))} | ") in table
    assert f" | 2 vs {row['forward_forward_passes']} | yes |" in table


def test_a_weight_count_that_disagrees_with_the_forward_count_is_reported(
        mnist_available: None, speed, tmp_path, monkeypatch) -> None:
    """A WeightMacs that undercounts the pruned copies stops pruning early: the forward mode
    (which never uses it) prunes further, and the row says the results differ."""
    checked = core.pruning_macs

    def undercounting(*args):
        before, smallest, measure = checked(*args)
        if isinstance(measure, core.WeightMacs):
            return before, smallest, lambda model: measure(model) * 9 // 10
        return before, smallest, measure

    monkeypatch.setattr(core, "pruning_macs", undercounting)
    assert speed.main(TINY) == 1
    document, table = _written(tmp_path)
    [row] = document["rows"]
    assert row["same_result"] is False and "| **NO** |" in table


@pytest.mark.parametrize("argv, message", [
    (["--networks", "mlp"], "network 'mlp' is not one of ['cnn', 'gcn', 'resnet']"),
    (["--speedups", "2,1"], "speed-up '1' must be a finite number > 1"),
    (["--speedups", "inf"], "speed-up 'inf' must be a finite number > 1"),
    (["--repeats", "0"], "'0' must be an integer >= 1"),
    (["--name", "../x"], "--name '../x' must be letters, digits"),
])
def test_bad_arguments_are_usage_errors_naming_the_value(speed, tmp_path, capsys, argv,
                                                         message) -> None:
    with pytest.raises(SystemExit) as exit_:
        speed.main(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
