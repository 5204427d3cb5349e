"""`pyg:CLASS[:NAME]`: any dataset class of torch_geometric.datasets as a --dataset name.

Offline: real classes read raw files the tests write (WikiCS's data.json) or the shared data
root holds (Planetoid/Cora, TUDataset/MUTAG); small fake classes put into
``torch_geometric.datasets`` stand in for the others.
"""
from __future__ import annotations

import json
import os
import os.path as osp
import pickle
import re
import shutil
import stat
import types
from pathlib import Path

import pytest
import torch
from torch_geometric.data import Data, Dataset, InMemoryDataset

from nas.cli import main
from nas.splits import MASKS
from nas.tasks import DatasetNotFoundError, load_task, resolve_dataset


class ToyGraphs(InMemoryDataset):
    """Stands in for a PyG class without a name: graphs from ``<root>/raw/graphs.json``."""

    def __init__(self, root: str, transform=None, pre_transform=None) -> None:
        super().__init__(root, transform, pre_transform)
        self.load(self.processed_paths[0])

    @property
    def raw_file_names(self) -> list[str]:
        return ["graphs.json"]

    @property
    def processed_file_names(self) -> list[str]:
        return ["data.pt"]

    def download(self) -> None:
        raise OSError("urlopen error: Name or service not known")  # offline

    def process(self) -> None:
        graphs = json.loads(Path(self.raw_paths[0]).read_text())
        self.save([Data(**{key: torch.tensor(value) for key, value in graph.items()})
                   for graph in graphs], self.processed_paths[0])


class ToyNodes(ToyGraphs):
    """A class with a name, whose folder it spells lower-case with '_' for '-' (as
    HeterophilousGraphDataset reads Roman-empire from roman_empire)."""

    def __init__(self, root: str, name: str, transform=None) -> None:
        self.name = name.lower().replace("-", "_")
        super().__init__(root, transform)

    @property
    def raw_dir(self) -> str:
        return osp.join(self.root, self.name, "raw")

    @property
    def processed_dir(self) -> str:
        return osp.join(self.root, self.name, "processed")


class ToySized(ToyGraphs):
    """A class that needs an argument a dataset name cannot give."""

    def __init__(self, root: str, name: str, size: int, transform=None) -> None:
        super().__init__(root, transform)


