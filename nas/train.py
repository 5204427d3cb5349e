"""The one training and evaluation loop of metanas.

Full batch for node tasks, mini-batches for graph tasks; Adam (or plain SGD); early stopping on
validation accuracy; the state of the best validation epoch is kept and evaluated on the test
split (which is recorded, never used to select). Intermediate validation accuracies go to a ``report``
callback so Optuna pruners work.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import math
import numbers
import random
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

P = ParamSpec("P")
R = TypeVar("R")

if TYPE_CHECKING:
    from nas.tasks import Task

#: ``report(epoch, val_acc)``; may raise (``optuna.TrialPruned``) to stop training
Reporter = Callable[[int, float], None]

SPLITS: tuple[str, ...] = ("train", "val", "test")


class DivergedError(RuntimeError):
    """The loss became NaN or infinite."""


#: what ``TrainConfig.select`` may keep: the epoch of highest validation accuracy or lowest loss
SELECTIONS: tuple[str, ...] = ("val_acc", "val_loss")


@dataclasses.dataclass
class TrainConfig:
    """How to train one model."""

    lr: float = 5e-3              # learning rate
    weight_decay: float = 5e-4    # L2 weight decay
    epochs: int = 200             # most epochs
    patience: int = 50            # stop after this many epochs without a better selected epoch (select); 0 = never
    batch_size: int = 64          # graphs per mini-batch (graph tasks)
    seed: int = 0                 # seeds initialisation, dropout and batch order
    device: str = "cpu"           # torch device
    eval_every: int = 1           # epochs between validations
    optimizer: str = "adam"       # "adam" or "sgd" (plain SGD, as NAS-Bench-Graph trains some datasets)
    fixed_graph: bool = True      # node tasks: use the model's ``fixed_graph_forward`` if it has one
    train_fraction: float = 1.0   # image tasks: fraction of the training images used (seeded subset)
    #: epochs after which the metrics (all splits) and weights are recorded in
    #: ``TrainResult.checkpoints`` (model zoos store them: accuracy at several epochs)
    checkpoint_epochs: tuple[int, ...] = ()
    #: on a NaN/infinite training loss, stop and return the best-validation result so far (what
    #: a benchmark that trains on through NaN and keeps its best validation epoch records)
    #: instead of raising ``DivergedError``; it still raises when no epoch was validated yet
    keep_best_on_divergence: bool = False
    #: which validated epoch's weights and metrics are kept (and patience counts from):
    #: ``"val_acc"``, the highest validation accuracy (the first of equal ones), or
    #: ``"val_loss"``, the lowest validation loss (what NAS-Bench-Graph's training code reports)
    select: str = "val_acc"

    def __post_init__(self) -> None:
        if self.select not in SELECTIONS:
            raise ValueError(f"could not resolve select {self.select!r} among choices {list(SELECTIONS)}")
        check_counts(self, epochs=(0, "0: no training"), eval_every=1, batch_size=1,
                     patience=(0, "0: never stop early"))
        if not 0 < self.train_fraction <= 1:
            raise ValueError(f"train_fraction must lie in (0, 1], got {self.train_fraction!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"could not resolve optimizer {self.optimizer!r} among choices {list(OPTIMIZERS)}")


@dataclasses.dataclass
class TrainResult:
    """What training measured; ``state_dict`` holds the best-validation weights (on the CPU)."""

    metrics: dict[str, float]                  # train_acc, val_acc, test_acc, val_loss
    best_epoch: int
    epochs_run: int
    seconds: float
    state_dict: dict[str, Tensor]
    history: list[tuple[int, float]] = dataclasses.field(default_factory=list)  # (epoch, val_acc)
    #: epoch -> (metrics of every split, CPU weights) after that epoch, for config.checkpoint_epochs
    checkpoints: dict[int, tuple[dict[str, float], dict[str, Tensor]]] = dataclasses.field(
        default_factory=dict)
    diverged_at: int | None = None  # the epoch whose loss was not finite (keep_best_on_divergence)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as torch understands it."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):  # torch lists every device type it knows, twenty of them
        raise ValueError(f"could not resolve device {str(device)!r} among choices ['auto', 'cpu', "
                         f"'cuda', 'cuda:N']") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available; use cpu or auto")
    return resolved


def check_counts(config: object, **least: int | tuple[int, str]) -> None:
    """``ValueError`` naming the first field of ``config`` that is not an integer at least
    ``least[field]`` (or ``(least, what it means)``): a config of counts that could not run."""
    for name, bound in least.items():
        lowest, meaning = bound if isinstance(bound, tuple) else (bound, "")
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lowest:
            raise ValueError(f"{name} must be an integer >= {lowest}, got {value!r}"
                             + (f" ({meaning})" if meaning else ""))


def own_random_state(function: Callable[P, R]) -> Callable[P, R]:
    """``function`` run in a fork of torch's generators (the CPU's and every CUDA device's):
    the seed it sets and the numbers it draws leave the caller's random state as it was."""
    @functools.wraps(function)
    def forked(*args: P.args, **kwargs: P.kwargs) -> R:
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            return function(*args, **kwargs)

    return forked


