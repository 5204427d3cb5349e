"""The ``metanas`` command.

Exit codes: 0 success; 1 a failure at run time (corrupt weights, missing data, a study with no
stored networks); 2 bad input (unknown dataset, space, strategy, evaluator or study, malformed
storage URL, bad option);
130 interrupted (Ctrl-C); 143 terminated (SIGTERM, 128 + its number; kept and said as for
Ctrl-C); 141 the reader of the output went away (``| head``), as for SIGPIPE.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a program killed by it


class UsageError(ValueError):
    """Bad input from the command line: exit code 2."""


def main(argv: Sequence[str] | None = None) -> int:
    """The ``metanas`` command, run in this process: its exit code. SIGTERM is handled as Ctrl-C
    is while it runs; the caller's handler is back when it returns."""
    return _run(argv, exiting=False)


def console_main() -> int:
    """Entry point of the ``metanas`` console script: :func:`main`, after which the process
    exits. Once a SIGTERM stopped the command, a repeat is ignored until the process has gone:
    the interpreter's teardown (hundreds of ms after torch) was ended by a job scheduler's
    second SIGTERM, exit -15 instead of 143."""
    return _run(None, exiting=True)


def _run(argv: Sequence[str] | None, exiting: bool) -> int:
    """The command, its exit code; ``exiting``: this process ends when it returns."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the subcommand's parser, with its usage (the top level's named none)
        _chosen_parser(parser, args).error(f"unrecognized arguments: {' '.join(unknown)}")
    _quiet_optuna()
    from nas.workers import sigterm_interrupts

    try:
        with sigterm_interrupts(keep_ignoring=exiting):  # SIGTERM (a job scheduler's stop) is handled as Ctrl-C is
            code = int(args.handler(args) or 0)
        sys.stdout.flush()  # a reader that went away shows here, not in Python's flush at exit
        return code
    except BrokenPipeError:  # `metanas trials | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM (nas.workers.Terminated)
        from nas.workers import TERMINATED, Terminated

        kept = _kept_on_interrupt(args)
        terminated = isinstance(interrupt, Terminated)
        stopped = "terminated (SIGTERM)" if terminated else "interrupted"
        print(f"metanas: {stopped}" + (f"; {kept}" if kept else ""), file=sys.stderr)
        return TERMINATED if terminated else 130
    except Exception as error:  # noqa: BLE001 - every error becomes one clear line
        code = _exit_code(error)
        print(f"metanas {args.command}: error: {_message(error, args)}", file=sys.stderr)
        return code


def _chosen_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)command parser ``args`` were parsed by: ``metanas zoo build`` -> its parser."""
    while True:
        subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        chosen = getattr(args, subparsers[0].dest, None) if subparsers else None
        if chosen is None or chosen not in subparsers[0].choices:
            return parser
        parser = subparsers[0].choices[chosen]


def _kept_on_interrupt(args: argparse.Namespace) -> str:
    """What an interrupted command leaves for the next run, said after Ctrl-C ("" if nothing
    worth naming)."""
    command = (args.command, getattr(args, "hypernet_command", None) or getattr(args, "supernet_command", None)
               or getattr(args, "metanet_command", None))
    if command == ("hypernet", "train"):
        return _state_kept(hypernet_state(args.out), f"step {min(args.state_every, args.steps)}")
    if command == ("metanet", "train"):
        return _state_kept(metanet_state(args.out), f"epoch {min(args.state_every, args.epochs)}")
    if command == ("prune-metanet", None):
        return _state_kept(metanet_state(args.out), f"step {min(args.state_every, args.steps)}")
    if command == ("supernet", "train") and not _has_supernet_checkpoint(args.out):
        return (f"no checkpoint was written yet (the first at epoch "
                f"{min(args.checkpoint_every, args.epochs)}): the same command starts again")
    if command == ("supernet", "train") and args.overwrite:
        return (f"the last checkpoint in {args.out} is kept: the command without --overwrite "
                "resumes from it (with --overwrite it starts again)")
    if command == ("supernet", "train"):
        return f"the last checkpoint in {args.out} is kept: the same command resumes from it"
    if args.command == "search":
        return ("finished trials are stored, the interrupted ones failed (they do not count against "
                "--trials): the same command resumes the search")
    if args.command == "zoo":
        return "finished trials are stored"
    return ""


def _has_supernet_checkpoint(out: str) -> bool:
    """Whether ``out`` holds a supernet checkpoint to resume from; False for a damaged one
    (``--overwrite`` lets one through), which reading must not turn into a traceback after
    Ctrl-C."""
    from nas.supernet import has_checkpoint

    try:
        return has_checkpoint(out)
    except (ValueError, AttributeError, TypeError, OSError):
        return False


def _say_resuming(state: Path, unit: str) -> Callable[[int], None]:
    """A training command's ``resuming(at)``: says where it resumes from its training state
    ``state`` (at that ``unit``, "step" or "epoch"), called once the state is accepted, not
    before a state of other flags is refused."""
    def resuming(at: int) -> None:
        print(f"resuming from the training state {state} at {unit} {at}", flush=True)

    return resuming


def _state_kept(state: Path, first: str) -> str:
    """What a training command interrupted before or after writing its training state ``state``
    (the ``first`` write at that step or epoch) leaves for the next run."""
    if state.exists():
        return f"the training state {state} is kept: the same command resumes from it"
    return f"no training state was written yet (the first at {first}): the same command starts again"


