"""Does training same-shape candidates together (batched parameters) raise architectures/second?

Issue 9 asks to train candidates that share a shape (same depth and widths) in one pass, with
stacked ("vmapped") parameters, *if it measurably raises architectures per second*. This is the
measurement. ``K`` GCN-space architectures with the same convolutions and widths but their own
learning rate, weight decay, dropout and initialisation are trained

- one after another with :func:`nas.train.train_model` (the library's fast path: sparse input,
  sparse-aware input dropout, cached normalised adjacency), and
- together: every weight stacked along a leading member dimension ``(K, ...)``, the sparse
  input product per member (the library's :func:`~search_spaces.static_graph.sparse_linear`, each
  member with its own input-dropout mask), the dense products as one batched matmul, the graph propagation of all members as *one* sparse product
  ``A @ [H_1 | ... | H_K]``, per-member dropout, a per-member Adam step (each member keeps its own
  learning rate and weight decay), per-member validation every epoch and best-validation weights.

Both do the same work per epoch (training step, validation, best-state bookkeeping) for the same
number of epochs. Before timing, the batched forward is checked against each member's own
``fixed_graph_forward`` with dropout off (same function, same parameters).

    METANAS_DATA=../shared/datasets python -m experiments.batched_training --widths 16,64,256 \
        --members 1,2,4,8 --threads 1,2

prints a table and writes ``experiments/results/batched_training.{json,md}``.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from experiments._results import positive_int, positive_ints, resolved_name, write_results
from nas.tasks import load_task, resolve_dataset
from nas.train import TrainConfig, seed_everything, train_model
from search_spaces.gnn import GNN, GNNArchitecture, GNNSpace, LayerSpec
from search_spaces.static_graph import StaticGraph, input_dropout, sparse_features, sparse_linear


@dataclasses.dataclass(frozen=True)
class Member:
    """One candidate of a same-shape group: its architecture and training hyper-parameters."""

    arch: GNNArchitecture
    seed: int


def same_shape_group(widths: tuple[int, ...], k: int, seed: int) -> list[Member]:
    """``k`` GCN architectures with the given widths and their own lr, weight decay, dropout."""
    import random

    rng = random.Random(seed)
    members = []
    for i in range(k):
        dropout = rng.choice((0.0, 0.2, 0.5))
        layers = tuple(LayerSpec("gcn", w, dropout=dropout) for w in widths)
        arch = GNNArchitecture(
            layers=layers, lr=rng.choice((1e-3, 5e-3, 1e-2)), weight_decay=rng.choice((0.0, 5e-4)))
        members.append(Member(arch, seed + i))
    return members


class StackedGCN:
    """``K`` GCN-space models of one shape as stacked tensors (see the module docstring).

    Built from the members' own :class:`~search_spaces.gnn.GNN` modules, so the batched model
    starts from exactly their initial weights.
    """

    def __init__(self, models: list[GNN], graph: StaticGraph, x: Tensor) -> None:
        self.k = len(models)
        self.matrix = graph.matrix("gcn")
        self.x = sparse_features(x)
        self.dropouts = [[layer.dropout.p for layer in m.layers] for m in models]
        depth = len(models[0].layers)
        stack = lambda tensors: torch.stack([t.detach().clone() for t in tensors])  # noqa: E731
        self.weights = [stack([m.layers[i].conv.lin.weight.t() for m in models]) for i in range(depth)]
        self.biases = [stack([m.layers[i].conv.bias[None] for m in models]) for i in range(depth)]
        self.head_w = stack([m.classifier.weight.t() for m in models])  # (K, C, O)
        self.head_b = stack([m.classifier.bias[None] for m in models])  # (K, 1, O)
        self.parameters = [*self.weights, *self.biases, self.head_w, self.head_b]
        for p in self.parameters:
            p.requires_grad_()

    def _dropout(self, h: Tensor, layer: int, training: bool) -> Tensor:
        p = torch.tensor([d[layer] for d in self.dropouts], dtype=h.dtype)[:, None, None]
        if not training or not bool((p > 0).any()):
            return h
        keep = torch.rand_like(h).ge_(p)
        return h * keep / (1 - p)

    def forward(self, training: bool) -> Tensor:
        """``(K, N, classes)`` logits of every member."""
        first = torch.stack([  # the sparse input: each member its own dropout mask
            sparse_linear(input_dropout(self.x, self.dropouts[k][0], training), self.weights[0][k].t())
            for k in range(self.k)
        ])  # (K, N, C)
        h = self._propagate(first) + self.biases[0]
        h = h.relu()
        for i in range(1, len(self.weights)):
            h = torch.bmm(self._dropout(h, i, training), self.weights[i])
            h = (self._propagate(h) + self.biases[i]).relu()
        h = self._dropout(h, len(self.weights) - 1, training)  # head dropout: the last layer's rate
        return torch.bmm(h, self.head_w) + self.head_b

    def _propagate(self, h: Tensor) -> Tensor:
        k, n, c = h.shape
        out = self.matrix @ h.permute(1, 0, 2).reshape(n, k * c)  # one sparse product for all
        return out.reshape(n, k, c).permute(1, 0, 2)


class StackedAdam:
    """Adam (with L2 weight decay, as ``torch.optim.Adam``) where member ``k`` of every stacked
    parameter has its own learning rate and weight decay."""

    def __init__(self, parameters: list[Tensor], lr: list[float], weight_decay: list[float],
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.parameters, self.betas, self.eps, self.step_count = parameters, betas, eps, 0
        self.lr = torch.tensor(lr)
        self.wd = torch.tensor(weight_decay)
        self.m = [torch.zeros_like(p) for p in parameters]
        self.v = [torch.zeros_like(p) for p in parameters]

    @torch.no_grad()
    def step(self) -> None:
        self.step_count += 1
        b1, b2 = self.betas
        c1, c2 = 1 - b1**self.step_count, 1 - b2**self.step_count
        for p, m, v in zip(self.parameters, self.m, self.v):
            shape = (-1,) + (1,) * (p.dim() - 1)
            grad = p.grad + self.wd.view(shape) * p
            m.mul_(b1).add_(grad, alpha=1 - b1)
            v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            p.sub_(self.lr.view(shape) * (m / c1) / ((v / c2).sqrt() + self.eps))
            p.grad = None


def train_stacked(model: StackedGCN, members: list[Member], data: Any, epochs: int) -> dict[str, Any]:
    """Train all members together for ``epochs``; per-member best-validation test accuracy."""
    optimizer = StackedAdam(model.parameters, [m.arch.lr for m in members],
                            [m.arch.weight_decay for m in members])
    y, train, val, test = data.y, data.train_mask, data.val_mask, data.test_mask
    k = model.k
    best_val = torch.full((k,), -1.0)
    best_state = [p.detach().clone() for p in model.parameters]
    start = time.perf_counter()
    for _ in range(epochs):
        out = model.forward(training=True)  # (K, N, O)
        loss = F.cross_entropy(out[:, train].flatten(0, 1), y[train].repeat(k), reduction="sum")
        (loss / int(train.sum())).backward()  # = the sum of the members' mean losses
        optimizer.step()
        with torch.no_grad():
            acc = (model.forward(training=False)[:, val].argmax(-1) == y[val]).float().mean(1)
            better = acc > best_val
            if bool(better.any()):
                best_val = torch.where(better, acc, best_val)
                for saved, p in zip(best_state, model.parameters):
                    saved[better] = p[better]
    seconds = time.perf_counter() - start
    with torch.no_grad():
        for saved, p in zip(best_state, model.parameters):
            p.copy_(saved)
        test_acc = (model.forward(training=False)[:, test].argmax(-1) == y[test]).float().mean(1)
    return {"seconds": seconds, "test_acc": test_acc.tolist(), "val_acc": best_val.tolist()}


def build_models(space: GNNSpace, members: list[Member], task: Any) -> list[GNN]:
    models = []
    for member in members:
        seed_everything(member.seed)
        models.append(space.build(member.arch, task.num_features, task.num_classes))
    return models


def check_same_function(space: GNNSpace, members: list[Member], task: Any) -> float:
    """Largest |batched - own| logit difference with dropout off, at initialisation."""
    data = task.data
    models = build_models(space, members, task)
    stacked = StackedGCN(models, StaticGraph(data.edge_index, data.num_nodes), data.x)
    with torch.no_grad():
        batched = stacked.forward(training=False)
        worst = 0.0
        for k, model in enumerate(models):
            model.eval()
            own = model.fixed_graph_forward(data.x, data.edge_index)()
            worst = max(worst, float((batched[k] - own).abs().max()))
    return worst


def measure(space: GNNSpace, task: Any, widths: tuple[int, ...], k: int, epochs: int, seed: int
            ) -> dict[str, Any]:
    members = same_shape_group(widths, k, seed)
    sequential, seq_acc = 0.0, []
    for member in members:
        seed_everything(member.seed)
        model = space.build(member.arch, task.num_features, task.num_classes)
        config = TrainConfig(lr=member.arch.lr, weight_decay=member.arch.weight_decay,
                             epochs=epochs, patience=0, seed=member.seed)
        result = train_model(model, task, config)
        sequential += result.seconds
        seq_acc.append(result.metrics["test_acc"])
    data = task.data
    models = build_models(space, members, task)
    torch.manual_seed(seed)
    stacked = StackedGCN(models, StaticGraph(data.edge_index, data.num_nodes), data.x)
    batched = train_stacked(stacked, members, data, epochs)
    return {
        "widths": list(widths), "members": k, "epochs": epochs,
        "sequential_s": sequential, "batched_s": batched["seconds"],
        "sequential_arch_per_s": k / sequential, "batched_arch_per_s": k / batched["seconds"],
        "speedup": sequential / batched["seconds"],
        "sequential_mean_test_acc": statistics.mean(seq_acc),
        "batched_mean_test_acc": statistics.mean(batched["test_acc"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=resolved_name(resolve_dataset), default="cora")
    parser.add_argument("--widths", type=positive_ints, default="16,64,256", help="hidden widths (two GCN layers each)")
    parser.add_argument("--members", type=positive_ints, default="1,2,4,8", help="group sizes K")
    parser.add_argument("--threads", type=positive_ints, default="1,2", help="torch intra-op thread counts")
    parser.add_argument("--epochs", type=positive_int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    task = load_task(args.dataset)
    space = GNNSpace()
    diff = check_same_function(space, same_shape_group((64, 64), 4, args.seed), task)
    if diff > 1e-4:
        raise SystemExit(f"batched forward differs from the members' own by {diff:.2e}")
    print(f"batched forward = each member's own forward (max |diff| {diff:.1e})", flush=True)
    rows = []
    header = ("| threads | widths | K | sequential s | batched s | arch/s seq | arch/s batched | "
              "speed-up | test acc seq | test acc batched |")
    print(header, flush=True)
    for threads in args.threads:
        torch.set_num_threads(threads)
        for width in args.widths:
            for k in args.members:
                row = {"threads": threads, **measure(space, task, (width, width), k, args.epochs,
                                                      args.seed)}
                rows.append(row)
                print(_row(row), flush=True)
    lines = [
        "Two GCN layers of the given width, K members with their own lr / weight decay / dropout "
        f"/ initialisation, {args.epochs} epochs each with validation every epoch, {args.dataset}.",
        f"Batched forward checked equal to each member's own (dropout off): max |diff| {diff:.1e}.",
        "", header, "|---" * 10 + "|", *map(_row, rows),
    ]
    write_results("batched_training", {"rows": rows, "max_forward_diff": diff}, "\n".join(lines))
    return 0


def _row(r: dict[str, Any]) -> str:
    return (f"| {r['threads']} | {r['widths']} | {r['members']} | {r['sequential_s']:.2f} | "
            f"{r['batched_s']:.2f} | {r['sequential_arch_per_s']:.3f} | "
            f"{r['batched_arch_per_s']:.3f} | {r['speedup']:.2f} | "
            f"{100 * r['sequential_mean_test_acc']:.2f} | {100 * r['batched_mean_test_acc']:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
