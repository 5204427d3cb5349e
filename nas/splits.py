"""How a task's data is split into train, val and test: a node task's boolean masks (its own,
or a seeded per-class split), a graph task's index tensors (stratified by seed, or given as they
are), and the checks that refuse a split metanas cannot search on.

Used by :mod:`nas.tasks` (every task) and :mod:`nas.pyg_classes` (a class's official split);
it imports nothing of metanas.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from torch_geometric.data import Data, Dataset


#: a graph task's split: fractions of each class for train, val and test
GRAPH_SPLIT = (0.8, 0.1, 0.1)
#: the three splits, in order
SPLITS = ("train", "val", "test")
#: official training graphs that come without a validation split (only train and test) give
#: this fraction of each class to val: GRAPH_SPLIT's val over its train and val (1/9), so that
#: train and val keep the 8:1 of a seeded split
VAL_OF_TRAINING = GRAPH_SPLIT[1] / (GRAPH_SPLIT[0] + GRAPH_SPLIT[1])
#: the seed that draws them: an official split is the same whatever a task's seed
OFFICIAL_VAL_SEED = 0
#: a node task's seeded split per class (Shchur et al., 2018): this many training and
#: validation nodes, the rest for test, when the class has more nodes than the two together
NODE_SPLIT_PER_CLASS = (20, 30)
#: a smaller class is divided by these fractions (train, val, test) instead
SMALL_CLASS_SPLIT = (0.6, 0.2, 0.2)
#: a node task's three boolean masks, in split order
MASKS = tuple(f"{split}_mask" for split in SPLITS)


def with_node_split(data: Data, seed: int) -> Data:
    """A shallow copy of ``data`` (the graph itself, perhaps the caller's, is left as it is)
    that keeps the graph's masks (split ``seed % k`` if it ships k); else draws a per-class
    split of 20 training and 30 validation nodes per class, the rest for test (Shchur et al.,
    2018); a class of at most 50 nodes is divided 60/20/20 instead, so that it has test nodes too.

    Raises ``ValueError`` when the graph has only some of the three masks, or a mask that is
    not boolean over the nodes (an index tensor would silently select other nodes)."""
    data = copy.copy(data)
    present = [key for key in MASKS if getattr(data, key, None) is not None]
    if present:
        if len(present) < len(MASKS):
            missing = [key for key in MASKS if key not in present]
            raise ValueError(f"the graph has {present} but not {missing}: give all three boolean "
                             f"masks, or none for a seeded per-class split")
        for key in MASKS:
            data[key] = _one_mask(data[key], key, data.num_nodes, seed)
        return data
    y = data.y.view(-1)
    masks = {split: torch.zeros_like(y, dtype=torch.bool) for split in SPLITS}
    for idx in _shuffled_classes(y, seed):
        n_train, n_val = _node_split_sizes(idx.numel())
        masks["train"][idx[:n_train]] = True
        masks["val"][idx[n_train:n_train + n_val]] = True
        masks["test"][idx[n_train + n_val:]] = True
    data.train_mask, data.val_mask, data.test_mask = masks["train"], masks["val"], masks["test"]
    return data


def _node_split_sizes(class_size: int) -> tuple[int, int]:
    """(train, val) nodes of one class of a seeded node split; the rest are test nodes."""
    n_train, n_val = NODE_SPLIT_PER_CLASS
    if class_size > n_train + n_val:
        return n_train, n_val
    return (int(round(SMALL_CLASS_SPLIT[0] * class_size)),
            int(round(SMALL_CLASS_SPLIT[1] * class_size)))


def _one_mask(mask: Tensor, key: str, num_nodes: int, seed: int) -> Tensor:
    """``mask`` as one boolean ``(N,)`` mask: column ``seed % k`` of an ``(N, k)`` one (WebKB
    and Actor ship ten splits as columns)."""
    if mask.dim() == 2:
        mask = mask[:, seed % mask.size(1)]
    if mask.dtype != torch.bool or mask.dim() != 1 or mask.numel() != num_nodes:
        raise ValueError(f"{key} must be a boolean tensor of shape ({num_nodes},) (or "
                         f"({num_nodes}, k) for k splits), got dtype {mask.dtype} and shape "
                         f"{tuple(mask.shape)}")
    return mask


def given_split(
    splits: Mapping[str, Tensor | Iterable[int]], level: str, num_graphs: int, name: str,
) -> dict[str, Tensor]:
    """``splits`` as sorted index tensors of a graph task's train/val/test graphs; ``ValueError``
    naming what is wrong: a node task (its split is its graph's masks), other keys than
    train/val/test, an empty split, indices that are not integers, out of range, or in two
    splits."""
    if level != "graph":
        raise ValueError(f"{name!r} is a node task: give its split as the graph's boolean "
                         f"train_mask/val_mask/test_mask, not splits=")
    if sorted(splits) != sorted(SPLITS):
        raise ValueError(f"splits of {name!r} must have the keys {list(SPLITS)}, got "
                         f"{list(splits)}")
    given = {split: _graph_indices(splits[split], f"splits[{split!r}] of {name!r}", num_graphs)
             for split in SPLITS}
    values, counts = torch.cat(list(given.values())).unique(return_counts=True)
    twice = values[counts > 1][:5]
    if twice.numel():
        where = [split for split, idx in given.items() if torch.isin(idx, twice).any()]
        raise ValueError(f"splits of {name!r} share graphs (or repeat one): {twice.tolist()} in "
                         f"{where}; each graph may be in one split at most")
    return {split: idx.sort().values for split, idx in given.items()}


def _graph_indices(indices: Any, what: str, num_graphs: int) -> Tensor:
    """``indices`` (a tensor, a numpy array of any strides, or integers in any iterable: a list,
    a range, a set) as a flat int64 tensor; ``ValueError`` naming ``what`` when it is empty,
    holds no integers or indices outside ``num_graphs``."""
    import numpy as np

    if isinstance(indices, Tensor):
        if indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
            raise ValueError(f"{what} must hold graph indices (integers), got dtype {indices.dtype}")
        indices = indices.detach().cpu().numpy()
    elif isinstance(indices, Iterable) and not isinstance(indices, (np.ndarray, str, bytes)):
        indices = list(indices)  # a set, a range, a generator
    array = np.asarray(indices).reshape(-1)
    if not array.size:
        raise ValueError(f"{what} is empty: train, val and test each need graphs")
    if array.dtype.kind not in "iu":
        raise ValueError(f"{what} must hold graph indices (integers), got dtype {array.dtype}")
    outside = array[(array < 0) | (array >= num_graphs)]
    if outside.size:
        raise ValueError(f"{what} holds {outside[:5].tolist()}, not indices of its {num_graphs} graphs")
    return torch.from_numpy(array.astype(np.int64))


def check_split_sizes(name: str, unit: str, sizes: dict[str, int]) -> None:
    """``ValueError`` naming the sizes when a split is empty (nothing to train on, nothing to
    select with, or nothing to test)."""
    empty = [split for split in SPLITS if not sizes.get(split)]
    if empty:
        raise ValueError(f"dataset {name!r} has no {unit} in its {' and '.join(empty)} split "
                         f"(train/val/test: {sizes['train']}/{sizes['val']}/{sizes['test']}): too "
                         f"few {unit} per class")


def stratified_split(
    y: Tensor, seed: int, fractions: tuple[float, float, float]
) -> dict[str, Tensor]:
    """Indices per split, each class divided by ``fractions`` (train, val, test)."""
    parts: dict[str, list[Tensor]] = {split: [] for split in SPLITS}
    for idx in _shuffled_classes(y, seed):
        n_train = int(round(fractions[0] * idx.numel()))
        n_val = int(round(fractions[1] * idx.numel()))
        parts["train"].append(idx[:n_train])
        parts["val"].append(idx[n_train:n_train + n_val])
        parts["test"].append(idx[n_train + n_val:])
    return {key: torch.cat(value).sort().values for key, value in parts.items()}


def validation_out_of_training(y: Tensor) -> dict[str, Tensor]:
    """Indices of official training graphs of labels ``y`` kept for train and moved to val:
    :data:`VAL_OF_TRAINING` of each class (stratified, seed :data:`OFFICIAL_VAL_SEED`)."""
    parts = stratified_split(y, OFFICIAL_VAL_SEED, (1.0 - VAL_OF_TRAINING, VAL_OF_TRAINING, 0.0))
    rounded_off = parts["test"]  # none: a class's two shares round to its size, kept anyway
    return {"train": torch.cat([parts["train"], rounded_off]).sort().values, "val": parts["val"]}


def _shuffled_classes(y: Tensor, seed: int) -> Iterator[Tensor]:
    """The indices of each class (in label order), each shuffled by one seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    for cls in y.unique():
        idx = (y == cls).nonzero().view(-1)
        yield idx[torch.randperm(idx.numel(), generator=generator)]


def graph_labels(dataset: Dataset) -> Tensor:
    """One class label per graph, ``(len(dataset),)``; ``ValueError`` otherwise."""
    y = getattr(dataset, "y", None)  # an in-memory dataset's labels without reading each graph
    if y is None:
        y = torch.cat([graph.y.view(-1) for graph in dataset])
    y = y.view(-1)
    if y.numel() != len(dataset):
        raise ValueError(f"a graph task needs one class label per graph: {len(dataset)} graphs, "
                         f"{y.numel()} labels")
    return y
