"""Ranking quality of the supernet: inherited-weight accuracy against from-scratch accuracy.

``--space gnn`` on a node task (default Cora): trains a supernet with SPOS (or reuses ``--supernet``;
``--option KEY=VALUE`` as in ``metanas supernet train``; without ``--supernet`` it is trained, and
resumed, in a folder of ``$METANAS_CACHE/supernet_ranking`` named by every setting that determines
it, see :func:`supernet_folder`; a ``--supernet`` checkpoint is resumed up to ``--supernet-epochs``
as ``metanas supernet train`` resumes one, and refused if trained further or otherwise, see
:func:`reuse_error`), draws ``--archs`` architectures uniformly
from the supernet's covered sub-space (seeded by ``--arch-seed``; lr and weight decay fixed at
5e-3 / 5e-4), scores each with inherited weights (BatchNorm recalibrated, then fine-tuned for each
of ``--variants`` epochs) and trains each from scratch with the ``train`` evaluator once per
``--ref-seeds`` seed (``--epochs`` / ``--patience``, the evaluator's defaults). The reference is
the mean over those seeds: two seeds of one architecture disagree enough that a single-seed
reference caps any evaluator's tau (the seed-vs-seed tau is reported). Reports Kendall tau
between each variant's inherited validation accuracy (what a search selects on) and the
reference's validation and test accuracies, and writes every row (reused by supernet_cost.py).

``--extend-reference NAME --ref-seeds ...`` adds from-scratch runs of more seeds to the rows of an
earlier result (its inherited scores kept, no supernet loaded) and reports the taus again.

``--control NAME --control-epochs 5 20 --control-seed S``: the short-training control of the
``ftN`` scorers over the rows of an earlier result (its scores and reference kept, no supernet
loaded): each architecture trained from random weights with the fine-tuning's settings for each
of ``--control-epochs`` epochs, added as the variant ``scratchN``, so the taus show what the
inherited weights add to N epochs of training.

``--space nasbench-graph``: the supernet over NAS-Bench-Graph's cells with the dataset's benchmark
setting; the reference accuracy is the benchmark table's (mean over its runs), nothing is trained
from scratch.

    python experiments/supernet_ranking.py --dataset cora --archs 100 --supernet-epochs 3000 \
        --option dropouts=0.5 --option split=norm --variants 0 5 --ref-seeds 0 1 2 --arch-seed 7
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import random
from pathlib import Path
from typing import Any

from experiments._results import positive_int, resolved_name, result_file_error
from experiments._supernet_common import check_name, kendall_tau, machine, write_results


def main() -> None:
    parser = _parser()
    args = parser.parse_args()
    check_name(args.name, parser)
    options = _supernet_options(parser, args)
    from experiments._supernet_common import RESULTS

    for option, names in (("--merge", args.merge or []), ("--rescore", [args.rescore]),
                          ("--reuse-reference", [args.reuse_reference]),
                          ("--extend-reference", [args.extend_reference]),
                          ("--control", [args.control])):
        for name in filter(None, names):
            error = result_file_error(option, name, "supernet_ranking.py", RESULTS)
            if error:
                parser.error(error)
    if args.rescore and not args.supernet:
        parser.error(f"--rescore {args.rescore} needs --supernet FOLDER: the trained supernet whose "
                     "inherited weights re-score the rows")
    if args.supernet and not (args.merge or args.rescore):
        error = reuse_error(Path(args.supernet), _train_config(args))
        if error:
            parser.error(error)
    if args.extend_reference:
        source = json.loads((RESULTS / f"{args.extend_reference}.json").read_text())
        error = extend_error(source, args.ref_seeds)
        if error:
            parser.error(f"--extend-reference {args.extend_reference}: {error}")
    if args.control:
        source = json.loads((RESULTS / f"{args.control}.json").read_text())
        if source["args"].get("space", "gnn") != "gnn":
            parser.error(f"--control {args.control}: its architectures are NAS-Bench-Graph cells "
                         "scored against the table; the control trains gnn-space rows only")
    info = machine()
    if args.control:
        return _control(args, info, source)
    if args.merge:
        return _merge(args, info)
    if args.extend_reference:
        return _extend(args, info, source)
    if args.rescore:
        return _rescore(args, info)
    from nas.train import resolve_device

    args.device = str(resolve_device(args.device))
    import torch

    torch.set_num_threads(args.threads)
    from nas.evaluators import SupernetEvaluator, TrainEvaluator
    from nas.supernet import build_supernet, train_supernet
    from nas.tasks import load_task

    task = load_task(args.dataset)
    supernet = build_supernet(args.space, task, **options)
    config = _train_config(args)
    folder = Path(args.supernet) if args.supernet else supernet_folder(
        args.space, task.name, supernet.config(), dataclasses.asdict(config))
    args.supernet_folder = str(folder)
    print(f"supernet folder: {folder}", flush=True)
    trained = train_supernet(supernet, task, config, out=folder)
    args.supernet_repr = repr(supernet)
    print(f"supernet: {trained.epochs} epochs in {trained.seconds:.1f}s ({supernet})", flush=True)
    rng = random.Random(args.seed + 1 if args.arch_seed is None else args.arch_seed)
    archs = _distinct(supernet, rng, args.archs)[args.start:args.stop]
    scorers = {ft: SupernetEvaluator(str(folder), finetune_epochs=ft) for ft in args.variants}
    trainer = TrainEvaluator(epochs=args.epochs, patience=args.patience)
    reused = _reference_runs(args.reuse_reference) if args.reuse_reference else {}
    first, later = args.variants[0], args.variants[1:]
    rows = []
    for i, arch in enumerate(archs):
        inherited = {ft: s.evaluate(arch, supernet.space, task, seed=args.seed, device=args.device)
                     for ft, s in scorers.items() if args.refine_top is None or ft == first}
        key = json.dumps(arch.to_dict(), sort_keys=True)
        if key in reused:
            scratch = reused[key]
        elif args.space == "gnn":
            scratch = [trainer.evaluate(arch, supernet.space, task, seed=s, device=args.device) for s in args.ref_seeds]
        else:
            scratch = [_table(arch, args.dataset)]
        rows.append(_row(arch, inherited, scratch))
        if len(rows) >= 3:  # results so far, in case the run is cut short
            _report(args, info, trained, rows, quiet=True)
        r = rows[-1]
        print(f"[{i + 1}/{len(archs)}] {arch.short():40s} inherited val "
              + " ".join(f"ft{ft} {v['val']:.3f}" for ft, v in r["variants"].items())
              + f" | scratch val {r['scratch_val']:.3f} test {r['scratch_test']:.3f} "
              f"({sum(v['seconds'] for v in r['variants'].values()):.2f}s / "
              f"{sum(run['seconds'] for run in r['scratch_runs']):.1f}s)", flush=True)
    if args.refine_top is not None:  # the later variants only on the best by the first
        best = sorted(zip(rows, archs), key=lambda pair: pair[0]["variants"][str(first)]["val"], reverse=True)
        for j, (row, arch) in enumerate(best[:args.refine_top]):
            for ft in later:
                ev = scorers[ft].evaluate(arch, supernet.space, task, seed=args.seed, device=args.device)
                row["variants"][str(ft)] = {"val": ev.metrics["val_acc"], "test": ev.metrics["test_acc"],
                                            "seconds": ev.seconds}
            print(f"[refine {j + 1}/{args.refine_top}] {arch.short():40s} "
                  + " ".join(f"ft{ft} {row['variants'][str(ft)]['val']:.3f}" for ft in later), flush=True)
    _report(args, info, trained, rows)


def _supernet_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    """The supernet's options: ``--max-depth`` and ``--width`` (GNN space), then ``--option``;
    an option the supernet does not take, or one not written KEY=VALUE, is refused through
    ``parser`` naming it and the valid ones (it was refused after loading the task, with a
    traceback)."""
    from nas.supernet import check_options, parse_options

    options = {"max_depth": args.max_depth, "widths": (args.width,)} if args.space == "gnn" else {}
    try:
        options.update(parse_options(args.option))
        check_options(args.space, options)
    except ValueError as error:
        parser.error(str(error))
    return options


def _train_config(args: argparse.Namespace) -> Any:
    """The :class:`nas.supernet.SupernetTrainConfig` of ``--supernet-epochs``, ``--seed``,
    ``--sampling`` and ``--device``."""
    from nas.supernet import SupernetTrainConfig

    return SupernetTrainConfig(
        epochs=args.supernet_epochs, seed=args.seed, device=args.device, sampling=args.sampling,
    )


#: the flags of the training settings a reused supernet checkpoint must share with this run
#: (``nas.supernet.RESUME_SETTINGS``; the others are SupernetTrainConfig's defaults here): the
#: device and the checkpoint interval do not change the weights, and fewer epochs are trained
#: on, as a resumed run is
REUSED_SETTINGS = {"seed": "--seed", "sampling": "--sampling", "lr": "lr", "weight_decay": "weight_decay",
                   "batch_size": "batch_size", "amp": "amp"}


def reuse_error(folder: Path, config: Any) -> str | None:
    """Why the supernet checkpoint in ``folder`` (``--supernet``) is not this run's supernet, else
    ``None`` (no checkpoint: trained there).

    As ``metanas supernet train`` does, a checkpoint of fewer epochs than ``--supernet-epochs``
    is resumed up to them (and :func:`nas.supernet.train_supernet` refuses another space,
    supernet or dataset). One trained for more epochs, or with another seed, sampling or
    optimiser setting, is refused: it was used as it was, its rows reported under settings it
    was not trained with. So is a ``supernet.json`` that is no checkpoint's.
    """
    import dataclasses

    from nas.supernet import describe_differences, has_checkpoint, read_meta, training_differences

    try:
        if not has_checkpoint(folder):
            return None
        meta = read_meta(folder)
    except ValueError as error:
        return f"--supernet {folder}: {error}"
    differ = training_differences(meta["train"], dataclasses.asdict(config))
    if differ:
        return (f"--supernet {folder} holds a supernet {describe_differences(differ, REUSED_SETTINGS)}"
                ": pass the settings it was trained with, or another folder")
    if meta["epoch"] > config.epochs:
        return (f"--supernet {folder} holds a supernet trained {meta['epoch']} epochs, more than "
                f"--supernet-epochs {config.epochs}: pass --supernet-epochs {meta['epoch']} (or more, "
                "to train it further), or another folder")
    return None


def supernet_folder(space: str, dataset: str, supernet: dict[str, Any], train: dict[str, Any]) -> Path:
    """The folder a supernet is trained (and resumed) in when no ``--supernet`` is given: in
    ``$METANAS_CACHE/supernet_ranking`` (see :func:`nas.tasks.cache_dir`), named by the space, the
    dataset and a digest of the supernet's options and its training settings (epochs, seed,
    sampling, device...). A run with other settings trains a supernet of its own instead of
    resuming, or silently reusing, one trained otherwise (one fixed /tmp folder per space, dataset
    and seed did)."""
    from nas.tasks import cache_dir

    settings = json.dumps({"supernet": supernet, "train": train}, sort_keys=True, default=str)
    digest = hashlib.sha256(settings.encode()).hexdigest()[:16]
    return cache_dir() / "supernet_ranking" / f"{space}-{dataset}-{digest}"


def _reference_runs(name: str) -> dict:
    """From-scratch runs of an earlier result file, by architecture (same reference, another
    supernet): ``{arch json: [Evaluation, ...]}``."""
    from nas.evaluators import Evaluation

    from experiments._supernet_common import RESULTS

    out = {}
    for row in json.loads((RESULTS / f"{name}.json").read_text())["rows"]:
        out[json.dumps(row["arch"], sort_keys=True)] = [
            Evaluation(metrics={"val_acc": r["val"], "test_acc": r["test"]}, epochs=r["epochs"], seconds=r["seconds"])
            for r in row["scratch_runs"]
        ]
    return out


def extend_error(source: dict, ref_seeds: list[int]) -> str | None:
    """Why the from-scratch reference of result ``source`` cannot be extended to ``ref_seeds``
    (None when it can): only the GNN space has from-scratch runs, the new seeds must include the
    result's own (their runs are kept) and add at least one."""
    if source["args"].get("space", "gnn") != "gnn":
        return (f"its reference is the {source['args']['space']} table, not from-scratch training; "
                "only a gnn-space result can be extended")
    have = list(source["args"]["ref_seeds"])
    if len(set(ref_seeds)) != len(ref_seeds):
        return f"--ref-seeds {ref_seeds} names a seed twice"
    if not set(have) <= set(ref_seeds) or set(ref_seeds) == set(have):
        return (f"--ref-seeds {ref_seeds} must hold the result's seeds {have} and at least one more; "
                "the result's runs are kept and the other seeds trained")
    return None


