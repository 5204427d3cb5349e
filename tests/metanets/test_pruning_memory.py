"""A pruning metanetwork fit whose largest network could not take a training step in the memory
left is refused before it trains, naming the network, the estimate, the memory free and what
to change (a Cora GCN of 1.5 million weights takes 6.6 GiB a step at the defaults; a larger one
was killed by the OOM killer, saying nothing, whenever the fit drew it)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

import metanets.accuracy as accuracy
import metanets.pruning.metanet as pruning
from metanets.graphs import to_parameter_graph
from metanets.pruning.metanet import ImageLoss, MetanetTrainConfig, fit_pruning_metanet
from search_spaces.cnn import CNN, CNNArchitecture

INPUTS = (torch.zeros(2, 1, 8, 8),)
CONFIG = MetanetTrainConfig(steps=3, hidden=8, layers=1, lr=1e-2, penalty="lowest",
                            fraction=0.5, lam=0.0, pruned_weight=1.0)
WIDTHS = ((4, 4), (8, 8), (4,))  # the second network is the largest


def _zoo() -> list[nn.Module]:
    zoo = []
    for seed, widths in enumerate(WIDTHS):
        torch.manual_seed(seed)
        zoo.append(CNN(CNNArchitecture(widths=widths), 1, 3).eval())
    return zoo


def _loss() -> ImageLoss:
    generator = torch.Generator().manual_seed(0)
    return ImageLoss(torch.randn(16, 1, 8, 8, generator=generator),
                     torch.randint(0, 3, (16,), generator=generator), 8)


def _edges(model: nn.Module) -> int:
    return int(to_parameter_graph(model, INPUTS).num_edges)


def _step_bytes(edges: int) -> int:
    """The calibrated estimate of a step: 4-byte features, ``hidden`` of them, 16 an edge per
    GMN layer and 8 for the per-edge head (a measured step took 0.96-1.07 times it)."""
    return edges * CONFIG.hidden * 4 * (16 * CONFIG.layers + 8)


def _no_training(monkeypatch) -> None:
    monkeypatch.setattr(pruning.PruningMetanet, "rewrite",
                        lambda *a: pytest.fail("the fit started training"))


def test_a_fit_whose_largest_network_cannot_take_a_step_is_refused_before_it_trains(monkeypatch) -> None:
    zoo = _zoo()
    edges = _edges(zoo[1])
    assert edges == max(_edges(m) for m in zoo) > _edges(zoo[0])
    need = _step_bytes(edges)
    assert pruning.step_bytes(edges, CONFIG) == need
    with monkeypatch.context() as patch:
        patch.setattr(accuracy, "available_bytes", lambda device: need - 1)
        _no_training(patch)
        with pytest.raises(MemoryError, match="^" + re.escape(
                f"network 1 of the zoo has a parameter graph of {edges:,} edges (weights): one "
                f"training step of the pruning metanetwork on it needs about 0.0 GiB at hidden 8 "
                f"and 1 layers, more than the 0.0 GiB free on cpu; lower hidden (--hidden) or "
                f"layers (--layers), or leave that network out of the zoo (the parameter graphs of "
                f"the 2 networks read so far are held through the fit: fewer networks, --limit or "
                f"fewer --model-dir, leave more free)") + "$"):
            fit_pruning_metanet(zoo, _loss(), INPUTS, CONFIG)
        with pytest.raises(MemoryError, match=r"^network mine/7 has a parameter graph"):
            fit_pruning_metanet(zoo, _loss(), INPUTS, CONFIG, names=["a", "mine/7", "c"])
    for free in (need, None):  # enough, or unknown: the fit trains
        monkeypatch.setattr(accuracy, "available_bytes", lambda device, free=free: free)
        assert fit_pruning_metanet(zoo, _loss(), INPUTS, CONFIG).history


def test_the_graphs_held_for_the_fit_count_against_a_later_network(monkeypatch) -> None:
    """Every network's parameter graph is built before the first step and held through the fit:
    memory free when the first network was checked may be gone by the third."""
    zoo = _zoo()
    need = _step_bytes(_edges(zoo[1]))
    free = [need, need, need - 1]  # what is free after each network's graph is built
    monkeypatch.setattr(accuracy, "available_bytes", lambda device: free.pop(0))
    _no_training(monkeypatch)
    with pytest.raises(MemoryError, match=r"^network 1 of the zoo has .* graphs of the 3 networks "
                                          r"read so far are held"):
        fit_pruning_metanet(zoo, _loss(), INPUTS, CONFIG)
    assert free == []


def test_a_single_network_that_cannot_take_a_step_is_refused_without_naming_other_networks(
        monkeypatch) -> None:
    zoo = _zoo()[:1]
    monkeypatch.setattr(accuracy, "available_bytes", lambda device: 1)
    _no_training(monkeypatch)
    with pytest.raises(MemoryError, match=r"or leave that network out of the zoo$"):
        fit_pruning_metanet(zoo, _loss(), INPUTS, CONFIG)


def test_prune_metanet_cli_refuses_a_zoo_beyond_memory_with_one_line_and_keeps_its_state(
        mnist_available: None, tmp_path: Path, monkeypatch, capsys, export_image_networks) -> None:
    """Exit 1 with the message (no traceback); the training state of an earlier killed run is
    kept as it was, and the same command resumes from it once memory is free."""
    from nas.cli import main

    zoo = export_image_networks(tmp_path)
    argv = ["prune-metanet", "--dataset", "mnist14", "--steps", "4", "--hidden", "8", "--layers",
            "1", "--batch-size", "16", "--fraction", "0.5", "--state-every", "1", "--quiet",
            "--out", str(tmp_path / "metanet"), *zoo]
    state, out = tmp_path / "metanet.state", tmp_path / "metanet"
    with monkeypatch.context() as patch:
        calls = []
        call = ImageLoss.__call__

        def killed_in_step_3(self, module, state_dict):
            if len(calls) == 4:  # two calls a step: the rewritten and the dropped network
                raise KeyboardInterrupt
            calls.append(1)
            return call(self, module, state_dict)

        patch.setattr(ImageLoss, "__call__", killed_in_step_3)
        assert main(argv) == 130
    kept = state.read_bytes()
    capsys.readouterr()
    with monkeypatch.context() as patch:
        patch.setattr(accuracy, "available_bytes", lambda device: 2**30 // 2)
        patch.setattr(pruning, "step_bytes", lambda edges, config: 2**30)
        _no_training(patch)
        assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"metanas prune-metanet: error: network {zoo[1]} has a parameter graph of "
        f"{_stored_edges(zoo[1]):,} edges (weights): one training step of the pruning metanetwork "
        "on it needs about 1.0 GiB at hidden 8 and 1 layers, more than the 0.5 GiB free on cpu; "
        "lower hidden (--hidden) or layers (--layers), or leave that network out of the zoo"]
    assert state.read_bytes() == kept and not out.exists()
    assert main(argv) == 0
    assert f"resuming from the training state {state}" in capsys.readouterr().out
    assert (out / "metanet.safetensors").is_file() and not state.exists()


def _stored_edges(folder: str) -> int:
    from metanets.zoo import example_inputs
    from nas.export import load_exported

    model = load_exported(folder).eval()
    return int(to_parameter_graph(model, example_inputs("image", 1, "mnist14")).num_edges)
