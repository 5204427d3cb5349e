"""Framework overhead: seconds to train GCN and GAT on Cora with nas.train against a plain PyG
script (the textbook loop: Adam, 200 epochs, validation every epoch, best-validation test).

    python -m experiments.framework_overhead --repeats 5

Three timings per model, interleaved so machine load affects all alike:
- plain: the plain PyG model and loop;
- loop: the same plain PyG model trained by nas.train.train_model (the loop's own overhead);
- space: the equivalent GNN-space architecture through TrainEvaluator (what a search trial
  costs: model building, FLOPs counting and weight copies included).
Writes experiments/results/framework_overhead.{json,md}.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from experiments._results import positive_int, write_results
from nas.evaluators import TrainEvaluator
from nas.tasks import load_task
from nas.train import TrainConfig, seed_everything, train_model
from search_spaces import get_space
from search_spaces.gnn import GNNArchitecture, LayerSpec

EPOCHS = 200


class PlainGCN(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        from torch_geometric.nn import GCNConv

        self.conv1, self.conv2 = GCNConv(in_channels, 16), GCNConv(16, out_channels)

    def forward(self, x, edge_index, batch=None):
        x = nn.functional.dropout(x, 0.5, self.training)
        x = nn.functional.relu(self.conv1(x, edge_index))
        x = nn.functional.dropout(x, 0.5, self.training)
        return self.conv2(x, edge_index)


class PlainGAT(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        from torch_geometric.nn import GATConv

        self.conv1 = GATConv(in_channels, 8, heads=8, dropout=0.6)
        self.conv2 = GATConv(64, out_channels, heads=1, dropout=0.6)

    def forward(self, x, edge_index, batch=None):
        x = nn.functional.dropout(x, 0.6, self.training)
        x = nn.functional.elu(self.conv1(x, edge_index))
        x = nn.functional.dropout(x, 0.6, self.training)
        return self.conv2(x, edge_index)


MODELS = {
    "GCN": (PlainGCN, 0.01, 5e-4, GNNArchitecture(
        layers=(LayerSpec("gcn", 16, dropout=0.5),), lr=0.01, weight_decay=5e-4)),
    "GAT": (PlainGAT, 0.005, 5e-4, GNNArchitecture(
        layers=(LayerSpec("gat", 64, heads=8, activation="elu", dropout=0.6),), lr=0.005,
        weight_decay=5e-4)),
}


def plain_train(model: nn.Module, data, lr: float, weight_decay: float) -> tuple[float, float]:
    """The plain script: train, validate every epoch, keep the test accuracy of the best epoch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    start, best_val, test_at_best = time.perf_counter(), -1.0, 0.0
    for _ in range(EPOCHS):
        model.train()
        optimizer.zero_grad()
        out = model(data.x, data.edge_index)
        nn.functional.cross_entropy(out[data.train_mask], data.y[data.train_mask]).backward()
        optimizer.step()
        model.eval()
        with torch.no_grad():
            pred = model(data.x, data.edge_index).argmax(-1)
        val = float((pred[data.val_mask] == data.y[data.val_mask]).float().mean())
        if val > best_val:
            best_val = val
            test_at_best = float((pred[data.test_mask] == data.y[data.test_mask]).float().mean())
    return time.perf_counter() - start, test_at_best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=positive_int, default=5)
    args = parser.parse_args()
    task, space = load_task("cora"), get_space("gnn")
    data = task.data
    results: dict[str, dict[str, list[float]]] = {}
    for name, (cls, lr, wd, arch) in MODELS.items():
        runs = results[name] = {"plain": [], "loop": [], "space": [], "plain_test": [], "space_test": []}
        for seed in range(args.repeats):
            seed_everything(seed)
            seconds, test = plain_train(cls(task.num_features, task.num_classes), data, lr, wd)
            runs["plain"].append(seconds)
            runs["plain_test"].append(test)
            seed_everything(seed)
            config = TrainConfig(lr=lr, weight_decay=wd, epochs=EPOCHS, patience=0, seed=seed)
            start = time.perf_counter()
            train_model(cls(task.num_features, task.num_classes), task, config)
            runs["loop"].append(time.perf_counter() - start)
            start = time.perf_counter()
            evaluation = TrainEvaluator(epochs=EPOCHS, patience=0).evaluate(arch, space, task, seed=seed)
            runs["space"].append(time.perf_counter() - start)
            runs["space_test"].append(evaluation.metrics["test_acc"])
    lines = ["| model | plain PyG s | nas.train, same model s | loop overhead | GNN-space trial s | "
             "space vs plain | plain test | space test |", "|---|---|---|---|---|---|---|---|"]
    summary = {}
    for name, runs in results.items():
        med = {key: statistics.median(values) for key, values in runs.items()}
        summary[name] = med
        lines.append(
            f"| {name} | {med['plain']:.2f} | {med['loop']:.2f} | "
            f"{100 * (med['loop'] / med['plain'] - 1):+.1f}% | {med['space']:.2f} | "
            f"{med['plain'] / med['space']:.2f}x faster | {100 * statistics.mean(runs['plain_test']):.1f} | "
            f"{100 * statistics.mean(runs['space_test']):.1f} |"
        )
    table = "\n".join(lines) + f"\n\nmedian of {args.repeats} runs, {EPOCHS} epochs each"
    print(table)
    write_results("framework_overhead", {"repeats": args.repeats, "epochs": EPOCHS,
                                         "runs": results, "medians": summary}, table)


if __name__ == "__main__":
    main()