def _extend(args, info, source: dict) -> None:
    """The rows of an earlier result with from-scratch runs of more training seeds: inherited
    scores and the result's own runs are kept as recorded (no supernet is loaded), the runs of
    the seeds it lacks are trained with its ``--epochs`` / ``--patience``, and the reference
    (the mean over all seeds) and every tau are computed again."""
    import torch

    from nas.evaluators import TrainEvaluator
    from nas.tasks import load_task
    from search_spaces import GNNArchitecture, GNNSpace

    torch.set_num_threads(args.threads)
    have = list(source["args"]["ref_seeds"])
    missing = [s for s in args.ref_seeds if s not in have]
    trained = _take_settings(args, source, "as in the extended result")
    args.ref_seeds = have + missing  # the order of every row's runs
    task, space = load_task(args.dataset), GNNSpace()
    trainer = TrainEvaluator(epochs=args.epochs, patience=args.patience)
    rows = []
    selected = source["rows"][args.start:args.stop]
    for i, row in enumerate(selected):
        arch = GNNArchitecture.from_dict(row["arch"])
        new = [trainer.evaluate(arch, space, task, seed=s, device=args.device) for s in missing]
        runs = row["scratch_runs"] + [{"val": ev.metrics["val_acc"], "test": ev.metrics["test_acc"],
                                       "seconds": ev.seconds, "epochs": ev.epochs} for ev in new]
        rows.append({**row, **_reference(runs)})
        if len(rows) >= 3:  # results so far, in case the run is cut short
            _report(args, info, trained, rows, quiet=True)
        print(f"[{i + 1}/{len(selected)}] {arch.short():40s} scratch test "
              + " ".join(f"{r['test']:.3f}" for r in runs), flush=True)
    _report(args, info, trained, rows)


