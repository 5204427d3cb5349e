"""Run a search: an Optuna study on RDB storage whose trials build, score and store architectures.

``run_search`` is what ``metanas search`` calls. Re-running it with the same storage and study
name continues the study: the budget (``n_trials``) counts the trials the study already finished,
so a killed search re-run finishes the rest, with every earlier trial intact. A trial left RUNNING
by a killed worker is failed by its missing heartbeat and retried (same parameters) by whichever
worker runs next; one stopped by Ctrl-C or SIGTERM is failed at once and does not count against
the budget. The ``n_jobs`` worker processes are supervised (:func:`nas.workers.supervise`):
one that dies is said as it happens and, once the others are done, raises :class:`WorkersDied`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import multiprocessing
import numbers
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import optuna
import torch
from optuna.trial import TrialState

from nas.evaluators import Evaluation, Evaluator, evaluator_name, get_evaluator
from nas.evaluators.base import COUNT_METRICS
from nas.pyg_classes import PYG_PREFIX, searched_before_official_splits
from nas.samplers import PrescreenSampler, check_strategy, get_sampler, proxy_scorer
from nas.samplers._prescreen import VETO_QUANTILE, check_veto_quantile, resolve_rule
from nas.tasks import Task, load_task
from nas.train import resolve_device
from nas.warm_start import WARM_START_K, enqueue_warm_start, parse_source, warm_start_architectures
from nas.warm_start import describe as describe_warm_start
from nas.workers import (
    INTERRUPTED, TERMINATED, Terminated, WorkerExit, ctrl_c_ignored, sigterm_interrupts, stop_with_parent, supervise,
    take_ctrl_c,
)
from search_spaces import SearchSpace, get_space
from storage import DEFAULT_STORAGE, ModelStore, make_optuna_storage, redact

if TYPE_CHECKING:
    from search_spaces.base import Architecture

#: objective name -> (direction, value from an evaluation); "accuracy" is the validation
#: accuracy, or a training-free evaluator's score (see Evaluation.accuracy_estimate)
OBJECTIVES: dict[str, tuple[str, Callable[[Evaluation], float]]] = {
    "accuracy": ("maximize", lambda ev: ev.accuracy_estimate()),
    "params": ("minimize", lambda ev: float(ev.num_params if ev.num_params is not None else math.nan)),
    # seconds of one inference pass: measured after training, or the benchmark table's
    "latency": ("minimize", lambda ev: float(ev.metrics.get("latency", math.nan))),
}
#: optuna pruners of a search: none, or median stopping on validation accuracy
PRUNERS: tuple[str, ...] = ("none", "median")
#: user attribute a trial gets when its objective failed for a reason of its own
FAIL_REASON = "fail_reason"
#: user attribute holding the traceback of a failed trial (its last lines)
FAIL_TRACEBACK = "fail_traceback"
#: study user attribute: where the weights it was first scored with were (for messages)
_SCORING_WEIGHTS_FROM = "scoring_weights_from"
#: trial states that use up budget (FAIL only with a FAIL_REASON: a dead worker's is retried)
_BUDGET_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclasses.dataclass
class SearchConfig:
    """Everything a search needs; what ``metanas search`` parses its options into."""

    # task name (any spelling, see nas.tasks.DATASETS), or a Task: a DataTask on one's own graphs
    dataset: str | Task
    space: str | SearchSpace = "gnn"       # search space name (or a space)
    strategy: str = "tpe"                  # sampler name (nas.samplers.STRATEGIES)
    evaluator: str | Evaluator = "train"   # evaluator name (nas.evaluators.EVALUATORS) or one
    convs: tuple[str, ...] | None = None   # restrict the GNN space to these convolutions
    n_trials: int = 20                     # total trials of the study (finished ones count)
    timeout: float | None = None           # seconds after which no new trial starts
    storage: str = DEFAULT_STORAGE         # SQLAlchemy URL
    study_name: str | None = None          # default: "<dataset>-<space>-<strategy>-<evaluator>"
    seed: int = 0                          # sampler and training seed
    device: str = "auto"                   # cpu, cuda or auto
    data_root: str | None = None           # None: $METANAS_DATA or the per-user cache
    n_jobs: int = 1                        # worker processes
    epochs: int = 200                      # most training epochs per trial
    patience: int = 50                     # early-stopping patience
    select: str = "val_acc"                # epoch a trained trial keeps (nas.train.SELECTIONS)
    objectives: tuple[str, ...] = ("accuracy",)  # or a comma-separated string
    pruner: str = "none"                   # one of PRUNERS
    heartbeat: int = 30                    # seconds between heartbeats of a running trial
    grace_period: int | None = None        # seconds before a silent RUNNING trial is failed
    verbose: bool = True                   # one line per trial and a progress bar
    prescreen: str | None = None           # zero-cost proxy ranking `prescreen_candidates`
    prescreen_candidates: int = 10         # base-strategy proposals per trial (PrescreenSampler)
    prescreen_dataset: str | None = None   # data the proxy sees (default: the search dataset)
    prescreen_rule: str = "best"           # "best": top proxy of the candidates; "veto": the
    #                                        strategy's own order, minus the proxy's low tail
    prescreen_veto_quantile: float = VETO_QUANTILE  # rule "veto": the low tail's upper quantile
    supernet: str | None = None            # checkpoint folder for evaluator "supernet"
    # graph hypernetwork (metanets.ghn): "train" evaluator's init ("random" | "hypernet") and
    # the GHN checkpoint of init="hypernet" and of the "hypernet" evaluator (None: pretrained)
    init: str = "random"
    hypernet: str | None = None
    # warm start (nas.warm_start): queue the best `warm_start_k` architectures of a source
    # ("study:NAME,..." or "nasbench-graph:DATASET,...") as the study's first trials
    warm_start: str | None = None
    warm_start_k: int = WARM_START_K
    # the evaluator as the user spelled it (`Zero_Cost:NASWOT`; None for an Evaluator object),
    # which names and identified studies made before names were canonical (1566c8b); set from
    # ``evaluator`` unless given, and reset where it names another evaluator (dataclasses.replace)
    evaluator_as_typed: str | None = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("n_trials", "n_jobs", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if self.convs is not None and not isinstance(self.space, str):
            raise ValueError("convs narrows a space given by name; a SearchSpace object carries its "
                             "own: build it with them (e.g. GNNSpace(convs=...))")
        if self.n_trials < 1:
            raise ValueError(f"n_trials must be >= 1, got {self.n_trials}")
        if self.n_jobs < 1:
            raise ValueError(f"n_jobs must be >= 1, got {self.n_jobs}")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {self.timeout}")
        if isinstance(self.objectives, str):  # "accuracy,params", as --objectives takes it
            self.objectives = tuple(name.strip() for name in self.objectives.split(",") if name.strip())
        if not self.objectives:
            raise ValueError(f"no objective given: choose among {sorted(OBJECTIVES)}")
        if self.pruner not in PRUNERS:
            raise ValueError(f"could not resolve pruner {self.pruner!r} among choices {list(PRUNERS)}")
        self.prescreen_rule = resolve_rule(self.prescreen_rule)
        check_veto_quantile(self.prescreen_veto_quantile)
        if self.prescreen is not None:
            from nas.proxies import proxy_name

            proxy_name(self.prescreen)  # an unknown proxy names the valid ones before any work
            if self.prescreen_candidates < 1:
                raise ValueError(f"prescreen_candidates must be >= 1, got {self.prescreen_candidates}")
        if self.warm_start is not None:
            parse_source(self.warm_start)  # a malformed source fails before anything runs
            if self.warm_start_k < 1:
                raise ValueError(f"warm_start_k must be >= 1, got {self.warm_start_k}")
        for name in self.objectives:
            if name not in OBJECTIVES:
                raise ValueError(
                    f"could not resolve objective {name!r} among choices {sorted(OBJECTIVES)}"
                )
        if len(set(self.objectives)) != len(self.objectives):
            raise ValueError(f"objectives {list(self.objectives)} name one twice")
        if self.objectives[0] != "accuracy":
            raise ValueError(f"objectives {list(self.objectives)} must start with 'accuracy' (the "
                             f"others are traded against it: accuracy,params or accuracy,latency)")
        check_dataset(self.dataset)
        self._canonicalise_evaluator()
        if isinstance(self.study_name, str) and not self.study_name.strip():
            raise ValueError(f"study name {self.study_name!r} is empty: name the study, or "
                             f"leave the name out for the default one")
        if self.study_name is None:  # canonical names: `--dataset Cora` resumes `cora-...`
            self.study_name = self._default_study_name(getattr(self.evaluator, "name", self.evaluator))

    def _canonicalise_evaluator(self) -> None:
        """One spelling of the evaluator for the study's name and identity (`Train` is `train`,
        with its epochs), the typed one kept in ``evaluator_as_typed``."""
        if not isinstance(self.evaluator, str):
            self.evaluator_as_typed = None
            return
        canonical = evaluator_name(self.evaluator)
        typed = self.evaluator_as_typed
        if typed is None or evaluator_name(typed) != canonical:  # a replace() for another evaluator
            self.evaluator_as_typed = self.evaluator
        self.evaluator = canonical

    def _default_study_name(self, evaluator: str) -> str:
        from nas.samplers import strategy_name
        from nas.tasks import resolve_dataset

        space = getattr(self.space, "name", None) or get_space(self.space).name
        strategy = self.strategy if not isinstance(self.strategy, str) else strategy_name(self.strategy)
        return f"{resolve_dataset(self.dataset)}-{space}-{strategy}-{evaluator}"

    def make_space(self) -> SearchSpace:
        return get_space(self.space, convs=self.convs)

    def make_evaluator(self) -> Evaluator:
        # each evaluator takes the options it understands (see get_evaluator)
        return get_evaluator(
            self.evaluator, epochs=self.epochs, patience=self.patience, supernet=self.supernet,
            init=self.init, hypernet=self.hypernet, select=self.select,
        )


def check_dataset(dataset: object) -> None:
    """``TypeError`` naming what a search takes unless ``dataset`` is a dataset name or a
    :class:`~nas.tasks.Task`; an unknown name is ``ValueError`` listing the names."""
    from nas.tasks import DATASETS, resolve_dataset

    if isinstance(dataset, Task):
        return
    if not isinstance(dataset, str):
        raise TypeError(
            f"dataset must be a dataset name (one of {sorted(DATASETS)}, tu:NAME or pyg:CLASS[:NAME]) or a "
            f"nas.tasks.Task (graphs of one's own: DataTask(graphs, 'a-name')), got "
            f"{type(dataset).__name__} {repr(dataset)[:100]}"
        )
    resolve_dataset(dataset)


class Objective:
    """Optuna objective: suggest an architecture, score it, store its weights.

    A trial whose architecture (by canonical hash) the study already completed reuses that
    trial's result instead of training again (``duplicate_of`` user attribute).
    """

    def __init__(
        self, space: SearchSpace, task: Task, evaluator: Evaluator, store: ModelStore,
        config: SearchConfig,
    ) -> None:
        self.space, self.task, self.evaluator, self.store = space, task, evaluator, store
        self.config = config
        self.device = str(resolve_device(config.device))

    def __call__(self, trial: optuna.Trial) -> float | Sequence[float]:
        try:
            return self._run(trial)
        except optuna.TrialPruned:
            raise
        except Exception as error:  # diverged, out of memory, a bad model: the trial fails with
            _record_failure(trial.storage, trial._trial_id, error)  # its reason and traceback
            raise  # stored, the search goes on

    def _run(self, trial: optuna.Trial) -> float | Sequence[float]:
        arch = self.space.suggest(trial)
        trial.set_user_attr("arch_hash", arch.arch_hash)
        trial.set_user_attr("arch", arch.to_json())
        trial.set_user_attr("summary", arch.short())
        earlier = _completed_with_hash(trial.study, arch.arch_hash)
        if earlier is not None:
            for key, value in earlier.user_attrs.items():
                if key not in ("arch", "arch_hash"):
                    trial.set_user_attr(key, value)
            trial.set_user_attr("duplicate_of", earlier.number)
            return earlier.values if len(earlier.values) > 1 else earlier.values[0]
        evaluation = self._evaluate(trial, arch)
        self._record(trial, arch, evaluation)
        values = [OBJECTIVES[name][1](evaluation) for name in self.config.objectives]
        unmeasured = [name for name, value in zip(self.config.objectives, values) if math.isnan(value)]
        if unmeasured:  # optuna would fail the trial without a reason, and it would not count
            raise ValueError(f"objective(s) {unmeasured} not measured (NaN)")
        return values if len(values) > 1 else values[0]

    def _evaluate(self, trial: optuna.Trial, arch: Architecture) -> Evaluation:
        def report(epoch: int, val_acc: float) -> None:
            if len(self.config.objectives) > 1:
                return  # optuna prunes single-objective studies only
            trial.report(val_acc, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch} with val_acc {val_acc:.4f}")

        return self.evaluator.evaluate(
            arch, self.space, self.task, seed=self.config.seed + trial.number,
            device=self.device, report=report,
        )

    def _record(self, trial: optuna.Trial, arch: Architecture, evaluation: Evaluation) -> None:
        for key, value in evaluation.recorded_metrics().items():
            trial.set_user_attr(key, value)
        trial.set_user_attr("num_params", evaluation.num_params)
        trial.set_user_attr("flops", evaluation.flops)
        trial.set_user_attr("seconds", round(evaluation.seconds, 3))
        trial.set_user_attr("epochs", evaluation.epochs)
        if evaluation.state_dict is None:
            return
        self.store.save_model(
            study_name=trial.study.study_name, trial_number=trial.number, space=self.space.name,
            arch_hash=arch.arch_hash, spec=arch.to_json(), dataset=self.task.name,
            level=self.task.level, in_channels=int(evaluation.in_channels or 0),
            out_channels=int(evaluation.out_channels or 0),
            num_params=int(evaluation.num_params or 0), flops=evaluation.flops,
            metrics=evaluation.recorded_metrics(),
            state_dict=evaluation.state_dict,
        )
        if evaluation.checkpoints:  # model zoos: weights and metrics at several epochs
            self.store.save_checkpoints(trial.study.study_name, trial.number, evaluation.checkpoints)


def _completed_with_hash(study: optuna.Study, arch_hash: str) -> optuna.trial.FrozenTrial | None:
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if trial.user_attrs.get("arch_hash") == arch_hash:
            return trial
    return None


def _record_failure(storage: optuna.storages.BaseStorage, trial_id: int, error: Exception) -> None:
    """Store why the trial ``trial_id`` failed (``FAIL_REASON``: the error in one line; ``FAIL_TRACEBACK``:
    where) and mark ``error`` as recorded, so the search's trial printer can state the failure
    in one line in place of optuna's logged traceback (:class:`_TrialLogFilter`). If the storage
    cannot take them, ``error`` stays unmarked and optuna logs it in full."""
    import traceback

    try:
        storage.set_trial_user_attr(trial_id, FAIL_REASON, f"{type(error).__name__}: {error}"[:1000])
        storage.set_trial_user_attr(trial_id, FAIL_TRACEBACK, "".join(traceback.format_exception(error))[-4000:])
    except Exception:  # noqa: BLE001 - the trial's own error is the one to raise and log
        return
    error.metanas_failure_recorded = True  # type: ignore[attr-defined]


class _TrialFailingSampler(optuna.samplers.BaseSampler):
    """The search's strategy, whose error as it prepares a trial (``before_trial``, where GDAS
    and NAC search and a pre-screen scores its candidates, or the relative sample) fails that
    trial at once, its reason and traceback stored as an objective's failure's are, and is
    raised: optuna creates the trial first and leaves it RUNNING without a heartbeat, which a
    re-run waited on for two grace periods. A Ctrl-C or SIGTERM there fails it without a
    reason: it does not count against the budget (a retry runs it again)."""

    def __init__(self, strategy: optuna.samplers.BaseSampler) -> None:
        self.strategy = strategy

    @contextlib.contextmanager
    def _failing(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> Iterator[None]:
        try:
            yield
        except BaseException as error:
            if isinstance(error, Exception):
                _record_failure(study._storage, trial._trial_id, error)
            with contextlib.suppress(Exception):  # the strategy's error is the one to raise
                study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            raise

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        with self._failing(study, trial):
            self.strategy.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict:
        with self._failing(study, trial):
            return self.strategy.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, search_space: dict) -> dict:
        with self._failing(study, trial):
            return self.strategy.sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, param_name: str,
                           param_distribution: optuna.distributions.BaseDistribution) -> Any:
        # called by the objective's suggest, which records a failure itself
        return self.strategy.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self.strategy.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.strategy.reseed_rng()

    def __repr__(self) -> str:
        return repr(self.strategy)


def counts_against_budget(trial: optuna.trial.FrozenTrial) -> bool:
    """Finished trials count; a FAIL only when the objective failed it (a dead worker's trial
    is retried instead)."""
    if trial.state in _BUDGET_STATES:
        return True
    return trial.state == TrialState.FAIL and FAIL_REASON in trial.user_attrs


def create_or_load_study(config: SearchConfig, task: Task) -> optuna.Study:
    """Create the study, or load it and check it was made for the same dataset and space."""
    storage = make_optuna_storage(config.storage, config.heartbeat, config.grace_period)
    directions = [OBJECTIVES[name][0] for name in config.objectives]
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=20)
        if config.pruner == "median" else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(
        storage=storage, study_name=config.study_name, directions=directions,
        load_if_exists=True, pruner=pruner,
    )
    _check_or_set_identity(study, config, task)
    return study


def _check_or_set_identity(study: optuna.Study, config: SearchConfig, task: Task) -> None:
    space = config.make_space()
    scoring = config.make_evaluator().scoring_weights(space, task)
    identity = {
        "dataset": task.name, "space": space.name, "objectives": list(config.objectives),
        # the space's choices (--convs, zoo --space-options): a resumed study whose choices
        # differ would fail every trial on optuna's "dynamic value space" check, forever
        "space_choices": repr(space),
        # what a trial's numbers mean: another evaluator, or training with other epochs,
        # patience or initialisation, would mix incomparable trials in one study
        "evaluation": _evaluation_identity(config),
        # the train evaluator's batch size and checkpoint epochs: a zoo resumed with others
        # would mix networks trained or recorded otherwise (recorded from this key's
        # introduction on; a study made before it takes it on its first resume)
        "training": _training_identity(config),
        # a DataTask's graphs, labels and split: its name alone let a study resumed with other
        # data under the same name mix trials measured on both (None for a dataset loaded by name)
        "data_fingerprint": task.fingerprint,
        # the trained weights that score the trials or start them, a supernet's or a GHN's
        # (by content: their folder may move, a GHN may be retrained into the same file);
        # recorded from this key's introduction on, as "training" is
        "scoring_weights": scoring[0] if scoring else None,
    }
    identity = {key: value for key, value in identity.items() if value is not None}
    stored = {key: study.user_attrs.get(key) for key in identity}
    before = _evaluation_identity_before(config)
    made_before = before is not None and stored["evaluation"] == before
    if made_before:  # checked as the canonical identity; stored as it once all keys passed
        stored["evaluation"] = identity["evaluation"]
    if all(value is None for value in stored.values()):
        study.set_user_attr("task_level", task.level)
    for key, value in identity.items():
        if stored[key] is None:  # a new study, or one made before this key was recorded
            if key == "data_fingerprint":
                _check_not_made_on_a_training_split(study, config, task)
            study.set_user_attr(key, value)
            if key == "scoring_weights":  # where they were then: a refused resume says it
                study.set_user_attr(_SCORING_WEIGHTS_FROM, scoring[1])
        elif stored[key] == value:
            continue
        elif key == "scoring_weights":
            raise ValueError(
                f"study {config.study_name!r} was scored with weights of SHA-256 "
                f"{stored[key][:12]}... ({study.user_attrs.get(_SCORING_WEIGHTS_FROM)}), not with "
                f"those of {scoring[1]} ({value[:12]}...); resume it with those weights, or "
                f"choose another --study name"
            )
        elif key == "data_fingerprint":
            raise ValueError(
                f"study {config.study_name!r} was created with data fingerprint {stored[key][:12]}..., "
                f"this {type(task).__name__} {task.name!r} has {value[:12]}... (other graphs, "
                f"labels or split); give it another name or study"
            )
        else:
            raise ValueError(
                f"study {config.study_name!r} was created with {key} {stored[key]!r}, not "
                f"{value!r}; resume it with the options it was created with, or choose another "
                f"--study name"
            )
    if made_before:
        study.set_user_attr("evaluation", identity["evaluation"])


def _check_not_made_on_a_training_split(study: optuna.Study, config: SearchConfig, task: Task) -> None:
    """``ValueError`` for a study of a ``pyg:`` dataset with official splits that has trials
    but no data fingerprint: it was made when metanas searched such a class as its default
    split loads it, re-split 80/10/10, so its trials were measured on other data than this
    task's."""
    if task.info.family != PYG_PREFIX or not study.get_trials(deepcopy=False):
        return
    raise ValueError(
        f"study {config.study_name!r} was made when metanas searched {task.name!r} on "
        f"{searched_before_official_splits(task.name)} (re-split 80/10/10); it now searches its "
        f"official train, val and test splits, and those trials are not comparable: choose "
        f"another --study name"
    )


