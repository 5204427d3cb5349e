"""Any dataset class of ``torch_geometric.datasets`` as a dataset name, ``pyg:CLASS`` or
``pyg:CLASS:NAME`` (``pyg:WikiCS``, ``pyg:HeterophilousGraphDataset:Roman-empire``): the class
looked up by its name, the checks that refuse before anything is read a class a name cannot
build or whose data no task here takes (with the reason, :data:`PYG_UNFIT`), the tables of
classes with official splits (:data:`PYG_SPLITS`, :data:`PYG_TRAIN_SPLITS`), building a
class's dataset, its official splits joined and its raw files read in sorted order
(:data:`PYG_GLOB_ORDER`), and giving a class's meshes the edges of their faces
and their positions as features (:func:`with_mesh_edges`).

:mod:`nas.tasks` resolves every dataset name with it (a class metanas lists a family of, such as
``Planetoid``, is that family's dataset there) and keeps the data root, handing a class its
folder in it; this module imports nothing of metanas but :mod:`nas.splits`.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import re
import sys
import threading
import types
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import torch

from nas.splits import SPLITS, graph_labels, validation_out_of_training
from search_spaces.resolver import normalize

if TYPE_CHECKING:
    from pathlib import Path

    from torch_geometric.data import Data, Dataset


#: prefix of a dataset named by its class in torch_geometric.datasets, ``pyg:WikiCS`` or
#: ``pyg:Amazon:Computers`` (``pyg:CLASS[:NAME]``); see :func:`pyg_class`
PYG_PREFIX = "pyg"
PYG_FORM = ("pyg:CLASS or pyg:CLASS:NAME, CLASS a dataset class of torch_geometric.datasets "
            "and NAME the name it takes (pyg:WikiCS, pyg:Amazon:Computers)")
#: a NAME as PyG spells it (a TUDataset's too): letters, digits, '_', '-', '.'
PYG_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"

#: pyg: classes whose ``split`` argument loads one of their official splits: the values it takes
#: for the train, val and test split. metanas loads the three and searches them as they are
PYG_SPLITS: dict[str, tuple[str, str, str]] = {
    "GNNBenchmarkDataset": ("train", "val", "test"),  # MNIST, CIFAR10 (CSL: PYG_WITHOUT_SPLIT)
    "MalNetTiny": ("train", "val", "test"),           # its default, None, loads all graphs
    "UPFD": ("train", "val", "test"),
}
#: pyg: classes whose boolean ``train`` argument loads their official training graphs (True,
#: its default) or test graphs (False), with no validation split: metanas loads both and
#: searches the test graphs as its test split, its val split carved out of the training graphs
#: (:func:`with_official_train_test`). PyG 2.8's other classes with a ``train`` are refused by
#: name (:data:`PYG_UNFIT`, or the arguments they need); one not known is refused as well
PYG_TRAIN_SPLITS = frozenset({"MNISTSuperpixels", "ModelNet", "GeometricShapes", "FAUST", "CoMA"})
#: pyg: datasets whose official splits metanas searches (said when refusing others): those of
#: :data:`PYG_SPLITS` and :data:`PYG_TRAIN_SPLITS` it takes (not UPFD, which needs a feature
#: argument, nor GeometricShapes: :data:`PYG_UNFIT`)
PYG_SPLITS_SEARCHED = ("GNNBenchmarkDataset:MNIST", "GNNBenchmarkDataset:CIFAR10", "MalNetTiny",
                       "MNISTSuperpixels", "ModelNet:10", "ModelNet:40", "FAUST", "CoMA")
#: pyg: datasets (CLASS:NAME) whose class takes a ``split`` that they ignore (no official
#: split: all graphs whatever it says); split by seed as a dataset without a split is
PYG_WITHOUT_SPLIT = frozenset({"GNNBenchmarkDataset:CSL"})
#: pyg: classes whose ``split`` takes values other than one train, val and test split
PYG_OTHER_SPLITS: dict[str, tuple[str, ...]] = {
    "GraphLandDataset": ("RL", "RH", "TH", "THI"),  # settings of one graph's masks
}
#: pyg: classes built with arguments at the value PyG gives them when they are not passed, because
#: PyG warns then that its default changed: each class's arguments and values (the data is what
#: the default loads). PyG 2.8's only such class is WikiCS ("now returns an undirected graph by
#: default. Please explicitly specify 'is_undirected=False' ...")
PYG_DEFAULTS_PASSED: dict[str, dict[str, object]] = {"WikiCS": {"is_undirected": True}}


#: the names PyG's ModelNet takes, each the number of its categories
_MODELNET_NAMES = ("10", "40")


def _modelnet_name(raw: Path) -> str | None:
    """"10" or "40" for a ModelNet raw folder of 10 or 40 categories (a folder each, as its
    download holds them and its ``process`` reads them as classes); None for another count."""
    categories = sum(1 for entry in raw.iterdir() if entry.is_dir())
    return {int(name): name for name in _MODELNET_NAMES}.get(categories)


#: pyg: classes that keep ``raw/`` and ``processed/`` in the root they are given whatever NAME
#: they take, and load processed files without checking which NAME made them (so ModelNet's
#: "40" loaded the graphs "10" had processed there): metanas builds each NAME on a root of its
#: own, ``<Class>/<NAME>``. Each says which NAME a ``<Class>/raw`` filled before holds (None:
#: it cannot tell), so that folder is still used for that NAME. PyG 2.8's other classes with a
#: name keep a folder per name (HydroNet's names select graphs of the same processed files)
PYG_ONE_FOLDER_FOR_ALL_NAMES: dict[str, Callable[[Path], str | None]] = {"ModelNet": _modelnet_name}
#: the names of each class of :data:`PYG_ONE_FOLDER_FOR_ALL_NAMES`, one of which must be given:
#: built without one, the class would use its default name on the class folder all names
#: shared before (:func:`_check_pyg_name_given`)
PYG_NAMES_NEEDED: dict[str, tuple[str, ...]] = {"ModelNet": _MODELNET_NAMES}
#: pyg: datasets (CLASS, or CLASS:NAME) whose targets are real numbers (regression): refused by
#: name (:data:`PYG_UNFIT`) before anything is downloaded or read; a class not listed whose
#: labels are no classes is refused once read (:func:`nas.tasks.check_class_labels`)
PYG_REGRESSION = frozenset({
    "QM9", "QM7b", "MD17", "HydroNet", "ZINC", "AQSOL", "PCQM4Mv2", "OMDB",
    "MoleculeNet:ESOL", "MoleculeNet:FreeSolv", "MoleculeNet:Lipo",
})
#: pyg: classes whose ``process`` reads raw files in ``glob.glob``'s order, the order their
#: directory lists them in, which differs between filesystems and machines: metanas processes
#: them with that module's glob sorted (:func:`files_in_sorted_order`), so the same raw files
#: give the same graphs in the same order (split, fingerprint) on any machine. Of the other
#: mesh and point classes searched, CoMA sorts its glob, FAUST reads numbered files,
#: MNISTSuperpixels one file, and MedShapeNet what its server lists, no directory
PYG_GLOB_ORDER = frozenset({"ModelNet"})
#: pyg: classes whose processing imports a package metanas does not install: the module each
#: imports, which is also its name to ``pip install``. Its ``ModuleNotFoundError`` is refused
#: naming it (:func:`_missing_package`): MedShapeNet's ``process`` downloads its meshes through
#: it, and failed with a bare ``No module named 'MedShapeNet'``; its processed files load
#: without it (``process`` does not run), so the name is not refused as it is read
PYG_PACKAGES_NEEDED: dict[str, str] = {"MedShapeNet": "MedShapeNet"}
_NODES_OF_MANY = "it classifies the nodes of many graphs (a node task here is one graph)"
_REGRESSION = "its targets are real numbers (regression), not classes"
_TEMPORAL = "it is a temporal knowledge graph (link prediction over time)"
_QA = "it is a question-answering dataset for language models"
#: pyg: datasets (CLASS, or CLASS:NAME) whose data no task of metanas takes (it searches the
#: classes of one graph's nodes or of whole graphs): why, said as the name is read
PYG_UNFIT: dict[str, str] = {
    **dict.fromkeys(sorted(PYG_REGRESSION), _REGRESSION),
    "GNNBenchmarkDataset:PATTERN": _NODES_OF_MANY, "GNNBenchmarkDataset:CLUSTER": _NODES_OF_MANY,
    "GNNBenchmarkDataset:TSP": "it classifies edges (a link task)",
    "PPI": "it gives the nodes of many graphs 121 labels each (multi-label)",
    "LRGBDataset": ("its datasets are no classification of one graph's nodes or of graphs "
                    "(PascalVOC-SP and COCO-SP classify the nodes of many graphs, PCQM-Contact "
                    "predicts links, Peptides-func is multi-label, Peptides-struct regression)"),
    "ShapeNet": "it labels the points of many shapes (part segmentation: nodes of many graphs)",
    "S3DIS": "it labels the points of many point clouds (segmentation: nodes of many graphs)",
    "SHREC2016": ("it matches the points of partial shapes to a full one's (correspondence: "
                  "nodes of many graphs)"),
    "GEDDataset": "its graphs have no classes, only edit distances between pairs of them",
    "PCPNetDataset": "it estimates normals of point clouds (regression)",
    "ICEWS18": _TEMPORAL, "GDELT": _TEMPORAL,
    "FB15k_237": "it is a knowledge graph for link prediction",
    "WebQSPDataset": _QA, "CWQDataset": _QA,
    "GitMolDataset": "it pairs molecules with images and text (multi-modal)",
    "ProteinMPNNDataset": "it designs protein sequences (labels per residue over many structures)",
    "Teeth3DS": "it labels the points of many 3D scans of teeth (segmentation)",
    "OPFDataset": "its targets are optimal power flows (regression on heterogeneous graphs)",
    "CornellTemporalHyperGraphDataset": "it is a temporal hypergraph (hyperedge prediction)",
    # meshes (faces, no edge_index) are searched on their faces' edges (with_mesh_edges), but:
    "DynamicFAUST": ("its meshes are motion sequences without class labels (each graph's pos "
                     "holds a mesh per frame)"),
    "TOSCA": "its meshes have no class labels (it is for shape correspondence)",
    "GeometricShapes": ("its official training graphs are one per class (40 of 40 classes), "
                        "which leaves none for the validation split a search selects with"),
}
#: keys of :data:`PYG_UNFIT` whose graphs have integer classes (graph classification) but whose
#: official split leaves a search nothing to select with: their refusal says that alone
PYG_UNFIT_SPLIT = frozenset({"GeometricShapes"})


def pyg_class(name: str) -> tuple[type, str | None]:
    """The class and NAME (None without one) of a ``pyg:CLASS[:NAME]`` name: a dataset class of
    ``torch_geometric.datasets`` (looked up by its name there, case-insensitively; nothing is
    imported by path) whose data a task of metanas takes (:func:`_check_pyg_fit`, checked first:
    a class refused for its data is refused so whatever arguments it lacks, as no DataTask takes
    its data either), built with the data root and NAME only; ``ValueError`` otherwise."""
    class_name, has_name, pyg_name = name.partition(":")[2].partition(":")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", class_name) or (
            has_name and not re.fullmatch(PYG_NAME_PATTERN, pyg_name)):
        raise ValueError(f"could not resolve dataset {name!r}: a pyg: name is {PYG_FORM} (CLASS "
                         f"letters, digits and '_'; NAME letters, digits, '_', '-', '.')")
    cls = _pyg_dataset_class(class_name, name)
    _check_pyg_fit(cls, pyg_name if has_name else None, name)
    _check_pyg_arguments(cls, bool(has_name), name)
    return cls, pyg_name if has_name else None


def canonical_pyg_name(cls: type, pyg_name: str | None, name: str) -> str:
    """``pyg:<Class>[:NAME]``, the class as PyG spells it and NAME as given (its classes spell
    their folders differently), once its ``split`` and ``train`` are ones metanas searches
    (:func:`_check_pyg_split`, :func:`_check_pyg_train`) and its NAME given where it must be
    (:func:`_check_pyg_name_given`); its data :func:`pyg_class` checked."""
    _check_pyg_name_given(cls, pyg_name, name)
    _check_pyg_split(cls, pyg_name, name)
    _check_pyg_train(cls, name)
    return f"{PYG_PREFIX}:{cls.__name__}" + (f":{pyg_name}" if pyg_name is not None else "")


def _pyg_dataset_class(class_name: str, name: str) -> type:
    """The ``torch_geometric.datasets`` attribute ``class_name`` (any case), if a Dataset class."""
    from torch_geometric import datasets as pyg_datasets
    from torch_geometric.data import Dataset

    def dataset_class(attr: str | None) -> type | None:
        found = getattr(pyg_datasets, attr, None) if attr else None
        return found if isinstance(found, type) and issubclass(found, Dataset) else None

    spelled = {normalize(attr): attr for attr in pyg_datasets.__all__}  # pyg:wikics is WikiCS
    cls = dataset_class(class_name) or dataset_class(spelled.get(normalize(class_name)))
    if cls is None:
        import difflib

        close = difflib.get_close_matches(class_name, pyg_datasets.__all__, n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"could not resolve dataset {name!r}: {class_name!r} is not a dataset "
                         f"class of torch_geometric.datasets{hint}; a pyg: name is {PYG_FORM}")
    return cls


def _check_pyg_arguments(cls: type, has_name: bool, name: str) -> None:
    """``ValueError`` unless ``cls`` is built from a data root (and a name when one is given)."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    params = [p for p in inspect.signature(cls).parameters.values() if p.kind in kinds]
    takes = {p.name for p in params}
    required = [p.name for p in params if p.default is inspect.Parameter.empty]
    own = "build it in Python and search it as nas.tasks.DataTask(dataset, 'a-name')"
    if "root" not in takes:
        raise ValueError(f"dataset {name!r}: {cls.__name__} reads no data root (its graphs are "
                         f"made in memory, not read from a data root); {own}")
    extra = [arg for arg in required if arg not in ("root", "name", "split")]  # split: below
    if extra:
        raise ValueError(f"dataset {name!r}: {cls.__name__} needs arguments {extra} besides root "
                         f"and name, which a dataset name cannot give; {own}")
    if has_name and "name" not in takes:
        raise ValueError(f"dataset {name!r}: {cls.__name__} takes no name; write "
                         f"pyg:{cls.__name__}")
    if not has_name and "name" in required:
        raise ValueError(f"dataset {name!r}: {cls.__name__} needs a name; write "
                         f"pyg:{cls.__name__}:NAME")


