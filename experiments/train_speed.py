"""Training speed: our ``train_model`` against a plain PyG script on GNN-space architectures.

For each of ``--archs`` architectures sampled from the GNN space (seeds ``--seed``...), the same
model (same seed, same initial weights) is trained by

- ``plain``: a standard dense PyG loop written here (Adam, full batch, dense features, the
  model called as ``model(x, edge_index)``, validation every epoch, early stopping on validation
  accuracy with the same patience, test accuracy of the best-validation weights), and
- ``ours``: :func:`nas.train.train_model` (fixed-graph fast path),

interleaved architecture by architecture so that the load of the shared CPU hits both alike.
Side studies: torch threads (1 vs 2) on the fast path, ``torch.compile`` on one architecture,
and architectures per minute of a whole ``metanas search`` with 1 and 2 worker processes.

Writes ``experiments/results/train_speed.{json,md}``.

Usage::

    METANAS_DATA=/work/shared/datasets METANAS_CACHE=/tmp/me-cache \\
        python experiments/train_speed.py --archs 30
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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from experiments._results import positive_int
from nas.tasks import load_task
from nas.train import TrainConfig, seed_everything, train_model
from search_spaces.gnn import GNNSpace

RESULTS = Path(__file__).resolve().parent / "results"


def plain_pyg_train(model: nn.Module, data, lr: float, weight_decay: float, epochs: int,  # noqa: ANN001
                    patience: int) -> tuple[float, float, int]:
    """The baseline: a plain dense PyG training script. Returns (test acc, val acc, epochs)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    best_val, best_epoch, best_state = -math.inf, 0, copy.deepcopy(model.state_dict())
    epoch = 0
    for epoch in range(1, epochs + 1):
        model.train()
        optimizer.zero_grad()
        out = model(data.x, data.edge_index)
        loss = nn.functional.cross_entropy(out[data.train_mask], data.y[data.train_mask])
        loss.backward()
        optimizer.step()
        model.eval()
        with torch.no_grad():
            pred = model(data.x, data.edge_index).argmax(-1)
        val = float((pred[data.val_mask] == data.y[data.val_mask]).float().mean())
        if val > best_val:
            best_val, best_epoch, best_state = val, epoch, copy.deepcopy(model.state_dict())
        if patience and epoch - best_epoch >= patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    with torch.no_grad():
        pred = model(data.x, data.edge_index).argmax(-1)
    test = float((pred[data.test_mask] == data.y[data.test_mask]).float().mean())
    return test, best_val, epoch


def time_plain(space: GNNSpace, arch, task, seed: int, epochs: int, patience: int) -> dict:  # noqa: ANN001
    start, cpu_start = time.perf_counter(), time.process_time()
    seed_everything(seed)
    model = space.build(arch, task.num_features, task.num_classes, task.level)
    test, val, epochs_run = plain_pyg_train(
        model, task.data, arch.lr, arch.weight_decay, epochs, patience)
    return {"seconds": time.perf_counter() - start, "test_acc": test, "val_acc": val,
            "epochs": epochs_run, "cpu_seconds": time.process_time() - cpu_start}


def time_ours(space: GNNSpace, arch, task, seed: int, epochs: int, patience: int) -> dict:  # noqa: ANN001
    start, cpu_start = time.perf_counter(), time.process_time()
    seed_everything(seed)
    model = space.build(arch, task.num_features, task.num_classes, task.level)
    config = TrainConfig(**space.training_config(arch), epochs=epochs, patience=patience, seed=seed)
    result = train_model(model, task, config)
    return {"seconds": time.perf_counter() - start, "test_acc": result.metrics["test_acc"],
            "val_acc": result.metrics["val_acc"], "epochs": result.epochs_run,
            "cpu_seconds": time.process_time() - cpu_start}


def compare(args: argparse.Namespace, space: GNNSpace, task, save=None) -> list[dict]:  # noqa: ANN001
    rows = []
    for i in range(args.first, args.first + args.archs):
        arch = space.sample(args.seed + i)
        row = {"index": i, "arch": arch.short(), "arch_json": arch.to_json()}
        # alternate which implementation goes first, so slow drifts of the load cancel out
        order = ("plain", "ours") if i % 2 == 0 else ("ours", "plain")
        for name in order:
            timer = time_plain if name == "plain" else time_ours
            row[name] = timer(space, arch, task, args.seed, args.epochs, args.patience)
        row["speedup"] = row["plain"]["seconds"] / row["ours"]["seconds"]
        rows.append(row)
        if save is not None:
            save(rows)
        print(f"{i + 1:3d} {row['arch']:<45s} plain {row['plain']['seconds']:7.2f}s "
              f"{row['plain']['test_acc']:.3f} | ours {row['ours']['seconds']:6.2f}s "
              f"{row['ours']['test_acc']:.3f} | x{row['speedup']:.1f}  load {os.getloadavg()[0]:.1f}",
              flush=True)
    return rows