def _evaluation_identity(config: SearchConfig) -> str:
    """The evaluator's canonical name (:func:`~nas.evaluators.evaluator_name`), and for the
    ``train`` evaluator its epochs, patience, init and (when not the default, so that older
    studies keep their identity) its epoch selection."""
    evaluator = config.evaluator
    name = evaluator if isinstance(evaluator, str) else getattr(evaluator, "name", type(evaluator).__name__)
    if name != "train":
        return f"evaluator {name}"
    made = config.make_evaluator()  # a TrainEvaluator given as an object carries its own settings
    chosen = getattr(made, "select", "val_acc")
    select = "" if chosen == "val_acc" else f", select {chosen}"
    return f"evaluator train, epochs {made.epochs}, patience {made.patience}, init {made.init}{select}"


def _evaluation_identity_before(config: SearchConfig) -> str | None:
    """The evaluation identity the code before 1566c8b stored for the evaluator as typed, where
    it differs from the canonical one: the name as given (so `Train`'s lacks its epochs, and is
    accepted only when typed `Train` again)."""
    typed = config.evaluator_as_typed
    return None if typed in (None, config.evaluator) else f"evaluator {typed}"


def resume_study_named_before(config: SearchConfig) -> None:
    """Name ``config``'s study by the default name the code before 1566c8b made from the
    evaluator as typed (`mutag-gnn-tpe-zero_cost:naswot`) where the storage holds a study of
    that name and none of the canonical one, saying so: the same command resumes it. Only a
    study named by default looks (its name is the canonical default one)."""
    typed = config.evaluator_as_typed
    if typed in (None, config.evaluator) or config.study_name != config._default_study_name(config.evaluator):
        return
    before = config._default_study_name(typed)
    names = _study_names(config)
    if before in names and config.study_name not in names:
        print(f"metanas search: resuming study {before!r}, named before evaluator names were "
              f"canonical (no study {config.study_name!r} exists)", flush=True)
        config.study_name = before