def _fake_classes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Toy* classes as classes of torch_geometric.datasets."""
    import torch_geometric.datasets as pyg_datasets

    for cls in (ToyGraphs, ToyNodes, ToySized):
        monkeypatch.setattr(pyg_datasets, cls.__name__, cls, raising=False)
    monkeypatch.setattr(pyg_datasets, "__all__", [*pyg_datasets.__all__, "ToyGraphs", "ToyNodes", "ToySized"])


def _node_graph(n: int = 60, splits: int = 3) -> dict:
    """One path graph of two classes, with ``splits`` train/val mask columns and one test mask."""
    def columns(offset: int) -> list[list[bool]]:  # (N, splits): split s shifted by s nodes
        return [[(i + s) % 6 == offset for s in range(splits)] for i in range(n)]

    return {
        "x": [[float(i % 4 == k) for k in range(4)] for i in range(n)],
        "edge_index": [list(range(n - 1)) + list(range(1, n)), list(range(1, n)) + list(range(n - 1))],
        "y": [i % 2 for i in range(n)],
        "train_mask": columns(0), "val_mask": columns(1),
        "test_mask": [i % 6 >= 2 for i in range(n)],  # (N,)
    }


def _write(folder: Path, graphs: list[dict]) -> None:
    (folder / "raw").mkdir(parents=True)
    (folder / "raw" / "graphs.json").write_text(json.dumps(graphs))


def _write_wikics(folder: Path, n: int = 40, splits: int = 3) -> None:
    """WikiCS's raw data.json (as its download holds it), of ``n`` nodes and ``splits`` splits."""
    (folder / "raw").mkdir(parents=True)
    (folder / "raw" / "data.json").write_text(json.dumps({
        "features": [[float(i % 3 == k) + 0.1 * (i % 2) for k in range(3)] for i in range(n)],
        "labels": [i % 2 for i in range(n)],
        "links": [[(i + 1) % n, (i + 2) % n] for i in range(n)],
        "train_masks": [[(i + s) % 4 == 0 for i in range(n)] for s in range(splits)],
        "val_masks": [[(i + s) % 4 == 1 for i in range(n)] for s in range(splits)],
        "stopping_masks": [[(i + s) % 4 == 1 for i in range(n)] for s in range(splits)],
        "test_mask": [i % 4 >= 2 for i in range(n)],
    }))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("METANAS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_pyg_name_of_a_family_metanas_loads_is_that_dataset(cache: Path) -> None:
    """pyg:Planetoid:Cora is cora (one study name, and Planetoid's raw pickles are read by the
    restricted unpickler), as tu:MUTAG is mutag."""
    assert resolve_dataset("pyg:Planetoid:Cora") == resolve_dataset("PyG:planetoid:cora") == "cora"
    assert resolve_dataset("pyg:TUDataset:MUTAG") == "mutag"
    assert resolve_dataset("pyg:TUDataset:BZR") == "tu:BZR"
    assert resolve_dataset("pyg:Amazon:computers") == "computers"
    assert resolve_dataset("pyg:Actor") == "actor"
    with pytest.raises(ValueError, match=r"'pyg:Amazon:Books'.*Amazon's datasets as \['computers', 'photo'\]"):
        resolve_dataset("pyg:Amazon:Books")
    if (Path(os.environ["METANAS_DATA"]) / "TUDataset" / "MUTAG" / "raw").is_dir():
        task = load_task("pyg:TUDataset:MUTAG")
        assert (task.name, task.level, task.num_classes, len(task.dataset)) == ("mutag", "graph", 2, 188)


@pytest.mark.parametrize("name, said", [
    ("pyg:Data", "'Data' is not a dataset class of torch_geometric.datasets"),
    ("pyg:os", "'os' is not a dataset class of torch_geometric.datasets"),
    ("pyg:planetoid_x", "'planetoid_x' is not a dataset class"),
    ("pyg:__builtins__", "'__builtins__' is not a dataset class"),
    ("pyg:", "a pyg: name is pyg:CLASS or pyg:CLASS:NAME"),
    ("pyg:os.path", "a pyg: name is pyg:CLASS or pyg:CLASS:NAME"),
    ("pyg:WikiCS:../x", "a pyg: name is pyg:CLASS or pyg:CLASS:NAME"),
    ("pyg:WikiCS:Big", "WikiCS takes no name; write pyg:WikiCS"),
    ("pyg:HeterophilousGraphDataset", "needs a name; write pyg:HeterophilousGraphDataset:NAME"),
    ("pyg:KarateClub", "KarateClub reads no data root"),
])
def test_a_pyg_name_that_is_no_dataset_class_or_misses_its_name_is_refused(name, said, capsys, sqlite_url) -> None:
    with pytest.raises(ValueError, match=f"dataset '{name}'"):
        resolve_dataset(name)
    assert main(["search", "--dataset", name, "--storage", sqlite_url, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err


def test_a_class_that_needs_other_arguments_is_refused_by_its_signature(monkeypatch) -> None:
    _fake_classes(monkeypatch)
    with pytest.raises(ValueError, match=r"'pyg:ToySized:a': ToySized needs arguments \['size'\] "
                                         r"besides root and name.*DataTask"):
        resolve_dataset("pyg:ToySized:a")


def test_a_graph_of_several_split_columns_uses_column_seed_mod_k(cache, monkeypatch, tmp_path) -> None:
    """Several train/val splits as (N, k) masks, as WikiCS ships 20: column ``seed % k``, as for
    WebKB; a 1-D test mask as it is. The folder is the class's own spelling of the name."""
    _fake_classes(monkeypatch)
    graph = _node_graph(splits=3)
    _write(tmp_path / "data" / "ToyNodes" / "toy_set", [graph])
    for seed in (0, 1, 4):
        task = load_task("pyg:ToyNodes:Toy-Set", root=tmp_path / "data", seed=seed)
        assert (task.name, task.level, task.num_classes, task.num_features) == ("pyg:ToyNodes:Toy-Set", "node", 2, 4)
        column = seed % 3
        assert task.data.train_mask.tolist() == [row[column] for row in graph["train_mask"]]
        assert task.data.val_mask.tolist() == [row[column] for row in graph["val_mask"]]
        assert task.data.test_mask.tolist() == graph["test_mask"]


def test_pyg_graphs_without_masks_are_split_as_a_datatasks_are(cache, monkeypatch, tmp_path) -> None:
    """One graph without masks: the seeded per-class node split; several: a graph task with the
    stratified 80/10/10 split; labels that are not classes are refused by name."""
    from nas.tasks import DataTask

    _fake_classes(monkeypatch)
    node = {key: value for key, value in _node_graph().items() if not key.endswith("_mask")}
    _write(tmp_path / "nodes" / "ToyGraphs", [node])
    task = load_task("pyg:ToyGraphs", root=tmp_path / "nodes")
    mine = DataTask(task.dataset, "mine")
    assert task.level == mine.level == "node"
    assert torch.equal(task.data.train_mask, mine.data.train_mask)
    graphs = [{"x": [[1.0], [0.0], [1.0]], "edge_index": [[0, 1], [1, 2]], "y": [i % 2]} for i in range(20)]
    _write(tmp_path / "graphs" / "ToyGraphs", graphs)
    task = load_task("pyg:ToyGraphs", root=tmp_path / "graphs")
    assert task.level == "graph" and {s: len(i) for s, i in task.splits.items()} == {"train": 16, "val": 2, "test": 2}
    _write(tmp_path / "float" / "ToyGraphs", [{**graph, "y": [0.5]} for graph in graphs])
    with pytest.raises(ValueError, match=r"'pyg:ToyGraphs': a graph task needs integer class labels"):
        load_task("pyg:ToyGraphs", root=tmp_path / "float").level


def test_a_read_only_root_is_mirrored_and_planted_processed_files_refused(cache, monkeypatch, tmp_path) -> None:
    """The class's folder (toy_set for Toy-Set) is found in a read-only root, copied to the
    cache and processed there; a processed file there that needs unpickling is refused."""
    _fake_classes(monkeypatch)
    folder = tmp_path / "ro" / "ToyNodes" / "toy_set"
    _write(folder, [_node_graph()])
    os.chmod(folder, stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert load_task("pyg:ToyNodes:Toy-Set", root=tmp_path / "ro").num_features == 4
        assert not (folder / "processed").exists()
        processed = cache / "mirror" / "ToyNodes" / "toy_set" / "processed"
        assert (processed / "data.pt").is_file()
        with (processed / "pre_transform.pt").open("wb") as handle:
            pickle.dump(shutil.rmtree, handle)  # would run code if fully unpickled
        with pytest.raises(pickle.UnpicklingError, match="pre_transform.pt"):
            load_task("pyg:ToyNodes:Toy-Set", root=tmp_path / "ro").num_features
    finally:
        os.chmod(folder, stat.S_IRWXU)


def test_two_read_only_roots_of_one_name_each_give_their_own_data(cache, monkeypatch, tmp_path) -> None:
    """Before: every read-only root shared cache/mirror/<Class>/<name>, copied once, so a second
    read-only root holding other raw files under the same name loaded the first root's data. A
    mirror records the raw folder it was copied from; another root's is mirrored apart."""
    _fake_classes(monkeypatch)
    folders = {features: tmp_path / f"ro{features}" / "ToyNodes" / "toy_set" for features in (4, 6)}
    for features, folder in folders.items():
        graph = _node_graph()
        _write(folder, [{**graph, "x": [[1.0] * features for _ in graph["x"]]}])
        os.chmod(folder, stat.S_IRUSR | stat.S_IXUSR)
    try:
        for _ in range(2):  # the mirrors, once made, are each reused for their own root
            for features, folder in folders.items():
                assert load_task("pyg:ToyNodes:Toy-Set", root=folder.parent.parent).num_features == features
        first = cache / "mirror" / "ToyNodes" / "toy_set"  # the first root's, where it always was
        assert (first / "SOURCE").read_text() == str((folders[4] / "raw").resolve())
    finally:
        for folder in folders.values():
            os.chmod(folder, stat.S_IRWXU)


def test_a_mirror_made_before_mirrors_recorded_their_source_is_reused_in_place(
    cache, monkeypatch, tmp_path
) -> None:
    """A mirror with no SOURCE (made before mirrors recorded one) is reused where it is, not
    processed again, and records the root reusing it."""
    _fake_classes(monkeypatch)
    folder = tmp_path / "ro" / "ToyNodes" / "toy_set"
    _write(folder, [_node_graph()])
    os.chmod(folder, stat.S_IRUSR | stat.S_IXUSR)
    try:
        load_task("pyg:ToyNodes:Toy-Set", root=tmp_path / "ro").num_features
        mirror = cache / "mirror" / "ToyNodes" / "toy_set"
        (mirror / "SOURCE").unlink()
        processed = (mirror / "processed" / "data.pt").stat().st_mtime_ns
        assert load_task("pyg:ToyNodes:Toy-Set", root=tmp_path / "ro").num_features == 4
        assert (mirror / "processed" / "data.pt").stat().st_mtime_ns == processed
        assert (mirror / "SOURCE").read_text() == str((folder / "raw").resolve())
        assert not (cache / "mirror" / "by-source").exists()
    finally:
        os.chmod(folder, stat.S_IRWXU)


def test_a_missing_pyg_dataset_offline_names_the_folder_and_leaves_none(cache, monkeypatch, tmp_path) -> None:
    import torch_geometric.datasets as pyg_datasets

    def offline(self) -> None:
        raise OSError("urlopen error: Name or service not known")

    monkeypatch.setattr(pyg_datasets.WikiCS, "download", offline)
    (tmp_path / "data").mkdir()
    with pytest.raises(DatasetNotFoundError, match=f"is not in {tmp_path / 'data' / 'WikiCS'} .*"
                                                   f"a folder that holds WikiCS/raw"):
        load_task("pyg:WikiCS", root=tmp_path / "data").num_features
    assert not any((tmp_path / "data").iterdir())


def _without_medshapenet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing the MedShapeNet package fails (ModuleNotFoundError), installed or not."""
    import sys

    monkeypatch.setitem(sys.modules, "MedShapeNet", None)


def test_medshapenet_without_its_package_is_refused_naming_it(monkeypatch, capsys, cache, sqlite_url, tmp_path) -> None:
    """Before 8343477: 'metanas search --dataset pyg:MedShapeNet --trials 1' on an empty data
    root failed with a bare "error: No module named 'MedShapeNet'" (exit 1), raised by its
    process(). Now refused naming the package to install (exit 2), and nothing is made in the
    root; the name itself is valid (its processed files load without the package)."""
    _without_medshapenet(monkeypatch)
    said = "pip install MedShapeNet"
    assert resolve_dataset("pyg:MedShapeNet") == "pyg:MedShapeNet"
    (tmp_path / "data").mkdir()
    assert main(["search", "--dataset", "pyg:MedShapeNet", "--trials", "1", "--data-root",
                 str(tmp_path / "data"), "--storage", sqlite_url, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert said in err and "dataset 'pyg:MedShapeNet': " in err and "Traceback" not in err
    assert not any((tmp_path / "data").iterdir())


def test_medshapenet_processed_before_is_searched_without_its_package(monkeypatch, cache, tmp_path) -> None:
    """Before: pyg:MedShapeNet was refused as it was named when the MedShapeNet package was not
    installed ('... which is not installed (metanas does not install it): pip install
    MedShapeNet') though its processed files were there: PyG imports the package only in
    process(), which does not run on processed files, so they load without it."""
    _without_medshapenet(monkeypatch)
    faces = torch.tensor([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]]).t()
    meshes = [Data(pos=torch.rand(4, 3, generator=torch.Generator().manual_seed(i)), face=faces,
                   y=torch.tensor([i % 2])) for i in range(20)]
    processed = tmp_path / "data" / "MedShapeNet" / "processed"
    processed.mkdir(parents=True)
    InMemoryDataset.save(meshes, str(processed / "dataset.pt"))
    task = load_task("pyg:MedShapeNet", root=tmp_path / "data")
    assert len(task.dataset) == 20 and task.num_features == 3 and task.dataset[0].num_edges > 0


class ToyUnprocessable(InMemoryDataset):
    """Stands in for a class whose process() fails (MedShapeNet's imports a package not
    installed); it downloads nothing, as MedShapeNet, whose process() downloads."""

    def __init__(self, root: str, transform=None) -> None:
        super().__init__(root, transform)
        self.load(self.processed_paths[0])

    @property
    def raw_file_names(self) -> list[str]:
        return ["graphs.json"]

    @property
    def processed_file_names(self) -> list[str]:
        return ["data.pt"]

    def process(self) -> None:
        raise ModuleNotFoundError("No module named 'ToyPackage'")


@pytest.mark.parametrize("raw", [False, True])
def test_a_class_whose_processing_fails_leaves_no_empty_folders(raw, cache, monkeypatch, tmp_path) -> None:
    """Before: PyG made <root>/<Class>/processed before process() failed, and it was left there
    empty (only a failed download's folders were removed). The raw files stay."""
    import torch_geometric.datasets as pyg_datasets

    monkeypatch.setattr(pyg_datasets, "ToyUnprocessable", ToyUnprocessable, raising=False)
    monkeypatch.setattr(pyg_datasets, "__all__", [*pyg_datasets.__all__, "ToyUnprocessable"])
    root = tmp_path / "data"
    root.mkdir()
    if raw:
        _write(root / "ToyUnprocessable", [])
    before = sorted(root.rglob("*"))
    with pytest.raises(ModuleNotFoundError, match="ToyPackage"):
        load_task("pyg:ToyUnprocessable", root=root).num_features
    assert sorted(root.rglob("*")) == before


def test_wikics_is_loaded_as_before_without_pygs_warning_of_its_default(cache, recwarn, tmp_path) -> None:
    """Before: loading pyg:WikiCS printed PyG's UserWarning 'The WikiCS dataset now returns an
    undirected graph by default. Please explicitly specify 'is_undirected=False' ...', about an
    argument metanas chose for the user. Its data is the undirected graph PyG's default loads,
    as before (the fingerprint computed before the change)."""
    from torch_geometric.datasets import WikiCS

    from nas.tasks import data_fingerprint

    _write_wikics(tmp_path / "data" / "WikiCS")
    task = load_task("pyg:WikiCS", root=tmp_path / "data")
    assert task.data.num_edges == 160  # 40 nodes' 80 links, both ways
    assert not [str(w.message) for w in recwarn if "WikiCS dataset now returns" in str(w.message)]
    assert data_fingerprint(task) == "8ff183a8c65810a25cfadbb8e865145fad1d08a75ac61350718f1c1ce5e64922"
    _write_wikics(tmp_path / "default")
    with pytest.warns(UserWarning, match="WikiCS dataset now returns an undirected graph by default"):
        default = WikiCS(str(tmp_path / "default"))[0]
    assert torch.equal(task.data.edge_index, default.edge_index)


def test_a_name_the_class_refuses_is_bad_input(cache, tmp_path, capsys, sqlite_url) -> None:
    """HeterophilousGraphDataset asserts its name: an AssertionError traceback, now exit 2."""
    argv = ["search", "--dataset", "pyg:HeterophilousGraphDataset:Foo", "--trials", "1",
            "--data-root", str(tmp_path), "--storage", sqlite_url, "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "PyG's HeterophilousGraphDataset refused the name 'Foo'" in err and "Traceback" not in err


def test_cli_search_on_pyg_planetoid_cora(cora_available, capsys, sqlite_url) -> None:
    args = ["--storage", sqlite_url, "--study", "p"]
    assert main(["search", "--dataset", "pyg:Planetoid:Cora", "--trials", "2", "--epochs", "1",
                 "--convs", "gcn", "--strategy", "random", "--quiet", *args]) == 0
    capsys.readouterr()
    assert main(["studies", "--json", "--storage", sqlite_url]) == 0
    assert json.loads(capsys.readouterr().out)[0]["dataset"] == "cora"
    assert main(["trials", "--json", *args]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2


def test_cli_search_on_wikics_with_workers_resume_export_and_report(cache, capsys, sqlite_url, tmp_path) -> None:
    """Spawned workers reload pyg:WikiCS by name from --data-root; the search resumes, and
    export and report read the study."""
    _write_wikics(tmp_path / "data" / "WikiCS")
    args = ["--storage", sqlite_url, "--study", "w"]
    search = ["search", "--dataset", "pyg:wikics", "--epochs", "1", "--convs", "gcn", "--strategy",
              "random", "--data-root", str(tmp_path / "data"), "--quiet", *args]
    assert main([*search, "--trials", "2", "--n-jobs", "2"]) == 0
    assert main([*search, "--trials", "3"]) == 0  # resumed: one more trial
    capsys.readouterr()
    assert main(["trials", "--json", *args]) == 0
    trials = json.loads(capsys.readouterr().out)
    assert len(trials) == 3 and all(t["state"] == "COMPLETE" for t in trials)
    assert main(["studies", "--json", "--storage", sqlite_url]) == 0
    assert json.loads(capsys.readouterr().out)[0]["dataset"] == "pyg:WikiCS"
    assert main(["export", "--out", str(tmp_path / "exp"), *args]) == 0
    assert (tmp_path / "exp" / "model.safetensors").is_file()
    assert main(["report", "--out", str(tmp_path / "rep"), *args]) == 0
    task = load_task("pyg:WikiCS", root=tmp_path / "data", seed=1)
    assert task.data.train_mask.tolist() == [(i + 1) % 4 == 0 for i in range(40)]  # split 1 of 3


class _RunsCode:
    """Unpickled in full, it writes ``marker``: what a planted processed file could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.write_text, (self.marker, "code ran")


def _plant(processed: Path, marker: Path) -> None:
    processed.mkdir(parents=True, exist_ok=True)
    with (processed / "pre_transform.pt").open("wb") as handle:
        pickle.dump(_RunsCode(marker), handle)


@pytest.mark.parametrize("name, processed", [
    ("pyg:CoraFull", "CoraFull/cora/processed"),   # a class that names its own folder
    ("pyg:ModelNet:10", "ModelNet/processed"),     # processed beside NAME's folder, not in it
])
def test_processed_files_where_the_class_keeps_them_are_refused(name, processed, cache, tmp_path) -> None:
    """Before: only <Class>/processed or <Class>/<NAME>/processed was checked, and PyG unpickled
    the planted pre_transform.pt of CoraFull (in cora/) or ModelNet:10 (in ModelNet/) in full."""
    root, marker = tmp_path / "data", tmp_path / "ran"
    (root / "CoraFull" / "cora" / "raw").mkdir(parents=True)
    (root / "CoraFull" / "cora" / "raw" / "cora.npz").write_bytes(b"")  # as if downloaded
    for category in ("bathtub", "bed", "chair", "desk", "dresser", "monitor", "night_stand",
                     "sofa", "table", "toilet"):
        (root / "ModelNet" / "raw" / category).mkdir(parents=True)
    _plant(root / processed, marker)
    with pytest.raises(pickle.UnpicklingError, match=f"refusing to load {root / processed}/pre_transform.pt"):
        load_task(name, root=root).num_features
    assert not marker.exists()


#: ModelNet10's categories, the raw folders PyG checks for before it downloads (either name)
_MODELNET10 = ("bathtub", "bed", "chair", "desk", "dresser", "monitor", "night_stand", "sofa",
               "table", "toilet")
#: a tetrahedron in OFF, the mesh format of ModelNet's raw files
_TETRAHEDRON = "OFF\n4 4 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 1 2\n3 0 1 3\n3 0 2 3\n3 1 2 3\n"


def _write_modelnet(raw: Path, categories: int, sizes: tuple[int, int] = (1, 1)) -> None:
    """A ModelNet raw folder as its download holds it: a folder per category (ModelNet10's ten,
    then made-up ones), each with train/ and test/ meshes <category>_<k>.off (``sizes``: how
    many of each; mesh k is a tetrahedron of size k, its corner (0, 0, 0) moved to (c, 0, 0)
    for category c, so that no two meshes are the same)."""
    names = [*_MODELNET10, *(f"extra{i:02d}" for i in range(categories - len(_MODELNET10)))]
    for number, category in enumerate(names):
        for split, size in zip(("train", "test"), sizes):
            (raw / category / split).mkdir(parents=True)
            for k in range(1, size + 1):
                mesh = _TETRAHEDRON.replace("1 0 0\n0 1 0\n0 0 1", f"{k} 0 0\n0 {k} 0\n0 0 {k}")
                (raw / category / split / f"{category}_{k:04d}.off").write_text(
                    mesh.replace("\n0 0 0\n", f"\n{number} 0 0\n", 1))


def _modelnet_classes(name: str, root: Path) -> int:
    """The classes of the graphs ``pyg:ModelNet:NAME`` loads from ``root`` (its meshes have no
    edges, which a Task refuses: the loaded dataset itself is read)."""
    from nas.tasks import _load_pyg_dataset, resolve_dataset

    return int(_load_pyg_dataset(resolve_dataset(f"pyg:ModelNet:{name}"), root).y.max()) + 1


@pytest.fixture
def modelnet_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch_geometric.datasets as pyg_datasets

    monkeypatch.setattr(pyg_datasets.ModelNet, "download", ToyGraphs.download)


def test_each_modelnet_name_has_its_own_folder_and_one_filled_before_is_found(
    cache, modelnet_offline, tmp_path,
) -> None:
    """Before: ModelNet keeps raw/ and processed/ in the root it is given whatever its name, and
    loads processed files without checking the name, so pyg:ModelNet:40 loaded ModelNet10's
    graphs (10 classes) from <root>/ModelNet, processed there by pyg:ModelNet:10 (and the reverse).
    Now each NAME is built on <root>/ModelNet/<NAME>; a <root>/ModelNet/raw filled before is
    still used for the name its categories say it holds (10 or 40), and for no other."""
    root = tmp_path / "data"
    _write_modelnet(root / "ModelNet" / "raw", 10)  # ModelNet10, where metanas put it before
    assert _modelnet_classes("10", root) == 10
    with pytest.raises(DatasetNotFoundError, match=re.escape(f"not in {root / 'ModelNet' / '40'}")):
        _modelnet_classes("40", root)
    assert not (root / "ModelNet" / "40").exists()  # the failed download leaves no folder
    _write_modelnet(root / "ModelNet" / "40" / "raw", 40)
    assert (_modelnet_classes("40", root), _modelnet_classes("10", root)) == (40, 10)
    assert sorted(str(p.relative_to(root)) for p in root.rglob("processed")) == [
        "ModelNet/40/processed", "ModelNet/processed"]
    root = tmp_path / "fresh"
    for name in ("40", "10"):
        _write_modelnet(root / "ModelNet" / name / "raw", int(name))
    assert (_modelnet_classes("40", root), _modelnet_classes("10", root)) == (40, 10)


def test_overlapping_module_patches_in_two_threads_neither_leak_nor_run_unpatched() -> None:
    """Before: module_attribute (ModelNet's sorted glob, Planetoid's restricted pickle) patched
    the module without a lock: a load in a second thread began inside the first's patch, took
    its patch as the module's own and put it back after the first had restored the original,
    leaking it for good (a load beside that ran with the original, unpatched). Now the second
    waits for the first's patch to end."""
    import threading
    import time

    from nas.pyg_classes import module_attribute

    module, seen = types.ModuleType("patched"), []
    module.value = "original"
    first_in, second_starts = threading.Event(), threading.Event()

    def first() -> None:
        with module_attribute(module, "value", "first"):
            first_in.set()
            second_starts.wait(5)
            time.sleep(0.2)  # the second thread is trying to patch
            seen.append(("first", module.value))

    def second() -> None:
        first_in.wait(5)
        second_starts.set()
        with module_attribute(module, "value", "second"):
            seen.append(("second", module.value))

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert seen == [("first", "first"), ("second", "second")]
    assert module.value == "original"


def test_a_failed_modelnet_load_in_the_old_folder_layout_leaves_no_empty_folder(
    cache, modelnet_offline, tmp_path,
) -> None:
    """Before: pyg:ModelNet:10 on a <root>/ModelNet/raw filled before (10 categories) with a bad
    .off file left an empty ModelNet/processed: the folders made by a failed load were looked
    for in ModelNet/10, while PyG was built on ModelNet, the folder that raw is in."""
    root = tmp_path / "data"
    _write_modelnet(root / "ModelNet" / "raw", 10)
    (root / "ModelNet" / "raw" / "chair" / "train" / "chair_0001.off").write_text("OFF\nnot a mesh\n")
    before = sorted(root.rglob("*"))
    with pytest.raises(ValueError, match="invalid literal"):  # PyG's read_off
        _modelnet_classes("10", root)
    assert sorted(root.rglob("*")) == before
    assert not (root / "ModelNet" / "processed").exists()


def test_a_failed_load_of_one_name_leaves_another_names_folder_of_the_class(tmp_path) -> None:
    """Before (7f8b492): a failed pyg:GNNBenchmarkDataset:MNIST load removed every empty folder
    made in <root>/GNNBenchmarkDataset meanwhile, CIFAR10/processed too, which another process,
    holding CIFAR10's lock (locks are per name), was filling during its process(). Only a class
    that keeps one folder for all names in the old layout (ModelNet's shared raw) is watched."""
    from nas.tasks import _built_on, _no_empty_folders_left, dataset_folders, dataset_info

    family = tmp_path / "GNNBenchmarkDataset"
    info = dataset_info("pyg:GNNBenchmarkDataset:MNIST")
    with pytest.raises(RuntimeError, match="failed"):
        with _no_empty_folders_left(_built_on(dataset_folders(family, info), info)):
            (family / "CIFAR10" / "processed").mkdir(parents=True)
            (family / "MNIST" / "processed").mkdir(parents=True)
            raise RuntimeError("failed")
    assert (family / "CIFAR10" / "processed").is_dir()
    assert not (family / "MNIST").exists()


@pytest.mark.parametrize("name", ["pyg:ModelNet", "pyg:modelnet"])
def test_modelnet_without_its_name_is_refused_naming_its_names(
    name, cache, modelnet_offline, capsys, sqlite_url, tmp_path,
) -> None:
    """Before: pyg:ModelNet was built with PyG's default name '10' on <root>/ModelNet, the folder
    all names shared before each had its own: with 40 categories in ModelNet/raw it loaded 40
    classes under the name '10', and processed ModelNet/processed, which pyg:ModelNet:40 then
    loaded (with only ModelNet/10/raw, it tried to download)."""
    root = tmp_path / "data"
    _write_modelnet(root / "ModelNet" / "raw", 40)
    said = (f"dataset '{name}': ModelNet needs its name, one of ['10', '40']: write pyg:ModelNet:10 "
            f"or pyg:ModelNet:40")
    with pytest.raises(ValueError, match=re.escape(said)):
        load_task(name, root=root)
    assert main(["search", "--dataset", name, "--trials", "1", "--data-root", str(root),
                 "--storage", sqlite_url, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err
    assert not list(root.rglob("processed"))


def test_mesh_classes_are_searched_on_the_edges_of_their_faces_with_positions_as_features(
    cache, modelnet_offline, capsys, sqlite_url, tmp_path,
) -> None:
    """Before: pyg:ModelNet:10 was refused, once downloaded and processed, as having no edges
    ("its graphs have none (they hold ['face', 'pos', 'y'])"). Now each mesh gets the edges of
    its faces (FaceToEdge) and its positions as node features, in memory: PyG's processed files
    keep the faces. The study records the fingerprint of the graphs searched so, the same as a
    DataTask's of those graphs and split."""
    import torch_geometric.datasets as pyg_datasets
    from torch_geometric.transforms import FaceToEdge

    from nas.tasks import DataTask

    root = tmp_path / "data"
    _write_modelnet(root / "ModelNet" / "10" / "raw", 10, (9, 2))
    task = load_task("pyg:ModelNet:10", root=root)
    assert (task.level, len(task.dataset), task.num_features, task.num_classes) == ("graph", 110, 3, 10)
    graph = task.dataset[3]
    assert torch.equal(graph.x, graph.pos) and graph.get("face") is None
    assert graph.edge_index.tolist() == [[0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3], [1, 2, 3, 0, 2, 3, 0, 1, 3, 0, 1, 2]]
    assert {split: len(idx) for split, idx in task.splits.items()} == {"train": 80, "val": 10, "test": 20}
    processed = [pyg_datasets.ModelNet(str(root / "ModelNet" / "10"), "10", train=train)
                 for train in (True, False)]  # as PyG keeps them: train, then test meshes
    assert [sorted(part._data.keys()) for part in processed] == [["face", "pos", "y"]] * 2
    pre_transforms = list(root.rglob("pre_transform.pt"))  # PyG's record of the one it processed with
    assert pre_transforms and [torch.load(path, weights_only=True) for path in pre_transforms] == ["None"]
    meshes = [FaceToEdge()(mesh) for part in processed for mesh in part]
    for mesh in meshes:
        mesh.x = mesh.pos
    assert task.fingerprint == DataTask(meshes, "meshes", splits=task.splits).fingerprint
    assert main(["search", "--dataset", "pyg:ModelNet:10", "--epochs", "1", "--convs", "gcn", "--strategy",
                 "random", "--trials", "1", "--data-root", str(root), "--storage", sqlite_url, "--quiet",
                 "--study", "meshes"]) == 0, capsys.readouterr().err
    import optuna

    stored = optuna.load_study(study_name="meshes", storage=sqlite_url).user_attrs
    assert stored["data_fingerprint"] == task.fingerprint


@pytest.mark.parametrize("name, said", [
    ("pyg:DynamicFAUST", "its meshes are motion sequences without class labels"),
    ("pyg:TOSCA", "its meshes have no class labels"),
    ("pyg:GeometricShapes", "its official training graphs are one per class"),
])
def test_mesh_classes_a_search_cannot_take_are_refused_before_anything_is_read(
    name, said, capsys, sqlite_url, tmp_path,
) -> None:
    """Before: each was resolved, downloaded and processed, then refused as having no edges (or
    GeometricShapes, given edges, as having no validation graphs). GeometricShapes' refusal said
    too that metanas searches only the classes of nodes or of graphs, which its graphs have:
    now it says only that no validation graphs are left."""
    with pytest.raises(ValueError, match=re.escape(f"dataset '{name}': {said}")) as refused:
        resolve_dataset(name)
    task = "metanas searches only the classes of one graph's nodes or of whole graphs"
    assert (task in str(refused.value)) == (name != "pyg:GeometricShapes")  # it has classes
    (tmp_path / "data").mkdir()
    assert main(["search", "--dataset", name, "--trials", "1", "--data-root", str(tmp_path / "data"),
                 "--storage", sqlite_url, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err
    assert not any((tmp_path / "data").iterdir())


def _graphs(without_edges: int | None, count: int = 20) -> list[Data]:
    """``count`` 3-node rings of two classes; graph ``without_edges`` has no edge_index."""
    graphs = [Data(x=torch.ones(3, 2), edge_index=torch.tensor([[0, 1, 2], [1, 2, 0]]), y=torch.tensor([i % 2]))
              for i in range(count)]
    if without_edges is not None:
        del graphs[without_edges].edge_index
    return graphs


class ListDataset(Dataset):
    """A PyG Dataset (not in memory) of the graphs it is given."""

    def __init__(self, graphs: list[Data]) -> None:
        self.graphs = graphs
        super().__init__()

    def len(self) -> int:
        return len(self.graphs)

    def get(self, idx: int) -> Data:
        return self.graphs[idx]


@pytest.mark.parametrize("bad", [0, 5, 19])
def test_a_data_task_is_refused_naming_its_first_graph_without_edges(bad) -> None:
    """Before: a list whose graph 5 (or 19) had no edge_index failed in PyG's collate with a
    bare KeyError: 'edge_index'; one whose graph 0 had none was collated without the others'
    edges; a Dataset (not in memory) was checked at its first graph only, so one whose graph 5
    had none was accepted."""
    from nas.tasks import DataTask

    said = (f"'mine': a task needs graphs with edges (edge_index); graph {bad} has none "
            f"(it holds ['x', 'y'])")
    with pytest.raises(ValueError, match=re.escape(said)):
        DataTask(_graphs(bad), "mine")
    with pytest.raises(ValueError, match=re.escape(said)):
        DataTask(ListDataset(_graphs(bad)), "mine")
    assert len(DataTask(ListDataset(_graphs(None)), "mine").dataset) == 20


def test_a_data_task_gives_features_without_modifying_the_callers_graphs() -> None:
    """Before: a DataTask over a dataset not in memory gave its degree features to the caller's
    own graphs: DataTask(ListDataset(graphs), 'pts').dataset[0] set graphs[0].x."""
    from nas.tasks import DataTask

    graphs = _graphs(None)
    for graph in graphs:
        graph.num_nodes, graph.x = 3, None
    task = DataTask(ListDataset(graphs), "pts")
    assert task.dataset[0].x.tolist() == [[0.0, 1.0]] * 3 and task.num_features == 2  # degree 1 of 0..1
    assert all(graph.x is None for graph in graphs)


def test_a_node_data_task_splits_without_modifying_the_callers_graph() -> None:
    """Before: a node DataTask over a dataset not in memory split the caller's own graph: its
    (N, 3) masks were replaced by column seed % 3, or masks were added to one without."""
    from nas.tasks import DataTask

    nodes = torch.arange(60)
    columns = {key: (nodes % 3 == k).view(-1, 1).repeat(1, 3) for k, key in enumerate(MASKS)}
    graph = Data(x=torch.ones(60, 2), edge_index=torch.stack([nodes, nodes.roll(-1)]), y=nodes % 2, **columns)
    task = DataTask(ListDataset([graph]), "masked")
    assert torch.equal(task.data.val_mask, nodes % 3 == 1) and graph.val_mask.shape == (60, 3)
    del graph.train_mask, graph.val_mask, graph.test_mask
    assert DataTask(ListDataset([graph]), "unmasked").data.train_mask.sum() == 36  # 60% of 30 a class
    assert sorted(graph.keys()) == ["edge_index", "x", "y"]


def test_the_edges_a_refusal_recommends_for_point_clouds_can_be_made() -> None:
    """Before: the refusal of graphs without edges recommended KNNGraph for a point cloud, which
    raises ImportError: 'knn_graph' requires 'pyg-lib>=0.6.0' without pyg-lib or torch-cluster,
    neither of which metanas installs. The transforms it names now make a point cloud's edges."""
    from torch_geometric.transforms import Compose, Delaunay, FaceToEdge

    from nas.tasks import DataTask

    clouds = [Data(pos=torch.rand(8, 3, generator=torch.Generator().manual_seed(i)), y=torch.tensor([i % 2]))
              for i in range(20)]
    with pytest.raises(ValueError, match=re.escape(
            "a point cloud's with Compose([Delaunay(), FaceToEdge()]) (KNNGraph needs pyg-lib or "
            "torch-cluster installed, which metanas does not install)")):
        DataTask(clouds, "clouds")
    task = DataTask([Compose([Delaunay(), FaceToEdge()])(cloud) for cloud in clouds], "clouds")
    assert task.dataset[0].num_edges > 0


def test_a_data_task_casts_features_to_float32_in_its_own_graphs_only() -> None:
    """Before: a DataTask's float64 x (numpy's) stayed float64, which every trial failed on; the
    cast is made in copies, so a dataset not in memory keeps the caller's graphs float64, and
    the task searches (and fingerprints) the same data as the same values given as float32."""
    from nas.tasks import DataTask, with_float32_features

    graphs = _graphs(None)
    for index, graph in enumerate(graphs):
        graph.x = torch.full((3, 2), index / 3, dtype=torch.float64)
    as_float32 = [Data(x=graph.x.float(), edge_index=graph.edge_index, y=graph.y) for graph in graphs]
    task = DataTask(ListDataset(graphs), "pts")
    assert task.dataset[0].x.dtype == torch.float32 and task.num_features == 2
    assert all(graph.x.dtype == torch.float64 for graph in graphs)
    assert task.fingerprint == DataTask(graphs, "pts").fingerprint == DataTask(as_float32, "pts").fingerprint
    in_memory = DataTask(as_float32, "pts").dataset
    assert with_float32_features(in_memory) is in_memory  # float32 storage: the dataset as it is


def test_an_in_memory_data_task_casts_its_collated_features_once() -> None:
    """Before: an in-memory dataset of float64 x got a transform (Float32Features) that cast x
    each time a graph was read, every batch of every epoch (a PROTEINS-sized task trained 15-25%
    slower per epoch than as float32). Now its collated storage is cast once, in the task's
    copy: the caller's dataset keeps its float64 storage and the graphs it cached, and the task
    has the fingerprint it had (that of the same values as float32)."""
    from nas.tasks import DataTask

    graphs = _graphs(None)
    for index, graph in enumerate(graphs):
        graph.x = torch.full((3, 2), index / 3, dtype=torch.float64)
    given = InMemoryDataset()
    given._data, given.slices = InMemoryDataset.collate(graphs)
    assert given[3].x.dtype == torch.float64  # cached by the caller's dataset
    task = DataTask(given, "pts")
    assert task.dataset.transform is None and task.dataset._data.x.dtype == torch.float32
    assert task.dataset[3].x.dtype == torch.float32 and task.dataset[3].x[0, 0] == 1.0
    assert given.transform is None and given._data.x.dtype == torch.float64
    assert given[3].x.dtype == given[4].x.dtype == torch.float64
    assert task.fingerprint == DataTask(ListDataset(graphs), "pts").fingerprint  # cast as read
    nodes = torch.arange(30)
    graph = Data(x=torch.rand(30, 4, dtype=torch.float64), edge_index=torch.stack([nodes, (nodes + 1) % 30]),
                 y=nodes % 2)
    one = InMemoryDataset()
    one._data, one.slices = InMemoryDataset.collate([graph])
    node_task = DataTask(one, "ring")
    assert node_task.data.x.dtype == torch.float32 and one._data.x.dtype == torch.float64
    assert node_task.fingerprint == DataTask(ListDataset([graph]), "ring").fingerprint


def _ring_of(nodes: int, y: int = 0) -> Data:
    """A ring of ``nodes`` nodes of 2 features, of class ``y``."""
    ring = torch.arange(nodes)
    return Data(x=torch.ones(nodes, 2), edge_index=torch.stack([ring, ring.roll(-1)]), y=torch.tensor([y]))


@pytest.mark.parametrize("unlike, has, graph_0_has", [
    (lambda graph: delattr(graph, "y"), "no y", "y of shape [1]"),
    (lambda graph: delattr(graph, "x"), "no x", "x of shape [3, 2]"),
    (lambda graph: setattr(graph, "x", torch.ones(3, 4)), "x of shape [3, 4]", "x of shape [3, 2]"),
    (lambda graph: setattr(graph, "y", torch.tensor([0, 1])), "y of shape [2]", "y of shape [1]"),
    (lambda graph: setattr(graph, "y", torch.tensor([[1]])), "y of shape [1, 1]", "y of shape [1]"),
    (lambda graph: setattr(graph, "edge_attr", torch.ones(3, 1)), "edge_attr of shape [3, 1]", "no edge_attr"),
    (lambda graph: setattr(graph, "y", graph.y.float()), "y of dtype torch.float32", "y of dtype torch.int64"),
])
@pytest.mark.parametrize("bad", [0, 5])
def test_a_data_task_is_refused_naming_its_first_graph_unlike_graph_0(unlike, has, graph_0_has, bad) -> None:
    """Before: a list whose graph 5 lacked y or x failed in PyG's collate with a bare KeyError,
    as did one whose graph 0 alone had edge_attr; x of other features or y of another shape
    failed with torch's bare size error (y of shape [2]: 'a graph task needs one class label per
    graph: 20 graphs, 21 labels'); a key graph 0 lacked was dropped from every graph: its x (the
    graphs searched on degree features), graph 5's edge_attr (graph 0 without y: 'got no y',
    naming no graph); a y of float32 among int64 ones made every y float32 (torch.cat), refused
    as 'y of dtype torch.float32', naming no graph."""
    from nas.tasks import DataTask

    graphs = _graphs(None)
    unlike(graphs[bad])
    said = (f"'mine': graph 5 has {has}; graph 0 has {graph_0_has}" if bad else
            f"'mine': graph 1 has {graph_0_has}; graph 0 has {has}")
    with pytest.raises(ValueError, match=re.escape(f"{said}. A task's graphs are joined")):
        DataTask(graphs, "mine")


def test_graphs_alike_but_for_their_sizes_make_a_data_task() -> None:
    """Graphs of other numbers of nodes and edges are alike; so are graphs none of which has x,
    which get degree features as before, and graphs whose x are of other dtypes (joined as one)."""
    from nas.tasks import DataTask

    task = DataTask([_ring_of(3 + i % 4, i % 2) for i in range(20)], "rings")
    assert [graph.num_nodes for graph in task.dataset][:5] == [3, 4, 5, 6, 3]
    graphs = [_ring_of(3 + i % 4, i % 2) for i in range(20)]
    for graph in graphs:
        graph.num_nodes = graph.x.size(0)
        del graph.x
    assert DataTask(graphs, "bare").num_features == 2  # one-hot degree 0..1 (out-degree 1)
    graphs = [_ring_of(3, i % 2) for i in range(20)]
    graphs[5].x = graphs[5].x.double()
    assert DataTask(graphs, "mixed").num_features == 2


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8, torch.bool])
@pytest.mark.parametrize("bad", [0, 5])
def test_integer_labels_of_other_widths_make_a_data_task_of_the_same_data(dtype, bad) -> None:
    """Before (ea07df2): graphs whose y were int64 but graph 5's (or graph 0's) int32, int16,
    uint8 or bool were refused ('graph 5 has y of dtype torch.int32; graph 0 has y of dtype
    torch.int64'), though collate joins them as int64 class labels and bbb8721 searched them as
    the same data as all int64. Only floating-point labels among integer ones are refused."""
    from nas.tasks import DataTask

    graphs = [_ring_of(3, i % 2) for i in range(20)]
    graphs[bad].y = graphs[bad].y.to(dtype)
    task = DataTask(graphs, "m")
    assert task.dataset._data.y.dtype == torch.int64
    assert task.fingerprint == DataTask([_ring_of(3, i % 2) for i in range(20)], "m").fingerprint
    assert task.fingerprint.startswith("3b9d649b7915")  # bbb8721's, all int64
    graphs[bad].y = graphs[bad].y.to(torch.float64)
    said = ("graph 5 has y of dtype torch.float64; graph 0 has y of dtype torch.int64" if bad else
            "graph 1 has y of dtype torch.int64; graph 0 has y of dtype torch.float64")
    with pytest.raises(ValueError, match=re.escape(f"'m': {said}. A task's graphs are joined")):
        DataTask(graphs, "m")


@pytest.mark.parametrize("with_x", [True, False])
def test_a_later_graphs_num_nodes_is_refused_only_where_collate_fails_or_changes_it(with_x) -> None:
    """Before: a list whose graph 0 had no num_nodes and later graphs had one was refused ('graph
    1 has num_nodes; graph 0 has no num_nodes'), though PyG's collate joins it (dropping their
    num_nodes, counted again from x or edge_index, as graph 0's). Refused still: graph 0 with
    num_nodes and a later graph without (collate fails with a bare KeyError), and a later graph
    whose num_nodes is not what its other keys give (collate would change its number of nodes)."""
    from torch_geometric.data import InMemoryDataset

    from nas.tasks import DataTask

    def rings() -> list[Data]:
        graphs = [_ring_of(3 + i % 4, i % 2) for i in range(20)]
        for graph in graphs[1:]:
            graph.num_nodes = graph.edge_index.max().item() + 1
        if not with_x:
            for graph in graphs:
                del graph.x
        return graphs

    graphs = rings()
    InMemoryDataset.collate(graphs)  # PyG joins them
    task = DataTask(graphs, "rings")
    assert [graph.num_nodes for graph in task.dataset] == [3 + i % 4 for i in range(20)]
    graphs = rings()
    graphs[0].num_nodes = 3
    del graphs[5].num_nodes
    with pytest.raises(KeyError):
        InMemoryDataset.collate(graphs)
    with pytest.raises(ValueError, match=re.escape("'rings': graph 5 has no num_nodes; graph 0 has num_nodes")):
        DataTask(graphs, "rings")
    graphs = rings()
    graphs[5].num_nodes = 9  # isolated nodes 4..8 (or x of 4): x or edge_index count 4 without num_nodes
    with pytest.raises(ValueError, match=re.escape("'rings': graph 5 has num_nodes 9, 4 nodes without it; "
                                                   "graph 0 has no num_nodes")):
        DataTask(graphs, "rings")


@pytest.mark.parametrize("level", [None, "node"])
def test_node_labels_on_several_graphs_are_refused_as_such(level) -> None:
    """Before: graphs of 3 and 5 nodes whose y held a label per node were refused as 'graph 1 has
    y of shape [5]; graph 0 has y of shape [3] ... y of the same shape', as if their shapes were
    the problem; before 1047da8, as a node task of several graphs ('has 2 graphs; a node task is
    one graph') or a graph task without one label per graph."""
    from nas.tasks import DataTask

    graphs = [_ring_of(3 + 2 * (i % 2), 0) for i in range(4)]
    for graph in graphs:
        graph.y = torch.arange(graph.num_nodes) % 2
    with pytest.raises(ValueError, match=re.escape(
            "'mine': its graphs have a class label y per node (graph 0: 3 nodes, y of shape [3]; "
            "graph 1: 5 nodes, y of shape [5]), but a node task is one graph")) as refused:
        DataTask(graphs, "mine", level=level)
    assert "the same shape" not in str(refused.value)
    graphs[0] = _ring_of(1, 0)  # one node, one label: '1 node'
    graphs[0].y = torch.tensor([0])
    with pytest.raises(ValueError, match=re.escape("(graph 0: 1 node, y of shape [1]; graph 1: 5 nodes")):
        DataTask(graphs, "mine", level=level)


@pytest.mark.parametrize("level", [None, "node"])
def test_node_labels_on_several_graphs_of_one_size_are_refused_as_such(level) -> None:
    """Before: 20 graphs of 3 nodes each whose y held a label per node (shape [3]) were alike,
    so not refused as node labels on several graphs (as graphs of 3 and 5 nodes were, and as
    README says), but as 'a graph task needs integer class labels y, one per graph (1 here),
    got ... shape (3,)'. Graphs of one node, one label each, are a graph task."""
    from nas.tasks import DataTask

    graphs = [_ring_of(3, 0) for _ in range(20)]
    for graph in graphs:
        graph.y = torch.tensor([0, 1, 1])
    with pytest.raises(ValueError, match=re.escape(
            "'mine': its graphs have a class label y per node (graph 0: 3 nodes, y of shape [3]; "
            "graph 1: 3 nodes, y of shape [3]), but a node task is one graph")):
        DataTask(graphs, "mine", level=level)
    singles = [Data(x=torch.ones(1, 2), edge_index=torch.tensor([[0], [0]]), y=torch.tensor([i % 2]))
               for i in range(20)]
    assert DataTask(singles, "singles").level == "graph"


def test_an_in_memory_dataset_is_checked_for_edges_by_its_collated_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every graph is checked without making each one: an in-memory dataset without a transform
    by its collated storage (which holds edge_index for all graphs or for none)."""
    from nas.tasks import check_edges

    dataset = InMemoryDataset()
    dataset._data, dataset.slices = InMemoryDataset.collate(_graphs(None, 50))
    with monkeypatch.context() as no_graph_made:
        no_graph_made.setattr(InMemoryDataset, "get", lambda self, idx: pytest.fail(f"graph {idx} was made"))
        check_edges(dataset, "mine")
    dataset._data, dataset.slices = InMemoryDataset.collate(_graphs(0, 50))
    with pytest.raises(ValueError, match=re.escape("'mine': a task needs graphs with edges (edge_index); graph 0 has none")):
        check_edges(dataset, "mine")


def _meshes_given_edges() -> list[Data]:
    """20 four-node meshes (tetrahedra of two classes, pos and no x) given the edges of their
    faces by FaceToEdge, as README told users to search meshes as a DataTask."""
    from torch_geometric.transforms import FaceToEdge

    faces = torch.tensor([[0, 0, 0, 1], [1, 1, 2, 2], [2, 3, 3, 3]])
    return [FaceToEdge()(Data(pos=torch.eye(4, 3) * (i + 1), face=faces.clone(), y=torch.tensor([i % 2])))
            for i in range(20)]


def _point_ring() -> Data:
    """One graph of 30 nodes with positions and no x, in a ring, of two classes (a node task)."""
    ring = torch.arange(30)
    return Data(pos=torch.arange(90.0).view(30, 3), edge_index=torch.stack([ring, ring.roll(-1)]), y=ring % 2)


def test_a_data_tasks_nodes_with_positions_get_their_degrees_as_before() -> None:
    """Before: a DataTask's graphs with pos and no x (meshes given edges by FaceToEdge, as README
    said to search them) got pos as features (3), not the one-hot degrees they had got before
    (4: degrees 0..3), so a model trained on them no longer fit. Only a pyg: class's meshes get
    their positions as features (test above)."""
    from nas.tasks import DataTask

    task = DataTask(_meshes_given_edges(), "meshes")
    assert task.num_features == 4 and torch.equal(task.dataset[4].x, torch.tensor([[0.0, 0, 0, 1]] * 4))
    assert DataTask(_point_ring(), "points").num_features == 2  # out-degree 1 of 0..1


def test_fingerprints_of_data_searched_before_are_unchanged(cache, tmp_path) -> None:
    """Studies of official splits and of featureless graphs recorded these fingerprints (at
    6bf3c5f; graphs with positions at a95feee): giving pyg: meshes edges and their nodes their
    positions changes none of them."""
    from nas.tasks import DataTask

    root = tmp_path / "data"
    _write_gnn_benchmark_mnist(root / "GNNBenchmarkDataset" / "MNIST" / "raw", (8, 3, 4))
    _write_mnist_superpixels(root / "MNISTSuperpixels" / "raw", (18, 4))
    assert load_task("pyg:GNNBenchmarkDataset:MNIST", root=root).fingerprint == (
        "19bf5d91e9b0bb1ce0586c862935e233e3fc7773cacc5212e9d19fd30240401e")
    assert load_task("pyg:MNISTSuperpixels", root=root).fingerprint == (
        "e69ec19db855df2c601e70d0107ec285e53674e5532d83ed911930cc64c85282")
    featureless = [Data(edge_index=torch.tensor([[0, 1, 2], [1, 2, 0]])[:, :i % 3 + 1], num_nodes=3,
                        y=torch.tensor([i % 2])) for i in range(20)]
    assert DataTask(featureless, "mine").fingerprint == (
        "8fffd48e0a825ab288b6522521ec61c1061e3254797056d8b16383cba2ecedd5")
    assert DataTask(_meshes_given_edges(), "meshes").fingerprint == (
        "68f5069785cfc088b79798a149c66bfcfc4cfbb8f803bbbc8d8854e478b2d15e")
    assert DataTask(_point_ring(), "points").fingerprint == (
        "bc33f68fb38abaf539daadb4b46575adaad36c03eb1c91338ab73e068dc344cf")


class ToyBeside(ToyGraphs):
    """A class with a name that keeps raw/ and processed/ in its root, beside the names'
    folders (as ModelNet does)."""

    def __init__(self, root: str, name: str, transform=None) -> None:
        self.name = name
        super().__init__(root, transform)


def _write_cora_npz(raw: Path, n: int = 30) -> None:
    """CitationFull's raw file of an ``n``-node ring of 4 features and two classes."""
    import numpy as np
    import scipy.sparse as sp

    x = sp.csr_matrix(np.eye(n, 4, dtype=np.float32))
    adj = sp.csr_matrix((np.ones(n), (np.arange(n), (np.arange(n) + 1) % n)), shape=(n, n))
    raw.mkdir(parents=True)
    np.savez(raw / "cora.npz", attr_data=x.data, attr_indices=x.indices, attr_indptr=x.indptr,
             attr_shape=x.shape, adj_data=adj.data, adj_indices=adj.indices,
             adj_indptr=adj.indptr, adj_shape=adj.shape, labels=np.arange(n) % 2)


@pytest.mark.parametrize("name, raw", [("pyg:CoraFull", "CoraFull/cora/raw"),
                                       ("pyg:ToyBeside:a", "ToyBeside/raw")])
def test_a_read_only_root_is_mirrored_wherever_the_class_keeps_its_raw_files(
    name, raw, cache, monkeypatch, tmp_path,
) -> None:
    """Before: only <Class>/raw or <Class>/<NAME>/raw was mirrored; a class that keeps its raw
    files elsewhere (CoraFull in cora/, ModelNet beside NAME's folder) was processed into the
    read-only root (or failed there, as if its files could not be downloaded)."""
    import torch_geometric.datasets as pyg_datasets

    monkeypatch.setattr(pyg_datasets, "ToyBeside", ToyBeside, raising=False)
    monkeypatch.setattr(pyg_datasets, "__all__", [*pyg_datasets.__all__, "ToyBeside"])
    root = tmp_path / "ro"
    if name == "pyg:CoraFull":
        _write_cora_npz(root / raw)
    else:
        _write(root / raw.rpartition("/")[0], [_node_graph()])
    folders = [root, *sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts))]
    for folder in folders:
        os.chmod(folder, stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert load_task(name, root=root).num_features == 4
        assert not [p for p in root.rglob("processed*")]  # nothing written to the root
        assert (cache / "mirror" / raw).is_dir()
    finally:
        for folder in folders:
            os.chmod(folder, stat.S_IRWXU)


def _ring(number: int) -> dict:
    """A 3-node ring whose features are ``number`` (to tell graphs apart), of class number % 2."""
    return {"x": [[float(number)]] * 3, "edge_index": [[0, 1, 2], [1, 2, 0]], "y": [number % 2]}


def _write_gnn_benchmark_mnist(raw: Path, sizes: tuple[int, int, int]) -> None:
    """GNNBenchmarkDataset's raw MNIST_v2.pt as its download holds it: the train, val and test
    graphs, a list of dicts each; graph i (counted over the splits) is ``_ring(i)``."""
    raw.mkdir(parents=True)
    numbers = iter(range(sum(sizes)))
    torch.save([[{key: torch.tensor(value) for key, value in _ring(next(numbers)).items()}
                 for _ in range(size)] for size in sizes], raw / "MNIST_v2.pt")


def _split_numbers(task) -> dict[str, list[int]]:
    """The ``_ring`` number of each graph of each split of ``task``."""
    return {split: [int(graph.x[0, 0]) for graph in task.dataset[idx]] for split, idx in task.splits.items()}


def test_a_class_with_official_splits_searches_its_three_splits_as_given(cache, tmp_path) -> None:
    """Before: pyg:GNNBenchmarkDataset:MNIST was built with split="train" alone and its 8
    training graphs re-split 80/10/10 (6/2/0 here): the official val and test graphs were never
    read. CSL, whose class ignores split (no official one), is split by seed as before."""
    import pickle as pickle_module

    import numpy as np
    import scipy.sparse as sp

    root = tmp_path / "data"
    _write_gnn_benchmark_mnist(root / "GNNBenchmarkDataset" / "MNIST" / "raw", (8, 3, 4))
    for seed in (0, 3):
        task = load_task("pyg:GNNBenchmarkDataset:MNIST", root=root, seed=seed)
        assert (task.level, len(task.dataset), task.num_classes) == ("graph", 15, 2)
        assert _split_numbers(task) == {"train": list(range(8)), "val": [8, 9, 10], "test": [11, 12, 13, 14]}
    raw = root / "GNNBenchmarkDataset" / "CSL" / "raw"
    raw.mkdir(parents=True)
    ring = sp.coo_matrix((np.ones(4), ([0, 1, 2, 3], [1, 2, 3, 0])), shape=(4, 4))
    (raw / "graphs_Kary_Deterministic_Graphs.pkl").write_bytes(pickle_module.dumps([ring] * 20))
    torch.save(torch.arange(20) % 2, raw / "y_Kary_Deterministic_Graphs.pt")
    task = load_task("pyg:GNNBenchmarkDataset:CSL", root=root)
    assert len(task.dataset) == 20 and {s: len(i) for s, i in task.splits.items()} == {"train": 16, "val": 2, "test": 2}


def test_a_raw_pt_file_that_needs_unpickling_is_refused_and_a_real_one_loads(cache, tmp_path) -> None:
    """Before: GNNBenchmarkDataset's reader (torch_geometric.io.fs.torch_load) unpickled a planted
    raw MNIST_v2.pt in full when its safe load failed, running its code."""
    root, marker = tmp_path / "data", tmp_path / "ran"
    raw = root / "GNNBenchmarkDataset" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    torch.save(_RunsCode(marker), raw / "MNIST_v2.pt")
    with pytest.raises(pickle.UnpicklingError, match=f"refusing to load {raw}/MNIST_v2.pt: .*unpickling code \\(Unsupported global: GLOBAL getattr"):
        load_task("pyg:GNNBenchmarkDataset:MNIST", root=root).num_features
    assert not marker.exists()
    shutil.rmtree(raw)
    _write_gnn_benchmark_mnist(raw, (2, 1, 1))  # as PyG's download holds it
    assert len(load_task("pyg:GNNBenchmarkDataset:MNIST", root=root).dataset) == 4


class ToySplit(ToyGraphs):
    """A class whose ``split`` picks one of its official splits, the validation one as "valid"
    (as PPI's and OGB's files name it): graphs from ``<root>/raw/graphs.json``, one list per split."""

    values = ("train", "valid", "test")

    def __init__(self, root: str, split: str = "train", transform=None) -> None:
        InMemoryDataset.__init__(self, root, transform)
        self.load(self.processed_paths[self.values.index(split)])

    @property
    def processed_file_names(self) -> list[str]:
        return [f"{split}.pt" for split in self.values]

    def process(self) -> None:
        splits = json.loads(Path(self.raw_paths[0]).read_text())
        for split, path in zip(self.values, self.processed_paths):
            self.save([Data(**{key: torch.tensor(value) for key, value in graph.items()})
                       for graph in splits[split]], path)


class ToyOddSplit(ToyGraphs):
    """A class whose ``split`` takes values metanas does not know (folds)."""

    def __init__(self, root: str, split: str = "fold0", transform=None) -> None:
        super().__init__(root, transform)


@pytest.fixture
def toy_split(monkeypatch: pytest.MonkeyPatch) -> None:
    """ToySplit and ToyOddSplit as classes of torch_geometric.datasets, ToySplit's split values
    known as PyG's own classes' are (nas.pyg_classes.PYG_SPLITS)."""
    import torch_geometric.datasets as pyg_datasets

    import nas.pyg_classes

    for cls in (ToySplit, ToyOddSplit):
        monkeypatch.setattr(pyg_datasets, cls.__name__, cls, raising=False)
    monkeypatch.setattr(pyg_datasets, "__all__", [*pyg_datasets.__all__, "ToySplit", "ToyOddSplit"])
    monkeypatch.setattr(nas.pyg_classes, "PYG_SPLITS", {**nas.pyg_classes.PYG_SPLITS, "ToySplit": ToySplit.values})


def _write_toy_split(root: Path, sizes: tuple[int, int, int]) -> None:
    numbers = iter(range(sum(sizes)))
    (root / "ToySplit" / "raw").mkdir(parents=True)
    (root / "ToySplit" / "raw" / "graphs.json").write_text(json.dumps(
        {split: [_ring(next(numbers)) for _ in range(size)] for split, size in zip(ToySplit.values, sizes)}))


def test_cli_search_on_a_class_with_official_splits_and_a_study_of_its_training_split_refused(
    cache, toy_split, monkeypatch, capsys, sqlite_url, tmp_path,
) -> None:
    """A 2-trial search on the three splits (the validation one is "valid" to the class); the
    study records the fingerprint of their graphs and split. A study made before (trials, no
    fingerprint: measured on the training split re-split) is refused, not resumed."""
    import optuna

    import nas.tasks

    root = tmp_path / "data"
    _write_toy_split(root, (10, 4, 6))
    task = load_task("pyg:ToySplit", root=root)
    assert _split_numbers(task) == {"train": list(range(10)), "val": list(range(10, 14)), "test": list(range(14, 20))}
    search = ["search", "--dataset", "pyg:ToySplit", "--epochs", "1", "--convs", "gcn", "--strategy",
              "random", "--data-root", str(root), "--storage", sqlite_url, "--quiet", "--trials", "2"]
    assert main([*search, "--study", "s"]) == 0
    capsys.readouterr()
    assert main(["trials", "--json", "--storage", sqlite_url, "--study", "s"]) == 0
    assert [t["state"] for t in json.loads(capsys.readouterr().out)] == ["COMPLETE", "COMPLETE"]
    stored = optuna.load_study(study_name="s", storage=sqlite_url).user_attrs
    assert stored["dataset"] == "pyg:ToySplit" and stored["data_fingerprint"] == task.fingerprint
    shutil.rmtree(root / "ToySplit")
    _write_toy_split(root, (9, 5, 6))  # graph 9 moved from train to val
    assert main([*search, "--study", "s", "--trials", "3"]) == 2
    assert f"this Task 'pyg:ToySplit' has {load_task('pyg:ToySplit', root=root).fingerprint[:12]}" in capsys.readouterr().err
    with monkeypatch.context() as before:  # a study made before: no fingerprint recorded
        before.setattr(nas.tasks.Task, "fingerprint", None)
        assert main([*search, "--study", "old"]) == 0
    assert main([*search, "--study", "old", "--trials", "3"]) == 2
    err = capsys.readouterr().err
    assert "study 'old' was made when metanas searched 'pyg:ToySplit' on its training split alone" in err
    assert len(optuna.load_study(study_name="old", storage=sqlite_url).trials) == 2


@pytest.mark.parametrize("name, said", [
    ("pyg:GNNBenchmarkDataset:PATTERN", "it classifies the nodes of many graphs"),
    ("pyg:GNNBenchmarkDataset:cluster", "it classifies the nodes of many graphs"),
    ("pyg:GNNBenchmarkDataset:TSP", "it classifies edges"),
    ("pyg:PPI", "the nodes of many graphs 121 labels each"),
    ("pyg:ZINC", "its targets are real numbers (regression)"),
    ("pyg:AQSOL", "its targets are real numbers (regression)"),
    ("pyg:LRGBDataset:Peptides-func", "Peptides-func is multi-label"),
    ("pyg:ICEWS18", "temporal knowledge graph"),
    ("pyg:GraphLandDataset:hm-categories", "GraphLandDataset's split argument takes ['RL', 'RH', 'TH', 'THI']"),
    ("pyg:ToyOddSplit", "ToyOddSplit's split argument (default 'fold0') takes values metanas does not know"),
])
def test_a_class_with_splits_metanas_cannot_search_is_refused_up_front(
    name, said, toy_split, capsys, sqlite_url, tmp_path,
) -> None:
    """Before: each was built with its default split (the training one) and searched re-split,
    or failed only once read; GraphLandDataset was refused as needing a split, without its
    values. Now refused by name, saying why, before anything is read or made in the data root."""
    with pytest.raises(ValueError, match=re.escape(f"dataset '{name}': ")):
        resolve_dataset(name)
    (tmp_path / "data").mkdir()
    assert main(["search", "--dataset", name, "--trials", "1", "--data-root", str(tmp_path / "data"),
                 "--storage", sqlite_url, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err
    assert not any((tmp_path / "data").iterdir())


def _write_qm9(raw: Path) -> None:
    """QM9's raw qm9_v3.pt as its download holds it (read without rdkit): graphs as dicts, each
    with 19 real-valued targets."""
    raw.mkdir(parents=True)
    torch.save([{"x": torch.ones(3, 11), "edge_index": torch.tensor([[0, 1, 2], [1, 2, 0]]),
                 "y": torch.full((1, 19), 0.5)} for _ in range(4)], raw / "qm9_v3.pt")


@pytest.mark.parametrize("name", ["pyg:QM9", "pyg:qm7b", "pyg:MD17:aspirin", "pyg:MoleculeNet:ESOL",
                                  "pyg:moleculenet:lipo"])
def test_a_regression_class_without_a_split_is_refused_before_it_is_read(
    name, cache, capsys, sqlite_url, tmp_path,
) -> None:
    """Before: pyg:QM9 (no split argument, so not checked up front) was processed in the data
    root and read whole, and only then refused for its float labels. Now refused by name as the
    command line is read, with the reason ZINC's refusal gives; nothing is made in the root."""
    root = tmp_path / "data"
    _write_qm9(root / "QM9" / "raw")
    before = sorted(root.rglob("*"))
    with pytest.raises(ValueError, match=re.escape(f"dataset '{name}': its targets are real numbers (regression)")):
        resolve_dataset(name)
    assert main(["search", "--dataset", name, "--trials", "1", "--data-root", str(root),
                 "--storage", sqlite_url, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "its targets are real numbers (regression)" in err and "pyg:GNNBenchmarkDataset:MNIST" in err
    assert "Traceback" not in err and sorted(root.rglob("*")) == before


@pytest.mark.parametrize("name", ["pyg:SHREC2016", "pyg:PCPNetDataset", "pyg:MD17", "pyg:LRGBDataset",
                                  "pyg:GEDDataset", "pyg:CornellTemporalHyperGraphDataset"])
def test_a_class_whose_data_no_task_takes_is_refused_for_it_whatever_arguments_it_misses(
    name, capsys, sqlite_url, tmp_path,
) -> None:
    """Before: the class's required arguments were checked first, so SHREC2016 and PCPNetDataset
    were refused as needing arguments a name cannot give, to be built in Python and searched as
    a DataTask (which cannot take their data either), and MD17, LRGBDataset, GEDDataset and
    CornellTemporalHyperGraphDataset were asked for a name, to be refused for their data once
    given one. Now each is refused for its data (nas.pyg_classes.PYG_UNFIT) as it is named."""
    from nas.pyg_classes import PYG_UNFIT

    why = PYG_UNFIT[name.partition(":")[2]]
    with pytest.raises(ValueError, match=re.escape(f"dataset '{name}': {why}")):
        resolve_dataset(name)
    (tmp_path / "data").mkdir()
    assert main(["search", "--dataset", name, "--trials", "1", "--data-root", str(tmp_path / "data"),
                 "--storage", sqlite_url, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert why in err and "needs" not in err and "DataTask" not in err and "Traceback" not in err
    assert not any((tmp_path / "data").iterdir())


def test_every_class_whose_data_no_task_takes_is_refused_for_it_without_its_arguments() -> None:
    """Each class PYG_UNFIT names alone is refused for its data named without a NAME, whatever
    arguments it needs; a CLASS:NAME key named so."""
    from nas.pyg_classes import PYG_UNFIT

    for key, why in PYG_UNFIT.items():
        with pytest.raises(ValueError, match=re.escape(f"dataset 'pyg:{key}': {why}")):
            resolve_dataset(f"pyg:{key}")


def test_a_class_not_listed_as_regression_is_still_refused_once_read(cache, monkeypatch, tmp_path) -> None:
    """The check after loading stays for the classes nas.pyg_classes.PYG_REGRESSION misses."""
    import nas.pyg_classes

    monkeypatch.setattr(nas.pyg_classes, "PYG_UNFIT", {
        key: why for key, why in nas.pyg_classes.PYG_UNFIT.items() if key != "QM9"})
    _write_qm9(tmp_path / "data" / "QM9" / "raw")
    task = load_task("pyg:QM9", root=tmp_path / "data")
    with pytest.raises(ValueError, match=re.escape("'pyg:QM9': a graph task needs integer class labels y")):
        task.dataset


@pytest.mark.parametrize("name, searched", [
    ("pyg:MalNetTiny", "on all its graphs (its default split=None loads them all)"),
    ("pyg:GNNBenchmarkDataset:MNIST", "on its training split alone"),
    ("pyg:MNISTSuperpixels", "on its official training graphs alone (its default train=True loads no test graph)"),
])
def test_a_study_made_before_official_splits_is_refused_saying_what_it_searched(name, searched, tmp_path) -> None:
    """Before: the refusal said every such study searched its class's training split alone;
    MalNetTiny's default split, None, loads all its graphs, which were re-split 80/10/10."""
    import types

    import optuna

    from nas.study import _check_not_made_on_a_training_split

    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(value=0.5))
    with pytest.raises(ValueError, match=re.escape(f"study 'old' was made when metanas searched '{name}' {searched} (re-split 80/10/10)")):
        _check_not_made_on_a_training_split(study, types.SimpleNamespace(study_name="old"), load_task(name, root=tmp_path))


def _write_mnist_superpixels(raw: Path, sizes: tuple[int, int]) -> None:
    """MNISTSuperpixels' raw MNISTSuperpixels.pt as PyG 2.8's download holds it: the training
    and the test graphs, a list of dicts each; training graph i is ``_ring(i)``, test graph i
    ``_ring(100 + i)``."""
    raw.mkdir(parents=True)
    torch.save([[{key: torch.tensor(value) for key, value in _ring(first + i).items()} for i in range(size)]
                for first, size in zip((0, 100), sizes)], raw / "MNISTSuperpixels.pt")


def test_a_class_with_official_train_and_test_graphs_tests_on_its_test_graphs(cache, tmp_path) -> None:
    """Before: pyg:MNISTSuperpixels was built with its default train=True alone and its 36
    training graphs re-split 80/10/10: its test split was training graphs, its official test
    graphs were never read. Now they are the test split, and val is 1/9 of each training class
    (GRAPH_SPLIT's val over its train and val), drawn with seed 0 whatever the task's seed; a
    read-only root is mirrored as for a class with a split argument."""
    root = tmp_path / "ro"
    _write_mnist_superpixels(root / "MNISTSuperpixels" / "raw", (36, 5))
    folders = [root, *sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts))]
    for folder in folders:
        os.chmod(folder, stat.S_IRUSR | stat.S_IXUSR)
    try:
        splits = []
        for seed in (0, 3):
            task = load_task("pyg:MNISTSuperpixels", root=root, seed=seed)
            assert (task.level, len(task.dataset), task.num_classes) == ("graph", 41, 2)
            splits.append(_split_numbers(task))
        assert not [p for p in root.rglob("processed*")]  # processed in the mirror
    finally:
        for folder in folders:
            os.chmod(folder, stat.S_IRWXU)
    assert splits[0] == splits[1]
    numbers = splits[0]
    assert numbers["test"] == list(range(100, 105))
    assert sorted(numbers["train"] + numbers["val"]) == list(range(36))
    assert sorted(number % 2 for number in numbers["val"]) == [0, 0, 1, 1]  # round(18 / 9) per class
    assert task.fingerprint is not None


def test_modelnet_searches_its_official_test_meshes_as_test(cache, modelnet_offline, tmp_path) -> None:
    """Before: pyg:ModelNet:10 loaded its train/ meshes only (10 here), never its test/ ones."""
    from nas.tasks import _load_pyg_dataset

    _write_modelnet(tmp_path / "data" / "ModelNet" / "10" / "raw", 10)
    dataset = _load_pyg_dataset("pyg:ModelNet:10", tmp_path / "data")
    assert len(dataset) == 20 and dataset.official_split["test"].tolist() == list(range(10, 20))


def test_meshes_searched_and_their_fingerprints_are_those_of_before_they_were_collated_once(
    cache, modelnet_offline, monkeypatch, tmp_path,
) -> None:
    """Before: a mesh class with official splits (ModelNet's 12k meshes) was collated twice on
    each load, its official splits joined, then each mesh of the join taken apart again, given
    its faces' edges and collated anew; its meshes are now given their edges as they are joined,
    and _load_pyg_dataset returns the graphs searched. What a study records is unchanged: the
    fingerprints here are those of 957170d, before (the graphs searched, their features and
    the split); a class without splits (MedShapeNet) is collated once as before."""
    import torch_geometric.datasets as pyg_datasets

    from nas.tasks import _load_pyg_dataset, data_fingerprint

    root = tmp_path / "data"
    _write_modelnet(root / "ModelNet" / "10" / "raw", 10, (9, 2))
    _write_modelnet(root / "ModelNet" / "40" / "raw", 40, (9, 1))
    _without_medshapenet(monkeypatch)
    faces = torch.tensor([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]]).t()
    (root / "MedShapeNet" / "processed").mkdir(parents=True)
    InMemoryDataset.save([Data(pos=torch.rand(4, 3, generator=torch.Generator().manual_seed(i)),
                               face=faces, y=torch.tensor([i % 2])) for i in range(20)],
                         str(root / "MedShapeNet" / "processed" / "dataset.pt"))
    for name in ("pyg:ModelNet:10", "pyg:ModelNet:40"):
        _load_pyg_dataset(name, root)  # processed by PyG, before collates are counted
    collated = []
    collate = InMemoryDataset.collate
    monkeypatch.setattr(InMemoryDataset, "collate", staticmethod(
        lambda graphs, *args, **kwargs: collated.append(len(graphs)) or collate(graphs, *args, **kwargs)))
    fingerprints = {name: data_fingerprint(load_task(name, root=root))
                    for name in ("pyg:ModelNet:10", "pyg:ModelNet:40", "pyg:MedShapeNet")}
    assert fingerprints == {
        "pyg:ModelNet:10": "facb1f8cea3733820aac77318afca26e1ba880bfdb665e99d303abe050234d60",
        "pyg:ModelNet:40": "cb15f1769d5f9eccefd92fcaea5674c46f8a75e2a2a111f8893529416f672d47",
        "pyg:MedShapeNet": "075a5753f8426551d2fe1d7e070a00fac6524d6163902198ac7e6a7ef952715b",
    }
    assert collated == [110, 400, 20]  # each load's graphs, collated once
    graph = _load_pyg_dataset("pyg:ModelNet:10", root)[3]
    assert graph.get("face") is None and torch.equal(graph.x, graph.pos) and graph.num_edges == 12
    assert pyg_datasets.ModelNet(str(root / "ModelNet" / "10"), "10")[3].get("face") is not None


def test_a_pyg_load_derives_its_folders_once_and_walks_each_raw_folder_once(
    cache, modelnet_offline, monkeypatch, tmp_path,
) -> None:
    """Before: a pyg: load derived the folder its class is built on (_class_folder) up to five
    times (to mirror, to clean up, to find processed and raw files, to build the class), each
    time listing ModelNet/raw's categories where NAME has no folder of its own, and listed its
    raw folders' files once per pattern (**/*.pt, then **/*.pth)."""
    import pathlib

    from nas import tasks

    root = tmp_path / "data"
    _write_modelnet(root / "ModelNet" / "raw", 10)  # ModelNet10, where metanas put it before
    tasks._load_pyg_dataset("pyg:ModelNet:10", root)  # processed
    derived, walked = [], []
    class_folder = tasks._class_folder
    monkeypatch.setattr(tasks, "_class_folder", lambda *args: derived.append(args) or class_folder(*args))
    for method in ("glob", "rglob"):
        listed = getattr(pathlib.Path, method)
        monkeypatch.setattr(pathlib.Path, method, lambda self, pattern, *args, listed=listed, **kwargs: (
            walked.append((self, pattern)), listed(self, pattern, *args, **kwargs))[1])
    assert int(tasks._load_pyg_dataset("pyg:ModelNet:10", root).y.max()) == 9
    assert len(derived) == 1
    assert [pattern for folder, pattern in walked if folder == root / "ModelNet" / "raw"] == ["*"]


def test_modelnet_is_processed_in_sorted_file_order_whatever_the_directory_lists_first(
    cache, modelnet_offline, monkeypatch, tmp_path,
) -> None:
    """Before: PyG's ModelNet read each category's meshes in glob.glob's order, the order the
    directory lists them in, which differs between filesystems and machines: the same raw files
    gave another graph order, val split and data fingerprint on another machine (a study moved
    there was refused as other data). Now they are processed in sorted file order, whatever
    glob lists first (here sorted, then reversed): mesh k of a category is its k-th graph."""
    import glob

    listed, tasks = glob.glob, []
    for reverse in (False, True):
        root = tmp_path / f"reversed-{reverse}"
        _write_modelnet(root / "ModelNet" / "10" / "raw", 10, (9, 2))
        with monkeypatch.context() as directory:
            directory.setattr(glob, "glob", lambda *args, reverse=reverse, **kwargs: sorted(
                listed(*args, **kwargs), reverse=reverse))
            task = load_task("pyg:ModelNet:10", root=root)
            tasks.append((task, task.fingerprint))  # processed and split here
    (first, fingerprint), (second, second_fingerprint) = tasks
    assert [int(graph.x[1, 0]) for graph in first.dataset[:9]] == list(range(1, 10))  # bathtub_0001...
    assert all(torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
               for a, b in zip(first.dataset, second.dataset))
    assert {key: idx.tolist() for key, idx in first.splits.items()} == {
        key: idx.tolist() for key, idx in second.splits.items()}
    assert fingerprint == second_fingerprint
    import torch_geometric.datasets.modelnet

    assert torch_geometric.datasets.modelnet.glob is glob  # its own again


def test_cli_search_on_mnist_superpixels_and_a_study_of_its_training_graphs_refused(
    cache, monkeypatch, capsys, sqlite_url, tmp_path,
) -> None:
    """A study searched before (trials, no data fingerprint: its training graphs re-split) is
    refused, saying what it searched, not resumed on the official split; a new one records the
    fingerprint of the graphs and split."""
    import optuna

    import nas.tasks

    root = tmp_path / "data"
    _write_mnist_superpixels(root / "MNISTSuperpixels" / "raw", (18, 4))
    search = ["search", "--dataset", "pyg:MNISTSuperpixels", "--epochs", "1", "--convs", "gcn", "--strategy",
              "random", "--data-root", str(root), "--storage", sqlite_url, "--quiet", "--trials", "1"]
    with monkeypatch.context() as before:  # a study made before: no fingerprint recorded
        before.setattr(nas.tasks.Task, "fingerprint", None)
        assert main([*search, "--study", "old"]) == 0
    assert main([*search, "--study", "old", "--trials", "2"]) == 2
    err = capsys.readouterr().err
    assert ("study 'old' was made when metanas searched 'pyg:MNISTSuperpixels' on its official training "
            "graphs alone (its default train=True loads no test graph) (re-split 80/10/10)") in err
    assert len(optuna.load_study(study_name="old", storage=sqlite_url).trials) == 1
    assert main([*search, "--study", "new"]) == 0
    stored = optuna.load_study(study_name="new", storage=sqlite_url).user_attrs
    assert stored["data_fingerprint"] == load_task("pyg:MNISTSuperpixels", root=root).fingerprint


class ToyTrain(ToyGraphs):
    """A class whose ``train`` picks its training or test graphs, not known to metanas."""

    def __init__(self, root: str, train: bool = True, transform=None) -> None:
        super().__init__(root, transform)


def test_a_class_with_a_train_argument_metanas_does_not_know_is_refused_up_front(
    monkeypatch, capsys, sqlite_url, tmp_path,
) -> None:
    """Before: built with its default train=True alone, its training graphs searched re-split."""
    import torch_geometric.datasets as pyg_datasets

    monkeypatch.setattr(pyg_datasets, "ToyTrain", ToyTrain, raising=False)
    monkeypatch.setattr(pyg_datasets, "__all__", [*pyg_datasets.__all__, "ToyTrain"])
    _write(tmp_path / "data" / "ToyTrain", [_ring(i) for i in range(20)])
    before = sorted((tmp_path / "data").rglob("*"))
    assert main(["search", "--dataset", "pyg:ToyTrain", "--trials", "1", "--data-root", str(tmp_path / "data"),
                 "--storage", sqlite_url, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "dataset 'pyg:ToyTrain': ToyTrain's train argument picks" in err and "'MNISTSuperpixels'" in err
    assert "Traceback" not in err and sorted((tmp_path / "data").rglob("*")) == before


def test_every_pyg_class_with_a_train_argument_is_searched_on_both_or_refused_by_name() -> None:
    """Each class of the installed PyG whose ``train`` picks its training or test graphs is
    loaded both ways (nas.pyg_classes.PYG_TRAIN_SPLITS) or refused by name with its reason:
    none is searched on its training graphs alone."""
    import inspect

    import torch_geometric.datasets as pyg_datasets
    from torch_geometric.data import Dataset

    from nas.pyg_classes import PYG_TRAIN_SPLITS

    takes_train = [name for name in pyg_datasets.__all__ if isinstance(getattr(pyg_datasets, name), type)
                   and issubclass(getattr(pyg_datasets, name), Dataset)
                   and "train" in inspect.signature(getattr(pyg_datasets, name)).parameters]
    assert "MNISTSuperpixels" in takes_train and "ModelNet" in takes_train
    for name in takes_train:
        if name in PYG_TRAIN_SPLITS:
            continue
        with pytest.raises(ValueError, match=f"dataset 'pyg:{name}(:x)?': (?!{name}'s train argument)"):
            resolve_dataset(f"pyg:{name}:x" if "name" in inspect.signature(getattr(pyg_datasets, name)).parameters
                            else f"pyg:{name}")


def test_the_datasets_a_refusal_says_are_searched_on_official_splits_are_all_of_them() -> None:
    """Before: a refusal of data no task takes listed as 'Datasets with official splits it
    searches' GNNBenchmarkDataset's MNIST and CIFAR10, MalNetTiny and MNISTSuperpixels only,
    not pyg:ModelNet:10 and :40, pyg:FAUST or pyg:CoMA, searched on theirs too. Each listed is
    searched on its official split; each other class with one is refused."""
    from nas.pyg_classes import PYG_SPLITS, PYG_SPLITS_SEARCHED, PYG_TRAIN_SPLITS, has_official_split, pyg_parts

    searched = [f"pyg:{key}" for key in PYG_SPLITS_SEARCHED]
    assert sorted(searched) == [
        "pyg:CoMA", "pyg:FAUST", "pyg:GNNBenchmarkDataset:CIFAR10", "pyg:GNNBenchmarkDataset:MNIST",
        "pyg:MNISTSuperpixels", "pyg:MalNetTiny", "pyg:ModelNet:10", "pyg:ModelNet:40"]
    for name in searched:
        assert resolve_dataset(name) == name and has_official_split(*pyg_parts(name))
    for class_name in {*PYG_SPLITS, *PYG_TRAIN_SPLITS} - {pyg_parts(name)[0] for name in searched}:
        with pytest.raises(ValueError, match=f"dataset 'pyg:{class_name}:x': "):  # GeometricShapes, UPFD
            resolve_dataset(f"pyg:{class_name}:x")
    with pytest.raises(ValueError, match=re.escape(f"Datasets with official splits it searches: {searched}")):
        resolve_dataset("pyg:QM9")