def _quiet_optuna() -> None:
    """Optuna's per-trial INFO logs and experimental-feature warnings repeat what our own
    per-trial line says."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _exit_code(error: Exception) -> int:
    from nas.tasks import DatasetNotFoundError
    from storage import ChecksumError, UnknownStudyError

    if isinstance(error, UnknownStudyError):  # a KeyError too
        return EXIT_USAGE
    if isinstance(error, (DatasetNotFoundError, ChecksumError, KeyError, FileNotFoundError)):
        return EXIT_FAILURE
    if isinstance(error, (UsageError, ValueError)):
        return EXIT_USAGE
    return EXIT_FAILURE


def _message(error: Exception, args: argparse.Namespace | None = None) -> str:
    refused = _database_error(error)
    if refused is not None:
        return _database_message(refused, args)
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    return str(error) or type(error).__name__


def _database_error(error: BaseException) -> BaseException | None:
    """The database driver's own error behind ``error`` (SQLAlchemy wraps it, and optuna wraps
    that in "An exception is raised during the commit ..."), or None."""
    import sqlalchemy.exc

    seen: BaseException | None = error
    for _ in range(10):  # the chain of causes, not a cycle
        if seen is None:
            return None
        if isinstance(seen, sqlalchemy.exc.DBAPIError) and seen.orig is not None:
            return seen.orig
        seen = seen.__cause__ or seen.__context__
    return None


#: what an SQLite error means for the file the user named
_SQLITE_HINTS = {
    "unable to open database file": "a folder, or a file in a folder this user cannot write",
    "file is not a database": "the file is not an SQLite database",
    "attempt to write a readonly database": "the file (or its folder) cannot be written",
}


def _database_message(refused: BaseException, args: argparse.Namespace | None) -> str:
    """One line naming the database (password hidden) and what its driver said."""
    from storage import redact

    url = getattr(args, "storage", None) or getattr(args, "zoo", None)
    text = str(refused).strip().splitlines()[0] if str(refused).strip() else type(refused).__name__
    hint = next((h for key, h in _SQLITE_HINTS.items() if key in text), None)
    where = f"the database {redact(url)}" if url else "the database"
    return f"{where} refused the command: {text}" + (f" ({hint})" if hint else "")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metanas", description="Neural architecture search with every trial stored in SQL.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        _add_search, _add_best, _add_trials, _add_export, _add_report, _add_studies,
        _add_supernet, _add_zoo, _add_metanet, _add_hypernet, _add_predict_params, _add_prune,
        _add_prune_metanet, _add_evaluate,
    ):
        add(commands)
    _show_defaults(parser)
    return parser


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Append ``(default X)`` to the help of every option of ``parser`` and its subcommands that
    has a default worth saying and whose help does not already say it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases share a parser
                _show_defaults(sub)
            continue
        quiet = action.help == argparse.SUPPRESS or not action.option_strings or action.required
        default = action.default
        if quiet or default is None or default is False or default == argparse.SUPPRESS or default == []:
            continue
        text = action.help or ""
        if "default" not in text.lower():
            action.help = f"{text} (default %(default)s)" if text else "default %(default)s"


def _storage_option(parser: argparse.ArgumentParser, required: bool = False) -> None:
    from storage import DEFAULT_STORAGE

    parser.add_argument(
        "--storage", default=None if required else DEFAULT_STORAGE, required=required,
        help=f"SQLAlchemy URL (default {DEFAULT_STORAGE}); postgresql://... for many workers",
    )


#: --help of --data-root, one text for every command that reads a dataset (nas.tasks.default_data_root)
DATA_ROOT_HELP = ("folder the datasets are read from, in PyG's layout (default $METANAS_DATA, "
                  "else datasets/ in the metanas cache: $METANAS_CACHE or ~/.cache/metanas)")


def _data_root_option(parser: argparse.ArgumentParser) -> None:
    """``--data-root DIR`` of a command that reads a dataset (its handler passes it to
    :func:`nas.tasks.load_task` as ``root``)."""
    parser.add_argument("--data-root", default=None, metavar="DIR", help=DATA_ROOT_HELP)


def _study_options(parser: argparse.ArgumentParser) -> None:
    _storage_option(parser)
    parser.add_argument("--study", required=True, help="study name")


def _add_search(commands: Any) -> None:
    p = commands.add_parser("search", help="search architectures for a dataset")
    p.add_argument("--dataset", required=True,
                   help="dataset name, e.g. cora, mutag, tu:BZR, pyg:WikiCS (pyg:CLASS[:NAME])")
    p.add_argument("--space", default="gnn", help="search space (default gnn)")
    p.add_argument("--convs", default=None, help="comma-separated convolutions to search over (gnn space)")
    p.add_argument(
        "--strategy", default="tpe",
        help="search strategy: random, tpe, gp, nsga2, evolution, reinforce, predictor, gradient, "
             "nac (default tpe)",
    )
    p.add_argument(
        "--evaluator", default="train",
        help="how to score an architecture: train, table, supernet[:ftN], hypernet[:PATH], "
             "zero-cost:PROXY (default train)",
    )
    p.add_argument("--trials", type=int, default=20, help="trials in the study, finished ones included")
    p.add_argument("--timeout", type=float, default=None, help="seconds after which no trial starts")
    _storage_option(p)
    p.add_argument("--study", default=None, help="study name (default dataset-space-strategy-evaluator)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    _data_root_option(p)
    p.add_argument("--n-jobs", type=int, default=1, help="worker processes")
    p.add_argument("--epochs", type=int, default=200, help="most epochs per trial")
    p.add_argument("--patience", type=int, default=50, help="early-stopping patience in epochs")
    p.add_argument("--select", default="val_acc", metavar="val_acc|val_loss",
                   help="train evaluator: the epoch a trial keeps, best validation accuracy or "
                        "lowest validation loss (NAS-Bench-Graph's rule; its tables rank alike)")
    p.add_argument("--objectives", default="accuracy", help="comma-separated: accuracy, params, latency")
    p.add_argument("--pruner", default="none", choices=["none", "median"])
    p.add_argument("--heartbeat", type=int, default=30, help=argparse.SUPPRESS)
    p.add_argument("--grace-period", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--quiet", action="store_true", help="no per-trial lines")
    p.add_argument("--prescreen", default=None, metavar="PROXY",
                   help="zero-cost proxy (synflow, naswot, ...) that screens --prescreen-k "
                        "proposals of the strategy before any is evaluated (see --prescreen-rule)")
    p.add_argument("--prescreen-k", type=int, default=None,
                   help="proposals per trial (default 10; rule veto: the most tried)")
    p.add_argument("--prescreen-rule", default=None, metavar="RULE",
                   help="best: evaluate the proposal of highest proxy; veto: keep the strategy's "
                        "own proposal unless its proxy is below --prescreen-veto's quantile of a "
                        "fixed random sample of the space, then its next (default best)")
    p.add_argument("--prescreen-veto", type=float, default=None, metavar="Q",
                   help="rule veto: the quantile (0 < Q < 1) of the random sample's proxy below "
                        "which a proposal is removed (default 0.25)")
    p.add_argument("--prescreen-dataset", default=None,
                   help="dataset the proxy is computed on (default --dataset)")
    p.add_argument(
        "--supernet", default=None, metavar="PATH",
        help="trained supernet checkpoint folder, for --evaluator supernet",
    )
    p.add_argument(
        "--final-train", nargs="?", type=int, const=1, default=None, metavar="K",
        help="afterwards train the best architecture (or the K best) from scratch as trials of "
             "study <study>-final; the best of them by validation accuracy is the answer",
    )
    p.add_argument(
        "--refine", type=int, default=None, metavar="N",
        help="afterwards re-score the N best architectures with --refine-evaluator as trials of "
             "study <study>-refine; --final-train then takes its best from those",
    )
    p.add_argument(
        "--refine-evaluator", default="supernet:ft20", metavar="EVALUATOR",
        help="the costlier evaluator of --refine (default supernet:ft20: inherited weights "
             "fine-tuned 20 epochs)",
    )
    p.add_argument(
        "--warm-start", default=None, metavar="SOURCE",
        help="queue the best architectures of SOURCE first: study:NAME[,NAME...] (earlier "
             "studies in --storage) or nasbench-graph:DATASET[,DATASET...] (benchmark tables)",
    )
    p.add_argument("--warm-start-k", type=int, default=None, metavar="K",
                   help="how many architectures --warm-start queues (default 30)")
    p.add_argument("--init", default="random", choices=["random", "hypernet"],
                   help="train evaluator: start from random or hypernetwork-predicted parameters")
    p.add_argument("--hypernet", default=None,
                   help="GHN checkpoint for --init hypernet / --evaluator hypernet "
                        "(default pretrained:<space>-<dataset>)")
    p.set_defaults(handler=cmd_search)


def cmd_search(args: argparse.Namespace) -> int:
    from optuna.trial import TrialState

    from nas.evaluators import evaluator_name
    from nas.study import SearchConfig, WorkersDied, run_search
    from storage import parse_url, redact

    parse_url(args.storage)
    typed_evaluator = args.evaluator  # SearchConfig keeps it: it named studies made before 1566c8b
    args.evaluator = evaluator_name(args.evaluator)  # `--evaluator Supernet` reads --supernet too
    # SearchConfig checks these too, under its own field names (n_trials, ...): a user of the
    # command should read the flag they typed
    _require_counts(args, "trials", "n_jobs", "warm_start_k", "prescreen_k", "epochs")
    for flag, value in (("--final-train", args.final_train), ("--refine", args.refine)):
        if value is not None and value < 1:  # 0 ran the search and silently skipped the step
            raise UsageError(f"{flag} takes a number of architectures >= 1, got {value}")
    _refuse_unused_options(args)
    if args.select != "val_acc" and args.evaluator.partition(":")[0] != "train" and not args.final_train:
        raise UsageError(f"--select {args.select} chooses the epoch a trained trial keeps; "
                         f"--evaluator {args.evaluator} trains none (use --evaluator train, or "
                         f"--final-train for the final training)")
    config = SearchConfig(
        dataset=args.dataset, space=args.space, strategy=args.strategy, evaluator=typed_evaluator,
        convs=tuple(c.strip() for c in args.convs.split(",")) if args.convs is not None else None,
        n_trials=args.trials, timeout=args.timeout, storage=args.storage, study_name=args.study,
        seed=args.seed, device=args.device, data_root=args.data_root, n_jobs=args.n_jobs,
        epochs=args.epochs, patience=args.patience, select=args.select,
        objectives=tuple(name.strip() for name in args.objectives.split(",") if name.strip()),
        pruner=args.pruner, heartbeat=args.heartbeat, grace_period=args.grace_period,
        verbose=not args.quiet, prescreen=args.prescreen, prescreen_dataset=args.prescreen_dataset,
        **({"prescreen_candidates": args.prescreen_k} if args.prescreen_k is not None else {}),
        **({"prescreen_rule": args.prescreen_rule} if args.prescreen_rule is not None else {}),
        **({"prescreen_veto_quantile": args.prescreen_veto}
           if args.prescreen_veto is not None else {}),
        supernet=args.supernet, init=args.init, hypernet=args.hypernet, warm_start=args.warm_start,
        **({"warm_start_k": args.warm_start_k} if args.warm_start_k is not None else {}),
    )
    _validate_names(config)
    if args.refine:  # a refine evaluator that cannot run fails now, not after the search
        import dataclasses

        refine_config = dataclasses.replace(config, evaluator=args.refine_evaluator)
        refine_config.make_evaluator().check_space(refine_config.make_space())
    def header(study: Any) -> None:  # once it exists (new or resumed): a refused search made none
        print(f"metanas search: study {study.study_name!r} in {redact(config.storage)}", flush=True)

    died = None
    try:
        study = run_search(config, header)
    except WorkersDied as error:  # the others ran on: the best of what finished and the final
        study, died = error.study, error  # stages on it, then the error's line (exit 1)
    _print_best(study)
    if died is not None and not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise died  # nothing finished for the final stages: the re-run the error asks for runs them
    if args.refine:
        _refine(config, args.refine, args.refine_evaluator)
    if args.final_train:
        _final_train(config, args.final_train)
    if died is not None:
        raise died
    return 0


def _refuse_unused_options(args: argparse.Namespace) -> None:
    """A :class:`UsageError` for a search option that no part of the search would read (it was
    silently ignored): the user meant something the command would not do."""
    evaluator = args.evaluator.partition(":")[0]
    refined_by_supernet = bool(args.refine) and args.refine_evaluator.partition(":")[0] == "supernet"
    if args.supernet is not None and evaluator != "supernet" and not refined_by_supernet:
        raise UsageError(f"--supernet is read by --evaluator supernet (or --refine with a supernet "
                         f"--refine-evaluator); --evaluator {args.evaluator} would ignore it")
    if args.hypernet is not None and args.init != "hypernet" and evaluator != "hypernet":
        raise UsageError(f"--hypernet is read by --init hypernet or --evaluator hypernet; --init "
                         f"{args.init} with --evaluator {args.evaluator} would ignore it")
    screening = ("--prescreen-k", args.prescreen_k), ("--prescreen-rule", args.prescreen_rule), \
        ("--prescreen-veto", args.prescreen_veto), ("--prescreen-dataset", args.prescreen_dataset)
    for flag, value in screening:
        if value is not None and args.prescreen is None:
            raise UsageError(f"{flag} sets how --prescreen PROXY screens proposals; without "
                             f"--prescreen nothing is screened")
    from nas.samplers._prescreen import resolve_rule

    rule = resolve_rule(args.prescreen_rule) if args.prescreen_rule is not None else "best"
    if args.prescreen_veto is not None and rule != "veto":
        raise UsageError(f"--prescreen-veto {args.prescreen_veto} is the threshold of --prescreen-rule "
                         f"veto; rule {rule} keeps the top proxy instead")


def _require_counts(args: argparse.Namespace, *options: str) -> None:
    """A :class:`UsageError` naming the flag of the first of ``options`` (argparse dests) whose
    value is below 1; an option left unset (``None``) passes."""
    for option in options:
        value = getattr(args, option)
        if value is not None and value < 1:
            raise UsageError(f"--{option.replace('_', '-')} must be >= 1, got {value}")


def _refine(config: Any, top_n: int, evaluator: str) -> None:
    from nas.supernet import REFINE_SUFFIX, refine

    trials = refine(config, top_n, evaluator)
    best = trials[0]
    print(
        f"re-scored the {len(trials)} best with {evaluator} in {config.study_name + REFINE_SUFFIX!r}; "
        f"best: trial {best.user_attrs['source_trial']} -> {best.values[0]:.4f} | {best.user_attrs.get('summary', '')}"
    )


def _final_train(config: Any, top_k: int) -> None:
    from nas.supernet import final_train

    trials = final_train(config, top_k)
    for rank, trial in enumerate(trials):
        attrs = trial.user_attrs
        print(
            f"from scratch: trial {attrs['source_trial']} of {attrs.get('source_study', config.study_name)!r} -> trial "
            f"{trial.number} of {config.study_name + '-final'!r}: val {attrs.get('val_acc', 0):.4f} "
            f"test {attrs.get('test_acc', 0):.4f} | {attrs.get('summary', '')}"
            + (" (best)" if rank == 0 and len(trials) > 1 else "")
        )


def _validate_names(config: Any) -> None:
    """Resolve every name before any work, so bad input exits 2 at once."""
    from nas.samplers import get_sampler
    from nas.tasks import resolve_dataset
    from nas.train import resolve_device

    resolve_dataset(config.dataset)
    resolve_device(config.device)
    config.make_space()
    get_sampler(config.strategy)
    config.make_evaluator()
    from nas.samplers import check_strategy

    check_strategy(config.strategy, config.make_space(), config.objectives)


def _load_study(args: argparse.Namespace) -> Any:
    from nas.export import load_study

    return load_study(args.storage, args.study)


def _print_best(study: Any) -> None:
    from nas.export import best_trial
    from nas.study import trial_summary

    try:
        best = trial_summary(best_trial(study))
    except KeyError:
        print("no completed trial yet")
        return
    if best["val_acc"] is None and best.get("score") is not None:  # a training-free evaluator
        quality = f"score {best['score']:.6g}"
    else:
        quality = f"val {_num(best['val_acc'])} test {_num(best['test_acc'])}"
    print(
        f"best: trial {best['trial']} {quality} params {best['num_params'] or 0:,} | "
        f"{best.get('summary', '')}"
    )


def _json(value: Any, **options: Any) -> str:
    """``json.dumps(value, **options)`` as strict JSON, what every ``--json`` prints: a float that
    is nan or infinite becomes ``null``, where json.dumps wrote NaN or Infinity, which JSON
    parsers refuse."""
    return json.dumps(_finite(value), allow_nan=False, **options)


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float in it (in dicts, lists and tuples) made ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _num(value: float | None) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "null"


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
    if len(study.directions) > 1:
        return _print_pareto_front(study, best, args.json)
    if args.json:
        print(_json(best, sort_keys=True))
        return 0
    for key in ("trial", "val_acc", "test_acc", "score", "num_params", "summary"):
        if key == "score" and best.get(key) is None:
            continue
        print(f"{key:>12}: {best.get(key)}")
    print(f"{'architecture':>12}: {json.dumps(best['architecture'], sort_keys=True)}")
    return 0


def _print_pareto_front(study: Any, best: dict[str, Any], as_json: bool) -> int:
    """A multi-objective study's Pareto front (trials no other trial beats on every objective),
    by the first objective; JSON: the best-by-first-objective fields plus ``pareto_front``."""
    from nas.study import trial_summary

    objectives = study.user_attrs.get("objectives") or [f"objective{i}" for i in range(len(study.directions))]
    directions = [d.name.lower() for d in study.directions]
    front = sorted(study.best_trials, key=lambda t: (-t.values[0] if directions[0] == "maximize" else t.values[0], t.number))
    rows = [trial_summary(t) for t in front]
    if as_json:
        print(_json({**best, "objectives": objectives, "directions": directions,
                     "pareto_front": rows}, sort_keys=True))
        return 0
    names = [f"{name} ({direction[:3]})" for name, direction in zip(objectives, directions)]
    print(f"Pareto front of {study.study_name!r}: {len(rows)} trials")
    print(f"{'trial':>5}  " + "  ".join(f"{n:>16}" for n in names) + f"  {'test_acc':>8}  architecture")
    for row in rows:
        values = "  ".join(f"{v:>16.6g}" for v in row["values"])
        print(f"{row['trial']:>5}  {values}  {_fmt(row['test_acc'])}  {row.get('summary', '')}")
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
        print(_json(rows, sort_keys=True))
        return 0
    # a training-free evaluator's trials measure a score, no accuracy: show what ranks them
    scored = all(row["val_acc"] is None for row in rows) and any(row.get("score") is not None for row in rows)
    measured = f"{'score':>12}" if scored else f"{'val_acc':>8} {'test_acc':>8}"
    print(f"{'trial':>5} {'state':>8} {measured} {'params':>10}  architecture")
    for row in rows:
        print(
            f"{row['trial']:>5} {row['state']:>8} "
            f"{_fmt_score(row.get('score')) if scored else _fmt(row['val_acc']) + ' ' + _fmt(row['test_acc'])} "
            f"{row['num_params'] or '':>10}  {row.get('summary', '')}"
            + (f"  ({row.get('fail_reason') or 'worker stopped'})" if row["state"] == "FAIL" else "")
        )
    return 0


def _fmt(value: float | None) -> str:
    return f"{value:8.4f}" if isinstance(value, (int, float)) else f"{'-':>8}"


def _fmt_score(value: float | None) -> str:
    return f"{value:12.6g}" if isinstance(value, (int, float)) else f"{'-':>12}"


def _add_export(commands: Any) -> None:
    p = commands.add_parser("export", help="write the best model: spec JSON + safetensors weights")
    _study_options(p)
    p.add_argument("--out", required=True, help="folder to write (a new or empty one)")
    p.add_argument("--trial", type=int, default=None, help="a trial number instead of the best")
    _overwrite_option(p)
    p.set_defaults(handler=cmd_export)


def _overwrite_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true",
                        help="write into an --out folder that already holds files (a model "
                             "exported there is replaced)")


def check_out_folder(out: str, overwrite: bool) -> None:
    """A :class:`UsageError` for an ``--out`` that is a file, or a folder that already holds
    files (a model exported there would be replaced) unless ``overwrite``
    (:func:`nas.export.check_export_folder`)."""
    from nas.export import check_export_folder

    try:
        check_export_folder(out, overwrite, name="--out", overwrite_hint="--overwrite")
    except (NotADirectoryError, FileExistsError) as error:
        raise UsageError(str(error)) from None


def cmd_export(args: argparse.Namespace) -> int:
    from nas.export import export_trial

    _load_study(args)
    check_out_folder(args.out, args.overwrite)
    folder = export_trial(args.storage, args.study, args.out, args.trial, overwrite=args.overwrite)
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

    from storage import NoStudiesError, reading_storage

    try:
        storage = reading_storage(args.storage)
    except NoStudiesError as error:  # an empty file, another application's database: not written
        print("[]" if args.json else error)
        return 0
    rows = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        rows.append({
            "study": summary.study_name, "trials": summary.n_trials,
            "dataset": summary.user_attrs.get("dataset"), "space": summary.user_attrs.get("space"),
        })
    if args.json:
        print(_json(rows, sort_keys=True))
        return 0
    for row in rows:
        print(f"{row['study']}  ({row['trials']} trials, dataset {row['dataset']}, space {row['space']})")
    if not rows:
        from storage import redact

        print(f"no studies in {redact(args.storage)}")
    return 0


# -- metanas supernet ---------------------------------------------------------------------------


def _add_supernet(commands: Any) -> None:
    p = commands.add_parser("supernet", help="weight-sharing supernets (train one)")
    sub = p.add_subparsers(dest="supernet_command", required=True, metavar="SUBCOMMAND")
    t = sub.add_parser(
        "train", help="train a single-path one-shot supernet; resumes from --out's checkpoint",
    )
    t.add_argument("--dataset", required=True, help="dataset name, e.g. cora")
    t.add_argument("--space", default="gnn", help="search space (default gnn)")
    t.add_argument("--out", required=True, help="checkpoint folder (resumed if it holds one)")
    t.add_argument("--epochs", type=int, default=300, help="training epochs (default 300)")
    t.add_argument("--lr", type=_positive_number, default=5e-3)
    t.add_argument("--weight-decay", type=_non_negative_number, default=5e-4)
    t.add_argument("--batch-size", type=int, default=64, help="graphs per batch (graph tasks)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    t.add_argument("--amp", action="store_true", help="bfloat16 autocast on CUDA")
    t.add_argument("--checkpoint-every", type=int, default=50, help="epochs between checkpoints")
    _data_root_option(t)
    t.add_argument(
        "--sampling", default="uniform", choices=["uniform", "fair"],
        help="paths per step: uniform, one path (SPOS, default); fair, FairNAS strict fairness "
        "(every choice of a decision once per step, gradients averaged; a step costs one pass per path)",
    )
    t.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE",
        help="supernet option, e.g. max_depth=3, widths=32,64, convs=gcn,gat, dropouts=0.5 (gnn space)",
    )
    t.add_argument(
        "--overwrite", action="store_true",
        help="train from scratch even if --out holds a checkpoint (of the same or other settings); "
        "it is replaced when this run writes its first checkpoint, not before. Without it a "
        "checkpoint is resumed, and one of other settings refused, as is a folder of other "
        "files (with it they are kept)",
    )
    t.set_defaults(handler=cmd_supernet_train)


def cmd_supernet_train(args: argparse.Namespace) -> int:
    from nas.supernet import (
        SupernetTrainConfig, build_supernet, check_checkpoint_folder, init_distributed,
        is_rank_zero, parse_options, train_supernet,
    )
    from nas.tasks import load_task

    from nas.train import resolve_device

    _require_counts(args, "epochs", "batch_size", "checkpoint_every")  # by flag, before the data loads
    if args.amp and resolve_device(args.device).type != "cuda":  # recorded, then refused on resume
        raise UsageError(f"--amp is bfloat16 autocast on CUDA; on the CPU (--device {args.device}) it "
                         "does nothing: drop it")
    check_checkpoint_folder(args.out, args.overwrite)  # before the data loads (and again in training)
    device = init_distributed(args.device)  # joins torchrun's process group, if any
    task = load_task(args.dataset, args.data_root)
    import torch

    with torch.random.fork_rng(devices=[]):  # --seed fixes the starting weights too
        torch.manual_seed(args.seed)
        supernet = build_supernet(args.space, task, **parse_options(args.option))
    config = SupernetTrainConfig(
        epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay,
        batch_size=args.batch_size, seed=args.seed, device=device,
        checkpoint_every=args.checkpoint_every, amp=args.amp, sampling=args.sampling,
    )
    speaks = is_rank_zero()  # under torchrun, one process speaks for the run (its loss: rank 0's share)
    if speaks:
        print(f"metanas supernet train: {supernet} on {task.name} ({config.device})", flush=True)
    result = train_supernet(supernet, task, config, out=args.out, overwrite=args.overwrite)
    if not speaks:
        return 0
    resumed = f", resumed from epoch {result.resumed_from}" if result.resumed_from else ""
    loss = f"{result.history[-1]:.4f}" if result.history else "-"
    if result.resumed_from == result.epochs:
        from nas.rerun import trained_line

        print(trained_line("supernet", args.out, f"{result.epochs} epochs, last loss {loss}"))
        return 0
    print(
        f"trained {result.epochs} epochs ({result.steps} steps, {result.seconds:.1f}s{resumed}); "
        f"last loss {loss}; checkpoint in {args.out}"
    )
    return 0


# model zoos -----------------------------------------------------------------------------------
def _device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="auto (default): CUDA when there is a GPU, else the CPU")


def _device(args: argparse.Namespace) -> str:
    """``--device`` resolved (auto -> cuda or cpu); ``ValueError`` (exit 2) for cuda without
    CUDA, before the command reads or writes anything."""
    from nas.train import resolve_device

    return str(resolve_device(args.device))


def _add_zoo(commands: Any) -> None:
    p = commands.add_parser("zoo", help="model zoos: many trained networks for metanetworks")
    zoo = p.add_subparsers(dest="zoo_command", required=True, metavar="ZOO_COMMAND")
    b = zoo.add_parser("build", help="train (the rest of) a zoo of small CNNs or MLPs; resumable")
    b.add_argument("--dataset", default="mnist14", help="image dataset (default mnist14: 14x14 MNIST)")
    b.add_argument("--space", default="cnn", help="search space of the networks (default cnn)")
    b.add_argument("--size", type=int, required=True, help="training runs in the zoo, finished ones included")
    b.add_argument("--epochs", type=int, default=3, help="epochs of every run (default 3)")
    b.add_argument("--checkpoints", default=None,
                   help="comma-separated epochs whose weights and accuracies are stored (default: every epoch)")
    b.add_argument("--batch-size", type=int, default=128)
    b.add_argument("--max-depth", type=int, default=None,
                   help="most blocks: conv blocks of the cnn space (1..3), hidden layers of the mlp space (1..4)")
    b.add_argument("--space-options", default=None,
                   help='JSON options of the space, e.g. \'{"min_depth": 2, "widths": [8]}\'')
    _storage_option(b)
    b.add_argument("--study", default=None, help="zoo (study) name (default zoo-<dataset>-<space>)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--n-jobs", type=int, default=1, help="worker processes")
    b.add_argument("--timeout", type=float, default=None, help="seconds after which no run starts")
    _data_root_option(b)
    _device_option(b)
    b.add_argument("--quiet", action="store_true", help="no per-run lines")
    b.add_argument("--heartbeat", type=int, default=30, help=argparse.SUPPRESS)
    b.add_argument("--grace-period", type=int, default=None, help=argparse.SUPPRESS)
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


def _space_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.space_options:
        try:
            options = json.loads(args.space_options)
        except json.JSONDecodeError as error:
            raise UsageError(f"--space-options is not JSON: {error}") from None
        if not isinstance(options, dict):
            raise UsageError(f"--space-options must be a JSON object, got {args.space_options!r}")
        options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    if args.max_depth:
        options["max_depth"] = args.max_depth
    return options


def cmd_zoo_build(args: argparse.Namespace) -> int:
    import contextlib

    from nas.study import WorkersDied
    from nas.zoo import ZooConfig, build_zoo
    from storage import parse_url, redact

    device = _device(args)
    parse_url(args.storage)
    # ZooConfig checks size and epochs under its field names; a user of the command should read
    # the flag they typed (--batch-size 0 started the zoo; --max-depth 0 meant the default)
    _require_counts(args, "size", "epochs", "batch_size", "n_jobs", "max_depth")
    config = ZooConfig(
        dataset=args.dataset, space=args.space, size=args.size, epochs=args.epochs,
        checkpoint_epochs=_int_list(args.checkpoints, "--checkpoints"), batch_size=args.batch_size,
        storage=args.storage, study_name=args.study, seed=args.seed, n_jobs=args.n_jobs,
        data_root=args.data_root, timeout=args.timeout, verbose=not args.quiet,
        space_options=_space_options(args), device=device, heartbeat=args.heartbeat,
        grace_period=args.grace_period,
    )
    search = config.search_config()
    _validate_names(search)
    def header(study: Any) -> None:  # once it exists (new or resumed): a refused build made none
        print(f"metanas zoo build: zoo {study.study_name!r} in {redact(config.storage)}", flush=True)

    info = argparse.Namespace(storage=args.storage, study=config.study_name, json=False)
    try:
        build_zoo(config, header)
    except WorkersDied:  # what the zoo holds (if anything yet), then the error's line: exit 1
        with contextlib.suppress(KeyError):
            cmd_zoo_info(info)
        raise
    return cmd_zoo_info(info)


def cmd_zoo_info(args: argparse.Namespace) -> int:
    from metanets.zoo import completed_models
    from storage import ModelStore, redact

    _check_studies(args.storage, [args.study])
    store = ModelStore(args.storage, read_only=True)
    models = completed_models(store, args.study)
    if not models:  # a study whose trials stored no network (yet)
        raise KeyError(f"no stored networks in zoo/study {args.study!r} in {redact(args.storage)}")
    runs = {m.trial_number for m in models}
    checkpoints = [c for c in store.list_checkpoints(args.study) if c.trial_number in runs]
    accs = sorted(m.metrics.get("test_acc", float("nan")) for m in models)
    info = {
        "study": args.study, "runs": len(models), "checkpoints": len(checkpoints),
        "epochs": sorted({c.epoch for c in checkpoints}), "space": models[0].space,
        "dataset": models[0].dataset, "test_acc_min": accs[0], "test_acc_median": accs[len(accs) // 2],
        "test_acc_max": accs[-1],
    }
    if args.json:
        print(_json(info, indent=2))
    else:
        print(" ".join(f"{key}={value}" for key, value in info.items()))
    return 0



# metanetworks ---------------------------------------------------------------------------------
def _add_metanet(commands: Any) -> None:
    p = commands.add_parser("metanet", help="metanetworks: predict accuracy from weights")
    sub = p.add_subparsers(dest="metanet_command", required=True, metavar="METANET_COMMAND")
    t = sub.add_parser("train", help="fit a graph metanetwork on zoos; writes safetensors + JSON")
    t.add_argument("--zoo", required=True, help="storage URL of the zoo(s)")
    t.add_argument("--study", required=True, action="append", help="zoo/study name (repeatable)")
    t.add_argument("--out", required=True, help="folder to write the metanetwork into")
    t.add_argument("--target", default="test_acc", help="metric to predict (default test_acc)")
    t.add_argument("--epochs", type=int, default=60)
    t.add_argument("--hidden", type=int, default=64)
    t.add_argument("--layers", type=int, default=3)
    t.add_argument("--lr", type=_positive_number, default=2e-3)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--kernel-width", type=int, default=9, help="edge feature columns (kernel entries)")
    t.add_argument("--max-inputs", type=int, default=0,
                   help="summarise the input layer of networks with more input neurons than this "
                        "(0: never; 64 for Cora's 1,433 features: far less memory and time)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--no-checkpoints", action="store_true", help="final weights only, not every epoch")
    t.add_argument("--state-every", type=int, default=5,
                   help="epochs between writes of the training state (OUT.state, beside --out): "
                        "a killed fit started again with the same flags resumes from it; it is "
                        "removed once OUT is written")
    t.add_argument("--probes", type=int, default=0,
                   help="learned probe inputs whose answers the metanetwork reads too (image "
                        "networks; 0: weights only)")
    t.add_argument("--probe-init", default="noise",
                   help="probes start from noise, or from unlabelled training images of the "
                        "zoo's task ('data'); learned either way (default noise)")
    t.add_argument("--verbose", action="store_true")
    _device_option(t)
    _data_root_option(t)  # --probe-init data reads the zoo's dataset
    _retrain_option(t)
    t.set_defaults(handler=cmd_metanet_train)
    q = sub.add_parser("predict", help="predict for stored or exported networks")
    q.add_argument("--model", required=True, help="folder written by `metanet train`")
    q.add_argument("--zoo", default=None, help="storage URL of stored networks")
    q.add_argument("--study", default=None, action="append",
                   help="zoo/study whose networks to predict for (with --zoo; repeatable)")
    q.add_argument("--model-dir", action="append", default=[],
                   help="exported model folder (`metanas export`), repeatable")
    q.add_argument("--json", action="store_true")
    _device_option(q)
    q.set_defaults(handler=cmd_metanet_predict)


def cmd_metanet_train(args: argparse.Namespace) -> int:
    from metanets.accuracy import FitConfig, train_accuracy_predictor
    from metanets.gmn import save_gmn
    from metanets.zoo import load_zoo

    from metanets.probes import PROBE_INITS, task_probe_inputs
    from nas.rerun import found_metanet, training_flags

    device = _device(args)
    _require_counts(args, "epochs", "hidden", "layers", "batch_size", "kernel_width", "state_every")
    _check_studies(args.zoo, args.study)  # a missing SQLite file is not created either
    if args.probes < 0:
        raise UsageError(f"--probes must be >= 0, got {args.probes}")
    if args.max_inputs < 0:
        raise UsageError(f"--max-inputs must be >= 0 (0: never summarise), got {args.max_inputs}")
    if args.probe_init not in PROBE_INITS:
        raise UsageError(f"--probe-init {args.probe_init!r} is not among {list(PROBE_INITS)}")
    if _already_trained(args, found_metanet(args.out), "metanetwork"):
        return 0
    zoo = load_zoo(args.zoo, args.study, checkpoints=not args.no_checkpoints,
                   kernel_width=args.kernel_width, keep_state_dicts=bool(args.probes))
    levels = sorted({entry.level for entry in zoo})
    if args.probes and levels != ["image"]:
        raise UsageError(f"--probes needs a zoo of image networks; this one holds {levels} "
                         f"networks (use --probes 0)")
    missing = sorted({entry.run for entry in zoo if args.target not in entry.metrics})
    if missing:
        common = sorted(set.intersection(*(set(entry.metrics) for entry in zoo)))
        raise UsageError(f"--target {args.target!r} was not measured for {len(missing)} of the "
                         f"{len(set(zoo.runs))} runs (study {missing[0][0]!r} trial "
                         f"{missing[0][1]} first); metrics of every network: {common}")
    config = FitConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                       hidden=args.hidden, layers=args.layers, probes=args.probes,
                       probe_init=args.probe_init, max_inputs=args.max_inputs)
    start = (task_probe_inputs(zoo[0].dataset, args.probes, seed=args.seed, data_root=args.data_root)
             if args.probes and args.probe_init == "data" else None)
    state = metanet_state(args.out)
    result = train_accuracy_predictor(zoo, config, target=args.target, verbose=args.verbose,
                                      probe_start=start, state=state, state_every=args.state_every,
                                      device=device, resuming=_say_resuming(state, "epoch"))
    best = next(h for h in result.history if h[0] == result.best_epoch)
    validated = result.selected_on == "val_tau"
    save_gmn(result.model, args.out, metadata={
        "target": args.target, "studies": args.study, "networks": len(zoo),
        "runs": len(set(zoo.runs)), "best_epoch": result.best_epoch,
        "datasets": sorted({entry.dataset for entry in zoo}),  # what metanet predict accepts
        "val_tau": best[2] if validated else None, "selected_on": result.selected_on,
        "fit": _asdict(config), "seconds": round(result.seconds, 1),
        "train_config": training_flags(args),
    })
    state.unlink(missing_ok=True)
    chosen = (f"val tau {best[2]:.4f}" if validated else
              f"no validation tau (too few or tied validation networks): the epoch of lowest "
              f"training loss {best[1]:.4f}")
    print(f"metanet: {len(zoo)} networks ({len(set(zoo.runs))} runs), best epoch "
          f"{result.best_epoch}, {chosen}, {result.seconds:.0f}s -> {args.out}")
    return 0


def _check_studies(url: str, names: list[str]) -> None:
    """:class:`storage.UnknownStudyError` (exit 2) for the first of the zoos/studies ``names``
    that ``url`` does not hold, naming those it does: its optuna studies, and the names it
    stored networks under without one (they are zoos too, see
    :func:`metanets.zoo.completed_models`)."""
    from storage import ModelStore, check_study

    stored = ModelStore(url, read_only=True).study_names()  # a missing SQLite file is not created
    for name in names:
        check_study(url, name, also=stored)


def metanet_state(out: str) -> Path:
    """The training state ``metanas metanet train --out OUT`` keeps while it fits: ``OUT.state``
    beside the folder OUT."""
    folder = Path(out)
    return folder.with_name(f"{folder.name}.state")


def _probed(module: Any, document: dict[str, Any], config: Any) -> Any:
    """An exported network as a network to probe, checked against the metanetwork's probes."""
    from metanets.probes import ProbedNetwork
    from metanets.zoo import example_inputs

    if document["level"] != "image":
        raise UsageError(f"this metanetwork probes image networks; the exported model is a "
                         f"{document['level']!r}-level network")
    (example,) = example_inputs("image", document["in_channels"], document.get("dataset", ""))
    shape = tuple(example.shape[1:])
    if shape != tuple(config.probe_shape):
        raise UsageError(f"the exported model takes inputs of shape {shape}; this metanetwork "
                         f"probes inputs of shape {tuple(config.probe_shape)}")
    return ProbedNetwork(module, module.state_dict(), shape)