def _training_identity(config: SearchConfig) -> str | None:
    """For the ``train`` evaluator, its batch size and checkpoint epochs (None for others)."""
    evaluator = config.evaluator
    name = evaluator if isinstance(evaluator, str) else getattr(evaluator, "name", None)
    if name != "train":
        return None
    made = config.make_evaluator()
    return f"batch size {made.batch_size}, checkpoint epochs {list(made.checkpoint_epochs)}"


def run_search(config: SearchConfig,
               on_study: Callable[[optuna.Study], object] | None = None) -> optuna.Study:
    """Run (or continue) the search described by ``config``; returns the study.

    Everything that can be refused is refused before the study is created (a new study that
    failed to start would hold the identity of the refused command and refuse the corrected
    one). ``on_study(study)`` is called once the study exists (created, or resumed with the
    same settings), before any trial: what names it is said then, never for a refused one."""
    resolve_device(config.device)  # cuda without CUDA: refused before any data or study
    task = search_task(config)
    space = config.make_space().for_dataset(task.name)
    evaluator = config.make_evaluator()
    evaluator.check_space(space)
    evaluator.check_task(task)
    check_objectives(config.objectives, evaluator)
    get_sampler(config.strategy)  # fail on an unknown strategy before any process starts
    check_strategy(config.strategy, space, config.objectives)
    space.check_level(task.level)
    if evaluator.needs_data:
        task.num_features  # load the data (and fail on missing data) before the first trial
    evaluator.prepare(space, task)
    if config.prescreen:
        prescreen_task(config, task).num_features  # the proxy's data, likewise
    if config.n_jobs > 1:
        check_sendable(config)  # a DataTask's graphs go to the spawned workers with it
    # the study's name, once nothing is refused: it opens (and on SQLite creates the schema of)
    # the storage, and says which study resumes (every read of config.study_name comes after)
    resume_study_named_before(config)
    queued = None
    if config.warm_start and not study_exists(config):  # a bad source fails before the study exists
        queued = warm_start_architectures(
            config.warm_start, space, min(config.warm_start_k, config.n_trials),
            storage=config.storage, dataset=task.name,
        )
    study = create_or_load_study(config, task)
    if on_study is not None:
        on_study(study)
    if config.warm_start:
        warm_start(study, space, config, task, queued)
    if config.n_jobs == 1:
        run_worker(config, worker=0, task=task)
        return study
    context = multiprocessing.get_context("spawn")
    verbosity = optuna.logging.get_verbosity()
    ctrl_c = not ctrl_c_ignored()  # read before supervise ignores it as it starts the workers
    workers = {  # the fingerprint checked against the study above: a worker does not hash the data again
        i: context.Process(target=_worker_process, args=(config, i, verbosity, task.fingerprint, ctrl_c))
        for i in range(1, config.n_jobs)
    }
    threads = torch.get_num_threads()  # worker 0 is this process: its share is for the search only
    try:
        died = supervise(workers, lambda: run_worker(config, worker=0, task=task), grace_seconds(config))
    finally:
        torch.set_num_threads(threads)
    if died:
        raise WorkersDied(died, study, config.n_trials)
    return study


