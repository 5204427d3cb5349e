"""``--device auto|cpu|cuda`` on the commands that train or run metanetworks and zoos: parsed
(default auto), refused for cuda without CUDA before anything is read or written, and passed
on to the library code, which moves its modules there."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from nas.cli import build_parser, main
from search_spaces.cnn import CNN, CNNArchitecture


def _commands(tmp_path: Path, url: str) -> dict[str, list[str]]:
    """Each command with its required options; inputs that do not exist where the device check
    must come first, outputs under ``tmp_path``."""
    return {
        "zoo build": ["zoo", "build", "--size", "2", "--storage", url],
        "metanet train": ["metanet", "train", "--zoo", url, "--study", "a",
                          "--out", str(tmp_path / "gmn")],
        "metanet predict": ["metanet", "predict", "--model", str(tmp_path / "gmn"), "--zoo", url,
                            "--study", "a"],
        "hypernet train": ["hypernet", "train", "--dataset", "nope",
                           "--out", str(tmp_path / "ghn.safetensors")],
        "predict-params": ["predict-params", "--hypernet", "pretrained:gnn-cora",
                           "--arch", str(tmp_path / "arch.json"), "--out", str(tmp_path / "out")],
        "prune": ["prune", "--model", str(tmp_path / "model"), "--dataset", "cora",
                  "--speedup", "2", "--out", str(tmp_path / "pruned")],
        "prune-metanet": ["prune-metanet", "--dataset", "cora", "--out", str(tmp_path / "pm"),
                          "--zoo", url, "--study", "a"],
        "evaluate": ["evaluate", "--model", str(tmp_path / "model")],
    }


COMMANDS = list(_commands(Path("."), "sqlite:///x.db"))


@pytest.mark.parametrize("command", COMMANDS)
def test_device_defaults_to_auto_and_takes_cpu(command: str, tmp_path: Path) -> None:
    argv = _commands(tmp_path, "sqlite:///x.db")[command]
    assert build_parser().parse_args(argv).device == "auto"
    assert build_parser().parse_args([*argv, "--device", "cpu"]).device == "cpu"


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("command", COMMANDS)
def test_cuda_without_cuda_exits_2_naming_it_before_reading_or_writing(
    command: str, tmp_path: Path, capsys, monkeypatch, store_image_networks,
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    url = f"sqlite:///{tmp_path / 'zoo.db'}"
    store_image_networks(url, "a", runs=3)
    (tmp_path / "gmn").mkdir()  # an output folder that must stay as it is
    before = _files(tmp_path)
    assert main([*_commands(tmp_path, url)[command], "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "device 'cuda' requested but CUDA is not available; use cpu or auto" in err
    assert "Traceback" not in err
    assert _files(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gmn", "zoo.db"]


class _Reached(Exception):
    """Raised by a spy once the library call it stands for got its arguments."""


def _spy(monkeypatch, owner: object, name: str, seen: list, device_of) -> None:
    """Replace ``owner.name`` by a function that records the device it was given and stops."""
    def spy(*args, **kwargs):
        seen.append(str(device_of(*args, **kwargs)))
        raise _Reached

    monkeypatch.setattr(owner, name, spy)


def test_each_command_passes_the_device_on(tmp_path: Path, monkeypatch, capsys,
                                           store_image_networks) -> None:
    """With CUDA reported (nothing runs on it: every library entry point is a spy), ``--device
    cuda`` reaches the library code of every command."""
    import metanets.accuracy
    import metanets.ghn_train
    import nas.evaluate
    import nas.prune
    import nas.zoo
    from metanets.ghn import GraphHyperNetwork

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    url = f"sqlite:///{tmp_path / 'zoo.db'}"
    store_image_networks(url, "a", runs=3)
    seen: list[str] = []
    _spy(monkeypatch, nas.zoo, "build_zoo", seen, lambda config, *_: config.device)
    _spy(monkeypatch, metanets.accuracy, "train_accuracy_predictor", seen,
         lambda *args, **kwargs: kwargs["device"])
    _spy(monkeypatch, metanets.ghn_train, "train_hypernet", seen,
         lambda space, task, config, **_: config.device)
    _spy(monkeypatch, GraphHyperNetwork, "load", seen, lambda path, device="cpu": device)
    _spy(monkeypatch, nas.prune, "run_prune", seen, lambda job, **_: job.device)
    _spy(monkeypatch, nas.prune, "train_prune_metanet", seen, lambda job, **_: job.device)
    _spy(monkeypatch, nas.evaluate, "run_evaluate", seen, lambda job: job.device)
    commands = _commands(tmp_path, url)
    (tmp_path / "model").mkdir()  # prune says first what --model is (nas.export.check_model_folder)
    commands["hypernet train"][commands["hypernet train"].index("nope")] = "cora"
    cora = (Path(os.environ.get("METANAS_DATA", "")) / "Planetoid" / "Cora" / "raw").is_dir()
    for command in [c for c in COMMANDS if c != "metanet predict"]:  # below: it runs
        if command == "hypernet train" and not cora:  # it loads the task before training
            continue
        assert main([*commands[command], "--device", "cuda"]) == 1, capsys.readouterr().err
        assert seen.pop() == "cuda", command


def test_metanet_predict_moves_the_metanetwork_to_the_device(tmp_path: Path, monkeypatch,
                                                              capsys, store_image_networks) -> None:
    """The metanetwork goes to ``--device`` (the move is recorded, not made: no GPU here), and
    its predictions are those it makes on the CPU."""
    from metanets.gmn import GMN, GMNConfig, save_gmn

    url = f"sqlite:///{tmp_path / 'zoo.db'}"
    store_image_networks(url, "a", runs=3)
    save_gmn(GMN(GMNConfig(hidden=8, layers=1)), tmp_path / "gmn", {"datasets": ["mnist14"]})
    argv = _commands(tmp_path, url)["metanet predict"] + ["--json"]
    assert main([*argv, "--device", "cpu"]) == 0
    on_cpu = capsys.readouterr().out
    moves: list[str] = []

    def recorded(self, device, *args, **kwargs):
        moves.append(str(device))
        return self

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(GMN, "to", recorded)
    assert main([*argv, "--device", "cuda"]) == 0
    assert moves == ["cuda"]
    assert capsys.readouterr().out == on_cpu


def test_build_zoo_refuses_cuda_without_cuda_before_loading_data(monkeypatch, sqlite_url) -> None:
    from nas.zoo import ZooConfig, build_zoo

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        build_zoo(ZooConfig(dataset="no-such-data", size=1, storage=sqlite_url, device="cuda"))


def _moves(monkeypatch, cls: type) -> list[str]:
    """Devices ``cls.to`` is called with from now on (the moves themselves are made)."""
    moves: list[str] = []
    to = cls.to

    def recorded(self, *args, **kwargs):
        moves.append(str(args[0] if args else kwargs.get("device")))
        return to(self, *args, **kwargs)

    monkeypatch.setattr(cls, "to", recorded)
    return moves


def test_fit_gmn_moves_the_metanetwork_and_its_batches_to_the_device(monkeypatch) -> None:
    from torch_geometric.data import Data

    from metanets.accuracy import FitConfig, fit_gmn
    from metanets.gmn import GMN
    from metanets.graphs import to_parameter_graph

    graphs = []
    for seed in range(4):
        torch.manual_seed(seed)
        graphs.append(to_parameter_graph(CNN(CNNArchitecture(widths=(4,)), 1, 10).eval(),
                                         (torch.zeros(2, 1, 12, 12),)))
    y = torch.linspace(0.1, 0.9, 4)
    models, batches = _moves(monkeypatch, GMN), _moves(monkeypatch, Data)  # a Batch is a Data
    device = torch.device("cpu")  # the only device here; what matters is that it is used
    result = fit_gmn(graphs[:3], y[:3], graphs[3:], y[3:],
                     FitConfig(epochs=2, hidden=8, layers=1, batch_size=2), device=device)
    assert models == ["cpu"]
    assert batches and set(batches) == {"cpu"}  # every mini-batch, and the validation batch
    assert result.model.target_mean.device == device


def test_pruning_metanet_fit_and_rewrite_move_to_the_device(monkeypatch, tmp_path: Path) -> None:
    from metanets.pruning.metanet import (
        ImageLoss,
        MetanetTrainConfig,
        PruningMetanet,
        fit_pruning_metanet,
    )

    zoo = []
    for seed in range(2):
        torch.manual_seed(seed)
        zoo.append(CNN(CNNArchitecture(widths=(4, 4)), 1, 3).eval())
    weights = [{k: v.clone() for k, v in m.state_dict().items()} for m in zoo]
    generator = torch.Generator().manual_seed(0)
    loss = ImageLoss(torch.randn(16, 1, 8, 8, generator=generator),
                     torch.randint(0, 3, (16,), generator=generator), 4)
    moves = _moves(monkeypatch, PruningMetanet)
    fit = fit_pruning_metanet(zoo, loss, (torch.zeros(2, 1, 8, 8),),
                              MetanetTrainConfig(steps=2, hidden=8, layers=1), device="cpu")
    assert moves == ["cpu"]
    assert fit.metanet.device == torch.device("cpu")
    for model, before in zip(zoo, weights):
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    from nas.prune import _transform

    fit.metanet.save(tmp_path / "pm")
    _transform(str(tmp_path / "pm"), {"level": "image"}, zoo[0], "cpu")  # metanas prune --method metanet
    assert moves == ["cpu", "cpu"]
