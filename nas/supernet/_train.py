"""Single-path one-shot (SPOS) training of a supernet, checkpointed and resumable.

Guo et al., "Single Path One-Shot Neural Architecture Search with Uniform Sampling", ECCV 2020:
each optimisation step runs one path drawn uniformly from the covered sub-space, so every
candidate's weights are trained in the context of random others.

Why a loop of its own beside :func:`nas.train.train_model` (the one loop for *stand-alone*
models): a supernet step draws a new path, the run must checkpoint and resume with its optimizer
state, and it may run under ``torch.distributed``; none of this exists for a single model, and
model selection by validation accuracy (what ``train_model`` does) is meaningless for a supernet.
Stand-alone models (fine-tuning, from-scratch training) still go through ``train_model``.

Determinism: the path and the dropout masks of step ``t`` are functions of ``(seed, t)`` and
graph batches of ``(seed, epoch)``, so a resumed run continues exactly as an uninterrupted one,
and every process of a distributed run draws the same path.

Distributed: when ``torch.distributed`` is initialised (``torchrun``), the supernet is wrapped in
``DistributedDataParallel`` (``find_unused_parameters=True``: a step uses one path, or under fair
sampling a few, whose gradients add up locally and are all-reduced once), each process
takes a strided share of the training nodes (node tasks) or of each mini-batch's graphs (graph
tasks), its loss is scaled by ``world_size / total`` so averaged gradients equal single-process
gradients (on graph tasks but for BatchNorm statistics and dropout masks, which each process
draws over its share of a mini-batch), and only rank 0 writes checkpoints.
"""
from __future__ import annotations

import dataclasses
import math
import random
import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from nas.supernet._checkpoint import (
    check_checkpoint_folder, has_checkpoint, load_optimizer_state, load_weights_into, read_meta,
    save_checkpoint,
)
from nas.train import own_random_state, resolve_device

if TYPE_CHECKING:
    from nas.supernet._base import Supernet
    from nas.tasks import Task


#: path sampling of a training step: ``uniform`` draws one path (SPOS); ``fair`` runs the
#: :meth:`~nas.supernet._base.Supernet.fair_paths` of strict fairness (FairNAS) and averages
#: their gradients into one update, so a step costs as many forward/backward passes as paths
SAMPLINGS = ("uniform", "fair")


@dataclasses.dataclass
class SupernetTrainConfig:
    """How to train a supernet."""

    epochs: int = 300             # passes over the training data (node tasks: one step each)
    lr: float = 5e-3              # Adam learning rate
    weight_decay: float = 5e-4    # Adam weight decay
    batch_size: int = 64          # graphs per mini-batch (graph tasks)
    seed: int = 0                 # seeds initialisation, paths, dropout and batch order
    device: str = "auto"          # cpu, cuda or auto
    checkpoint_every: int = 50    # epochs between checkpoints (and one at the end)
    amp: bool = False             # bfloat16 autocast on CUDA (ignored on the CPU)
    sampling: str = "uniform"     # uniform: one path per step (SPOS); fair: FairNAS paths

    def __post_init__(self) -> None:
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"unknown sampling {self.sampling!r}; choose one of {list(SAMPLINGS)}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:  # node tasks take the whole graph, but a bad value is still bad
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {self.checkpoint_every}")


@dataclasses.dataclass
class SupernetTrainResult:
    """What a (possibly resumed) run did."""

    epochs: int                   # epochs finished in total
    steps: int                    # optimisation steps in total
    seconds: float                # training time in total, over all resumptions
    resumed_from: int             # epoch the run resumed from (0: fresh)
    history: list[float]          # mean training loss per epoch


def path_rng(seed: int, step: int) -> random.Random:
    """The generator that draws step ``step``'s path (same in every process)."""
    return random.Random(f"supernet-path-{seed}-{step}")