def check_sendable(config: SearchConfig) -> None:
    """``ValueError`` naming what failed if ``config`` (a :class:`~nas.tasks.DataTask` and its
    graphs included) cannot be pickled, as the ``n_jobs`` spawned workers receive it."""
    from multiprocessing.reduction import ForkingPickler

    try:
        ForkingPickler.dumps(config)
    except Exception as error:  # noqa: BLE001 - pickling raises several types
        what = f"dataset {config.dataset!r}" if isinstance(config.dataset, Task) else "settings"
        raise ValueError(
            f"n_jobs {config.n_jobs} sends the search's {what} to worker processes, which "
            f"cannot be pickled ({type(error).__name__}: {error}); search with n_jobs=1, or "
            f"make it picklable (a transform defined at module level, not a lambda)"
        ) from error


class WorkersDied(RuntimeError):
    """Worker processes of a search exited abnormally (``exits`` says how); the others ran on.
    ``study`` holds every trial that finished."""

    def __init__(self, exits: list[WorkerExit], study: optuna.Study, n_trials: int) -> None:
        self.exits, self.study = exits, study
        finished = sum(counts_against_budget(t) for t in study.get_trials(deepcopy=False))
        stored = (f"the other workers finished the study: its {finished} trials are stored"
                  if finished >= n_trials else
                  f"{finished} of the study's {n_trials} trials are finished and stored: re-run "
                  f"the same command for the rest")
        super().__init__(f"{'; '.join(map(str, exits))}; {stored}")


