"""Tasks: a dataset, its split, its metric and its dimensions, resolved by name through PyG.

``load_task("cora")`` returns a :class:`Task` at once; the data is read on first use, so an
evaluator that never trains (a benchmark table lookup) never touches the disk.
A dataset is named by DATASETS' names, ``tu:NAME`` for any TUDataset, or ``pyg:CLASS[:NAME]``
for any dataset class of ``torch_geometric.datasets`` (whose level, node or graph, is known once
its data is read; a class's official train/val/test split, where it has one, is searched as given).
What a ``pyg:`` name may be, and how its class is built: :mod:`nas.pyg_classes`; how a task's data
is split: :mod:`nas.splits`.

Data root: ``data_root`` argument, else ``$METANAS_DATA``, else ``~/.cache/metanas/datasets``.
PyG writes ``processed/`` next to ``raw/``; when the root is read-only (a shared dataset folder)
the raw files are copied once to a writable mirror under ``$METANAS_CACHE`` (default
``~/.cache/metanas``) and processed there.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import hashlib
import importlib
import os
import pickle
import re
import shutil
import stat
from pathlib import Path
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import Tensor

from nas.pyg_classes import (
    PYG_FORM, PYG_NAME_PATTERN, PYG_ONE_FOLDER_FOR_ALL_NAMES, PYG_PREFIX, canonical_pyg_name,
    has_official_split, in_memory, module_attribute, pyg_class, pyg_class_dataset, pyg_parts,
)
from nas.splits import (
    GRAPH_SPLIT, MASKS, SPLITS, check_split_sizes, given_split, graph_labels, stratified_split,
    with_node_split,
)
from search_spaces.resolver import normalize

if TYPE_CHECKING:
    from filelock import FileLock
    from torch_geometric.data import Data, Dataset


class DatasetNotFoundError(FileNotFoundError):
    """The dataset is neither on disk nor downloadable (offline)."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """How to load one dataset with PyG."""

    family: str     # planetoid, tu, webkb, actor, airports, amazon, coauthor; pyg (a pyg: name)
    pyg_name: str   # the name PyG's class takes, spelled as PyG names its folder <root>/<pyg_name>
    #                 ("Cora", "MUTAG"; WebKB and Airports lowercase theirs: "cornell", "usa");
    #                 a pyg: name's NAME, or its class when it has none
    level: str | None  # "node", "graph" or "image"; None for a pyg: name (known once read)
    folder: str     # folder under the data root that holds <pyg_name>/raw (image: <folder>/raw);
    #                 a pyg: name's class, or "" when it has no NAME (<root>/<Class>/raw)


def _node(family: str, pyg_name: str, folder: str) -> DatasetInfo:
    return DatasetInfo(family, pyg_name, "node", folder)


def _graph(pyg_name: str) -> DatasetInfo:
    return DatasetInfo("tu", pyg_name, "graph", "TUDataset")


#: canonical dataset name -> how to load it
DATASETS: dict[str, DatasetInfo] = {
    "cora": _node("planetoid", "Cora", "Planetoid"),
    "citeseer": _node("planetoid", "CiteSeer", "Planetoid"),
    "pubmed": _node("planetoid", "PubMed", "Planetoid"),
    "cornell": _node("webkb", "cornell", "WebKB"),
    "texas": _node("webkb", "texas", "WebKB"),
    "wisconsin": _node("webkb", "wisconsin", "WebKB"),
    "actor": _node("actor", "Actor", "Actor"),
    "airports-usa": _node("airports", "usa", "Airports"),
    "airports-brazil": _node("airports", "brazil", "Airports"),
    "airports-europe": _node("airports", "europe", "Airports"),
    "computers": _node("amazon", "Computers", "Amazon"),
    "photo": _node("amazon", "Photo", "Amazon"),
    "cs": _node("coauthor", "CS", "Coauthor"),
    "physics": _node("coauthor", "Physics", "Coauthor"),
    # OGB node tasks of NAS-Bench-Graph: answered from its tables (--evaluator table); their
    # graphs are not loaded (see TABLE_ONLY)
    "arxiv": _node("ogb", "ogbn-arxiv", "ogb"),
    "ogbn-proteins": _node("ogb", "ogbn-proteins", "ogb"),
    # image tasks: raw IDX files in <root>/MNIST/raw, read with numpy (see load_image_dataset)
    "mnist": DatasetInfo("idx", "MNIST", "image", "MNIST"),
    # cheap variant for model zoos: 14x14 (2x2 average pool), val 1,000 and test 2,000 images
    "mnist14": DatasetInfo("idx", "MNIST", "image", "MNIST"),
    **{
        name.lower(): _graph(name)
        for name in (
            "MUTAG", "PROTEINS", "ENZYMES", "NCI1", "NCI109", "DD", "PTC_MR", "COLLAB",
            "IMDB-BINARY", "IMDB-MULTI", "REDDIT-BINARY",
        )
    },
}


#: other names of a dataset -> its canonical name
DATASET_ALIASES = {"ogbn-arxiv": "arxiv"}

#: dataset families whose data metanas does not load (NAS-Bench-Graph's tables answer them)
TABLE_ONLY = frozenset({"ogb"})


#: the class of torch_geometric.datasets each family of DATASETS is loaded with
FAMILY_CLASSES = {
    "planetoid": "Planetoid", "tu": "TUDataset", "webkb": "WebKB", "actor": "Actor",
    "airports": "Airports", "amazon": "Amazon", "coauthor": "Coauthor",
}

#: prefixes of a TUDataset named by its PyG name, ``tu:BZR`` or ``TUDataset:BZR`` (any of the
#: TU collection, not only those DATASETS lists); the canonical name is ``tu:<PyG name>``
TU_PREFIXES = ("tu", "tudataset")


def resolve_dataset(name: str | Task) -> str:
    """Canonical dataset name; ``ValueError`` naming the valid choices otherwise. A
    :class:`Task` (e.g. a :class:`DataTask` on one's own graphs) answers with its name."""
    if isinstance(name, Task):
        return name.name
    if ":" in str(name):
        if normalize(str(name).partition(":")[0]) == PYG_PREFIX:
            return _resolve_pyg_name(str(name))
        return _resolve_tu_name(str(name))
    by_key = {normalize(key): key for key in DATASETS}
    by_key |= {normalize(alias): key for alias, key in DATASET_ALIASES.items()}
    key = normalize(name)
    if key not in by_key:
        raise ValueError(f"could not resolve dataset {name!r} among choices {sorted(DATASETS)} "
                         f"(or tu:NAME for any TUDataset, NAME as PyG spells it, or {PYG_FORM})")
    return by_key[key]


def _resolve_tu_name(name: str) -> str:
    """``tu:NAME``: the listed dataset of that TU name (``tu:MUTAG`` is ``mutag``), else
    ``tu:NAME`` itself; NAME is case-sensitive, as in PyG's folders and download URLs."""
    prefix, _, pyg_name = name.partition(":")
    if normalize(prefix) not in TU_PREFIXES or not re.fullmatch(PYG_NAME_PATTERN, pyg_name):
        raise ValueError(f"could not resolve dataset {name!r}: a prefixed name is tu:NAME or "
                         f"TUDataset:NAME, NAME a TUDataset's name as PyG spells it (letters, "
                         f"digits, '_', '-', '.'), or {PYG_FORM}")
    listed = {info.pyg_name: key for key, info in DATASETS.items() if info.family == "tu"}
    return listed.get(pyg_name, f"tu:{pyg_name}")


def _resolve_pyg_name(name: str) -> str:
    """``pyg:CLASS[:NAME]`` (:func:`~nas.pyg_classes.pyg_class`): a class metanas loads a family
    of is that family's dataset (``pyg:Planetoid:Cora`` is ``cora``, ``pyg:TUDataset:BZR`` is
    ``tu:BZR``), as ``tu:MUTAG`` is ``mutag``: the same data, read the same (safe) way, under one
    study name. Otherwise ``pyg:<Class>[:NAME]`` (:func:`~nas.pyg_classes.canonical_pyg_name`)."""
    cls, pyg_name = pyg_class(name)
    if cls.__name__ == FAMILY_CLASSES["tu"]:
        return _resolve_tu_name(f"tu:{pyg_name}")
    if cls.__name__ in FAMILY_CLASSES.values():
        return _listed_pyg_dataset(cls.__name__, pyg_name or cls.__name__, name)
    return canonical_pyg_name(cls, pyg_name, name)


def _listed_pyg_dataset(class_name: str, pyg_name: str, name: str) -> str:
    """The dataset of DATASETS that ``class_name`` loads as ``pyg_name`` (any case)."""
    listed = {normalize(info.pyg_name): key for key, info in DATASETS.items()
              if FAMILY_CLASSES.get(info.family) == class_name}
    if normalize(pyg_name) not in listed:
        raise ValueError(f"could not resolve dataset {name!r}: metanas loads {class_name}'s "
                         f"datasets as {sorted(listed.values())}")
    return listed[normalize(pyg_name)]


def dataset_info(name: str) -> DatasetInfo:
    """How to load the dataset of canonical name ``name`` (see :func:`resolve_dataset`)."""
    if name.startswith("tu:"):
        return _graph(name[len("tu:"):])
    if name.startswith(f"{PYG_PREFIX}:"):
        class_name, pyg_name = pyg_parts(name)
        if pyg_name is None:  # <root>/<Class>/raw
            return DatasetInfo(PYG_PREFIX, class_name, None, "")
        return DatasetInfo(PYG_PREFIX, pyg_name, None, class_name)  # <root>/<Class>/<NAME>/raw
    return DATASETS[name]


def default_data_root() -> Path:
    """``$METANAS_DATA`` if set, else the per-user cache folder."""
    if os.environ.get("METANAS_DATA"):
        return Path(os.environ["METANAS_DATA"]).expanduser()
    return cache_dir() / "datasets"


def cache_dir() -> Path:
    """``$METANAS_CACHE``, else ``$XDG_CACHE_HOME/metanas``, else ``~/.cache/metanas``."""
    if os.environ.get("METANAS_CACHE"):
        return Path(os.environ["METANAS_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "metanas"


@dataclasses.dataclass(frozen=True)
class DatasetFolders:
    """Where one load of a dataset finds its folders under its family root, derived once per
    load (:func:`dataset_folders`) and handed to each of its steps: mirroring, locking, cleaning
    up a failure, checking its torch files, building its class. They may not exist yet."""

    family_root: Path      # <root>/<folder>, or its writable mirror (writable_folders)
    named: Path            # <family_root>/<pyg_name> in the spelling found (dataset_folder)
    class_folder: Path     # the folder a pyg: class is built on (_class_folder); else family_root
    raw: tuple[Path, ...]  # the raw folders PyG reads the dataset from (raw_folders)

    def moved_to(self, family_root: Path) -> DatasetFolders:
        """These folders under ``family_root`` (a mirror of this family root) instead."""
        def moved(folder: Path) -> Path:
            return family_root / folder.relative_to(self.family_root)

        return DatasetFolders(family_root, moved(self.named), moved(self.class_folder),
                              tuple(map(moved, self.raw)))


def dataset_folders(family_root: Path, info: DatasetInfo) -> DatasetFolders:
    """The folders of ``info``'s dataset under ``family_root``, each derived once."""
    named = dataset_folder(family_root, info.pyg_name)
    class_folder = (_class_folder(family_root, info, named) if info.family == PYG_PREFIX
                    else family_root)
    return DatasetFolders(family_root, named, class_folder,
                          tuple(raw_folders(info, named, class_folder)))


def writable_folders(root: Path, info: DatasetInfo) -> DatasetFolders:
    """The folders of ``info``'s dataset under ``root/<folder>`` (:func:`dataset_folders`), or
    under a writable mirror of it, the folder to hand PyG.

    If a raw folder there (``<name>/raw``, or a ``pyg:`` class's: :func:`raw_folders`) exists but
    cannot be written next to, its raw files are copied to ``cache_dir()/mirror/<folder>/<name>/raw``
    (once) and the folders are those of the mirror. A ``SOURCE`` file beside each mirrored
    ``raw`` records the raw folder it was copied from; another root's raw folder of the same name
    is mirrored apart, under ``cache_dir()/mirror/by-source/<key of its family root>/<folder>``.
    """
    folders = dataset_folders(root / info.folder, info)
    family_root = folders.family_root
    raws = [raw for raw in folders.raw if raw.is_dir()]
    if not raws or all(_can_write(raw.parent) for raw in raws):
        return folders
    from storage.store import replace_atomically

    mirror_root = cache_dir() / "mirror" / info.folder
    if any(_mirrored_from(mirror_root / raw.relative_to(family_root)) not in (None, str(raw.resolve()))
           for raw in raws):
        mirror_root = cache_dir() / "mirror" / "by-source" / _path_key(family_root) / info.folder
    for raw in raws:
        mirror_raw = mirror_root / raw.relative_to(family_root)
        if _mirrored_from(mirror_raw) is None:  # new, or made before mirrors recorded it
            mirror_raw.parent.mkdir(parents=True, exist_ok=True)
            replace_atomically(mirror_raw.with_name("SOURCE"), str(raw.resolve()).encode())
        if not mirror_raw.is_dir():
            tmp = mirror_raw.with_name(f"raw.tmp{os.getpid()}")
            shutil.copytree(raw, tmp, dirs_exist_ok=True)
            try:
                tmp.rename(mirror_raw)
            except OSError:  # another process finished the copy first
                shutil.rmtree(tmp, ignore_errors=True)
    return folders.moved_to(mirror_root)


def _mirrored_from(mirror_raw: Path) -> str | None:
    """The raw folder ``mirror_raw`` was copied from, as its ``SOURCE`` file records it; None
    where there is none (not mirrored yet, or mirrored before mirrors recorded it)."""
    source = mirror_raw.with_name("SOURCE")
    return source.read_text() if source.is_file() else None


def raw_folders(info: DatasetInfo, named: Path, class_folder: Path) -> list[Path]:
    """The raw folders PyG reads ``info``'s dataset from: ``raw`` in its folder ``named`` (see
    :func:`dataset_folder`); for a ``pyg:`` class that keeps none there, the ``raw`` of the
    folder it is built on, ``class_folder`` (:func:`_class_folder`: a class's own, beside NAME's
    folder, as GEDDataset's) or, without NAME, every ``raw`` under its class folder (CoraFull's
    ``cora/raw``). May not exist."""
    raw = named / "raw"
    if raw.is_dir() or info.family != PYG_PREFIX:
        return [raw]
    if info.folder:  # pyg:CLASS:NAME, built on <root>/<Class> or its NAME's folder
        return [class_folder / "raw"]
    return sorted(d for d in class_folder.rglob("raw") if d.is_dir()) if class_folder.is_dir() else [raw]


def dataset_folder(family_root: Path, pyg_name: str) -> Path:
    """``family_root/<pyg_name>``, or the folder there that spells it otherwise (case, '-' or
    '_'): PyG classes spell a name's folder their own way (HeterophilousGraphDataset reads
    ``Roman-empire`` from ``roman_empire``, Amazon ``computers`` from ``Computers``)."""
    exact = family_root / pyg_name
    if exact.exists() or not family_root.is_dir():
        return exact
    spelled = sorted(d for d in family_root.iterdir() if normalize(d.name) == normalize(pyg_name))
    return spelled[0] if spelled else exact


def _can_write(folder: Path) -> bool:
    """Writable for us: ``os.access`` alone says yes to root even on a read-only folder, so the
    folder's own write bit is checked too."""
    processed = folder / "processed"
    target = processed if processed.exists() else folder
    return os.access(target, os.W_OK) and bool(target.stat().st_mode & stat.S_IWUSR)


def processing_lock(dataset_dir: Path) -> FileLock:
    """An inter-process lock for one dataset folder, held while PyG processes or reads it.

    PyG writes ``processed/*.pt`` in place, so a second process (another search worker, another
    benchmark job) reading the folder while the first one is still writing gets a truncated
    file (``EOFError`` from ``torch.load``). The lock file lives under ``cache_dir()/locks``,
    named by the folder's resolved path, so a read-only data root needs no write access.
    """
    from filelock import FileLock

    locks = cache_dir() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    return FileLock(str(locks / f"{dataset_dir.name}-{_path_key(dataset_dir)}.lock"))


def _path_key(folder: Path) -> str:
    """A short key naming ``folder`` by its resolved path."""
    return hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:24]


def _load_pyg_dataset(name: str, root: Path) -> Dataset:
    info = dataset_info(name)
    if info.family in TABLE_ONLY:  # bad input (exit 2), not missing data
        raise ValueError(
            f"dataset {name!r} ({info.pyg_name}) is answered from NAS-Bench-Graph's table only "
            f"(--space nasbench-graph --evaluator table); metanas does not load its graph, so it "
            f"cannot be trained or scored with data here"
        )
    folders = writable_folders(root, info)
    with (processing_lock(folders.family_root / info.pyg_name),
          _no_empty_folders_left(_built_on(folders, info))):
        return _load_pyg_dataset_unlocked(name, info, folders)


def _built_on(folders: DatasetFolders, info: DatasetInfo) -> Path:
    """The folder a failed load of ``info``'s dataset is cleaned in: the :func:`_class_folder`
    of a class that keeps one folder for all its names (``<root>/ModelNet`` for ModelNet10 in
    a ``ModelNet/raw`` filled before), else its :func:`dataset_folder`, the folder its lock
    guards: another name's folder of the class (``GNNBenchmarkDataset/CIFAR10/processed``) may
    be filled by another process meanwhile."""
    if info.family == PYG_PREFIX and info.folder in PYG_ONE_FOLDER_FOR_ALL_NAMES:
        return folders.class_folder
    return folders.named


@contextlib.contextmanager
def _no_empty_folders_left(folder: Path) -> Iterator[None]:
    """A context whose failure (a failed download, a class's ``process`` that raises) leaves no
    empty folder it made behind: ``folder`` and its parents that were not there before, and
    the folders in ``folder`` made since (PyG makes ``processed`` before processing)."""
    missing = [each for each in (folder, *folder.parents) if not each.exists()]
    before = _folders_in(folder)
    try:
        yield
    except BaseException:
        _remove_empty([*missing, *(_folders_in(folder) - before)])
        raise


def _folders_in(folder: Path) -> set[Path]:
    """The folders in ``folder``, at any depth (none when it does not exist)."""
    return {Path(parent, name) for parent, names, _ in os.walk(folder) for name in names}


def _remove_empty(folders: list[Path]) -> None:
    """Remove those of ``folders`` (created by a failed load) that are empty, deepest first."""
    for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
        with contextlib.suppress(OSError):  # not empty, or gone: leave it
            folder.rmdir()


def _load_pyg_dataset_unlocked(name: str, info: DatasetInfo, folders: DatasetFolders) -> Dataset:
    from torch_geometric import datasets as pyg_datasets

    family_root = folders.family_root
    check_torch_files(folders, info)
    loaders: dict[str, Callable[[], Dataset]] = {
        "planetoid": lambda: _planetoid(str(family_root), info.pyg_name),
        "actor": lambda: pyg_datasets.Actor(str(family_root / info.pyg_name)),
        PYG_PREFIX: lambda: pyg_class_dataset(name, folders.class_folder),
    }
    loader = loaders.get(info.family) or functools.partial(  # tu, webkb, airports, amazon, coauthor
        getattr(pyg_datasets, FAMILY_CLASSES[info.family]), str(family_root), info.pyg_name)
    try:
        return loader()
    except (OSError, RuntimeError) as error:
        if _has_raw_folder(family_root, info) and not _looks_like_download(error):
            raise
        raise DatasetNotFoundError(
            f"dataset {name!r} is not in {family_root / info.pyg_name} and could not be "
            f"downloaded ({type(error).__name__}: {error}). Put its PyG raw files there, or point "
            f"--data-root / METANAS_DATA at a folder that holds "
            f"{Path(info.folder, info.pyg_name, 'raw')}."
        ) from error


def _has_raw_folder(family_root: Path, info: DatasetInfo) -> bool:
    """Whether a raw folder of ``info``'s dataset exists under ``family_root`` now: derived
    again after a failed load, as the load may have made one (PyG makes ``raw/`` before it
    downloads, in the spelling of its class)."""
    return any(raw.is_dir() for raw in dataset_folders(family_root, info).raw)


def check_torch_files(folders: DatasetFolders, info: DatasetInfo) -> None:
    """Refuse ``processed/*.pt`` files of a dataset, and a ``pyg:`` dataset's raw ``.pt`` and
    ``.pth`` files, that need full unpickling to load.

    PyG writes processed files with tensors and plain containers only (they load with
    ``torch.load(weights_only=True)`` once ``torch_geometric`` registered its classes), but
    unpickles ``pre_transform.pt`` and ``pre_filter.pt`` fully, and ``data.pt`` too when its safe
    load fails; its readers of raw ``.pt`` files (``torch_geometric.io.fs.torch_load``:
    MNISTSuperpixels, GNNBenchmarkDataset's MNIST, ...) also fall back to a full unpickle, though
    the files they download hold tensors, lists and dicts only. A file planted in a writable data
    root would run code: such a file raises ``pickle.UnpicklingError`` naming it, before PyG
    opens anything.
    """
    importlib.import_module("torch_geometric")  # registers PyG's classes as safe to load
    processed = _processed_folders(folders, info)
    raw = folders.raw if info.family == PYG_PREFIX else ()
    for path in _files(processed, (".pt",)):
        _refuse_if_unsafe(path, "PyG writes these files with tensors only",
                          f"Delete {path.parent} to rebuild it from the raw files.")
    for path in _files(raw, (".pt", ".pth"), deep=True):
        _refuse_if_unsafe(path, "the raw files PyG downloads hold tensors, lists and dicts only",
                          "Replace it with the file the dataset's download holds (or delete it, "
                          "and PyG downloads it again).")


def _files(folders: Iterable[Path], endings: tuple[str, ...], deep: bool = False) -> list[Path]:
    """The files whose names end with one of ``endings`` in those of ``folders`` that exist (at
    any depth where ``deep``), sorted; each folder is listed once, whatever ``endings`` holds."""
    return sorted({f for folder in folders if folder.is_dir()
                   for f in (folder.rglob("*") if deep else folder.iterdir())
                   if f.name.endswith(endings) and f.is_file()})


def _refuse_if_unsafe(path: Path, why_safe: str, what_to_do: str) -> None:
    """Raise ``pickle.UnpicklingError`` naming ``path`` if it does not load with
    ``torch.load(weights_only=True)``: as needing code unpickled where torch names a global it
    refused, else as damaged (a truncated download, an empty or foreign file), which needs the
    same remedy and no warning about code. A zip-format file is memory-mapped, so a large raw
    file is not read twice."""
    import zipfile

    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as error:  # noqa: BLE001 - torch raises several types for bad files
        reason = _load_failure(error)
        if "Unsupported global" in str(error):
            raise pickle.UnpicklingError(
                f"refusing to load {path}: it does not load without unpickling code ({reason}), "
                f"and {why_safe}. {what_to_do}"
            ) from None
        raise pickle.UnpicklingError(
            f"refusing to load {path}: it is damaged or not a file torch.save wrote "
            f"({type(error).__name__}: {reason}). {what_to_do}"
        ) from None


def _load_failure(error: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` failed, in a line: the global it refused where it
    says one ("Unsupported global: GLOBAL getattr ..."), else the error's last line."""
    lines = str(error).strip().splitlines() or [type(error).__name__]
    refused = [line.split("WeightsUnpickler error:")[-1].split(". ")[0].strip()
               for line in lines if "Unsupported global" in line]
    return (refused or lines[-1:])[0][:200]


def _processed_folders(folders: DatasetFolders, info: DatasetInfo) -> list[Path]:
    """Where PyG keeps the processed files of ``info``'s dataset: ``<name>/processed`` under
    ``family_root`` in any spelling (see :func:`dataset_folder`); for a ``pyg:`` class every
    ``processed*`` folder under its class folder, as its class chooses the place: beside NAME's
    folder (ModelNet), under a name of its own (CoraFull's ``cora``), per variant (ZINC)."""
    family_root, top = folders.family_root, folders.class_folder
    if info.family != PYG_PREFIX:
        return [d / "processed" for d in family_root.iterdir()
                if normalize(d.name) == normalize(info.pyg_name)] if family_root.is_dir() else []
    return [d for d in top.rglob("processed*") if d.is_dir()] if top.is_dir() else []


def _class_folder(family_root: Path, info: DatasetInfo, named: Path) -> Path:
    """The folder a ``pyg:`` dataset's class is built on: its class folder ``<root>/<Class>``
    (``family_root`` itself with NAME, else ``named``, the class's folder there in any
    spelling); NAME's folder ``named`` (``<Class>/<NAME>``) for a class that keeps one folder
    for all its names (:data:`~nas.pyg_classes.PYG_ONE_FOLDER_FOR_ALL_NAMES`), unless that has
    no ``raw`` and the class folder's ``raw``, filled before NAME had a folder of its own, holds
    NAME."""
    if not info.folder:
        return named
    holds = PYG_ONE_FOLDER_FOR_ALL_NAMES.get(info.folder)
    if holds is None:
        return family_root
    shared_raw = family_root / "raw"
    if not (named / "raw").is_dir() and shared_raw.is_dir() and holds(shared_raw) == info.pyg_name:
        return family_root
    return named


#: the only globals Planetoid's raw files (Python 2 pickles) hold: numpy arrays, a scipy CSR
#: matrix and the graph as a dict of lists
_PLANETOID_GLOBALS = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"), ("scipy.sparse.csr", "csr_matrix"),
    ("scipy.sparse._csr", "csr_matrix"), ("collections", "defaultdict"),
    ("__builtin__", "list"), ("builtins", "list"),
})


class _PlanetoidUnpickler(pickle.Unpickler):
    """Unpickles Planetoid's raw files and refuses any other global, so a planted raw file in a
    data root cannot run code (PyG itself reads them with plain ``pickle.load``)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PLANETOID_GLOBALS:
            raise pickle.UnpicklingError(
                f"refusing to unpickle {module}.{name}: not a Planetoid raw file "
                f"(only numpy arrays, a scipy CSR matrix and a dict of lists are read)"
            )
        return super().find_class(module, name)


def _planetoid(root: str, name: str) -> Dataset:
    """PyG's ``Planetoid``, its raw pickles read by :class:`_PlanetoidUnpickler`."""
    import types

    from torch_geometric import datasets as pyg_datasets
    from torch_geometric.io import planetoid

    restricted = types.SimpleNamespace(
        load=lambda file, **kwargs: _PlanetoidUnpickler(file, **kwargs).load())
    with module_attribute(planetoid, "pickle", restricted):
        return pyg_datasets.Planetoid(root, name)


def _looks_like_download(error: BaseException) -> bool:
    import urllib.error

    text = f"{type(error).__name__} {error}".lower()
    return isinstance(error, urllib.error.URLError) or any(
        word in text for word in ("urlopen", "download", "name or service", "network", "resolve")
    )


class Task:
    """A dataset, its split, its metric and its dimensions.

    Node tasks hold one graph with boolean ``train_mask``/``val_mask``/``test_mask``; graph tasks
    hold a dataset and index tensors ``splits["train"|"val"|"test"]`` (stratified, by ``seed``;
    a ``pyg:`` class's official split where it has one, :data:`~nas.pyg_classes.PYG_SPLITS` and
    :data:`~nas.pyg_classes.PYG_TRAIN_SPLITS`, val carved out of the latter's training graphs).
    The metric is accuracy; the test split is recorded but never used to select. Graphs without
    node features get one-hot degree features (:class:`DegreeFeatures`), but a ``pyg:`` class's
    meshes their positions (:func:`~nas.pyg_classes.with_mesh_edges`); features of another dtype
    are cast to float32 (:func:`with_float32_features`). A task on graphs held
    in memory rather than named: :class:`DataTask`.

    Args:
        name: dataset name (any spelling, see :data:`DATASETS`), ``tu:NAME`` or
            ``pyg:CLASS[:NAME]`` (see :func:`resolve_dataset`).
        root: data root (see :func:`default_data_root`).
        seed: split seed for datasets without a fixed public split.
    """

    metric = "accuracy"

    def __init__(self, name: str, root: str | Path | None = None, seed: int = 0) -> None:
        self.name = resolve_dataset(name)
        self.info = dataset_info(self.name)
        self.root = Path(root).expanduser() if root else default_data_root()
        self.seed = seed

    @functools.cached_property
    def level(self) -> str:
        """``"node"``, ``"graph"`` or ``"image"``; a ``pyg:`` dataset's is read from its data, as a
        :class:`DataTask`'s (one graph: node task, several: graph task)."""
        return self.info.level or _data_level(self.dataset, None, self.name)

    @functools.cached_property
    def dataset(self) -> Dataset:
        """Graph/node tasks: the PyG dataset; image tasks: an :class:`ImageDataset`."""
        if self.info.level == "image":
            return load_image_dataset(self.name, self.root)  # type: ignore[return-value]
        dataset = _load_pyg_dataset(self.name, self.root)  # a pyg: class's meshes with edges
        check_edges(dataset, self.name)
        dataset = with_node_features(dataset)
        if self.info.level is None:  # a pyg: dataset: class labels, checked as a DataTask's
            check_class_labels(dataset, _data_level(dataset, None, self.name), self.name)
        return dataset

    @functools.cached_property
    def data(self) -> Data:
        """Node tasks: the graph with its three masks."""
        if self.level != "node":
            raise AttributeError(f"{self.name} is a graph task: use .dataset and .splits")
        data = with_node_split(self.dataset[0], self.seed)
        check_split_sizes(self.name, "nodes", {s: int(data[f"{s}_mask"].sum()) for s in SPLITS})
        return data

    @functools.cached_property
    def splits(self) -> dict[str, Tensor]:
        """Graph tasks: index tensors of the train/val/test graphs: the dataset's official
        split where it has one (:func:`~nas.pyg_classes.with_official_split`,
        :func:`~nas.pyg_classes.with_official_train_test`), else 80/10/10,
        stratified."""
        if self.level != "graph":
            raise AttributeError(
                f"{self.name} is a {self.level} task: splits are for graph tasks (node tasks: "
                f".data and its masks; image tasks: .dataset.x/.y per split)")
        splits = getattr(self.dataset, "official_split", None)
        if splits is None:
            splits = stratified_split(graph_labels(self.dataset), self.seed, GRAPH_SPLIT)
        check_split_sizes(self.name, "graphs", {s: int(idx.numel()) for s, idx in splits.items()})
        return splits

    @property
    def num_features(self) -> int:
        if self.level == "image":
            return self.dataset.num_channels  # type: ignore[attr-defined]
        return int(self.data.num_features if self.level == "node" else self.dataset[0].num_features)

    @property
    def num_classes(self) -> int:
        return int(self.dataset.num_classes)

    @functools.cached_property
    def fingerprint(self) -> str | None:
        """None: a dataset metanas loads by name is identified by its name; but a ``pyg:``
        class with official splits has its :func:`data_fingerprint` (the three splits' graphs
        and which split each is in), as a :class:`DataTask` has: its name searched its training
        split (or training graphs) alone before (re-split 80/10/10), and a study of those trials
        is refused."""
        if self.info.family != PYG_PREFIX or not has_official_split(*pyg_parts(self.name)):
            return None
        return data_fingerprint(self)

    def describe(self) -> dict[str, Any]:
        return {
            "dataset": self.name, "level": self.level, "metric": self.metric, "seed": self.seed,
            "num_features": self.num_features, "num_classes": self.num_classes,
        }

    def __repr__(self) -> str:
        level = vars(self).get("level", self.info.level)  # a pyg: dataset's: None until read
        return f"Task({self.name!r}, level={level!r}, root={str(self.root)!r})"


class DataTask(Task):
    """A task on graphs the caller holds in memory: a ``torch_geometric.data.Data``, a list of
    them, or any PyG dataset (``KarateClub()``, ``FakeDataset(...)``, an ``InMemoryDataset`` of
    one's own). Nothing is read from or written to a data root, and the caller's objects are
    not modified.

    One graph is a node task: its own ``train_mask``/``val_mask``/``test_mask`` when it has all
    three (boolean, ``(N,)``, or ``(N, k)`` for k splits of which ``seed % k`` is used), else a
    seeded per-class split (:func:`with_node_split`); only some of the three is an error.
    Several graphs are a graph task with a seeded stratified 80/10/10 split, or the split given
    as ``splits`` (an official one: each split's graph indices). Labels ``y`` are
    integer classes, one per node or one per graph. Node features ``x`` are float32 in the
    task's graphs, cast there when given as float64 (numpy's), integers or bool (the caller's
    keep theirs; :func:`with_float32_features`). The split is made (and refused, naming
    what is wrong) when the task is built. ``run_search(SearchConfig(dataset=task, ...))``
    searches it; the study records ``name`` as its dataset, so give each data set its own name.

    Args:
        data: the graph(s).
        name: the dataset name studies and stored models record; not one of :data:`DATASETS`.
        level: ``"node"`` or ``"graph"`` (default: node for one graph, graph for several).
        seed: split seed.
        splits: a graph task's split, ``{"train": ..., "val": ..., "test": ...}``: indices of
            the graphs of each (disjoint; a graph in none is not used), used as given.
    """

    def __init__(
        self, data: Data | Dataset | list[Data], name: str, level: str | None = None, seed: int = 0,
        splits: Mapping[str, Tensor | Iterable[int]] | None = None,
    ) -> None:
        self.name = _own_dataset_name(name)
        dataset = _as_dataset(data, self.name)
        self.level = _data_level(dataset, level, self.name)
        self.info = DatasetInfo("memory", self.name, self.level, "")
        self.root = None  # type: ignore[assignment]
        self.seed = seed
        self.dataset = with_node_features(dataset)  # type: ignore[misc]
        check_class_labels(self.dataset, self.level, self.name)
        if splits is not None:
            self.splits = given_split(splits, self.level, len(self.dataset), self.name)  # type: ignore[misc]
        self.data if self.level == "node" else self.splits  # noqa: B018 - split now, fail now

    def __repr__(self) -> str:
        return f"DataTask({self.name!r}, level={self.level!r}, graphs={len(self.dataset)})"

    @functools.cached_property
    def fingerprint(self) -> str:
        """The task's :func:`data_fingerprint`."""
        return data_fingerprint(self)


def data_fingerprint(task: Task) -> str:
    """SHA-256 (hex) of the data ``task`` searches on: its level, each graph's ``x``,
    ``edge_index`` and ``y``, and the split it uses (a node task's masks, a graph task's
    indices). A study records it, so that one resumed with other graphs under the same name is
    refused; the same for equal tensors in any process, pickled or not."""
    digest = hashlib.sha256(task.level.encode())
    if task.level == "node":
        _hash_tensors(digest, task.data, ("x", "edge_index", "y", *MASKS))
    else:
        for graph in task.dataset:
            _hash_tensors(digest, graph, ("x", "edge_index", "y"))
        _hash_tensors(digest, task.splits, SPLITS)
    return digest.hexdigest()


def _hash_tensors(digest: Any, tensors: Any, keys: tuple[str, ...]) -> None:
    """Feed ``tensors[key]`` for each key (its name, dtype, shape and bytes) to ``digest``."""
    for key in keys:
        tensor = tensors[key] if key in tensors else None
        if tensor is None:
            digest.update(f"{key}:None;".encode())
            continue
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())


def load_task(name: str | Task, root: str | Path | None = None, seed: int = 0,
              fingerprint: str | None = None) -> Task:
    """Resolve ``name`` and return its :class:`Task` (data is read lazily); a :class:`Task`
    (e.g. a :class:`DataTask`) is returned as it is. ``fingerprint``: the task's
    :attr:`Task.fingerprint` where it is known already (another process computed it on the same
    data: a search's workers get their parent's), which is then not computed again; ``None``:
    computed when asked for. A :class:`Task` given keeps its own."""
    if isinstance(name, Task):
        return name
    task = Task(name, root, seed)
    if fingerprint is not None:
        task.fingerprint = fingerprint  # type: ignore[misc] - the cached property's value
    return task


def _own_dataset_name(name: str) -> str:
    """``name`` for a :class:`DataTask`, refused when it is empty or names a dataset metanas
    loads itself (its studies would mix with that dataset's, and strategies that reload the
    task by name would read the other data)."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a DataTask needs a non-empty name, got {name!r}")
    try:
        known = resolve_dataset(name)
    except ValueError:
        return name.strip()
    raise ValueError(f"name {name!r} is metanas's dataset {known!r}; give your data a name of its "
                     f"own (not one of {sorted(DATASETS)})")


def _as_dataset(data: Any, name: str) -> Dataset:
    """A PyG dataset as it is; a ``Data`` or a list of them collated into an in-memory one;
    refused when a graph has no edges (:func:`check_edges`), or, before a list is collated, when
    its graphs are not alike (:func:`check_graphs_alike`): PyG's collate fails with a bare
    ``KeyError`` or size error on such a graph, or drops from all graphs a key the first lacks."""
    from torch_geometric.data import Data, Dataset

    if isinstance(data, Dataset):
        check_edges(data, name)
        return data
    graphs = [data] if isinstance(data, Data) else list(data) if isinstance(data, (list, tuple)) else None
    if not graphs or not all(isinstance(graph, Data) for graph in graphs):
        raise TypeError(f"a DataTask takes a torch_geometric Data, a non-empty list of them or a "
                        f"PyG Dataset, got {type(data).__name__}")
    check_edges(graphs, name)
    check_graphs_alike(graphs, name)
    return in_memory(graphs)


def _data_level(dataset: Dataset, level: str | None, name: str) -> str:
    """``level``, checked (node tasks need exactly one graph), else guessed from the size."""
    if level is None:
        return "node" if len(dataset) == 1 else "graph"
    if level not in ("node", "graph"):
        raise ValueError(f"could not resolve level {level!r} among choices ['graph', 'node']")
    if level == "node" and len(dataset) != 1:
        raise ValueError(f"{name!r} has {len(dataset)} graphs; a node task is one graph")
    return level


def check_class_labels(dataset: Dataset, level: str, name: str) -> None:
    """``ValueError`` unless the first graph's ``y`` holds integer class labels, one per node
    (node task) or one per graph (graph task)."""
    graph = dataset[0]
    y = getattr(graph, "y", None)
    expected = graph.num_nodes if level == "node" else 1
    if y is None or y.is_floating_point() or y.dtype == torch.bool or y.numel() != expected:
        got = "no y" if y is None else f"y of dtype {y.dtype} and shape {tuple(y.shape)}"
        raise ValueError(f"{name!r}: a {level} task needs integer class labels y, one per "
                         f"{level} ({expected} here), got {got}")


#: how a user gives graphs without edges theirs, with metanas's dependencies (KNNGraph and
#: RadiusGraph need pyg-lib or torch-cluster, which metanas does not install; Delaunay needs scipy)
EDGES_IN_PYTHON = ("a mesh's with torch_geometric.transforms.FaceToEdge(), a point cloud's with "
                   "Compose([Delaunay(), FaceToEdge()]) (KNNGraph needs pyg-lib or torch-cluster "
                   "installed, which metanas does not install)")


def check_edges(graphs: Dataset | list[Data], name: str) -> None:
    """``ValueError`` naming the first of ``graphs`` without an ``edge_index``, which every
    network searched here passes messages along (a mesh has faces instead, a point cloud
    none): see :func:`_first_graph_without_edges`."""
    index = _first_graph_without_edges(graphs)
    if index is not None:
        graph = graphs[index]
        raise ValueError(f"{name!r}: a task needs graphs with edges (edge_index); graph {index} "
                         f"has none (it holds {sorted(graph.keys())}). Give them edges in Python "
                         f"and search them as a DataTask: {EDGES_IN_PYTHON}")


def _first_graph_without_edges(graphs: Dataset | list[Data]) -> int | None:
    """The index of the first of ``graphs`` without an ``edge_index``, None when all have one.
    An in-memory dataset without a transform is answered by its collated storage, graph 0 when
    it holds none (PyG collates the keys of the first graph, and fails on a later graph that
    lacks one); any other by reading each graph."""
    storage = _collated_storage(graphs)
    if storage is not None:
        return None if storage.get("edge_index") is not None else 0
    return next((index for index, graph in enumerate(graphs) if getattr(graph, "edge_index", None) is None), None)


def _collated_storage(graphs: Dataset | list[Data]) -> Data | None:
    """The one ``Data`` an in-memory dataset without a transform collates its graphs into (each
    key of every graph joined, in the dtype ``torch.cat`` promotes them to); None for any other
    ``graphs``, whose graphs are read one by one."""
    from torch_geometric.data import Data, InMemoryDataset

    storage = getattr(graphs, "_data", None)
    if isinstance(graphs, InMemoryDataset) and graphs.transform is None and isinstance(storage, Data):
        return storage
    return None


def check_graphs_alike(graphs: list[Data], name: str) -> None:
    """``ValueError`` naming the first of ``graphs`` PyG's collate cannot join with graph 0 as
    they are, and what it has or lacks that graph 0 does not: see :func:`_first_graph_unlike`;
    when it is their y, and both hold a label per node, that node labels are given on several
    graphs (a node task is one graph), not that their shapes differ; graphs alike whose y all
    hold a label per node, of more than one node (:func:`_node_labels_throughout`), are refused
    as node labels too (not as a graph task's labels of another shape)."""
    unlike = _first_graph_unlike(graphs)
    if unlike is None:
        if _node_labels_throughout(graphs):
            raise _node_labels_refused(graphs, name, 1)
        return
    index, key, has, graph_0_has = unlike
    if key == "y" and _labels_per_node(graphs[0]) and _labels_per_node(graphs[index]):
        raise _node_labels_refused(graphs, name, index)
    raise ValueError(f"{name!r}: graph {index} has {has}; graph 0 has {graph_0_has}. A task's "
                     f"graphs are joined into one dataset with graph 0's keys: every graph "
                     f"needs the same keys, each of the same shape but for its number of "
                     f"nodes or edges (x: of features), y of the same shape, "
                     f"integers in all or floating-point in all")


def _first_graph_unlike(graphs: list[Data]) -> tuple[int, str, str, str] | None:
    """The index of the first of ``graphs`` whose keys or shapes (:func:`_joined_shapes`) are
    not graph 0's, or whose y is floating-point where graph 0's is integer or the other way
    round (:func:`_real_valued`), with the first key that differs and what it and graph 0 hold
    there in words (:func:`_held`, 'y of dtype torch.float32'); None when all are alike.
    PyG's collate takes its keys from graph 0: it fails with a bare ``KeyError`` on a later
    graph that lacks one, or a size error on other shapes, drops from every graph a key graph 0
    lacks (its x too), and gives every y the dtype ``torch.cat`` promotes them to (int64 and
    float32 labels: float32, no class labels; int32 and int64: int64, the same class labels).
    x of other dtypes are alike: collate joins them
    in the one they promote to (then cast to float32, :func:`with_float32_features`). A later
    graph's ``num_nodes`` where graph 0 has none is alike too: collate drops it, and counts the
    graph's nodes from its other keys, as graph 0's, unless they count another number."""
    first, first_y = _joined_shapes(graphs[0]), graphs[0].get("y")
    for index, graph in enumerate(graphs[1:], 1):
        shapes = _joined_shapes(graph)
        if "num_nodes" in shapes and "num_nodes" not in first:
            counted = _node_count(graph, without_num_nodes=True)
            if counted != graph.num_nodes:
                return (index, "num_nodes", f"num_nodes {graph.num_nodes}, {_nodes(counted)} "
                        f"without it", "no num_nodes")
            del shapes["num_nodes"]
        if shapes != first:
            lacking = object()
            key = next(key for key in {**first, **shapes}
                       if first.get(key, lacking) != shapes.get(key, lacking))
            return index, key, _held(graph, key), _held(graphs[0], key)
        if _real_valued(graph.get("y")) != _real_valued(first_y):
            return index, "y", f"y of dtype {graph.y.dtype}", f"y of dtype {first_y.dtype}"
    return None


def _real_valued(y: Any) -> bool:
    """Whether ``y`` is a tensor of floating-point (or complex) values: joined with integer
    labels, ``torch.cat`` makes every label one; integers (and bool) of any width join as the
    widest integer, class labels still."""
    return isinstance(y, Tensor) and (y.is_floating_point() or y.is_complex())


def _node_count(graph: Data, without_num_nodes: bool = False) -> int:
    """``graph``'s number of nodes as PyG counts it (``num_nodes``, else from x or its other
    keys, edge_index last), without its ``num_nodes`` when ``without_num_nodes``; PyG's warning
    that it counted from edge_index is not shown."""
    import warnings

    if without_num_nodes and "num_nodes" in graph:
        graph = copy.copy(graph)
        del graph.num_nodes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return graph.num_nodes


def _labels_per_node(graph: Data) -> bool:
    """Whether ``graph``'s y holds one entry per node (node labels)."""
    y = graph.get("y")
    return isinstance(y, Tensor) and y.dim() > 0 and y.size(0) == _node_count(graph)


def _node_labels_throughout(graphs: list[Data]) -> bool:
    """Whether ``graphs``, several, alike (:func:`_first_graph_unlike`), each hold a label per
    node (:func:`_labels_per_node`) of more than one node: y of one entry on graphs of one node
    each is a label per graph."""
    y = graphs[0].get("y")
    return (len(graphs) > 1 and isinstance(y, Tensor) and y.dim() > 0 and y.size(0) > 1
            and all(_labels_per_node(graph) for graph in graphs))


def _node_labels_refused(graphs: list[Data], name: str, index: int) -> ValueError:
    """The refusal of ``graphs`` whose y hold a label per node, naming graph 0's and graph
    ``index``'s nodes and labels: a node task is one graph."""
    return ValueError(f"{name!r}: its graphs have a class label y per node "
                      f"({_nodes_and_labels(graphs, 0)}; {_nodes_and_labels(graphs, index)}), "
                      f"but a node task is one graph: several graphs are a graph task, which "
                      f"needs one class label y per graph")


def _nodes_and_labels(graphs: list[Data], index: int) -> str:
    """Graph ``index``'s number of nodes and y's shape in words: 'graph 1: 5 nodes, y of shape [5]'."""
    graph = graphs[index]
    return f"graph {index}: {_nodes(_node_count(graph))}, y of shape {list(graph.y.shape)}"


def _nodes(count: int) -> str:
    """``count`` nodes in words that agree with it: '1 node', '5 nodes'."""
    return f"{count} node" if count == 1 else f"{count} nodes"


def _joined_shapes(graph: Data) -> dict[str, tuple[int, ...] | None]:
    """What collating needs alike in graphs: each key of ``graph``, with the shape of its value
    but for the dimension graphs are joined along (x: its features; edge_index: 2), y with its
    whole shape (one class label per graph); None for a value that is no tensor."""
    shapes: dict[str, tuple[int, ...] | None] = {}
    for key, value in graph.items():
        if not isinstance(value, Tensor):
            shapes[key] = None
            continue
        joined = graph.__cat_dim__(key, value) if key != "y" and value.dim() else None  # None: stacked
        dims = joined if isinstance(joined, tuple) else () if joined is None else (joined,)
        along = {dim % value.dim() for dim in dims}
        shapes[key] = tuple(size for dim, size in enumerate(value.shape) if dim not in along)
    return shapes


def _held(graph: Data, key: str) -> str:
    """``graph``'s ``key`` in words: 'no y', 'x of shape [2, 3]'."""
    if key not in graph:
        return f"no {key}"
    value = graph[key]
    return f"{key} of shape {list(value.shape)}" if isinstance(value, Tensor) else key


def with_node_features(dataset: Dataset) -> Dataset:
    """``dataset``, or a shallow copy of it whose graphs get one-hot degree features when they
    have none (as PyG's ``OneHotDegree`` gives IMDB-BINARY; after any transform of its own),
    graphs with positions ``pos`` too: only a ``pyg:`` class's meshes get their positions as
    features, as their faces' edges are made (:func:`~nas.pyg_classes.with_mesh_edges`); and
    whose features are float32 (:func:`with_float32_features`), the dtype the networks take."""
    dataset = with_float32_features(dataset)
    if dataset.num_node_features:
        return dataset
    return _with_transform(dataset, DegreeFeatures(_max_degree(dataset)))


def with_float32_features(dataset: Dataset) -> Dataset:
    """``dataset`` when its collated storage holds float32 ``x`` (or none), else a shallow copy
    of it whose ``x`` is float32: every network searched here is float32, and ``x`` of float64
    (numpy's), of integers (one-hot as int64) or bool failed every trial of the search
    ('expected scalar type Float but found Double'). Its integer labels ``y`` that cross-entropy
    does not take (:func:`_labels_to_cast`: int32, int16, int8) are cast to int64 there too: every
    trial failed ('expected target dtype to be Long or Byte, but got Int'). An in-memory
    dataset without a transform gets its collated storage cast once, in a shallow copy with no
    graphs cached from the caller's (the caller's dataset keeps its storage and cache; cast as
    each graph is read, a PROTEINS-sized float64 task trained 15-25% slower per epoch); any
    other a transform that casts each graph as it is read (:class:`Float32Features`)."""
    storage = _collated_storage(dataset)
    if storage is None:
        return _with_transform(dataset, Float32Features())
    cast = _float32_cast(storage)
    if cast is storage:
        return dataset
    dataset = copy.copy(dataset)
    dataset._data, dataset._data_list = cast, None
    return dataset


def _labels_to_cast(y: Any) -> bool:
    """Whether ``y`` is integer class labels of a dtype cross-entropy refuses (int32, int16,
    int8, unsigned ones but uint8), to be cast to int64; bool labels are refused as no
    classes (:func:`check_class_labels`), floating-point ones are no class labels."""
    return (isinstance(y, Tensor) and not _real_valued(y)
            and y.dtype not in (torch.int64, torch.uint8, torch.bool))


def _float32_cast(data: Data) -> Data:
    """``data`` when its ``x`` is float32 (or absent) and its labels need no cast
    (:func:`_labels_to_cast`), else a shallow copy of it with ``x`` cast to float32 and ``y`` to
    int64 where they need it."""
    x, y = data.get("x"), data.get("y")
    cast_x, cast_y = x is not None and x.dtype != torch.float32, _labels_to_cast(y)
    if not (cast_x or cast_y):
        return data
    data = copy.copy(data)
    if cast_x:
        data.x = x.float()
    if cast_y:
        data.y = y.long()
    return data


def _with_transform(dataset: Dataset, transform: Any) -> Dataset:
    """A shallow copy of ``dataset`` whose graphs go through ``transform`` after its own."""
    from torch_geometric.transforms import Compose

    dataset = copy.copy(dataset)
    dataset.transform = transform if dataset.transform is None else Compose([dataset.transform, transform])
    return dataset


def _max_degree(dataset: Dataset) -> int:
    from torch_geometric.utils import degree

    top = 0
    for graph in dataset:
        if graph.num_edges:
            top = max(top, int(degree(graph.edge_index[0], graph.num_nodes).max()))
    return min(top, DegreeFeatures.MAX_DEGREE)


class DegreeFeatures:
    """Node features for featureless graphs: one-hot degree, capped at ``max_degree``, given to
    a shallow copy of the graph (its tensors shared), not to the graph the dataset handed over:
    a DataTask's dataset not in memory hands over the caller's own graphs."""

    MAX_DEGREE = 128

    def __init__(self, max_degree: int) -> None:
        self.max_degree = max_degree

    def __call__(self, data: Data) -> Data:
        from torch_geometric.utils import degree

        data = copy.copy(data)
        deg = degree(data.edge_index[0], data.num_nodes).long().clamp(max=self.max_degree)
        data.x = torch.nn.functional.one_hot(deg, self.max_degree + 1).float()  # (N, D+1)
        return data

    def __repr__(self) -> str:
        return f"DegreeFeatures(max_degree={self.max_degree})"


class Float32Features:
    """A graph's ``x`` cast to float32 and its integer ``y`` to int64 where cross-entropy does
    not take them (:func:`_labels_to_cast`), given to a shallow copy of the graph (as
    :class:`DegreeFeatures` gives its features); a graph with neither to cast is handed on as
    it is."""

    def __call__(self, data: Data) -> Data:
        return _float32_cast(data)

    def __repr__(self) -> str:
        return "Float32Features()"


# image tasks ---------------------------------------------------------------------------------
#: IDX files of MNIST (train/test images and labels), as the usual mirrors name them
MNIST_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte.gz", "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz", "test_labels": "t10k-labels-idx1-ubyte.gz",
}
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
#: the last this many training images form the fixed validation split
MNIST_VAL_SIZE = 10_000
#: ``mnist14`` (the zoo variant) validates on fewer images: (validation, test) sizes. The test
#: split is all 10,000 test images: with 2,000 the measured accuracies of a zoo's networks were
#: so noisy that accuracy on the 1,000 validation images ranked them only at Kendall tau 0.91
MNIST14_EVAL_SIZES = (1_000, 10_000)


@dataclasses.dataclass(frozen=True)
class ImageDataset:
    """An image classification dataset held in memory as tensors.

    Shapes:
        ``x[split]``: ``(N, C, H, W)`` float32, normalised; ``y[split]``: ``(N,)`` int64; splits
        ``"train"``, ``"val"``, ``"test"``.
    """

    x: dict[str, Tensor]
    y: dict[str, Tensor]
    num_classes: int

    @property
    def num_channels(self) -> int:
        return int(self.x["train"].size(1))

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.x["train"].size(2)), int(self.x["train"].size(3))

    def __repr__(self) -> str:
        sizes = {split: int(y.numel()) for split, y in self.y.items()}
        return f"ImageDataset({sizes}, size={self.image_size}, classes={self.num_classes})"


def read_idx(path: Path) -> Tensor:
    """A (gzipped) IDX file as a uint8 tensor of its stored shape (LeCun's MNIST format)."""
    import gzip

    import numpy as np

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        blob = handle.read()
    if len(blob) < 4 or blob[0] != 0 or blob[1] != 0 or blob[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = blob[3]
    shape = tuple(int.from_bytes(blob[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(blob, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path} holds {data.size} bytes, its header says {shape}")
    return torch.from_numpy(data.reshape(shape).copy())


def load_image_dataset(name: str, root: Path) -> ImageDataset:
    """MNIST from ``root/MNIST/raw``: train = the first 50,000 training images, val = the last
    10,000, test = the 10,000 test images.

    ``mnist14`` is the cheap variant model zoos train on: images 2x2-average-pooled to 14x14, the
    same 50,000 training images, val = the last 1,000 training images and test = the 10,000
    test images (standard error of an accuracy near 0.9: about 0.3 points). Raises
    :class:`DatasetNotFoundError` naming the folder."""
    info = DATASETS[name]
    raw = root / info.folder / "raw"
    missing = [f for f in MNIST_FILES.values() if not (raw / f).is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"dataset {name!r} needs {missing} in {raw} (download them from an MNIST mirror, "
            f"or point --data-root / METANAS_DATA at a folder that holds MNIST/raw)"
        )
    images = {key: read_idx(raw / MNIST_FILES[f"{key}_images"]) for key in ("train", "test")}
    labels = {key: read_idx(raw / MNIST_FILES[f"{key}_labels"]).long() for key in ("train", "test")}
    x = {key: _normalise_mnist(value, pool=name == "mnist14") for key, value in images.items()}
    cut = x["train"].size(0) - MNIST_VAL_SIZE
    n_val, n_test = MNIST14_EVAL_SIZES if name == "mnist14" else (MNIST_VAL_SIZE, len(x["test"]))
    val = slice(x["train"].size(0) - n_val, None)
    return ImageDataset(
        x={"train": x["train"][:cut], "val": x["train"][val], "test": x["test"][:n_test]},
        y={"train": labels["train"][:cut], "val": labels["train"][val],
           "test": labels["test"][:n_test]},
        num_classes=10,
    )


def _normalise_mnist(images: Tensor, pool: bool) -> Tensor:
    x = images.unsqueeze(1).float().div_(255.0)  # (N, 1, 28, 28)
    if pool:
        x = torch.nn.functional.avg_pool2d(x, 2)  # (N, 1, 14, 14)
    return x.sub_(MNIST_MEAN).div_(MNIST_STD).contiguous()
