"""Train a graph hypernetwork over architectures of a search space on a task (GHN-2 style), and
score architectures with predicted parameters.

Each step draws architectures from a fixed pool sampled from the space (restricted to a training
range of depths and widths, so that deeper and wider ones stay unseen), decodes all their
parameters with the GHN, runs each network functionally with those parameters
(``torch.func.functional_call``) on a batch of the task's training split (node tasks: the whole
graph) with dropout on, and backpropagates the classification loss into the GHN.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from metanets.ghn import GHNConfig, GraphHyperNetwork, HyperPlan, calibrate_batchnorm
from nas.train import own_random_state

if TYPE_CHECKING:
    from nas.tasks import Task
    from search_spaces.base import Architecture, SearchSpace

#: ``log(step, metrics)`` after every ``log_every`` steps
Logger = Callable[[int, dict[str, float]], None]


@dataclasses.dataclass(frozen=True)
class HypernetTrainConfig:
    """How to train a GHN.

    Args:
        steps: optimisation steps.
        archs_per_step: architectures per step (meta-batch); their losses are averaged.
        pool_size: distinct training architectures, sampled once from the training range.
        max_depth: deepest training architecture (``None``: any).
        max_width: widest layer of a training architecture (``None``: any).
        lr: Adam learning rate (cosine-decayed to 0).
        weight_decay: Adam weight decay.
        batch_size: images / graphs per architecture and step (node tasks: the whole graph).
        grad_clip: gradient-norm clip.
        seed: seeds the GHN's initialisation, its fixed basis, the batches and the order in
            which pool architectures are drawn (and the pool, unless ``pool_seed`` is given).
        pool_seed: seeds the pool of training architectures (``None``: ``seed``). Two runs
            with the same ``pool_seed`` and different ``seed`` train on the same architectures
            from different initialisations: the run-to-run spread of one setup.
        device: torch device.
        log_every: steps between log lines.
        hidden, rank, rounds: GHN sizes (see :class:`~metanets.ghn.GHNConfig`).
        max_distance: longest virtual edge of the computation graphs (see
            :class:`~metanets.ghn.GHNConfig`): with short ones each node sees only its
            neighbouring layers, not the whole network.
        select_every: every this many steps, score the GHN by the mean validation accuracy of
            ``select_archs`` pool architectures with predicted parameters and keep the best
            state (0: keep the last). Selection sees training architectures only.
        select_archs: pool architectures used for selection.
        select_items: most validation images / graphs per selection (node tasks: all nodes).
        feature_basis: the GHN's input-feature rows, ``"learned"`` or ``"data"`` (fixed from
            the task's features; see :class:`~metanets.ghn.GHNConfig`).
        param_decay: L2 penalty ``param_decay / 2 * ||theta||^2`` on the predicted parameters
            (the weight decay SGD training applies), against predicting large weights that fit a
            small labelled set (Cora's 140 nodes) and generalise worse.
        weight_norm: scale of predicted weight matrices, ``"fan"`` or ``"op"`` (operation-wise;
            see :class:`~metanets.ghn.GHNConfig`).
        tile_width: the GHN's ``tile_width`` (see :class:`~metanets.ghn.GHNConfig`): wider
            layers than this are decoded as copies of this width; it does not change training
            when it is at least ``max_width``.
        spatial: the GHN reads each op's feature-map size at the task's image size (see
            :class:`~metanets.ghn.GHNConfig`; image tasks).
    """

    steps: int = 600
    archs_per_step: int = 2
    pool_size: int = 200
    max_depth: int | None = None
    max_width: int | None = None
    lr: float = 2e-3
    weight_decay: float = 1e-5
    batch_size: int = 128
    grad_clip: float = 5.0
    seed: int = 0
    pool_seed: int | None = None
    device: str = "cpu"
    log_every: int = 50
    hidden: int = 64
    rank: int = 32
    rounds: int = 3
    max_distance: int = 50
    select_every: int = 0
    select_archs: int = 8
    select_items: int = 2000
    param_decay: float = 0.0
    feature_basis: str = "learned"
    weight_norm: str = "fan"
    tile_width: int | None = None
    spatial: bool = False

    def __post_init__(self) -> None:
        for field in ("steps", "archs_per_step", "pool_size", "batch_size", "log_every"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be >= 1, got {getattr(self, field)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.param_decay < 0:
            raise ValueError(f"param_decay must be >= 0, got {self.param_decay}")
        for field in ("max_depth", "max_width", "tile_width"):
            if getattr(self, field) is not None and getattr(self, field) < 1:
                raise ValueError(f"{field} must be >= 1 (or None: any), got {getattr(self, field)}")
        if self.select_every < 0:
            raise ValueError(f"select_every must be >= 0 (0: keep the last state), got {self.select_every}")
        if self.select_every % self.log_every:
            raise ValueError(f"select_every {self.select_every} must be a multiple of log_every "
                             f"{self.log_every} (selection happens at log steps)")


@dataclasses.dataclass
class HypernetTrainResult:
    """A trained GHN, the training pool's hashes and the loss curve."""

    ghn: GraphHyperNetwork
    train_hashes: list[str]
    history: list[dict[str, float]]
    seconds: float
    best_step: int = 0                 # step whose state was kept
    resumed_from: int = 0              # step the run resumed from (0: a fresh run)


# --------------------------------------------------------------------------- architectures
def arch_widths(arch: Architecture) -> list[int]:
    """Every layer width of an architecture (fields named ``width`` or ``widths``)."""
    found: list[int] = []

    def walk(value: Any, key: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v, key)
        elif key in ("width", "widths") and isinstance(value, int):
            found.append(value)

    walk(arch.to_dict())
    return found


def arch_depth(arch: Architecture) -> int:
    return int(getattr(arch, "depth", 1))


def in_range(arch: Architecture, max_depth: int | None, max_width: int | None) -> bool:
    """Whether ``arch`` lies in a training range (``None``: unbounded)."""
    if max_depth is not None and arch_depth(arch) > max_depth:
        return False
    return max_width is None or max(arch_widths(arch), default=0) <= max_width


def structure_key(space: SearchSpace, arch: Architecture) -> str:
    """The architecture without its training hyper-parameters (the fields
    ``space.training_config`` returns: lr, weight decay, ...) as canonical JSON: what a GHN sees
    of it. Two architectures with equal keys build the same network."""
    hyper = space.training_config(arch)
    return json.dumps({k: v for k, v in arch.to_dict().items() if k not in hyper}, sort_keys=True)


def sample_architectures(
    space: SearchSpace, n: int, seed: int = 0, *, max_depth: int | None = None,
    max_width: int | None = None, exclude: set[str] | frozenset[str] = frozenset(),
    predicate: Callable[[Architecture], bool] | None = None, max_tries: int = 100_000,
) -> list[Architecture]:
    """``n`` distinct architectures of ``space`` within a range, none of whose hash is in
    ``exclude`` (rejection sampling)."""
    rng = random.Random(seed)
    found: dict[str, Architecture] = {}
    for _ in range(max_tries):
        if len(found) == n:
            break
        arch = space.sample(rng)
        if arch.arch_hash in exclude or arch.arch_hash in found:
            continue
        if in_range(arch, max_depth, max_width) and (predicate is None or predicate(arch)):
            found[arch.arch_hash] = arch
    if len(found) < n:
        raise ValueError(f"found only {len(found)} of {n} architectures in the requested range")
    return list(found.values())


def pool_seed(config: HypernetTrainConfig) -> int:
    """The seed of the training pool of ``config``: ``config.pool_seed``, else ``config.seed``."""
    return config.seed if config.pool_seed is None else config.pool_seed


def training_pool(space: SearchSpace, config: HypernetTrainConfig) -> list[Architecture]:
    """The distinct architectures a GHN trained with ``config`` sees (seeded by
    :func:`pool_seed`)."""
    return sample_architectures(space, config.pool_size, pool_seed(config),
                                max_depth=config.max_depth, max_width=config.max_width)


# --------------------------------------------------------------------------- task batches
class TaskBatches:
    """Forward arguments, targets and loss masks of a task, per split.

    Node tasks: the whole graph and a split mask; graph tasks: PyG mini-batches; image tasks:
    image mini-batches.
    """

    def __init__(self, task: Task, device: torch.device | str = "cpu", seed: int = 0,
                 batch_size: int = 128) -> None:
        self.task, self.level, self.device = task, task.level, torch.device(device)
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        if self.level == "node":
            self.data = task.data.to(self.device)

    def train_batch(self) -> tuple[tuple[Tensor, ...], Tensor]:
        """``(forward args, targets)`` of one random training batch (logits indexed for node
        tasks by :meth:`select`)."""
        if self.level == "node":
            return (self.data.x, self.data.edge_index), self.data.y
        if self.level == "image":
            x, y = self.task.dataset.x["train"], self.task.dataset.y["train"]
            idx = torch.randint(0, y.numel(), (self.batch_size,), generator=self.generator)
            return (x[idx].to(self.device),), y[idx].to(self.device)
        from torch_geometric.data import Batch

        split = self.task.splits["train"]
        idx = split[torch.randint(0, split.numel(), (self.batch_size,), generator=self.generator)]
        batch = Batch.from_data_list([self.task.dataset[int(i)] for i in idx]).to(self.device)
        return (batch.x, batch.edge_index, batch.batch), batch.y.view(-1)

    def select(self, logits: Tensor, split: str = "train") -> Tensor:
        """Rows of ``logits`` that belong to ``split`` (node tasks); all rows otherwise."""
        return logits[self.data[f"{split}_mask"]] if self.level == "node" else logits

    def targets(self, y: Tensor, split: str = "train") -> Tensor:
        return y[self.data[f"{split}_mask"]] if self.level == "node" else y

    def calibration_inputs(self, batches: int = 4) -> list[tuple[Tensor, ...]]:
        """Forward arguments to recompute BatchNorm statistics from (training split)."""
        if self.level == "node":
            return [(self.data.x, self.data.edge_index)]
        return [self.train_batch()[0] for _ in range(batches)]

    def eval_batches(self, split: str, max_items: int | None = None
                     ) -> Iterator[tuple[tuple[Tensor, ...], Tensor]]:
        """All of ``split`` (the first ``max_items`` images/graphs) in batches:
        ``(forward args, targets, node mask or None)``."""
        if self.level == "node":
            mask = self.data[f"{split}_mask"]
            yield (self.data.x, self.data.edge_index), self.data.y, mask  # type: ignore[misc]
            return
        if self.level == "image":
            x, y = self.task.dataset.x[split][:max_items], self.task.dataset.y[split][:max_items]
            for start in range(0, y.numel(), 2048):
                yield (x[start:start + 2048].to(self.device),), y[start:start + 2048].to(self.device), None  # type: ignore[misc]
            return
        from torch_geometric.loader import DataLoader

        for batch in DataLoader(self.task.dataset[self.task.splits[split][:max_items]], batch_size=256):
            batch = batch.to(self.device)
            yield (batch.x, batch.edge_index, batch.batch), batch.y.view(-1), None  # type: ignore[misc]


def _image_size(task: Task) -> int:
    """Side of an image task's (square) images."""
    return int(task.dataset.x["train"].shape[-1])


def task_features(task: Task) -> Tensor:
    """The task's input-feature matrix ``(items, num_features)`` without labels: all nodes of a
    node task, all nodes of all graphs of a graph task (image tasks: ``ValueError``)."""
    if task.level == "node":
        return task.data.x
    if task.level == "graph":
        return torch.cat([task.dataset[i].x for i in range(len(task.dataset))])
    raise ValueError(f"a data feature basis needs node or graph features, not {task.level!r} inputs")


@torch.no_grad()
def accuracy(model: nn.Module, batches: TaskBatches, split: str, max_items: int | None = None
             ) -> float:
    """Accuracy of ``model`` (eval mode) on a split (its first ``max_items`` images/graphs)."""
    model.eval()
    correct, count = 0, 0
    for args, y, mask in batches.eval_batches(split, max_items):  # type: ignore[misc]
        pred = model(*args).argmax(-1)
        if mask is not None:
            pred, y = pred[mask], y[mask]
        correct += int((pred == y).sum())
        count += int(y.numel())
    return correct / max(count, 1)


# --------------------------------------------------------------------------- training
class _ArchCache:
    """Built module and plan per architecture hash (conversion is the slow part)."""

    def __init__(self, ghn: GraphHyperNetwork, space: SearchSpace, task: Task, device: torch.device):
        self.ghn, self.space, self.task, self.device = ghn, space, task, device
        self.entries: dict[str, tuple[nn.Module, HyperPlan]] = {}

    def get(self, arch: Architecture) -> tuple[nn.Module, HyperPlan]:
        key = arch.arch_hash
        if key not in self.entries:
            model = self.space.build(arch, self.task.num_features, self.task.num_classes,
                                     self.task.level)
            plan = self.ghn.plan(model)
            self.entries[key] = (model.to(self.device), plan.to(self.device))
        return self.entries[key]


@own_random_state
def train_hypernet(
    space: SearchSpace, task: Task, config: HypernetTrainConfig, log: Logger | None = None,
    ghn: GraphHyperNetwork | None = None, state: str | Path | None = None,
    state_every: int = 500, resuming: Callable[[int], None] | None = None,
) -> HypernetTrainResult:
    """Train a GHN for ``task`` over architectures of ``space`` (see the module docstring).

    Args:
        state: training-state file (see :func:`save_training_state`), written every
            ``state_every`` steps and at the last step. If it exists, the run resumes from
            it and continues exactly as an uninterrupted run would (same GHN, history and kept
            state); it must hold a run of the same ``config`` (the device may differ).
        state_every: steps between training-state writes (any step: the state holds the
            loss and accuracy summed since the last log step).
        resuming: called with the state's step once ``state`` is read and accepted.

    Raises:
        ValueError: ``state`` holds another run's state, or ``state_every`` is below 1.
    """
    from torch.func import functional_call

    if state is not None and state_every < 1:
        raise ValueError(f"state_every must be >= 1, got {state_every}")
    if config.spatial and task.level != "image":
        raise ValueError(f"spatial (--spatial) reads the feature-map size of image networks; "
                         f"{task.name!r} is a {task.level}-level task, whose networks have none")
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    if ghn is None:
        ghn = GraphHyperNetwork(GHNConfig(
            in_channels=task.num_features, out_channels=task.num_classes, level=task.level,
            space=space.name, dataset=task.name, hidden=config.hidden, rank=config.rank,
            rounds=config.rounds, max_distance=config.max_distance, seed=config.seed,
            feature_basis=config.feature_basis,
            weight_norm=config.weight_norm, tile_width=config.tile_width, spatial=config.spatial,
            **({"image_size": _image_size(task)} if config.spatial else {}),
        ))
        if config.feature_basis == "data":
            ghn.set_feature_basis(task_features(task))
    ghn = ghn.to(device).train()
    pool = training_pool(space, config)
    cache = _ArchCache(ghn, space, task, device)
    batches = TaskBatches(task, device, config.seed, config.batch_size)
    optimizer = torch.optim.AdamW(ghn.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                  foreach=True)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, config.steps) / config.steps)))
    run = _Run(rng=random.Random(config.seed))
    if state is not None and Path(state).exists():
        run = load_training_state(state, config, pool, ghn, optimizer, schedule, cache, batches)
        if resuming is not None:
            resuming(run.step)
    start = time.perf_counter() - run.seconds
    for step in range(run.step + 1, config.steps + 1):
        optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=device)
        for _ in range(config.archs_per_step):
            if not run.order:
                run.order = pool[:]
                run.rng.shuffle(run.order)
            model, plan = cache.get(run.order.pop())
            params = ghn(plan)
            args, y = batches.train_batch()
            model.train()
            logits = batches.select(functional_call(model, params, args))
            target = batches.targets(y)
            loss = nn.functional.cross_entropy(logits, target)
            if config.param_decay:
                loss = loss + config.param_decay / 2 * sum(p.square().sum() for p in params.values())
            total = total + loss / config.archs_per_step
            run.window_acc += float((logits.argmax(-1) == target).float().mean())
            run.window_n += 1
        if not torch.isfinite(total):
            raise FloatingPointError(f"GHN training loss became {float(total)} at step {step}")
        total.backward()
        nn.utils.clip_grad_norm_(ghn.parameters(), config.grad_clip)
        optimizer.step()
        schedule.step()
        run.window_loss += float(total.detach()) * config.archs_per_step
        if step % config.log_every == 0 or step == config.steps:
            entry = {"step": step, "loss": run.window_loss / run.window_n,
                     "train_acc": run.window_acc / run.window_n, "seconds": time.perf_counter() - start}
            if config.select_every and (step % config.select_every == 0 or step == config.steps):
                score = _selection_score(ghn, pool[:config.select_archs], cache, batches,
                                         config.select_items)
                entry["select_val_acc"] = score
                if score > run.best_score:
                    run.best_score, run.best_step = score, step
                    run.best_state = {k: v.detach().clone() for k, v in ghn.state_dict().items()}
                ghn.train()
            run.history.append(entry)
            if log is not None:
                log(step, entry)
            run.window_loss, run.window_acc, run.window_n = 0.0, 0.0, 0
        if state is not None and (step % state_every == 0 or step == config.steps):
            run.step, run.seconds = step, time.perf_counter() - start
            save_training_state(state, config, pool, ghn, optimizer, schedule, cache, batches, run)
    if run.best_state is not None:
        ghn.load_state_dict(run.best_state)
    ghn.eval()
    return HypernetTrainResult(ghn.cpu(), [a.arch_hash for a in pool], run.history,
                               time.perf_counter() - start, run.best_step or config.steps,
                               resumed_from=run.resumed_from)


