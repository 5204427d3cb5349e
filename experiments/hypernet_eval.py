"""Graph hypernetworks on held-out architectures: accuracy with predicted parameters and no
training against random initialisation and SGD training; Kendall tau between predicted-parameter
and trained accuracy; epochs of training to reach 95% of the trained accuracy from predicted
against random initialisation.

Held-out architectures are never in the GHN's training pool (hashes stored in the checkpoint):
``in-range`` (same depth/width range as training), ``deeper`` (more layers than any training
architecture) and ``wider`` (a layer wider than any training layer).

    python -m experiments.hypernet_eval --setup gnn-cora   # from the root; or cnn-mnist

Writes ``experiments/results/hypernet_eval.{json,md}`` (one section per setup) after every
architecture. The references (random init, SGD-trained) do not depend on the GHN: train them
apart (``--baselines-only --baselines FILE``, e.g. while the GHN trains) and reuse them
(``--baselines FILE``). Two runs train nothing: ``--dev GHN [GHN ...]`` scores GHN variants on
a development set disjoint from the evaluation set (choose variants there), and ``--compare
FILE`` scores ``--hypernet`` on the networks of an earlier evaluation file.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from experiments._results import file_stem_error, positive_int
from experiments.train_hypernets import SETUPS
from metanets.ghn_train import (
    TaskBatches,
    accuracy,
    arch_depth,
    arch_widths,
    load_hypernet,
    predicted_model,
    sample_architectures,
    structure_key,
    training_pool,
)
from nas.tasks import load_task
from nas.train import TrainConfig, seed_everything, train_model
from search_spaces import get_space
from storage.store import replace_atomically

RESULTS = Path(__file__).parent / "results"

#: setup -> (held-out counts per kind, training epochs, training overrides)
#: cnn-mnist: every held-out CNN is trained on the same 20% of MNIST's training images (10,000)
#: for 10 epochs. The CNN space is a model-zoo space whose own ``train_fraction`` (1-10%) with a
#: few epochs gives references of 0.2-0.8 that are not trained networks, which makes
#: predicted/trained ratios meaningless; the architecture's lr and weight decay are kept.
PLAN: dict[str, tuple[dict[str, int], int, dict[str, Any]]] = {
    "gnn-cora": ({"in-range": 4, "deeper": 3, "wider": 3}, 60, {}),
    "cnn-mnist": ({"in-range": 8, "deeper": 8, "wider": 8}, 10, {"train_fraction": 0.2}),
}

#: setup -> options of the space that held-out architectures are drawn from, where the GHN's
#: training range is the whole default space (the CNN GHN trains on 1-3 blocks of <= 16
#: channels; deeper means 4 blocks, wider a 32-channel layer)
HELD_OUT_SPACE: dict[str, dict[str, Any]] = {
    "gnn-cora": {},
    "cnn-mnist": {"max_depth": 4, "widths": (4, 8, 16, 32)},
}


#: first sampling seed of each held-out kind's draw: the evaluation set, and the development set
#: (``--dev``) that variants are chosen on, disjoint from the evaluation set
EVAL_SEED, DEV_SEED = 1000, 2000


def held_out(name: str, seed: int = EVAL_SEED) -> list[tuple[str, Any]]:
    """The held-out architectures of setup ``name`` (kind, architecture), none in the GHN's
    training pool (nor its network with another lr / weight decay / training fraction); drawn
    from ``seed`` on, and for the development set (``seed != EVAL_SEED``) none in the
    evaluation set either."""
    space_name, _, config = SETUPS[name]
    pool = training_pool(get_space(space_name), config)
    space = get_space(space_name, **HELD_OUT_SPACE[name])
    taken = pool + ([a for _, a in held_out(name)] if seed != EVAL_SEED else [])
    exclude = {a.arch_hash for a in taken}
    seen = {structure_key(space, a) for a in taken}  # same network, other lr: seen as well
    counts = PLAN[name][0]
    d, w = config.max_depth, config.max_width
    kinds = {
        "in-range": lambda a: True,
        "deeper": lambda a: arch_depth(a) > d and max(arch_widths(a)) <= w,
        "wider": lambda a: arch_depth(a) <= d and max(arch_widths(a)) > w,
    }
    out = []
    for i, (kind, n) in enumerate(counts.items()):
        rng_max_depth = d if kind == "in-range" else None
        rng_max_width = w if kind == "in-range" else None
        archs = sample_architectures(space, n, seed + i, max_depth=rng_max_depth,
                                     max_width=rng_max_width, exclude=exclude,
                                     predicate=lambda a, k=kind: kinds[k](a)
                                     and structure_key(space, a) not in seen)
        out += [(kind, a) for a in archs]
    return out


def _train(name: str, space: Any, arch: Any, task: Any, model: torch.nn.Module,
           **options: Any) -> dict[str, Any]:
    _, epochs, overrides = PLAN[name]
    cfg = TrainConfig(**{**space.training_config(arch), **overrides}, epochs=epochs, patience=0,
                      seed=0, **options)
    result = train_model(model, task, cfg)
    return {"test_acc": result.metrics["test_acc"], "val_acc": result.metrics["val_acc"],
            "history": [v for _, v in result.history], "seconds": round(result.seconds, 2)}


def run_baseline(name: str, archs: list[tuple[str, Any]] | None = None) -> dict[str, Any]:
    space_name, dataset, _ = SETUPS[name]
    space, task = get_space(space_name), load_task(dataset)
    batches = TaskBatches(task)
    rows = {}
    for kind, arch in archs if archs is not None else held_out(name):
        seed_everything(0)
        model = space.build(arch, task.num_features, task.num_classes, task.level)
        row = {"kind": kind, "arch": arch.to_dict(), "short": arch.short(),
               "random_test_acc": accuracy(model, batches, "test"),
               "random_val_acc": accuracy(model, batches, "val")}
        row["trained"] = _train(name, space, arch, task, model)
        rows[arch.arch_hash] = row
        print(name, "baseline", kind, arch.short(), row["random_test_acc"],
              row["trained"]["test_acc"], flush=True)
    return rows


def run_ghn(name: str, rows: dict[str, Any], hypernet: str) -> None:
    space_name, dataset, _ = SETUPS[name]
    space, task = get_space(space_name), load_task(dataset)
    ghn = load_hypernet(hypernet, task)
    pool = _pool_of(ghn, hypernet, space, name)
    train_hashes = {a.arch_hash for a in pool}
    seen = {structure_key(space, a) for a in pool}
    batches = TaskBatches(task)
    for arch_hash, row in rows.items():
        arch = space.architecture_from_dict(row["arch"])
        assert arch_hash not in train_hashes and structure_key(space, arch) not in seen, \
            f"{row['short']} (or its network with another lr) was in the GHN's training pool"
        start = time.perf_counter()
        model = predicted_model(ghn, space, arch, task, batches)
        row["predict_seconds"] = round(time.perf_counter() - start, 3)
        row["predicted_test_acc"] = accuracy(model, batches, "test")
        row["predicted_val_acc"] = accuracy(model, batches, "val")
        seed_everything(0)
        row["from_predicted"] = _train(name, space, arch, task, model.train())
        print(name, "ghn", row["kind"], row["short"], row["predicted_test_acc"],
              row["from_predicted"]["test_acc"], flush=True)


def epochs_to(history: list[float], start: float, target: float) -> int | None:
    """Epochs until the validation accuracy first reaches ``target`` (0 if it starts there)."""
    if start >= target:
        return 0
    return next((i + 1 for i, v in enumerate(history) if v >= target), None)


def summarise(rows: dict[str, Any]) -> dict[str, Any]:
    from scipy.stats import kendalltau

    done = [r for r in rows.values() if "predicted_test_acc" in r]
    for r in done:
        target = 0.95 * max(r["trained"]["history"])
        r["target_val_acc"] = target
        r["epochs_random"] = epochs_to(r["trained"]["history"], r["random_val_acc"], target)
        r["epochs_predicted"] = epochs_to(r["from_predicted"]["history"], r["predicted_val_acc"], target)
    summary: dict[str, Any] = {}
    for kind in ("all", "in-range", "deeper", "wider"):
        sel = [r for r in done if kind == "all" or r["kind"] == kind]
        if not sel:
            continue
        mean = lambda xs: round(statistics.mean(xs), 4)  # noqa: E731
        pred = [r["predicted_test_acc"] for r in sel]
        trained = [r["trained"]["test_acc"] for r in sel]
        er = [r["epochs_random"] for r in sel]
        ep = [r["epochs_predicted"] for r in sel]
        budget = len(sel[0]["trained"]["history"])
        cap = lambda xs: [budget + 1 if x is None else x for x in xs]  # noqa: E731
        summary[kind] = {
            "n": len(sel), "predicted_test_acc": mean(pred),
            "random_test_acc": mean([r["random_test_acc"] for r in sel]),
            "trained_test_acc": mean(trained),
            "from_predicted_trained_test_acc": mean([r["from_predicted"]["test_acc"] for r in sel]),
            "predicted_over_trained": round(statistics.mean(pred) / statistics.mean(trained), 4),
            "kendall_tau": round(float(kendalltau(pred, trained).statistic), 4) if len(sel) > 2 else None,
            "epochs_to_95_random_mean": mean(cap(er)),
            "epochs_to_95_predicted_mean": mean(cap(ep)),
            "epochs_to_95_random_median": statistics.median(cap(er)),
            "epochs_to_95_predicted_median": statistics.median(cap(ep)),
            "never_reached_random": sum(x is None for x in er),
            "never_reached_predicted": sum(x is None for x in ep),
            "predict_seconds_mean": mean([r["predict_seconds"] for r in sel]),
        }
    return summary


def write_md(record: dict[str, Any]) -> None:
    lines = ["# Graph hypernetworks on held-out architectures", "",
             "Accuracy on the task's test split with GHN-predicted parameters and no training, "
             "against the same architecture with random initialisation (no training) and trained "
             "with Adam (the one training loop, the architecture's lr/weight decay, fixed epochs, "
             "best-validation epoch). Epochs to 95%: first epoch whose validation accuracy reaches "
             "95% of the best validation accuracy of training from random initialisation (0: the "
             "predicted parameters already do; not reached counts as budget + 1). BatchNorm "
             "statistics of predicted models are recomputed on training data. Held-out "
             "architectures share no network with the GHN's training pool (compared without "
             "lr, weight decay and training fraction, which the GHN never sees); `deeper` and "
             "`wider` ones lie outside its training range. cnn-mnist trains every held-out "
             "CNN on the same 20% of MNIST's training images (not the zoo space's own 1-10%, "
             "whose references after a few epochs are not trained networks).", ""]
    for name, section in record["setups"].items():
        lines += [f"## {name}", "",
                  f"Machine: {section['machine']}, {section['cpu_count']} CPUs, load at start "
                  f"{section['load_at_start']}; date {section['date']}; GHN `{section['hypernet']}`; "
                  f"training epochs {section['epochs']}"
                  f"{_overrides(section.get('train_overrides'))}.", "",
                  f"Command: `{section['command']}`",
                  *_baselines_line(section.get("baselines")), "",
                  "| held-out | n | predicted (no training) | random init | trained | predicted/trained "
                  "| Kendall tau | epochs to 95% random (mean/median) | predicted (mean/median) | "
                  "trained from predicted |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for kind, s in section["summary"].items():
            lines.append(
                f"| {kind} | {s['n']} | {s['predicted_test_acc']:.3f} | {s['random_test_acc']:.3f} | "
                f"{s['trained_test_acc']:.3f} | {s['predicted_over_trained']:.2f} | {s['kendall_tau']} | "
                f"{s['epochs_to_95_random_mean']:.1f} / {s['epochs_to_95_random_median']} | "
                f"{s['epochs_to_95_predicted_mean']:.1f} / {s['epochs_to_95_predicted_median']} | "
                f"{s['from_predicted_trained_test_acc']:.3f} |")
        lines += ["", "| kind | architecture | predicted | random | trained | epochs random | epochs predicted |",
                  "|---|---|---|---|---|---|---|"]
        for r in section["rows"].values():
            if "predicted_test_acc" in r:
                lines.append(f"| {r['kind']} | {r['short']} | {r['predicted_test_acc']:.3f} | "
                             f"{r['random_test_acc']:.3f} | {r['trained']['test_acc']:.3f} | "
                             f"{r['epochs_random']} | {r['epochs_predicted']} |")
        lines.append("")
    (RESULTS / "hypernet_eval.md").write_text("\n".join(lines))


def _baselines_line(baselines: dict[str, Any] | None) -> list[str]:
    if not baselines:
        return []
    return ["", f"References (random init, trained) from `{baselines['file']}`: command "
                f"`{baselines['command']}`, date {baselines['date']}, load at start "
                f"{baselines['load_at_start']}."]


def _overrides(overrides: dict[str, Any] | None) -> str:
    return "".join(f", {k} {v}" for k, v in (overrides or {}).items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", required=True, choices=list(PLAN))
    parser.add_argument("--hypernet", default=None, help="default pretrained:<setup>")
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument(
        "--baselines", type=Path, default=None,
        help="JSON file of the held-out architectures' references (random init, SGD-trained): "
             "written by --baselines-only, reused otherwise, so a new GHN is scored without "
             "retraining them (and the references can train while the GHN does)")
    parser.add_argument("--baselines-only", action="store_true",
                        help="train the references into --baselines (resumable) and stop")
    parser.add_argument(
        "--dev", nargs="+", default=None, metavar="HYPERNET",
        help="score these GHNs with no training (validation accuracy) on a development set "
             "drawn like the held-out one but disjoint from it, to choose between variants "
             "without looking at the evaluation set; writes hypernet_eval_dev_<setup>.{json,md}")
    parser.add_argument("--dev-name", default=None, metavar="NAME",
                        help="with --dev: write NAME.{json,md} instead (another round of "
                             "variants beside an earlier one)")
    parser.add_argument(
        "--compare", type=Path, default=None, metavar="FILE",
        help="score --hypernet with no training on the architectures of an earlier evaluation "
             "FILE (its hypernet_eval.json), beside that file's predicted and trained accuracy, "
             "into hypernet_eval_compare_<FILE stem>.{json,md}; architectures in the GHN's "
             "training pool are marked and left out of the summary")
    args = parser.parse_args()
    if args.dev_name is not None:
        if args.dev is None:
            parser.error("--dev-name names the table of a --dev run: give --dev GHN ...")
        error = file_stem_error("--dev-name", args.dev_name)
        if error:
            parser.error(f"{error} in {RESULTS}")
    scoring = [flag for flag, value in (("--dev", args.dev), ("--compare", args.compare)) if value]
    if len(scoring) > 1:
        parser.error("--dev and --compare are separate runs: give one")
    if scoring and (args.baselines or args.baselines_only):
        parser.error(f"{scoring[0]} trains nothing: it takes no --baselines / --baselines-only")
    if args.compare is not None and not args.compare.is_file():
        parser.error(f"--compare {args.compare} not found")
    if args.baselines_only and args.baselines is None:
        parser.error("--baselines-only needs --baselines FILE")
    if not args.baselines_only and args.baselines is not None and not args.baselines.is_file():
        parser.error(f"--baselines {args.baselines} not found (write it with --baselines-only)")
    torch.set_num_threads(args.threads)
    if args.dev is not None:
        try:
            rows = develop(args.setup, args.dev)
        except ValueError as error:
            parser.error(str(error))
        write_development(args.setup, rows, _header(args), args.dev_name)
        return
    if args.compare is not None:
        hypernet = args.hypernet or f"pretrained:{args.setup}"
        try:
            rows = compare(args.setup, args.compare, hypernet)
        except ValueError as error:
            parser.error(str(error))
        write_comparison(args.setup, args.compare, hypernet, rows, _header(args))
        return
    archs = held_out(args.setup)
    if args.baselines_only:
        write_baselines(args.setup, archs, args.baselines, _header(args))
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    hypernet = args.hypernet or f"pretrained:{args.setup}"
    header = _header(args)
    stored: dict[str, Any] = {}
    if args.baselines is not None:
        try:
            stored, header["baselines"] = read_baselines(args.setup, archs, args.baselines)
        except ValueError as error:
            parser.error(str(error))
    rows: dict[str, Any] = {}
    for kind, arch in archs:
        if arch.arch_hash in stored:
            rows[arch.arch_hash] = stored[arch.arch_hash]
        else:
            rows.update(run_baseline(args.setup, [(kind, arch)]))
        run_ghn(args.setup, {arch.arch_hash: rows[arch.arch_hash]}, hypernet)
        _write(args.setup, header, hypernet, rows)  # after every architecture
    print(json.dumps(summarise(rows), indent=1))


def compare(name: str, earlier: Path, hypernet: str) -> list[dict[str, Any]]:
    """No-training test accuracy of ``hypernet`` on the rows of an earlier evaluation file,
    each with the file's kind, predicted and trained accuracy and whether its network (without
    lr / weight decay / training fraction) is in the GHN's training pool."""
    section = json.loads(earlier.read_text()).get("setups", {}).get(name)
    if not section or not section.get("rows"):
        raise ValueError(f"--compare {earlier} holds no {name!r} evaluation rows")
    space_name, dataset, _ = SETUPS[name]
    space, task = get_space(space_name), load_task(dataset)
    ghn = load_hypernet(hypernet, task)
    seen = {structure_key(space, a) for a in _pool_of(ghn, hypernet, space, name)}
    batches = TaskBatches(task)
    rows = []
    for row in section["rows"].values():
        if "predicted_test_acc" not in row:
            continue
        arch = space.architecture_from_dict(row["arch"])
        model = predicted_model(ghn, space, arch, task, batches)
        rows.append({"kind": row["kind"], "short": row["short"], "arch": row["arch"],
                     "in_training_pool": structure_key(space, arch) in seen,
                     "trained_test_acc": row["trained"]["test_acc"],
                     "earlier_predicted_test_acc": row["predicted_test_acc"],
                     "predicted_test_acc": accuracy(model, batches, "test")})
        print(name, "compare", row["kind"], row["short"], row["predicted_test_acc"],
              rows[-1]["predicted_test_acc"], flush=True)
    return rows