def _asdict(obj: Any) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(obj)


def _check_metanet_dataset(metadata: dict[str, Any], dataset: str, what: str) -> None:
    """A metanetwork predicts the accuracy of networks trained on its zoo's datasets only (its
    metadata names them; older metanetworks, which do not, are not checked)."""
    known = metadata.get("datasets")
    if known and dataset not in known:
        raise UsageError(f"{what} was trained on {dataset!r}; this metanetwork learned from "
                         f"networks trained on {known} and predicts for those only")


def cmd_metanet_predict(args: argparse.Namespace) -> int:
    from metanets.accuracy import load_accuracy_predictor, predict
    from metanets.zoo import load_zoo, network_graph

    device = _device(args)
    model, metadata = load_accuracy_predictor(args.model)
    model.to(device)
    rows: list[dict[str, Any]] = []
    if args.zoo or args.study:
        if not (args.zoo and args.study):
            raise UsageError("--zoo and --study go together")
        _check_studies(args.zoo, args.study)
        zoo = load_zoo(args.zoo, args.study, kernel_width=model.config.kernel_width,
                       keep_state_dicts=bool(model.config.probes))
        for study, dataset in sorted({(entry.study, entry.dataset) for entry in zoo}):
            _check_metanet_dataset(metadata, dataset, f"zoo/study {study!r}")
        networks = zoo.networks() if model.config.probes else None
        preds = predict(model, zoo.graphs(), networks)[:, 0].tolist()
        for entry, value in zip(zoo, preds):
            rows.append({"study": entry.study, "trial": entry.trial, "epoch": entry.epoch,
                         "prediction": value, "measured": entry.metrics.get(metadata.get("target", "test_acc"))})
    for folder in args.model_dir:
        from nas.export import load_exported, read_export

        document = read_export(folder)
        _check_metanet_dataset(metadata, document.get("dataset", ""), f"model {folder}")
        module = load_exported(folder, document)
        graph = network_graph(module, document["level"], document["in_channels"],
                              document.get("dataset", ""), model.config.kernel_width)
        networks = [_probed(module, document, model.config)] if model.config.probes else None
        rows.append({"model_dir": folder,
                     "prediction": predict(model, [graph], networks)[0, 0].item()})
    if not rows:
        raise UsageError("nothing to predict: give --zoo and --study, or --model-dir")
    if args.json:
        print(_json(rows, indent=2))
    else:
        target = metadata.get("target", "value")
        for row in rows:
            epoch = "" if row.get("epoch") is None else f" epoch {row['epoch']}"  # None: final weights
            where = row.get("model_dir") or f"{row['study']} trial {row['trial']}{epoch}"
            measured = "" if row.get("measured") is None else f" (measured {row['measured']:.4f})"
            print(f"{where}: predicted {target} {row['prediction']:.4f}{measured}")
    return 0


