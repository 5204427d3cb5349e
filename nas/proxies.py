"""Zero-cost proxies: score an architecture from its randomly initialised model, without training.

Every proxy is a small function ``proxy(model, batches, loss_fn=cross_entropy) -> float`` where a
higher value predicts a more accurate architecture. ``batches`` are :class:`ProxyBatch` es drawn
from the task's training data by :func:`proxy_batches` (node tasks: the whole graph, scored on its
training nodes; graph tasks: a few seeded mini-batches of training graphs). A proxy never changes
the model it is given (gradients it leaves behind are cleared).

Parameter count (:func:`params`) is the honest baseline: a proxy is only worth computing if it
ranks architectures better than counting their weights.

References:
    - Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021 (grad-norm, SNIP
      and SynFlow as NAS proxies).
    - Lee et al., "SNIP: Single-shot Network Pruning based on Connection Sensitivity", ICLR 2019.
    - Tanaka et al., "Pruning neural networks without any data by iteratively conserving
      synaptic flow", NeurIPS 2020 (SynFlow).
    - Mellor et al., "Neural Architecture Search without Training", ICML 2021 (NASWOT).
    - Zhang & Jia, "GradSign: Model Performance Inference with Theoretical Insights", ICLR 2022.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from nas.train import kept_modes
from search_spaces.resolver import resolve

if TYPE_CHECKING:
    from nas.tasks import Task

#: ``loss_fn(scored_outputs, targets) -> scalar loss``
LossFn = Callable[[Tensor, Tensor], Tensor]
#: ``proxy(model, batches, loss_fn) -> score`` (higher: predicted more accurate)
Proxy = Callable[..., float]

@dataclasses.dataclass(frozen=True)
class ProxyBatch:
    """The inputs of one forward pass and the targets of the outputs that are scored.

    Attributes:
        inputs: ``(x, edge_index)`` for node tasks, ``(x, edge_index, batch)`` for graph tasks.
        targets: class labels of the scored output rows, ``(M,)``.
        mask: node tasks: boolean ``(N,)`` selecting the scored nodes (the training nodes);
            ``None``: every output row is scored (graph tasks: one row per graph).
    """

    inputs: tuple[Tensor, ...]
    targets: Tensor
    mask: Tensor | None = None

    def to(self, device: str | torch.device) -> ProxyBatch:
        mask = None if self.mask is None else self.mask.to(device)
        return ProxyBatch(tuple(t.to(device) for t in self.inputs), self.targets.to(device), mask)

    def scored(self, out: Tensor) -> Tensor:
        """The scored rows of a model output ``(N or B, C)``."""
        return out if self.mask is None else out[self.mask]


def proxy_batches(
    task: Task, num_batches: int = 2, batch_size: int = 64, seed: int = 0
) -> list[ProxyBatch]:
    """The data every proxy of a task sees: the same for every architecture (``seed`` fixed).

    Node tasks: one batch, the whole graph, scored on the training nodes. Graph tasks:
    ``num_batches`` mini-batches of ``batch_size`` training graphs, drawn with ``seed``.
    """
    if task.level == "node":
        data = task.data
        return [ProxyBatch((data.x, data.edge_index), data.y[data.train_mask], data.train_mask)]
    from torch_geometric.data import Batch

    train = task.splits["train"]
    order = train[torch.randperm(train.numel(), generator=torch.Generator().manual_seed(seed))]
    batches = []
    for start in range(0, min(order.numel(), num_batches * batch_size), batch_size):
        graphs = Batch.from_data_list([task.dataset[int(i)] for i in order[start:start + batch_size]])
        batches.append(ProxyBatch((graphs.x, graphs.edge_index, graphs.batch), graphs.y.view(-1)))
    return batches


def cross_entropy(out: Tensor, targets: Tensor) -> Tensor:
    return nn.functional.cross_entropy(out, targets)


# ----------------------------------------------------------------------------------------------
# the proxies


def params(model: nn.Module, batches: Sequence[ProxyBatch] = (), loss_fn: LossFn = cross_entropy) -> float:
    """Number of trainable parameters: the baseline every proxy must beat (data unused)."""
    return float(sum(p.numel() for p in model.parameters() if p.requires_grad))


def grad_norm(model: nn.Module, batches: Sequence[ProxyBatch], loss_fn: LossFn = cross_entropy) -> float:
    r"""Sum over parameter tensors of the Euclidean norm of the loss gradient at initialisation,
    :math:`\sum_\theta \lVert \partial L / \partial \theta \rVert_2`.

    Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021.
    """
    return grad_norm_of(_loss_gradients(model, batches, loss_fn))


def snip(model: nn.Module, batches: Sequence[ProxyBatch], loss_fn: LossFn = cross_entropy) -> float:
    r"""Connection sensitivity summed over all weights, :math:`\sum |\theta \odot \partial L /
    \partial \theta|`.

    Lee et al., "SNIP: Single-shot Network Pruning based on Connection Sensitivity", ICLR 2019;
    used as a NAS proxy by Abdelfattah et al., ICLR 2021.
    """
    return snip_of(_loss_gradients(model, batches, loss_fn))


def synflow(model: nn.Module, batches: Sequence[ProxyBatch], loss_fn: LossFn = cross_entropy) -> float:
    r"""Synaptic flow: with every weight replaced by its absolute value and all-ones node
    features, :math:`R = \sum` of the scored outputs; the score is :math:`\sum \theta \odot
    \partial R / \partial \theta`. Data-free except for the graph structure; computed in float64
    on a copy of the model in eval mode (no dropout; batch norm with its initial statistics).

    Tanaka et al., "Pruning neural networks without any data by iteratively conserving synaptic
    flow", NeurIPS 2020; as a NAS proxy: Abdelfattah et al., ICLR 2021.
    """
    work = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in work.parameters():
            p.abs_()
    total = 0.0
    for batch in batches:
        x, *rest = batch.inputs
        out = work(torch.ones_like(x, dtype=torch.float64), *rest)
        batch.scored(out).sum().backward()
    for p in work.parameters():
        if p.grad is not None:
            total += float((p.detach() * p.grad).sum())
    return total


def naswot(model: nn.Module, batches: Sequence[ProxyBatch], loss_fn: LossFn = cross_entropy,
           max_samples: int = 256) -> float:
    r"""Log-determinant of the kernel of binary activation codes, :math:`\log\lvert K\rvert`
    with :math:`K_{ij}` = number of units on which samples *i* and *j* are on the same side of
    zero (:math:`K = C C^\top + (1-C)(1-C)^\top`). Architectures whose units separate the
    inputs into distinct linear regions score higher.

    A sample is a scored node (node tasks) or a node of the batch (graph tasks), at most
    ``max_samples`` of them; a unit is an output coordinate of a message-passing or linear layer
    applied to all nodes (its sign is the code of a ReLU that follows it). A ridge of ``1e-3`` keeps :math:`K` invertible when two
    samples share a code.

    Mellor et al., "Neural Architecture Search without Training", ICML 2021.
    """
    with kept_modes(model):
        model.eval()
        scores = [_naswot_batch(model, batch, max_samples) for batch in batches]
    return float(sum(scores) / len(scores))


def gradsign(model: nn.Module, batches: Sequence[ProxyBatch], loss_fn: LossFn = cross_entropy,
             max_samples: int = 16) -> float:
    r"""Agreement of per-sample gradient signs at initialisation,
    :math:`\sum_k \lvert \sum_i \operatorname{sign}(\partial \ell(x_i) / \partial \theta_k) \rvert`.
    Architectures whose samples pull every weight the same way sit in a denser region of good
    optima.

    Per-sample losses are the scored rows of one forward pass (nodes of a node task, graphs of a
    graph task), at most ``max_samples`` per batch (the first ones, so the score is
    deterministic), each back-propagated on its own.

    Zhang & Jia, "GradSign: Model Performance Inference with Theoretical Insights", ICLR 2022.
    """
    weights = [p for p in model.parameters() if p.requires_grad]
    sign_sums = [torch.zeros_like(p) for p in weights]
    for batch in batches:
        out = batch.scored(model(*batch.inputs))
        count = min(out.size(0), max_samples)
        for i in range(count):
            loss = loss_fn(out[i:i + 1], batch.targets[i:i + 1])
            grads = torch.autograd.grad(loss, weights, retain_graph=i + 1 < count, allow_unused=True)
            for total, grad in zip(sign_sums, grads):
                if grad is not None:
                    total += grad.sign()
    return float(sum(total.abs().sum() for total in sign_sums))


#: canonical proxy name -> function
PROXIES: dict[str, Proxy] = {
    "grad_norm": grad_norm,
    "snip": snip,
    "synflow": synflow,
    "naswot": naswot,
    "gradsign": gradsign,
    "params": params,
}


def get_proxy(name: str | Proxy) -> Proxy:
    """The proxy function of ``name`` in any spelling (``"SynFlow"``, ``"grad-norm"``)."""
    if callable(name):
        return name
    return resolve(name, PROXIES, "zero-cost proxy")


def proxy_name(name: str) -> str:
    """Canonical name of a proxy (``"Grad-Norm"`` -> ``"grad_norm"``)."""
    function = get_proxy(name)
    return next(key for key, value in PROXIES.items() if value is function)


# ----------------------------------------------------------------------------------------------
# helpers


def grad_norm_of(grads: Sequence[tuple[Tensor, Tensor]]) -> float:
    """:func:`grad_norm` from ``(parameter, gradient)`` pairs (see :func:`loss_gradients`)."""
    return float(sum(g.norm() for _, g in grads))


def snip_of(grads: Sequence[tuple[Tensor, Tensor]]) -> float:
    """:func:`snip` from ``(parameter, gradient)`` pairs (see :func:`loss_gradients`)."""
    return float(sum((p.detach() * g).abs().sum() for p, g in grads))


def loss_gradients(
    model: nn.Module, batches: Sequence[ProxyBatch], loss_fn: LossFn = cross_entropy
) -> list[tuple[Tensor, Tensor]]:
    """``(parameter, gradient of the summed batch losses)`` pairs, the input of grad_norm and
    snip (compute once, read both off with :func:`grad_norm_of` and :func:`snip_of`);
    parameters the loss does not reach are left out. The model's ``.grad`` fields are not
    touched."""
    return _loss_gradients(model, batches, loss_fn)


def _loss_gradients(
    model: nn.Module, batches: Sequence[ProxyBatch], loss_fn: LossFn
) -> list[tuple[Tensor, Tensor]]:
    """``(parameter, gradient of the summed batch losses)`` pairs; parameters the loss does not
    reach are left out. The model's own ``.grad`` fields are not touched."""
    weights = [p for p in model.parameters() if p.requires_grad]
    loss = sum(loss_fn(batch.scored(model(*batch.inputs)), batch.targets) for batch in batches)
    grads = torch.autograd.grad(loss, weights, allow_unused=True)
    return [(p, g) for p, g in zip(weights, grads) if g is not None]


