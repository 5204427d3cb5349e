"""Supernet throughput on one device: epochs of SPOS training per second and architectures scored
per second with inherited weights, beside from-scratch training of the same architectures.

One run measures one device (``--device cpu|cuda|auto``); run it once on the CPU and once on a
GPU and read the two result files side by side. Every setting is ``SPACE:DATASET`` (default: the
GNN space and the NAS-Bench-Graph space on Cora, and the GNN space on MUTAG, a graph task with
mini-batches). Per setting: a short untimed warm-up (CUDA kernels, caches), then
``--epochs`` timed supernet epochs (checkpointing included, as a user pays it), ``--archs``
architectures scored by each ``--ft`` variant (``supernet:ftN``: inherited weights, BatchNorm
recalibrated, N fine-tuning epochs) and ``--scratch`` of them trained from scratch by the
``train`` evaluator. ``--amp`` trains the supernet under bfloat16 autocast (CUDA only).

    python experiments/supernet_throughput.py --device cpu --threads 1
    python experiments/supernet_throughput.py --device cuda --name supernet_throughput_cuda

Writes ``experiments/results/NAME.{md,json}`` with the machine, the GPU's name, load, command and
date.
"""
from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from experiments._results import file_stem_error
from experiments._supernet_common import machine, write_results

#: settings measured when ``--settings`` is not given
DEFAULT_SETTINGS = ("gnn:cora", "nasbench-graph:cora", "gnn:mutag")
#: supernet options per space, as ``metanas supernet train --option`` takes them (the
#: configurations the ranking runs measured, experiments/results/supernet_ranking_notes.md)
OPTIONS: dict[str, list[str]] = {
    "gnn": ["max_depth=2", "widths=64", "dropouts=0.5", "split=norm"],
    "nasbench-graph": [],
}


def parse_setting(text: str) -> tuple[str, str]:
    """``"SPACE:DATASET"`` -> ``(space, dataset)``; ``ValueError`` naming the valid spaces."""
    space, sep, dataset = text.partition(":")
    if not sep or not dataset or space not in OPTIONS:
        raise ValueError(f"setting {text!r} must be SPACE:DATASET with SPACE one of {sorted(OPTIONS)}")
    return space, dataset


