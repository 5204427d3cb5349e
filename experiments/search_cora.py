"""A TPE search on Cora with real training, then the best architecture retrained over seeds.

    python -m experiments.search_cora --trials 50 --retrain-seeds 10

Writes experiments/results/search_cora.{json,md}. The search selects on validation accuracy
only; the test accuracy reported is that of the retrained best architecture (never selected on).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from experiments._results import positive_int, write_results
from nas.evaluators import TrainEvaluator
from nas.export import best_trial
from nas.study import SearchConfig, run_search
from nas.tasks import load_task
from search_spaces import get_space

PUBLISHED = {"GCN (Kipf & Welling 2017)": "81.5", "GAT (Velickovic et al. 2018)": "83.0 +- 0.7",
             "GraphNAS (Gao et al. 2020)": "84.3 +- 0.4"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=positive_int, default=50)
    parser.add_argument("--retrain-seeds", type=positive_int, default=10)
    parser.add_argument("--epochs", type=positive_int, default=200)
    parser.add_argument("--patience", type=positive_int, default=50)
    parser.add_argument("--storage", default=None, help="default: a temporary SQLite file")
    args = parser.parse_args()
    storage = args.storage or f"sqlite:///{Path(tempfile.mkdtemp()) / 'search_cora.db'}"
    config = SearchConfig("cora", strategy="tpe", n_trials=args.trials, storage=storage,
                          epochs=args.epochs, patience=args.patience, study_name="cora-tpe-bench")
    start = time.perf_counter()
    study = run_search(config)
    wall = time.perf_counter() - start
    best = best_trial(study)
    space, task = get_space("gnn"), load_task("cora")
    arch = space.architecture_from_dict(__import__("json").loads(best.user_attrs["arch"]))
    evaluator = TrainEvaluator(epochs=args.epochs, patience=args.patience)
    tests = [100 * evaluator.evaluate(arch, space, task, seed=1000 + s).metrics["test_acc"]
             for s in range(args.retrain_seeds)]
    mean, std = statistics.mean(tests), statistics.stdev(tests) if len(tests) > 1 else 0.0
    rows = [
        ("trials", args.trials), ("search wall time (s)", f"{wall:.1f}"),
        ("seconds per trial", f"{wall / args.trials:.2f}"),
        ("best validation accuracy", f"{100 * best.values[0]:.2f}"),
        ("best architecture", best.user_attrs.get("summary")),
        (f"retrained test accuracy ({args.retrain_seeds} seeds)", f"{mean:.2f} +- {std:.2f}"),
        *[(f"published {name}", value) for name, value in PUBLISHED.items()],
    ]
    table = "| quantity | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
    print(table)
    write_results("search_cora", {
        "trials": args.trials, "epochs": args.epochs, "patience": args.patience,
        "wall_seconds": wall, "best_val_acc": best.values[0], "best_trial": best.number,
        "best_architecture": arch.to_dict(), "retrained_test_acc": tests,
        "retrained_test_mean": mean, "retrained_test_std": std, "published": PUBLISHED,
    }, table)


if __name__ == "__main__":
    main()
