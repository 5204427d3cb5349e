"""Do our NAS-Bench-Graph models match the benchmark's? Train table architectures, rank-correlate.

Architectures are drawn with a fixed seed, one per quantile stratum of the table's test
accuracy (so they spread over the table's range the way the table itself is spread), trained
with the one training loop (``nas.train.train_model``) under the benchmark's hyper-parameters
for the dataset (optimizer, learning rate, weight decay, dropout, widths; the best-validation
epoch is kept, no early stopping), and our test accuracy is compared with the table's ``perf``
by Spearman and Kendall rank correlation (validation accuracy with ``valid_perf`` likewise).

Writes ``experiments/results/nasbench_graph_fidelity.{json,md}``; partial results are written
after every architecture, so an interrupted run keeps what it measured.

Usage::

    METANAS_DATA=/work/shared/datasets METANAS_CACHE=/tmp/$USER-cache \\
        python -m experiments.nasbench_graph_fidelity --archs 30 --epochs 100
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from experiments._results import positive_int

RESULTS = Path(__file__).resolve().parent / "results"
NAME = "nasbench_graph_fidelity"
#: the benchmark's tuning datasets (the only ones we may tune on)
TUNING_DATASETS = ("cora", "citeseer", "pubmed")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="cora", choices=TUNING_DATASETS)
    p.add_argument("--archs", type=positive_int, default=30, help="architectures (one per stratum)")
    p.add_argument("--seed", type=int, default=0, help="architecture choice and training seed")
    p.add_argument("--train-seed", type=int, default=None,
                   help="training seed when it differs from --seed (same architectures)")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="training epochs (default: the benchmark's for the dataset)")
    p.add_argument("--eval-every", type=positive_int, default=1, help="epochs between validations")
    p.add_argument("--select", choices=("val_acc", "val_loss"), default="val_acc",
                   help="which validated epoch is kept: highest validation accuracy, or lowest "
                        "validation loss (what NAS-Bench-Graph's published training code reports)")
    p.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads per worker")
    p.add_argument("--workers", type=positive_int, default=1, help="architectures trained at once")
    p.add_argument("--indices", default=None,
                   help="train only these chosen architectures: START:STOP or I,J,K")
    p.add_argument("--divergence", choices=("drop", "best"), default="best",
                   help="a run whose loss becomes NaN: left out (drop) or recorded at its "
                        "best validation epoch before it (best: what a benchmark that trains on "
                        "through NaN and keeps its best validation epoch records)")
    p.add_argument("--merge", type=Path, nargs="+", default=None,
                   help="instead of training, merge the JSON results of split runs into --out")
    p.add_argument("--seed-mean", type=Path, nargs="+", default=None,
                   help="instead of training, join complete runs of different --train-seed "
                        "(same architectures) into --out: per architecture the mean over seeds")
    p.add_argument("--out", type=Path, default=RESULTS)
    return p.parse_args(argv)


def choose_architectures(dataset: str, n: int, seed: int) -> list[Any]:
    """One architecture per equal-count stratum of the table's test accuracy, drawn by ``seed``."""
    from nas.evaluators._table import query
    from search_spaces.nasbench_graph import NasBenchGraphSpace

    archs = NasBenchGraphSpace().all_architectures()
    archs.sort(key=lambda a: (query(a, dataset).test_acc, a.bench_hash))
    rng = random.Random(seed)
    bounds = [round(i * len(archs) / n) for i in range(n + 1)]
    chosen = [archs[rng.randrange(lo, hi)] for lo, hi in zip(bounds, bounds[1:])]
    rng.shuffle(chosen)  # train in random order: an interrupted run still spans the range
    return chosen


