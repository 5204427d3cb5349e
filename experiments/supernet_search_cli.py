"""A two-fidelity supernet search through the command line, end to end, with each stage's time.

Runs what a user runs: ``metanas supernet train`` and then one ``metanas search --evaluator
supernet:ft0 --refine N --final-train K`` (random strategy, SQLite storage), and reads the three
studies it leaves (``<study>``, ``<study>-refine``, ``<study>-final``). Reports the wall time of
each command and, per study, the trials' summed durations (framework and storage overhead
included), the number of distinct architectures scored, and the answer: the from-scratch
validation and test accuracy of the best final trial. The stored per-trial times of the final
study give the from-scratch seconds per architecture of this run; the cost of a full-training
search over the same candidates is compared in ``supernet_cost.py`` on measured rows, not here.

The supernet and the database go to ``--out``, a new or empty folder (one that holds an earlier
run is refused: the commands would resume it, not time a search); by default a new folder of
``$METANAS_CACHE/supernet_search_cli`` (see :func:`nas.tasks.cache_dir`), private to the user,
named by ``--name``. Names and counts are checked before any work (exit 2).

    python experiments/supernet_search_cli.py --trials 1000 --refine 100 --final-train 10
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from experiments._results import positive_int, resolved_name
from experiments._supernet_common import check_name, machine, write_results

#: the search space of the supernet and of the search (both commands' default)
SPACE = "gnn"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", type=resolved_name(supernet_dataset), default="cora")
    p.add_argument("--trials", type=positive_int, default=1000)
    p.add_argument("--refine", type=positive_int, default=100)
    p.add_argument("--refine-evaluator", type=resolved_name(refine_evaluator), default="supernet:ft20")
    p.add_argument("--final-train", type=positive_int, default=10)
    p.add_argument("--supernet-epochs", type=positive_int, default=3000)
    p.add_argument("--option", action="append", default=None, metavar="KEY=VALUE",
                   help="supernet option (default: max_depth=2, widths=64, dropouts=0.5, split=norm)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None,
                   help="supernet and database folder, new or empty (default: a new folder of "
                        "$METANAS_CACHE/supernet_search_cli)")
    p.add_argument("--name", default="supernet_search_cli")
    args = p.parse_args()
    from nas.supernet import check_options, parse_options

    check_name(args.name, p)
    if args.out is not None and _holds_a_run(Path(args.out)):
        p.error(f"--out {args.out} holds an earlier run (it would resume, not time a search): "
                "pass an empty folder")
    options = args.option or ["max_depth=2", "widths=64", "dropouts=0.5", "split=norm"]
    try:  # the supernet training refused a bad option only once the run had started (exit 1)
        check_options(SPACE, parse_options(options))
    except ValueError as error:
        p.error(str(error))
    info = machine()
    import optuna
    import torch

    from nas.cli import main as cli

    torch.set_num_threads(1)
    out = Path(args.out) if args.out is not None else new_folder(args.name)
    out.mkdir(parents=True, exist_ok=True)
    args.out = str(out)  # recorded with the results
    storage, study = f"sqlite:///{out / 'search.db'}", f"cli-{args.dataset}-s{args.seed}"
    train_cmd = ["supernet", "train", "--dataset", args.dataset, "--out", str(out / "supernet"),
                 "--epochs", str(args.supernet_epochs), "--seed", str(args.seed), "--device", "cpu",
                 "--checkpoint-every", "500", *[x for o in options for x in ("--option", o)]]
    search_cmd = ["search", "--dataset", args.dataset, "--evaluator", "supernet:ft0",
                  "--supernet", str(out / "supernet"), "--strategy", "random", "--trials", str(args.trials),
                  "--seed", str(args.seed), "--storage", storage, "--study", study, "--device", "cpu",
                  "--refine", str(args.refine), "--refine-evaluator", args.refine_evaluator,
                  "--final-train", str(args.final_train), "--quiet"]
    walls = {}
    for label, cmd in (("supernet train", train_cmd), ("search + refine + final", search_cmd)):
        start = time.perf_counter()
        if cli(cmd) != 0:
            raise SystemExit(f"metanas {' '.join(cmd)} failed")
        walls[label] = time.perf_counter() - start
    studies = {}
    for suffix in ("", "-refine", "-final"):
        trials = optuna.load_study(study_name=study + suffix, storage=storage).get_trials(
            states=(optuna.trial.TrialState.COMPLETE,))
        seconds = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials]
        studies[suffix or "search"] = {
            "trials": len(trials), "distinct": len({t.user_attrs["arch"] for t in trials}),
            "seconds": sum(seconds), "seconds_per_trial": sum(seconds) / max(len(seconds), 1),
        }
    final = optuna.load_study(study_name=study + "-final", storage=storage)
    best = max(final.get_trials(states=(optuna.trial.TrialState.COMPLETE,)), key=lambda t: (t.value, -t.number))
    answer = {"val": best.user_attrs.get("val_acc"), "test": best.user_attrs.get("test_acc"),
              "summary": best.user_attrs.get("summary"), "source": best.user_attrs["source_trial"]}
    payload = {"machine": info, "args": vars(args), "wall_seconds": walls, "studies": studies, "answer": answer}
    md = [f"# Two-fidelity supernet search through the CLI ({args.dataset})", "",
          f"- machine: {info['platform']}, {info['cpu_count']} CPUs (shared), load at start {info['loadavg_at_start']}",
          f"- command: `{info['command']}`", f"- date: {info['date']}",
          f"- `metanas {' '.join(train_cmd)}`", f"- `metanas {' '.join(search_cmd)}`", "",
          "| command | wall s |", "|---|---|"]
    md += [f"| {label} | {s:.0f} |" for label, s in walls.items()]
    md += ["", "| study | trials | distinct `arch` attributes | summed trial s | s per trial |", "|---|---|---|---|---|"]
    md += [f"| {name} | {s['trials']} | {s['distinct']} | {s['seconds']:.0f} | {s['seconds_per_trial']:.3f} |"
           for name, s in studies.items()]
    md += ["", f"Answer: {answer['summary']} (search trial {answer['source']}), from scratch val "
           f"{100 * answer['val']:.2f}, test {100 * answer['test']:.2f}."]
    write_results(args.name, payload, "\n".join(md) + "\n")
    print(json.dumps(answer))


def supernet_dataset(text: str) -> str:
    """``--dataset``'s type: the canonical name of a dataset the GNN supernet trains on;
    ``ValueError`` naming the value and the choices (the metanas commands refused it only
    once the run had started)."""
    from nas.tasks import DATASETS, resolve_dataset
    from search_spaces import get_space

    name = resolve_dataset(text)
    levels = get_space(SPACE).levels
    if DATASETS[name].level not in levels:
        raise ValueError(f"dataset {name!r} is an {DATASETS[name].level} task; the {SPACE!r} "
                         f"supernet trains on {list(levels)} tasks")
    return name


def refine_evaluator(text: str) -> str:
    """``--refine-evaluator``'s type: an evaluator (with its variant) that can score the search
    space, as written; ``ValueError`` naming the value and the choices. A supernet evaluator's
    checkpoint is this run's supernet, checked by ``metanas search`` once it is trained (a bad
    name was refused only then, after hours of supernet training)."""
    from nas.evaluators import SupernetEvaluator, get_evaluator
    from search_spaces import get_space

    evaluator = get_evaluator(text)
    if not isinstance(evaluator, SupernetEvaluator):
        evaluator.check_space(get_space(SPACE))
    return text


def _holds_a_run(out: Path) -> bool:
    return (out / "search.db").exists() or (out / "supernet").exists()


def new_folder(name: str) -> Path:
    """A new empty folder ``<name>-XXXXXXXX`` of ``$METANAS_CACHE/supernet_search_cli``, readable by
    the user only: the fixed default ``/tmp/metanas-supernet-search-cli`` was shared by every user
    of the machine and, holding the first run, refused every later one."""
    from nas.tasks import cache_dir

    parent = cache_dir() / "supernet_search_cli"
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=parent))


if __name__ == "__main__":
    main()
