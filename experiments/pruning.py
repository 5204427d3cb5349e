"""Structured pruning on MNIST (a plain CNN and a ResNet-style CNN) and Cora (a GCN) at 2x and
3x MACs speed-up: metanetwork-guided, magnitude (L2 group norm) and random pruning with the
same fine-tuning budget; accuracy before, right after pruning and after fine-tuning, and a
control "unpruned + the same fine-tuning epochs" (so that extra training is not read as a
pruning gain). Several seeds (evaluated networks, fine-tuning, random pruning); the tables give
the mean and its standard error over seeds.

    METANAS_DATA=/work/shared/datasets METANAS_CACHE=/tmp/prune-cache \\
        python experiments/pruning.py [--quick] [--seeds N]

MNIST here is ``mnist14`` (MNIST 2x2-average-pooled to 14x14, val 1,000 / test 10,000 images;
the results committed before 2026-12-06 were measured on the first 2,000 test images),
the variant our model zoos use. One pruning metanetwork per domain is trained on a zoo of
networks of the same space (CNN space on mnist14 training images; GCNs of the GNN space on
Cora's training nodes), with other seeds and widths than the evaluated networks, with the
targeted penalty ``lowest`` (the lowest-norm ``*_empty`` fraction of every coupled channel group),
the per-channel gate head and (``pruned_weight``) the task loss of the rewritten network with
that fraction of channels dropped. Its weight lambda (``lams`` / ``gnn_lams``), whether it
keeps every weight tensor's norm (``preserve_norms``: ``MetanetTrainConfig.preserve_norm``) and,
on Cora, the weight of the KL term to the original network on every node (``gnn_distills``:
``MetanetTrainConfig.distill``) are chosen per domain on validation data only: for every combination, the seed-0 evaluated networks
are rewritten, magnitude-pruned at 2x and 3x and fine-tuned with the rows' budget, and the one
with the highest mean validation accuracy after fine-tuning is used for every seed (validation
accuracy right after pruning is reported too; in runs 1-2 it did not predict the result after
fine-tuning). Nothing is selected on the test split.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from experiments._results import file_stem_error
from metanets.pruning.metanet import (
    ImageLoss,
    MetanetTrainConfig,
    NodeLoss,
    relative_group_lasso,
    train_pruning_metanet,
)
from metanets.pruning.pipeline import evaluate, prune_and_finetune
from metanets.zoo import example_inputs as trace_inputs
from nas.tasks import load_task
from nas.train import TrainConfig, seed_everything, train_model
from search_spaces.cnn import CNN, CNNArchitecture
from search_spaces.gnn import GNN, GNNArchitecture, LayerSpec

RESULTS = Path(__file__).parent / "results"
SPEEDUPS = (2.0, 3.0)
CONTROL = "unpruned + fine-tune"
#: what ``--part`` can run
PARTS = ("all", "gcn", "cnn")
#: budgets; "standard" takes ~30-35 min of one core on the 2-core machine (pruning_notes.md)
SCALES: dict[str, dict] = {
    "quick": dict(seeds=1, gnn_seeds=1, train=2, fraction=0.1, tune=1, zoo=3, zoo_epochs=1,
                  zoo_fraction=0.1, steps=40, lams=(1.0,), metanet_lr=3e-3, penalty="lowest",
                  pruned_weight=1.0, cnn_empty=0.45, gnn_empty=0.67, gnn=60, gnn_tune=20,
                  gnn_zoo=2, gnn_steps=10,
                  gnn_lams=(1.0,), preserve_norms=(False, True), gnn_distills=(0.0, 1.0)),
    "standard": dict(seeds=6, gnn_seeds=10, train=5, fraction=1.0, tune=3, zoo=10, zoo_epochs=2,
                     zoo_fraction=0.5, steps=1000, lams=(0.0, 1.0), metanet_lr=3e-3,
                     penalty="lowest", pruned_weight=1.0, cnn_empty=0.45, gnn_empty=0.67,
                     gnn=100, gnn_tune=30, gnn_zoo=6, gnn_steps=100, gnn_lams=(0.0, 1.0),
                     preserve_norms=(False, True), gnn_distills=(0.0, 1.0)),
}


def cnn(residual: bool, widths: tuple[int, ...] = (16, 16, 16), seed: int = 0,
        fraction: float = 1.0) -> CNN:
    seed_everything(seed)
    arch = CNNArchitecture(widths=widths, norm="batch", residual=residual, lr=3e-3,
                           weight_decay=1e-4, train_fraction=fraction)
    return CNN(arch, 1, 10)


def image_config(epochs: int, seed: int = 0, fraction: float = 1.0) -> TrainConfig:
    return TrainConfig(lr=3e-3, weight_decay=1e-4, epochs=epochs, patience=0, seed=seed,
                       batch_size=128, train_fraction=fraction)


def gcn(widths: tuple[int, ...], in_channels: int, classes: int, seed: int) -> GNN:
    seed_everything(seed)
    return GNN(GNNArchitecture(layers=tuple(LayerSpec("gcn", w) for w in widths)),
               in_channels, classes)


def train_cnn_zoo(task, scale: dict) -> list[torch.nn.Module]:
    """CNN-space networks of other seeds / widths than the evaluated ones."""
    zoo = []
    for i in range(scale["zoo"]):
        seed = 100 + i
        model = cnn(residual=i % 2 == 0, widths=((8, 16, 16), (16, 8, 16), (16, 16, 8),
                                                 (16, 16, 16), (12, 16, 12))[i % 5],
                    seed=seed, fraction=scale["zoo_fraction"])
        train_model(model, task, image_config(scale["zoo_epochs"], seed, scale["zoo_fraction"]))
        zoo.append(model.eval())
    return zoo


def train_gcn_zoo(task, scale: dict) -> list[torch.nn.Module]:
    """GCNs of the GNN space (two layers; six width patterns, the evaluated 64-64 among them;
    seeds 200 on, none an evaluated network's)."""
    zoo = []
    for i in range(scale["gnn_zoo"]):
        widths = ((32, 64), (64, 32), (128, 64), (64, 64), (48, 96), (96, 48))[i % 6]
        model = gcn(widths, task.num_features, task.num_classes, seed=200 + i)
        train_model(model, task, TrainConfig(epochs=scale["gnn"], patience=0, seed=200 + i))
        zoo.append(model.eval())
    return zoo


def choose_metanet(result: dict, domain: str, zoo, task_loss, inputs, task, models,
                   lams, steps: int, lr: float, tune: TrainConfig, penalty: str = "lowest",
                   empty: float = 0.45, pruned_weight: float = 0.0,
                   preserve_norms: tuple[bool, ...] = (False,), distills: tuple[float, ...] = (0.0,)):
    """Train one metanetwork per (lambda, preserve_norm, distill); keep the one whose rewrite + magnitude
    pruning + ``tune`` gives the best mean validation accuracy of ``models`` (seed 0) at 2x and
    3x after fine-tuning (:func:`best_metanet`; the accuracy right after pruning is reported
    too, but in runs 1-2 it did not predict the result after fine-tuning)."""
    candidates = []
    for lam in lams:
        for preserve in preserve_norms:
            for distill in distills:
                entry, metanet = _try_metanet(domain, zoo, task_loss, inputs, task, models, steps, lr,
                                              tune, MetanetTrainConfig(
                                                  lam=lam, steps=steps, lr=lr, penalty=penalty,
                                                  fraction=empty, pruned_weight=pruned_weight,
                                                  preserve_norm=preserve, distill=distill))
                result["metanets"].append(entry)
                candidates.append((entry, metanet))
    entry, metanet = best_metanet(candidates)
    result["chosen_lam"][domain] = entry["lam"]
    result.setdefault("chosen", {})[domain] = {"lam": entry["lam"],
                                               "preserve_norm": entry["preserve_norm"],
                                               "distill": entry["distill"]}
    return metanet


def _fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def best_metanet(candidates: list[tuple[dict, object]]) -> tuple[dict, object]:
    """The candidate with the highest seed-0 validation accuracy after fine-tuning (the first
    one on a tie); selection never reads a test accuracy."""
    return max(candidates, key=lambda c: c[0]["val_after_finetuning"])


def _try_metanet(domain: str, zoo, task_loss, inputs, task, models, steps: int, lr: float,
                 tune: TrainConfig, config: MetanetTrainConfig):
    """Train one metanetwork and measure it on the seed-0 networks' validation split."""
    log: list[dict] = []
    start = time.perf_counter()
    metanet = train_pruning_metanet(
        zoo, task_loss, inputs, config,
        log=lambda s, t, g, log=log: log.append(
            {"step": s, "task_loss": round(t, 4), "relative_lasso": round(g, 4)}))
    seconds = time.perf_counter() - start
    val, val_pruned, val_rewritten = [], [], []
    for model in models:
        val_rewritten.append(evaluate(metanet.transform(copy.deepcopy(model)), task)["val_acc"])
        for speedup in SPEEDUPS:
            outcome = prune_and_finetune(model, task, speedup, "metanet", tune, metanet.transform)
            val.append(outcome.finetuned["val_acc"])
            val_pruned.append(outcome.pruned["val_acc"])
    entry = {"domain": domain, "lam": config.lam, "preserve_norm": config.preserve_norm,
             "distill": config.distill, "val_rewritten": statistics.mean(val_rewritten),
             "steps": steps, "lr": lr, "seconds": seconds, "penalty": config.penalty,
             "empty_fraction": config.fraction, "pruned_weight": config.pruned_weight,
             "log": log, "val_after_finetuning": statistics.mean(val),
             "val_after_pruning": statistics.mean(val_pruned),
             "zoo_relative_lasso": statistics.mean(relative_group_lasso(metanet, m)
                                                   for m in zoo),
             "zoo_relative_penalty": statistics.mean(
                 relative_group_lasso(metanet, m, config.penalty, config.fraction)
                 for m in zoo)}
    print(f"{domain} metanet lambda {config.lam} preserve_norm {config.preserve_norm} "
          f"distill {config.distill}: {log[0]} -> {log[-1]}; val acc rewritten "
          f"{entry['val_rewritten']:.4f}, after pruning {entry['val_after_pruning']:.4f}, "
          f"after fine-tuning {entry['val_after_finetuning']:.4f} ({seconds:.0f} s)", flush=True)
    return entry, metanet


def run(scale: dict, save, part: str = "all") -> dict:
    """The CNN zoo and metanetwork, the seed-0 CNN rows, the GCN part (zoo, metanetwork, every
    seed), then the other CNN seeds (``part="gcn"``: the GCN part only); ``save(result)`` is
    called after every row so a partial table (every model at seed 0 at least) survives an
    interruption; ``part="cnn"``: the MNIST part only."""
    result: dict = {"scale": scale, "rows": [], "metanets": [], "chosen_lam": {},
                    "stage_seconds": {}}
    if part == "gcn":
        _gcn_part(result, save, scale)
        return result
    clock = time.perf_counter()
    mnist = load_task("mnist14")
    zoo = train_cnn_zoo(mnist, scale)
    result["stage_seconds"]["cnn_zoo"] = time.perf_counter() - clock
    print(f"CNN zoo of {len(zoo)} ({result['stage_seconds']['cnn_zoo']:.0f} s)", flush=True)
    seeds = range(scale["seeds"])
    models = {seed: _train_cnns(mnist, scale, seed) for seed in seeds[:1]}
    images = ImageLoss(mnist.dataset.x["train"], mnist.dataset.y["train"])
    clock = time.perf_counter()
    metanet = choose_metanet(result, "mnist14", zoo, images, (torch.zeros(2, 1, 14, 14),), mnist,
                             list(models[0].values()), scale["lams"], scale["steps"],
                             scale["metanet_lr"], image_config(scale["tune"], 0, scale["fraction"]),
                             scale["penalty"], scale["cnn_empty"], scale.get("pruned_weight", 0.0),
                             scale.get("preserve_norms", (False,)))
    result["stage_seconds"]["cnn_metanets"] = time.perf_counter() - clock
    save(result)
    for seed in seeds:  # seed 0, then the whole GCN part, then the other seeds
        if seed not in models:
            models[seed] = _train_cnns(mnist, scale, seed)
        tune = image_config(scale["tune"], seed, scale["fraction"])
        for name, model in models[seed].items():
            _rows(result, save, name, "mnist14", mnist, model, tune, metanet, seed)
        if seed == 0 and part == "all":
            _gcn_part(result, save, scale)
    return result


def _train_cnns(task, scale: dict, seed: int) -> dict[str, torch.nn.Module]:
    models = {}
    for name, residual in (("CNN", False), ("ResNet-style CNN", True)):
        models[name] = cnn(residual, seed=seed, fraction=scale["fraction"])
        train_model(models[name], task, image_config(scale["train"], seed, scale["fraction"]))
        models[name].eval()
    return models


def _gcn_part(result: dict, save, scale: dict) -> None:
    cora = load_task("cora")
    clock = time.perf_counter()
    zoo = train_gcn_zoo(cora, scale)
    result["stage_seconds"]["gcn_zoo"] = time.perf_counter() - clock
    evaluated = {}
    for seed in range(scale["gnn_seeds"]):
        evaluated[seed] = gcn((64, 64), cora.num_features, cora.num_classes, seed)
        train_model(evaluated[seed], cora, TrainConfig(epochs=scale["gnn"], patience=0,
                                                       seed=seed))
        evaluated[seed].eval()
    d = cora.data
    clock = time.perf_counter()
    metanet = choose_metanet(result, "cora", zoo, NodeLoss(d.x, d.edge_index, d.y, d.train_mask),
                             trace_inputs("node", cora.num_features), cora, [evaluated[0]],
                             scale["gnn_lams"], scale["gnn_steps"], scale["metanet_lr"],
                             TrainConfig(epochs=scale["gnn_tune"], patience=0, seed=0),
                             scale["penalty"], scale["gnn_empty"], scale.get("pruned_weight", 0.0),
                             scale.get("preserve_norms", (False,)), scale.get("gnn_distills", (0.0,)))
    result["stage_seconds"]["gcn_metanets"] = time.perf_counter() - clock
    for seed, model in evaluated.items():
        _rows(result, save, "GCN", "cora", cora, model,
              TrainConfig(epochs=scale["gnn_tune"], patience=0, seed=seed), metanet, seed)


def _rows(result, save, name, dataset, task, model, tune, metanet, seed) -> None:
    """The control row, then every method at every speed-up, for one evaluated network."""
    before = evaluate(model, task)
    tuned = train_model(copy.deepcopy(model), task, tune).metrics
    params = sum(p.numel() for p in model.parameters())
    _add(result, save, {
        "model": name, "dataset": dataset, "seed": seed, "target": 1.0,
        "finetune_epochs": tune.epochs, "method": CONTROL, "speedup": 1.0,
        "macs_before": None, "macs_after": None, "params_before": params,
        "params_after": params, "acc_before": before["test_acc"],
        "acc_transformed": None, "acc_pruned": before["test_acc"],
        "acc_finetuned": tuned["test_acc"], "val_acc_before": before["val_acc"],
        "val_acc_finetuned": tuned["val_acc"]})
    lasso = relative_group_lasso(metanet, model)
    for speedup in SPEEDUPS:
        for method in ("magnitude", "random", "metanet"):
            transform = metanet.transform if method == "metanet" else None
            outcome = prune_and_finetune(model, task, speedup, method, tune, transform, seed,
                                         before)
            row = {"model": name, "dataset": dataset, "seed": seed, "target": speedup,
                   "finetune_epochs": tune.epochs, **outcome.summary()}
            if method == "metanet":
                row["relative_lasso"] = lasso
            _add(result, save, row)


def _add(result: dict, save, row: dict) -> None:
    result["rows"].append(row)
    print(_line(row), flush=True)
    save(result)


def _line(row: dict) -> str:
    transformed = ("" if row["acc_transformed"] is None
                   else f" (rewritten {row['acc_transformed']:.4f})")
    return (f"s{row['seed']} {row['model']:<17}{row['target']:>4.0f}x {row['method']:<21} "
            f"speed-up {row['speedup']:.2f}  params {row['params_before']:>7,}->"
            f"{row['params_after']:<7,} acc {row['acc_before']:.4f}{transformed} -> pruned "
            f"{row['acc_pruned']:.4f} -> fine-tuned {row['acc_finetuned']:.4f}")


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and standard error over seeds per (model, target, method), in first-seen order."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["target"], row["method"]), []).append(row)
    out = []
    for (model, target, method), members in groups.items():
        entry = {"model": model, "target": target, "method": method, "seeds": len(members),
                 "speedup": statistics.mean(r["speedup"] for r in members)}
        for key in ("acc_before", "acc_transformed", "acc_pruned", "acc_finetuned"):
            values = [r[key] for r in members if r[key] is not None]
            entry[key] = _mean_se(values) if values else None
        out.append(entry)
    return out


def _mean_se(values: list[float]) -> tuple[float, float | None]:
    mean = statistics.mean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
    return mean, se


def _fmt(cell: tuple[float, float | None] | None) -> str:
    if cell is None:
        return "-"
    mean, se = cell
    return f"{100 * mean:.2f}" + ("" if se is None else f" ± {100 * se:.2f}")


def markdown(result: dict) -> str:
    rows = result["rows"]
    seeds = sorted({r["seed"] for r in rows}) if rows else []
    lines = [
        "# Structured pruning: metanetwork-guided vs magnitude vs random", "",
        f"Date: {result['date']}  ", f"Machine: {result['machine']}  ",
        f"Load average at start: {result['load']}  ", f"Command: `{result['command']}`  ",
        f"Scale: {result['scale']}  ", f"Seeds: {seeds}; stage seconds: "
        f"{ {k: round(v) for k, v in result.get('stage_seconds', {}).items()} }", "",
        "Test accuracy in % (MNIST = mnist14, 10,000 test images; Cora = Planetoid split, 1,000 "
        "test nodes): mean ± standard error over seeds. MACs: dense products (flop counter / 2) "
        "on one forward pass (64 images; the whole Cora graph). "
        f"'{CONTROL}': the unpruned network trained for the same fine-tuning epochs.", "",
        "| model | target | method | seeds | speed-up | acc before | rewritten | after pruning "
        "| after fine-tuning |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summarise(rows):
        lines.append(
            f"| {s['model']} | {s['target']:.0f}x | {s['method']} | {s['seeds']} | "
            f"{s['speedup']:.2f}x | {_fmt(s['acc_before'])} | {_fmt(s['acc_transformed'])} | "
            f"{_fmt(s['acc_pruned'])} | {_fmt(s['acc_finetuned'])} |")
    lines += ["", "## Metanetworks (lambda, preserve_norm and distill chosen on seed-0 validation accuracy "
              "after fine-tuning, mean of 2x and 3x)",
              "",
              f"Chosen: {result.get('chosen', result.get('chosen_lam', {}))}", "",
              "| domain | lambda | preserve norm | distill | steps | lr | seconds | first log (task loss, "
              "rel. penalty) | last log | zoo rel. lasso after rewrite | zoo rel. penalty after "
              "rewrite | val acc rewritten | val acc after pruning | val acc after fine-tuning (2x, 3x mean) |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in result.get("metanets", []):
        first, last = m["log"][0], m["log"][-1]
        lines.append(
            f"| {m['domain']} | {m['lam']} | {m.get('preserve_norm', False)} | {m.get('distill', 0.0)} | {m['steps']} | "
            f"{m['lr']} | {m['seconds']:.0f} | "
            f"{first['task_loss']:.3f}, {first['relative_lasso']:.3f} | {last['task_loss']:.3f}, "
            f"{last['relative_lasso']:.3f} | {m['zoo_relative_lasso']:.3f} | "
            f"{m.get('zoo_relative_penalty', float('nan')):.3f} | "
            f"{_fmt_pct(m.get('val_rewritten'))} | "
            f"{100 * m['val_after_pruning']:.2f} | {100 * m['val_after_finetuning']:.2f} |")
    lines += ["", "## Every run", "",
              "| seed | model | target | method | speed-up | MACs before -> after | params "
              "before -> after | rel. lasso | acc before | rewritten | after pruning | after "
              "fine-tuning |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        macs = "-" if r["macs_before"] is None else f"{r['macs_before']:,} -> {r['macs_after']:,}"
        lasso = f"{r['relative_lasso']:.3f}" if "relative_lasso" in r else "-"
        rewritten = "-" if r["acc_transformed"] is None else f"{100 * r['acc_transformed']:.2f}"
        lines.append(
            f"| {r['seed']} | {r['model']} | {r['target']:.0f}x | {r['method']} | "
            f"{r['speedup']:.2f}x | {macs} | {r['params_before']:,} -> {r['params_after']:,} | "
            f"{lasso} | {100 * r['acc_before']:.2f} | {rewritten} | {100 * r['acc_pruned']:.2f} "
            f"| {100 * r['acc_finetuned']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller budgets everywhere")
    parser.add_argument("--seeds", type=int, default=None,
                        help="override the scale's seeds (CNNs and GCN)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: min(2, CPUs))")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--part", default="all", choices=PARTS,
                        help="all (default), gcn (the Cora GCN part only) or cnn (the MNIST part only)")
    parser.add_argument("--gnn-steps", type=int, default=None,
                        help="override the scale's GCN metanetwork steps")
    parser.add_argument("--steps", type=int, default=None,
                        help="override the scale's MNIST metanetwork steps")
    parser.add_argument("--zoo", type=int, default=None,
                        help="override the scale's number of MNIST zoo networks")
    parser.add_argument("--gnn-zoo", type=int, default=None,
                        help="override the scale's number of Cora zoo GCNs (their widths cycle "
                             "through six patterns, 64-64 among them)")
    parser.add_argument("--zoo-epochs", type=int, default=None,
                        help="override the scale's training epochs of each MNIST zoo network")
    parser.add_argument("--zoo-fraction", type=float, default=None,
                        help="override the scale's share of MNIST training images for the zoo")
    parser.add_argument("--name", default="pruning",
                        help="stem of the result files NAME.md / NAME.json (default pruning)")
    args = parser.parse_args()
    if file_stem_error("--name", args.name):
        parser.error(file_stem_error("--name", args.name))
    scale = dict(SCALES["quick" if args.quick else "standard"])
    if args.gnn_steps is not None:
        if args.gnn_steps < 1:
            parser.error(f"--gnn-steps {args.gnn_steps} must be >= 1")
        scale["gnn_steps"] = args.gnn_steps
    for key in ("steps", "zoo", "zoo_epochs", "gnn_zoo"):
        value = getattr(args, key)
        if value is not None:
            if value < 1:
                parser.error(f"--{key.replace('_', '-')} {value} must be >= 1")
            scale[key] = value
    if args.zoo_fraction is not None:
        if not 0 < args.zoo_fraction <= 1:
            parser.error(f"--zoo-fraction {args.zoo_fraction} must be in (0, 1]")
        scale["zoo_fraction"] = args.zoo_fraction
    if args.seeds is not None:
        if args.seeds < 1:
            parser.error(f"--seeds {args.seeds} must be >= 1")
        scale["seeds"] = scale["gnn_seeds"] = args.seeds
    torch.set_num_threads(args.threads or max(1, min(2, os.cpu_count() or 1)))
    header = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
        "load": [round(x, 2) for x in os.getloadavg()],
        "command": " ".join(["python", *sys.argv]),
        "torch_threads": torch.get_num_threads(),
    }
    out = Path(args.out)

    def save(partial: dict) -> None:
        out.mkdir(parents=True, exist_ok=True)
        document = {**header, **partial}
        (out / f"{args.name}.json").write_text(json.dumps(document, indent=2) + "\n")
        (out / f"{args.name}.md").write_text(markdown(document))

    result = run(scale, save, args.part)
    save(result)
    print(markdown({**header, **result}))


if __name__ == "__main__":
    main()