# --------------------------------------------------------------------------- training state
#: the format of a training-state file
STATE_FORMAT = "metanas-ghn-training/1"


@dataclasses.dataclass
class _Run:
    """What a training run carries from step to step besides the modules and the optimizer."""

    rng: random.Random                 # shuffles the pool into ``order``
    order: list[Architecture] = dataclasses.field(default_factory=list)  # drawn from the end
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    best_score: float = -math.inf
    best_state: dict[str, Tensor] | None = None
    best_step: int = 0
    step: int = 0                      # last finished step
    seconds: float = 0.0               # training time up to ``step``
    resumed_from: int = 0
    window_loss: float = 0.0           # summed since the last log step, as the next entry reports
    window_acc: float = 0.0
    window_n: int = 0


def _comparable(config: HypernetTrainConfig) -> dict[str, Any]:
    """The settings a resumed run must share with its state (all but the device)."""
    return {k: v for k, v in dataclasses.asdict(config).items() if k != "device"}


def save_training_state(
    path: str | Path, config: HypernetTrainConfig, pool: list[Architecture],
    ghn: GraphHyperNetwork, optimizer: torch.optim.Optimizer, schedule: Any, cache: _ArchCache,
    batches: TaskBatches, run: _Run,
) -> None:
    """Write everything a resumed run needs into one safetensors file (tensors: the GHN, the
    kept best state, the optimizer state and the random generators; its JSON metadata: the
    config, the step, the history, the pool's order and the scheduler), replacing the previous
    one in one rename, so a run killed while writing leaves the previous state whole. Never
    pickle."""
    from storage.store import flatten_optimizer_state, write_state_file

    index = {arch.arch_hash: i for i, arch in enumerate(pool)}
    tensors = {f"ghn.{k}": v for k, v in ghn.state_dict().items()}
    tensors |= {f"best.{k}": v for k, v in (run.best_state or {}).items()}
    optimizer_tensors, param_groups = flatten_optimizer_state(optimizer.state_dict())
    tensors |= {f"optimizer.{k}": v for k, v in optimizer_tensors.items()}
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.batches"] = batches.generator.get_state()
    if torch.cuda.is_available() and _device(ghn).type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(_device(ghn))
    meta = {
        "format": STATE_FORMAT, "config": _comparable(config), "step": run.step,
        "seconds": run.seconds, "history": run.history, "best_score": run.best_score,
        "best_step": run.best_step, "has_best": run.best_state is not None,
        "pool": [arch.arch_hash for arch in pool],
        "order": [index[arch.arch_hash] for arch in run.order],
        "built": sorted(index[key] for key in cache.entries),
        "rng": run.rng.getstate(), "param_groups": param_groups,
        "schedule": schedule.state_dict(),
        "window": [run.window_loss, run.window_acc, run.window_n],
    }
    write_state_file(path, tensors, meta)


