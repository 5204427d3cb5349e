"""Shared fixtures: the data root, temporary SQL storages, tiny inline graphs."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


@pytest.fixture(scope="session", autouse=True)
def data_environment(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Point METANAS_DATA at the shared offline datasets (unless set) and METANAS_CACHE at a
    per-session folder, so processed files never land in the read-only shared folder."""
    if not os.environ.get("METANAS_DATA") and SHARED_DATASETS.is_dir():
        os.environ["METANAS_DATA"] = str(SHARED_DATASETS)
    if not os.environ.get("METANAS_CACHE"):
        os.environ["METANAS_CACHE"] = str(tmp_path_factory.mktemp("metanas-cache"))


def _has_dataset(folder: str) -> bool:
    root = Path(os.environ.get("METANAS_DATA", SHARED_DATASETS))
    return (root / folder / "raw").is_dir()


@pytest.fixture
def cora_available() -> None:
    if not _has_dataset("Planetoid/Cora"):
        pytest.skip("Cora raw files not found under METANAS_DATA")


@pytest.fixture
def mnist_available() -> None:
    if not (Path(os.environ.get("METANAS_DATA", SHARED_DATASETS)) / "MNIST" / "raw").is_dir():
        pytest.skip("MNIST raw files not found under METANAS_DATA")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'metanas.db'}"


@pytest.fixture
def postgres_url() -> str:
    """A fresh database on the PostgreSQL server named by METANAS_TEST_POSTGRES_URL.

    Skipped when the variable is unset, except under CI (``CI=true``), where a missing server is
    a failure: CI must not pass by skipping the concurrency tests.
    """
    url = os.environ.get("METANAS_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("CI run without METANAS_TEST_POSTGRES_URL: .ci/run must start PostgreSQL")
        pytest.skip("set METANAS_TEST_POSTGRES_URL to run PostgreSQL tests")
    import uuid

    import sqlalchemy

    name = f"metanas_test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    base = sqlalchemy.engine.make_url(url)
    return base.set(database=name).render_as_string(hide_password=False)


@pytest.fixture
def tiny_graph():
    """A 6-node, 2-component graph with 4 features and 3 classes, with all three masks."""
    from torch_geometric.data import Data

    edge_index = torch.tensor([[0, 1, 1, 2, 3, 4, 4, 5], [1, 0, 2, 1, 4, 3, 5, 4]])
    x = torch.arange(24, dtype=torch.float).view(6, 4) / 24
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    masks = {
        "train_mask": torch.tensor([1, 1, 0, 0, 0, 0], dtype=torch.bool),
        "val_mask": torch.tensor([0, 0, 1, 1, 0, 0], dtype=torch.bool),
        "test_mask": torch.tensor([0, 0, 0, 0, 1, 1], dtype=torch.bool),
    }
    return Data(x=x, edge_index=edge_index, y=y, **masks)


@pytest.fixture
def no_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data root and cache: any attempt to read a dataset fails."""
    root = tmp_path / "no-data"
    root.mkdir()
    monkeypatch.setenv("METANAS_DATA", str(root))
    monkeypatch.setenv("METANAS_CACHE", str(tmp_path / "cache"))
    return root


def _store_image_networks(url: str, study: str = "z", runs: int = 6, arch=None) -> None:  # noqa: ANN001
    """Freshly initialised small image networks (default: a one-block CNN with BatchNorm) as
    trials 0..runs-1 of ``study`` in ``url``'s model store, test accuracy trial / 10: a zoo for
    metanetwork commands without training one."""
    from search_spaces import get_space
    from search_spaces.cnn import CNNArchitecture
    from search_spaces.mlp import MLPArchitecture
    from storage import ModelStore

    arch = arch or CNNArchitecture(widths=(4,), norm="batch")
    space = "mlp" if isinstance(arch, MLPArchitecture) else "cnn"
    store = ModelStore(url)
    for trial in range(runs):
        torch.manual_seed(trial)
        store.save_model(
            study_name=study, trial_number=trial, space=space, arch_hash=arch.arch_hash,
            spec=arch.to_json(), dataset="mnist14", level="image", in_channels=1, out_channels=10,
            num_params=0, flops=None, metrics={"test_acc": trial / 10},
            state_dict=get_space(space).build(arch, 1, 10).state_dict())
    store.engine.dispose()  # the WAL checkpointed into the file: what follows sees it whole


@pytest.fixture
def store_image_networks():  # noqa: ANN201
    """``store_image_networks(url, study="z", runs=6, arch=None)``: see :func:`_store_image_networks`."""
    return _store_image_networks


def _export_image_networks(folder: Path, seeds=(0, 1)) -> list[str]:  # noqa: ANN001
    """``--model-dir`` arguments: an exported, untrained two-block CNN (MNIST-14, 1% of its
    training data) per seed, in ``folder/zoo<seed>``."""
    from nas.export import export_model
    from search_spaces.cnn import CNN, CNNArchitecture

    argv = []
    for seed in seeds:
        torch.manual_seed(seed)
        arch = CNNArchitecture(widths=(4, 4), norm="batch", train_fraction=0.01)
        argv += ["--model-dir", str(export_model(
            folder / f"zoo{seed}", space="cnn", spec=arch.to_dict(), in_channels=1,
            out_channels=10, level="image", state_dict=CNN(arch, 1, 10).state_dict()))]
    return argv


@pytest.fixture
def export_image_networks():  # noqa: ANN201
    """``export_image_networks(folder, seeds=(0, 1))``: see :func:`_export_image_networks`."""
    return _export_image_networks
