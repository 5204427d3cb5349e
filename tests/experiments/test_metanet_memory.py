"""``experiments/metanet_memory.py --fit pruning``: the peak memory of one ``metanas
prune-metanet`` training step, measured in a fresh subprocess, beside the estimate its refusal
compares with free memory (``step_bytes``), written with the machine, command and date."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from _scripts import load_script

import experiments._results as results
from metanets.graphs import to_parameter_graph
from metanets.pruning.metanet import MetanetTrainConfig, step_bytes

TINY = ("Cora GCN 4", "cora", "gnn", {"layers": [{"conv": "gcn", "width": 4}]})


@pytest.fixture
def memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    script = load_script("metanet_memory")
    monkeypatch.setattr(script, "NETWORKS", [TINY])
    monkeypatch.setattr(results, "RESULTS", tmp_path)
    return script


def _run(memory, monkeypatch: pytest.MonkeyPatch, *flags: str) -> tuple[dict, str]:
    monkeypatch.setattr(sys, "argv", ["metanet_memory.py", "--fit", "pruning", *flags])
    memory.main()
    return (json.loads((results.RESULTS / "metanet_memory_pruning.json").read_text()),
            (results.RESULTS / "metanet_memory_pruning.md").read_text())


def _edges(memory) -> int:
    _, model, inputs = memory._network(*TINY[1:])
    return int(to_parameter_graph(model, inputs).num_edges)


def test_fit_pruning_records_a_steps_measured_peak_its_estimate_and_their_ratio(
        cora_available: None, memory, monkeypatch: pytest.MonkeyPatch) -> None:
    document, table = _run(memory, monkeypatch, "--hidden", "8")
    assert {"command", "date", "machine"} <= document.keys()
    assert "load_average_when_written" in document["machine"]
    [row] = document["rows"]
    edges = _edges(memory)
    assert (row["network"], row["hidden"], row["layers"], row["edges"]) == ("Cora GCN 4", 8, 2, edges)
    assert row["estimate_bytes"] == step_bytes(edges, MetanetTrainConfig(hidden=8, layers=2)) > 0
    assert row["step_peak_bytes"] == row["peak_bytes"] - row["baseline_bytes"] > 0
    assert row["estimate_over_measured"] == row["estimate_bytes"] / row["step_peak_bytes"]
    assert row["bytes_per_edge"] == row["step_peak_bytes"] / edges
    assert (f"| Cora GCN 4 | 8 | 2 | {edges:,} | {row['step_peak_bytes'] / 2**30:.2f} | "
            f"{row['bytes_per_edge'] / 1024:.1f} | ") in table


def test_fit_pruning_skips_a_network_whose_estimate_is_over_max_gib_without_running_it(
        cora_available: None, memory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_measure", lambda *a, **k: pytest.fail("measured"))
    document, table = _run(memory, monkeypatch, "--hidden", "8", "--max-gib", "0.0001")
    [row] = document["rows"]
    edges = _edges(memory)
    assert row["skipped"] and document["max_gib"] == 0.0001
    assert row["estimate_bytes"] == step_bytes(edges, MetanetTrainConfig(hidden=8, layers=2))
    assert f"| Cora GCN 4 | 8 | 2 | {edges:,} | skipped |" in table


@pytest.mark.parametrize("bad", ["0", "-1", "nan", "x"])
def test_max_gib_must_be_a_positive_number(bad: str, memory, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(memory, "_measure", lambda *a, **k: pytest.fail("measured"))
    monkeypatch.setattr(sys, "argv", ["metanet_memory.py", "--fit", "pruning", "--max-gib", bad])
    with pytest.raises(SystemExit) as exit_:
        memory.main()
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        f"argument --max-gib: {bad!r} must be a number of GiB > 0")


@pytest.mark.parametrize("flags", [["--max-gib", "1"], ["--fit", "accuracy", "--max-gib", "7.5"]])
def test_max_gib_without_fit_pruning_is_refused_naming_its_mode(
        flags: list[str], memory, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """It was read by ``--fit pruning`` alone and silently ignored otherwise (every cell ran)."""
    monkeypatch.setattr(memory, "_measure", lambda *a, **k: pytest.fail("measured"))
    monkeypatch.setattr(sys, "argv", ["metanet_memory.py", "--hidden", "8", *flags])
    with pytest.raises(SystemExit) as exit_:
        memory.main()
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        "error: --max-gib is read by --fit pruning only, not --fit accuracy: drop it or pass "
        "--fit pruning")
    assert not (results.RESULTS / "metanet_memory.json").exists()
