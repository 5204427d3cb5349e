"""Search strategies measured on NAS-Bench-Graph.

Protocol (the benchmark paper's): a search of strategy S on dataset D with seed s evaluates
architectures from D's table until ``budget`` *unique* architectures (by canonical hash) have
been seen; its score is the table's test accuracy of the architecture with the best validation
accuracy among them. A search runs once to the largest budget and is scored at every budget on
the way (a strategy does not know its budget, so the prefix of a 200-architecture search is the
100-architecture search of the same seed). Proposals of a known architecture are answered with
its value again (as ``nas.study`` does) and do not count.

    python experiments/nasbench_graph.py --seeds 20 --budgets 50,100,200 --processes 2

prints mean +- std per (dataset, strategy, budget) and writes
``experiments/results/nasbench_graph.{json,md}`` with the machine, load, command and date.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import json
import multiprocessing
import os
import platform
import shlex
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from experiments._results import named_counts, positive_int, positive_ints, resolved_names  # noqa: E402

DATASETS = ("cora", "citeseer", "pubmed", "cs", "physics", "photo", "computers", "arxiv")
#: datasets strategies may be tuned on; the others are for acceptance only
TUNING = ("cora", "citeseer", "pubmed")
STRATEGIES = ("random", "tpe", "nsga2", "evolution", "reinforce", "predictor", "gp")
#: the issue's reference points at budget 100 (random, regularized evolution, TPE)
REFERENCE = {
    "cora": {"random": (79.89, 0.99), "evolution": (80.22, 1.00), "tpe": (79.70, 0.38)},
    "citeseer": {"random": (69.21, 0.72), "evolution": (69.28, 0.77), "tpe": (69.26, 0.73)},
    "pubmed": {"random": (76.41, 0.60), "evolution": (76.47, 0.53), "tpe": (76.46, 0.42)},
}


def search(strategy: str, dataset: str, seed: int, budgets: tuple[int, ...],
           transfer: int = 0) -> dict[str, Any]:
    """One search; the test accuracy (%) of the best-validation architecture at each budget.

    ``transfer > 0`` warm-starts it (``nas.warm_start``) with the ``transfer`` cells ranked best
    by the tables of the tuning datasets other than ``dataset``; it is then recorded as strategy
    ``<strategy>+transfer<k>``.
    """
    import optuna
    import torch

    from nas.samplers import get_sampler
    from search_spaces.nasbench_graph import NasBenchGraphSpace

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore")
    space = NasBenchGraphSpace(dataset)
    warm = [space.trial_params(arch) for arch in transfer_cells(dataset, transfer)]
    run = table_search(space, get_sampler(strategy, seed, space=space), dataset, budgets, warm=warm)
    label = f"{strategy}+transfer{transfer}" if transfer else strategy
    return {"strategy": label, "dataset": dataset, "seed": seed, "scores": run["scores"],
            "trials": run["trials"], "unique": run["unique"], "seconds": run["seconds"]}


def transfer_source(dataset: str) -> str:
    """The warm-start source of ``dataset``: the tables of the tuning datasets but its own."""
    return "nasbench-graph:" + ",".join(d for d in TUNING if d != dataset)


@functools.lru_cache(maxsize=None)
def transfer_cells(dataset: str, k: int) -> tuple[Any, ...]:
    if k == 0:
        return ()
    from nas.warm_start import warm_start_architectures
    from search_spaces.nasbench_graph import NasBenchGraphSpace

    return tuple(warm_start_architectures(
        transfer_source(dataset), NasBenchGraphSpace(dataset), k, dataset=dataset))


def table_search(space: Any, sampler: Any, dataset: str, budgets: tuple[int, ...],
                 query: Any = None, warm: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The protocol's ask-and-tell loop (see the module docstring) with any optuna sampler.

    Runs until ``max(budgets)`` unique architectures were looked up in ``dataset``'s table
    (``query(arch, dataset)``, by default the table evaluator's); each trial records its
    ``arch_hash`` as a real search's trials do. ``warm``: trial parameters queued before the
    sampler proposes anything (a warm start, see ``nas.warm_start``); they count as lookups. Returns the test accuracy (%) of the
    best-validation architecture at each budget (``scores``), its validation and test accuracy
    (fractions) at the largest budget, trials asked, unique architectures and seconds.
    """
    import optuna

    if query is None:
        from nas.evaluators._table import query
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for params in warm or ():
        study.enqueue_trial(params)
    seen: dict[str, float] = {}
    best_val, best_test, scores = -1.0, float("nan"), {}
    asked, start = 0, time.perf_counter()
    while len(seen) < max(budgets) and asked < 20 * max(budgets):
        asked += 1
        trial = study.ask()
        try:
            arch = space.suggest(trial)
        except optuna.TrialPruned:  # the all-skip cell, which the benchmark leaves out
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        key = arch.arch_hash
        trial.set_user_attr("arch_hash", key)
        if key not in seen:
            row = query(arch, dataset)
            seen[key] = row.val_acc
            if row.val_acc > best_val:  # ties: the first found stays
                best_val, best_test = row.val_acc, row.test_acc
            if len(seen) in budgets:
                scores[len(seen)] = 100 * best_test
        study.tell(trial, seen[key])
    run = {"scores": scores, "best_val": best_val, "test_of_best_val": best_test,
           "trials": asked, "unique": len(seen), "seconds": time.perf_counter() - start}
    screened = screening(study)
    return {**run, "screened": screened} if screened else run