# graph hypernetworks (metanets.ghn) --------------------------------------------------------
def _add_hypernet(commands: Any) -> None:
    p = commands.add_parser("hypernet", help="graph hypernetworks: train one for a space and task")
    sub = p.add_subparsers(dest="hypernet_command", required=True, metavar="ACTION")
    t = sub.add_parser("train", help="train a GHN over architectures sampled from a space")
    t.add_argument("--space", default="gnn", help="search space (default gnn)")
    t.add_argument("--dataset", required=True, help="task, e.g. cora or mnist")
    t.add_argument("--out", required=True, help="checkpoint to write (.safetensors)")
    t.add_argument("--steps", type=int, default=600, help="optimisation steps")
    t.add_argument("--archs-per-step", type=int, default=2, help="architectures per step")
    t.add_argument("--pool-size", type=int, default=200, help="distinct training architectures")
    t.add_argument("--max-depth", type=int, default=None, help="deepest training architecture")
    t.add_argument("--max-width", type=int, default=None, help="widest training layer")
    t.add_argument("--lr", type=_positive_number, default=2e-3)
    t.add_argument("--weight-decay", type=_non_negative_number, default=5e-4)
    t.add_argument("--batch-size", type=int, default=128, help="images/graphs per step")
    t.add_argument("--seed", type=int, default=0,
                   help="seeds the GHN's initialisation, batches and the training pool, not "
                        "the split: a dataset without a public split is split as a search "
                        "splits it (seed 0)")
    t.add_argument("--pool-seed", type=int, default=None,
                   help="seeds the training pool instead of --seed (two runs with one "
                        "--pool-seed and different --seed: same architectures, other init)")
    t.add_argument("--param-decay", type=_non_negative_number, default=0.0,
                   help="L2 penalty on the predicted parameters (as SGD's weight decay)")
    t.add_argument("--feature-basis", default="learned", choices=["learned", "data"],
                   help="input-feature rows: learned, or fixed from the task's features (few labels)")
    t.add_argument("--weight-norm", default="fan", choices=["fan", "op"],
                   help="predicted weight scale: fan-in, or operation-wise (Kaiming times a "
                        "decoded gain; carries over to deeper nets with widths up to the rank)")
    t.add_argument("--max-distance", type=int, default=50,
                   help="longest virtual edge (shortest-path length) a node reads; short ones "
                        "make each node see only its neighbouring layers")
    t.add_argument("--tile-width", type=int, default=None,
                   help="decode hidden layers wider than this as copies of this width (set it "
                        "to --max-width: wider networks than any in training then get tiled "
                        "copies of trained rows instead of untrained ones)")
    t.add_argument("--spatial", action="store_true",
                   help="image tasks: the GHN also reads each op's feature-map size at the "
                        "task's image size (decodes networks deeper than training far better)")
    t.add_argument("--select-every", type=int, default=0,
                   help="keep the step with the best validation accuracy of training "
                        "architectures, scored every this many steps (0: keep the last)")
    t.add_argument("--state-every", type=int, default=500,
                   help="steps between writes of the training state (OUT.state, beside --out): "
                        "a killed run started again with the same flags resumes from it; it is "
                        "removed once OUT is written")
    _device_option(t)
    _data_root_option(t)
    _retrain_option(t)
    t.set_defaults(handler=cmd_hypernet_train)


