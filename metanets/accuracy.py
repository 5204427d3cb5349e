"""Predict a trained network's accuracy from its weights: fit a :class:`~metanets.gmn.GMN` on a
zoo, predict for new networks, and score rankings (Kendall tau, R^2).

The fitting loop here regresses a metric of whole networks (mini-batches of parameter graphs,
MSE on standardised targets, Adam, the epoch with the best validation Kendall tau kept); the
networks themselves were trained by :mod:`nas.train`.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from metanets.gmn import GMN, GMNConfig, collate, prepare_graph
from metanets.probes import ProbedNetwork
from nas.train import check_counts, own_random_state

if TYPE_CHECKING:
    from torch_geometric.data import Data

    from metanets.zoo import Zoo


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """How to fit a GMN accuracy predictor."""

    epochs: int = 60            # passes over the training networks
    batch_size: int = 32        # networks per mini-batch
    lr: float = 2e-3            # Adam learning rate (cosine-decayed to 0)
    weight_decay: float = 1e-5  # Adam weight decay
    seed: int = 0               # initialisation and batch order
    hidden: int = 64            # GMN feature size
    layers: int = 3             # GMN layers
    eval_every: int = 2         # epochs between validations
    max_inputs: int = 0         # summarise networks with more inputs (GMNConfig.max_inputs)
    probes: int = 0             # learned probe inputs the GMN also reads (GMNConfig.probes)
    probe_init: str = "noise"   # probes start from noise or from task inputs (fit_gmn probe_start)
    graph_branch: bool = True   # False: probes only, no parameter graph (an ablation)

    def __post_init__(self) -> None:
        check_counts(self, epochs=1, batch_size=1, hidden=1, layers=0, eval_every=1, max_inputs=0, probes=0)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")


@dataclasses.dataclass
class FitResult:
    """A fitted model (best validation epoch), its history and the time it took."""

    model: GMN
    best_epoch: int
    history: list[tuple[int, float, float]]  # (epoch, train loss, val tau; NaN where undefined)
    seconds: float
    #: what chose ``best_epoch``: ``"val_tau"``, or ``"train_loss"`` when no validation epoch
    #: had a Kendall tau (fewer than two validation networks, or constant predictions or targets)
    selected_on: str = "val_tau"


def kendall_tau(pred: Sequence[float] | Tensor, target: Sequence[float] | Tensor) -> float:
    """Kendall's tau-b of two score lists (NaN for fewer than two or constant lists)."""
    from scipy.stats import kendalltau

    pred, target = _numpy(pred), _numpy(target)
    if len(pred) < 2:
        return math.nan
    value = kendalltau(pred, target).statistic
    return float(value)


