"""Distributed supernet training (DDP, gloo, 2 CPU processes) equals single-process training,
with uniform (SPOS) and with fair (FairNAS) path sampling."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch

from nas.supernet import GNNSupernet, SupernetTrainConfig, load_supernet, path_rng, train_supernet
from search_spaces.gnn import NORMS

EPOCHS = 4
CONVS = ("gcn", "gat", "sage", "linear")


class _Task:
    name, level, num_features, num_classes = "ddp-graph", "node", 5, 3

    def __init__(self) -> None:
        from torch_geometric.data import Data

        generator = torch.Generator().manual_seed(7)
        n = 24
        src = torch.arange(n)
        edge_index = torch.cat([torch.stack([src, (src + 1) % n]), torch.stack([(src + 1) % n, src])], 1)
        train = torch.zeros(n, dtype=torch.bool)
        train[:14] = True
        self.data = Data(
            x=torch.randn(n, 5, generator=generator), edge_index=edge_index,
            y=torch.randint(0, 3, (n,), generator=generator), train_mask=train,
            val_mask=~train, test_mask=~train,
        )


def _seed_without_batchnorm() -> int:
    """A seed whose paths use no BatchNorm: a bias right before BatchNorm has an (exactly) zero
    gradient, which Adam turns into an update of pure rounding noise that differs between one
    process and two; every other parameter is compared tightly."""
    supernet = _supernet()
    for seed in range(1000):
        archs = [supernet.sample(path_rng(seed, step)) for step in range(EPOCHS)]
        if all(layer.norm != "batch" for arch in archs for layer in arch.layers):
            return seed
    raise AssertionError("no seed without BatchNorm paths")


def _config() -> SupernetTrainConfig:
    return SupernetTrainConfig(
        epochs=EPOCHS, seed=_seed_without_batchnorm(), device="cpu", checkpoint_every=EPOCHS,
    )


def _fair_config() -> SupernetTrainConfig:
    return SupernetTrainConfig(epochs=EPOCHS, seed=0, device="cpu", checkpoint_every=EPOCHS, sampling="fair")


def _supernet(split: tuple[str, ...] = ()) -> GNNSupernet:
    torch.manual_seed(0)
    return GNNSupernet(5, 3, "node", max_depth=2, widths=(16,), convs=CONVS, split=split)


def _worker(rank: int, world: int, port: int, out: str, config: SupernetTrainConfig, split: tuple[str, ...]) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        train_supernet(_supernet(split), _Task(), config, out=out)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_single_and_distributed(
    tmp_path: Path, config: SupernetTrainConfig, split: tuple[str, ...] = (),
) -> tuple[GNNSupernet, GNNSupernet]:
    """The supernet trained by one process, and (rank 0's checkpoint) by two gloo processes."""
    import torch.multiprocessing as mp

    single = _supernet(split)
    train_supernet(single, _Task(), config, out=tmp_path / "single")
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path / "ddp"), config, split), nprocs=2, join=True)
    distributed, meta = load_supernet(tmp_path / "ddp")
    assert meta["epoch"] == EPOCHS
    return single, distributed


def _assert_equal_and_trained(
    single: GNNSupernet, distributed: GNNSupernet, split: tuple[str, ...] = (), skip: tuple[str, ...] = (),
) -> None:
    moved = 0
    initial = _supernet(split).state_dict()
    for (name, p), q in zip(single.state_dict().items(), distributed.state_dict().values()):
        if name in skip:
            continue
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6, msg=name)
        moved += int(not torch.equal(p, initial[name]))
    assert moved > 0  # training changed weights, so the comparison is not trivially equal


@pytest.mark.timeout(300)
def test_two_gloo_processes_train_the_same_supernet_as_one(tmp_path: Path) -> None:
    single, distributed = _train_single_and_distributed(tmp_path, _config())
    _assert_equal_and_trained(single, distributed)


def _zero_gradient_before_batchnorm(supernet: GNNSupernet) -> tuple[str, ...]:
    """Entries that Adam fills with rounding noise (see :func:`_seed_without_batchnorm`): the
    biases of the convolution copies that only ever run before BatchNorm (``split=("norm",)``)
    and the running means of BatchNorm, which add those biases up."""
    return tuple(
        name for name in supernet.state_dict()
        if ("-batch." in name and name.endswith("bias")) or name.endswith("running_mean")
    )


@pytest.mark.timeout(300)
def test_two_gloo_processes_train_the_same_fair_supernet_as_one(tmp_path: Path) -> None:
    """Fair sampling runs all of a step's paths (every norm choice among them) before one
    update; both processes must deal the same paths and reduce the sum of their gradients.
    Weights split by norm keep BatchNorm's zero-gradient biases (noise, see
    :func:`_zero_gradient_before_batchnorm`) from the weights that other norms share."""
    split, config = ("norm",), _fair_config()
    supernet = _supernet(split)
    paths = [arch for step in range(EPOCHS) for arch in supernet.fair_paths(path_rng(config.seed, step))]
    assert {layer.norm for arch in paths for layer in arch.layers} == set(NORMS)
    single, distributed = _train_single_and_distributed(tmp_path, config, split)
    skip = _zero_gradient_before_batchnorm(supernet)
    assert len(skip) < len(supernet.state_dict()) // 4  # the rest, BatchNorm's own weights too, is compared
    _assert_equal_and_trained(single, distributed, split, skip)


def _worker_reading_after_return(rank: int, world: int, port: int, out: str) -> None:
    """Rank 0 takes a second to write the final checkpoint; every rank reads it right after
    ``train_supernet`` returns."""
    import time

    import torch.distributed as dist

    import nas.supernet._train as training
    from nas.supernet import read_meta

    save = training.save_checkpoint

    def slow_save(*args, **kwargs):
        time.sleep(1.0)
        save(*args, **kwargs)

    training.save_checkpoint = slow_save
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        config = SupernetTrainConfig(epochs=2, seed=0, device="cpu", checkpoint_every=2)
        train_supernet(_supernet(), _Task(), config, out=out)
        assert read_meta(out)["epoch"] == 2, f"rank {rank} returned before the final checkpoint"
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(300)
def test_every_rank_returns_after_the_final_checkpoint_is_written(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    mp.spawn(_worker_reading_after_return, args=(2, _free_port(), str(tmp_path / "ddp")),
             nprocs=2, join=True)