def cmd_hypernet_train(args: argparse.Namespace) -> int:
    from metanets.ghn_train import HypernetTrainConfig, train_hypernet
    from nas.rerun import found_ghn, training_flags
    from nas.tasks import load_task
    from search_spaces import get_space

    device = _device(args)
    _require_counts(args, "steps", "archs_per_step", "pool_size", "batch_size", "max_depth",
                    "max_width", "max_distance", "state_every", "tile_width")
    if _already_trained(args, found_ghn(args.out), "GHN"):
        return 0
    space = get_space(args.space)
    task = load_task(args.dataset, root=args.data_root)  # a search's split (seed 0), not --seed's
    space.check_level(task.level)
    config = HypernetTrainConfig(
        steps=args.steps, archs_per_step=args.archs_per_step, pool_size=args.pool_size,
        max_depth=args.max_depth, max_width=args.max_width, lr=args.lr,
        weight_decay=args.weight_decay, batch_size=args.batch_size, seed=args.seed,
        pool_seed=args.pool_seed, device=device, param_decay=args.param_decay,
        feature_basis=args.feature_basis, weight_norm=args.weight_norm,
        max_distance=args.max_distance, select_every=args.select_every,
        tile_width=args.tile_width, spatial=args.spatial,
        log_every=math.gcd(50, args.select_every) if args.select_every else 50,
    )
    state = hypernet_state(args.out)

    def log(step: int, entry: dict[str, float]) -> None:
        print(f"step {step:5d}  loss {entry['loss']:.4f}  train acc {entry['train_acc']:.3f}  "
              f"{entry['seconds']:.0f}s", flush=True)

    result = train_hypernet(space, task, config, log=log, state=state, state_every=args.state_every,
                            resuming=_say_resuming(state, "step"))
    path = result.ghn.save(args.out, {"train_hashes": result.train_hashes,
                                      "train_config": training_flags(args),
                                      "history": result.history, "kept_step": result.best_step})
    state.unlink(missing_ok=True)
    resumed = f", resumed at step {result.resumed_from}" if result.resumed_from else ""
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {result.seconds:.0f}s{resumed})")
    return 0


