"""How much of a fidelity figure is seed luck? Read a ``--seed-mean`` record of the fidelity run.

``experiments.nasbench_graph_fidelity --seed-mean`` joins single-seed runs into one record whose
rows keep every seed's result (``per_seed``). This reads such a record and prints, for our test
accuracy against the table's: the Spearman of each single seed, of the mean of every triple of
seeds, of the mean of all seeds; the agreement of our own seeds with each other (every split of
the seeds into two halves, Spearman of one half's mean against the other's); the mean level on
the cells the table puts above a threshold; and the runs that diverged. It trains nothing.

Usage::

    python -m experiments.nasbench_graph_fidelity_seeds \\
        experiments/results/parts/nasbench_graph_fidelity_C/mean5/nasbench_graph_fidelity.json
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
from pathlib import Path
from typing import Any


def seed_test_accuracies(record: dict[str, Any]) -> tuple[list[str], list[dict[str, float | None]]]:
    """The record's training seeds and, per row, each seed's test accuracy (None: dropped as
    diverged, so it has none)."""
    seeds = [str(s) for s in record["train_seeds"]]
    per_row = [{s: row["per_seed"].get(s, {}).get("test_acc") for s in seeds} for row in record["rows"]]
    return seeds, per_row


def spearman(a: list[float | None], b: list[float | None]) -> float:
    """Spearman over the cells where both sides have a value."""
    import warnings

    from scipy import stats

    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    with warnings.catch_warnings():  # a constant side is undefined: nan, handled by the caller
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        return float(stats.spearmanr(*zip(*pairs)).statistic)


def mean_over(per_row: list[dict[str, float | None]], seeds: tuple[str, ...]) -> list[float | None]:
    """Per row, the mean over ``seeds`` of the seeds that have a test accuracy (None if none)."""
    means = []
    for row in per_row:
        values = [row[s] for s in seeds if row[s] is not None]
        means.append(statistics.fmean(values) if values else None)
    return means


def summarise(record: dict[str, Any], upper: float = 0.75) -> dict[str, Any]:
    """Every figure the module prints, as a dict (also the ``--json`` output)."""
    seeds, per_row = seed_test_accuracies(record)
    table = [row["table_test_acc"] for row in record["rows"]]
    single = {s: spearman([r[s] for r in per_row], table) for s in seeds}
    triples = [spearman(mean_over(per_row, t), table) for t in itertools.combinations(seeds, 3)]
    halves = []
    for first in itertools.combinations(seeds, (len(seeds) + 1) // 2):
        rest = tuple(s for s in seeds if s not in first)
        agreement = spearman(mean_over(per_row, first), mean_over(per_row, rest)) if rest else math.nan
        if not math.isnan(agreement):  # a half whose means tie on every cell ranks nothing
            halves.append(agreement)
    all_mean = mean_over(per_row, tuple(seeds))
    upper_rows = [i for i, t in enumerate(table) if t > upper and all_mean[i] is not None]
    diverged = []  # kept the epoch before (--divergence best) or dropped (--divergence drop)
    for row in record["rows"]:
        for s in seeds:
            run = row["per_seed"].get(s, {})
            if "diverged_at" in run:
                diverged.append({"short": row["short"], "seed": s, "diverged_at": run["diverged_at"],
                                 "kept": f"epoch {run['best_epoch']}"})
            elif "diverged" in run:
                diverged.append({"short": row["short"], "seed": s, "diverged_at": run["diverged"],
                                 "kept": "nothing (dropped)"})
    return {
        "n_cells": len(per_row), "seeds": seeds,
        "spearman_mean_all": spearman(all_mean, table),
        "spearman_first3": spearman(mean_over(per_row, tuple(seeds[:3])), table) if len(seeds) >= 3 else None,
        "spearman_single": single,
        "spearman_triples": {"mean": statistics.fmean(triples), "min": min(triples), "max": max(triples),
                             "n": len(triples)} if triples else None,
        "split_half": {"mean": statistics.fmean(halves), "min": min(halves), "max": max(halves),
                       "n": len(halves)} if halves else None,
        "upper": {"threshold": upper, "n_cells": len(upper_rows),
                  "ours": statistics.fmean(all_mean[i] for i in upper_rows) if upper_rows else None,
                  "table": statistics.fmean(table[i] for i in upper_rows) if upper_rows else None},
        "diverged": diverged,
    }


def report(summary: dict[str, Any]) -> str:
    s = summary
    single = " / ".join(f"{v:.3f}" for v in s["spearman_single"].values())
    lines = [
        f"cells: {s['n_cells']}, training seeds: {', '.join(s['seeds'])}",
        "| figure (Spearman of our test accuracy vs the table's) | value |",
        "|---|---|",
        f"| single seeds {' / '.join(s['seeds'])} | {single} |",
    ]
    if s["spearman_first3"] is not None:
        lines.append(f"| mean of the first 3 seeds | {s['spearman_first3']:.3f} |")
    if s["spearman_triples"]:
        t = s["spearman_triples"]
        lines.append(f"| mean of every triple of seeds ({t['n']}): mean (range) | "
                     f"{t['mean']:.3f} ({t['min']:.3f}-{t['max']:.3f}) |")
    lines.append(f"| mean of all {len(s['seeds'])} seeds | {s['spearman_mean_all']:.3f} |")
    if s["split_half"]:
        h = s["split_half"]
        lines.append(f"| our seeds vs our other seeds (split-half, {h['n']} splits): mean (range) | "
                     f"{h['mean']:.3f} ({h['min']:.3f}-{h['max']:.3f}) |")
    u = s["upper"]
    if u["ours"] is not None:
        lines.append(f"| mean test accuracy, the {u['n_cells']} cells the table puts above "
                     f"{u['threshold']}: ours / table | {u['ours']:.4f} / {u['table']:.4f} |")
    lines.append(f"\ndiverged runs: {len(s['diverged'])}")
    lines += [f"- {d['short']} seed {d['seed']}: diverged ({d['diverged_at']}), kept {d['kept']}"
              for d in s["diverged"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("record", type=Path, help="a --seed-mean record (nasbench_graph_fidelity.json)")
    p.add_argument("--upper", type=float, default=0.75, help="table test accuracy of the upper cells")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    record = json.loads(args.record.read_text())
    if "train_seeds" not in record:
        p.error(f"{args.record} is not a --seed-mean record (it has no 'train_seeds'); "
                "join single-seed runs with `python -m experiments.nasbench_graph_fidelity --seed-mean`")
    summary = summarise(record, args.upper)
    print(json.dumps(summary, indent=2) if args.json else report(summary))


if __name__ == "__main__":
    main()