def develop(name: str, hypernets: list[str]) -> list[dict[str, Any]]:
    """No-training validation accuracy of each GHN in ``hypernets`` on the development set."""
    space_name, dataset, _ = SETUPS[name]
    space, task = get_space(space_name), load_task(dataset)
    ghns = {h: load_hypernet(h, task) for h in hypernets}
    for hypernet, ghn in ghns.items():
        _pool_of(ghn, hypernet, space, name)
    batches = TaskBatches(task)
    rows = []
    for kind, arch in held_out(name, DEV_SEED):
        row = {"kind": kind, "short": arch.short(), "arch": arch.to_dict(), "val_acc": {}}
        for hypernet, ghn in ghns.items():
            row["val_acc"][hypernet] = accuracy(
                predicted_model(ghn, space, arch, task, batches), batches, "val")
        print(name, "dev", kind, arch.short(), row["val_acc"], flush=True)
        rows.append(row)
    return rows


def write_development(name: str, rows: list[dict[str, Any]], header: dict[str, Any],
                      stem: str | None = None) -> None:
    hypernets = list(rows[0]["val_acc"]) if rows else []
    kinds = ["all", *dict.fromkeys(r["kind"] for r in rows)]
    summary = {h: {k: round(statistics.mean(r["val_acc"][h] for r in rows
                                            if k == "all" or r["kind"] == k), 4) for k in kinds}
               for h in hypernets}
    record = {**header, "setup": name, "seed": DEV_SEED, "summary": summary, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = stem or f"hypernet_eval_dev_{name}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(record, indent=1) + "\n")
    lines = [f"# GHN variants on the development set ({name})", "",
             "Mean validation accuracy with predicted parameters and no training, on networks "
             f"drawn like the held-out ones (seeds {DEV_SEED}+) but disjoint from the training "
             "pool and from the evaluation set; variants are chosen here, never on the "
             "evaluation set.", "",
             f"Machine: {header['machine']}, {header['cpu_count']} CPUs, load at start "
             f"{header['load_at_start']}; date {header['date']}.", "",
             f"Command: `{header['command']}`", "",
             "| GHN | " + " | ".join(f"{k} (n={sum(k == 'all' or r['kind'] == k for r in rows)})"
                                     for k in kinds) + " |",
             "|---|" + "---|" * len(kinds)]
    lines += [f"| `{h}` | " + " | ".join(f"{summary[h][k]:.3f}" for k in kinds) + " |"
              for h in hypernets]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print(json.dumps(summary, indent=1))


def _pool_of(ghn: Any, hypernet: str, space: Any, name: str) -> list[Any]:
    """The GHN's training pool: the setup's pool, checked against the hashes in the checkpoint."""
    _, _, config = SETUPS[name]
    pool = training_pool(space, config)
    hashes = set(ghn.metadata.get("train_hashes", []))
    if hashes and hashes != {a.arch_hash for a in pool}:
        raise ValueError(f"{hypernet} was not trained on the pool of SETUPS[{name!r}]")
    return pool


def comparison_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per earlier kind and overall, over rows outside the training pool: mean predicted over
    mean trained accuracy for the earlier GHN and this one."""
    summary = {}
    for kind in ("all", "in-range", "deeper", "wider"):
        sel = [r for r in rows if (kind == "all" or r["kind"] == kind) and not r["in_training_pool"]]
        if not sel:
            continue
        trained = statistics.mean(r["trained_test_acc"] for r in sel)
        summary[kind] = {
            "n": len(sel), "in_training_pool_left_out": sum(
                r["in_training_pool"] for r in rows if kind == "all" or r["kind"] == kind),
            "trained_test_acc": round(trained, 4),
            "earlier_over_trained": round(
                statistics.mean(r["earlier_predicted_test_acc"] for r in sel) / trained, 4),
            "predicted_over_trained": round(
                statistics.mean(r["predicted_test_acc"] for r in sel) / trained, 4),
        }
    return summary


def write_comparison(name: str, earlier: Path, hypernet: str, rows: list[dict[str, Any]],
                     header: dict[str, Any]) -> None:
    summary = comparison_summary(rows)
    stem = f"hypernet_eval_compare_{earlier.stem}"
    record = {**header, "setup": name, "hypernet": hypernet, "earlier": str(earlier),
              "summary": summary, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(record, indent=1) + "\n")
    lines = [f"# {hypernet} on the architectures of `{earlier}` ({name})", "",
             f"No-training test accuracy of `{hypernet}` beside the earlier file's GHN and the "
             "file's trained references (same networks, no training here). Kinds are the "
             "earlier evaluation's; networks in this GHN's training pool are marked and left "
             "out of the summary.", "",
             f"Machine: {header['machine']}, {header['cpu_count']} CPUs, load at start "
             f"{header['load_at_start']}; date {header['date']}.", "",
             f"Command: `{header['command']}`", "",
             "| earlier kind | n | left out (in pool) | trained | earlier predicted/trained | "
             "predicted/trained |", "|---|---|---|---|---|---|"]
    lines += [f"| {kind} | {s['n']} | {s['in_training_pool_left_out']} | {s['trained_test_acc']:.3f} "
              f"| {s['earlier_over_trained']:.2f} | {s['predicted_over_trained']:.2f} |"
              for kind, s in summary.items()]
    lines += ["", "| earlier kind | architecture | in pool | trained | earlier predicted | predicted |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {r['kind']} | {r['short']} | {'yes' if r['in_training_pool'] else 'no'} | "
              f"{r['trained_test_acc']:.3f} | {r['earlier_predicted_test_acc']:.3f} | "
              f"{r['predicted_test_acc']:.3f} |" for r in rows]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print(json.dumps(summary, indent=1))


def write_baselines(name: str, archs: list[tuple[str, Any]], path: Path,
                    header: dict[str, Any]) -> None:
    """Train the references of ``archs`` into ``path``, one architecture at a time; those
    already in the file (an interrupted run) are kept."""
    record = _baselines_record(name, path, header)
    for kind, arch in archs:
        if arch.arch_hash not in record["rows"]:
            record["rows"].update(run_baseline(name, [(kind, arch)]))
            path.parent.mkdir(parents=True, exist_ok=True)
            replace_atomically(path, (json.dumps(record, indent=1) + "\n").encode())


def read_baselines(name: str, archs: list[tuple[str, Any]],
                   path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The stored references of ``archs`` and how they were made; refuses a file written for
    another setup, training plan or set of held-out architectures."""
    record = _baselines_record(name, path, {})
    wanted = {arch.arch_hash for _, arch in archs}
    foreign = sorted(record["rows"][h]["short"] for h in set(record["rows"]) - wanted)
    if foreign:
        raise ValueError(f"--baselines {path} holds architectures that are not held out for "
                         f"{name!r}: {foreign[:3]}")
    return record["rows"], {"file": str(path), **record["header"]}


def _baselines_record(name: str, path: Path, header: dict[str, Any]) -> dict[str, Any]:
    plan = {"setup": name, "epochs": PLAN[name][1], "train_overrides": PLAN[name][2]}
    if not path.is_file():
        return {**plan, "header": header, "rows": {}}
    record = json.loads(path.read_text())
    found = {key: record.get(key) for key in plan}
    if found != json.loads(json.dumps(plan)):
        raise ValueError(f"--baselines {path} was written for {found}, not {plan}")
    return record


def _write(name: str, header: dict[str, Any], hypernet: str, rows: dict[str, Any]) -> None:
    out = RESULTS / "hypernet_eval.json"
    record = json.loads(out.read_text()) if out.is_file() else {"setups": {}}
    record["setups"][name] = {**header, "hypernet": hypernet, "epochs": PLAN[name][1],
                              "train_overrides": PLAN[name][2],
                              "summary": summarise(rows), "rows": rows}
    out.write_text(json.dumps(record, indent=1) + "\n")
    write_md(record)


def _header(args: argparse.Namespace) -> dict[str, Any]:
    return {"machine": platform.platform(), "cpu_count": os.cpu_count(),
            "load_at_start": [round(x, 1) for x in os.getloadavg()],
            "command": "python -m experiments.hypernet_eval " + " ".join(sys.argv[1:]),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


if __name__ == "__main__":
    main()
