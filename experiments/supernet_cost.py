"""Cost of a supernet search against a full-training search of the same budget.

Both searches get the same budget: the same N candidate architectures (uniform draws from the
supernet's sub-space, the rows of ``experiments/supernet_ranking.py``). The full-training search
trains every candidate from scratch and picks the best validation accuracy; the supernet search
trains the supernet once, scores every candidate with inherited weights, picks the best inherited
validation accuracy, and trains only that one from scratch (its measured from-scratch row, same
seed and budget). Reported: compute time of each (wall seconds on this shared CPU, as measured in
the ranking run) and the test accuracy of each search's pick, trained from scratch.

    python experiments/supernet_cost.py --rows supernet_ranking --budgets 10 25 50
"""
from __future__ import annotations

import argparse
import json

from experiments._supernet_common import RESULTS, machine, write_results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", default="supernet_ranking", help="result file of supernet_ranking.py")
    p.add_argument("--budgets", type=int, nargs="+", default=[10, 25, 50])
    args = p.parse_args()
    info = machine()
    source = json.loads((RESULTS / f"{args.rows}.json").read_text())
    rows = source["rows"]
    table = [_compare(rows[:n], source["supernet_seconds"]) for n in args.budgets if n <= len(rows)]
    payload = {"machine": info, "source": args.rows, "source_machine": source["machine"], "budgets": table}
    md = ["# Supernet search vs full-training search (same candidates, same budget)", "",
          f"- machine: {info['platform']}, {info['cpu_count']} CPUs (shared), load now {info['loadavg_at_start']}",
          f"- command: `{info['command']}`; rows from `{source['machine']['command']}`",
          f"- date: {info['date']}", "",
          "| budget (archs) | full-training s | supernet s (train + score + final) | speed-up | "
          "full-training pick test acc | supernet pick test acc | difference (points) |",
          "|---|---|---|---|---|---|---|"]
    for r in table:
        md.append(
            f"| {r['budget']} | {r['full_seconds']:.0f} | {r['supernet_seconds']:.0f} "
            f"({r['supernet_train_seconds']:.0f} + {r['score_seconds']:.0f} + {r['final_seconds']:.0f}) | "
            f"{r['speedup']:.2f}x | {r['full_test']:.4f} | {r['supernet_test']:.4f} | "
            f"{100 * (r['supernet_test'] - r['full_test']):+.1f} |"
        )
    write_results("supernet_cost", payload, "\n".join(md) + "\n")


def _compare(rows: list[dict], supernet_seconds: float) -> dict:
    full_pick = max(rows, key=lambda r: r["scratch_val"])
    net_pick = max(rows, key=lambda r: r["inherited_val"])
    full_s = sum(r["scratch_seconds"] for r in rows)
    score_s = sum(r["inherited_seconds"] for r in rows)
    net_s = supernet_seconds + score_s + net_pick["scratch_seconds"]
    return {
        "budget": len(rows), "full_seconds": full_s, "supernet_seconds": net_s,
        "supernet_train_seconds": supernet_seconds, "score_seconds": score_s,
        "final_seconds": net_pick["scratch_seconds"], "speedup": full_s / net_s,
        "full_test": full_pick["scratch_test"], "supernet_test": net_pick["scratch_test"],
        "full_pick": full_pick["summary"], "supernet_pick": net_pick["summary"],
        "supernet_training_amortised_note": "the supernet is trained once and serves any number of searches",
    }


if __name__ == "__main__":
    main()