def screening(study: Any) -> dict[str, int] | None:
    """How a pre-screening sampler chose (``None``: no trial was pre-screened): trials screened,
    trials where a candidate other than the strategy's own proposal was evaluated, and (rule
    veto) trials where every candidate was vetoed."""
    import json

    from nas.samplers._prescreen import PRESCREEN_ATTR

    records = [json.loads(t.system_attrs[PRESCREEN_ATTR]) for t in study.trials
               if PRESCREEN_ATTR in t.system_attrs]
    if not records:
        return None
    return {"trials": len(records), "replaced": sum(r["chosen"] > 0 for r in records),
            "all_vetoed": sum(bool(r.get("all_vetoed")) for r in records)}


def headroom(datasets: list[str], ranks: tuple[int, ...] = (1, 5, 20, 100, 262)) -> dict[str, Any]:
    """What a search can reach at best: the table's mean test accuracy (%) of the ``k``
    architectures with the best validation accuracy, for each ``k`` of ``ranks`` (262 = the top
    1% of the 26,206 cells), and the best test accuracy in the table. A search scores the test
    accuracy of the best-validation architecture it found, so its mean over seeds lies near the
    row of the validation rank it typically reaches."""
    from nas.evaluators._table import load_table

    out: dict[str, Any] = {}
    for dataset in datasets:
        rows = sorted(load_table(dataset).values(), key=lambda r: -r.val_acc)
        out[dataset] = {
            **{f"top{k}": round(100 * statistics.mean(r.test_acc for r in rows[:k]), 2) for k in ranks},
            "best_test": round(100 * max(r.test_acc for r in rows), 2), "cells": len(rows),
        }
    return out


def headroom_markdown(table: dict[str, Any], meta: dict[str, Any]) -> str:
    ranks = [k for k in next(iter(table.values())) if k.startswith("top")]
    lines = [
        "# NAS-Bench-Graph headroom: test accuracy of the top validation ranks", "",
        "Mean test accuracy (%) of the k cells with the best validation accuracy in each table "
        "(no search; what a search that found exactly those cells would score on average).", "",
        f"- command: `{meta['command']}`", f"- date: {meta['date']}; machine: {meta['machine']}", "",
        "| dataset | " + " | ".join(f"top {k[3:]} by val" for k in ranks) + " | best test in table |",
        "|---|" + "---|" * (len(ranks) + 1),
    ]
    for dataset, row in table.items():
        lines.append(f"| {dataset} | " + " | ".join(f"{row[k]:.2f}" for k in ranks)
                     + f" | {row['best_test']:.2f} |")
    return "\n".join(lines)