def _device(ghn: GraphHyperNetwork) -> torch.device:
    return next(ghn.parameters()).device


def load_training_state(
    path: str | Path, config: HypernetTrainConfig, pool: list[Architecture],
    ghn: GraphHyperNetwork, optimizer: torch.optim.Optimizer, schedule: Any, cache: _ArchCache,
    batches: TaskBatches,
) -> _Run:
    """Restore a run written by :func:`save_training_state` into freshly built objects;
    ``ValueError`` naming the difference if it holds another run."""
    from storage.store import read_training_state, tensors_under, unflatten_optimizer_state

    tensors, meta = read_training_state(path, STATE_FORMAT, "GHN training-state", "GHN training",
                                        _comparable(config))
    if meta["pool"] != [arch.arch_hash for arch in pool]:
        raise ValueError(f"{path} holds a run over another pool of architectures (another space "
                         "or version of the space): remove it to start again")
    device = _device(ghn)
    part = functools.partial(tensors_under, tensors)
    ghn.load_state_dict(part("ghn."))
    optimizer.load_state_dict(unflatten_optimizer_state(part("optimizer."), meta["param_groups"]))
    schedule.load_state_dict(meta["schedule"])
    with torch.random.fork_rng(devices=[]):  # building draws module weights: keep the stream
        for i in meta["built"]:
            cache.get(pool[i])
    torch.set_rng_state(tensors["rng.torch"])
    batches.generator.set_state(tensors["rng.batches"])
    if "rng.cuda" in tensors and device.type == "cuda":
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)
    version, internal, gauss = meta["rng"]
    rng = random.Random()
    rng.setstate((version, tuple(internal), gauss))
    best = {k: v.to(device) for k, v in part("best.").items()} if meta["has_best"] else None
    window_loss, window_acc, window_n = meta.get("window", (0.0, 0.0, 0))  # older: at log steps
    return _Run(rng=rng, order=[pool[i] for i in meta["order"]], history=meta["history"],
                best_score=meta["best_score"], best_state=best, best_step=meta["best_step"],
                step=meta["step"], seconds=meta["seconds"], resumed_from=meta["step"],
                window_loss=window_loss, window_acc=window_acc, window_n=window_n)