def _control(args, info, source: dict) -> None:
    """The rows of an earlier result with the short-training control added: each architecture
    built with random weights (seeded by ``--control-seed``) and trained for each of
    ``--control-epochs`` epochs with the settings of a fine-tune of as many epochs
    (:func:`nas.evaluators.finetune_config`), stored as the variant ``scratchN``; the result's
    scores and reference are kept as recorded and every tau is reported again."""
    import torch

    from nas.evaluators import finetune_config
    from nas.tasks import load_task
    from nas.train import resolve_device, seed_everything, train_model
    from search_spaces import GNNArchitecture, GNNSpace

    torch.set_num_threads(args.threads)
    device = str(resolve_device(args.device))
    trained = _take_settings(args, source, "as in the controlled result")
    task, space = load_task(args.dataset), GNNSpace()
    rows = []
    selected = source["rows"][args.start:args.stop]
    for i, row in enumerate(selected):
        arch = GNNArchitecture.from_dict(row["arch"])
        variants = dict(row["variants"])
        for epochs in args.control_epochs:
            seed_everything(args.control_seed)
            model = space.build(arch, task.num_features, task.num_classes, task.level)
            result = train_model(model, task, finetune_config(
                space, arch, epochs, seed=args.control_seed, device=device))
            variants[f"scratch{epochs}"] = {"val": result.metrics["val_acc"], "test": result.metrics["test_acc"],
                                            "seconds": result.seconds}
        rows.append({**row, "variants": variants})
        if len(rows) >= 3:  # results so far, in case the run is cut short
            _report(args, info, trained, rows, quiet=True)
        print(f"[{i + 1}/{len(selected)}] {arch.short():40s} "
              + " ".join(f"{_label(k)} {v['val']:.3f}" for k, v in variants.items()), flush=True)
    _report(args, info, trained, rows)