def _check_pyg_name_given(cls: type, pyg_name: str | None, name: str) -> None:
    """``ValueError``, before anything is read, for a class of :data:`PYG_NAMES_NEEDED` without
    NAME, naming the forms it takes: PyG builds it with its default name on the class folder
    (``<root>/ModelNet``), which any of its names may have filled or processed."""
    names = PYG_NAMES_NEEDED.get(cls.__name__)
    if names and pyg_name is None:
        forms = " or ".join(f"{PYG_PREFIX}:{cls.__name__}:{each}" for each in names)
        raise ValueError(f"dataset {name!r}: {cls.__name__} needs its name, one of "
                         f"{list(names)}: write {forms}")


def _missing_package(class_name: str, name: str, error: ModuleNotFoundError) -> ValueError | None:
    """The ``ValueError`` naming how to install the package of :data:`PYG_PACKAGES_NEEDED`
    that ``error`` (raised processing ``class_name``'s data) found missing; None for another."""
    module = PYG_PACKAGES_NEEDED.get(class_name)
    if module is None or error.name != module:
        return None
    return ValueError(f"dataset {name!r}: {class_name} downloads and processes its data through "
                      f"the {module!r} package, which is not installed (metanas does not install "
                      f"it): pip install {module}")


def _check_pyg_fit(cls: type, pyg_name: str | None, name: str) -> None:
    """``ValueError``, before anything is read, for data no task of metanas takes
    (:data:`PYG_UNFIT`: regression, the nodes of many graphs, links, ...), saying why."""
    key = cls.__name__ if cls.__name__ in PYG_UNFIT else _pyg_key(cls.__name__, pyg_name)
    if key in PYG_UNFIT:
        task = ("" if key in PYG_UNFIT_SPLIT else "; metanas searches only the classes of one "
                "graph's nodes or of whole graphs (integer labels)")
        searched = [f"{PYG_PREFIX}:{each}" for each in PYG_SPLITS_SEARCHED]
        raise ValueError(f"dataset {name!r}: {PYG_UNFIT[key]}{task}, so metanas cannot search "
                         f"it. Datasets with official splits it searches: {searched}")


