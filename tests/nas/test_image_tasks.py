"""Image tasks: IDX reading, MNIST splits, the image training loop and its checkpoints."""
from __future__ import annotations

import gzip
import types
from pathlib import Path

import pytest
import torch

from nas.tasks import DatasetNotFoundError, ImageDataset, load_task, read_idx
from nas.train import TrainConfig, train_model


def _write_idx(path: Path, array: torch.Tensor) -> None:
    header = bytes([0, 0, 0x08, array.dim()]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.to(torch.uint8).numpy().tobytes())


def test_read_idx_round_trip_and_rejects_bad_files(tmp_path: Path) -> None:
    images = torch.randint(0, 256, (3, 4, 5), dtype=torch.uint8)
    _write_idx(tmp_path / "x.gz", images)
    assert torch.equal(read_idx(tmp_path / "x.gz"), images)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an unsigned-byte IDX"):
        read_idx(tmp_path / "bad")


def test_missing_mnist_names_the_folder(tmp_path: Path) -> None:
    task = load_task("MNIST", root=tmp_path)
    assert task.level == "image"
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "MNIST" / "raw")):
        task.dataset


def _image_task(n: int = 64) -> types.SimpleNamespace:
    generator = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (n,), generator=generator)
    x = torch.randn(n, 1, 6, 6, generator=generator) + y.view(-1, 1, 1, 1).float()  # learnable
    data = ImageDataset(x={"train": x, "val": x[:16], "test": x[16:32]},
                        y={"train": y, "val": y[:16], "test": y[16:32]}, num_classes=2)
    return types.SimpleNamespace(level="image", dataset=data, num_features=1, num_classes=2)


def test_image_loop_records_checkpoints_and_uses_a_training_fraction() -> None:
    from search_spaces.cnn import CNNArchitecture, CNNSpace

    torch.manual_seed(0)
    model = CNNSpace().build(CNNArchitecture(widths=(4,)), 1, 2)
    config = TrainConfig(lr=1e-2, epochs=4, patience=0, batch_size=8, train_fraction=0.5,
                         checkpoint_epochs=(1, 4))
    result = train_model(model, _image_task(), config)
    assert sorted(result.checkpoints) == [1, 4]
    metrics, state = result.checkpoints[4]
    assert set(metrics) == {f"{s}_{m}" for s in ("train", "val", "test") for m in ("acc", "loss")}
    assert set(state) == set(model.state_dict())
    assert not torch.equal(result.checkpoints[1][1]["blocks.0.conv.weight"], state["blocks.0.conv.weight"])
    assert result.history[-1] == (4, metrics["val_acc"])
    with pytest.raises(ValueError, match="train_fraction"):
        train_model(model, _image_task(), TrainConfig(epochs=1, train_fraction=0.0))


def test_mnist14_splits(mnist_available: None) -> None:  # noqa: ARG001
    data = load_task("mnist-14").dataset
    assert {k: int(v.numel()) for k, v in data.y.items()} == {"train": 50000, "val": 1000, "test": 10000}
    assert data.x["train"].shape[1:] == (1, 14, 14) and data.num_classes == 10