#: the run settings that a report of an earlier result's rows takes from that result
RESULT_SETTINGS = ("dataset", "space", "epochs", "patience", "max_depth", "width", "seed", "ref_seeds")


def _take_settings(args, result: dict, supernet_repr: str):  # noqa: ANN001, ANN202
    """Set ``args``' :data:`RESULT_SETTINGS` to those ``result`` was run with (results written
    before the space was recorded are gnn-space ones) and return its supernet's training
    (``epochs``, ``seconds``) for :func:`_report`; ``supernet_repr`` where it names no supernet."""
    import types

    for key in RESULT_SETTINGS:
        setattr(args, key, result["args"].get(key, "gnn" if key == "space" else None))
    args.supernet_repr = result["args"].get("supernet_repr", supernet_repr)
    return types.SimpleNamespace(epochs=result["supernet_epochs"], seconds=result["supernet_seconds"])


def _label(variant: str) -> str:
    """``ft20`` for an inherited-weight scorer (variant ``"20"``), the name of any other."""
    return f"ft{variant}" if variant.isdigit() else variant


def _merge(args, info) -> None:
    """Rows of several shard runs (same seed, same supernet) reported as one run."""
    import json

    from experiments._supernet_common import RESULTS

    parts = [json.loads((RESULTS / f"{name}.json").read_text()) for name in args.merge]
    unique: dict[str, dict] = {}
    for part in parts:
        for row in part["rows"]:
            unique.setdefault(json.dumps(row["arch"], sort_keys=True), row)
    rows = list(unique.values())
    trained = _take_settings(args, parts[0], "see shards")
    info["shards"] = [p["machine"] for p in parts]
    _report(args, info, trained, rows)


