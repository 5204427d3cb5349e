from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path

import numpy as np
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


def test_load_task_takes_a_known_fingerprint_and_reads_no_data_for_it(tiny_graph, tmp_path: Path) -> None:
    """A search's workers get the fingerprint their parent computed: they read and hashed every
    graph again for it (tests/nas/test_workers.py pins that they no longer do)."""
    from nas.tasks import DataTask

    task = load_task("pyg:GNNBenchmarkDataset:MNIST", root=tmp_path, fingerprint="ab" * 32)
    assert task.fingerprint == "ab" * 32
    assert not any(tmp_path.iterdir())  # nothing read: the root holds no data at all
    given = DataTask(tiny_graph, "mine")
    assert load_task(given, fingerprint="ab" * 32) is given  # a task given keeps its own
    assert given.fingerprint != "ab" * 32


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


def test_a_damaged_processed_file_is_refused_as_damaged_not_as_code(
    cora_available: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a truncated or empty file (a killed write, a broken download) was refused as one that
    # "does not load without unpickling code": a warning about planted code where there is none
    import pickle

    raw = tmp_path / "root" / "Planetoid" / "Cora" / "raw"
    shutil.copytree(Path(os.environ["METANAS_DATA"]) / "Planetoid" / "Cora" / "raw", raw)
    monkeypatch.setenv("METANAS_CACHE", str(tmp_path / "cache"))
    assert load_task("cora", root=tmp_path / "root").data.num_nodes == 2708  # processes it
    data = raw.parent / "processed" / "data.pt"
    data.write_bytes(data.read_bytes()[:100])
    with pytest.raises(pickle.UnpicklingError) as refused:
        load_task("cora", root=tmp_path / "root").data
    message = str(refused.value)
    assert message.startswith(f"refusing to load {data}: it is damaged or not a file torch.save wrote (")
    assert "unpickling code" not in message
    assert message.endswith(f"Delete {data.parent} to rebuild it from the raw files.")


def test_a_dataset_folder_is_processed_by_one_process_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PyG writes processed/*.pt in place: a second loader must wait for the first (it read a
    truncated file, EOFError, when two benchmark jobs started on a fresh cache at once)."""
    import threading

    from nas import tasks

    monkeypatch.setenv("METANAS_CACHE", str(tmp_path / "cache"))
    loaded = threading.Event()

    def load_stub(name, info, folders):
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

    def offline(name, info, folders):
        (folders.family_root / info.pyg_name / "raw").mkdir(parents=True)  # what PyG does first
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


@pytest.mark.parametrize("name", ["cornell", "airports-usa", "photo", "cs", "actor", "pubmed", "dd"])
def test_offline_error_names_the_folder_pyg_reads_and_leaves_none(tmp_path, monkeypatch, name) -> None:
    """WebKB and Airports keep their raw files in lowercase folders (WebKB/cornell/raw): the
    error named WebKB/Cornell, so files put there were never found, and the empty WebKB/cornell
    tree PyG made before its download was left in the data root."""
    import torch_geometric.datasets as pyg_datasets

    from nas.tasks import DATASETS

    def offline(self) -> None:
        raise OSError("urlopen error: Name or service not known")

    for cls in ("WebKB", "Airports", "Amazon", "Coauthor", "Actor", "Planetoid", "TUDataset"):
        monkeypatch.setattr(getattr(pyg_datasets, cls), "download", offline)
    monkeypatch.setenv("METANAS_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    root.mkdir()
    with pytest.raises(DatasetNotFoundError) as error:
        load_task(name, root=root).num_features
    info = DATASETS[name]
    folder = root / info.folder / info.pyg_name
    assert f"is not in {folder} " in str(error.value)
    assert not any(root.iterdir())
    if info.family in ("webkb", "airports"):
        assert info.pyg_name == info.pyg_name.lower()  # the folder PyG reads


def _labelled_graph(sizes: list[int]):
    """A path graph with ``sizes[c]`` nodes of class c and 3 features."""
    from torch_geometric.data import Data

    y = torch.cat([torch.full((size,), cls) for cls, size in enumerate(sizes)])
    n = y.numel()
    edge_index = torch.stack([torch.arange(n - 1), torch.arange(1, n)])
    return Data(x=torch.rand(n, 3, generator=torch.Generator().manual_seed(0)), edge_index=edge_index, y=y)


def test_node_split_divides_small_classes_60_20_20_and_keeps_20_30_for_large_ones() -> None:
    """A class of at most 50 nodes had 20 training nodes and the rest validation, and no test
    nodes (Airports-Brazil: empty test split, test accuracy NaN in every trial)."""
    data = with_node_split(_labelled_graph([60, 30, 5]), seed=0)
    y = data.y
    counts = [[int(data[f"{split}_mask"][y == cls].sum()) for split in ("train", "val", "test")]
              for cls in range(3)]
    assert counts == [[20, 30, 10], [18, 6, 6], [3, 1, 1]]
    assert not (data.train_mask & data.val_mask).any() and not (data.val_mask & data.test_mask).any()


def test_node_split_refuses_partial_or_non_boolean_masks() -> None:
    """KarateClub ships a train_mask only: with_node_split failed with KeyError 'val_mask'. An
    index tensor named like a mask selected other nodes (out[tensor([0, 5])] picks rows)."""
    graph = _labelled_graph([4, 4])
    graph.train_mask = torch.zeros(8, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"has \['train_mask'\] but not \['val_mask', 'test_mask'\]"):
        with_node_split(graph, seed=0)
    graph.val_mask, graph.test_mask = torch.tensor([0, 5]), torch.ones(8, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"val_mask must be a boolean tensor of shape \(8,\).*int64"):
        with_node_split(graph, seed=0)


def test_data_task_node_keeps_its_masks_and_leaves_the_callers_graph_alone(tiny_graph) -> None:
    from nas.tasks import DataTask

    task = DataTask(tiny_graph, "tiny")
    assert task.level == "node" and task.num_features == 4 and task.num_classes == 3
    assert torch.equal(task.data.train_mask, tiny_graph.train_mask)
    bare = _labelled_graph([10, 10])
    task = DataTask(bare, "bare", seed=1)
    assert [int(task.data[f"{s}_mask"].sum()) for s in ("train", "val", "test")] == [12, 4, 4]
    assert "train_mask" not in bare  # the split is the task's, not written into the caller's graph
    assert load_task(task) is task and resolve_dataset(task) == "bare"


def test_data_task_graph_level_from_a_list_with_degree_features_for_featureless_graphs() -> None:
    from torch_geometric.data import Data

    from nas.tasks import DataTask

    ring = torch.tensor([[0, 1, 2, 1, 2, 0], [1, 2, 0, 0, 1, 2]])
    graphs = [Data(edge_index=ring, num_nodes=3, y=torch.tensor([i % 2])) for i in range(20)]
    task = DataTask(graphs, "rings")
    assert task.level == "graph" and task.num_classes == 2
    assert {s: len(idx) for s, idx in task.splits.items()} == {"train": 16, "val": 2, "test": 2}
    assert task.num_features == 3  # one-hot degree 0..2
    assert graphs[0].x is None  # the caller's graphs untouched


def test_a_data_task_takes_a_given_graph_split_as_it_is_and_refuses_a_bad_one(tiny_graph) -> None:
    """Before: a DataTask had no way to take an official split (splits= was a TypeError); a
    graph task was always re-split 80/10/10 by seed."""
    from torch_geometric.data import Data

    from nas.tasks import DataTask

    graphs = [Data(x=torch.full((2, 1), float(i)), edge_index=torch.tensor([[0], [1]]),
                   y=torch.tensor([i % 2])) for i in range(20)]
    given = {"train": [5, 0, 1, 2, 3, 4], "val": torch.tensor([6, 7]), "test": [8, 9, 10]}  # 11.. in none
    task = DataTask(graphs, "given", splits=given, seed=4)
    assert {s: idx.tolist() for s, idx in task.splits.items()} == {
        "train": [0, 1, 2, 3, 4, 5], "val": [6, 7], "test": [8, 9, 10]}
    assert task.fingerprint != DataTask(graphs, "given", seed=4).fingerprint
    assert task.fingerprint == DataTask(graphs, "given", splits=given).fingerprint
    bad = [
        ({**given, "test": [8, 9, 7]}, "splits of 'b' share graphs"),
        ({**given, "test": [8, 20]}, r"splits\['test'\] of 'b' holds \[20\], not indices of its 20 graphs"),
        ({**given, "test": [0.5]}, r"splits\['test'\] of 'b' must hold graph indices \(integers\)"),
        ({"train": [0], "valid": [1], "test": [2]}, r"must have the keys \['train', 'val', 'test'\], got \['train', 'valid', 'test'\]"),
        ({**given, "val": []}, r"splits\['val'\] of 'b' is empty"),
    ]
    for splits, said in bad:
        with pytest.raises(ValueError, match=said):
            DataTask(graphs, "b", splits=splits)
    with pytest.raises(ValueError, match="'n' is a node task: give its split as the graph's boolean train_mask"):
        DataTask(tiny_graph, "n", splits=given)


def _twenty_graphs() -> list:
    from torch_geometric.data import Data

    return [Data(x=torch.full((2, 1), float(i)), edge_index=torch.tensor([[0], [1]]),
                 y=torch.tensor([i % 2])) for i in range(20)]


@pytest.mark.parametrize("train", [
    pytest.param(lambda np: np.arange(6)[::-1], id="numpy-reversed"),  # argsort(...)[::-1]
    pytest.param(lambda np: np.arange(6, dtype=np.uint64), id="numpy-uint64"),
    pytest.param(lambda np: torch.arange(6).view(2, 3).t(), id="tensor-transposed"),
    pytest.param(lambda np: set(range(6)), id="set"),
    pytest.param(lambda np: range(6), id="range"),
])
def test_a_given_split_takes_indices_in_any_integer_container(train) -> None:
    """Before: a reversed numpy array, a uint64 one, a transposed tensor or a set failed inside
    torch (negative strides, "lt_cpu" not implemented, view size, "could not infer dtype of
    set"), an error naming neither the split nor what to give."""
    import numpy as np

    from nas.tasks import DataTask

    task = DataTask(_twenty_graphs(), "given", splits={"train": train(np), "val": [6, 7], "test": [8, 9]})
    assert task.splits["train"].tolist() == list(range(6)) and task.splits["train"].dtype == torch.int64


def test_a_given_split_of_no_integers_or_with_a_graph_twice_is_refused_naming_it() -> None:
    """Before: strings and an object array failed inside torch ("too many dimensions 'str'",
    "can't convert np.ndarray of type numpy.object_"); a graph given twice was refused without
    saying which graph, nor where."""
    import numpy as np

    from nas.tasks import DataTask

    given = {"train": [0, 1, 2, 3], "val": [4, 5], "test": [6, 7]}
    for train in (["0", "1"], np.array([0, 1], dtype=object)):
        with pytest.raises(ValueError, match=r"splits\['train'\] of 'b' must hold graph indices \(integers\), got dtype"):
            DataTask(_twenty_graphs(), "b", splits={**given, "train": train})
    with pytest.raises(ValueError, match=r"splits of 'b' share graphs \(or repeat one\): \[5\] in \['val', 'test'\]"):
        DataTask(_twenty_graphs(), "b", splits={**given, "test": [6, 5]})
    with pytest.raises(ValueError, match=r"\[1, 3\] in \['train'\]"):
        DataTask(_twenty_graphs(), "b", splits={**given, "train": [0, 1, 1, 3, 3]})


def test_data_task_refuses_what_it_cannot_search(tiny_graph) -> None:
    from torch_geometric.data import Data

    from nas.tasks import DataTask

    with pytest.raises(ValueError, match="name 'Cora' is metanas's dataset 'cora'"):
        DataTask(tiny_graph, "Cora")
    float_y = Data(x=torch.rand(4, 2), edge_index=torch.zeros(2, 0, dtype=torch.long), y=torch.rand(4))
    with pytest.raises(ValueError, match="integer class labels y, one per node"):
        DataTask(float_y, "regression")
    few = [Data(x=torch.rand(2, 2), edge_index=torch.zeros(2, 0, dtype=torch.long),
                y=torch.tensor([i % 2])) for i in range(8)]
    with pytest.raises(ValueError, match=r"'few' has no graphs in its val split \(train/val/test: 6/0/2\)"):
        DataTask(few, "few")
    with pytest.raises(ValueError, match="has 8 graphs; a node task is one graph"):
        DataTask(few, "few", level="node")
    with pytest.raises(TypeError, match="takes a torch_geometric Data"):
        DataTask(torch.zeros(3), "tensor")


def test_a_search_runs_on_a_data_task_of_pygs_karate_club(sqlite_url: str) -> None:
    """A researcher's own graph, searched through the library: KarateClub (shipped with PyG)
    without its one-node-per-class train_mask gets a seeded split."""
    from torch_geometric.datasets import KarateClub

    from nas.study import SearchConfig, run_search
    from nas.tasks import DataTask

    graph = KarateClub()[0]
    del graph.train_mask
    study = run_search(SearchConfig(DataTask(graph, "karate"), n_trials=1, epochs=2,
                                    storage=sqlite_url, verbose=False))
    assert study.study_name == "karate-gnn-tpe-train"
    assert study.user_attrs["dataset"] == "karate" and study.user_attrs["task_level"] == "node"
    assert study.best_trial.user_attrs["test_acc"] >= 0.0


def _searched_once(data_by_name: dict, sqlite_url: str) -> list:
    """A one-trial search of a DataTask of each named data, each asserted COMPLETE; the tasks."""
    import optuna

    from nas.study import SearchConfig, run_search
    from nas.tasks import DataTask

    tasks = []
    for name, data in data_by_name.items():
        task = DataTask(data, name)
        run_search(SearchConfig(task, n_trials=1, epochs=1, storage=sqlite_url, verbose=False))
        study = optuna.load_study(study_name=f"{name}-gnn-tpe-train", storage=sqlite_url)
        assert [t.state.name for t in study.trials] == ["COMPLETE"], study.trials[0].user_attrs
        tasks.append(task)
    return tasks


#: node features as users hand them over: numpy's float64, float64 mixed with float32, one-hot int64
X_NOT_FLOAT32 = {
    "float64": lambda i, nodes: torch.from_numpy(np.random.default_rng(i).random((nodes, 4))),
    "mixed": lambda i, nodes: torch.rand(nodes, 4, dtype=torch.float64 if i % 2 else torch.float32),
    "int64": lambda i, nodes: torch.nn.functional.one_hot(torch.arange(nodes) % 4, 4),
}


@pytest.mark.parametrize("x_of", X_NOT_FLOAT32.values(), ids=X_NOT_FLOAT32.keys())
def test_a_data_task_of_features_not_float32_is_searched_leaving_the_callers_graphs_alone(
    x_of, sqlite_url: str,
) -> None:
    """Before: a DataTask of graphs with float64 x (torch.from_numpy), or int64 x, was accepted,
    but every trial failed ('expected scalar type Float but found Double', graph and node
    tasks alike; int64: "result type Float can't be cast to the desired output type Long")."""
    from torch_geometric.data import Data

    ring = torch.tensor([[0, 1, 2, 1, 2, 0], [1, 2, 0, 0, 1, 2]])
    graphs = [Data(x=x_of(i, 3), edge_index=ring, y=torch.tensor([i % 2])) for i in range(20)]
    nodes = torch.arange(30)
    graph = Data(x=x_of(1, 30), edge_index=torch.stack([nodes, (nodes + 1) % 30]), y=nodes % 2)
    given = [g.x for g in [*graphs, graph]]
    for task in _searched_once({"rings": graphs, "ring": graph}, sqlite_url):
        assert (task.data if task.level == "node" else task.dataset[0]).x.dtype == torch.float32
    assert all(g.x is x for g, x in zip([*graphs, graph], given))  # the caller's x, its dtype kept


#: integer labels as users hand them over that cross-entropy does not take: collate keeps int32
#: where no graph's y is int64 (int32 with int16: int32)
Y_NOT_INT64 = {
    "int32-with-int16": lambda i: torch.int16 if i == 5 else torch.int32,
    "int8": lambda i: torch.int8,
    "int16-without-x": lambda i: torch.int16,
}


@pytest.mark.parametrize("dtype_of", Y_NOT_INT64.values(), ids=Y_NOT_INT64.keys())
def test_a_data_task_of_integer_labels_not_int64_is_searched_leaving_the_callers_graphs_alone(
    dtype_of, sqlite_url: str,
) -> None:
    """Before: a DataTask of graphs whose y were int32 (graph 5's int16), int16 or int8 was
    accepted, but every trial failed ('expected target dtype to be Long or Byte, but got Int'),
    graph and node tasks alike. Their y are cast to int64 in the task's graphs only."""
    from torch_geometric.data import Data

    from nas.tasks import Float32Features

    featureless = dtype_of(0) == torch.int16
    ring = torch.tensor([[0, 1, 2, 1, 2, 0], [1, 2, 0, 0, 1, 2]])
    graphs = [Data(x=None if featureless else torch.ones(3, 2), edge_index=ring,
                   y=torch.tensor([i % 2], dtype=dtype_of(i))) for i in range(40)]
    nodes = torch.arange(30)
    graph = Data(x=torch.rand(30, 4), edge_index=torch.stack([nodes, (nodes + 1) % 30]),
                 y=(nodes % 2).to(dtype_of(0)))
    given = [g.y for g in [*graphs, graph]]
    for task in _searched_once({"rings": graphs, "ring": graph}, sqlite_url):
        assert (task.data if task.level == "node" else task.dataset[5]).y.dtype == torch.int64
    assert all(g.y is y for g, y in zip([*graphs, graph], given))  # the caller's y, its dtype kept
    assert [g.y.dtype for g in graphs[4:6]] == [dtype_of(4), dtype_of(5)]
    assert Float32Features()(graphs[5]).y.dtype == torch.int64  # a dataset read graph by graph
    assert graphs[5].y.dtype == dtype_of(5)


@pytest.mark.parametrize("strategy", ["nac", "gradient"])
def test_data_bound_strategies_search_a_data_task(strategy: str, tiny_graph, sqlite_url: str) -> None:
    """NAC and the gradient strategy reloaded the task by the study's dataset name: a DataTask's
    search failed with "could not resolve dataset 'tiny'", its first trial left RUNNING."""
    import optuna

    from nas.study import SearchConfig, run_search
    from nas.tasks import DataTask

    study = run_search(SearchConfig(DataTask(tiny_graph, "tiny"), strategy=strategy, n_trials=2,
                                    epochs=2, convs=("gcn", "sage"), storage=sqlite_url, verbose=False))
    stored = optuna.load_study(study_name=f"tiny-gnn-{strategy}-train", storage=sqlite_url)
    assert [t.state.name for t in stored.trials] == ["COMPLETE", "COMPLETE"]
    assert stored.user_attrs["dataset"] == "tiny" and study.best_trial.user_attrs["test_acc"] >= 0.0
    if strategy == "gradient":  # the GDAS result, stored in the study, was fitted on the task
        assert stored.user_attrs["gradient_search"]["supernet"]["in_channels"] == 4


def test_a_spawned_worker_searches_the_data_task_it_was_sent(tiny_graph, sqlite_url: str) -> None:
    """With n_jobs > 1 each worker gets the search's settings pickled, the DataTask included, and
    runs run_worker(config, worker) without a task of its own: NAC failed there too."""
    from multiprocessing.reduction import ForkingPickler

    import optuna

    from nas.study import SearchConfig, run_worker
    from nas.tasks import DataTask

    config = SearchConfig(DataTask(tiny_graph, "tiny"), strategy="nac", n_trials=1, epochs=2,
                          n_jobs=2, convs=("gcn", "sage"), storage=sqlite_url, verbose=False)
    run_worker(ForkingPickler.loads(ForkingPickler.dumps(config)), worker=1)
    study = optuna.load_study(study_name="tiny-gnn-nac-train", storage=sqlite_url)
    assert [t.state.name for t in study.trials] == ["COMPLETE"]


def test_a_data_task_that_cannot_go_to_workers_is_refused_before_its_study(tiny_graph, sqlite_url: str) -> None:
    """A DataTask holding a lambda transform failed on PicklingError when the workers started,
    after its study had been created."""
    from torch_geometric.data import InMemoryDataset

    from nas.study import SearchConfig, run_search, study_exists
    from nas.tasks import DataTask

    dataset = InMemoryDataset(transform=lambda graph: graph)
    dataset._data, dataset.slices = InMemoryDataset.collate([tiny_graph])
    config = SearchConfig(DataTask(dataset, "tiny"), n_trials=2, n_jobs=2, epochs=2,
                          storage=sqlite_url, verbose=False)
    with pytest.raises(ValueError, match=r"n_jobs 2 sends the search's dataset DataTask\('tiny'.*"
                                         r"cannot be pickled \(.*lambda.*search with n_jobs=1"):
        run_search(config)
    assert not study_exists(config)


def test_a_data_task_study_is_not_resumed_with_another_dataset(
    cora_available: None, tiny_graph, sqlite_url: str, capsys: pytest.CaptureFixture[str],
) -> None:
    """A study made on one's own graphs, named by --study in a CLI search of Cora, is refused by
    its dataset name and keeps its trials and stored search."""
    import optuna

    from nas.cli import main
    from nas.study import SearchConfig, run_search
    from nas.tasks import DataTask

    run_search(SearchConfig(DataTask(tiny_graph, "mine"), strategy="gradient", study_name="shared",
                            n_trials=1, epochs=2, convs=("gcn",), storage=sqlite_url, verbose=False))
    assert main(["search", "--dataset", "cora", "--strategy", "gradient", "--study", "shared",
                 "--trials", "2", "--epochs", "2", "--convs", "gcn", "--storage", sqlite_url, "--quiet"]) == 2
    assert "study 'shared' was created with dataset 'mine', not 'cora'" in capsys.readouterr().err
    study = optuna.load_study(study_name="shared", storage=sqlite_url)
    assert len(study.trials) == 1 and "gradient_search" in study.user_attrs


def test_a_data_task_study_is_not_resumed_with_other_graphs_under_the_same_name(tiny_graph, sqlite_url: str) -> None:
    """A DataTask is named by the caller: a study resumed with other labels (or features, masks,
    split seed) under the same name silently added trials measured on other data."""
    import optuna

    from nas.study import SearchConfig, create_or_load_study
    from nas.tasks import DataTask

    def config(study: str) -> SearchConfig:
        return SearchConfig(DataTask(tiny_graph, "mine"), storage=sqlite_url, study_name=study, verbose=False)

    same = DataTask(tiny_graph.clone(), "mine")
    relabelled = tiny_graph.clone()
    relabelled.y = tiny_graph.y.flip(0)
    other = DataTask(relabelled, "mine")
    assert same.fingerprint == config("s").dataset.fingerprint != other.fingerprint
    create_or_load_study(config("s"), config("s").dataset)
    with pytest.raises(ValueError, match=rf"study 's' was created with data fingerprint "
                                         rf"{same.fingerprint[:12]}\.\.\., this DataTask 'mine' has "
                                         rf"{other.fingerprint[:12]}\.\.\. .*give it another name or study"):
        create_or_load_study(config("s"), other)
    create_or_load_study(config("s"), same)  # the same graphs resume it
    stored = optuna.load_study(study_name="s", storage=sqlite_url)
    assert stored.user_attrs["data_fingerprint"] == same.fingerprint
    with pytest.MonkeyPatch.context() as before:  # a study made before fingerprints were recorded
        before.setattr(DataTask, "fingerprint", None)
        create_or_load_study(config("old"), DataTask(tiny_graph, "mine"))
    assert "data_fingerprint" not in optuna.load_study(study_name="old", storage=sqlite_url).user_attrs
    create_or_load_study(config("old"), other)  # resumes, and records the data it resumed with
    with pytest.raises(ValueError, match="created with data fingerprint"):
        create_or_load_study(config("old"), same)


def _write_tu_dataset(root: Path, name: str, graphs_per_class: int) -> None:
    """A featureless TUDataset in PyG's raw format: triangles (class 0) and 3-node paths (class 1)."""
    raw = root / "TUDataset" / name / "raw"
    raw.mkdir(parents=True)
    edges, indicator, labels = [], [], []
    for graph in range(2 * graphs_per_class):
        first, label = 3 * graph + 1, graph % 2
        pairs = [(0, 1), (1, 2)] + ([(2, 0)] if label == 0 else [])
        edges += [f"{first + a}, {first + b}" for a, b in pairs] + [f"{first + b}, {first + a}" for a, b in pairs]
        indicator += [str(graph + 1)] * 3
        labels.append(str(label))
    for suffix, lines in (("A", edges), ("graph_indicator", indicator), ("graph_labels", labels)):
        (raw / f"{name}_{suffix}.txt").write_text("\n".join(lines) + "\n")


def test_any_tudataset_is_named_tu_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> None:
    """Only the eleven listed TU datasets could be searched; the rest of the collection (BZR,
    COX2, Mutagenicity, ...) was refused as an unknown name."""
    from nas.cli import main

    monkeypatch.setenv("METANAS_CACHE", str(tmp_path / "cache"))
    _write_tu_dataset(tmp_path / "data", "TOY", graphs_per_class=10)
    task = load_task("TUDataset:TOY", root=tmp_path / "data")
    assert task.name == "tu:TOY" and task.level == "graph" and task.num_classes == 2
    assert task.num_features == 3  # featureless: one-hot degrees 0..2
    assert {s: len(idx) for s, idx in task.splits.items()} == {"train": 16, "val": 2, "test": 2}
    assert resolve_dataset("tu:MUTAG") == resolve_dataset("TUDataset:MUTAG") == "mutag"
    for bad in ("tu:../MUTAG", "tu:", "ogb:arxiv"):
        with pytest.raises(ValueError, match="a prefixed name is tu:NAME or TUDataset:NAME"):
            resolve_dataset(bad)
    assert main(["search", "--dataset", "tu:TOY", "--trials", "1", "--epochs", "1", "--convs", "gcn",
                 "--data-root", str(tmp_path / "data"), "--storage", sqlite_url, "--quiet"]) == 0


def test_the_raw_pt_readers_check_torch_files_gives_are_of_classes_metanas_reads() -> None:
    """check_torch_files' docstring gives pyg: classes whose raw .pt files PyG's reader may
    unpickle: each must be one a pyg: name builds. It gave QM9, which is refused by name
    (regression) before anything is read."""
    import inspect

    from torch_geometric import datasets as pyg_datasets

    from nas.pyg_classes import canonical_pyg_name, pyg_class
    from nas.tasks import check_torch_files

    readers = check_torch_files.__doc__.split("torch_load``:", 1)[1].split(")", 1)[0]
    named = [word for word in dict.fromkeys(re.findall(r"\b[A-Z][A-Za-z0-9_]+\b", readers))
             if word in pyg_datasets.__all__]
    assert named
    for class_name in named:
        takes_name = "name" in inspect.signature(getattr(pyg_datasets, class_name)).parameters
        name = f"pyg:{class_name}" + (":MNIST" if takes_name else "")
        canonical_pyg_name(*pyg_class(name), name)  # refused by name: ValueError