def thread_study(args: argparse.Namespace, space: GNNSpace, task) -> dict:  # noqa: ANN001
    """Fast-path seconds per architecture with 1 and 2 intra-op threads (interleaved)."""
    seconds: dict[int, list[float]] = {1: [], 2: []}
    before = torch.get_num_threads()
    for i in range(args.thread_archs):
        arch = space.sample(args.seed + i)
        for threads in ((1, 2) if i % 2 == 0 else (2, 1)):
            torch.set_num_threads(threads)
            seconds[threads].append(time_ours(space, arch, task, args.seed, args.epochs,
                                              args.patience)["seconds"])
    torch.set_num_threads(before)
    return {f"threads_{t}": {"median_s": statistics.median(s), "seconds": s}
            for t, s in seconds.items()}


def compile_study(args: argparse.Namespace, space: GNNSpace, task) -> dict:  # noqa: ANN001
    """``torch.compile`` on the plain dense model and on the fast path of one architecture."""
    from search_spaces.gnn import GNNArchitecture, LayerSpec

    arch = GNNArchitecture(layers=(LayerSpec("gcn", 64, dropout=0.5), LayerSpec("gcn", 64)))
    data = task.data
    out: dict[str, object] = {"arch": arch.short(), "epochs": 100}

    def run(kind: str, compiled: bool) -> float:
        seed_everything(args.seed)
        model = space.build(arch, task.num_features, task.num_classes)
        forward = (model.fixed_graph_forward(data.x, data.edge_index) if kind == "fast"
                   else (lambda: model(data.x, data.edge_index)))
        if compiled:
            forward = torch.compile(forward)
        optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
        start = time.perf_counter()
        for _ in range(100):
            model.train()
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(forward()[data.train_mask], data.y[data.train_mask])
            loss.backward()
            optimizer.step()
        return time.perf_counter() - start

    for kind in ("plain", "fast"):
        for compiled in (False, True):
            key = f"{kind}_{'compiled' if compiled else 'eager'}_s"
            try:
                out[key] = run(kind, compiled)
            except Exception as error:  # noqa: BLE001 - record why compile failed
                out[key] = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
            print(f"compile study {key}: {out[key]}", flush=True)
    return out


def search_study(args: argparse.Namespace) -> dict:
    """Architectures per minute of a whole ``metanas search`` (random strategy) per n-jobs."""
    out = {}
    for n_jobs in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            command = [
                sys.executable, "-m", "nas.cli", "search", "--dataset", "cora", "--strategy",
                "random", "--trials", str(args.search_trials), "--storage",
                f"sqlite:///{tmp}/speed.db", "--n-jobs", str(n_jobs), "--seed", str(args.seed),
                "--device", "cpu", "--quiet", "--epochs", str(args.epochs), "--patience",
                str(args.patience),
            ]
            start = time.perf_counter()
            completed = subprocess.run(command, capture_output=True, text=True, check=False)
            seconds = time.perf_counter() - start
        entry = {"seconds": seconds, "trials": args.search_trials, "returncode": completed.returncode,
                 "arch_per_min": 60 * args.search_trials / seconds,
                 "command": " ".join(command[1:]).replace(tmp, "<tmp>")}
        if completed.returncode:
            entry["stderr"] = completed.stderr[-2000:]
        out[f"n_jobs_{n_jobs}"] = entry
        print(f"search n_jobs={n_jobs}: {seconds:.1f}s, {entry['arch_per_min']:.2f} arch/min "
              f"(rc {completed.returncode})", flush=True)
    return out


def summarise(rows: list[dict]) -> dict:
    plain = [r["plain"]["seconds"] for r in rows]
    ours = [r["ours"]["seconds"] for r in rows]
    cpu = {}
    if all("cpu_seconds" in r["plain"] for r in rows):  # process CPU time: robust to shared load
        plain_cpu = statistics.median(r["plain"]["cpu_seconds"] for r in rows)
        ours_cpu = statistics.median(r["ours"]["cpu_seconds"] for r in rows)
        cpu = {"plain_median_cpu_s": plain_cpu, "ours_median_cpu_s": ours_cpu,
               "cpu_speedup_of_medians": plain_cpu / ours_cpu}
    return {
        **cpu,
        "archs": len(rows),
        "plain_median_s": statistics.median(plain), "ours_median_s": statistics.median(ours),
        "speedup_of_medians": statistics.median(plain) / statistics.median(ours),
        "median_speedup": statistics.median(r["speedup"] for r in rows),
        "total_speedup": sum(plain) / sum(ours),
        "plain_mean_test_acc": statistics.mean(r["plain"]["test_acc"] for r in rows),
        "ours_mean_test_acc": statistics.mean(r["ours"]["test_acc"] for r in rows),
        "plain_arch_per_min": 60 / statistics.median(plain),
        "ours_arch_per_min": 60 / statistics.median(ours),
    }


def write_markdown(result: dict, path: Path) -> None:
    lines = [
        "# Training speed: `train_model` vs a plain PyG script (Cora)", "",
        f"- date: {result['date']}", f"- machine: {result['machine']}",
        f"- load average at start: {result['load_start']}, at end: {result['load_end']}",
        f"- command: `{result['command']}`", f"- torch threads: {result['threads']}", "",
    ]
    if "summary" in result:
        lines += _comparison_lines(result)
    _study_lines(result, lines)
    path.write_text("\n".join(lines) + "\n")