def check_objectives(objectives: Sequence[str], evaluator: Evaluator) -> None:
    """``ValueError`` if an objective is one the evaluator does not measure (every trial's value
    would be NaN, which optuna fails)."""
    from nas.evaluators import EVALUATORS

    if "latency" in objectives and not evaluator.measures_latency:
        measuring = sorted(name for name, cls in EVALUATORS.items() if cls.measures_latency)
        raise ValueError(
            f"objective 'latency' is not measured by evaluator {evaluator.name!r}; evaluators "
            f"that measure it: {measuring}"
        )


def study_exists(config: SearchConfig) -> bool:
    """Whether ``config``'s storage holds its study (a missing SQLite file is not created)."""
    return config.study_name in _study_names(config)


def _study_names(config: SearchConfig) -> list[str]:
    """The studies in ``config``'s storage (none where its SQLite file is missing: not created)."""
    from storage.engine import existing_database

    try:
        existing_database(config.storage)
    except FileNotFoundError:
        return []
    storage = make_optuna_storage(config.storage, config.heartbeat, config.grace_period)
    return optuna.get_all_study_names(storage)


def warm_start(study: optuna.Study, space: SearchSpace, config: SearchConfig, task: Task,
               archs: list | None = None) -> int:
    """Queue the warm-start architectures (once per study, at most the trial budget):
    ``archs`` where the caller already chose them, else chosen here."""
    if describe_warm_start(study):
        return 0  # a resumed study: queued when it started
    if archs is None:
        archs = warm_start_architectures(
            config.warm_start, space, min(config.warm_start_k, config.n_trials),
            storage=config.storage, dataset=task.name,
        )
    queued = enqueue_warm_start(study, space, archs, config.warm_start)
    if config.verbose:
        print(f"warm start: queued {queued} architectures from {config.warm_start}", flush=True)
    return queued