def hypernet_state(out: str) -> Path:
    """The training state ``metanas hypernet train --out OUT`` keeps while it trains: ``OUT.state``."""
    return Path(f"{out}.state")


def _retrain_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true",
                        help="train even if --out holds a finished model (of the same or other "
                             "flags) and replace it once the new one is written; without it a "
                             "re-run with the same flags trains nothing, and other flags are "
                             "refused")


def _already_trained(args: argparse.Namespace, found: Any, kind: str) -> bool:
    """Whether ``--out`` already holds the ``kind`` that ``args`` train (then said, and nothing
    is trained); ``ValueError`` (exit 2) when it holds another model, unless ``--overwrite``
    (see :mod:`nas.rerun`)."""
    from nas.rerun import already_trained, training_flags

    parser = _chosen_parser(build_parser(), args)
    defaults = {action.dest: action.default for action in parser._actions}
    line = already_trained(args.out, found, kind, training_flags(args), defaults, args.overwrite)
    if line is not None:
        print(line)
    return line is not None


def _add_predict_params(commands: Any) -> None:
    p = commands.add_parser(
        "predict-params", help="predict all parameters of an architecture with a GHN and export "
                               "the model (same format as metanas export)")
    p.add_argument("--hypernet", required=True, help="GHN checkpoint or pretrained:<name>")
    p.add_argument("--arch", required=True,
                   help="architecture JSON: a spec, or an exported architecture.json")
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument("--space", default=None, help="space of the spec (default: the GHN's)")
    p.add_argument("--dataset", default=None,
                   help="recompute BatchNorm statistics on this task's training data "
                        "(default: keep running statistics at 0/1)")
    _data_root_option(p)
    _device_option(p)
    _overwrite_option(p)
    p.set_defaults(handler=cmd_predict_params)


