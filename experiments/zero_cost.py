"""How well do zero-cost proxies rank architectures, and does pre-screening help a search?

Parts (run separately; each caches what it computed under ``experiments/results/zero_cost_cache/``
so an interrupted run resumes, and ``report`` turns the caches into the tables):

- ``bench``: every proxy of :data:`nas.proxies.PROXIES` on NAS-Bench-Graph architectures (a
  seeded uniform sample of the benchmark's 26,206 cells) built as real models
  (``NasBenchGraphSpace.build``) on the real Cora / CiteSeer data, against the benchmark table's
  test accuracy; seconds per architecture and proxy.
- ``trained``: every proxy on GNN-space architectures (seeded random sample) on Cora and MUTAG,
  against our own test accuracy after training with ``nas.train.train_model`` on a small budget.
- ``prescreen``: search quality at 100 unique queries on NAS-Bench-Graph (table lookups, the
  protocol of ``experiments/nasbench_graph.py``), a strategy with and without
  :class:`nas.samplers.PrescreenSampler`, 20 seeds, on cora, citeseer, pubmed. The proxy is
  computed on the real data of ``--proxy-dataset`` (default: the searched dataset). PubMed's
  raw data is not available offline, so its runs use ``--proxy-dataset cora``: a STAND-IN (the
  proxy ranking of Cora-shaped models transferred to a search on PubMed's table), labelled
  ``_on_cora`` in the results. ``--rule veto`` screens with the veto rule of
  :class:`~nas.samplers.PrescreenSampler` instead of taking the best proxy of ``--k``: the
  strategy's own proposal is kept unless its proxy is below the ``--veto-quantile`` quantile of
  a fixed random sample of the space (runs named ``..._k<K>_veto<percent>``).
- ``report``: Spearman correlations and the search results -> ``zero_cost.{json,md}``.

Example::

    METANAS_DATA=/work/shared/datasets METANAS_CACHE=/tmp/zc python experiments/zero_cost.py \
        bench --dataset cora --archs 500 --max-minutes 40
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from experiments._results import positive_int, resolved_name  # noqa: E402
from nas.proxies import PROXIES, proxy_batches, proxy_name  # noqa: E402
from nas.samplers import strategy_name  # noqa: E402
from nas.samplers._prescreen import check_veto_quantile, resolve_rule  # noqa: E402
from nas.tasks import DATASETS, TABLE_ONLY, load_task, resolve_dataset  # noqa: E402
from nas.train import seed_everything  # noqa: E402
from search_spaces import get_space  # noqa: E402
from search_spaces.nasbench_graph import BENCHMARK_SETTINGS, benchmark_dataset  # noqa: E402

RESULTS = REPO / "experiments" / "results"
CACHE = RESULTS / "zero_cost_cache"
NOTES = RESULTS / "zero_cost_notes.md"
#: proxies in report order; params is the baseline
PROXY_ORDER = ("params", "grad_norm", "snip", "synflow", "naswot", "gradsign")
#: NAS-Bench-Graph's datasets whose data this project loads, as node tasks: bench builds the
#: benchmark's cells on that data, prescreen computes its proxy on it (the benchmark's "proteins"
#: is ogbn-proteins, not the TU graph dataset of nas.tasks; "arxiv" does not load here)
LOADED_BENCHMARK_DATASETS = [name for name in BENCHMARK_SETTINGS if name in DATASETS
                             and DATASETS[name].level == "node" and DATASETS[name].family not in TABLE_ONLY]


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([sys.executable.split("/")[-1], *sys.argv]),
    }


def load_cache(name: str) -> dict[str, Any]:
    path = CACHE / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {"runs": [], "archs": {}}


def save_cache(name: str, cache: dict[str, Any]) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = CACHE / f"{name}.json.tmp"
    tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
    tmp.replace(CACHE / f"{name}.json")


def score_all(model_fn, batches, proxies, seed: int = 0) -> dict[str, float]:
    """Every proxy of a freshly built (seeded) model: ``{name: value, name_s: seconds}``.

    grad_norm and snip are both read off the same loss gradients (same seed, same model, same
    dropout masks): when both are asked, the gradients are computed once and each proxy is
    charged the full time of computing it alone (gradients + its own reduction).
    """
    from nas.proxies import grad_norm_of, loss_gradients, snip_of

    row: dict[str, float] = {}
    pair = {"grad_norm", "snip"} <= set(proxies)
    grads, grad_seconds = None, 0.0  # the pair's gradients and their seconds
    for name in proxies:
        shared = pair and name in ("grad_norm", "snip")
        if not (shared and grads is not None):
            seed_everything(seed)
            model = model_fn().train()
        start = time.perf_counter()
        if not shared:
            row[name] = float(PROXIES[name](model, batches))
        else:
            if grads is None:
                grads = loss_gradients(model, batches)
                grad_seconds = time.perf_counter() - start
                start = time.perf_counter()
            row[name] = grad_norm_of(grads) if name == "grad_norm" else snip_of(grads)
        row[f"{name}_s"] = round(time.perf_counter() - start + (grad_seconds if shared else 0.0), 4)
    return row


# ----------------------------------------------------------------------------------------------
# bench: NAS-Bench-Graph cells as real models, against the table


def run_bench(args: argparse.Namespace) -> None:
    from nas.evaluators._table import query

    space = get_space("nasbench-graph")
    task = load_task(args.dataset)
    batches = proxy_batches(task)
    pool = space.all_architectures()
    archs = random.Random(args.seed).sample(pool, args.archs)
    name = f"bench_{task.name}"
    cache = load_cache(name)
    cache["runs"].append(machine())
    deadline = time.monotonic() + 60 * args.max_minutes
    proxies = [p for p in PROXY_ORDER if p not in args.skip]
    for i, arch in enumerate(archs):
        if time.monotonic() > deadline:
            print(f"time budget used after {i} architectures", flush=True)
            break
        entry = cache["archs"].setdefault(arch.arch_hash, {"arch": arch.to_dict(), "order": i})
        if args.recompute and not entry.get("recomputed", {}).keys() >= set(args.recompute):
            for proxy in args.recompute:  # cached by an older definition: score again, once
                entry.pop(proxy, None)
                entry.pop(f"{proxy}_s", None)
            entry["recomputed"] = {**entry.get("recomputed", {}),
                                   **{p: cache["runs"][-1]["date"] for p in args.recompute}}
        todo = [p for p in proxies if p not in entry]
        if not todo:
            continue
        row = query(arch, task.name)
        entry.update(test_acc=row.test_acc, val_acc=row.val_acc, num_params=row.num_params)
        entry.update(score_all(
            lambda: space.build(arch, task.num_features, task.num_classes, "node"), batches, todo,
        ))
        if i % 5 == 0:
            save_cache(name, cache)
            print(f"{task.name} {i + 1}/{len(archs)} {arch.short()} "
                  f"{ {p: round(entry[p], 3) for p in proxies} }", flush=True)
    save_cache(name, cache)


# ----------------------------------------------------------------------------------------------
# trained: GNN-space architectures trained by us


def run_trained(args: argparse.Namespace) -> None:
    from nas.train import TrainConfig, train_model

    space = get_space("gnn")
    task = load_task(args.dataset)
    batches = proxy_batches(task)
    name = f"trained_{task.name}"
    cache = load_cache(name)
    # entries of the first runs did not record their training budget: the runs' (all alike)
    legacy_budget = next(({"epochs": r["epochs"], "patience": r["patience"]} for r in cache["runs"]
                          if "epochs" in r), None)
    cache["runs"].append({**machine(), "epochs": args.epochs, "patience": args.patience})
    deadline = time.monotonic() + 60 * args.max_minutes
    rng = random.Random(args.seed)
    archs = [space.sample(rng) for _ in range(args.archs)]
    proxies = [p for p in PROXY_ORDER if p not in args.skip]
    for i, arch in enumerate(archs):
        if time.monotonic() > deadline:
            print(f"time budget used after {i} architectures", flush=True)
            break
        entry = cache["archs"].setdefault(arch.arch_hash, {"arch": arch.to_dict(), "order": i})

        def build():
            return space.build(arch, task.num_features, task.num_classes, task.level)

        todo = [p for p in proxies if p not in entry]
        entry.update(score_all(build, batches, todo))
        budget = {"epochs": args.epochs, "patience": args.patience}
        if entry.get("budget", legacy_budget) != budget:  # trained on another budget: again
            for key in ("test_acc", "val_acc", "train_s", "epochs", "error"):
                entry.pop(key, None)
        if "test_acc" not in entry:
            entry["budget"] = budget
            seed_everything(0)
            config = TrainConfig(**space.training_config(arch), epochs=args.epochs,
                                 patience=args.patience, seed=0, device="cpu")
            try:
                result = train_model(build(), task, config)
                entry.update(test_acc=result.metrics["test_acc"], val_acc=result.metrics["val_acc"],
                             train_s=round(result.seconds, 3), epochs=result.epochs_run)
            except Exception as error:  # noqa: BLE001 - a diverged model is recorded as such
                entry.update(test_acc=None, error=f"{type(error).__name__}: {error}")
        save_cache(name, cache)
        print(f"{task.name} {i + 1}/{len(archs)} {arch.short()} test {entry.get('test_acc')} "
              f"{ {p: round(entry[p], 3) for p in proxies} }", flush=True)


# ----------------------------------------------------------------------------------------------
# prescreen: search @100 on NAS-Bench-Graph, with and without a proxy screening proposals


def run_prescreen(args: argparse.Namespace) -> None:
    """Search @``--queries`` unique architectures, plain and pre-screened, seed by seed.

    The protocol is ``experiments/nasbench_graph.py``'s (so the plain arm reproduces its
    table): the space carries the dataset's benchmark setting, proposing strategies get it for
    deduplication, and the budget counts *unique* architectures (a repeated proposal is told its
    known value and costs nothing), the answer being the test accuracy of the first-found
    best-validation one. Both arms thus get the same number of distinct table queries.
    """
    import optuna

    from nas.evaluators._table import query
    from nas.samplers import PrescreenSampler, get_sampler
    from search_spaces.nasbench_graph import NasBenchGraphSpace

    rule = rule_suffix(args)  # a bad --rule or --veto-quantile fails before any work
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = NasBenchGraphSpace(args.dataset)
    proxy_task = load_task(args.proxy_dataset or args.dataset)
    proxy_space = NasBenchGraphSpace(proxy_task.name)  # proxies: models of the proxy data's shape
    batches = proxy_batches(proxy_task)
    proxy, sign = args.proxy.lstrip("-"), -1.0 if args.proxy.startswith("-") else 1.0
    name = f"proxy_{proxy}_{proxy_task.name}"
    cache = load_cache(name)  # arch hash -> proxy value on the proxy dataset (shared by runs)
    cache["runs"].append(machine())
    bench_cache = load_cache(f"bench_{proxy_task.name}")["archs"]

    def score(arch) -> float:
        if arch.arch_hash in bench_cache and proxy in bench_cache[arch.arch_hash]:
            return sign * bench_cache[arch.arch_hash][proxy]
        if arch.arch_hash not in cache["archs"]:
            value = score_all(lambda: proxy_space.build(arch, proxy_task.num_features,
                                                        proxy_task.num_classes, "node"),
                              batches, [proxy])
            cache["archs"][arch.arch_hash] = value
            if len(cache["archs"]) % 50 == 0:
                save_cache(name, cache)
        return sign * cache["archs"][arch.arch_hash][proxy]

    suffix = "" if proxy_task.name == args.dataset else f"_on_{proxy_task.name}"
    strategy = args.strategy + (f"+transfer{args.transfer}" if args.transfer else "")
    out_name = f"search_{args.dataset}_{strategy}_{args.proxy}_k{args.k}{rule}{suffix}"
    warm = None
    if args.transfer:  # queued first in both arms; fixed trials are not pre-screened
        from experiments.nasbench_graph import transfer_cells
        warm = [space.trial_params(arch) for arch in transfer_cells(args.dataset, args.transfer)]
    results = load_cache(out_name)
    results["runs"].append({**machine(), "proxy_dataset": proxy_task.name, "queries": args.queries,
                            "rule": args.rule, "veto_quantile": args.veto_quantile})
    deadline = time.monotonic() + 60 * args.max_minutes
    for seed in range(args.seeds):
        if time.monotonic() > deadline:
            print(f"time budget used after {seed} seeds", flush=True)
            break
        for mode in ("plain", "prescreen"):
            key = f"{mode}/{seed}"
            if key in results["archs"]:
                continue
            base = get_sampler(args.strategy, seed=seed, space=space)
            sampler = base if mode == "plain" else PrescreenSampler(
                base, space, score, args.k, args.rule, veto_quantile=args.veto_quantile)
            results["archs"][key] = search_once(space, sampler, args.dataset, args.queries, query,
                                                warm)
            save_cache(out_name, results)
            save_cache(name, cache)
            row = results["archs"][key]
            print(f"{args.dataset} {strategy} {key}: val {row['best_val']:.4f} "
                  f"test {row['test_of_best_val']:.4f} ({row['seconds']:.0f} s, "
                  f"{len(cache['archs'])} proxy scores cached)", flush=True)
    save_cache(name, cache)


def rule_suffix(args: argparse.Namespace) -> str:
    """Run-name part of the pre-screen rule: empty for "best" (the first runs' names), else
    ``_veto<percent>``."""
    if resolve_rule(args.rule) == "best":
        return ""
    return f"_veto{100 * check_veto_quantile(args.veto_quantile):g}"


def search_once(space, sampler, dataset: str, queries: int, query,
                warm: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One ask-and-tell search until ``queries`` unique architectures were looked up (the loop
    of ``experiments/nasbench_graph.py``; ``warm``: trial parameters queued first)."""
    from experiments.nasbench_graph import table_search

    run = table_search(space, sampler, dataset, (queries,), query, warm=warm)
    row = {"best_val": run["best_val"], "test_of_best_val": run["test_of_best_val"],
           "trials": run["trials"], "unique": run["unique"], "seconds": round(run["seconds"], 2)}
    return {**row, "screened": run["screened"]} if "screened" in run else row


# ----------------------------------------------------------------------------------------------
# report


def spearman_table(archs: dict[str, Any], proxies) -> dict[str, Any]:
    """Per proxy: Spearman's rho with test accuracy (and its p-value), n, median seconds."""
    import statistics

    from scipy.stats import spearmanr

    table = {}
    for proxy in proxies:
        rows = [a for a in archs.values() if a.get(proxy) is not None and a.get("test_acc") is not None]
        if len(rows) < 3:
            continue
        result = spearmanr([r[proxy] for r in rows], [r["test_acc"] for r in rows])
        seconds = statistics.median(r.get(f"{proxy}_s", 0.0) for r in rows)
        table[proxy] = {"spearman": round(float(result.statistic), 4), "p": float(result.pvalue),
                        "n": len(rows), "seconds": round(seconds, 4)}
        paired = [r for r in rows if r.get("params") is not None]
        if len(paired) >= 3:
            table[proxy]["bootstrap"] = bootstrap_spearman(
                [r[proxy] for r in paired], [r["params"] for r in paired],
                [r["test_acc"] for r in paired])
    return table


#: architectures resampled with replacement this many times for the bootstrap intervals
RESAMPLES = 1000


def bootstrap_spearman(values, params, accuracy, resamples: int = RESAMPLES,
                       seed: int = 0) -> dict[str, Any]:
    """Percentile bootstrap over architectures of a proxy's Spearman rho with accuracy, paired
    with parameter count's on the same resamples.

    Args:
        values: the proxy per architecture.
        params: parameter count of the same architectures (the baseline).
        accuracy: their test accuracy.
        resamples: bootstrap resamples (architectures drawn with replacement).
        seed: seed of the resampling (the same seed gives every proxy the same resamples when
            they cover the same architectures).

    Returns:
        ``{"n", "resamples", "ci95": [lo, hi]`` of the proxy's rho, ``"diff_ci95": [lo, hi]`` of
        rho(proxy) - rho(params), ``"p_better"``: the fraction of resamples in which the proxy's
        rho exceeds params'``}``. Resamples where a column is constant (rho undefined) are
        dropped from the percentiles.
    """
    import numpy as np
    from scipy.stats import rankdata

    def rho(x: np.ndarray, y: np.ndarray) -> np.ndarray:  # row-wise Spearman (average ranks)
        rx, ry = rankdata(x, axis=1), rankdata(y, axis=1)
        rx -= rx.mean(axis=1, keepdims=True)
        ry -= ry.mean(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (rx * ry).sum(axis=1) / np.sqrt((rx ** 2).sum(axis=1) * (ry ** 2).sum(axis=1))

    values, params, accuracy = (np.asarray(v, dtype=float) for v in (values, params, accuracy))
    index = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))
    proxy_rho, params_rho = rho(values[index], accuracy[index]), rho(params[index], accuracy[index])
    diff = proxy_rho - params_rho
    ok = ~np.isnan(diff)
    return {
        "n": len(values), "resamples": resamples,
        "ci95": [round(float(q), 4) for q in np.nanpercentile(proxy_rho, [2.5, 97.5])],
        "diff_ci95": [round(float(q), 4) for q in np.percentile(diff[ok], [2.5, 97.5])],
        "p_better": round(float((diff[ok] > 0).mean()), 4),
    }