def run_worker(config: SearchConfig, worker: int = 0, task: Task | None = None) -> None:
    """One worker's loop: run trials until the study's budget or the timeout is used up."""
    if config.n_jobs > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // config.n_jobs))
    task = task or search_task(config)
    space = config.make_space().for_dataset(task.name)
    evaluator = config.make_evaluator()
    study = create_or_load_study(config, task)
    study.sampler = get_sampler(  # NAC and the gradient strategy fit their supernet on `task`
        config.strategy, seed=sampler_seed(config.seed, worker, study), space=space, task=task,
        device=config.device,
    )
    if config.prescreen:
        study.sampler = PrescreenSampler(
            study.sampler, space, proxy_scorer(
                space, prescreen_task(config, task), config.prescreen, seed=config.seed,
                device=str(resolve_device(config.device)),
            ), config.prescreen_candidates, config.prescreen_rule,
            veto_quantile=config.prescreen_veto_quantile,
        )
    study.sampler = _TrialFailingSampler(study.sampler)
    store = ModelStore(config.storage)
    objective = Objective(space, task, evaluator, store, config)
    printer = TrialPrinter(config, worker) if config.verbose else None
    deadline = time.monotonic() + config.timeout if config.timeout else math.inf
    waiting = False
    with _filtered_trial_logs(quiet_failures=printer is not None):
        while time.monotonic() < deadline:
            action = _next_action(study, config.n_trials)
            if action == "done":
                break
            if action == "wait":  # the last trials run in other workers (or in dead ones)
                if printer and not waiting:
                    print(_waiting_line(study, config), flush=True)
                waiting = True
                time.sleep(min(config.heartbeat, 5))
                continue
            waiting = False
            study.optimize(
                objective, n_trials=1, catch=(Exception,),
                callbacks=[printer] if printer else None,
            )
    if printer:
        printer.close(study)