def _check_pyg_split(cls: type, pyg_name: str | None, name: str) -> None:
    """``ValueError``, before anything is read, for a class with a ``split`` argument whose
    splits metanas cannot search together: split values that are no train, val and test split
    (one split alone would be searched as if it were all the data, and re-split)."""
    split = inspect.signature(cls).parameters.get("split")
    if split is None:
        return
    if (official_split_values(cls.__name__, pyg_name) is not None
            or _pyg_key(cls.__name__, pyg_name) in PYG_WITHOUT_SPLIT):
        return
    values = PYG_OTHER_SPLITS.get(cls.__name__)
    said = (f"takes {list(values)}" if values else
            f"(default {split.default!r}) takes values metanas does not know")
    raise ValueError(f"dataset {name!r}: {cls.__name__}'s split argument {said}, not one train, "
                     f"val and test split that metanas could load and search together; "
                     f"{_SPLIT_IN_PYTHON}")


def _check_pyg_train(cls: type, name: str) -> None:
    """``ValueError``, before anything is read, for a class with a ``train`` argument not in
    :data:`PYG_TRAIN_SPLITS`: built with its default alone, its official test graphs would never
    be read and its training graphs would be searched re-split."""
    if "train" in inspect.signature(cls).parameters and cls.__name__ not in PYG_TRAIN_SPLITS:
        raise ValueError(
            f"dataset {name!r}: {cls.__name__}'s train argument picks its training or its test "
            f"graphs, and metanas loads both and searches them as official train and test splits "
            f"for {sorted(PYG_TRAIN_SPLITS)} only; {_SPLIT_IN_PYTHON}")


