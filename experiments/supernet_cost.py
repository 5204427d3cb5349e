"""Cost of a supernet search against a full-training search of the same budget.

Both searches get the same budget: the same N candidate architectures, drawn from the pool of a
``experiments/supernet_ranking.py`` run (uniform draws from the supernet's sub-space). The
full-training search trains every candidate from scratch (one training seed, the pool's first
reference seed) and picks the best validation accuracy. The supernet search trains the supernet
once, scores every candidate with inherited weights (the ``--variant`` scorer of the ranking run),
trains only its ``top-k`` from scratch (same seed and budget as above) and picks the best of those
by validation accuracy. Compute time is the wall seconds measured in the ranking run: the sum of
the candidates' training times, against supernet training + scoring + the top-k trainings.

Quality is the test accuracy of each search's pick; both picks are reported as the mean test
accuracy over the pool's reference seeds (the accuracy the chosen architecture is expected to
train to; the search itself only saw seed 0's validation accuracy). Budgets below the pool size
are repeated over ``--draws`` random subsets of the pool (seeded) and averaged.

    python experiments/supernet_cost.py --rows supernet_ranking --budgets 50 100 250 --top-k 1 5
"""
from __future__ import annotations

import argparse
import json
import random
import statistics

from experiments._supernet_common import RESULTS, machine, write_results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", default="supernet_ranking", help="result file of supernet_ranking.py")
    p.add_argument("--budgets", type=int, nargs="+", default=[10, 25, 50])
    p.add_argument("--top-k", type=int, nargs="+", default=[1], help="from-scratch trainings of the supernet search")
    p.add_argument("--variant", default=None, help="inherited-weight scorer (fine-tuning epochs); default: the first")
    p.add_argument("--draws", type=int, default=20, help="random candidate subsets per budget below the pool size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="supernet_cost")
    args = p.parse_args()
    info = machine()
    source = json.loads((RESULTS / f"{args.rows}.json").read_text())
    rows = [_normalise(r, args.variant) for r in source["rows"]]
    if any(k < 1 for k in args.top_k):
        raise SystemExit(f"--top-k must be >= 1, got {args.top_k}")
    rng = random.Random(args.seed)
    table = []
    for n in args.budgets:
        if n > len(rows):
            print(f"budget {n} skipped: the pool has {len(rows)} architectures")
            continue
        subsets = [rows] if n == len(rows) else [rng.sample(rows, n) for _ in range(args.draws)]
        for k in args.top_k:
            if k <= n:
                table.append(_summarise(n, k, [compare(s, source["supernet_seconds"], k) for s in subsets]))
    variant = args.variant or next(iter(source["rows"][0].get("variants", {"0": None})))
    payload = {"machine": info, "source": args.rows, "source_machine": source["machine"],
               "variant": variant, "budgets": table}
    md = ["# Supernet search vs full-training search (same candidates, same budget)", "",
          f"- machine: {info['platform']}, {info['cpu_count']} CPUs (shared), load now {info['loadavg_at_start']}",
          f"- command: `{info['command']}`", f"- rows from: `{source['machine']['command']}` "
          f"({source['machine']['date']}, load at start {source['machine']['loadavg_at_start']})",
          f"- supernet scorer: ft{variant}; pool of {len(rows)} architectures; "
          f"budgets below the pool: mean over {args.draws} random subsets",
          f"- date: {info['date']}", "",
          "| budget (archs) | top-k trained | full-training s | supernet s (train + score + top-k) | speed-up | "
          "full-training pick test | supernet pick test | difference (points) | draws within 0.5 pt |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        md.append(
            f"| {r['budget']} | {r['top_k']} | {r['full_seconds']:.0f} | {r['supernet_seconds']:.0f} "
            f"({r['supernet_train_seconds']:.0f} + {r['score_seconds']:.0f} + {r['final_seconds']:.0f}) | "
            f"{r['speedup']:.1f}x | {100 * r['full_test']:.2f} | {100 * r['supernet_test']:.2f} | "
            f"{r['difference_points']:+.2f} ± {r['difference_sd']:.2f} | {r['within_half_point']}/{r['draws']} |"
        )
    write_results(args.name, payload, "\n".join(md) + "\n")


def _normalise(row: dict, variant: str | None) -> dict:
    """A pool row as (score, seed-0 val, seed-0 seconds, mean test, scoring seconds)."""
    runs = row.get("scratch_runs") or [{"val": row["scratch_val"], "test": row["scratch_test"],
                                         "seconds": row["scratch_seconds"]}]
    scored = row["variants"][variant] if variant is not None else None
    if scored is None and "variants" in row:
        scored = next(iter(row["variants"].values()))
    score = scored["val"] if scored else row["inherited_val"]
    score_seconds = scored["seconds"] if scored else row["inherited_seconds"]
    return {"summary": row["summary"], "score": score, "score_seconds": score_seconds,
            "val": runs[0]["val"], "seconds": runs[0]["seconds"],
            "test": sum(r["test"] for r in runs) / len(runs)}


def compare(rows: list[dict], supernet_seconds: float, top_k: int = 1) -> dict:
    """One search of each kind over the candidates ``rows`` (see the module docstring)."""
    full_pick = max(rows, key=lambda r: r["val"])
    shortlist = sorted(rows, key=lambda r: r["score"], reverse=True)[:top_k]
    net_pick = max(shortlist, key=lambda r: r["val"])
    full_s = sum(r["seconds"] for r in rows)
    score_s = sum(r["score_seconds"] for r in rows)
    final_s = sum(r["seconds"] for r in shortlist)
    net_s = supernet_seconds + score_s + final_s
    return {
        "full_seconds": full_s, "supernet_seconds": net_s, "supernet_train_seconds": supernet_seconds,
        "score_seconds": score_s, "final_seconds": final_s, "speedup": full_s / net_s,
        "full_test": full_pick["test"], "supernet_test": net_pick["test"],
        "full_pick": full_pick["summary"], "supernet_pick": net_pick["summary"],
    }


def _summarise(budget: int, top_k: int, runs: list[dict]) -> dict:
    mean = lambda key: statistics.fmean(r[key] for r in runs)  # noqa: E731
    differences = [100 * (r["supernet_test"] - r["full_test"]) for r in runs]
    out = {key: mean(key) for key in ("full_seconds", "supernet_seconds", "supernet_train_seconds",
                                       "score_seconds", "final_seconds", "full_test", "supernet_test")}
    out.update(budget=budget, top_k=top_k, draws=len(runs), speedup=out["full_seconds"] / out["supernet_seconds"],
               difference_points=statistics.fmean(differences),
               difference_sd=statistics.stdev(differences) if len(differences) > 1 else 0.0,
               within_half_point=sum(d >= -0.5 for d in differences), runs=runs)
    return out


if __name__ == "__main__":
    main()
