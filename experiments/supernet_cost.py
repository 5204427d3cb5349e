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

``--refine FT --cascade N:K ...`` adds two-fidelity supernet searches: the ``--variant`` scorer on
every candidate, the costlier ``ftFT`` scorer (of the same ranking run) on its best fraction N of
the budget, from-scratch training of the best fraction K of the budget by the ``ftFT`` score (each
at least 1), the best from-scratch validation accuracy of those is the pick. The cost adds the
``ftFT`` seconds of the N re-scored candidates.

    python experiments/supernet_cost.py --rows supernet_ranking --budgets 50 100 250 --top-k 1 5
    python experiments/supernet_cost.py --rows R --budgets 500 1000 --variant 0 --refine 20 --cascade 0.1:0.01
"""
from __future__ import annotations

import argparse
import json
import random
import statistics

from experiments._results import positive_int, result_file_error
from experiments._supernet_common import RESULTS, check_name, machine, write_results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", nargs="+", default=["supernet_ranking"],
                   help="result file(s) of supernet_ranking.py: one per supernet over the same pool "
                        "(several: every search is repeated on each supernet, same candidate subsets)")
    p.add_argument("--budgets", type=positive_int, nargs="+", default=[10, 25, 50])
    p.add_argument("--top-k", type=positive_int, nargs="+", default=[1],
                   help="from-scratch trainings of the supernet search")
    p.add_argument("--variant", default=None, help="inherited-weight scorer (fine-tuning epochs); default: the first")
    p.add_argument("--refine", default=None, metavar="FT",
                   help="second, costlier scorer of the cascade (fine-tuning epochs of a ranking-run variant)")
    p.add_argument("--cascade", type=_fractions, nargs="+", default=[], metavar="N:K",
                   help="with --refine: fractions of the budget re-scored (N) and trained from scratch (K)")
    p.add_argument("--draws", type=positive_int, default=20,
                   help="random candidate subsets per budget below the pool size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="supernet_cost")
    args = p.parse_args()
    check_name(args.name, p)
    if args.cascade and args.refine is None:
        p.error("--cascade needs --refine FT (the second scorer)")
    sources = _sources(p, args.rows)
    error = _scorer_error(args, [row for source in sources for row in source["rows"]])
    if error:
        p.error(error)
    pools = [_pool(source, args.variant, args.refine) for source in sources]
    if any(pool.keys() != pools[0].keys() for pool in pools):
        p.error(f"--rows {args.rows}: not the same architectures in every file")
    info = machine()
    rng = random.Random(args.seed)
    keys = list(pools[0])
    table = []
    for n in args.budgets:
        if n > len(keys):
            print(f"budget {n} skipped: the pool has {len(keys)} architectures")
            continue
        subsets = [keys] if n == len(keys) else [rng.sample(keys, n) for _ in range(args.draws)]
        searches = [(k, 0) for k in args.top_k if k <= n] + [
            (max(1, round(top * n)), max(1, round(refine * n))) for refine, top in args.cascade]
        for k, m in searches:
            runs = [compare([pool[key] for key in subset], source["supernet_seconds"], k, refine_n=m)
                    for pool, source in zip(pools, sources) for subset in subsets]
            table.append(_summarise(n, k, runs, refine_n=m))
    source = sources[0]
    variant = args.variant or next(iter(source["rows"][0].get("variants", {"0": None})))
    payload = {"machine": info, "source": args.rows, "source_machine": [s["machine"] for s in sources],
               "variant": variant, "refine": args.refine, "budgets": table}
    md = ["# Supernet search vs full-training search (same candidates, same budget)", "",
          f"- machine: {info['platform']}, {info['cpu_count']} CPUs (shared), load now {info['loadavg_at_start']}",
          f"- command: `{info['command']}`",
          *[f"- rows from: `{s['machine']['command']}` ({s['machine']['date']}, load at start "
            f"{s['machine']['loadavg_at_start']}; supernet {s['supernet_seconds']:.0f} s)" for s in sources],
          f"- supernet scorer: ft{variant}; pool of {len(keys)} architectures; "
          f"budgets below the pool: mean over {args.draws} random subsets"
          + (f", the same subsets on each of the {len(sources)} supernets (draws = supernets x subsets)"
             if len(sources) > 1 else ""),
          *([f"- cascade rows (re-scored > 0): ft{variant} on every candidate, ft{args.refine} on the "
             f"re-scored best of them, the top-k by ft{args.refine} trained from scratch"] if args.cascade else []),
          f"- date: {info['date']}", "",
          "| budget (archs) | re-scored | top-k trained | full-training s | supernet s (train + score "
          "[+ re-score] + top-k) | speed-up | full-training pick test | supernet pick test | difference (points) "
          "| draws within 0.5 pt |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        rescore = f" + {r['refine_seconds']:.0f}" if r["refine_n"] else ""
        md.append(
            f"| {r['budget']} | {r['refine_n']} | {r['top_k']} | {r['full_seconds']:.0f} | {r['supernet_seconds']:.0f} "
            f"({r['supernet_train_seconds']:.0f} + {r['score_seconds']:.0f}{rescore} + {r['final_seconds']:.0f}) | "
            f"{r['speedup']:.1f}x | {100 * r['full_test']:.2f} | {100 * r['supernet_test']:.2f} | "
            f"{r['difference_points']:+.2f} ± {r['difference_sd']:.2f} | {r['within_half_point']}/{r['draws']} |"
        )
    write_results(args.name, payload, "\n".join(md) + "\n")


def _scorer_error(args: argparse.Namespace, rows: list[dict]) -> str | None:
    """Why ``--variant`` or ``--refine`` names no scorer of the ranking rows, naming the ones
    they have (``--variant`` scored every row; ``--refine`` at least the best), else ``None``."""
    scored = [set(row.get("variants", {})) for row in rows]
    everywhere = set.intersection(*scored) if scored else set()
    anywhere = set().union(*scored)
    if args.variant is not None and args.variant not in everywhere:
        return (f"--variant {args.variant!r} is not a scorer of every row of --rows {args.rows}; "
                f"those are {sorted(everywhere)}")
    if args.refine is not None and args.refine not in anywhere:
        return f"--refine {args.refine!r} is not a scorer of --rows {args.rows}; they have {sorted(anywhere)}"
    return None


def _sources(parser: argparse.ArgumentParser, names: list[str]) -> list[dict]:
    """The ranking runs of ``--rows``: result files of RESULTS, named by their stem; a path or a
    missing file is refused through ``parser``, naming it."""
    sources = []
    for name in names:
        error = result_file_error("--rows", name, "supernet_ranking.py", RESULTS)
        if error:
            parser.error(error)
        sources.append(json.loads((RESULTS / f"{name}.json").read_text()))
    return sources


def _fractions(text: str) -> tuple[float, float]:
    """``--cascade``'s type: ``"0.1:0.01"`` -> (0.1, 0.01), the fractions of the budget re-scored
    and trained from scratch."""
    try:
        refine, top = (float(part) for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes N:K fractions such as 0.1:0.01, got {text!r}") from None
    if not 0 < top <= refine <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 < K <= N <= 1")
    return refine, top


def _pool(source: dict, variant: str | None, refine: str | None) -> dict[str, dict]:
    """A ranking run's rows by architecture."""
    return {json.dumps(row["arch"], sort_keys=True): _normalise(row, variant, refine) for row in source["rows"]}


