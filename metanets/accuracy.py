"""Predict a trained network's accuracy from its weights: fit a :class:`~metanets.gmn.GMN` on a
zoo, predict for new networks, and score rankings (Kendall tau, R^2).

The fitting loop here regresses a metric of whole networks (mini-batches of parameter graphs,
MSE on standardised targets, Adam, the epoch with the best validation Kendall tau kept); the
networks themselves were trained by :mod:`nas.train`.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from metanets.gmn import GMN, GMNConfig, collate, prepare_graph

if TYPE_CHECKING:
    from torch_geometric.data import Data


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


@dataclasses.dataclass
class FitResult:
    """A fitted model (best validation epoch), its history and the time it took."""

    model: GMN
    best_epoch: int
    history: list[tuple[int, float, float]]  # (epoch, train loss, val tau)
    seconds: float


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


def fit_gmn(
    train_graphs: Sequence[Data], train_targets: Tensor, val_graphs: Sequence[Data],
    val_targets: Tensor, config: FitConfig = FitConfig(), verbose: bool = False,
) -> FitResult:
    """Fit a GMN predicting ``targets`` from parameter graphs (raw or prepared).

    Shapes:
        ``train_targets``: ``(N,)`` or ``(N, T)``; ``val_targets`` likewise.
    """
    torch.manual_seed(config.seed)
    start = time.perf_counter()
    train = _prepared(train_graphs)
    val = _prepared(val_graphs)
    y = train_targets.float().view(len(train), -1)
    kernel_width = train[0].edge_attr.size(1)
    model = GMN(GMNConfig(hidden=config.hidden, layers=config.layers, out_graph=y.size(1),
                          kernel_width=kernel_width))
    model.scaler.fit(train)
    model.target_mean.copy_(y.mean(0))
    model.target_std.copy_(y.std(0).clamp(min=1e-6) if len(y) > 1 else torch.ones(y.size(1)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * math.ceil(len(train) / config.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1))
    generator = torch.Generator().manual_seed(config.seed)
    best = (-math.inf, 0, copy.deepcopy(model.state_dict()))
    history: list[tuple[int, float, float]] = []
    for epoch in range(1, config.epochs + 1):
        loss = _train_epoch(model, train, y, optimizer, schedule, config.batch_size, generator)
        if epoch % config.eval_every and epoch != config.epochs:
            continue
        tau = kendall_tau(predict(model, val), val_targets.float().view(len(val), -1)[:, 0]) \
            if len(val) > 1 else -loss
        history.append((epoch, loss, tau))
        if verbose:
            print(f"epoch {epoch:3d} loss {loss:.4f} val tau {tau:.4f}", flush=True)
        if not math.isnan(tau) and tau > best[0]:
            best = (tau, epoch, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[2])
    model.eval()
    return FitResult(model, best[1], history, time.perf_counter() - start)


def _prepared(graphs: Sequence[Data]) -> list[Data]:
    return [g if "node_struct" in g else prepare_graph(g) for g in graphs]


def _train_epoch(
    model: GMN, graphs: list[Data], y: Tensor, optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler, batch_size: int, generator: torch.Generator,
) -> float:
    model.train()
    order = torch.randperm(len(graphs), generator=generator)
    total = 0.0
    for idx in order.split(batch_size):
        batch = collate([graphs[i] for i in idx.tolist()])
        pred = model(batch)  # (B, T)
        loss = nn.functional.mse_loss(
            (pred - model.target_mean) / model.target_std,
            (y[idx] - model.target_mean) / model.target_std)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        schedule.step()
        total += loss.item() * len(idx)
    return total / len(graphs)


@torch.no_grad()
def predict(model: GMN, graphs: Sequence[Data], batch_size: int = 256) -> Tensor:
    """Predictions ``(N, out_graph)`` for parameter graphs (raw or prepared)."""
    model.eval()
    prepared = _prepared(graphs)
    outs = [model(collate(prepared[i:i + batch_size])) for i in range(0, len(prepared), batch_size)]
    return torch.cat(outs) if outs else torch.empty(0, model.config.out_graph)