_SPLIT_IN_PYTHON = ("build it in Python with the split you want and search it as "
                    "nas.tasks.DataTask(dataset, 'a-name'), giving graphs their split as "
                    "splits={'train': ..., 'val': ..., 'test': ...}")


def _pyg_key(class_name: str, pyg_name: str | None) -> str:
    """``CLASS:NAME`` as :data:`PYG_UNFIT` and :data:`PYG_WITHOUT_SPLIT` spell it, when NAME is
    one of theirs in any spelling (``pattern`` is ``PATTERN``)."""
    if pyg_name is None:
        return class_name
    keys = {normalize(key): key for key in (*PYG_UNFIT, *PYG_WITHOUT_SPLIT)}
    return keys.get(normalize(f"{class_name}:{pyg_name}"), f"{class_name}:{pyg_name}")


def official_split_values(class_name: str, pyg_name: str | None) -> tuple[str, str, str] | None:
    """The values a ``pyg:`` class's ``split`` takes for its official train, val and test split
    (:data:`PYG_SPLITS`); None for a class or NAME without one."""
    if _pyg_key(class_name, pyg_name) in PYG_WITHOUT_SPLIT:
        return None
    return PYG_SPLITS.get(class_name)


def has_official_split(class_name: str, pyg_name: str | None) -> bool:
    """Whether a ``pyg:`` class (and NAME) is searched on its official split: its ``split``
    loads each of three (:func:`official_split_values`), or its ``train`` its training and test
    graphs (:data:`PYG_TRAIN_SPLITS`)."""
    return (official_split_values(class_name, pyg_name) is not None
            or class_name in PYG_TRAIN_SPLITS)


