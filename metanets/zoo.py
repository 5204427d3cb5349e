"""Model zoos as datasets for metanetworks: (parameter graph, measured metrics) per network.

A zoo is a study in a metanas storage (built by ``metanas zoo build``, see :mod:`nas.zoo`, or
any ``metanas search``: every network a search trained is a zoo entry too). :func:`load_zoo`
reads every stored network of a study (every checkpoint epoch of a zoo, else the final
weights of each trial), rebuilds its module from the stored architecture and converts it to a
parameter graph (:func:`metanets.graphs.to_parameter_graph`); the graph of a run is traced
once and refilled with the weights of its other checkpoints (:func:`fill_parameter_graph`).

Splits are by training run (trial), never by checkpoint: :func:`split_by_run`; out of
distribution by an architecture property: :func:`split_by_architecture`.
"""
from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from metanets.graphs import to_parameter_graph
from metanets.graphs.features import EdgeFeature

if TYPE_CHECKING:
    from torch_geometric.data import Data

    from metanets.probes import ProbedNetwork
    from storage import ModelStore, StoredModel

#: image side length used to trace image networks of a dataset (shapes only matter for tracing)
IMAGE_SIZES: dict[str, int] = {"mnist": 28, "mnist14": 14}
DEFAULT_IMAGE_SIZE = 32
#: metrics a zoo entry carries (when the study measured them)
METRICS: tuple[str, ...] = (
    "train_acc", "val_acc", "test_acc", "train_loss", "val_loss", "test_loss",
)


@dataclasses.dataclass
class ZooEntry:
    """One network of a zoo: a training run (``trial``) at one ``epoch`` (``None``: the run's
    final, best-validation weights)."""

    study: str
    trial: int
    epoch: int | None
    space: str
    architecture: dict[str, Any]
    dataset: str
    level: str
    in_channels: int
    out_channels: int
    metrics: dict[str, float]
    graph: Data
    state_dict: dict[str, Tensor]

    @property
    def run(self) -> tuple[str, int]:
        """The training run: what splits group by."""
        return self.study, self.trial

    def build_module(self) -> nn.Module:
        """A fresh module of this network's architecture (weights not loaded), in eval mode."""
        from search_spaces import get_space

        space = get_space(self.space)
        arch = space.architecture_from_dict(self.architecture)
        return space.build(arch, self.in_channels, self.out_channels, self.level).eval()