@own_random_state
def train_supernet(
    supernet: Supernet, task: Task, config: SupernetTrainConfig, out: str | Path | None = None,
    dataset: str | None = None, overwrite: bool = False,
) -> SupernetTrainResult:
    """Train ``supernet`` with SPOS; checkpoint into ``out`` and resume from it if present.

    Args:
        supernet: a freshly built supernet (its weights are replaced by a checkpoint's).
        task: the task (node level: ``.data`` with masks; graph level: ``.dataset``/``.splits``).
        config: training settings.
        out: checkpoint folder; ``None`` trains without checkpoints.
        dataset: dataset name recorded in the checkpoint (default ``task.name``).
        overwrite: train from scratch even if ``out`` holds a checkpoint (of any settings); it
            stays whole until this run's first checkpoint replaces it in one step.

    Raises:
        ValueError: ``out`` holds a checkpoint of another space, supernet, dataset or training
            settings (:data:`RESUME_SETTINGS`), or files but no checkpoint
            (:func:`check_checkpoint_folder`), unless ``overwrite``; ``out`` is a file.
    """
    if out is not None:
        check_checkpoint_folder(out, overwrite)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    supernet.to(device)
    optimizer = torch.optim.Adam(supernet.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    meta = _meta(supernet, task, config, dataset)
    start_epoch, step, seconds, history = 0, 0, 0.0, []
    if out is not None and not overwrite and has_checkpoint(out):
        start_epoch, step, seconds, history = _resume(out, supernet, optimizer, meta, device)
    model = _maybe_distributed(supernet, device)
    loop = _NodeSteps(task, device, supernet) if task.level == "node" else _GraphSteps(task, config, device)
    for epoch in range(start_epoch + 1, config.epochs + 1):
        began = time.perf_counter()
        losses = []
        for batch in loop.batches(epoch, config.seed):
            losses.append(_step(model, supernet, optimizer, batch, config, step, device))
            step += 1
        history.append(sum(losses) / max(len(losses), 1))
        seconds += time.perf_counter() - began
        if not math.isfinite(history[-1]):
            raise FloatingPointError(f"supernet training loss became {history[-1]} at epoch {epoch}")
        if out is not None and (epoch % config.checkpoint_every == 0 or epoch == config.epochs):
            _save(out, supernet, optimizer, meta, epoch, step, seconds, history)
    _wait_for_every_rank()
    return SupernetTrainResult(max(start_epoch, config.epochs), step, seconds, start_epoch, history)


def _wait_for_every_rank() -> None:
    """Under torch.distributed, return only once every rank is here: after rank 0 wrote the
    final checkpoint (another rank may read it next), and so that no rank tears its process
    group down while another still finishes (the 2-process gloo test aborted with SIGABRT in
    2 of about 20 runs without this; whether this barrier removes that is not proven)."""
    import torch.distributed as dist

    if _world()[1] > 1:
        dist.barrier()


def _step(
    model: nn.Module, supernet: Supernet, optimizer: torch.optim.Optimizer, batch: _Batch,
    config: SupernetTrainConfig, step: int, device: torch.device,
) -> float:
    rng = path_rng(config.seed, step)
    archs = supernet.fair_paths(rng) if config.sampling == "fair" else [supernet.sample(rng)]
    model.train()
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for k, arch in enumerate(archs):
        # dropout masks of this step (and path: uniform sampling keeps its historical seeds)
        torch.manual_seed(config.seed * 1_000_003 + step + k * 7_919_009)
        with _no_sync(model, last=k == len(archs) - 1):
            with _autocast(config, device):
                out = model(batch.x, batch.edge_index, batch.batch, arch=arch)  # (N or B, C)
                logits = out[batch.select] if batch.select is not None else out
                loss = nn.functional.cross_entropy(logits.float(), batch.y, reduction="sum") * batch.scale
            (loss / len(archs)).backward()
        total += float(loss.detach())
    if model is not supernet:
        _drop_off_path_grads(supernet, archs)
    optimizer.step()
    return total / len(archs) / batch.scale / max(batch.y.numel(), 1)


def _no_sync(model: nn.Module, last: bool) -> Any:
    """Under DDP, the paths of a step but its last accumulate gradients locally (forward and
    backward inside ``no_sync``); the last backward all-reduces the sum once, rather than once
    per path."""
    from torch.nn.parallel import DistributedDataParallel

    return model.no_sync() if isinstance(model, DistributedDataParallel) and not last else nullcontext()


def _drop_off_path_grads(supernet: Supernet, archs: list[Any]) -> None:
    """DDP hands parameters off the paths zero gradients once they have had one; Adam would
    still move them (momentum, weight decay), which single-process training does not."""
    used = {
        id(p) for arch in archs for module in supernet.path_modules(arch) for p in module.parameters()
    }
    for param in supernet.parameters():
        if id(param) not in used:
            param.grad = None


def _autocast(config: SupernetTrainConfig, device: torch.device) -> Any:
    if config.amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


@dataclasses.dataclass
class _Batch:
    """One step's input: the graph(s), which outputs count, their labels, the loss scale."""

    x: Tensor
    edge_index: Any         # (2, E) edges, or a StaticGraph (node tasks, see _NodeSteps)
    batch: Tensor | None
    select: Tensor | None   # node indices whose loss counts (node tasks)
    y: Tensor
    scale: float            # world_size / examples in the global batch


def is_rank_zero() -> bool:
    """Whether this process writes checkpoints and speaks for the run: rank 0 of a
    torch.distributed run, or the one process without it."""
    return _world()[0] == 0


def _world() -> tuple[int, int]:
    """(rank, world size); (0, 1) without torch.distributed."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _NodeSteps:
    """Full batch: one step per epoch over this process's share of the training nodes. A
    supernet with ``fixed_graph_inputs`` gets the graph once as a
    :class:`~search_spaces.static_graph.StaticGraph` (propagation matrices built once, sparse
    input features), as stand-alone models do in :func:`nas.train.train_model`."""

    def __init__(self, task: Task, device: torch.device, supernet: Supernet | None = None) -> None:
        rank, world = _world()
        self.data = task.data.to(device)
        train = self.data.train_mask.nonzero().view(-1)
        self.select = train[rank::world]
        self.scale = world / max(train.numel(), 1)
        prepare = getattr(supernet, "fixed_graph_inputs", None)
        self.x, self.graph = (
            prepare(self.data.x, self.data.edge_index) if callable(prepare)
            else (self.data.x, self.data.edge_index)
        )

    def batches(self, epoch: int, seed: int) -> list[_Batch]:  # noqa: ARG002 - one full batch
        y = self.data.y[self.select]
        return [_Batch(self.x, self.graph, None, self.select, y, self.scale)]


class _GraphSteps:
    """Mini-batches of training graphs, shuffled by ``(seed, epoch)``; each process takes a
    strided share of each batch."""

    def __init__(self, task: Task, config: SupernetTrainConfig, device: torch.device) -> None:
        self.dataset, self.train = task.dataset, task.splits["train"]
        self.batch_size, self.device = config.batch_size, device

    def batches(self, epoch: int, seed: int) -> list[_Batch]:
        from torch_geometric.data import Batch

        rank, world = _world()
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = self.train[torch.randperm(self.train.numel(), generator=generator)]
        out = []
        for chunk in order.split(self.batch_size):
            mine = chunk[rank::world]
            if mine.numel() == 0:
                continue
            graphs = Batch.from_data_list([self.dataset[int(i)] for i in mine]).to(self.device)
            out.append(_Batch(
                graphs.x, graphs.edge_index, graphs.batch, None, graphs.y.view(-1),
                world / chunk.numel(),
            ))
        return out


def init_distributed(device: str = "auto") -> str:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1 in the environment):
    NCCL with one GPU per process (``cuda:LOCAL_RANK``) when CUDA is used, gloo on the CPU.
    Returns the device this process trains on; without torchrun, ``device`` resolved."""
    import os

    import torch.distributed as dist

    resolved = resolve_device(device)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return str(resolved)
    if resolved.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        dist.init_process_group("nccl")
        return f"cuda:{local}"
    dist.init_process_group("gloo")
    return "cpu"


def _maybe_distributed(supernet: nn.Module, device: torch.device) -> nn.Module:
    _, world = _world()
    if world == 1:
        return supernet
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index or 0] if device.type == "cuda" else None
    return DistributedDataParallel(supernet, device_ids=ids, find_unused_parameters=True)