def searched_before_official_splits(name: str) -> str:
    """What metanas searched of ``name``, a ``pyg:`` dataset with official splits, before it
    searched them as given: its class built with its default ``split`` or ``train``, whose
    graphs it re-split 80/10/10 (GNNBenchmarkDataset's training split; MalNetTiny's all graphs;
    MNISTSuperpixels' training graphs)."""
    from torch_geometric import datasets as pyg_datasets

    class_name, _ = pyg_parts(name)
    if class_name in PYG_TRAIN_SPLITS:
        return "its official training graphs alone (its default train=True loads no test graph)"
    default = inspect.signature(getattr(pyg_datasets, class_name)).parameters["split"].default
    if default is None:
        return "all its graphs (its default split=None loads them all)"
    return "its training split alone"


def pyg_parts(name: str) -> tuple[str, str | None]:
    """(CLASS, NAME or None) of a canonical ``pyg:CLASS[:NAME]`` name."""
    class_name, has_name, pyg_name = name[len(f"{PYG_PREFIX}:"):].partition(":")
    return class_name, pyg_name if has_name else None


def pyg_class_dataset(name: str, class_root: Path) -> Dataset:
    """The dataset of a canonical ``pyg:CLASS[:NAME]`` name: ``CLASS(root)`` without NAME,
    ``CLASS(root, name=NAME)`` with it, ``root`` being ``class_root``, the class's folder
    ``<root>/<Class>`` (which PyG's classes keep NAME's folder in), and the arguments of
    :data:`PYG_DEFAULTS_PASSED` (WikiCS's ``is_undirected=True``); a class with official splits
    is built once per split and their graphs joined: :data:`PYG_SPLITS`' once per ``split``
    value (:func:`with_official_split`), :data:`PYG_TRAIN_SPLITS`' with ``train`` True and
    False (:func:`with_official_train_test`). Its graphs are those searched: meshes are given
    their faces' edges as they are collated (:func:`with_mesh_edges`), once. A NAME the class
    refuses (an ``assert``) is a ``ValueError``, as is processing that needs a package not
    installed (:func:`_missing_package`)."""
    import traceback

    from torch_geometric import datasets as pyg_datasets

    class_name, pyg_name = pyg_parts(name)
    cls = getattr(pyg_datasets, class_name)
    values = official_split_values(class_name, pyg_name)
    make = functools.partial(cls, root=str(class_root), **PYG_DEFAULTS_PASSED.get(class_name, {}))
    if pyg_name is not None:
        make = functools.partial(make, name=pyg_name)
    try:
        with files_in_sorted_order(cls):
            if class_name in PYG_TRAIN_SPLITS:
                return with_official_train_test(make(train=True), make(train=False))
            if values is None:
                return with_mesh_edges(make())
            return with_official_split({split: make(split=value)
                                        for split, value in zip(SPLITS, values)})
    except AssertionError as error:
        if pyg_name is None:
            raise
        line = (traceback.extract_tb(error.__traceback__)[-1].line or "").strip()
        raise ValueError(f"dataset {name!r}: PyG's {class_name} refused the name {pyg_name!r} "
                         f"({line or 'AssertionError'}); see its documentation for the names it "
                         f"takes") from None
    except ModuleNotFoundError as error:
        refusal = _missing_package(class_name, name, error)
        if refusal is None:
            raise
        raise refusal from None