def train_one(arch: Any, dataset: str, task: Any, epochs: int, eval_every: int, seed: int,
              keep_best_on_divergence: bool = False, select: str = "val_acc") -> dict:
    from nas.evaluators._table import query
    from nas.train import (
        DivergedError, TrainConfig, count_parameters, seed_everything, train_model,
    )
    from search_spaces.nasbench_graph import NasBenchGraphSpace

    space = NasBenchGraphSpace(dataset)
    seed_everything(seed)
    model = space.build(arch, task.num_features, task.num_classes)
    config = TrainConfig(
        **space.training_config(arch), epochs=epochs, patience=0, seed=seed, device="cpu",
        eval_every=eval_every, keep_best_on_divergence=keep_best_on_divergence, select=select,
    )
    row = query(arch, dataset)
    try:
        result = train_model(model, task, config)
    except DivergedError as error:  # recorded, left out of the correlations
        return {
            "arch": arch.to_dict(), "short": arch.short(), "bench_hash": arch.bench_hash,
            "diverged": str(error), "table_val_acc": row.val_acc, "table_test_acc": row.test_acc,
        }
    return {
        "arch": arch.to_dict(), "short": arch.short(), "bench_hash": arch.bench_hash,
        "val_acc": result.metrics["val_acc"], "test_acc": result.metrics["test_acc"],
        "table_val_acc": row.val_acc, "table_test_acc": row.test_acc,
        "best_epoch": result.best_epoch, "seconds": round(result.seconds, 1),
        "num_params": count_parameters(model), "table_num_params": row.num_params,
        **({"diverged_at": result.diverged_at} if result.diverged_at is not None else {}),
    }


def correlations(rows: list[dict]) -> dict[str, float]:
    from scipy import stats

    rows = [r for r in rows if "diverged" not in r]
    if len(rows) < 3:
        return {}
    ours_t, table_t = [r["test_acc"] for r in rows], [r["table_test_acc"] for r in rows]
    ours_v, table_v = [r["val_acc"] for r in rows], [r["table_val_acc"] for r in rows]
    return {
        "spearman_test": float(stats.spearmanr(ours_t, table_t).statistic),
        "kendall_test": float(stats.kendalltau(ours_t, table_t).statistic),
        "spearman_val": float(stats.spearmanr(ours_v, table_v).statistic),
        "kendall_val": float(stats.kendalltau(ours_v, table_v).statistic),
        "mean_abs_test_gap": sum(abs(a - b) for a, b in zip(ours_t, table_t)) / len(rows),
    }


def command() -> str:
    """The command line as typed (``python -m experiments...`` when run as a module)."""
    env = " ".join(
        f"{key}={shlex.quote(os.environ[key])}" for key in ("METANAS_DATA",) if key in os.environ
    )
    spec = globals().get("__spec__")
    entry = ["python", "-m", spec.name] if spec is not None else ["python", sys.argv[0]]
    return " ".join([env, *entry, *map(shlex.quote, sys.argv[1:])]).strip()