def _comparison_lines(result: dict) -> list[str]:
    s = result["summary"]
    lines = [
        "| | plain PyG | ours |", "|---|---|---|",
        f"| median s / architecture | {s['plain_median_s']:.2f} | {s['ours_median_s']:.2f} |",
        f"| architectures / min (1 / median) | {s['plain_arch_per_min']:.1f} | {s['ours_arch_per_min']:.1f} |",
        f"| mean test accuracy | {100 * s['plain_mean_test_acc']:.2f} | {100 * s['ours_mean_test_acc']:.2f} |",
        "", f"Speed-up: {s['speedup_of_medians']:.1f}x (ratio of medians), "
        f"{s['median_speedup']:.1f}x (median of per-architecture ratios), "
        f"{s['total_speedup']:.1f}x (total time), over {s['archs']} architectures."
        + (f" Process CPU time: median {s['plain_median_cpu_s']:.2f} s vs "
           f"{s['ours_median_cpu_s']:.2f} s = {s['cpu_speedup_of_medians']:.1f}x."
           if "cpu_speedup_of_medians" in s else ""), "",
        "| # | architecture | plain s | ours s | speed-up | plain test | ours test |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(result["rows"], 1):
        lines.append(f"| {i} | {r['arch']} | {r['plain']['seconds']:.2f} | {r['ours']['seconds']:.2f} "
                     f"| {r['speedup']:.1f} | {r['plain']['test_acc']:.3f} | {r['ours']['test_acc']:.3f} |")
    return lines


def _study_lines(result: dict, lines: list[str]) -> None:
    if result.get("threads_study"):
        lines += ["", "## Threads (fast path, interleaved)", ""]
        for key, value in result["threads_study"].items():
            lines.append(f"- {key}: median {value['median_s']:.2f} s / architecture")
    if result.get("compile_study"):
        lines += ["", "## torch.compile (100 epochs, incl. compilation)", ""]
        lines += [f"- {k}: {v if isinstance(v, str) else (f'{v:.2f}' if isinstance(v, float) else v)}"
                  for k, v in result["compile_study"].items()]
    if result.get("search_study"):
        lines += ["", "## Whole `metanas search` (random strategy)", ""]
        for key, value in result["search_study"].items():
            lines.append(f"- {key}: {value['trials']} trials in {value['seconds']:.1f} s = "
                         f"{value['arch_per_min']:.2f} arch/min (rc {value['returncode']})")


def merge(args: argparse.Namespace, result: dict, out: Path, save) -> int:  # noqa: ANN001
    """Combine the rows and side studies of several runs (e.g. slices run side by side)."""
    parts = [json.loads(Path(path).read_text()) for path in args.merge]
    rows = sorted((row for part in parts for row in part.get("rows", [])),
                  key=lambda row: row["index"])
    result.update({
        "rows": rows, "summary": summarise(rows), "parts": [
            {key: part[key] for key in ("date", "command", "load_start", "load_end", "threads")}
            for part in parts],
        "load_start": [part["load_start"] for part in parts],
    })
    for part in parts:
        for key in ("threads_study", "compile_study", "search_study"):
            if key in part:
                result[key] = part[key]
    save()
    print(json.dumps(result["summary"], indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=positive_int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=positive_int, default=200)
    parser.add_argument("--patience", type=positive_int, default=50)
    parser.add_argument("--threads", type=positive_int, default=1, help="torch threads for the comparison")
    parser.add_argument("--thread-archs", type=int, default=6, help="0: skip the thread study")
    parser.add_argument("--compile", action="store_true", help="run the torch.compile study")
    parser.add_argument("--search-trials", type=int, default=10, help="0: skip the search study")
    parser.add_argument("--first", type=int, default=0,
                        help="index of the first architecture (to split a run over processes)")
    parser.add_argument("--merge", nargs="*", default=None,
                        help="merge these result .json files (rows and side studies) into --out")
    parser.add_argument("--out", default=str(RESULTS / "train_speed"))
    args = parser.parse_args(argv)

    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        "load_start": [round(v, 2) for v in os.getloadavg()],
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "threads": args.threads,
    }
    torch.set_num_threads(args.threads)
    space, task = GNNSpace(), load_task("cora")
    task.data  # load before timing
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every stage, so a long run leaves its results so far
        result["load_end"] = [round(v, 2) for v in os.getloadavg()]
        out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
        write_markdown(result, out.with_suffix(".md"))

    if args.merge:
        return merge(args, result, out, save)
    if args.archs:
        result["rows"] = compare(
            args, space, task, lambda rows: (result.__setitem__("rows", rows), save()))
        result["summary"] = summarise(result["rows"])
        print(json.dumps(result["summary"], indent=1), flush=True)
        save()
    if args.search_trials:
        result["search_study"] = search_study(args)
        save()
    if args.thread_archs:
        result["threads_study"] = thread_study(args, space, task)
        save()
    if args.compile:
        result["compile_study"] = compile_study(args, space, task)
        save()
    print(f"wrote {out.with_suffix('.json')} and .md", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