def cmd_predict_params(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from metanets.ghn import GraphHyperNetwork, calibrate_batchnorm
    from nas.export import export_model
    from search_spaces import get_space

    device = _device(args)
    check_out_folder(args.out, args.overwrite)
    start, cpu = time.perf_counter(), time.process_time()
    ghn = GraphHyperNetwork.load(args.hypernet, device)
    path = Path(args.arch)
    if not path.is_file():
        raise FileNotFoundError(f"architecture file {path} not found")
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise UsageError(f"{path} is not JSON: {error}") from error
    if not isinstance(document, dict):
        raise UsageError(f"{path} holds a JSON {type(document).__name__}, not an architecture "
                         f"spec (a JSON object)")
    _refuse_pruned_spec(document, path)
    spec = document.get("architecture", document)
    space = get_space(args.space or document.get("space") or ghn.config.space)
    arch = space.architecture_from_dict(spec)
    cfg = ghn.config
    model = space.build(arch, cfg.in_channels, cfg.out_channels, cfg.level)
    model.load_state_dict(ghn.predict(model))
    if args.dataset:
        from metanets.ghn_train import TaskBatches, check_task
        from nas.tasks import load_task

        task = load_task(args.dataset, root=args.data_root)
        check_task(ghn, task)
        calibrate_batchnorm(model.to(device), TaskBatches(task, device).calibration_inputs())
        model.to("cpu")
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    folder = export_model(
        args.out, space=space.name, spec=arch.to_dict(), in_channels=cfg.in_channels,
        out_channels=cfg.out_channels, level=cfg.level, state_dict=model.state_dict(),
        metadata={"dataset": args.dataset or cfg.dataset, "hypernet": str(args.hypernet),
                  "predicted_parameters": True},
        overwrite=args.overwrite,
    )
    print(f"predicted {sum(p.numel() for p in model.parameters())} parameters of "
          f"{arch.short()} in {seconds:.2f}s ({cpu:.2f}s CPU, GHN loading and graph tracing "
          f"included); exported to {folder}")
    return 0


def _refuse_pruned_spec(document: dict[str, Any], path: Path) -> None:
    """A pruned export's spec is the architecture it was pruned from; its narrower layers are
    no architecture of the space, so predict-params would predict for the unpruned one."""
    from nas.export import PRUNED_KEY

    pruned = document.get(PRUNED_KEY)
    if isinstance(pruned, dict):
        raise UsageError(
            f"{path} is the spec of a pruned model (widths {pruned.get('widths_before')} -> "
            f"{pruned.get('widths_after')}): no architecture spec describes its narrower layers, "
            f"and its spec is the unpruned one; give that spec (from {pruned.get('source')}) to "
            "predict for it")


def _add_prune(commands: Any) -> None:
    p = commands.add_parser(
        "prune", help="prune an exported model to a MACs speed-up, fine-tune it and export it")
    p.add_argument("--model", required=True, help="exported model folder (never modified)")
    p.add_argument("--dataset", required=True, help="task to fine-tune and measure accuracy on")
    p.add_argument("--speedup", type=_speedup, required=True,
                   help="MACs before / after, a finite number > 1, e.g. 2.0")
    p.add_argument("--out", required=True, help="folder to write the pruned model into")
    p.add_argument("--method", default="magnitude",
                   help="metanet, magnitude (L2 group norm, default) or random")
    p.add_argument("--finetune-epochs", type=int, default=10, help="fine-tuning epochs (0: none)")
    p.add_argument("--metanet", default=None, help="trained pruning metanetwork (method metanet)")
    p.add_argument("--seed", type=int, default=0)
    _device_option(p)
    _data_root_option(p)
    p.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    _overwrite_option(p)
    p.set_defaults(handler=cmd_prune)


def cmd_prune(args: argparse.Namespace) -> int:
    from nas.export import check_model_folder
    from nas.prune import PruneJob, format_outcome, run_prune

    device = _device(args)
    if args.finetune_epochs < 0:
        raise UsageError(f"--finetune-epochs {args.finetune_epochs} must be >= 0")
    check_model_folder(args.model)  # before --out's checks, which take it for a folder
    if Path(args.out).resolve() != Path(args.model).resolve():  # that one is refused by name below
        check_out_folder(args.out, args.overwrite)
    job = PruneJob(args.model, args.dataset, args.speedup, args.out, args.method,
                   args.finetune_epochs, args.metanet, args.seed, device, args.overwrite,
                   args.data_root)
    outcome, folder = run_prune(job, say=lambda note: print(note, file=sys.stderr if args.json
                                                             else sys.stdout, flush=True))
    if args.json:
        print(_json({**outcome.summary(), "out": str(folder)}))
    else:
        print(format_outcome(outcome))
        print(f"pruned model written to {folder}")
    return 0


def _add_evaluate(commands: Any) -> None:
    p = commands.add_parser(
        "evaluate", help="loss and accuracy of an exported model (export, prune, predict-params) "
                         "on the train, val and test splits; MACs and parameters")
    p.add_argument("--model", required=True, help="exported model folder (never modified)")
    p.add_argument("--dataset", default=None,
                   help="task to evaluate on (default: the one the export records; another "
                        "must have the model's level, input features and classes)")
    _data_root_option(p)
    _device_option(p)
    p.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    p.set_defaults(handler=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from nas.evaluate import EvaluateJob, format_evaluation, run_evaluate
    from nas.export import dataset_note

    device = _device(args)
    evaluation = run_evaluate(EvaluateJob(args.model, args.dataset, device, args.data_root))
    note = dataset_note("evaluating", evaluation.dataset, evaluation.trained_on)
    if note is not None:
        print(note, file=sys.stderr if args.json else sys.stdout)
    print(_json(evaluation.summary()) if args.json else format_evaluation(evaluation))
    return 0


def _positive_number(text: str) -> float:
    """A flag's finite number above 0 (``--lr``), refused as the command line is read (exit 2):
    ``--lr inf`` trained a model of NaN weights and wrote it as finished."""
    value = _float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _non_negative_number(text: str) -> float:
    """A flag's finite number >= 0 (a decay or a loss weight), refused as the command line is
    read (exit 2) otherwise."""
    value = _float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _float(text: str) -> float:
    """A float flag's value, as argparse's ``type=float`` refuses one that is none."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None


def _speedup(text: str) -> float:
    """``--speedup``'s value, refused as the command line is read (exit 2) unless it is a
    finite number above 1 (:func:`metanets.pruning.core.check_speedup`)."""
    from metanets.pruning.core import check_speedup

    value = _float(text)
    try:
        check_speedup(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return value


def _add_prune_metanet(commands: Any) -> None:
    p = commands.add_parser(
        "prune-metanet", help="train a pruning metanetwork on a zoo of trained networks of one "
                              "task (for metanas prune --method metanet); safetensors + JSON")
    p.add_argument("--dataset", required=True, help="task whose training data gives the task loss")
    p.add_argument("--out", required=True, help="folder to write the metanetwork into")
    p.add_argument("--model-dir", action="append", default=[],
                   help="exported model folder of the zoo (metanas export), repeatable")
    p.add_argument("--zoo", default=None, help="storage URL of stored networks (metanas zoo build)")
    p.add_argument("--study", action="append", default=[], help="zoo/study name (repeatable)")
    p.add_argument("--limit", type=int, default=None, help="most networks per study")
    p.add_argument("--penalty", default="lowest",
                   help="lowest (default: the lowest-norm fraction of every coupled group), "
                        "lasso (group lasso) or hoyer")
    p.add_argument("--fraction", type=float, default=0.45,
                   help="penalty lowest: fraction of every group's channels to empty (default "
                        "0.45; about 1 - 1/sqrt(speed-up) for CNNs)")
    p.add_argument("--lam", type=_non_negative_number, default=0.0,
                   help="weight of the relative penalty (default 0: with --pruned-weight 1, what "
                        "experiments/pruning.py chose on validation for MNIST and Cora)")
    p.add_argument("--pruned-weight", type=_non_negative_number, default=1.0,
                   help="weight of the task loss with the --fraction lowest channels dropped "
                        "(0: none; default 1)")
    p.add_argument("--preserve-norm", action="store_true",
                   help="rescale every rewritten weight tensor to its original Frobenius norm "
                        "(in training and when rewriting; the pruning benchmark chose it for the "
                        "GCNs on Cora, not for the MNIST CNNs)")
    p.add_argument("--distill", type=_non_negative_number, default=0.0,
                   help="weight of KL(original || rewritten) on unlabelled inputs (every node of a "
                        "node task), and times --pruned-weight of KL(original || dropped); 0: none")
    p.add_argument("--steps", type=int, default=1000, help="optimisation steps (one network each)")
    p.add_argument("--lr", type=_positive_number, default=3e-3)
    p.add_argument("--hidden", type=int, default=32, help="metanetwork width")
    p.add_argument("--layers", type=int, default=2, help="metanetwork layers")
    p.add_argument("--batch-size", type=int, default=128, help="images per step (image tasks)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--state-every", type=int, default=100,
                   help="steps between writes of the training state OUT.state, from which a "
                        "killed run resumes (removed once the metanetwork is written)")
    p.add_argument("--quiet", action="store_true", help="no training log lines")
    _device_option(p)
    _data_root_option(p)
    _retrain_option(p)
    p.set_defaults(handler=cmd_prune_metanet)


def prune_metanet_config(args: argparse.Namespace) -> Any:
    """The ``MetanetTrainConfig`` that ``metanas prune-metanet``'s flags ``args`` ask for
    (``experiments/metanet_memory.py --fit pruning`` measures the command with it)."""
    from metanets.pruning.metanet import MetanetTrainConfig

    return MetanetTrainConfig(lam=args.lam, penalty=args.penalty, fraction=args.fraction,
                              pruned_weight=args.pruned_weight, distill=args.distill,
                              preserve_norm=args.preserve_norm, steps=args.steps, lr=args.lr,
                              hidden=args.hidden, layers=args.layers, seed=args.seed)


def cmd_prune_metanet(args: argparse.Namespace) -> int:
    from nas.prune import MetanetJob, train_prune_metanet
    from nas.rerun import found_metanet, training_flags

    device = _device(args)
    if args.zoo:
        from storage import parse_url

        parse_url(args.zoo)
        if args.study:  # without one the pairing error comes first
            _check_studies(args.zoo, args.study)
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit {args.limit} must be >= 1")
    _require_counts(args, "batch_size", "state_every")
    config = prune_metanet_config(args)
    if _already_trained(args, found_metanet(args.out), "pruning metanetwork"):
        return 0
    state = metanet_state(args.out)
    job = MetanetJob(args.dataset, args.out, tuple(args.model_dir), args.zoo, tuple(args.study),
                     args.limit, args.batch_size, config, str(state), args.state_every, device,
                     training_flags(args), args.data_root)

    def log(step: int, task: float, penalty: float) -> None:
        if not args.quiet:
            print(f"step {step:5d}  task loss {task:.4f}  relative {args.penalty} {penalty:.4f}",
                  flush=True)

    _, folder = train_prune_metanet(job, log=log, resuming=_say_resuming(state, "step"))
    print(f"pruning metanetwork written to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(console_main())
