"""Structured pruning on MNIST (a plain CNN and a ResNet-style CNN) and Cora (a GCN) at 2x and
3x MACs speed-up: metanetwork-guided, magnitude (L2 group norm) and random pruning with the
same fine-tuning budget; accuracy before, right after pruning and after fine-tuning.

    METANAS_DATA=/work/shared/datasets METANAS_CACHE=/tmp/prune-cache \\
        python experiments/pruning.py [--quick]

MNIST here is ``mnist14`` (MNIST 2x2-average-pooled to 14x14, val 1,000 / test 2,000 images),
the variant our model zoos use. The metanetwork is trained on a small zoo of CNN-space networks
(other seeds and widths than the evaluated ones) on training images only; its one
hyper-parameter (lambda) is fixed in advance, nothing is selected on the test split. It is
applied to the CNNs only (a metanetwork trained on CNNs says nothing about GCNs).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from metanets.pruning.metanet import MetanetTrainConfig, train_pruning_metanet
from metanets.pruning.pipeline import prune_and_finetune
from nas.tasks import load_task
from nas.train import TrainConfig, seed_everything, train_model
from search_spaces.cnn import CNN, CNNArchitecture
from search_spaces.gnn import GNN, GNNArchitecture, LayerSpec

RESULTS = Path(__file__).parent / "results"
SPEEDUPS = (2.0, 3.0)


def cnn(residual: bool, widths: tuple[int, ...] = (16, 16, 16), seed: int = 0) -> CNN:
    seed_everything(seed)
    arch = CNNArchitecture(widths=widths, norm="batch", residual=residual, lr=3e-3,
                           weight_decay=1e-4, train_fraction=0.1)
    return CNN(arch, 1, 10)


def image_config(epochs: int, seed: int = 0) -> TrainConfig:
    return TrainConfig(lr=3e-3, weight_decay=1e-4, epochs=epochs, patience=0, seed=seed,
                       batch_size=128, train_fraction=0.1)


def train_zoo(task, size: int, epochs: int) -> list[torch.nn.Module]:
    """Small CNN-space networks of other seeds / widths than the evaluated ones."""
    zoo = []
    for i in range(size):
        model = cnn(residual=i % 2 == 0, widths=((8, 16, 16), (16, 8, 16), (16, 16, 8))[i % 3],
                    seed=100 + i)
        train_model(model, task, image_config(epochs, seed=100 + i))
        zoo.append(model.eval())
    return zoo


def run(quick: bool, save) -> dict:
    """Baselines first, then the metanetwork (its zoo is the slowest part), then the GCN;
    ``save(result)`` is called after every row so a partial table survives an interruption."""
    result: dict = {"rows": [], "metanet_log": [], "metanet_seconds": None}
    scale = dict(train=2 if quick else 4, tune=1 if quick else 2, zoo=3 if quick else 6,
                 zoo_epochs=1 if quick else 3, steps=40 if quick else 100,
                 gnn=60 if quick else 100, gnn_tune=20 if quick else 30)
    result["scale"] = scale
    mnist = load_task("mnist14")
    models = {}
    for name, residual in (("CNN", False), ("ResNet-style CNN", True)):
        models[name] = cnn(residual)
        train_model(models[name], mnist, image_config(scale["train"]))
        models[name].eval()
    tune = image_config(scale["tune"])
    for name, model in models.items():
        for speedup in SPEEDUPS:
            for method in ("magnitude", "random"):
                _row(result, save, name, "mnist14", mnist, model, speedup, method, tune, None)
    print(f"zoo of {scale['zoo']} CNNs ...", flush=True)
    zoo = train_zoo(mnist, scale["zoo"], scale["zoo_epochs"])
    start = time.perf_counter()
    metanet = train_pruning_metanet(
        zoo, mnist.dataset.x["train"][:10000], mnist.dataset.y["train"][:10000],
        (torch.zeros(2, 1, 14, 14),), MetanetTrainConfig(lam=1.0, steps=scale["steps"]),
        log=lambda s, t, g: result["metanet_log"].append(
            {"step": s, "task_loss": t, "relative_lasso": g}))
    result["metanet_seconds"] = time.perf_counter() - start
    print(f"metanetwork: {result['metanet_log'][-1]}", flush=True)
    for name, model in models.items():
        for speedup in SPEEDUPS:
            _row(result, save, name, "mnist14", mnist, model, speedup, "metanet", tune,
                 metanet.transform)
    cora = load_task("cora")
    seed_everything(0)
    gcn = GNN(GNNArchitecture(layers=(LayerSpec("gcn", 64), LayerSpec("gcn", 64))),
              cora.num_features, cora.num_classes)
    train_model(gcn, cora, TrainConfig(epochs=scale["gnn"], patience=0))
    gcn.eval()
    for speedup in SPEEDUPS:
        for method in ("magnitude", "random"):
            _row(result, save, "GCN", "cora", cora, gcn, speedup, method,
                 TrainConfig(epochs=scale["gnn_tune"], patience=0), None)
    return result


def _row(result, save, name, dataset, task, model, speedup, method, tune, transform) -> None:
    outcome = prune_and_finetune(model, task, speedup, method, tune, transform)
    row = {"model": name, "dataset": dataset, "target": speedup,
           "finetune_epochs": tune.epochs, **outcome.summary()}
    result["rows"].append(row)
    print(_line(row), flush=True)
    save(result)


def _line(row: dict) -> str:
    transformed = "" if row["acc_transformed"] is None else f" (rewritten {row['acc_transformed']:.4f})"
    return (f"{row['model']:<17}{row['target']:>4.0f}x {row['method']:<10} "
            f"speed-up {row['speedup']:.2f}  params {row['params_before']:>7,}->"
            f"{row['params_after']:<7,} acc {row['acc_before']:.4f}{transformed} -> pruned "
            f"{row['acc_pruned']:.4f} -> fine-tuned {row['acc_finetuned']:.4f}")


def markdown(result: dict) -> str:
    lines = [
        "# Structured pruning: metanetwork-guided vs magnitude vs random", "",
        f"Date: {result['date']}  ", f"Machine: {result['machine']}  ",
        f"Load average at start: {result['load']}  ", f"Command: `{result['command']}`  ",
        f"Scale: {result['scale']}; metanetwork training {result['metanet_seconds']} s", "",
        "Test accuracy (MNIST = mnist14; Cora = Planetoid split). MACs: dense products "
        "(flop counter / 2) on one forward pass (64 images; the whole Cora graph).", "",
        "| model | target | method | speed-up | MACs before -> after | params before -> after "
        "| acc before | rewritten | after pruning | after fine-tuning |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        rewritten = "-" if r["acc_transformed"] is None else f"{r['acc_transformed']:.4f}"
        lines.append(
            f"| {r['model']} | {r['target']:.0f}x | {r['method']} | {r['speedup']:.2f}x | "
            f"{r['macs_before']:,} -> {r['macs_after']:,} | {r['params_before']:,} -> "
            f"{r['params_after']:,} | {r['acc_before']:.4f} | {rewritten} | "
            f"{r['acc_pruned']:.4f} | {r['acc_finetuned']:.4f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller budgets everywhere")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    header = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
        "load": [round(x, 2) for x in os.getloadavg()],
        "command": " ".join(["python", *sys.argv]),
    }
    out = Path(args.out)

    def save(partial: dict) -> None:
        out.mkdir(parents=True, exist_ok=True)
        document = {**header, **partial}
        (out / "pruning.json").write_text(json.dumps(document, indent=2) + "\n")
        (out / "pruning.md").write_text(markdown(document))

    result = run(args.quick, save)
    save(result)
    print(markdown({**header, **result}))


if __name__ == "__main__":
    main()
