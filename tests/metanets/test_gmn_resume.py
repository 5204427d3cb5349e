"""A metanetwork fit killed part-way resumes from its training state to exactly the result of an
uninterrupted fit; a state of another fit is refused by name."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

import metanets.accuracy as accuracy
from metanets.accuracy import FitConfig, fit_gmn
from metanets.graphs import to_parameter_graph
from search_spaces.cnn import CNNArchitecture, CNNSpace

IMAGE = (torch.zeros(2, 1, 12, 12),)
CONFIG = FitConfig(epochs=6, hidden=8, layers=1, batch_size=2, eval_every=2, lr=1e-2)


def _graphs(n: int = 8) -> list:
    graphs = []
    for seed in range(n):
        torch.manual_seed(seed)
        model = CNNSpace().build(CNNArchitecture(widths=(4,), norm="batch"), 1, 10).eval()
        graphs.append(to_parameter_graph(model, IMAGE))
    return graphs


def _fit(graphs: list, **kwargs) -> accuracy.FitResult:
    y = torch.linspace(0.1, 0.9, len(graphs))
    return fit_gmn(graphs[:5], y[:5], graphs[5:], y[5:], kwargs.pop("config", CONFIG), **kwargs)


def _killed_after(monkeypatch, epochs: int) -> None:
    """``_train_epoch`` raises KeyboardInterrupt on the epoch after ``epochs``."""
    done = []
    train_epoch = accuracy._train_epoch

    def counting(*args, **kwargs) -> float:
        if len(done) == epochs:
            raise KeyboardInterrupt
        done.append(1)
        return train_epoch(*args, **kwargs)

    monkeypatch.setattr(accuracy, "_train_epoch", counting)


@pytest.mark.parametrize("killed_after", [1, 3, 5])
def test_a_killed_fit_resumes_to_exactly_the_uninterrupted_result(
    killed_after: int, tmp_path: Path, monkeypatch,
) -> None:
    graphs = _graphs()
    whole = _fit(graphs)
    state = tmp_path / "fit.state"
    with monkeypatch.context() as patch:
        _killed_after(patch, killed_after)
        with pytest.raises(KeyboardInterrupt):
            _fit(graphs, state=state, state_every=1)
    assert state.is_file()
    resumed = _fit(graphs, state=state, state_every=1)
    assert resumed.best_epoch == whole.best_epoch and resumed.selected_on == whole.selected_on
    assert resumed.history == whole.history
    for key, value in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key


def test_a_state_of_another_fit_is_refused_by_name(tmp_path: Path, monkeypatch) -> None:
    graphs = _graphs()
    state = tmp_path / "fit.state"
    with monkeypatch.context() as patch:
        _killed_after(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            _fit(graphs, state=state)
    with pytest.raises(ValueError, match="holds the state of a metanetwork fit with lr 0.01, not 0.02"):
        _fit(graphs, state=state, config=dataclasses.replace(CONFIG, lr=2e-2))
    with pytest.raises(ValueError, match="a fit on other networks or targets"):
        _fit(list(reversed(graphs)), state=state)
    state.write_bytes(b"\x80\x04not safetensors")
    with pytest.raises(ValueError, match="is not a metanetwork training-state file .* never unpickled"):
        _fit(graphs, state=state)
    with pytest.raises(ValueError, match="state_every must be >= 1"):
        _fit(graphs, state=state, state_every=0)


def test_metanet_train_cli_resumes_a_killed_fit(sqlite_url: str, tmp_path: Path, monkeypatch,
                                                capsys, store_image_networks) -> None:
    from metanets.gmn import load_gmn
    from nas.cli import main

    store_image_networks(sqlite_url)
    out = tmp_path / "gmn"
    argv = ["metanet", "train", "--zoo", sqlite_url, "--study", "z", "--out", str(out), "--epochs",
            "4", "--hidden", "8", "--layers", "1", "--batch-size", "2", "--state-every", "1"]
    state = tmp_path / "gmn.state"
    with monkeypatch.context() as patch:
        _killed_after(patch, 2)
        assert main(argv) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"metanas: interrupted; the training state {state} is kept: the same command resumes from it")
    assert state.is_file() and not out.exists()
    assert main([*argv, "--lr", "1e-3"]) == 2
    refused = capsys.readouterr()
    assert "holds the state of a metanetwork fit with lr 0.002, not 0.001" in refused.err
    assert "resuming" not in refused.out  # it said "resuming from the training state", then refused it
    assert main(argv) == 0
    assert f"resuming from the training state {state} at epoch 2" in capsys.readouterr().out
    assert not state.exists()
    resumed = load_gmn(out)[0].state_dict()
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    whole = load_gmn(tmp_path / "whole")[0].state_dict()
    assert all(torch.equal(resumed[k], v) for k, v in whole.items())