def r2_score(pred: Sequence[float] | Tensor, target: Sequence[float] | Tensor) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot``."""
    pred, target = _numpy(pred), _numpy(target)
    total = ((target - target.mean()) ** 2).sum()
    return float(1 - ((target - pred) ** 2).sum() / total) if total > 0 else math.nan


def _numpy(values: Sequence[float] | Tensor):  # noqa: ANN202
    import numpy as np

    if isinstance(values, Tensor):
        return values.detach().cpu().double().numpy().reshape(-1)
    return np.asarray(values, dtype=float).reshape(-1)


@own_random_state
def fit_gmn(
    train_graphs: Sequence[Data], train_targets: Tensor, val_graphs: Sequence[Data],
    val_targets: Tensor, config: FitConfig = FitConfig(), verbose: bool = False,
    train_networks: Sequence[ProbedNetwork] | None = None,
    val_networks: Sequence[ProbedNetwork] | None = None, probe_start: Tensor | None = None,
    state: str | Path | None = None, state_every: int = 1, device: str | torch.device = "cpu",
    resuming: Callable[[int], None] | None = None,
) -> FitResult:
    """Fit a GMN predicting ``targets`` from parameter graphs (raw or prepared), and from the
    networks' answers to learned probes when ``config.probes`` is set (then the networks
    themselves are needed too, in the order of their graphs: :meth:`metanets.zoo.Zoo.networks`;
    with ``config.probe_init="data"``, ``probe_start`` holds the task inputs the probes start
    from, :func:`metanets.probes.task_probe_inputs`).

    Args:
        state: training-state file, written every ``state_every`` epochs and after the last
            (safetensors and JSON, never pickle). If it exists, the fit resumes from it and
            ends exactly as an uninterrupted fit would; it must hold a fit of the same
            ``config`` on the same networks and targets.
        device: where the GMN, the mini-batches and the probed networks' weights go (a torch
            device; resolve ``"auto"`` with :func:`nas.train.resolve_device` first). The model
            is initialised and its feature scaler fitted on the CPU before it moves, so a fit
            starts alike on every device; the fitted model stays on ``device``.
        resuming: called with the state's last finished epoch once ``state`` is read and
            accepted.

    Shapes:
        ``train_targets``: ``(N,)`` or ``(N, T)``; ``val_targets`` likewise.

    Raises:
        ValueError: ``state`` holds another fit, ``state_every`` < 1, or the fit diverged (no
            validated epoch with a finite training loss: nothing worth keeping).
    """
    if state_every < 1:
        raise ValueError(f"state_every must be >= 1 (epochs), got {state_every}")
    torch.manual_seed(config.seed)
    start = time.perf_counter()
    train = _prepared(train_graphs, config.max_inputs)
    val = _prepared(val_graphs, config.max_inputs)
    check_pass_memory([*train, *val], config, device)
    if config.probes and (train_networks is None or val_networks is None):
        raise ValueError(f"probes={config.probes} needs the networks of the training and "
                         f"validation graphs (train_networks=, val_networks=)")
    if config.probes and (config.probe_init == "data") != (probe_start is not None):
        raise ValueError(f"probe_init={config.probe_init!r} goes with "
                         f"{'' if config.probe_init == 'data' else 'no '}probe_start inputs")
    y = train_targets.float().view(len(train), -1)
    kernel_width = train[0].edge_attr.size(1)
    probed = train_networks[0] if config.probes else None
    model = GMN(GMNConfig(
        hidden=config.hidden, layers=config.layers, out_graph=y.size(1), kernel_width=kernel_width,
        max_inputs=config.max_inputs, probes=config.probes,
        probe_shape=probed.input_shape if probed else (),
        probe_outputs=_outputs(probed) if probed else 0, probe_init=config.probe_init,
        graph_branch=config.graph_branch))
    if probe_start is not None:
        model.probe.start_from(probe_start)
    model.scaler.fit(train)
    model.target_mean.copy_(y.mean(0))
    model.target_std.copy_(y.std(0).clamp(min=1e-6) if len(y) > 1 else torch.ones(y.size(1)))
    model.to(device)
    y = y.to(device)
    train_networks, val_networks = _on(train_networks, device), _on(val_networks, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * math.ceil(len(train) / config.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1))
    generator = torch.Generator().manual_seed(config.seed)
    run = _FitRun()
    data = _data_fingerprint(train, y, val, val_targets) if state is not None else ""
    if state is not None and Path(state).exists():
        run = _load_fit_state(state, config, data, model, optimizer, schedule, generator)
        if resuming is not None:
            resuming(run.epoch)
    by_tau, by_loss, history = run.by_tau, run.by_loss, run.history
    start -= run.seconds
    for epoch in range(run.epoch + 1, config.epochs + 1):
        loss = _train_epoch(model, train, train_networks, y, optimizer, schedule,
                            config.batch_size, generator)
        if epoch % config.eval_every == 0 or epoch == config.epochs:
            tau = kendall_tau(predict(model, val, val_networks),
                              val_targets.float().view(len(val), -1)[:, 0]) if len(val) > 1 else math.nan
            history.append((epoch, loss, tau))
            if verbose:
                print(f"epoch {epoch:3d} loss {loss:.4f} val tau {tau:.4f}", flush=True)
            if math.isfinite(loss) and not math.isnan(tau) and tau > by_tau[0]:
                by_tau = (tau, epoch, copy.deepcopy(model.state_dict()))
            if by_tau[2] is None and math.isfinite(loss) and (by_loss[2] is None or loss < by_loss[0]):
                by_loss = (loss, epoch, copy.deepcopy(model.state_dict()))
        if state is not None and (epoch % state_every == 0 or epoch == config.epochs):
            _save_fit_state(state, config, data, model, optimizer, schedule, generator, _FitRun(
                epoch, time.perf_counter() - start, history, by_tau, by_loss))
    if by_tau[2] is None and by_loss[2] is None:
        if state is not None:  # a diverged fit's state is no fit to resume, and would refuse a lower lr
            Path(state).unlink(missing_ok=True)
        raise ValueError(f"the fit diverged: its training loss was {history[-1][1]} at every "
                         f"validated epoch (lr {config.lr}); lower the learning rate (--lr)"
                         + ("; its training state was removed" if state is not None else ""))
    chosen, selected_on = (by_tau, "val_tau") if by_tau[2] is not None else (by_loss, "train_loss")
    model.load_state_dict(chosen[2])
    model.eval()
    return FitResult(model, chosen[1], history, time.perf_counter() - start, selected_on)


#: the format of a GMN fit's training-state file
FIT_STATE_FORMAT = "metanas-gmn-fit/1"


@dataclasses.dataclass
class _FitRun:
    """What a fit carries from epoch to epoch besides the model, optimizer and generators."""

    epoch: int = 0                     # last finished epoch
    seconds: float = 0.0               # fitting time up to ``epoch``
    history: list[tuple[int, float, float]] = dataclasses.field(default_factory=list)
    #: (val tau, epoch, state) of the best validated epoch
    by_tau: tuple[float, int, dict[str, Tensor] | None] = (-math.inf, 0, None)
    #: (train loss, epoch, state): the choice when no validation epoch has a tau
    by_loss: tuple[float, int, dict[str, Tensor] | None] = (math.inf, 0, None)


def _data_fingerprint(train: list[Data], y: Tensor, val: list[Data], val_targets: Tensor) -> str:
    """A digest of the networks (every tensor of their graphs: weights, biases, structure) and
    targets a fit learns from, so that a state file is never resumed on another zoo or split."""
    import hashlib

    digest = hashlib.sha256()
    for graphs, targets in ((train, y), (val, val_targets)):
        for graph in graphs:
            for key, value in sorted(graph.to_dict().items()):
                if isinstance(value, Tensor):
                    digest.update(key.encode())
                    digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        digest.update(targets.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _save_fit_state(
    path: str | Path, config: FitConfig, data: str, model: GMN, optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler, generator: torch.Generator, run: _FitRun,
) -> None:
    from storage.store import flatten_optimizer_state, write_state_file

    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    for name, kept in (("by_tau", run.by_tau), ("by_loss", run.by_loss)):
        tensors |= {f"{name}.{k}": v for k, v in (kept[2] or {}).items()}
    optimizer_tensors, param_groups = flatten_optimizer_state(optimizer.state_dict())
    tensors |= {f"optimizer.{k}": v for k, v in optimizer_tensors.items()}
    tensors["rng.torch"], tensors["rng.batches"] = torch.get_rng_state(), generator.get_state()
    meta = {
        "format": FIT_STATE_FORMAT, "config": dataclasses.asdict(config), "data": data,
        "epoch": run.epoch, "seconds": run.seconds, "history": run.history,
        "by_tau": list(run.by_tau[:2]) + [run.by_tau[2] is not None],
        "by_loss": list(run.by_loss[:2]) + [run.by_loss[2] is not None],
        "param_groups": param_groups, "schedule": schedule.state_dict(),
    }
    write_state_file(path, tensors, meta)


def _load_fit_state(
    path: str | Path, config: FitConfig, data: str, model: GMN, optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler, generator: torch.Generator,
) -> _FitRun:
    """Restore a fit written by :func:`_save_fit_state` into fresh objects; ``ValueError``
    naming the difference when it holds another fit."""
    from storage.store import read_training_state, tensors_under, unflatten_optimizer_state

    tensors, meta = read_training_state(path, FIT_STATE_FORMAT, "metanetwork training-state",
                                        "metanetwork fit", dataclasses.asdict(config))
    if meta["data"] != data:
        raise ValueError(f"{path} holds a fit on other networks or targets (another zoo, study, "
                         "target or split): remove it to start again")
    part = functools.partial(tensors_under, tensors)
    model.load_state_dict(part("model."))
    optimizer.load_state_dict(unflatten_optimizer_state(part("optimizer."), meta["param_groups"]))
    schedule.load_state_dict(meta["schedule"])
    torch.set_rng_state(tensors["rng.torch"])
    generator.set_state(tensors["rng.batches"])
    kept = {name: (meta[name][0], meta[name][1], part(f"{name}.") if meta[name][2] else None)
            for name in ("by_tau", "by_loss")}
    return _FitRun(meta["epoch"], meta["seconds"], [tuple(h) for h in meta["history"]],
                   kept["by_tau"], kept["by_loss"])


def _prepared(graphs: Sequence[Data], max_inputs: int = 0) -> list[Data]:
    return [g if "node_struct" in g else prepare_graph(g, max_inputs) for g in graphs]


def _outputs(network: ProbedNetwork) -> int:
    """Outputs of a network (its answer to one zero input)."""
    with torch.no_grad():
        return int(network(torch.zeros(1, *network.input_shape)).size(-1))


def _on(networks: Sequence[ProbedNetwork] | None,
        device: str | torch.device) -> list[ProbedNetwork] | None:
    """The networks with their weights on ``device`` (the caller's networks are left as they
    are; weights already there are the same tensors)."""
    if networks is None:
        return None
    return [ProbedNetwork(n.module, {k: v.to(device) for k, v in n.state.items()}, n.input_shape)
            for n in networks]


def _pick(networks: Sequence[ProbedNetwork] | None, idx: list[int]) -> list[ProbedNetwork] | None:
    return None if networks is None else [networks[i] for i in idx]


def _train_epoch(
    model: GMN, graphs: list[Data], networks: Sequence[ProbedNetwork] | None, y: Tensor,
    optimizer: torch.optim.Optimizer, schedule: torch.optim.lr_scheduler.LRScheduler,
    batch_size: int, generator: torch.Generator,
) -> float:
    model.train()
    order = torch.randperm(len(graphs), generator=generator)
    total = 0.0
    for idx in order.split(batch_size):
        optimizer.zero_grad(set_to_none=True)
        loss, keys = 0.0, idx.tolist()
        for chunk in edge_bounded_chunks([graphs[i] for i in keys], keys):
            pred = model(collate([graphs[i] for i in chunk]).to(y.device), _pick(networks, chunk))
            part = nn.functional.mse_loss(  # the batch's mean loss is the chunks' weighted sum
                (pred - model.target_mean) / model.target_std,
                (y[chunk] - model.target_mean) / model.target_std) * (len(chunk) / len(idx))
            part.backward()
            loss += part.item()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        schedule.step()
        total += loss * len(idx)
    return total / len(graphs)


#: edges of the parameter graphs one GMN pass reads at most: a mini-batch of larger networks
#: (Cora GNNs hold 0.1-2 million weights each) runs in chunks, its gradients summed, so a
#: step is the one pass would take, in bounded memory (about 3 GiB a chunk at hidden 64 and
#: 3 layers, see :func:`pass_bytes`; a larger network is a chunk of its own)
CHUNK_EDGES = 250_000


def pass_bytes(edges: int, hidden: int, layers: int, head: int = 2) -> int:
    """Memory one GMN training pass over ``edges`` parameter-graph edges takes, about: 12 KiB
    an edge at hidden 64 and 3 layers, scaled by ``hidden`` and ``layers``; 0.76-1.12 times the
    peak measured on the CPU (``python -m experiments.metanet_memory``). ``head``: 4-byte
    features an edge per hidden unit outside the GMN layers (2 for this module's regression; a
    pruning metanetwork's per-edge head takes more,
    :data:`metanets.pruning.metanet.STEP_HEAD`)."""
    return edges * hidden * 4 * (16 * layers + head)


def available_bytes(device: str | torch.device = "cpu") -> int | None:
    """Memory free for a fit on ``device`` (Linux's MemAvailable on the CPU), or None where it
    cannot be read."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def check_pass_memory(graphs: Sequence[Data], config: FitConfig,
                      device: str | torch.device = "cpu") -> None:
    """``MemoryError`` before a fit whose largest network alone would not fit in memory in
    one pass (chunks cannot split a network): the fit was killed minutes in, saying nothing."""
    if not graphs:
        return
    edges = max(int(graph.num_edges) for graph in graphs)
    change = ("summarise the networks' input layers (max_inputs, --max-inputs; e.g. 64) or lower"
              if not config.max_inputs else "lower max_inputs (--max-inputs),")
    check_free_memory(
        f"the largest network's parameter graph has {edges:,} edges (weights): one metanetwork "
        f"pass over it", pass_bytes(edges, config.hidden, config.layers), hidden=config.hidden,
        layers=config.layers, change=f"{change} hidden (--hidden) or layers (--layers)",
        device=device)