def _rescore(args, info) -> None:
    """Kendall tau of evaluator variants (BatchNorm recalibration off/on, fine-tuning epochs)
    over the from-scratch rows of an earlier run: only the inherited scoring is recomputed."""
    import json

    import torch

    from experiments._supernet_common import RESULTS
    from nas.evaluators import SupernetEvaluator
    from nas.tasks import load_task
    from search_spaces import GNNArchitecture, GNNSpace

    torch.set_num_threads(args.threads)
    source = json.loads((RESULTS / f"{args.rescore}.json").read_text())
    rows, task, space = source["rows"], load_task(args.dataset), GNNSpace()
    variants = [(False, 0)] + [(True, k) for k in args.finetune_epochs]
    out = []
    for recalibrate, epochs in variants:
        scorer = SupernetEvaluator(args.supernet, recalibrate=recalibrate, finetune_epochs=epochs)
        scores, seconds = [], 0.0
        for row in rows:
            ev = scorer.evaluate(GNNArchitecture.from_dict(row["arch"]), space, task, seed=args.seed, device=args.device)
            scores.append(ev.metrics["val_acc"])
            seconds += ev.seconds
        out.append({
            "recalibrate": recalibrate, "finetune_epochs": epochs, "seconds_per_arch": seconds / len(rows),
            "tau_val": kendall_tau(scores, [r["scratch_val"] for r in rows]),
            "tau_test": kendall_tau(scores, [r["scratch_test"] for r in rows]),
        })
        print(out[-1], flush=True)
    md = [f"# Supernet ranking on {args.dataset}: evaluator variants ({len(rows)} archs of `{args.rescore}`)", "",
          f"- machine: {info['platform']}, {info['cpu_count']} CPUs, load at start {info['loadavg_at_start']}",
          f"- command: `{info['command']}`", f"- date: {info['date']}", "",
          "| BN recalibration | fine-tuning epochs | s / arch | tau vs scratch val | tau vs scratch test |",
          "|---|---|---|---|---|"]
    md += [f"| {o['recalibrate']} | {o['finetune_epochs']} | {o['seconds_per_arch']:.2f} | "
           f"{o['tau_val']:.3f} | {o['tau_test']:.3f} |" for o in out]
    write_results(args.name, {"machine": info, "args": vars(args), "variants": out}, "\n".join(md) + "\n")


def _table(arch, dataset: str):
    from nas.evaluators import Evaluation
    from nas.evaluators._table import query

    row = query(arch, dataset)
    return Evaluation(metrics={"val_acc": row.val_acc, "test_acc": row.test_acc}, epochs=0)