def run_report(args: argparse.Namespace) -> None:
    report: dict[str, Any] = {"machine": machine(), "correlation": {}, "search": {}, "runs": {}}
    for path in sorted(CACHE.glob("*.json")):
        cache = json.loads(path.read_text())
        report["runs"][path.stem] = cache["runs"]
        if path.stem.startswith(("bench_", "trained_")):
            report["correlation"][path.stem] = spearman_table(cache["archs"], PROXY_ORDER)
        elif path.stem.startswith("search_"):
            report["search"][path.stem] = search_summary(cache["archs"])
    (RESULTS / "zero_cost.json").write_text(json.dumps(report, indent=1, sort_keys=True))
    (RESULTS / "zero_cost.md").write_text(markdown(report))
    print(markdown(report))


def search_summary(runs: dict[str, Any]) -> dict[str, Any]:
    """Mean ± std of test (and val) accuracy of the best-validation architecture per arm, over
    the seeds run in both arms, and the paired difference (prescreened - plain)."""
    import statistics

    seeds = sorted({k.split("/")[1] for k in runs}, key=int)
    paired = [s for s in seeds if f"plain/{s}" in runs and f"prescreen/{s}" in runs]
    summary: dict[str, Any] = {}
    for mode in ("plain", "prescreen"):  # seeds run in both modes only
        tests = [runs[f"{mode}/{seed}"]["test_of_best_val"] for seed in paired]
        vals = [runs[f"{mode}/{seed}"]["best_val"] for seed in paired]
        if tests:
            summary[mode] = {
                "seeds": len(tests), "test_mean": round(statistics.mean(tests), 4),
                "test_std": round(statistics.pstdev(tests), 4),
                "val_mean": round(statistics.mean(vals), 4),
            }
    if paired:
        diffs = [runs[f"prescreen/{s}"]["test_of_best_val"] - runs[f"plain/{s}"]["test_of_best_val"]
                 for s in paired]
        summary["difference"] = {
            "mean": round(statistics.mean(diffs), 4),
            "std": round(statistics.pstdev(diffs), 4),
            "better": sum(d > 0 for d in diffs), "worse": sum(d < 0 for d in diffs),
            "wilcoxon_p": wilcoxon_p(diffs),
        }
    return summary