@torch.no_grad()
def _selection_score(ghn: GraphHyperNetwork, archs: list[Architecture], cache: _ArchCache,
                     batches: TaskBatches, max_items: int) -> float:
    """Mean validation accuracy of training architectures with predicted parameters."""
    ghn.eval()
    scores = []
    for arch in archs:
        model, plan = cache.get(arch)  # the module's own tensors are unused by training
        model.load_state_dict({**ghn(plan), **plan.buffers}, strict=False)
        calibrate_batchnorm(model, batches.calibration_inputs())
        scores.append(accuracy(model, batches, "val", max_items))
    return sum(scores) / len(scores)


# --------------------------------------------------------------------------- using a GHN
def predicted_model(ghn: GraphHyperNetwork, space: SearchSpace, arch: Architecture, task: Task,
                    batches: TaskBatches | None = None) -> nn.Module:
    """The model of ``arch`` with GHN-predicted parameters; BatchNorm statistics recomputed on
    training data (when the model has BatchNorm)."""
    check_task(ghn, task)
    model = space.build(arch, task.num_features, task.num_classes, task.level)
    model.load_state_dict(ghn.predict(model))
    batches = batches or TaskBatches(task)
    calibrate_batchnorm(model, batches.calibration_inputs())
    return model.eval()


def check_task(ghn: GraphHyperNetwork, task: Task) -> None:
    """``ValueError`` if the GHN predicts for other task dimensions than ``task``'s."""
    cfg = ghn.config
    if (cfg.in_channels, cfg.out_channels, cfg.level) != (task.num_features, task.num_classes, task.level):
        raise ValueError(
            f"hypernetwork trained for {cfg.level} tasks with {cfg.in_channels} features and "
            f"{cfg.out_channels} classes ({cfg.dataset or 'unknown dataset'}), but task "
            f"{task.name!r} has {task.num_features} features and {task.num_classes} classes "
            f"({task.level})"
        )