def _parser() -> argparse.ArgumentParser:
    from nas.tasks import resolve_dataset

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", type=resolved_name(resolve_dataset), default="cora")
    p.add_argument("--space", default="gnn", choices=["gnn", "nasbench-graph"])
    p.add_argument("--archs", type=positive_int, default=50)
    p.add_argument("--supernet", default=None,
                   help="checkpoint folder: trained there, or resumed up to --supernet-epochs; a "
                        "checkpoint of more epochs or of another --seed or --sampling is refused "
                        "(default: a folder of $METANAS_CACHE/supernet_ranking named by the space, "
                        "the dataset, the supernet options and the training settings, so other "
                        "settings train another supernet)")
    p.add_argument("--supernet-epochs", type=positive_int, default=500)
    p.add_argument("--max-depth", type=positive_int, default=2)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="supernet option as in `metanas supernet train --option`, e.g. dropouts=0.5, split=norm")
    p.add_argument("--epochs", type=positive_int, default=200, help="from-scratch epochs (the train evaluator's default)")
    p.add_argument("--patience", type=int, default=50, help="from-scratch early-stopping patience")
    p.add_argument("--ref-seeds", type=int, nargs="+", default=[0], metavar="SEED",
                   help="training seeds of the from-scratch reference; the reference is their mean")
    p.add_argument("--variants", type=int, nargs="+", default=[0], metavar="FT",
                   help="inherited-weight scorers to compare: fine-tuning epochs of each (0: none)")
    p.add_argument("--refine-top", type=positive_int, default=None, metavar="N",
                   help="score every architecture with the first variant, the other variants only "
                        "the N best by it (what a two-fidelity search re-scores)")
    p.add_argument("--reuse-reference", default=None, metavar="NAME",
                   help="take the from-scratch runs of architectures already in result NAME instead of training them")
    p.add_argument("--extend-reference", default=None, metavar="NAME",
                   help="only add from-scratch runs of the --ref-seeds that result NAME lacks to its "
                        "rows (its inherited scores, runs, epochs and patience kept) and report "
                        "into --name; --start / --stop select a shard of its rows")
    p.add_argument("--control", default=None, metavar="NAME",
                   help="only add the short-training control (--control-epochs from random "
                        "weights) to the rows of result NAME and report into --name")
    p.add_argument("--control-epochs", type=positive_int, nargs="+", default=[20], metavar="N",
                   help="with --control: epochs of each short training (as ftN fine-tunes)")
    p.add_argument("--control-seed", type=int, default=100,
                   help="with --control: training seed (keep it off the reference's seeds)")
    p.add_argument("--seed", type=int, default=0, help="seed of the supernet's training")
    p.add_argument("--sampling", default="uniform", choices=["uniform", "fair"],
                   help="supernet path sampling (`metanas supernet train --sampling`)")
    p.add_argument("--arch-seed", type=int, default=None,
                   help="seed of the architecture draw (default: --seed + 1); another seed = fresh architectures")
    p.add_argument("--device", default="auto")
    p.add_argument("--name", default="supernet_ranking")
    p.add_argument("--start", type=int, default=0, help="skip the first START architectures (a shard)")
    p.add_argument("--stop", type=int, default=None, help="stop before architecture STOP (a shard)")
    p.add_argument("--merge", nargs="+", default=None, metavar="NAME",
                   help="only merge the rows of these result files into --name and report")
    p.add_argument("--rescore", default=None, metavar="NAME",
                   help="re-score the rows of result NAME with inherited weights only (evaluator "
                        "variants) of the supernet of --supernet")
    p.add_argument("--finetune-epochs", type=int, nargs="+", default=[0],
                   help="with --rescore: fine-tuning epochs to compare")
    p.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads (1: best on a shared CPU)")
    return p


def _distinct(supernet, rng: random.Random, n: int) -> list:
    seen, out = set(), []
    while len(out) < n:
        arch = supernet.sample(rng)
        if arch.arch_hash not in seen:
            seen.add(arch.arch_hash)
            out.append(arch)
    return out


def _row(arch, inherited: dict, scratch: list) -> dict:
    """One architecture: its inherited-weight scores per fine-tuning variant and its from-scratch
    runs (one per reference seed; the table's row for NAS-Bench-Graph). ``inherited_*`` is the
    first variant, ``scratch_val`` / ``scratch_test`` the mean over runs (the reference),
    ``scratch_seconds`` the first run's time (what a full-training search pays per candidate)."""
    variants = {str(ft): {"val": ev.metrics["val_acc"], "test": ev.metrics["test_acc"], "seconds": ev.seconds}
                for ft, ev in inherited.items()}
    runs = [{"val": ev.metrics["val_acc"], "test": ev.metrics["test_acc"], "seconds": ev.seconds,
             "epochs": ev.epochs} for ev in scratch]
    first = next(iter(variants.values()))
    return {
        "arch": arch.to_dict(), "summary": arch.short(), "variants": variants,
        "inherited_val": first["val"], "inherited_test": first["test"], "inherited_seconds": first["seconds"],
        **_reference(runs), "scratch_seconds": runs[0]["seconds"], "scratch_epochs": runs[0]["epochs"],
    }