def _synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(space: str, dataset: str, args: argparse.Namespace, device: str) -> dict[str, Any]:
    """The throughput figures of one setting on ``device``."""
    from nas.evaluators import SupernetEvaluator, TrainEvaluator
    from nas.supernet import SupernetTrainConfig, build_supernet, parse_options, train_supernet
    from nas.tasks import load_task

    task = load_task(dataset)
    options = parse_options(OPTIONS[space])
    with tempfile.TemporaryDirectory(prefix="metanas-throughput-") as tmp:
        warm = SupernetTrainConfig(epochs=args.warmup, seed=args.seed, device=device, amp=args.amp)
        train_supernet(build_supernet(space, task, **options), task, warm)
        supernet = build_supernet(space, task, **options)
        config = SupernetTrainConfig(epochs=args.epochs, seed=args.seed, device=device, amp=args.amp,
                                     checkpoint_every=max(1, args.epochs // 4))
        folder = Path(tmp) / "supernet"
        _synchronize(device)
        began = time.perf_counter()
        trained = train_supernet(supernet, task, config, out=folder)
        _synchronize(device)
        train_wall = time.perf_counter() - began
        rng = random.Random(args.seed + 1)
        archs = [supernet.sample(rng) for _ in range(args.archs)]
        row: dict[str, Any] = {
            "setting": f"{space}:{dataset}", "device": device, "parameters": sum(p.numel() for p in supernet.parameters()),
            "supernet_epochs": trained.epochs, "supernet_seconds": train_wall,
            "supernet_epochs_per_s": trained.epochs / max(train_wall, 1e-9), "amp": args.amp,
        }
        for ft in args.ft:
            scorer = SupernetEvaluator(str(folder), finetune_epochs=ft)
            scorer.evaluate(archs[0], supernet.space, task, seed=args.seed, device=device)  # loads, warms up
            _synchronize(device)
            began = time.perf_counter()
            for arch in archs:
                scorer.evaluate(arch, supernet.space, task, seed=args.seed, device=device)
            _synchronize(device)
            row[f"archs_per_s_ft{ft}"] = len(archs) / max(time.perf_counter() - began, 1e-9)
        if args.scratch and space == "gnn":  # NAS-Bench-Graph cells train 400 epochs each: skipped
            trainer = TrainEvaluator()
            seconds = []
            for arch in archs[:args.scratch]:
                seconds.append(trainer.evaluate(arch, supernet.space, task, seed=args.seed, device=device).seconds)
            row["scratch_s_per_arch"] = sum(seconds) / len(seconds)
    return row


def markdown(info: dict[str, Any], rows: list[dict[str, Any]], ft: list[int]) -> str:
    gpu = info["gpu"] or "none"
    lines = ["# Supernet throughput", "",
             f"- machine: {info['platform']}, {info['cpu_count']} CPUs, torch {info['torch']}, "
             f"{info['torch_threads']} torch threads, GPU: {gpu}; load at start {info['loadavg_at_start']}",
             f"- command: `{info['command']}`", f"- date: {info['date']}",
             "- epochs/s: timed SPOS epochs after an untimed warm-up, checkpoints included; archs/s: "
             "inherited-weight scoring (BatchNorm recalibrated, ftN = N fine-tuning epochs), after one "
             "untimed architecture; from scratch: the `train` evaluator's defaults", "",
             "| setting | device | params | amp | supernet epochs/s | "
             + " | ".join(f"archs/s ft{f}" for f in ft) + " | from scratch s/arch |",
             "|---|---|---|---|---|" + "---|" * len(ft) + "---|"]
    for r in rows:
        scratch = f"{r['scratch_s_per_arch']:.2f}" if "scratch_s_per_arch" in r else "-"
        lines.append(f"| {r['setting']} | {r['device']} | {r['parameters']:,} | {r['amp']} | "
                     f"{r['supernet_epochs_per_s']:.2f} | "
                     + " | ".join(f"{r[f'archs_per_s_ft{f}']:.2f}" for f in ft) + f" | {scratch} |")
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: cuda when there is one)")
    p.add_argument("--settings", nargs="+", default=list(DEFAULT_SETTINGS), metavar="SPACE:DATASET")
    p.add_argument("--epochs", type=int, default=60, help="timed supernet epochs per setting")
    p.add_argument("--warmup", type=int, default=3, help="untimed supernet epochs first")
    p.add_argument("--archs", type=int, default=20, help="architectures scored per variant")
    p.add_argument("--ft", type=int, nargs="+", default=[0, 20], help="fine-tuning epochs of the scorers")
    p.add_argument("--scratch", type=int, default=3, help="of them trained from scratch (gnn space; 0: none)")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast in supernet training (CUDA)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--name", default=None, help="result file stem (default supernet_throughput_<device>)")
    return p


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = [parse_setting(s) for s in args.settings]
    except ValueError as error:
        parser.error(str(error))
    for key in ("epochs", "warmup", "archs"):
        if getattr(args, key) < 1:
            parser.error(f"--{key} {getattr(args, key)} must be >= 1")
    if args.scratch < 0 or any(f < 0 for f in args.ft):
        parser.error("--scratch and --ft take numbers >= 0")
    if args.name is not None and file_stem_error("--name", args.name):
        parser.error(file_stem_error("--name", args.name))
    import torch

    from nas.train import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = str(resolve_device(args.device))
    info = machine()
    rows = []
    for space, dataset in settings:
        rows.append(measure(space, dataset, args, device))
        print(rows[-1], flush=True)
    name = args.name or f"supernet_throughput_{device.split(':')[0]}"
    write_results(name, {"machine": info, "args": vars(args), "rows": rows}, markdown(info, rows, args.ft))


if __name__ == "__main__":
    main()