def files_in_sorted_order(cls: type) -> contextlib.AbstractContextManager[None]:
    """A context in which a class of :data:`PYG_GLOB_ORDER` processes its raw files in sorted
    order: its module's ``glob`` sorts what ``glob.glob`` lists (processed files made before
    keep their order); for another class, one that changes nothing."""
    if cls.__name__ not in PYG_GLOB_ORDER:
        return contextlib.nullcontext()
    import glob

    sorted_glob = types.SimpleNamespace(
        glob=lambda *args, **kwargs: sorted(glob.glob(*args, **kwargs)))
    return module_attribute(sys.modules[cls.__module__], "glob", sorted_glob)


#: held while :func:`module_attribute` patches a module: a load in another thread waits for
#: the patch to end, rather than taking it for the module's own (and restoring it, leaked) or
#: running while it is undone
_MODULE_PATCH_LOCK = threading.RLock()


@contextlib.contextmanager
def module_attribute(module: types.ModuleType, name: str, value: object) -> Iterator[None]:
    """``module.name`` is ``value`` in the context, and what it was again after it; one thread
    at a time (:data:`_MODULE_PATCH_LOCK`), the same thread's patches nested."""
    with _MODULE_PATCH_LOCK:
        original = getattr(module, name)
        setattr(module, name, value)
        try:
            yield
        finally:
            setattr(module, name, original)