def check_free_memory(what: str, need: int, *, hidden: int, layers: int, change: str,
                      device: str | torch.device = "cpu") -> None:
    """``MemoryError`` saying that ``what`` needs about ``need`` bytes at a metanetwork's
    ``hidden`` and ``layers``, more than is free on ``device`` (:func:`available_bytes`), and
    what to ``change``; nothing when it fits or the free memory cannot be read."""
    free = available_bytes(device)
    if free is None or need <= free:
        return
    raise MemoryError(
        f"{what} needs about {need / 2**30:.1f} GiB at hidden {hidden} and "
        f"{layers} layers, more than the {free / 2**30:.1f} GiB free on "
        f"{torch.device(device).type}; {change}")


def edge_bounded_chunks(graphs: Sequence[Data], keys: Sequence[int],
                        max_edges: int | None = None) -> Iterator[list[int]]:
    """``keys`` (one per graph) in consecutive chunks of at most ``max_edges`` edges in all
    (default :data:`CHUNK_EDGES`); a graph larger than that is a chunk of its own."""
    max_edges = CHUNK_EDGES if max_edges is None else max_edges
    chunk: list[int] = []
    edges = 0
    for graph, key in zip(graphs, keys):
        if chunk and edges + graph.num_edges > max_edges:
            yield chunk
            chunk, edges = [], 0
        chunk.append(key)
        edges += graph.num_edges
    if chunk:
        yield chunk


