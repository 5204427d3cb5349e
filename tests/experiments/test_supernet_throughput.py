"""The supernet throughput benchmark: its settings and a tiny run on the CPU."""
from __future__ import annotations

import json

import pytest
from _scripts import load_script


@pytest.fixture(scope="module")
def throughput():
    return load_script("supernet_throughput")


def test_a_setting_names_a_known_space_and_a_dataset(throughput) -> None:
    assert throughput.parse_setting("nasbench-graph:cora") == ("nasbench-graph", "cora")
    for bad in ("cnn:mnist", "gnn", "gnn:"):
        with pytest.raises(ValueError, match=r"SPACE:DATASET.*\['gnn', 'nasbench-graph'\]"):
            throughput.parse_setting(bad)


def test_bad_arguments_exit_with_a_usage_error(throughput, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        throughput.main(["--settings", "cnn:mnist"])
    assert exit_info.value.code == 2 and "'cnn:mnist'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        throughput.main(["--name", "../elsewhere"])


def test_a_tiny_cpu_run_writes_every_figure_of_the_setting(throughput, tmp_path, monkeypatch) -> None:
    import torch

    import experiments._supernet_common as common

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    throughput.main(["--device", "cpu", "--settings", "gnn:cora", "--epochs", "2", "--warmup", "1",
                     "--archs", "2", "--ft", "0", "1", "--scratch", "1", "--name", "tp"])
    (row,) = json.loads((tmp_path / "tp.json").read_text())["rows"]
    assert row["setting"] == "gnn:cora" and row["device"] == "cpu" and row["supernet_epochs"] == 2
    assert row["supernet_epochs_per_s"] > 0 and row["archs_per_s_ft0"] > row["archs_per_s_ft1"] > 0
    assert row["scratch_s_per_arch"] > 0
    table = (tmp_path / "tp.md").read_text()
    assert "| gnn:cora | cpu |" in table and "archs/s ft1" in table and "archs/s ft0" in table
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    assert f"GPU: {gpu};" in table