@torch.no_grad()
def _naswot_batch(model: nn.Module, batch: ProxyBatch, max_samples: int) -> float:
    codes: list[Tensor] = []
    hooks = _code_hooks(model, codes)
    try:
        model(*batch.inputs)
    finally:
        for hook in hooks:
            hook.remove()
    rows = _naswot_rows(batch, max_samples)
    num_nodes = batch.inputs[0].size(0)
    units = [c[rows] for c in codes if isinstance(c, Tensor) and c.dim() == 2 and c.size(0) == num_nodes]
    if not units:
        return 0.0
    c = torch.cat(units, dim=1).double()  # (M, units) in {0, 1}
    kernel = c @ c.T + (1 - c) @ (1 - c).T  # (M, M)
    kernel += 1e-3 * torch.eye(kernel.size(0), dtype=kernel.dtype)
    sign, logdet = torch.linalg.slogdet(kernel)
    return float(logdet) if sign > 0 else -math.inf


def _naswot_rows(batch: ProxyBatch, max_samples: int) -> Tensor:
    if batch.mask is not None:
        return batch.mask.nonzero().view(-1)[:max_samples]
    return torch.arange(min(batch.inputs[0].size(0), max_samples))


def _code_hooks(model: nn.Module, codes: list[Tensor]) -> list:
    from torch_geometric.nn import MessagePassing

    layers = [m for m in model.modules() if isinstance(m, (MessagePassing, nn.Linear))]
    return [m.register_forward_hook(lambda _m, _i, o: codes.append(o > 0)) for m in layers]


__all__ = [
    "PROXIES", "ProxyBatch", "cross_entropy", "get_proxy", "grad_norm", "grad_norm_of",
    "gradsign", "loss_gradients", "naswot", "params", "proxy_batches", "proxy_name", "snip",
    "snip_of", "synflow",
]