@contextlib.contextmanager
def kept_modes(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` for the block; afterwards every submodule is back in the train or eval mode it
    was in (``model.train(was_training)`` would put them all in the root's mode)."""
    modes = [(module, module.training) for module in model.modules()]
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def train_model(
    model: nn.Module, task: Task, config: TrainConfig, report: Reporter | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train ``model`` on ``task`` and return the best-validation weights and metrics.

    Dropout and every other random draw during training come from torch's generators seeded
    with ``config.seed`` (forked, so the caller's random state is left as it was): the same
    model, task and config train to the same result whatever ran before.

    Raises:
        DivergedError: the training loss became NaN or infinite (with
            ``config.keep_best_on_divergence``: only if no epoch was validated before).
    """
    device = resolve_device(config.device)
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(config.seed)
        return _train(model, task, config, device, report, progress)


def _train(
    model: nn.Module, task: Task, config: TrainConfig, device: torch.device,
    report: Reporter | None, progress: bool,
) -> TrainResult:
    model = model.to(device)
    optimizer = make_optimizer(model, config)
    if task.level == "node":
        loop: _NodeLoop | _GraphLoop | _ImageLoop = _NodeLoop(task, model, device, config.fixed_graph)
    elif task.level == "graph":
        loop = _GraphLoop(task, config, device)
    else:
        loop = _ImageLoop(task, config, device)
    start = time.perf_counter()
    best_score, best_epoch, best_state = -math.inf, 0, _cpu_state(model)
    history: list[tuple[int, float]] = []
    checkpoints: dict[int, tuple[dict[str, float], dict[str, Tensor]]] = {}
    epoch, diverged_at = 0, None
    for epoch in _epochs(config.epochs, progress):
        loss = loop.train_epoch(model, optimizer)
        if not math.isfinite(loss):
            if not (config.keep_best_on_divergence and history):
                raise DivergedError(f"training loss became {loss} at epoch {epoch}")
            diverged_at = epoch
            break
        if epoch in config.checkpoint_epochs:
            checkpoints[epoch] = (loop.final_metrics(model), _cpu_state(model))
        if epoch % config.eval_every and epoch != config.epochs:
            continue
        if epoch in checkpoints:
            val_acc, val_loss = checkpoints[epoch][0]["val_acc"], checkpoints[epoch][0]["val_loss"]
        else:
            val_acc, val_loss = loop.evaluate(model, "val")
        history.append((epoch, val_acc))
        score = val_acc if config.select == "val_acc" else -val_loss
        if score > best_score:
            best_score, best_epoch, best_state = score, epoch, _cpu_state(model)
        if report is not None:
            report(epoch, val_acc)
        if config.patience and epoch - best_epoch >= config.patience:
            break
    model.load_state_dict(best_state)
    metrics = loop.final_metrics(model)
    return TrainResult(
        metrics, best_epoch, epoch, time.perf_counter() - start, best_state, history, checkpoints,
        diverged_at)


#: optimiser name -> class (``TrainConfig.optimizer``)
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
}


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser ``config`` names; ``ValueError`` listing the choices otherwise."""
    if config.optimizer not in OPTIMIZERS:
        raise ValueError(
            f"could not resolve optimizer {config.optimizer!r} among choices {sorted(OPTIMIZERS)}"
        )
    cls = OPTIMIZERS[config.optimizer]
    return cls(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def _epochs(epochs: int, progress: bool) -> Iterator[int]:
    if not progress:
        yield from range(1, epochs + 1)
        return
    from tqdm.auto import tqdm

    yield from tqdm(range(1, epochs + 1), desc="epochs", leave=False, unit="ep")


def _cpu_state(model: nn.Module) -> dict[str, Tensor]:
    return {key: value.detach().to("cpu", copy=True) for key, value in model.state_dict().items()}


class _NodeLoop:
    """Full-batch training on one graph with train/val/test masks.

    The graph never changes, so a model that offers ``fixed_graph_forward(x, edge_index) ->
    Callable[[], Tensor]`` (see :meth:`search_spaces.gnn.GNN.fixed_graph_forward`) computes its
    graph-only work (sparse features, normalised adjacency) once here, not once per epoch.
    """

    def __init__(
        self, task: Task, model: nn.Module, device: torch.device, fixed_graph: bool = True
    ) -> None:
        self.data = task.data.to(device)
        x, edge_index = self.data.x, self.data.edge_index
        prepare = getattr(model, "fixed_graph_forward", None) if fixed_graph else None
        self.forward: Callable[[], Tensor] = (
            prepare(x, edge_index) if callable(prepare) else lambda: model(x, edge_index)
        )

    def train_epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> float:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        out = self.forward()  # (N, C)
        mask = self.data.train_mask
        loss = nn.functional.cross_entropy(out[mask], self.data.y[mask])
        loss.backward()
        optimizer.step()
        return loss.item()

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> tuple[float, float]:
        model.eval()
        out = self.forward()
        return _accuracy_and_loss(out, self.data.y, self.data[f"{split}_mask"])

    @torch.no_grad()
    def final_metrics(self, model: nn.Module) -> dict[str, float]:
        model.eval()
        out = self.forward()
        metrics = {}
        for split in SPLITS:
            acc, loss = _accuracy_and_loss(out, self.data.y, self.data[f"{split}_mask"])
            metrics[f"{split}_acc"], metrics[f"{split}_loss"] = acc, loss
        return metrics


def _accuracy_and_loss(out: Tensor, y: Tensor, mask: Tensor) -> tuple[float, float]:
    out, y = out[mask], y[mask]
    loss = float(nn.functional.cross_entropy(out, y)) if y.numel() else math.nan
    acc = float((out.argmax(-1) == y).float().mean()) if y.numel() else math.nan
    return acc, loss


class _GraphLoop:
    """Mini-batch training over the graphs of a TUDataset-style task."""

    def __init__(self, task: Task, config: TrainConfig, device: torch.device) -> None:
        from torch_geometric.loader import DataLoader

        self.device = device
        generator = torch.Generator().manual_seed(config.seed)
        self.loaders = {
            split: DataLoader(
                task.dataset[task.splits[split]], batch_size=config.batch_size,
                shuffle=split == "train", generator=generator if split == "train" else None,
            )
            for split in SPLITS
        }

    def train_epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> float:
        model.train()
        total, count = 0.0, 0
        for batch in self.loaders["train"]:
            batch = batch.to(self.device)
            optimizer.zero_grad(set_to_none=True)
            out = model(batch.x, batch.edge_index, batch.batch)  # (B, C)
            loss = nn.functional.cross_entropy(out, batch.y.view(-1))
            loss.backward()
            optimizer.step()
            total += loss.item() * batch.num_graphs
            count += batch.num_graphs
        return total / max(count, 1)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> tuple[float, float]:
        model.eval()
        correct, loss_sum, count = 0, 0.0, 0
        for batch in self.loaders[split]:
            batch = batch.to(self.device)
            out = model(batch.x, batch.edge_index, batch.batch)
            y = batch.y.view(-1)
            correct += int((out.argmax(-1) == y).sum())
            loss_sum += float(nn.functional.cross_entropy(out, y, reduction="sum"))
            count += y.numel()
        if not count:
            return math.nan, math.nan
        return correct / count, loss_sum / count

    def final_metrics(self, model: nn.Module) -> dict[str, float]:
        metrics = {}
        for split in SPLITS:
            metrics[f"{split}_acc"], metrics[f"{split}_loss"] = self.evaluate(model, split)
        return metrics


def clone_model(model: nn.Module) -> nn.Module:
    """A deep copy (used to keep an input model untouched)."""
    return copy.deepcopy(model)


@torch.no_grad()
def _forward_inputs(task: Task, device: str | torch.device) -> tuple:
    """A forward pass's inputs: the whole graph (node task), or one training batch of 64 graphs
    or 64 images."""
    if task.level == "node":
        data = task.data.to(device)
        return (data.x, data.edge_index)
    if task.level == "image":
        return (task.dataset.x["train"][:64].to(device),)
    from torch_geometric.data import Batch

    graphs = task.dataset[task.splits["train"][:64]]
    batch = Batch.from_data_list(list(graphs)).to(device)
    return (batch.x, batch.edge_index, batch.batch)


def forward_latency(
    model: nn.Module, task: Task, device: str | torch.device = "cpu", repeats: int = 5
) -> float | None:
    """Median seconds of one inference forward pass (the inputs of :func:`forward_flops`), after
    one warm-up pass. ``None`` if the pass fails."""
    import statistics
    import time

    model.eval()
    try:
        inputs = _forward_inputs(task, device)
        times = []
        with torch.no_grad():
            for _ in range(repeats + 1):
                if torch.device(device).type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                model(*inputs)
                if torch.device(device).type == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
        return statistics.median(times[1:])
    except Exception:  # noqa: BLE001 - a timing is informative, never worth failing a trial
        return None


def forward_flops(model: nn.Module, task: Task, device: str | torch.device = "cpu") -> int | None:
    """FLOPs of one forward pass (node task: the whole graph; graph task: one training batch),
    as counted by ``torch.utils.flop_counter`` (dense matrix products; message passing's
    scatter operations are not counted). ``None`` if counting fails."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    try:
        inputs = _forward_inputs(task, device)
        counter = FlopCounterMode(display=False)
        with counter:
            model(*inputs)
        return int(counter.get_total_flops())
    except Exception:  # noqa: BLE001 - FLOPs are informative, never worth failing a trial
        return None


class _ImageLoop:
    """Mini-batches of an in-memory image task (:class:`nas.tasks.ImageDataset`); the model is
    called as ``model(images)``. Trains on a seeded ``config.train_fraction`` of the training
    images; the train metrics are measured on that subset."""

    EVAL_BATCH = 4096

    def __init__(self, task: Task, config: TrainConfig, device: torch.device) -> None:
        data = task.dataset
        n_train = int(data.y["train"].numel())
        if not 0.0 < config.train_fraction <= 1.0:
            raise ValueError(f"train_fraction {config.train_fraction} must be in (0, 1]")
        keep = max(1, round(config.train_fraction * n_train))
        self.generator = torch.Generator().manual_seed(config.seed)
        subset = torch.randperm(n_train, generator=self.generator)[:keep].sort().values
        self.x = {"train": data.x["train"][subset], "val": data.x["val"], "test": data.x["test"]}
        self.y = {"train": data.y["train"][subset], "val": data.y["val"], "test": data.y["test"]}
        self.x = {split: x.to(device) for split, x in self.x.items()}  # (N, C, H, W)
        self.y = {split: y.to(device) for split, y in self.y.items()}  # (N,)
        self.batch_size = config.batch_size

    def train_epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> float:
        model.train()
        x, y = self.x["train"], self.y["train"]
        order = torch.randperm(y.numel(), generator=self.generator).to(y.device)
        total = 0.0
        for batch in order.split(self.batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
            total += loss.item() * batch.numel()
        return total / max(y.numel(), 1)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> tuple[float, float]:
        model.eval()
        x, y = self.x[split], self.y[split]
        if not y.numel():
            return math.nan, math.nan
        correct, loss_sum = 0, 0.0
        for start in range(0, y.numel(), self.EVAL_BATCH):
            out = model(x[start:start + self.EVAL_BATCH])
            target = y[start:start + self.EVAL_BATCH]
            correct += int((out.argmax(-1) == target).sum())
            loss_sum += float(nn.functional.cross_entropy(out, target, reduction="sum"))
        return correct / y.numel(), loss_sum / y.numel()

    def final_metrics(self, model: nn.Module) -> dict[str, float]:
        metrics = {}
        for split in SPLITS:
            metrics[f"{split}_acc"], metrics[f"{split}_loss"] = self.evaluate(model, split)
        return metrics