def load_accuracy_predictor(folder: str | Path) -> tuple[GMN, dict[str, Any]]:
    """A metanetwork saved by ``metanas metanet train`` and its metadata
    (:func:`metanets.gmn.load_gmn`); ``ValueError`` for a pruning metanetwork, whose
    regression head was never trained to predict a metric."""
    from metanets.gmn import ACCURACY_PREDICTION, load_gmn, purpose

    model, metadata = load_gmn(folder)
    if purpose(metadata) != ACCURACY_PREDICTION:
        raise ValueError(f"{folder} holds a metanetwork trained for {metadata['purpose']!r} "
                         "(metanas prune-metanet), not for accuracy prediction (metanas metanet "
                         "train)")
    return model, metadata


@torch.no_grad()
def predict(model: GMN, graphs: Sequence[Data], networks: Sequence[ProbedNetwork] | None = None,
            batch_size: int = 256) -> Tensor:
    """Predictions ``(N, out_graph)``, on the CPU, for parameter graphs (raw or prepared); a GMN
    that reads probes needs the ``networks`` of the graphs too. Runs where ``model`` is (the
    graphs and the networks' weights are moved there)."""
    model.eval()
    device = model.target_mean.device
    prepared = _prepared(graphs, model.config.max_inputs)
    networks = _on(networks, device)
    outs = [model(collate([prepared[i] for i in chunk]).to(device), _pick(networks, chunk))
            for start in range(0, len(prepared), batch_size)
            for chunk in edge_bounded_chunks(prepared[start:start + batch_size],
                                             range(start, min(start + batch_size, len(prepared))))]
    return torch.cat(outs).cpu() if outs else torch.empty(0, model.config.out_graph)


