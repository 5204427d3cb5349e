"""A speed-up that pruning cannot reach is refused before any channel is removed, and by
``metanas prune`` before the task is loaded where the model alone gives the largest reachable
one (image and node tasks); one that is no finite number above 1 as the command line is read.
Before, ``--speedup inf`` (and 500 on a CNN that reaches 22x) was refused after the task was
loaded and a whole pruning pass had run, saying "speed-up infx cannot be reached"."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

from metanets.pruning import UnreachableSpeedupError, prune_model
from metanets.pruning.core import largest_speedup
from nas.export import export_model
from search_spaces.cnn import CNN, CNNArchitecture
from search_spaces.gnn import ATTENTION_CONVS, CONVS, GNN, GNNArchitecture, LayerSpec
from search_spaces.mlp import MLP, MLPArchitecture


def _cnn() -> CNN:
    torch.manual_seed(0)
    return CNN(CNNArchitecture(widths=(8, 8, 16), norm="batch", residual=True), 1, 10).eval()


def _random_graph(nodes: int, edges: int, features: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return (torch.randn(nodes, features, generator=generator),
            torch.randint(0, nodes, (2, edges), generator=generator))


def test_an_unreachable_speedup_is_refused_before_any_channel_is_removed(monkeypatch) -> None:
    import metanets.pruning.core as core

    counted = []
    measure = core.count_macs
    monkeypatch.setattr(core, "count_macs", lambda *args: counted.append(1) or measure(*args))
    with pytest.raises(UnreachableSpeedupError) as info:
        prune_model(_cnn(), (torch.randn(4, 1, 14, 14),), 1000.0, step=0.05)
    assert len(counted) == 2  # the model's MACs, and with every group at one channel
    assert info.value.largest == pytest.approx(largest_speedup(_cnn(), (torch.randn(2, 1, 14, 14),)))
    assert prune_model(_cnn(), (torch.randn(4, 1, 14, 14),), info.value.largest).speedup >= info.value.largest


@pytest.mark.parametrize("speedup", [float("inf"), float("-inf"), float("nan"), 1.0, 0.5])
def test_prune_model_names_a_speedup_that_is_no_finite_number_above_1(speedup: float) -> None:
    with pytest.raises(ValueError, match=f"speed-up {speedup} must be > 1 and finite"):
        prune_model(_cnn(), (torch.randn(2, 1, 14, 14),), speedup)


@pytest.mark.parametrize("conv", CONVS)
def test_a_node_models_largest_speedup_does_not_depend_on_its_graph(conv: str) -> None:
    """What lets metanas prune refuse on a node task before loading it: every MAC counted is
    one node's (nas.prune.DATA_FREE_LEVELS)."""
    from metanets.zoo import example_inputs

    torch.manual_seed(0)
    heads = (4, 2) if conv in ATTENTION_CONVS else (1, 1)
    arch = GNNArchitecture(layers=(LayerSpec(conv, 16, heads[0]), LayerSpec(conv, 16, heads[1])),
                           skip="residual")
    model = GNN(arch, 6, 3).eval()
    ring = largest_speedup(model, example_inputs("node", 6))
    assert ring == largest_speedup(model, _random_graph(300, 1500, 6))
    assert ring == largest_speedup(model, _random_graph(50, 40, 6))


@pytest.mark.parametrize("model", [_cnn(), MLP(MLPArchitecture(widths=(16, 8)), 1, 10).eval()])
def test_an_image_models_largest_speedup_does_not_depend_on_the_batch(model: Any) -> None:
    assert largest_speedup(model, (torch.randn(2, 1, 14, 14),)) == largest_speedup(
        model, (torch.randn(64, 1, 14, 14),))


def _no_task(monkeypatch) -> None:
    import nas.prune

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the task was loaded before the refusal")

    monkeypatch.setattr(nas.prune, "load_task", refuse)


def _export(tmp_path: Path, level: str) -> Path:
    torch.manual_seed(0)
    if level == "image":
        arch = CNNArchitecture(widths=(8, 8, 16), norm="batch", residual=True)
        return export_model(tmp_path / "cnn", space="cnn", spec=arch.to_dict(), in_channels=1,
                            out_channels=10, level="image", state_dict=CNN(arch, 1, 10).state_dict())
    arch = GNNArchitecture(layers=(LayerSpec("gat", 16, 4), LayerSpec("gcn", 16)))
    features, classes = (1433, 7) if level == "node" else (7, 2)  # Cora's, MUTAG's
    return export_model(tmp_path / f"gnn-{level}", space="gnn", spec=arch.to_dict(),
                        in_channels=features, out_channels=classes, level=level,
                        state_dict=GNN(arch, features, classes, level=level).state_dict())


@pytest.mark.parametrize("level, dataset", [("image", "mnist14"), ("node", "cora")])
def test_run_prune_refuses_an_unreachable_speedup_before_loading_the_task(
    level: str, dataset: str, tmp_path: Path, monkeypatch,
) -> None:
    from nas.prune import PruneJob, run_prune

    _no_task(monkeypatch)
    job = PruneJob(str(_export(tmp_path, level)), dataset, 1000.0, str(tmp_path / "out"))
    with pytest.raises(UnreachableSpeedupError, match=r"speed-up 1000x cannot be reached: the "
                                                      r"largest reachable speed-up is \d"):
        run_prune(job)
    for speedup in (float("inf"), float("nan"), 1.0):
        with pytest.raises(ValueError, match=f"speed-up {speedup} must be > 1 and finite"):
            run_prune(dataclasses.replace(job, speedup=speedup))
    assert not (tmp_path / "out").exists()


def test_the_largest_speedup_said_before_loading_cora_is_the_one_measured_on_it(
    cora_available, tmp_path: Path,
) -> None:
    from nas.export import load_exported
    from nas.prune import PruneJob, run_prune
    from nas.tasks import load_task

    folder = _export(tmp_path, "node")
    with pytest.raises(UnreachableSpeedupError) as info:
        run_prune(PruneJob(str(folder), "cora", 1000.0, str(tmp_path / "out")))
    task = load_task("cora")
    assert info.value.largest == largest_speedup(load_exported(folder).eval(),
                                                 (task.data.x, task.data.edge_index))


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1", "0.5", "1e400"])
def test_cli_refuses_a_speedup_that_is_no_finite_number_above_1_as_it_reads_it(
    value: str, capsys, tmp_path: Path,
) -> None:
    from nas.cli import main

    with pytest.raises(SystemExit) as exit_:  # the model folder is not even looked at
        main(["prune", "--model", str(tmp_path / "none"), "--dataset", "cora",
              f"--speedup={value}", "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    shown = str(float(value))
    assert f"argument --speedup: speed-up {shown} must be > 1 and finite" in capsys.readouterr().err


def test_the_largest_speedup_itself_is_reached() -> None:
    """The largest speed-up passes the refusal and is what pruning reaches: before, on this MLP
    (7104 MACs, 414 at one channel per group) the target MACs 7104 / (7104 / 414) came out below
    414 in floating point, and pruning failed with 'AssertionError: unreachable'."""
    model = MLP(MLPArchitecture(widths=(16, 16)), 1, 10).eval()
    inputs = (torch.randn(2, 1, 14, 14),)
    largest = largest_speedup(model, inputs)
    assert prune_model(model, inputs, largest).speedup == pytest.approx(largest)