def _search(job: tuple[str, str, int, tuple[int, ...], int]) -> dict[str, Any]:
    return search(*job)


def summarise(runs: list[dict[str, Any]], budgets: tuple[int, ...]) -> dict[str, Any]:
    """(dataset, strategy, budget) -> mean, std, n over seeds."""
    table: dict[str, Any] = {}
    for run in runs:
        for budget in budgets:
            value = run["scores"].get(budget, run["scores"].get(str(budget)))
            if value is None:
                continue
            cell = table.setdefault(run["dataset"], {}).setdefault(run["strategy"], {})
            cell.setdefault(str(budget), []).append(value)
    for strategies in table.values():
        for budgets_ in strategies.values():
            for budget, values in budgets_.items():
                budgets_[budget] = {
                    "mean": round(statistics.mean(values), 2),
                    "std": round(statistics.pstdev(values), 2), "n": len(values),
                }
    return table


def markdown(table: dict[str, Any], budgets: tuple[int, ...], meta: dict[str, Any]) -> str:
    lines = [
        "# Search strategies on NAS-Bench-Graph",
        "",
        "Test accuracy (%) of the architecture with the best validation accuracy among the first "
        "N unique architectures a strategy evaluated; mean +- std over seeds (n = seeds). "
        f"Strategies were tuned on {', '.join(TUNING)} only.",
        "",
        *([
            f"- merged from runs (later ones replace earlier runs of the same strategy, dataset "
            f"and seed) on {meta['machine']}, {meta['cpus']} CPUs:",
            *(f"  - `{part['command']}`: {part['date']}, load average at start {part['load']}, "
              f"wall time {part['wall_seconds']:.0f} s" for part in meta["parts"]),
        ] if meta.get("parts") else [
            f"- command: `{meta['command']}`",
            f"- date: {meta['date']}; machine: {meta['machine']}, {meta['cpus']} CPUs; "
            f"load average at start: {meta['load']}; wall time {meta['wall_seconds']:.0f} s",
        ]),
        *([f"- PARTIAL: {meta['partial']}"] if meta.get("partial") else []),
        "",
    ]
    for dataset, strategies in table.items():
        lines += [f"## {dataset}", "", "| strategy | " + " | ".join(f"@{b}" for b in budgets) + " |",
                  "|---|" + "---|" * len(budgets)]
        for strategy, cells in strategies.items():
            row = [
                f"{cells[str(b)]['mean']:.2f} +- {cells[str(b)]['std']:.2f} (n={cells[str(b)]['n']})"
                if str(b) in cells else "-" for b in budgets
            ]
            lines.append(f"| {strategy} | " + " | ".join(row) + " |")
        reference = REFERENCE.get(dataset)
        if reference:
            refs = ", ".join(f"{s} {m:.2f} +- {d:.2f}" for s, (m, d) in reference.items())
            lines.append(f"\nReference @100 (issue): {refs}")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from nas.samplers import strategy_name
    from search_spaces.nasbench_graph import benchmark_dataset

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--strategies", type=resolved_names(strategy_name), default=",".join(STRATEGIES))
    parser.add_argument("--datasets", type=resolved_names(benchmark_dataset), default=",".join(DATASETS))
    parser.add_argument("--seeds", type=positive_int, default=20)
    parser.add_argument("--budgets", type=positive_ints, default="50,100,200")
    parser.add_argument("--processes", type=positive_int, default=2)
    parser.add_argument("--seeds-for", type=named_counts(strategy_name), default={},
                        help="fewer seeds for slow strategies, e.g. gp=5")
    parser.add_argument("--max-budget-for", type=named_counts(strategy_name), default={},
                        help="smaller largest budget, e.g. gp=100")
    parser.add_argument("--out", default=str(REPO / "experiments" / "results" / "nasbench_graph"))
    parser.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                        help="instead of searching, merge result files into --out: a later "
                             "file's (strategy, dataset, seed) runs replace an earlier one's")
    parser.add_argument("--transfer", type=int, default=0, metavar="K",
                        help="warm-start every search with the K cells ranked best by the other "
                             "tuning datasets' tables (strategy recorded as <name>+transfer<K>)")
    parser.add_argument("--headroom", action="store_true",
                        help="only tabulate the test accuracy of the top validation ranks")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    strategies, datasets = args.strategies, args.datasets
    budgets = tuple(sorted(args.budgets))
    fewer, capped = args.seeds_for, args.max_budget_for
    for strategy, cap in capped.items():
        if cap < budgets[0]:  # the strategy's runs had no budget: a traceback in the worker
            parser.error(f"--max-budget-for {strategy}={cap} is below the smallest of --budgets "
                         f"{','.join(map(str, budgets))}")
    jobs = [
        (s, d, seed, tuple(b for b in budgets if b <= capped.get(s, max(budgets))), args.transfer)
        for seed in range(args.seeds) for d in datasets for s in strategies
        if seed < fewer.get(s, args.seeds)
    ]
    meta = {
        "command": " ".join(["python experiments/nasbench_graph.py", *map(shlex.quote, argv)]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.platform(), "cpus": os.cpu_count(),
        "load": [round(x, 2) for x in os.getloadavg()], "processes": args.processes,
    }
    if args.merge:
        return merge(args.merge, budgets, meta, args.out)
    if args.headroom:
        text = headroom_markdown(table := headroom(datasets), meta)
        path = Path(args.out + "_headroom")
        path.with_suffix(".json").write_text(json.dumps({"meta": meta, "headroom": table}, indent=1) + "\n")
        path.with_suffix(".md").write_text(text + "\n")
        print(text)
        return 0
    jobs.sort(key=lambda job: (job[0] in fewer, job[2]))  # reduced-seed (slow) strategies last
    start, runs = time.perf_counter(), []
    pool = multiprocessing.get_context("spawn").Pool(args.processes) if args.processes > 1 else None
    results = pool.imap_unordered(_search, jobs) if pool else map(_search, jobs)
    with pool or contextlib.nullcontext():
        for i, run in enumerate(results, 1):
            runs.append(run)
            print(f"[{i}/{len(jobs)}] {run['strategy']:>9} {run['dataset']:>9} seed {run['seed']:>2} "
                  f"{run['scores']} ({run['seconds']:.1f}s)", file=sys.stderr, flush=True)
            if i % 10 == 0:  # a partial result survives an interrupted benchmark
                write(runs, budgets, {**meta, "partial": f"{i} of {len(jobs)} runs"}, start, args.out)
    print(write(runs, budgets, meta, start, args.out))
    return 0


def merge(paths: list[str], budgets: tuple[int, ...], meta: dict[str, Any], out: str) -> int:
    """Combine runs of several result files (later ones win) and rewrite the tables."""
    runs: dict[tuple[str, str, int], dict[str, Any]] = {}
    parts = []
    for path in paths:
        document = json.loads(Path(path).read_text())
        parts.append(document["meta"])
        for run in document["runs"]:
            runs[(run["strategy"], run["dataset"], run["seed"])] = run
    meta = {**meta, "command": " ; ".join(part["command"] for part in parts) + f" ; {meta['command']}",
            "load": [part["load"] for part in parts], "parts": parts}
    print(write(list(runs.values()), budgets, meta, time.perf_counter(), out))
    return 0


def write(runs: list[dict[str, Any]], budgets: tuple[int, ...], meta: dict[str, Any], start: float,
          out: str) -> str:
    """Write the JSON and markdown results; returns the markdown."""
    meta = {**meta, "wall_seconds": time.perf_counter() - start}
    table = summarise(runs, budgets)
    text = markdown(table, budgets, meta)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps({"meta": meta, "summary": table, "runs": runs}, indent=1) + "\n")
    path.with_suffix(".md").write_text(text + "\n")
    return text


if __name__ == "__main__":
    sys.exit(main())