def wilcoxon_p(diffs: list[float]) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value of paired differences (``None``: all zero)."""
    from scipy.stats import wilcoxon

    if not any(diffs):
        return None
    return round(float(wilcoxon(diffs, zero_method="wilcox").pvalue), 4)


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Zero-cost proxies", "", f"Report written {report['machine']['date']} on "
             f"{report['machine']['platform']} ({report['machine']['cpu_count']} CPUs).", "",
             "## Spearman rank correlation with test accuracy (n, median seconds per architecture)",
             "", "Seconds are wall-clock per proxy on one torch thread, measured in the runs below "
             "(so at their load average, see Runs); params needs no data.", ""]
    header = "| setting | " + " | ".join(PROXY_ORDER) + " |"
    lines += [header, "|" + "---|" * (len(PROXY_ORDER) + 1)]
    for setting, table in report["correlation"].items():
        cells = []
        for proxy in PROXY_ORDER:
            t = table.get(proxy)
            cells.append("-" if t is None else f"{t['spearman']:+.3f} (n={t['n']}, {t['seconds']:.2f}s)")
        lines.append(f"| {setting} | " + " | ".join(cells) + " |")
    lines += ["", f"Bootstrap 95% intervals ({RESAMPLES} resamples of the architectures, percentile): "
              "the proxy's rho; in brackets rho(proxy) - rho(params) on the same resamples, and "
              "the share of resamples in which the proxy beats params.", "",
              header, "|" + "---|" * (len(PROXY_ORDER) + 1)]
    for setting, table in report["correlation"].items():
        cells = []
        for proxy in PROXY_ORDER:
            b = table.get(proxy, {}).get("bootstrap")
            if b is None:
                cells.append("-")
            elif proxy == "params":
                cells.append(f"[{b['ci95'][0]:+.3f}, {b['ci95'][1]:+.3f}]")
            else:
                cells.append(f"[{b['ci95'][0]:+.3f}, {b['ci95'][1]:+.3f}] (diff "
                             f"[{b['diff_ci95'][0]:+.3f}, {b['diff_ci95'][1]:+.3f}], "
                             f"{100 * b['p_better']:.0f}%)")
        lines.append(f"| {setting} | " + " | ".join(cells) + " |")
    lines += ["", "Goal check (a proxy beats parameter count's correlation):", ""]
    for setting, table in report["correlation"].items():
        base = table.get("params", {}).get("spearman")
        better = [p for p in PROXY_ORDER[1:] if p in table and base is not None
                  and table[p]["spearman"] > base]
        lines.append(f"- {setting}: params {base}; better: {better or 'none'}")
    lines += ["", "## Search @100 queries on NAS-Bench-Graph (test accuracy of the best-validation "
              "architecture, mean ± std over seeds)", "",
              "Accuracies in %. Run names: `search_<dataset>_<strategy>_<proxy>_k<candidates>`: "
              "the best proxy of k proposals is evaluated; with `_veto<percent>`: the "
              "strategy's own proposal unless its proxy is below that percentile of a fixed "
              "random sample of the space (then its next, at most k).", "",
              "| run | plain | prescreened | prescreened - plain (seeds better/worse, paired test) |",
              "|---|---|---|---|"]
    for name, summary in report["search"].items():
        cells = [
            f"{100 * s['test_mean']:.2f} ± {100 * s['test_std']:.2f} "
            f"(val {100 * s['val_mean']:.2f}, n={s['seeds']})"
            if (s := summary.get(mode)) else "-"
            for mode in ("plain", "prescreen")
        ]
        d = summary.get("difference")
        cells.append("-" if d is None else f"{100 * d['mean']:+.2f} ± {100 * d['std']:.2f} "
                     f"({d['better']}/{d['worse']}, Wilcoxon p={d.get('wilcoxon_p')})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", *status_lines(report), ""]
    if NOTES.exists():  # hand-written reading of the tables (kept when the report is rewritten)
        lines += [NOTES.read_text().rstrip(), ""]
    lines += ["## Runs (machine, load at start, command, date)", ""]
    for name, runs in report["runs"].items():
        for run in runs:
            lines.append(f"- {name}: `{run['command']}` — {run['date']}, load {run['loadavg_at_start']}, "
                         f"{run['platform']}, {run['cpu_count']} CPUs, torch threads {run.get('torch_threads')}")
    return "\n".join(lines) + "\n"


#: what the issue asks for: architectures per correlation setting, seeds per search
TARGETS = {"bench_": 500, "trained_": 50, "search_": 20}


def status_lines(report: dict[str, Any]) -> list[str]:
    """What was measured against what the issue asks, and what the stand-ins are."""
    short = []
    for setting, table in report["correlation"].items():
        target = next(v for k, v in TARGETS.items() if setting.startswith(k))
        for proxy in PROXY_ORDER:
            n = table.get(proxy, {}).get("n", 0)
            if n < target:
                short.append(f"{setting}/{proxy}: n={n} of {target}")
    for name, summary in report["search"].items():
        seeds = min(summary.get(mode, {}).get("seeds", 0) for mode in ("plain", "prescreen"))
        if seeds < TARGETS["search_"]:
            short.append(f"{name}: {seeds} of {TARGETS['search_']} seeds")
    lines = ["## Status", ""]
    lines += ([f"Short of the issue's numbers: {'; '.join(short)}."] if short
              else ["Every setting reached the issue's sample sizes (architectures and seeds); whether the goals are met is read below."])
    lines += ["", "Search rows use only seeds run both plain and prescreened (paired); the budget "
              "counts unique architectures, as in `experiments/nasbench_graph.py`."]
    if any(name.endswith(f"_on_{d}") for name in report["search"] for d in ("cora", "citeseer")):
        lines += ["", "Rows ending in `_on_<dataset>` are STAND-INS: PubMed's raw data is not "
                  "available offline, so the proxy was computed on models of that other "
                  "dataset's shape and data (the same cell; NAS-Bench-Graph cells are "
                  "dataset-independent) while the search itself queried PubMed's table. They "
                  "measure whether a proxy ranking transferred from another dataset helps, not "
                  "a proxy computed on PubMed."]
    return lines


def loaded_benchmark_dataset(text: str) -> str:
    """A dataset of :data:`LOADED_BENCHMARK_DATASETS` (any spelling), canonical; ``ValueError``
    naming the value and them."""
    try:
        name = benchmark_dataset(text)
    except ValueError:
        name = None
    if name not in LOADED_BENCHMARK_DATASETS:
        raise ValueError(f"{text!r} is not among the NAS-Bench-Graph datasets whose data loads "
                         f"here: {LOADED_BENCHMARK_DATASETS}")
    return name


def part_dataset(part: str, text: str, proxy_dataset: str | None) -> str:
    """``--dataset`` of ``part``, canonical; ``ValueError`` naming it and the valid ones.

    ``bench`` builds NAS-Bench-Graph cells on its data and looks them up in its table: a
    benchmark dataset whose data loads here. ``prescreen`` looks its searches up in the table
    (any benchmark dataset) and computes the proxy on ``--proxy-dataset``'s data, by default on
    this one's (then it must load here). ``trained`` trains GNN-space models on any dataset;
    ``report`` reads none.
    """
    if part == "prescreen" and proxy_dataset is None:
        try:
            return loaded_benchmark_dataset(text)
        except ValueError as error:
            raise ValueError(f"{error} (the proxy's data, as no --proxy-dataset is given)") from None
    if part == "bench":
        return loaded_benchmark_dataset(text)
    if part == "prescreen":
        return benchmark_dataset(text)
    return resolve_dataset(text)


def signed_proxy(text: str) -> str:
    """``--proxy``: a proxy name in any spelling made canonical, a leading '-' (rank by the
    negation) kept; ``ValueError`` naming the proxies otherwise."""
    sign = "-" if text.startswith("-") else ""
    return sign + proxy_name(text[len(sign):])


def veto_quantile(text: str) -> float:
    """``--veto-quantile``: a number strictly between 0 and 1."""
    return check_veto_quantile(float(text))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", choices=["bench", "trained", "prescreen", "report"])
    proxy = resolved_name(proxy_name)
    parser.add_argument("--dataset", default="cora",
                        help="bench: a NAS-Bench-Graph dataset whose data loads here; prescreen: "
                             "the benchmark dataset searched; trained: any dataset")
    parser.add_argument("--archs", type=positive_int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", nargs="*", type=proxy, default=[], help="proxies to leave out")
    parser.add_argument("--recompute", nargs="*", type=proxy, default=[],
                        help="bench: score these proxies again on cells that cached them before "
                             "(once per cell: a resumed run does not redo them)")
    parser.add_argument("--max-minutes", type=float, default=60.0)
    parser.add_argument("--epochs", type=positive_int, default=100, help="trained: most epochs")
    parser.add_argument("--patience", type=int, default=20, help="trained: early-stopping patience")
    parser.add_argument("--strategy", type=resolved_name(strategy_name), default="tpe",
                        help="prescreen: base strategy")
    parser.add_argument("--proxy", type=resolved_name(signed_proxy), default="naswot",
                        help="prescreen: the proxy; a leading '-' ranks by its negation")
    parser.add_argument("--proxy-dataset", type=resolved_name(loaded_benchmark_dataset), default=None,
                        help="prescreen: data for the proxy, a NAS-Bench-Graph dataset whose data "
                             "loads here (default: --dataset)")
    parser.add_argument("--transfer", type=int, default=0,
                        help="prescreen: warm-start both arms with the K best cells of the other "
                             "tuning datasets' tables (as experiments/nasbench_graph.py --transfer)")
    parser.add_argument("--k", type=positive_int, default=5, help="prescreen: proposals per trial")
    parser.add_argument("--rule", type=resolved_name(resolve_rule), default="best",
                        help="prescreen: best (top proxy of --k) or veto (the strategy's order, "
                             "minus candidates in the proxy's low tail)")
    parser.add_argument("--veto-quantile", type=resolved_name(veto_quantile), default=0.25,
                        help="prescreen --rule veto: quantile of a random sample's proxy below "
                             "which a candidate is removed")
    parser.add_argument("--seeds", type=positive_int, default=20)
    parser.add_argument("--queries", type=positive_int, default=100)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    try:  # it depends on the part: bench and prescreen accepted any dataset, crashing later
        args.dataset = part_dataset(args.part, args.dataset, args.proxy_dataset)
    except ValueError as error:
        parser.error(f"argument --dataset: {error}")
    skipped = sorted(set(args.recompute) & set(args.skip))
    if skipped:
        parser.error(f"--recompute {skipped} are skipped; proxies of this run: "
                     f"{[p for p in PROXY_ORDER if p not in args.skip]}")
    if args.threads:
        torch.set_num_threads(args.threads)
    {"bench": run_bench, "trained": run_trained, "prescreen": run_prescreen,
     "report": run_report}[args.part](args)


if __name__ == "__main__":
    main()