# --------------------------------------------------------------------------- loading by name
_LOADED: dict[str, GraphHyperNetwork] = {}


def default_hypernet(space: SearchSpace | str, task: Task | str) -> str:
    """``pretrained:<space>-<dataset>``: the shipped GHN for a space and task; ``ValueError``
    saying how to train one when none ships."""
    from metanets.ghn import pretrained_names

    space_name = getattr(space, "name", space)
    task_name = getattr(task, "name", task)
    name = f"{space_name}-{task_name}"
    if name not in pretrained_names():
        raise ValueError(
            f"no pretrained hypernetwork for space {space_name!r} on {task_name!r} (shipped: "
            f"{pretrained_names()}); train one with metanas hypernet train --space {space_name} "
            f"--dataset {task_name} --out FILE and pass --hypernet FILE")
    return f"pretrained:{name}"


def load_hypernet(path: str, task: Task | None = None) -> GraphHyperNetwork:
    """Load (once per process) a GHN checkpoint or ``pretrained:<name>``, checked against
    ``task``'s dimensions when given."""
    if path not in _LOADED:
        _LOADED[path] = GraphHyperNetwork.load(path)
    ghn = _LOADED[path]
    if task is not None:
        check_task(ghn, task)
    return ghn


__all__ = [
    "HypernetTrainConfig", "HypernetTrainResult", "TaskBatches", "accuracy", "arch_depth",
    "arch_widths", "check_task", "default_hypernet", "in_range", "load_hypernet", "predicted_model",
    "load_training_state", "sample_architectures", "save_training_state", "structure_key",
    "task_features", "train_hypernet",
]
