from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path

import pytest
import torch

from nas.tasks import (
    DatasetNotFoundError, Task, load_task, resolve_dataset, stratified_split, with_node_split,
)


@pytest.mark.parametrize("spelling", ["Cora", "CORA", "cora"])
def test_names_resolve_case_insensitively(spelling: str) -> None:
    assert resolve_dataset(spelling) == "cora"
    assert resolve_dataset("IMDB_binary") == "imdb-binary"


def test_unknown_dataset_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"could not resolve dataset 'foo' among choices \[.*'cora'"):
        load_task("foo")


def test_task_is_lazy(tmp_path: Path) -> None:
    task = load_task("pubmed", root=tmp_path)  # nothing read yet: no error, no files
    assert task.level == "node" and task.name == "pubmed"
    assert not any(tmp_path.iterdir())


def test_offline_without_data_names_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args, **kwargs):
        raise OSError("Cannot connect to host github.com:443 [Name or service not known]")

    from torch_geometric.io import fs

    monkeypatch.setattr(fs, "cp", offline)
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "Planetoid" / "PubMed")):
        load_task("pubmed", root=tmp_path).data


def test_read_only_root_is_mirrored_to_the_cache(
    cora_available: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = Path(os.environ["METANAS_DATA"]) / "Planetoid" / "Cora" / "raw"
    root = tmp_path / "ro"
    shutil.copytree(source, root / "Planetoid" / "Cora" / "raw")
    os.chmod(root / "Planetoid" / "Cora", stat.S_IRUSR | stat.S_IXUSR)
    monkeypatch.setenv("METANAS_CACHE", str(tmp_path / "cache"))
    try:
        task = load_task("cora", root=root)
        assert task.num_features == 1433 and task.num_classes == 7
        assert not (root / "Planetoid" / "Cora" / "processed").exists()
        assert (tmp_path / "cache" / "mirror" / "Planetoid" / "Cora" / "processed").is_dir()
    finally:
        os.chmod(root / "Planetoid" / "Cora", stat.S_IRWXU)


class _Planted:
    """A pickle that, when loaded, calls ``open(marker, "w")``: a stand-in for running code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def test_a_planted_planetoid_raw_pickle_is_refused_not_run(
    cora_available: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pickle

    raw = tmp_path / "root" / "Planetoid" / "Cora" / "raw"
    shutil.copytree(Path(os.environ["METANAS_DATA"]) / "Planetoid" / "Cora" / "raw", raw)
    marker = tmp_path / "code-ran"
    (raw / "ind.cora.x").write_bytes(pickle.dumps(_Planted(marker), protocol=2))
    monkeypatch.setenv("METANAS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to unpickle (io|builtins)\.open"):
        load_task("cora", root=tmp_path / "root").data
    assert not marker.exists()


def test_cora_public_split(cora_available: None) -> None:
    data = load_task("cora").data
    assert (int(data.train_mask.sum()), int(data.val_mask.sum()), int(data.test_mask.sum())) == (140, 500, 1000)
    assert not (data.train_mask & data.test_mask).any()


def test_graph_split_is_stratified_disjoint_and_seeded() -> None:
    y = torch.tensor([0] * 50 + [1] * 30)
    a, b, c = stratified_split(y, 0, (0.8, 0.1, 0.1)), stratified_split(y, 0, (0.8, 0.1, 0.1)), stratified_split(y, 1, (0.8, 0.1, 0.1))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["train"], c["train"])
    everything = torch.cat([a["train"], a["val"], a["test"]]).sort().values
    assert torch.equal(everything, torch.arange(80))
    assert int((y[a["train"]] == 1).sum()) == 24 and int((y[a["test"]] == 0).sum()) == 5


def test_node_split_without_masks_takes_20_and_30_per_class(tiny_graph) -> None:
    from torch_geometric.data import Data

    y = torch.arange(3).repeat_interleave(60)
    data = with_node_split(Data(x=torch.zeros(180, 2), y=y), seed=0)
    for cls in range(3):
        assert int(data.train_mask[y == cls].sum()) == 20 and int(data.val_mask[y == cls].sum()) == 30
    assert int(data.test_mask.sum()) == 30
    kept = with_node_split(tiny_graph, seed=0)
    assert torch.equal(kept.train_mask, tiny_graph.train_mask)


def test_mutag_graph_task() -> None:
    task = Task("MUTAG")
    assert task.level == "graph" and task.num_classes == 2 and task.num_features == 7
    sizes = {k: len(v) for k, v in task.splits.items()}
    assert sum(sizes.values()) == 188 and sizes["train"] > sizes["val"]
    with pytest.raises(AttributeError, match="graph task"):
        task.data


def test_featureless_graphs_get_degree_features() -> None:
    task = Task("imdb-binary")
    graph = task.dataset[0]
    assert graph.x.shape[1] == task.num_features > 1
    assert torch.equal(graph.x.sum(1), torch.ones(graph.num_nodes))


@pytest.mark.parametrize("planted", ["pre_transform.pt", "data.pt"])
def test_a_planted_processed_file_is_refused_not_run(
    cora_available: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, planted: str,
) -> None:
    # PyG unpickles pre_transform.pt fully, and data.pt too when its safe load fails: a file
    # planted in a writable data root ran its code
    import pickle

    raw = tmp_path / "root" / "Planetoid" / "Cora" / "raw"
    shutil.copytree(Path(os.environ["METANAS_DATA"]) / "Planetoid" / "Cora" / "raw", raw)
    monkeypatch.setenv("METANAS_CACHE", str(tmp_path / "cache"))
    assert load_task("cora", root=tmp_path / "root").data.num_nodes == 2708  # processes it
    processed = raw.parent / "processed"
    marker = tmp_path / "code-ran"
    torch.save(_Planted(marker), processed / planted)
    with pytest.raises(pickle.UnpicklingError, match=re.escape(f"refusing to load {processed / planted}: "
                                                                "it does not load without unpickling code")):
        load_task("cora", root=tmp_path / "root").data
    assert not marker.exists()
    shutil.rmtree(processed)  # as the message says: rebuilt from the raw files
    assert load_task("cora", root=tmp_path / "root").data.num_nodes == 2708


def test_a_dataset_folder_is_processed_by_one_process_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PyG writes processed/*.pt in place: a second loader must wait for the first (it read a
    truncated file, EOFError, when two benchmark jobs started on a fresh cache at once)."""
    import threading

    from nas import tasks

    monkeypatch.setenv("METANAS_CACHE", str(tmp_path / "cache"))
    loaded = threading.Event()

    def load_stub(name, info, family_root):
        loaded.set()
        return name

    monkeypatch.setattr(tasks, "_load_pyg_dataset_unlocked", load_stub)
    results: list[str] = []
    holder = tasks.processing_lock(tmp_path / "data" / "Planetoid" / "Cora")  # another process's
    holder.acquire()
    try:
        loader = threading.Thread(target=lambda: results.append(
            tasks._load_pyg_dataset("cora", tmp_path / "data")))
        loader.start()
        assert not loaded.wait(timeout=1.0)  # waits while the folder is locked
    finally:
        holder.release()
    loader.join(timeout=10)
    assert results == ["cora"]
    # another dataset's folder has its own lock
    holder.acquire()
    try:
        assert tasks._load_pyg_dataset("citeseer", tmp_path / "data") == "citeseer"
    finally:
        holder.release()


def test_a_failed_download_leaves_no_empty_folders(tmp_path, monkeypatch) -> None:
    """PyG makes the dataset's folders before it tries to download; offline, a mistyped
    --data-root was left behind as a tree of empty folders."""
    import nas.tasks as tasks

    def offline(name, info, family_root):
        (family_root / info.pyg_name / "raw").mkdir(parents=True)  # what PyG does first
        raise tasks.DatasetNotFoundError(f"dataset {name!r} could not be downloaded")

    monkeypatch.setattr(tasks, "_load_pyg_dataset_unlocked", offline)
    monkeypatch.setenv("METANAS_CACHE", str(tmp_path / "cache"))
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "notes.txt").write_text("mine")
    for root in (tmp_path / "new" / "deeper", tmp_path / "kept"):
        with pytest.raises(tasks.DatasetNotFoundError):
            tasks.load_task("cora", root=root).num_features
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["notes.txt"]  # only what was there
