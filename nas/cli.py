"""The ``metanas`` command.

Exit codes: 0 success; 1 a failure at run time (missing study, corrupt weights, missing data);
2 bad input (unknown dataset, space, strategy or evaluator, malformed storage URL, bad option).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(ValueError):
    """Bad input from the command line: exit code 2."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``metanas`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_optuna()
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("metanas: interrupted; finished trials are stored", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - every error becomes one clear line
        code = _exit_code(error)
        print(f"metanas {args.command}: error: {_message(error)}", file=sys.stderr)
        return code


def _quiet_optuna() -> None:
    """Optuna's per-trial INFO logs and experimental-feature warnings repeat what our own
    per-trial line says."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _exit_code(error: Exception) -> int:
    from nas.tasks import DatasetNotFoundError
    from storage import ChecksumError

    if isinstance(error, (DatasetNotFoundError, ChecksumError, KeyError, FileNotFoundError)):
        return EXIT_FAILURE
    if isinstance(error, (UsageError, ValueError)):
        return EXIT_USAGE
    return EXIT_FAILURE


def _message(error: Exception) -> str:
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    return str(error) or type(error).__name__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metanas", description="Neural architecture search with every trial stored in SQL.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        _add_search, _add_best, _add_trials, _add_export, _add_report, _add_studies, _add_zoo,
        _add_prune,
    ):
        add(commands)
    return parser


def _storage_option(parser: argparse.ArgumentParser, required: bool = False) -> None:
    from storage import DEFAULT_STORAGE

    parser.add_argument(
        "--storage", default=None if required else DEFAULT_STORAGE, required=required,
        help=f"SQLAlchemy URL (default {DEFAULT_STORAGE}); postgresql://... for many workers",
    )


def _study_options(parser: argparse.ArgumentParser) -> None:
    _storage_option(parser)
    parser.add_argument("--study", required=True, help="study name")


def _add_search(commands: Any) -> None:
    p = commands.add_parser("search", help="search architectures for a dataset")
    p.add_argument("--dataset", required=True, help="dataset name, e.g. cora, citeseer, mutag")
    p.add_argument("--space", default="gnn", help="search space (default gnn)")
    p.add_argument("--convs", default=None, help="comma-separated convolutions to search over (gnn space)")
    p.add_argument("--strategy", default="tpe", help="search strategy (default tpe)")
    p.add_argument("--evaluator", default="train", help="how to score an architecture (default train)")
    p.add_argument("--trials", type=int, default=20, help="trials in the study, finished ones included")
    p.add_argument("--timeout", type=float, default=None, help="seconds after which no trial starts")
    _storage_option(p)
    p.add_argument("--study", default=None, help="study name (default dataset-space-strategy-evaluator)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--data-root", default=None, help="dataset folder (default $METANAS_DATA or the user cache)")
    p.add_argument("--n-jobs", type=int, default=1, help="worker processes")
    p.add_argument("--epochs", type=int, default=200, help="most epochs per trial")
    p.add_argument("--patience", type=int, default=50, help="early-stopping patience in epochs")
    p.add_argument("--objectives", default="accuracy", help="comma-separated: accuracy, params")
    p.add_argument("--pruner", default="none", choices=["none", "median"])
    p.add_argument("--heartbeat", type=int, default=30, help=argparse.SUPPRESS)
    p.add_argument("--grace-period", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--quiet", action="store_true", help="no per-trial lines")
    p.set_defaults(handler=cmd_search)


def cmd_search(args: argparse.Namespace) -> int:
    from nas.study import SearchConfig, run_search
    from storage import parse_url, redact

    parse_url(args.storage)
    config = SearchConfig(
        dataset=args.dataset, space=args.space, strategy=args.strategy, evaluator=args.evaluator,
        convs=tuple(c.strip() for c in args.convs.split(",")) if args.convs else None,
        n_trials=args.trials, timeout=args.timeout, storage=args.storage, study_name=args.study,
        seed=args.seed, device=args.device, data_root=args.data_root, n_jobs=args.n_jobs,
        epochs=args.epochs, patience=args.patience,
        objectives=tuple(name.strip() for name in args.objectives.split(",") if name.strip()),
        pruner=args.pruner, heartbeat=args.heartbeat, grace_period=args.grace_period,
        verbose=not args.quiet,
    )
    _validate_names(config)
    print(f"metanas search: study {config.study_name!r} in {redact(config.storage)}", flush=True)
    study = run_search(config)
    _print_best(study)
    return 0


def _validate_names(config: Any) -> None:
    """Resolve every name before any work, so bad input exits 2 at once."""
    from nas.samplers import get_sampler
    from nas.tasks import resolve_dataset

    resolve_dataset(config.dataset)
    config.make_space()
    get_sampler(config.strategy)
    config.make_evaluator()


def _load_study(args: argparse.Namespace) -> Any:
    import optuna

    from storage import parse_url, redact

    parse_url(args.storage)
    try:
        return optuna.load_study(study_name=args.study, storage=args.storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(args.storage)]
        raise KeyError(
            f"no study {args.study!r} in {redact(args.storage)}; studies there: {names}"
        ) from None


def _print_best(study: Any) -> None:
    from nas.export import best_trial
    from nas.study import trial_summary

    try:
        best = trial_summary(best_trial(study))
    except KeyError:
        print("no completed trial yet")
        return
    print(
        f"best: trial {best['trial']} val {best['val_acc']:.4f} test {best['test_acc']:.4f} "
        f"params {best['num_params']:,} | {best.get('summary', '')}"
    )


def _add_best(commands: Any) -> None:
    p = commands.add_parser("best", help="the best architecture of a study")
    _study_options(p)
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(handler=cmd_best)


def cmd_best(args: argparse.Namespace) -> int:
    from nas.export import best_trial
    from nas.study import trial_summary

    study = _load_study(args)
    best = trial_summary(best_trial(study))
    if args.json:
        print(json.dumps(best, sort_keys=True))
        return 0
    for key in ("trial", "val_acc", "test_acc", "num_params", "summary"):
        print(f"{key:>12}: {best.get(key)}")
    print(f"{'architecture':>12}: {json.dumps(best['architecture'], sort_keys=True)}")
    return 0


def _add_trials(commands: Any) -> None:
    p = commands.add_parser("trials", help="every trial of a study")
    _study_options(p)
    p.add_argument("--json", action="store_true", help="a JSON list")
    p.set_defaults(handler=cmd_trials)


def cmd_trials(args: argparse.Namespace) -> int:
    from nas.study import trial_summary

    study = _load_study(args)
    rows = [trial_summary(t) for t in study.get_trials(deepcopy=False)]
    if args.json:
        print(json.dumps(rows, sort_keys=True))
        return 0
    print(f"{'trial':>5} {'state':>8} {'val_acc':>8} {'test_acc':>8} {'params':>10}  architecture")
    for row in rows:
        print(
            f"{row['trial']:>5} {row['state']:>8} {_fmt(row['val_acc'])} {_fmt(row['test_acc'])} "
            f"{row['num_params'] or '':>10}  {row.get('summary', '')}"
        )
    return 0


def _fmt(value: float | None) -> str:
    return f"{value:8.4f}" if isinstance(value, (int, float)) else f"{'-':>8}"


def _add_export(commands: Any) -> None:
    p = commands.add_parser("export", help="write the best model: spec JSON + safetensors weights")
    _study_options(p)
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument("--trial", type=int, default=None, help="a trial number instead of the best")
    p.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from nas.export import export_trial

    _load_study(args)
    folder = export_trial(args.storage, args.study, args.out, args.trial)
    print(f"exported to {folder}")
    return 0


def _add_report(commands: Any) -> None:
    p = commands.add_parser("report", help="plots: optimisation history, parameter importances")
    _study_options(p)
    p.add_argument("--out", required=True, help="folder to write the plots into")
    p.set_defaults(handler=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from nas.report import write_report

    study = _load_study(args)
    for path in write_report(study, args.out):
        print(f"wrote {path}")
    return 0


def _add_studies(commands: Any) -> None:
    p = commands.add_parser("studies", help="the studies in a storage")
    _storage_option(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_studies)


def cmd_studies(args: argparse.Namespace) -> int:
    import optuna

    from storage import parse_url

    parse_url(args.storage)
    rows = []
    for summary in optuna.get_all_study_summaries(args.storage, include_best_trial=False):
        rows.append({
            "study": summary.study_name, "trials": summary.n_trials,
            "dataset": summary.user_attrs.get("dataset"), "space": summary.user_attrs.get("space"),
        })
    if args.json:
        print(json.dumps(rows, sort_keys=True))
        return 0
    for row in rows:
        print(f"{row['study']}  ({row['trials']} trials, dataset {row['dataset']}, space {row['space']})")
    return 0



# model zoos -----------------------------------------------------------------------------------
def _add_zoo(commands: Any) -> None:
    p = commands.add_parser("zoo", help="model zoos: many trained networks for metanetworks")
    zoo = p.add_subparsers(dest="zoo_command", required=True, metavar="ZOO_COMMAND")
    b = zoo.add_parser("build", help="train (the rest of) a zoo of small CNNs; resumable")
    b.add_argument("--dataset", default="mnist14", help="image dataset (default mnist14: 14x14 MNIST)")
    b.add_argument("--space", default="cnn", help="search space of the networks (default cnn)")
    b.add_argument("--size", type=int, required=True, help="training runs in the zoo, finished ones included")
    b.add_argument("--epochs", type=int, default=3, help="epochs of every run (default 3)")
    b.add_argument("--checkpoints", default=None,
                   help="comma-separated epochs whose weights and accuracies are stored (default: every epoch)")
    b.add_argument("--batch-size", type=int, default=128)
    b.add_argument("--max-depth", type=int, default=None, help="most conv blocks (cnn space, 1..3)")
    _storage_option(b)
    b.add_argument("--study", default=None, help="zoo (study) name (default zoo-<dataset>-<space>)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--n-jobs", type=int, default=1, help="worker processes")
    b.add_argument("--timeout", type=float, default=None, help="seconds after which no run starts")
    b.add_argument("--data-root", default=None)
    b.add_argument("--quiet", action="store_true", help="no per-run lines")
    b.set_defaults(handler=cmd_zoo_build)
    i = zoo.add_parser("info", help="size and accuracy range of a zoo")
    _study_options(i)
    i.add_argument("--json", action="store_true")
    i.set_defaults(handler=cmd_zoo_info)


def _int_list(text: str | None, option: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"{option} takes comma-separated integers, got {text!r}") from None


def cmd_zoo_build(args: argparse.Namespace) -> int:
    from nas.zoo import ZooConfig, build_zoo
    from storage import parse_url, redact

    parse_url(args.storage)
    config = ZooConfig(
        dataset=args.dataset, space=args.space, size=args.size, epochs=args.epochs,
        checkpoint_epochs=_int_list(args.checkpoints, "--checkpoints"), batch_size=args.batch_size,
        storage=args.storage, study_name=args.study, seed=args.seed, n_jobs=args.n_jobs,
        data_root=args.data_root, timeout=args.timeout, verbose=not args.quiet,
        space_options={"max_depth": args.max_depth} if args.max_depth else {},
    )
    search = config.search_config()
    _validate_names(search)
    print(f"metanas zoo build: zoo {config.study_name!r} in {redact(config.storage)}", flush=True)
    build_zoo(config)
    return cmd_zoo_info(argparse.Namespace(storage=args.storage, study=config.study_name, json=False))


def cmd_zoo_info(args: argparse.Namespace) -> int:
    from storage import ModelStore, parse_url

    parse_url(args.storage)
    store = ModelStore(args.storage)
    models = store.list_models(args.study)
    if not models:
        raise KeyError(f"no stored networks in zoo/study {args.study!r}")
    checkpoints = store.list_checkpoints(args.study)
    accs = sorted(m.metrics.get("test_acc", float("nan")) for m in models)
    info = {
        "study": args.study, "runs": len(models), "checkpoints": len(checkpoints),
        "epochs": sorted({c.epoch for c in checkpoints}), "space": models[0].space,
        "dataset": models[0].dataset, "test_acc_min": accs[0], "test_acc_median": accs[len(accs) // 2],
        "test_acc_max": accs[-1],
    }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(" ".join(f"{key}={value}" for key, value in info.items()))
    return 0


def _add_prune(commands: Any) -> None:
    p = commands.add_parser(
        "prune", help="prune an exported model to a MACs speed-up, fine-tune it and export it")
    p.add_argument("--model", required=True, help="exported model folder (never modified)")
    p.add_argument("--dataset", required=True, help="task to fine-tune and measure accuracy on")
    p.add_argument("--speedup", type=float, required=True, help="MACs before / after, e.g. 2.0")
    p.add_argument("--out", required=True, help="folder to write the pruned model into")
    p.add_argument("--method", default="magnitude",
                   help="metanet, magnitude (L2 group norm, default) or random")
    p.add_argument("--finetune-epochs", type=int, default=10, help="fine-tuning epochs (0: none)")
    p.add_argument("--metanet", default=None, help="trained pruning metanetwork (method metanet)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    p.set_defaults(handler=cmd_prune)


def cmd_prune(args: argparse.Namespace) -> int:
    from nas.prune import PruneJob, format_outcome, run_prune

    if args.finetune_epochs < 0:
        raise UsageError(f"--finetune-epochs {args.finetune_epochs} must be >= 0")
    job = PruneJob(args.model, args.dataset, args.speedup, args.out, args.method,
                   args.finetune_epochs, args.metanet, args.seed, args.device)
    outcome, folder = run_prune(job)
    if args.json:
        print(json.dumps({**outcome.summary(), "out": str(folder)}))
    else:
        print(format_outcome(outcome))
        print(f"pruned model written to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