def _reference(runs: list[dict]) -> dict:
    """A row's from-scratch runs and the reference they give: the mean over the runs."""
    return {"scratch_runs": runs, "scratch_val": sum(r["val"] for r in runs) / len(runs),
            "scratch_test": sum(r["test"] for r in runs) / len(runs)}


def _report(args, info, trained, rows, quiet: bool = False) -> None:
    col = lambda key: [r[key] for r in rows]  # noqa: E731
    variants = list(dict.fromkeys(ft for r in rows for ft in r.get("variants", {"0": None})))
    taus = {}
    for ft in variants:
        scored = [r for r in rows if ft in r.get("variants", {})] if "variants" in rows[0] else rows
        scores = [r["variants"][ft]["val"] for r in scored] if "variants" in rows[0] else col("inherited_val")
        some = "" if len(scored) == len(rows) else f" (its {len(scored)} best by the first scorer only)"
        taus[f"{_label(ft)}: inherited_val~scratch_val{some}"] = kendall_tau(scores, [r["scratch_val"] for r in scored])
        taus[f"{_label(ft)}: inherited_val~scratch_test{some}"] = kendall_tau(scores, [r["scratch_test"] for r in scored])
    runs = [r.get("scratch_runs", []) for r in rows]
    n_seeds = min(len(r) for r in runs)
    if n_seeds >= 2:  # the reference's own noise: how well one training seed ranks another
        pairs = [(a, b) for a in range(n_seeds) for b in range(a + 1, n_seeds)]
        for key in ("val", "test"):
            taus[f"reference noise: seed~seed scratch_{key} (mean of {len(pairs)} pairs)"] = sum(
                kendall_tau([r[a][key] for r in runs], [r[b][key] for r in runs]) for a, b in pairs
            ) / len(pairs)
    score_s = {ft: [r["variants"][ft]["seconds"] for r in rows if ft in r["variants"]] if "variants" in rows[0]
               else col("inherited_seconds") for ft in variants}
    throughput = {
        "supernet_epochs_per_s_cpu": trained.epochs / max(trained.seconds, 1e-9),
        **{f"archs_scored_per_s_cpu_{_label(ft)}": len(s) / max(sum(s), 1e-9) for ft, s in score_s.items()},
        "from_scratch_s_per_arch_cpu": sum(col("scratch_seconds")) / len(rows),
        "gpu": "not measured: no GPU" if info["gpu"] is None else info["gpu"],
    }
    payload = {"machine": info, "args": vars(args), "kendall_tau": taus, "throughput": throughput,
               "supernet_seconds": trained.seconds, "supernet_epochs": trained.epochs, "rows": rows}
    reference = "from scratch" if args.space == "gnn" else "NAS-Bench-Graph table"
    seeds = getattr(args, "ref_seeds", None) or [args.seed]
    md = [f"# Supernet ranking on {args.dataset} ({args.space} space; reference: {reference})", "",
          f"- machine: {info['platform']}, {info['cpu_count']} CPUs, load at start {info['loadavg_at_start']}",
          f"- command: `{info['command']}`", f"- date: {info['date']}",
          f"- supernet: {args.supernet_repr}, {trained.epochs} SPOS epochs, "
          f"{trained.seconds:.0f}s",
          f"- reference: {reference}" + (
              f", {args.epochs} epochs, patience {args.patience}, mean over training seeds {list(seeds)}"
              if args.space == "gnn" else ""),
          "- ftN: inherited weights (BatchNorm recalibrated) fine-tuned N epochs before measuring",
          *(["- scratchN (control): random weights trained N epochs with ftN's settings, training "
             f"seed {args.control_seed}"] if getattr(args, "control", None) else []),
          "", "| measure | value |", "|---|---|"]
    md += [f"| Kendall tau {k} ({len(rows)} archs) | {v:.3f} |" for k, v in taus.items()]
    md += [f"| {k} | {v if isinstance(v, str) else f'{v:.3f}'} |" for k, v in throughput.items()]
    write_results(args.name, payload, "\n".join(md) + "\n", quiet=quiet)


if __name__ == "__main__":
    main()