def train_accuracy_predictor(
    zoo: Zoo, config: FitConfig = FitConfig(), target: str = "test_acc",
    val_fraction: float = 0.1, verbose: bool = False, probe_start: Tensor | None = None,
    state: str | Path | None = None, state_every: int = 1, device: str | torch.device = "cpu",
    resuming: Callable[[int], None] | None = None,
) -> FitResult:
    """Fit a GMN on a whole zoo (``val_fraction`` of its runs held out to select the epoch),
    what ``metanas metanet train`` does; ``state``, ``state_every``, ``device`` and ``resuming``
    as in :func:`fit_gmn`."""
    from metanets.zoo import split_by_run

    if len(set(zoo.runs)) < 3:
        raise ValueError(f"a zoo of {len(set(zoo.runs))} runs is too small to train on (need >= 3)")
    split = split_by_run(zoo, (1 - val_fraction, val_fraction, 0.0), seed=config.seed)
    if not split["val"]:
        split["val"] = split["train"][-1:]
    train, val = zoo.subset(split["train"]), zoo.subset(split["val"])
    networks = (train.networks(), val.networks()) if config.probes else (None, None)
    return fit_gmn(train.graphs(), train.targets(target), val.graphs(), val.targets(target),
                   config, verbose=verbose, train_networks=networks[0], val_networks=networks[1],
                   probe_start=probe_start, state=state, state_every=state_every, device=device,
                   resuming=resuming)