class Zoo(Sequence[ZooEntry]):
    """The networks of one or more studies, in study, trial and epoch order."""

    def __init__(self, entries: Sequence[ZooEntry]) -> None:
        self.entries = list(entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return Zoo(self.entries[index])
        return self.entries[index]

    def subset(self, indices: Sequence[int]) -> Zoo:
        return Zoo([self.entries[i] for i in indices])

    def targets(self, metric: str = "test_acc") -> Tensor:
        """``(len,)`` float tensor of one measured metric."""
        return torch.tensor([entry.metrics[metric] for entry in self.entries], dtype=torch.float32)

    def graphs(self) -> list[Data]:
        return [entry.graph for entry in self.entries]

    def networks(self) -> list[ProbedNetwork]:
        """The networks themselves, to be probed (:mod:`metanets.probes`): a module of each
        run's architecture (built once per run) with each entry's weights. Image networks
        only; the zoo must have been loaded with ``keep_state_dicts=True``."""
        from metanets.probes import ProbedNetwork

        modules: dict[tuple[str, int], nn.Module] = {}
        out = []
        for entry in self.entries:
            if entry.level != "image":
                raise ValueError(f"probing needs image networks; {entry.study} trial "
                                 f"{entry.trial} is a {entry.level!r}-level network")
            if not entry.state_dict:
                raise ValueError("the zoo was loaded without weights (keep_state_dicts=False); "
                                 "load it with keep_state_dicts=True to probe its networks")
            if entry.run not in modules:
                modules[entry.run] = entry.build_module()
            (example,) = example_inputs(entry.level, entry.in_channels, entry.dataset)
            out.append(ProbedNetwork(modules[entry.run], entry.state_dict, tuple(example.shape[1:])))
        return out

    @property
    def runs(self) -> list[tuple[str, int]]:
        return [entry.run for entry in self.entries]

    def __add__(self, other: Zoo) -> Zoo:
        return Zoo(self.entries + other.entries)

    def __repr__(self) -> str:
        runs = len(set(self.runs))
        return f"Zoo({len(self)} networks, {runs} runs)"


def example_inputs(level: str, in_channels: int, dataset: str = "") -> tuple[Tensor, ...]:
    """Inputs to trace a network of a task level: an image batch, or a small random graph
    (a 4-node ring) for node and graph tasks."""
    if level == "image":
        side = IMAGE_SIZES.get(dataset, DEFAULT_IMAGE_SIZE)
        return (torch.zeros(2, in_channels, side, side),)
    num_nodes = 4
    x = torch.randn(num_nodes, in_channels, generator=torch.Generator().manual_seed(0))
    ring = torch.arange(num_nodes)
    edge_index = torch.stack([torch.cat([ring, (ring + 1) % num_nodes]),
                              torch.cat([(ring + 1) % num_nodes, ring])])
    if level == "graph":
        return x, edge_index, torch.zeros(num_nodes, dtype=torch.long)
    return x, edge_index


def build_module(record: StoredModel) -> nn.Module:
    """A freshly built module of a stored network's architecture (weights not loaded)."""
    from search_spaces import get_space

    space = get_space(record.space)
    arch = space.architecture_from_dict(json.loads(record.spec))
    return space.build(arch, record.in_channels, record.out_channels, record.level)


def network_graph(
    module: nn.Module, level: str, in_channels: int, dataset: str = "", kernel_width: int = 9,
) -> Data:
    """The parameter graph of a zoo network (see :func:`example_inputs`)."""
    module.eval()
    return to_parameter_graph(
        module, example_inputs(level, in_channels, dataset), kernel_width=kernel_width)


@torch.no_grad()
def fill_parameter_graph(template: Data, state_dict: dict[str, Tensor]) -> Data:
    """A copy of ``template`` (a parameter graph of the same architecture) holding the weights
    of ``state_dict``: the inverse of :func:`metanets.graphs.load_parameter_graph`, without
    tracing again."""
    data = template.clone()
    for slot in data.param_slots:
        values = state_dict[slot.name].reshape(-1)[slot.offset:slot.offset + slot.numel]
        values = values.to(data.x.dtype)
        if slot.where == "node":
            data.x[slot.start:slot.start + slot.count, slot.column] = values
        elif slot.where == "scalar":
            data.scalars[slot.start] = values[0].to(data.scalars.dtype)
        else:
            rows = slot.numel // slot.kernel
            attr = data.edge_attr[slot.start:slot.start + slot.count, EdgeFeature.WEIGHT:]
            chunked = attr.reshape(rows, -1)  # (rows, chunks * width): a view (full rows)
            chunked[:, :slot.kernel] = values.reshape(rows, slot.kernel)
    return data


def load_zoo(
    store: ModelStore | str, study: str | Sequence[str], *, checkpoints: bool = True,
    limit: int | None = None, kernel_width: int = 9, keep_state_dicts: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> Zoo:
    """Read the networks of ``study`` as a :class:`Zoo`.

    Args:
        store: a :class:`storage.ModelStore` or its storage URL.
        study: study (zoo) name, or several: one zoo of their networks, in the names' order.
        checkpoints: one entry per stored checkpoint epoch when the study has checkpoints (a
            zoo); otherwise, or if False, one entry per trial with its final weights.
        limit: read at most this many runs (the first trials) of each study.
        kernel_width: ``edge_attr`` columns of the graphs (same for graphs batched together).
        keep_state_dicts: keep each entry's weights (baselines read them); False saves memory.
        progress: ``progress(done, total)`` after each run (of all the studies).

    Raises:
        FileNotFoundError: ``store`` is the URL of an SQLite file that does not exist (it is
            not created; one in a folder this user cannot write is read read-only, see
            :func:`storage.reading_url`).
        KeyError: a study stored no networks.
        TypeError: ``study`` is neither a name nor a sequence of names.
        ValueError: no name, or a name given twice (its networks would count twice).
    """
    from storage import ModelStore

    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a number of runs >= 1 (None: all), got {limit!r}")
    if isinstance(store, str):
        store = ModelStore(store, read_only=True)  # a mistyped SQLite path is not created
    runs = [run for name in _study_names(study) for run in _study_runs(store, name, checkpoints, limit)]
    entries: list[ZooEntry] = []
    for done, (record, epochs) in enumerate(runs, 1):
        entries += _run_entries(store, record, epochs, kernel_width, keep_state_dicts)
        if progress is not None:
            progress(done, len(runs))
    return Zoo(entries)


def _study_names(study: str | Sequence[str]) -> list[str]:
    """``study`` as a list of distinct names (one name: a list of one)."""
    names = [study] if isinstance(study, str) else study
    if not isinstance(names, Sequence) or not all(isinstance(name, str) for name in names):
        raise TypeError(f"study must be a study name or a sequence of names, got {study!r}")
    if not names:
        raise ValueError("no study name given")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"studies {repeated} given more than once in {list(names)}")
    return list(names)


def _study_runs(
    store: ModelStore, study: str, checkpoints: bool, limit: int | None,
) -> list[tuple[StoredModel, dict[int, dict[str, float]] | None]]:
    """The runs of ``study`` to read: each stored network with its checkpoint metrics by epoch
    (``None``: only its final weights)."""
    records = {record.trial_number: record for record in completed_models(store, study)}
    if not records:
        raise KeyError(f"study {study!r} stored no networks in {store!r}")
    trials = sorted(records)[:limit] if limit else sorted(records)
    by_trial = _checkpoint_metrics(store, study) if checkpoints else {}
    return [(records[trial], by_trial.get(trial)) for trial in trials]


def completed_models(store: ModelStore, study: str) -> list[StoredModel]:
    """The stored networks of ``study`` whose trial completed.

    A run killed (or interrupted) after storing its weights but before its trial completed is
    retried under another trial number, so its row is not a network of the zoo: counting it
    would count that run twice. Rows of a study that optuna does not know all count, and so do
    those of a database without optuna's tables, which is read as it is
    (:func:`storage.reading_storage`).
    """
    import optuna

    from storage import reading_storage

    records = store.list_models(study)
    url = store.engine.url.render_as_string(hide_password=False)
    try:  # NoStudiesError (no optuna tables) is a KeyError too
        trials = optuna.load_study(study_name=study, storage=reading_storage(url)).get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    except KeyError:
        return records
    completed = {trial.number for trial in trials}
    return [record for record in records if record.trial_number in completed]


def _checkpoint_metrics(store: ModelStore, study: str) -> dict[int, dict[int, dict[str, float]]]:
    out: dict[int, dict[int, dict[str, float]]] = {}
    for record in store.list_checkpoints(study):
        out.setdefault(record.trial_number, {})[record.epoch] = record.metrics
    return out


def _run_entries(
    store: ModelStore, record: StoredModel, epochs: dict[int, dict[str, float]] | None,
    kernel_width: int, keep_state_dicts: bool,
) -> list[ZooEntry]:
    module = build_module(record)
    template = network_graph(module, record.level, record.in_channels, record.dataset, kernel_width)
    order = list(module.state_dict())
    if epochs:
        weights = {e: _in_order(store.load_checkpoint(record.study_name, record.trial_number, e),
                                order) for e in epochs}
        metrics = epochs
    else:
        weights = {None: _in_order(store.load_state_dict(record.study_name, record.trial_number),
                                   order)}
        metrics = {None: record.metrics}
    arch = json.loads(record.spec)
    return [
        ZooEntry(
            study=record.study_name, trial=record.trial_number, epoch=epoch, space=record.space,
            architecture=arch, dataset=record.dataset, level=record.level,
            in_channels=record.in_channels, out_channels=record.out_channels,
            metrics={k: float(v) for k, v in metrics[epoch].items()},
            graph=fill_parameter_graph(template, state),
            state_dict=state if keep_state_dicts else {},
        )
        for epoch, state in weights.items()  # type: ignore[misc]
    ]


def _in_order(state: dict[str, Tensor], order: list[str]) -> dict[str, Tensor]:
    """``state`` with its keys in the module's own order. Stored weights come back from
    safetensors in no particular order, and the baselines' "first" and "last" tensors and the
    flattened weight vector (:mod:`metanets.baselines`) follow the dict's order."""
    return {key: state[key] for key in order if key in state} | {
        key: value for key, value in state.items() if key not in order}


def split_by_run(
    zoo: Zoo, fractions: tuple[float, float, float] = (0.7, 0.1, 0.2), seed: int = 0,
) -> dict[str, list[int]]:
    """Indices of train/val/test entries, every checkpoint of a run in the same split."""
    runs = sorted(set(zoo.runs))
    random.Random(seed).shuffle(runs)
    n_train = int(round(fractions[0] * len(runs)))
    n_val = int(round(fractions[1] * len(runs)))
    part = {run: "train" for run in runs[:n_train]}
    part.update({run: "val" for run in runs[n_train:n_train + n_val]})
    part.update({run: "test" for run in runs[n_train + n_val:]})
    return _indices_by_part(zoo, part)


def split_by_architecture(
    zoo: Zoo, is_test: Callable[[dict[str, Any]], bool], val_fraction: float = 0.1, seed: int = 0,
) -> dict[str, list[int]]:
    """Out-of-distribution split: runs whose architecture satisfies ``is_test`` (for example
    ``lambda a: len(a["widths"]) == 3``) form the test split; the other runs are divided into
    train and val (by run)."""
    runs = sorted(set(zoo.runs))
    arch_of = {entry.run: entry.architecture for entry in zoo}
    held = [run for run in runs if is_test(arch_of[run])]
    rest = [run for run in runs if not is_test(arch_of[run])]
    if not held or not rest:
        raise ValueError(
            f"the architecture split leaves {len(rest)} training and {len(held)} test runs; "
            f"both need at least one")
    random.Random(seed).shuffle(rest)
    n_val = int(round(val_fraction * len(rest)))
    part = {run: "val" for run in rest[:n_val]}
    part.update({run: "train" for run in rest[n_val:]})
    part.update({run: "test" for run in held})
    return _indices_by_part(zoo, part)


def _indices_by_part(zoo: Zoo, part: dict[tuple[str, int], str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for index, entry in enumerate(zoo):
        out[part[entry.run]].append(index)
    return out


def iter_batches(items: Sequence[Any], batch_size: int, shuffle: bool = False,
                 generator: torch.Generator | None = None) -> Iterator[list[int]]:
    """Index lists of mini-batches over ``items``."""
    order = torch.randperm(len(items), generator=generator) if shuffle else torch.arange(len(items))
    for start in range(0, len(items), batch_size):
        yield order[start:start + batch_size].tolist()


def chance_accuracy(entry: ZooEntry) -> float:
    """Accuracy of guessing: ``1 / classes``."""
    return 1.0 / max(entry.out_channels, 1) if entry.out_channels else math.nan