def _worker_process(config: SearchConfig, worker: int, verbosity: int, fingerprint: str | None = None,
                    ctrl_c: bool = True) -> None:
    """A spawned worker: optuna logs as in the parent (whose experimental warnings were shown
    there), and Ctrl-C, which a terminal sends to every worker, ends it without a traceback;
    the parent reports the interruption. SIGTERM (a job scheduler's, or the parent's stopping
    it) is handled as Ctrl-C is: its running trial is failed at once, not left RUNNING until
    its heartbeat has been silent for the grace period, and it exits 143. It stops with its
    parent, even one killed by SIGKILL. ``fingerprint``: the task's data fingerprint as the
    parent computed it and checked against the study (None: the task has none, or computes
    it): each worker read and hashed every graph again for the study's check (9 s of hashing
    on a 70k-graph pyg:GNNBenchmarkDataset:MNIST, besides the reading); its data is read when
    a trial needs it. ``ctrl_c``: False where the parent ignored Ctrl-C (``cmd &`` in a
    script): this worker ignores it too, as its parent does."""
    stop_with_parent()
    import threading

    from tqdm.auto import tqdm

    optuna.logging.set_verbosity(verbosity)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # tqdm's default lock is a multiprocessing semaphore; a killed worker's was reported at exit
    # as "leaked semaphore objects". This worker's bar is disabled, its lock is its own.
    tqdm.set_lock(threading.RLock())
    # Outside its trials a worker ignores SIGTERM: a repeat (the parent's terminate after the
    # process group got one) while it exits must not kill it, which would say it left a trial
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        if ctrl_c:
            take_ctrl_c()  # it started with Ctrl-C ignored, as it imported what its work needs
        with sigterm_interrupts():
            run_worker(config, worker, task=search_task(config, fingerprint=fingerprint))
    except KeyboardInterrupt as interrupt:  # optuna failed the running trial, as it raised
        sys.exit(TERMINATED if isinstance(interrupt, Terminated) else INTERRUPTED)


class _TrialLogFilter(logging.Filter):
    """Filters what optuna logs about finished trials during a search.

    It drops optuna's report of a trial stopped by Ctrl-C (the KeyboardInterrupt's traceback)
    and everything logged after it: the interrupt itself ends the search. With
    ``quiet_failures`` it also drops optuna's report of a failed trial whose reason and
    traceback the objective stored (:func:`_record_failure`), which is two warnings, the first
    with the traceback: the search's trial printer states the failure in one line, and
    ``metanas trials --json`` shows the traceback.
    """

    def __init__(self, quiet_failures: bool = False) -> None:
        super().__init__()
        self.interrupted = False
        self.quiet_failures = quiet_failures
        self._quieted: set[str] = set()  # "Trial 7": its second warning is dropped too

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, KeyboardInterrupt):
            self.interrupted = True
        if self.interrupted:
            return False
        if not self.quiet_failures:
            return True
        message = record.getMessage()
        if getattr(error, "metanas_failure_recorded", False):
            self._quieted.add(message.split(" failed with", 1)[0])
            return False
        head, found, _ = message.partition(" failed with value")
        if found and head in self._quieted:
            self._quieted.discard(head)
            return False
        return True


@contextlib.contextmanager
def _filtered_trial_logs(quiet_failures: bool = False) -> Iterator[None]:
    logger = logging.getLogger("optuna.study._optimize")  # where optuna logs a failed trial
    trial_filter = _TrialLogFilter(quiet_failures)
    logger.addFilter(trial_filter)
    try:
        yield
    finally:
        logger.removeFilter(trial_filter)


def search_task(config: SearchConfig, dataset: str | Task | None = None,
                fingerprint: str | None = None) -> Task:
    """``config``'s dataset (or ``dataset``, read from ``config``'s data root) as every search
    splits it (seed 0: every worker and every resumption searches the same split);
    ``fingerprint``: its data fingerprint where known already (:func:`~nas.tasks.load_task`)."""
    return load_task(config.dataset if dataset is None else dataset, config.data_root, seed=0,
                     fingerprint=fingerprint)


def prescreen_task(config: SearchConfig, task: Task) -> Task:
    """The task whose data the pre-screening proxy is computed on."""
    if config.prescreen_dataset is None:
        return task
    return search_task(config, config.prescreen_dataset)


def sampler_seed(seed: int, worker: int, study: optuna.Study) -> int:
    """Distinct per worker and per resumption (a resumed study must not replay the random
    start-up proposals it already tried), and still a function of the study's state."""
    return (seed * 1_000_003 + worker * 7_919 + 104_729 * len(study.get_trials(deepcopy=False))) % 2**31


def _waiting_line(study: optuna.Study, config: SearchConfig) -> str:
    """What a worker says while the study's last trials run elsewhere: a killed worker's trial
    is failed and retried only after its heartbeat has been silent for the grace period."""
    running = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    return (f"waiting for trial {', '.join(map(str, running))} running in other workers (one whose "
            f"worker was killed is retried once its heartbeat has been silent for {grace_seconds(config)} s)")


def grace_seconds(config: SearchConfig) -> int:
    """Seconds without a heartbeat after which a RUNNING trial of ``config``'s search is failed
    and retried (as :func:`storage.make_optuna_storage` sets it)."""
    from storage.optuna_storage import grace_seconds as storage_grace_seconds

    return storage_grace_seconds(config.heartbeat, config.grace_period)