def _meta(supernet: Supernet, task: Task, config: SupernetTrainConfig, dataset: str | None) -> dict[str, Any]:
    return {
        "space": supernet.space_name, "supernet": supernet.config(),
        "dataset": dataset or task.name, "level": task.level,
        "train": dataclasses.asdict(config),
    }


#: training settings a resumed run must share with its checkpoint: more epochs continue it, and
#: the device and checkpoint interval may change, but a resume with another seed, path sampling
#: or optimiser setting would continue one run as another
RESUME_SETTINGS = ("seed", "sampling", "lr", "weight_decay", "batch_size", "amp")


def training_differences(trained: dict[str, Any], requested: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{setting: (trained with, requested)}`` for the :data:`RESUME_SETTINGS` in which a
    checkpoint's training settings (``meta["train"]``) and a requested
    :class:`SupernetTrainConfig` (as a dict) differ; a setting an older checkpoint lacks counts
    as its default."""
    default = dataclasses.asdict(SupernetTrainConfig())
    return {key: (trained.get(key, default[key]), requested[key]) for key in RESUME_SETTINGS
            if trained.get(key, default[key]) != requested[key]}


def describe_differences(differ: dict[str, tuple[Any, Any]], names: dict[str, str] | None = None) -> str:
    """``"trained with seed 0, lr 0.005, not seed 1, lr 0.001"`` for :func:`training_differences`'
    result; ``names`` renames settings on the requested side (a script's flags)."""
    names = names or {}
    return ("trained with " + ", ".join(f"{key} {was!r}" for key, (was, _) in differ.items())
            + ", not " + ", ".join(f"{names.get(key, key)} {now!r}" for key, (_, now) in differ.items()))


#: how a checkpoint of other settings is trained over (the CLI flag; train_supernet's overwrite)
_OVERWRITE_HINT = "pass --overwrite to train a new one from scratch that replaces it"


def _resume(
    out: str | Path, supernet: nn.Module, optimizer: torch.optim.Optimizer,
    meta: dict[str, Any], device: torch.device,
) -> tuple[int, int, float, list[float]]:
    saved = read_meta(out)
    for key in ("space", "dataset"):
        if saved[key] != meta[key]:
            raise ValueError(
                f"{out} holds a supernet checkpoint with {key} {saved[key]!r}, not {meta[key]!r}; "
                f"choose another --out folder, or {_OVERWRITE_HINT}"
            )
    options = _option_differences(saved["supernet"], meta["supernet"])
    if options:
        raise ValueError(
            f"{out} holds a supernet checkpoint of other options, {describe_differences(options)}; "
            f"choose another --out folder, or {_OVERWRITE_HINT}"
        )
    differ = training_differences(saved.get("train", {}), meta["train"])
    if differ:
        raise ValueError(
            f"{out} holds a supernet {describe_differences(differ)}; resume it with the settings "
            f"it was trained with, choose another --out folder, or {_OVERWRITE_HINT}"
        )
    load_weights_into(supernet, out, saved, device)
    optimizer.load_state_dict(load_optimizer_state(out, saved))
    return int(saved["epoch"]), int(saved["step"]), float(saved["seconds"]), list(saved["history"])


def _option_differences(trained: dict[str, Any], requested: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{option: (trained with, requested)}`` for the supernet options (constructor config) in
    which a checkpoint and the requested supernet differ: those alone, not both whole configs."""
    return {key: (trained.get(key), requested.get(key)) for key in sorted({*trained, *requested})
            if trained.get(key) != requested.get(key)}


def _save(
    out: str | Path, supernet: nn.Module, optimizer: torch.optim.Optimizer, meta: dict[str, Any],
    epoch: int, step: int, seconds: float, history: list[float],
) -> None:
    if not is_rank_zero():
        return
    state = {**meta, "epoch": epoch, "step": step, "seconds": seconds, "history": history}
    save_checkpoint(out, supernet, optimizer, state)
