"""A pruning metanetwork fit killed part-way resumes from its training state to exactly the
metanetwork and log of an uninterrupted fit; a state of another fit is refused by name."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from torch import nn

import metanets.pruning.metanet as pruning
from metanets.pruning.metanet import ImageLoss, MetanetTrainConfig, fit_pruning_metanet
from search_spaces.cnn import CNN, CNNArchitecture

INPUTS = (torch.zeros(2, 1, 8, 8),)
# every term of the loss that draws random batches or networks: the task loss, the dropped
# network's loss and the distillation KL (ImageLoss draws from torch's generator, the zoo
# network from the fit's own random.Random)
CONFIG = MetanetTrainConfig(steps=8, hidden=8, layers=1, lr=1e-2, penalty="lowest",
                            fraction=0.5, lam=0.5, pruned_weight=1.0, distill=0.5)


def _zoo(seeds: tuple[int, ...] = (0, 1, 2)) -> list[nn.Module]:
    zoo = []
    for seed in seeds:
        torch.manual_seed(seed)
        zoo.append(CNN(CNNArchitecture(widths=(4, 4), residual=seed % 2 == 0), 1, 3).eval())
    return zoo


def _loss(batch_size: int = 8) -> ImageLoss:
    generator = torch.Generator().manual_seed(0)
    return ImageLoss(torch.randn(32, 1, 8, 8, generator=generator),
                     torch.randint(0, 3, (32,), generator=generator), batch_size)


def _fit(zoo: list[nn.Module], **kwargs) -> pruning.PruningMetanetFit:
    return fit_pruning_metanet(zoo, kwargs.pop("loss", _loss()), INPUTS,
                               kwargs.pop("config", CONFIG), **kwargs)


def _killed_in_step(monkeypatch, step: int) -> None:
    """The task loss raises KeyboardInterrupt at its first call of ``step`` (two calls a step:
    the rewritten and the dropped network)."""
    calls = []
    call = ImageLoss.__call__

    def counting(self, module, state):
        if len(calls) == 2 * (step - 1):
            raise KeyboardInterrupt
        calls.append(1)
        return call(self, module, state)

    monkeypatch.setattr(ImageLoss, "__call__", counting)


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(),
                                                 strict=True))


@pytest.mark.parametrize("killed_in, state_every", [(2, 1), (5, 1), (8, 1), (6, 3)])
def test_a_killed_fit_resumes_to_exactly_the_uninterrupted_metanet(
    killed_in: int, state_every: int, tmp_path: Path, monkeypatch,
) -> None:
    zoo = _zoo()
    whole = _fit(zoo)
    state = tmp_path / "metanet.state"
    with monkeypatch.context() as patch:
        _killed_in_step(patch, killed_in)
        with pytest.raises(KeyboardInterrupt):
            _fit(zoo, state=state, state_every=state_every)
    logged, resuming = [], []
    resumed = _fit(zoo, state=state, state_every=state_every,
                   log=lambda step, task, penalty: logged.append(step), resuming=resuming.append)
    saved = (killed_in - 1) // state_every * state_every  # the last step a state was written at
    assert resumed.resumed_from == saved and resuming == [saved]
    assert logged == [s for s in (1, 8) if s > saved]  # earlier steps are not logged again
    assert resumed.history == whole.history
    assert _same_weights(resumed.metanet, whole.metanet)
    assert resumed.metanet.training is False


def test_a_state_of_another_fit_is_refused_by_name(tmp_path: Path, monkeypatch) -> None:
    zoo = _zoo()
    state = tmp_path / "metanet.state"
    with monkeypatch.context() as patch:
        _killed_in_step(patch, 3)
        with pytest.raises(KeyboardInterrupt):
            _fit(zoo, state=state, state_every=1)
    with pytest.raises(ValueError, match="holds the state of a pruning metanetwork fit with "
                                         "lr 0.01, not 0.02"):
        _fit(zoo, state=state, config=dataclasses.replace(CONFIG, lr=2e-2))
    with pytest.raises(ValueError, match="a fit on other networks or training data"):
        _fit(_zoo((0, 1, 3)), state=state)
    with pytest.raises(ValueError, match="a fit on other networks or training data"):
        _fit(zoo, state=state, loss=_loss(batch_size=16))
    assert _fit(zoo, state=state).resumed_from == 2  # the refusals left the state as it was
    state.write_bytes(b"\x80\x04not safetensors")
    with pytest.raises(ValueError, match="is not a pruning metanetwork training-state file .* "
                                         "never unpickled"):
        _fit(zoo, state=state)
    with pytest.raises(ValueError, match="state_every must be >= 1 .steps., got 0"):
        _fit(zoo, state=state, state_every=0)


def test_prune_metanet_cli_resumes_a_killed_fit(tmp_path: Path, monkeypatch, capsys,
                                                export_image_networks) -> None:
    from nas.cli import main
    from nas.tasks import default_data_root

    if not (default_data_root() / "MNIST" / "raw").is_dir():
        pytest.skip("MNIST raw files not found under METANAS_DATA")
    argv = ["prune-metanet", "--dataset", "mnist14", "--steps", "6", "--hidden", "8",
            "--layers", "1", "--lr", "0.01", "--batch-size", "16", "--fraction", "0.5",
            "--state-every", "2", "--quiet", *export_image_networks(tmp_path)]
    out, state = tmp_path / "metanet", tmp_path / "metanet.state"
    with monkeypatch.context() as patch:
        _killed_in_step(patch, 4)
        assert main([*argv, "--out", str(out)]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"metanas: interrupted; the training state {state} is kept: the same command resumes from it")
    assert state.is_file() and not out.exists()
    assert main([*argv, "--out", str(out), "--lr", "0.02"]) == 2
    refused = capsys.readouterr()
    assert "fit with lr 0.01, not 0.02" in refused.err
    assert "resuming" not in refused.out  # it said "resuming from the training state", then refused it
    assert main([*argv, "--out", str(out), "--state-every", "0"]) == 2
    assert "--state-every must be >= 1, got 0" in capsys.readouterr().err
    assert main([*argv, "--out", str(out)]) == 0
    assert f"resuming from the training state {state} at step 2" in capsys.readouterr().out
    assert not state.exists()
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    for name in ("metanet.safetensors", "gate.safetensors"):
        assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    history = [json.loads((folder / "metanet.json").read_text())["metadata"]["history"]
               for folder in (out, tmp_path / "whole")]
    assert history[0] == history[1] and [h["step"] for h in history[0]] == [1, 6]