def header(args: argparse.Namespace, epochs: int) -> dict[str, Any]:
    from search_spaces.nasbench_graph import BENCHMARK_SETTINGS

    return {
        "experiment": NAME,
        "command": command(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
        "loadavg_start": list(os.getloadavg()),
        "dataset": args.dataset, "seed": args.seed, "epochs": epochs,
        "train_seed": args.seed if args.train_seed is None else args.train_seed,
        "divergence": args.divergence,
        "eval_every": args.eval_every, "select": args.select, "torch_threads": args.threads, "workers": args.workers,
        "setting": vars(BENCHMARK_SETTINGS[args.dataset]) | {"epochs_used": epochs},
    }


def write(out: Path, head: dict, rows: list[dict], done: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    record = {**head, "complete": done, "n_archs": len(rows), **correlations(rows), "rows": rows}
    (out / f"{NAME}.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / f"{NAME}.md").write_text(markdown(record))


def markdown(record: dict) -> str:
    lines = [
        f"# NAS-Bench-Graph fidelity on {record['dataset']}", "",
        f"- command: `{record['command']}`",
        f"- date: {record['date']}; machine: {record['machine']['platform']}, "
        f"{record['machine']['cpu_count']} CPUs; load average at start: "
        f"{', '.join(f'{x:.2f}' for x in record['loadavg_start'])}",
        f"- setting: {record['setting']}",
        f"- architectures: {record['n_archs']} (seed {record['seed']}, one per quantile stratum "
        f"of the table's test accuracy); complete: {record['complete']}",
        f"- ours: {_seeds_text(record)}, {record['epochs']} epochs, validation "
        f"every {record['eval_every']}, {_selection_text(record)} kept; a run whose loss became NaN: "
        f"{_divergence_text(record)}; the table: the mean of three "
        f"seeds trained {record['setting']['epochs']} epochs",
        "",
    ]
    if "spearman_test" in record:
        lines += [
            "| ours vs table | Spearman | Kendall |", "|---|---|---|",
            f"| test accuracy | {record['spearman_test']:.3f} | {record['kendall_test']:.3f} |",
            f"| validation accuracy | {record['spearman_val']:.3f} | {record['kendall_val']:.3f} |",
            "", f"Mean |our test - table test|: {record['mean_abs_test_gap']:.4f}", "",
        ]
    lines += [
        "| # | architecture | table val | table test | our val | our test | best epoch | s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(record["rows"]):
        if "diverged" in r:
            lines.append(f"| {i} | {r['short']} | {r['table_val_acc']:.4f} | "
                         f"{r['table_test_acc']:.4f} | diverged | {r['diverged']} | | |")
            continue
        test = f"{r['test_acc']:.4f}"
        if "per_seed" in r:  # each seed's test accuracy (x: diverged before any validation)
            test += " (" + " / ".join(f"{v['test_acc']:.3f}" if "test_acc" in v else "x"
                                      for v in r["per_seed"].values()) + ")"
        epoch = f"{r['best_epoch']}" + (f" (NaN at {r['diverged_at']})" if "diverged_at" in r else "")
        lines.append(
            f"| {i} | {r['short']} | {r['table_val_acc']:.4f} | {r['table_test_acc']:.4f} | "
            f"{r['val_acc']:.4f} | {test} | {epoch} | {r['seconds']} |"
        )
    return "\n".join(lines) + "\n"


def _selection_text(record: dict) -> str:
    """Which epoch a run kept (records written before ``--select`` kept the best accuracy)."""
    if record.get("select", "val_acc") == "val_loss":
        return "the epoch of lowest validation loss"
    return "the best-validation-accuracy epoch"


def _seeds_text(record: dict) -> str:
    if "train_seeds" in record:
        return f"the mean over training seeds {record['train_seeds']} (seeds that diverged left out)"
    return f"one training seed ({record.get('train_seed', record['seed'])})"


def _divergence_text(record: dict) -> str:
    modes = record.get("divergence", "drop")
    modes = set(modes) if isinstance(modes, list) else {modes}
    text = {"drop": "left out", "best": "recorded at its best validation epoch before the NaN"}
    return " / ".join(text[m] for m in sorted(modes))


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _train_job(job: tuple[int, dict, str, int, int, int, bool, str]) -> tuple[int, dict]:
    from nas.tasks import load_task
    from search_spaces.nasbench_graph import NasBenchGraphArchitecture

    index, spec, dataset, epochs, eval_every, seed, keep_best, select = job
    arch = NasBenchGraphArchitecture.from_dict(spec)
    return index, train_one(arch, dataset, load_task(dataset), epochs, eval_every, seed, keep_best,
                            select)


#: what runs joined by --merge or --seed-mean must share
JOINED_SETTINGS = ("dataset", "seed", "epochs", "eval_every", "select")


def _joined_settings(record: dict) -> tuple:
    """A run's :data:`JOINED_SETTINGS` (records written before ``--select`` kept ``val_acc``)."""
    return tuple(record.get(k, "val_acc") if k == "select" else record[k] for k in JOINED_SETTINGS)


def merge(paths: list[Path], out: Path) -> int:
    """Join split runs (same dataset, seed and epochs): one row per architecture, ordered by the
    table's test accuracy."""
    records = [json.loads(path.read_text()) for path in paths]
    if any(_joined_settings(r) != _joined_settings(records[0]) for r in records):
        raise ValueError(f"cannot merge runs with different {JOINED_SETTINGS}")
    rows = {row["bench_hash"]: row for record in records for row in record["rows"]}
    head = {k: v for k, v in records[0].items() if k not in ("rows", "complete", "n_archs")}
    head = {k: v for k, v in head.items() if not k.startswith(("spearman", "kendall", "mean_"))}
    head["parts"] = [
        {"command": r["command"], "date": r["date"], "loadavg_start": r["loadavg_start"],
         "rows": len(r["rows"])} for r in records
    ]
    head["command"] = " && ".join(r["command"] for r in records) + " && " + command()
    head["divergence"] = _divergence_modes(records)
    ordered = sorted(rows.values(), key=lambda row: (row["table_test_acc"], row["bench_hash"]))
    write(out, head, ordered, done=True)
    print(markdown(json.loads((out / f"{NAME}.json").read_text())))
    return 0


def _divergence_modes(records: list[dict]) -> list[str]:
    """How the joined runs treated diverged training (a run's own record may be a list)."""
    modes: set[str] = set()
    for record in records:
        mode = record.get("divergence", "drop")
        modes.update(mode if isinstance(mode, list) else [mode])
    return sorted(modes)


def seed_mean(paths: list[Path], out: Path) -> int:
    """Join complete runs that trained the same architectures with different training seeds:
    one row per architecture whose ``val_acc``/``test_acc`` are the means over the seeds that
    did not diverge (the table's values are means of three seeds too); ``per_seed`` keeps each."""
    import statistics

    records = [json.loads(path.read_text()) for path in paths]
    if any(_joined_settings(r) != _joined_settings(records[0]) for r in records):
        raise ValueError(f"cannot join runs with different {JOINED_SETTINGS}")
    seeds = [r.get("train_seed", r["seed"]) for r in records]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"each run must have its own training seed, got {seeds}")
    by_arch: dict[int, dict[int, dict]] = {}
    for seed, record in zip(seeds, records):
        for row in record["rows"]:
            by_arch.setdefault(row["bench_hash"], {})[seed] = row
    rows = []
    for runs in by_arch.values():
        first = next(iter(runs.values()))
        kept = {seed: row for seed, row in runs.items() if "diverged" not in row}
        row = {k: first[k] for k in ("arch", "short", "bench_hash", "table_val_acc",
                                     "table_test_acc")}
        row["per_seed"] = {
            str(seed): ({"diverged": r["diverged"]} if "diverged" in r else
                        {k: r[k] for k in ("val_acc", "test_acc", "best_epoch", "seconds")}
                        | ({"diverged_at": r["diverged_at"]} if "diverged_at" in r else {}))
            for seed, r in sorted(runs.items())
        }
        if not kept:
            row["diverged"] = "every seed diverged"
        else:
            row["val_acc"] = statistics.mean(r["val_acc"] for r in kept.values())
            row["test_acc"] = statistics.mean(r["test_acc"] for r in kept.values())
            row["best_epoch"] = "/".join(str(r["best_epoch"]) for r in kept.values())
            row["seconds"] = round(sum(r["seconds"] for r in kept.values()), 1)
        rows.append(row)
    head = {k: v for k, v in records[0].items() if k not in ("rows", "complete", "n_archs")}
    head = {k: v for k, v in head.items() if not k.startswith(("spearman", "kendall", "mean_"))}
    head.update(train_seeds=seeds, divergence=_divergence_modes(records),
                parts=[{"command": r["command"], "date": r["date"],
                        "loadavg_start": r["loadavg_start"], "rows": len(r["rows"])}
                       for r in records])
    head["command"] = " && ".join(r["command"] for r in records) + " && " + command()
    ordered = sorted(rows, key=lambda row: (row["table_test_acc"], row["bench_hash"]))
    write(out, head, ordered, done=all(r["complete"] for r in records))
    print(markdown(json.loads((out / f"{NAME}.json").read_text())))
    return 0


def main(argv: list[str] | None = None) -> int:
    import multiprocessing

    from search_spaces.nasbench_graph import BENCHMARK_SETTINGS

    args = parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out)
    if args.seed_mean:
        return seed_mean(args.seed_mean, args.out)
    epochs = args.epochs or BENCHMARK_SETTINGS[args.dataset].epochs
    head = header(args, epochs)
    archs = choose_architectures(args.dataset, args.archs, args.seed)
    wanted = set(range(len(archs)))
    if args.indices and ":" in args.indices:
        start_index, stop_index = (int(i) for i in args.indices.split(":"))
        wanted = set(range(start_index, stop_index))
    elif args.indices:
        wanted = {int(i) for i in args.indices.split(",")}
    jobs = [
        (i, arch.to_dict(), args.dataset, epochs, args.eval_every,
         args.seed if args.train_seed is None else args.train_seed, args.divergence == "best",
         args.select)
        for i, arch in enumerate(archs) if i in wanted
    ]
    done: dict[int, dict] = {}
    start = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with context.Pool(args.workers, initializer=_worker_init, initargs=(args.threads,)) as pool:
        for index, r in pool.imap_unordered(_train_job, jobs):
            done[index] = {"index": index, **r}
            print(f"[{len(done)}/{len(jobs)}] #{index} {r['short']:<40} "
                  f"table test {r['table_test_acc']:.4f} ours {r.get('test_acc', 'diverged')} "
                  f"({time.perf_counter() - start:.0f}s total)", flush=True)
            write(args.out, head, [done[i] for i in sorted(done)], done=False)
    write(args.out, head, [done[i] for i in sorted(done)], done=True)
    print(markdown(json.loads((args.out / f"{NAME}.json").read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