def _next_action(study: optuna.Study, n_trials: int) -> str:
    """``"run"`` another trial, ``"wait"`` for running ones, or ``"done"``."""
    with warnings.catch_warnings():  # experimental since optuna 2.9, and what we need here
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        _heartbeat_silent_trials(study)
        optuna.storages.fail_stale_trials(study)
    trials = study.get_trials(deepcopy=False)
    finished = sum(counts_against_budget(t) for t in trials)
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    if finished >= n_trials:
        return "done"
    if waiting or finished + running < n_trials:
        return "run"
    return "wait"


def _heartbeat_silent_trials(study: optuna.Study) -> None:
    """Give a heartbeat to RUNNING trials that never recorded one and started more than a grace
    period ago, so that ``fail_stale_trials`` fails (and retries) them one grace period later.

    A worker killed between creating its trial and its heartbeat thread's first beat leaves
    such a trial; optuna's stale-trial check skips trials without a heartbeat, so a resumed
    search would wait for it forever. A live trial beats within its first heartbeat interval,
    so only trials of dead workers are touched.
    """
    storage = getattr(study._storage, "_backend", study._storage)  # optuna wraps it in a cache
    if not isinstance(storage, optuna.storages.RDBStorage) or storage.heartbeat_interval is None:
        return
    # optuna has no public query for "has this trial a heartbeat"; its own table answers
    from optuna.storages._rdb import models

    grace = storage.grace_period or 2 * storage.heartbeat_interval
    old = {
        trial._trial_id for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if trial.datetime_start is not None and _age_seconds(trial.datetime_start) > grace
    }
    if not old:
        return
    session = storage.scoped_session()
    try:
        beating = {
            row.trial_id for row in session.query(models.TrialHeartbeatModel.trial_id)
            .filter(models.TrialHeartbeatModel.trial_id.in_(old))
        }
    finally:
        session.close()
    silent = sorted(old - beating)
    for trial_id in silent:
        storage.record_heartbeat(trial_id)


def _age_seconds(start: Any) -> float:
    """Seconds since ``start`` (optuna gives timezone-aware or local naive datetimes)."""
    import datetime

    now = datetime.datetime.now(start.tzinfo) if start.tzinfo else datetime.datetime.now()
    return (now - start).total_seconds()


class TrialPrinter:
    """One concise line per finished trial and a progress bar over the study's budget."""

    def __init__(self, config: SearchConfig, worker: int) -> None:
        from tqdm.auto import tqdm

        self.config, self.worker = config, worker
        self.bar = tqdm(
            total=config.n_trials, desc=f"{config.study_name}", unit="trial",
            disable=worker > 0 or not sys.stderr.isatty(), leave=False,
        )

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.bar.n = sum(counts_against_budget(t) for t in study.get_trials(deepcopy=False))
        self.bar.refresh()
        self.bar.write(format_trial_line(trial, self.worker if self.config.n_jobs > 1 else None))

    def close(self, study: optuna.Study) -> None:
        self.bar.close()


def format_trial_line(trial: optuna.trial.FrozenTrial, worker: int | None = None) -> str:
    """``[trial 7] COMPLETE val 0.812 test 0.806 | 92,103 params | 41 ep 3.2s | gcn64-gat128h4``"""
    prefix = f"[trial {trial.number}{'' if worker is None else f' w{worker}'}]"
    attrs = trial.user_attrs
    if trial.state == TrialState.FAIL:
        return f"{prefix} FAIL {attrs.get(FAIL_REASON, 'worker stopped')}"
    if trial.state == TrialState.PRUNED:
        return f"{prefix} PRUNED at epoch {trial.last_step}"
    if "val_acc" not in attrs and "score" in attrs:  # a training-free evaluator
        parts = [f"{prefix} score {attrs['score']:.6g}"]
    else:
        parts = [f"{prefix} val {attrs.get('val_acc', math.nan):.4f} test {attrs.get('test_acc', math.nan):.4f}"]
    if attrs.get("num_params") is not None:
        parts.append(f"{attrs['num_params']:,} params")
    if attrs.get("duplicate_of") is not None:
        parts.append(f"same architecture as trial {attrs['duplicate_of']}")
    elif attrs.get("epochs") is not None:  # a table lookup trains no epochs
        parts.append(f"{attrs['epochs']} ep {attrs.get('seconds') or 0.0:.1f}s")
    parts.append(str(attrs.get("summary", "")))
    return " | ".join(parts)


def trial_summary(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """A JSON-ready record of a trial: number, state, values, metrics and the architecture."""
    import json

    attrs = dict(trial.user_attrs)
    spec = attrs.pop("arch", None)
    for key in COUNT_METRICS:  # databases written before counts were stored as ints hold floats
        if isinstance(attrs.get(key), float) and attrs[key].is_integer():
            attrs[key] = int(attrs[key])
    return {
        "trial": trial.number,
        "state": trial.state.name,
        "values": trial.values,
        "val_acc": attrs.pop("val_acc", None),
        "test_acc": attrs.pop("test_acc", None),
        "num_params": attrs.pop("num_params", None),
        "architecture": json.loads(spec) if spec else None,
        **attrs,
    }


def describe_storage(url: str) -> str:
    return redact(url)