def with_official_split(parts: dict[str, Dataset]) -> Dataset:
    """The graphs of ``parts`` (a dataset per split: train, val, test) in one in-memory dataset,
    in that order, whose ``official_split`` holds each split's indices:
    :attr:`nas.tasks.Task.splits` uses them as they are."""
    sizes = [len(parts[split]) for split in SPLITS]
    indices = torch.arange(sum(sizes)).split(sizes)
    return _joined([parts[split] for split in SPLITS], dict(zip(SPLITS, indices)))


def with_official_train_test(train: Dataset, test: Dataset) -> Dataset:
    """The graphs of a class's official ``train`` and ``test`` datasets (no validation split:
    :data:`PYG_TRAIN_SPLITS`) in one in-memory dataset, in that order, whose ``official_split``
    has the test graphs as test, and the training graphs as train and as val, of which each
    class gives :data:`~nas.splits.VAL_OF_TRAINING` (stratified, the same for every task seed:
    :func:`~nas.splits.validation_out_of_training`)."""
    kept = validation_out_of_training(graph_labels(train))
    test_graphs = torch.arange(len(train), len(train) + len(test))
    return _joined([train, test], {**kept, "test": test_graphs})


def _joined(parts: list[Dataset], split: dict[str, torch.Tensor]) -> Dataset:
    """The graphs of ``parts``, in order, in one in-memory dataset whose ``official_split`` is
    ``split`` (each split's indices among them); meshes given their faces' edges as they are
    collated (:func:`_as_searched`), so that they are collated once."""
    dataset = in_memory(_as_searched([graph for part in parts for graph in part]))
    dataset.official_split = {key: split[key] for key in SPLITS}
    return dataset


def in_memory(graphs: list[Data]) -> Dataset:
    """``graphs`` collated into one in-memory dataset."""
    from torch_geometric.data import InMemoryDataset

    dataset = InMemoryDataset()
    dataset._data, dataset.slices = InMemoryDataset.collate(graphs)
    return dataset


def with_mesh_edges(dataset: Dataset) -> Dataset:
    """``dataset``, or, when its graphs are meshes (:func:`_is_mesh`: ModelNet, FAUST, CoMA,
    MedShapeNet), an in-memory dataset of its graphs, in order, each with the edges of its faces
    and, where it has no ``x``, its positions as features (:func:`_as_searched`). Made in memory
    once loaded, not as a ``pre_transform``: the files PyG processed stay as PyG keeps them.
    Only these meshes get their positions as features: any other graph without ``x`` (a
    DataTask's too) gets one-hot degrees (:func:`nas.tasks.with_node_features`)."""
    if not _is_mesh(dataset[0]):
        return dataset
    return in_memory(_as_searched(list(dataset)))


def _is_mesh(graph: Data) -> bool:
    """Whether ``graph`` is a mesh: it has faces (``face``) and no ``edge_index``."""
    return getattr(graph, "face", None) is not None and getattr(graph, "edge_index", None) is None


def _as_searched(graphs: list[Data]) -> list[Data]:
    """``graphs`` as a search takes them: when they are meshes (the first tells,
    :func:`_is_mesh`), each given the edges of its faces (``torch_geometric.transforms.
    FaceToEdge``, which drops the faces) and its positions as features where it has no ``x``
    (:func:`_mesh_as_graph`); other graphs as they are."""
    if not graphs or not _is_mesh(graphs[0]):
        return graphs
    from torch_geometric.transforms import FaceToEdge

    face_to_edge = FaceToEdge()
    return [_mesh_as_graph(face_to_edge(graph)) for graph in graphs]


def _mesh_as_graph(mesh: Data) -> Data:
    """``mesh`` (given its faces' edges), its positions as node features where it has none."""
    if mesh.get("x") is None:
        mesh.x = mesh.pos.float()  # (N, 3)
    return mesh