def _normalise(row: dict, variant: str | None, refine: str | None = None) -> dict:
    """A pool row as (score, seed-0 val, seed-0 seconds, mean test, scoring seconds), with the
    ``refine`` variant's score and seconds when given."""
    runs = row.get("scratch_runs") or [{"val": row["scratch_val"], "test": row["scratch_test"],
                                         "seconds": row["scratch_seconds"]}]
    scored = row["variants"][variant] if variant is not None else None
    if scored is None and "variants" in row:
        scored = next(iter(row["variants"].values()))
    score = scored["val"] if scored else row["inherited_val"]
    score_seconds = scored["seconds"] if scored else row["inherited_seconds"]
    out = {"summary": row["summary"], "score": score, "score_seconds": score_seconds,
           "val": runs[0]["val"], "seconds": runs[0]["seconds"],
           "test": sum(r["test"] for r in runs) / len(runs)}
    if refine is not None and refine in row.get("variants", {}):
        out.update(refine=row["variants"][refine]["val"], refine_seconds=row["variants"][refine]["seconds"])
    return out


def compare(rows: list[dict], supernet_seconds: float, top_k: int = 1, refine_n: int = 0) -> dict:
    """One search of each kind over the candidates ``rows`` (see the module docstring); with
    ``refine_n``, the supernet search re-scores its ``refine_n`` best with the refine scorer and
    trains the ``top_k`` best of those by that score."""
    full_pick = max(rows, key=lambda r: r["val"])
    ranked = sorted(rows, key=lambda r: r["score"], reverse=True)
    refined = ranked[:refine_n]
    missing = [r["summary"] for r in refined if "refine" not in r]
    if missing:
        raise SystemExit(f"the ranking run did not re-score {missing[0]} (and {len(missing) - 1} more) that a "
                         f"cascade re-scores: rerun it with a larger --refine-top")
    if refine_n:
        ranked = sorted(refined, key=lambda r: r["refine"], reverse=True)
    shortlist = ranked[:top_k]
    net_pick = max(shortlist, key=lambda r: r["val"])
    full_s = sum(r["seconds"] for r in rows)
    score_s = sum(r["score_seconds"] for r in rows)
    refine_s = sum(r["refine_seconds"] for r in refined)
    final_s = sum(r["seconds"] for r in shortlist)
    net_s = supernet_seconds + score_s + refine_s + final_s
    return {
        "full_seconds": full_s, "supernet_seconds": net_s, "supernet_train_seconds": supernet_seconds,
        "score_seconds": score_s, "refine_seconds": refine_s, "final_seconds": final_s, "speedup": full_s / net_s,
        "full_test": full_pick["test"], "supernet_test": net_pick["test"],
        "full_pick": full_pick["summary"], "supernet_pick": net_pick["summary"],
    }


def _summarise(budget: int, top_k: int, runs: list[dict], refine_n: int = 0) -> dict:
    mean = lambda key: statistics.fmean(r[key] for r in runs)  # noqa: E731
    differences = [100 * (r["supernet_test"] - r["full_test"]) for r in runs]
    out = {key: mean(key) for key in ("full_seconds", "supernet_seconds", "supernet_train_seconds",
                                       "score_seconds", "refine_seconds", "final_seconds", "full_test", "supernet_test")}
    out.update(budget=budget, top_k=top_k, refine_n=refine_n, draws=len(runs), speedup=out["full_seconds"] / out["supernet_seconds"],
               difference_points=statistics.fmean(differences),
               difference_sd=statistics.stdev(differences) if len(differences) > 1 else 0.0,
               within_half_point=sum(d >= -0.5 for d in differences), runs=runs)
    return out


if __name__ == "__main__":
    main()
