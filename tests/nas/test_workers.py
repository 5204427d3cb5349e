"""Supervised worker processes (nas.workers) of `metanas search --n-jobs` and `zoo build --n-jobs`.

The workers here are tiny test doubles (spawned processes are slow to start): this module
imports nothing heavy at the top, because every spawned worker imports it to find its target.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nas import workers
from nas.workers import supervise

SPAWN = multiprocessing.get_context("spawn")
#: what an interrupted or terminated `metanas search` says it kept, and how to resume
SEARCH_KEPT = ("finished trials are stored, the interrupted ones failed (they do not count against "
               "--trials): the same command resumes the search")


def _exit_3() -> None:
    os._exit(3)


def _kill_myself() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _finish_later(marker: str) -> None:
    time.sleep(1.0)
    Path(marker).write_text("done")


def test_a_dead_worker_is_said_as_it_happens_and_the_others_finish(tmp_path: Path, capsys) -> None:
    """Before: a dead worker was never reported, and the command exited 0."""
    marker = tmp_path / "survivor"
    started = {1: SPAWN.Process(target=_exit_3), 2: SPAWN.Process(target=_kill_myself),
               3: SPAWN.Process(target=_finish_later, args=(str(marker),))}
    said = []

    def own_work() -> None:  # still running when the deaths are said
        deadline = time.monotonic() + 60
        while len(said) < 2 and time.monotonic() < deadline:
            said.extend(capsys.readouterr().err.splitlines())
            time.sleep(0.1)

    died = supervise(started, own_work, grace=120)
    pids = {n: p.pid for n, p in started.items()}
    assert sorted(said) == [
        f"worker 1 (pid {pids[1]}) exited with code 3; its running trial, if any, will be retried "
        f"once its heartbeat has been silent for 120 s",
        f"worker 2 (pid {pids[2]}) was killed by SIGKILL; its running trial, if any, will be "
        f"retried once its heartbeat has been silent for 120 s",
    ]
    assert sorted((d.worker, d.exitcode) for d in died) == [(1, 3), (2, -signal.SIGKILL)]
    assert started[3].exitcode == 0 and marker.read_text() == "done"  # the survivor finished


def _terminated_while_starting() -> None:
    os.kill(os.getpid(), signal.SIGTERM)  # before any handler: SIGTERM's default action
    time.sleep(30)


def test_a_worker_ended_by_sigterm_as_it_starts_is_said_to_have_run_no_trial(capsys) -> None:
    """Before: it was said to leave a running trial to be retried once its heartbeat had been
    silent for 120 s, though it had not got so far as to handle SIGTERM, let alone run one."""
    started = {1: SPAWN.Process(target=_terminated_while_starting)}
    said = []

    def own_work() -> None:  # still running when the exit is said
        deadline = time.monotonic() + 60
        while not said and time.monotonic() < deadline:
            said.extend(capsys.readouterr().err.splitlines())
            time.sleep(0.1)

    died = supervise(started, own_work, grace=120)
    assert said == [f"worker 1 (pid {started[1].pid}) was killed by SIGTERM; it was still starting: it had "
                    f"run no trial"]
    assert [d.stopped_itself for d in died] == [True]


class _SlowToUnpickle:
    """A worker's argument whose unpickling there stands for its imports (torch, as it unpickles
    a search's settings): it creates the file ``began``, then waits for the file ``go``."""

    def __init__(self, began: str, go: str) -> None:
        self.began, self.go = began, go

    def __setstate__(self, state: dict) -> None:
        vars(self).update(state)
        Path(self.began).write_text("")
        deadline = time.monotonic() + 60
        while not Path(self.go).exists() and time.monotonic() < deadline:
            time.sleep(0.05)


def _take(argument) -> None:
    pass


def test_a_ctrl_c_to_a_worker_still_starting_prints_no_traceback(tmp_path: Path, capfd) -> None:
    """Before: the KeyboardInterrupt escaped multiprocessing's unpickling in the worker, before
    its own code could catch it: a normal Ctrl-C printed a traceback ending in 'import torch'."""
    began, go = tmp_path / "began", tmp_path / "go"
    started = {1: SPAWN.Process(target=_take, args=(_SlowToUnpickle(str(began), str(go)),))}

    def own_work() -> None:  # the terminal's Ctrl-C as it reaches the worker
        deadline = time.monotonic() + 120
        while not began.exists():
            assert time.monotonic() < deadline, "the worker never started"
            time.sleep(0.05)
        os.kill(started[1].pid, signal.SIGINT)
        go.write_text("")

    died = supervise(started, own_work, grace=120)
    assert "Traceback" not in capfd.readouterr().err
    assert (died, started[1].exitcode) == ([], 0)


def _search_worker_interrupted(config, worker: int, verbosity: int, fingerprint=None, ctrl_c: bool = True) -> None:
    """Stands in for nas.study._worker_process: the real one, its trials a Ctrl-C."""
    import nas.study

    nas.study.run_worker = _interrupt_myself
    nas.study._worker_process(config, worker, verbosity, fingerprint, ctrl_c)


@pytest.fixture
def terminal_ctrl_c():
    """SIGINT as a program started from a terminal has it (KeyboardInterrupt), whatever this test
    process inherited: pytest started by `cmd &` in a script ignores it, and then its own Ctrl-C
    never arrived and these tests failed (the search ignores Ctrl-C then, as it should)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_search_worker_takes_ctrl_c_back_as_it_starts(sqlite_url: str, no_data, monkeypatch,
                                                        terminal_ctrl_c) -> None:
    """It starts with Ctrl-C ignored (see the test above); its trial's Ctrl-C still stops it, exit 130."""
    import nas.study
    from nas.study import SearchConfig, WorkersDied, run_search

    monkeypatch.setattr(nas.study, "run_worker", _no_trial_finished)  # worker 0, in this process
    monkeypatch.setattr(nas.study, "_worker_process", _search_worker_interrupted)
    with pytest.raises(WorkersDied) as died:
        run_search(SearchConfig("cora", space="nasbench-graph", evaluator="table", n_trials=4, n_jobs=2,
                                storage=sqlite_url, verbose=False))
    assert [exit_.exitcode for exit_ in died.value.exits] == [130]


def _ctrl_c_to_me(config, worker: int = 0, task=None) -> None:
    """Stands in for nas.study.run_worker in a worker: the terminal's Ctrl-C to its group reaches it."""
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.5)  # where a Ctrl-C taken back arrives as KeyboardInterrupt


def _search_worker_given_ctrl_c(config, worker: int, verbosity: int, *rest) -> None:
    """Stands in for nas.study._worker_process: the real one, its trials a Ctrl-C to it."""
    import nas.study

    nas.study.run_worker = _ctrl_c_to_me
    nas.study._worker_process(config, worker, verbosity, *rest)


def test_a_search_started_with_ctrl_c_ignored_keeps_it_ignored_in_its_workers(
    sqlite_url: str, no_data, monkeypatch,
) -> None:
    """`metanas search --n-jobs 2 ... &` in a script starts it with SIGINT ignored. Before: its
    workers took Ctrl-C back regardless, so a terminal's Ctrl-C left the parent running but
    ended its workers, 'worker 1 (pid P) exited on SIGINT (code 130)', and the search with
    WorkersDied."""
    import nas.study
    from nas.study import SearchConfig, run_search

    monkeypatch.setattr(nas.study, "run_worker", _no_trial_finished)  # worker 0, in this process
    monkeypatch.setattr(nas.study, "_worker_process", _search_worker_given_ctrl_c)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        run_search(SearchConfig("cora", space="nasbench-graph", evaluator="table", n_trials=4, n_jobs=2,
                                storage=sqlite_url, verbose=False))
    finally:
        signal.signal(signal.SIGINT, previous)


class _Refused(RuntimeError):
    pass


def _fail_own_work(config, worker: int = 0, task=None) -> None:
    raise _Refused("the parent's own worker failed")


def _terminate_myself(config, worker: int = 0, task=None) -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)  # the signal arrives here


def _sleeping_worker(config, worker: int, verbosity: int, fingerprint=None, ctrl_c: bool = True) -> None:
    """Stands in for a worker still starting (importing torch): SIGTERM's default action ends it."""
    time.sleep(30)


def _worker_deaf_to_sigterm(config, worker: int, verbosity: int, fingerprint=None, ctrl_c: bool = True) -> None:
    """Stands in for a worker stuck in a trial: only SIGKILL ends it. Says when it is so by
    creating the file $TEST_WORKER_DEAF."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    Path(os.environ["TEST_WORKER_DEAF"]).write_text("")
    time.sleep(600)


def _once_the_worker_is_deaf(own_work):
    """``own_work`` (worker 0's) once :func:`_worker_deaf_to_sigterm` ignores SIGTERM."""
    def after(config, worker: int = 0, task=None) -> None:
        deaf = Path(os.environ["TEST_WORKER_DEAF"])
        deadline = time.monotonic() + 120
        while not deaf.exists():
            assert time.monotonic() < deadline, "the worker never started"
            time.sleep(0.05)
        own_work(config, worker, task)
    return after


@pytest.mark.parametrize("own_work, raised", [(_fail_own_work, _Refused), (_terminate_myself, KeyboardInterrupt)])
def test_workers_are_stopped_when_the_parent_fails_or_is_terminated(
    own_work, raised, tmp_path: Path, sqlite_url: str, no_data, monkeypatch, capsys,
) -> None:
    """Before: an error in the parent's own worker waited for the workers to finish the whole
    budget, and SIGTERM ended the parent at once, leaving them to run on unsupervised. A
    worker that outlives its SIGTERM is killed, and said."""
    import nas.study
    from nas.study import SearchConfig, run_search

    monkeypatch.setenv("TEST_WORKER_DEAF", str(tmp_path / "deaf"))
    monkeypatch.setattr(nas.study, "run_worker", _once_the_worker_is_deaf(own_work))  # worker 0, here
    monkeypatch.setattr(nas.study, "_worker_process", _worker_deaf_to_sigterm)
    monkeypatch.setattr(workers, "STOP_WAIT", 0.5)
    monkeypatch.setattr(workers, "TERMINATE_WAIT", 0.5)
    config = SearchConfig("cora", space="nasbench-graph", evaluator="table", n_trials=4, n_jobs=2,
                          storage=sqlite_url, verbose=False)
    previous = signal.signal(signal.SIGTERM, lambda *_: None)  # a SIGTERM not caught must not end pytest
    began = time.monotonic()
    try:
        with pytest.raises(raised):
            run_search(config)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert time.monotonic() - began < 300  # not after the worker's 600 s
    line, = capsys.readouterr().err.splitlines()
    found = re.fullmatch(r"stopped worker 1 \(pid (\d+)\); the next run retries a trial left running "
                         r"once its heartbeat has been silent for 120 s", line)
    assert found, line
    with pytest.raises(ProcessLookupError):  # stopped and joined
        os.kill(int(found[1]), 0)


def _interrupt_myself(config, worker: int = 0, task=None) -> None:
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C
    time.sleep(30)


@pytest.mark.parametrize("own_work, code", [(_interrupt_myself, 130), (_terminate_myself, 143)])
def test_a_search_stopped_by_a_signal_exits_128_plus_its_number(
    own_work, code: int, sqlite_url: str, no_data, monkeypatch, capsys, terminal_ctrl_c,
) -> None:
    """SIGTERM exited 130, as Ctrl-C does: whoever sent it could not tell its stop from a
    user's Ctrl-C. Both still say what is kept and stop the workers, in one line: before, a
    worker still starting (no handler yet, so SIGTERM's default action ended it, no trial run)
    was said as 'stopped worker 1 (pid P); the next run retries a trial left running ...'."""
    import nas.study
    from nas.cli import main

    monkeypatch.setattr(nas.study, "run_worker", own_work)
    monkeypatch.setattr(nas.study, "_worker_process", _sleeping_worker)
    monkeypatch.setattr(workers, "STOP_WAIT", 0.5)
    previous = signal.signal(signal.SIGTERM, lambda *_: None)  # a SIGTERM not caught must not end pytest
    try:
        assert main(["search", "--dataset", "cora", "--space", "nasbench-graph", "--evaluator", "table",
                     "--trials", "4", "--n-jobs", "2", "--storage", sqlite_url, "--quiet"]) == code
    finally:
        signal.signal(signal.SIGTERM, previous)
    stopped = "terminated (SIGTERM)" if code == 143 else "interrupted"
    assert capsys.readouterr().err.splitlines() == [f"metanas: {stopped}; {SEARCH_KEPT}"]


def _search_worker_killed_at_start(config, worker: int, verbosity: int, fingerprint=None, ctrl_c: bool = True) -> None:
    """Stands in for nas.study._worker_process: worker 1 is killed before it takes a trial."""
    if worker == 1:
        _kill_myself()
    from nas.study import _worker_process

    _worker_process(config, worker, verbosity, fingerprint, ctrl_c)


def test_search_with_a_killed_worker_finishes_and_exits_1(sqlite_url: str, no_data, monkeypatch, capsys) -> None:
    """Before: `metanas search --n-jobs 2` with a worker killed by SIGKILL said nothing of it
    and exited 0."""
    import optuna
    from optuna.trial import TrialState

    import nas.study
    from nas.cli import main

    monkeypatch.setattr(nas.study, "_worker_process", _search_worker_killed_at_start)
    code = main(["search", "--dataset", "cora", "--space", "nasbench-graph", "--evaluator", "table",
                 "--trials", "4", "--n-jobs", "2", "--storage", sqlite_url, "--study", "k"])
    captured = capsys.readouterr()
    assert code == 1
    lines = captured.err.strip().splitlines()
    assert re.fullmatch(r"worker 1 \(pid \d+\) was killed by SIGKILL; its running trial, if any, will "
                        r"be retried once its heartbeat has been silent for 120 s", lines[0])
    assert re.fullmatch(r"metanas search: error: worker 1 \(pid \d+\) was killed by SIGKILL; the other "
                        r"workers finished the study: its 4 trials are stored", lines[-1])
    assert "best: trial" in captured.out
    study = optuna.load_study(study_name="k", storage=sqlite_url)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 4  # worker 0's trials completed


def test_search_with_a_killed_worker_runs_its_final_stages_then_exits_1(
    sqlite_url: str, no_data, monkeypatch, capsys,
) -> None:
    """Before: --refine and --final-train were skipped when a worker had died, though the
    others had finished the budget: the user re-ran the command for the final model."""
    import optuna
    from optuna.trial import TrialState

    import nas.study
    import nas.supernet
    from nas.cli import main

    ran = []

    def stage(name: str):  # stands in for nas.supernet.refine / final_train
        def rescore(config, top_k: int, evaluator: str | None = None) -> list:
            searched = optuna.load_study(study_name=config.study_name, storage=config.storage)
            ran.append((name, top_k, len(searched.get_trials(states=(TrialState.COMPLETE,)))))
            return [optuna.trial.create_trial(value=0.5, user_attrs={"source_trial": 0})]
        return rescore

    monkeypatch.setattr(nas.supernet, "refine", stage("refine"))
    monkeypatch.setattr(nas.supernet, "final_train", stage("final"))
    monkeypatch.setattr(nas.study, "_worker_process", _search_worker_killed_at_start)
    code = main(["search", "--dataset", "cora", "--space", "nasbench-graph", "--evaluator", "table",
                 "--trials", "4", "--n-jobs", "2", "--storage", sqlite_url, "--study", "k", "--quiet",
                 "--refine", "2", "--refine-evaluator", "table", "--final-train", "2"])
    captured = capsys.readouterr()
    assert code == 1
    assert ran == [("refine", 2, 4), ("final", 2, 4)]  # on the 4 trials the other worker finished
    assert "best: trial" in captured.out and "from scratch: trial 0 of 'k'" in captured.out
    assert re.fullmatch(r"metanas search: error: worker 1 \(pid \d+\) was killed by SIGKILL; the other "
                        r"workers finished the study: its 4 trials are stored",
                        captured.err.strip().splitlines()[-1])


def _no_trial_finished(config, worker: int = 0, task=None) -> None:
    """Stands in for nas.study.run_worker in this process: its --timeout ends it before a trial."""


def test_search_whose_workers_finished_nothing_skips_its_final_stages_and_names_the_dead(
    sqlite_url: str, no_data, monkeypatch, capsys,
) -> None:
    """Before: --final-train ran on a study with no completed trial after a worker died, and its
    error ("study 'k' has no completed trial yet") replaced the line naming the dead worker and
    saying that the same command finishes the rest."""
    import nas.study
    from nas.cli import main

    monkeypatch.setattr(nas.study, "run_worker", _no_trial_finished)
    monkeypatch.setattr(nas.study, "_worker_process", _search_worker_killed_at_start)
    code = main(["search", "--dataset", "cora", "--space", "nasbench-graph", "--evaluator", "table",
                 "--trials", "4", "--n-jobs", "2", "--storage", sqlite_url, "--study", "k", "--quiet",
                 "--final-train", "1"])
    captured = capsys.readouterr()
    assert code == 1
    assert "no completed trial yet" in captured.out
    assert re.fullmatch(r"metanas search: error: worker 1 \(pid \d+\) was killed by SIGKILL; 0 of the "
                        r"study's 4 trials are finished and stored: re-run the same command for the rest",
                        captured.err.strip().splitlines()[-1])


def test_zoo_build_takes_the_heartbeat_options_and_exits_1_when_a_worker_died(sqlite_url: str, monkeypatch, capsys) -> None:
    """zoo build runs through run_search's supervision; before, it had no --heartbeat or
    --grace-period (its killed workers' runs waited the default 120 s) and exited 0."""
    import optuna

    import nas.zoo
    from nas.cli import main
    from nas.study import WorkersDied
    from nas.workers import WorkerExit

    seen = {}

    def build_zoo(config, on_study=None):  # stands in for the zoo's run_search, whose worker 1 was killed
        search = config.search_config()
        seen.update(heartbeat=search.heartbeat, grace=search.grace_period)
        study = optuna.create_study(storage=sqlite_url, study_name=config.study_name)
        raise WorkersDied([WorkerExit(1, 4321, -signal.SIGKILL)], study, search.n_trials)

    monkeypatch.setattr(nas.zoo, "build_zoo", build_zoo)
    code = main(["zoo", "build", "--size", "2", "--storage", sqlite_url, "--n-jobs", "2",
                 "--heartbeat", "1", "--grace-period", "3"])
    assert code == 1 and seen == {"heartbeat": 1, "grace": 3}
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "metanas zoo: error: worker 1 (pid 4321) was killed by SIGKILL; 0 of the study's 2 trials are "
        "finished and stored: re-run the same command for the rest")


def test_a_single_process_search_stopped_by_sigterm_says_what_it_kept_and_exits_143(
    sqlite_url: str, no_data, monkeypatch, capsys,
) -> None:
    """Without workers, SIGTERM (a job scheduler's stop) ended the command by its default
    action: no line said what was kept. It is handled as Ctrl-C is, exit 143."""
    import nas.study
    from nas.cli import main

    monkeypatch.setattr(nas.study, "run_worker", _terminate_myself)
    before = lambda *_: None  # noqa: E731 - a SIGTERM not caught must not end pytest
    previous = signal.signal(signal.SIGTERM, before)
    try:
        assert main(["search", "--dataset", "cora", "--space", "nasbench-graph", "--evaluator", "table",
                     "--trials", "4", "--storage", sqlite_url, "--quiet"]) == 143
    finally:
        restored = signal.signal(signal.SIGTERM, previous)
    assert capsys.readouterr().err.splitlines()[-1] == f"metanas: terminated (SIGTERM); {SEARCH_KEPT}"
    assert restored is before  # main() put the caller's handler back (the console script's exit ignores it)


#: a search's parent process: worker 0 (here) sleeps, worker 1 is argv[1] of this module
_SEARCH_PARENT = """
import sys, time
sys.path.insert(0, sys.argv[3])  # this test module, which the spawned worker imports too
import nas.study, test_workers
from nas.study import SearchConfig, run_search
nas.study.run_worker = lambda config, worker=0, task=None: time.sleep(120)
nas.study._worker_process = getattr(test_workers, sys.argv[1])
run_search(SearchConfig("cora", space="nasbench-graph", evaluator="table", n_trials=4, n_jobs=2,
                        storage=sys.argv[2], verbose=False))
"""


def _sleep_as_trials(config, worker: int = 0, task=None) -> None:
    """Stands in for nas.study.run_worker in a worker: says its pid, then sleeps."""
    Path(os.environ["TEST_WORKER_PID_FILE"]).write_text(str(os.getpid()))
    time.sleep(120)


def _search_worker_sleeping(config, worker: int, verbosity: int, fingerprint=None, ctrl_c: bool = True) -> None:
    """Stands in for nas.study._worker_process: the real one, whose trials are a sleep."""
    import nas.study

    nas.study.run_worker = _sleep_as_trials
    nas.study._worker_process(config, worker, verbosity, fingerprint, ctrl_c)


def _search_worker_sleeping_without_prctl(config, worker: int, verbosity: int, fingerprint=None,
                                          ctrl_c: bool = True) -> None:
    """As :func:`_search_worker_sleeping`, where the kernel cannot signal a parent's death and
    ``os.getppid()`` stays the dead parent's pid (as on Windows): only the parent's sentinel
    says it died."""
    workers._signal_on_parent_death = lambda signum: False
    parent = os.getppid()
    os.getppid = lambda: parent
    _search_worker_sleeping(config, worker, verbosity, fingerprint, ctrl_c)


def _search_worker_started_after_its_parent_died(config, worker: int, verbosity: int, fingerprint=None,
                                                 ctrl_c: bool = True) -> None:
    """As :func:`_search_worker_sleeping`, whose parent is killed before the real worker starts."""
    import nas.study

    parent = os.getppid()
    Path(os.environ["TEST_WORKER_PID_FILE"]).write_text(str(os.getpid()))
    while os.getppid() == parent:
        time.sleep(0.05)
    nas.study.run_worker = lambda *args, **kwargs: time.sleep(120)
    nas.study._worker_process(config, worker, verbosity, fingerprint, ctrl_c)


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped by its new parent, does not)."""
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except ProcessLookupError:
        return False
    except FileNotFoundError:  # no /proc (not Linux), or it just exited
        return sys.platform != "linux"
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("stand_in", ["_search_worker_sleeping", "_search_worker_sleeping_without_prctl",
                                      "_search_worker_started_after_its_parent_died"])
def test_a_worker_stops_when_its_parent_is_killed(stand_in: str, tmp_path: Path, sqlite_url: str, no_data) -> None:
    """Before: a search whose parent was killed by SIGKILL (the OOM killer, kill -9) left its
    workers running on unsupervised, nobody to say their deaths or print the results."""
    pid_file = tmp_path / "worker.pid"
    here = Path(__file__).resolve().parent
    env = {**os.environ, "TEST_WORKER_PID_FILE": str(pid_file),
           "PYTHONPATH": os.pathsep.join([str(here.parents[1]), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, "-c", _SEARCH_PARENT, stand_in, sqlite_url, str(here)],
                              env=env, cwd=here.parents[1])
    worker = None
    try:
        deadline = time.monotonic() + 120
        while not pid_file.exists() or not pid_file.read_text():
            assert parent.poll() is None and time.monotonic() < deadline, "the worker never started"
            time.sleep(0.1)
        worker = int(pid_file.read_text())
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while _running(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(worker), "the worker ran on after its parent was killed"
    finally:
        parent.kill()
        parent.wait()
        if worker is not None and _running(worker):
            os.kill(worker, signal.SIGKILL)


def _write_ring_mnist(root: Path) -> None:
    """A raw MNIST_v2.pt of GNNBenchmarkDataset (a class with official splits, so a search
    records its data fingerprint): 8, 3 and 4 rings of 3 nodes, graph i's features i, class i % 2."""
    import torch

    raw = root / "GNNBenchmarkDataset" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rings = iter({"x": torch.full((3, 1), float(i)), "edge_index": torch.tensor([[0, 1, 2], [1, 2, 0]]),
                  "y": torch.tensor([i % 2])} for i in range(15))
    torch.save([[next(rings) for _ in range(size)] for size in (8, 3, 4)], raw / "MNIST_v2.pt")


def _search_worker_counting_fingerprints(*args) -> None:
    """Stands in for nas.study._worker_process: the real one, each data_fingerprint call it
    makes written as a line to $TEST_FINGERPRINT_CALLS (created empty when it starts)."""
    import nas.study
    import nas.tasks

    calls = Path(os.environ["TEST_FINGERPRINT_CALLS"])
    calls.write_text("")
    hash_data = nas.tasks.data_fingerprint

    def counted(task):
        with calls.open("a") as file:
            file.write(f"{task.name}\n")
        return hash_data(task)

    nas.tasks.data_fingerprint = counted
    nas.study._worker_process(*args)


#: data_fingerprint of _write_ring_mnist's data: what its studies hold (never to change)
RING_MNIST_FINGERPRINT = "19bf5d91e9b0bb1ce0586c862935e233e3fc7773cacc5212e9d19fd30240401e"


def test_search_workers_take_the_parents_data_fingerprint(tmp_path: Path, sqlite_url: str, monkeypatch) -> None:
    """Before: each worker of --n-jobs hashed every graph again for the study's identity check
    (9 s each on a 70k-graph pyg:GNNBenchmarkDataset:MNIST, as long as the parent's). A study
    made by a search of one process is resumed by one of two, its fingerprint unchanged."""
    import optuna

    import nas.study
    from nas.study import SearchConfig, run_search
    from nas.tasks import data_fingerprint, load_task

    root = tmp_path / "data"
    _write_ring_mnist(root)
    calls = tmp_path / "fingerprint-calls"
    monkeypatch.setenv("TEST_FINGERPRINT_CALLS", str(calls))
    monkeypatch.setattr(nas.study, "_worker_process", _search_worker_counting_fingerprints)
    search = dict(dataset="pyg:GNNBenchmarkDataset:MNIST", data_root=str(root), evaluator="zero-cost:params",
                  strategy="random", convs=("gcn",), storage=sqlite_url, study_name="s", verbose=False)
    run_search(SearchConfig(n_trials=2, **search))
    stored = optuna.load_study(study_name="s", storage=sqlite_url).user_attrs["data_fingerprint"]
    assert stored == data_fingerprint(load_task("pyg:GNNBenchmarkDataset:MNIST", root=root)) == RING_MNIST_FINGERPRINT
    study = run_search(SearchConfig(n_trials=6, n_jobs=2, **search))
    assert calls.read_text() == ""  # the worker started, and hashed nothing
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 6
    assert study.user_attrs["data_fingerprint"] == RING_MNIST_FINGERPRINT


def test_a_repeated_sigterm_does_not_cut_short_the_stop_and_the_handler_is_restored() -> None:
    """Before: a second SIGTERM (a job scheduler's, or a parent's terminate() after the whole
    process group got one) raised again while the first's interrupt failed the running trial
    and stopped the workers, cutting that short."""
    raised = []
    before = lambda *_: None  # noqa: E731 - a SIGTERM not caught must not end pytest
    previous = signal.signal(signal.SIGTERM, before)
    try:
        with workers.sigterm_interrupts():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # the signal arrives here
            except workers.Terminated:  # what the interrupt stops and keeps runs here
                raised.append("first")
                try:
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(0.1)
                except workers.Terminated:
                    raised.append("repeat")
        restored = signal.getsignal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert raised == ["first"]
    assert restored is before


@pytest.mark.parametrize("after_call", range(1, 5))
def test_a_sigterm_as_sigterm_interrupts_begins_or_ends_leaves_the_callers_handler(after_call: int, monkeypatch) -> None:
    """A SIGTERM right after each of its calls of signal's functions (the handler installed,
    or its exit's check whether it fired). Before: one as the handler was installed raised
    before the try, one between the exit's check and its restore raised in the finally, and
    each skipped the restore: SIGTERM stayed ignored for the caller (the Python API)."""
    before = lambda *_: None  # noqa: E731 - a SIGTERM not caught must not end pytest
    previous = signal.signal(signal.SIGTERM, before)
    calls = []

    def then_sigterm(function):
        def called(*args):
            result = function(*args)
            calls.append(function.__name__)
            if len(calls) == after_call:
                os.kill(os.getpid(), signal.SIGTERM)  # its handler runs as this returns
            return result
        return called

    try:
        with monkeypatch.context() as patched:
            patched.setattr(signal, "signal", then_sigterm(signal.signal))
            patched.setattr(signal, "getsignal", then_sigterm(signal.getsignal))
            with contextlib.suppress(workers.Terminated):
                with workers.sigterm_interrupts():
                    pass
        restored = signal.getsignal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert restored is before, calls


#: `metanas search` (argv[3:]) whose trials wait, once they have their architecture, for the file
#: argv[1] to go before they train: the test signals a search whose trials are surely RUNNING
_HELD_SEARCH = """
import os, sys
sys.path.insert(0, sys.argv[2])  # this test module, which the spawned workers import too
import nas.study, test_workers
test_workers._hold_trials(sys.argv[1])
os.environ["TEST_HOLD_FILE"] = sys.argv[1]
nas.study._worker_process = test_workers._held_search_worker
from nas.cli import main
sys.exit(main(sys.argv[3:]))
"""


def _hold_trials(hold: str) -> None:
    """Make this process's trials wait while the file ``hold`` exists before they train."""
    import nas.study

    evaluate = nas.study.Objective._evaluate

    def held(self, trial, arch):
        while os.path.exists(hold):
            time.sleep(0.05)
        return evaluate(self, trial, arch)

    nas.study.Objective._evaluate = held


def _held_search_worker(config, worker: int, verbosity: int, fingerprint=None, ctrl_c: bool = True) -> None:
    """Stands in for nas.study._worker_process: the real one, its trials held as the parent's."""
    import nas.study

    _hold_trials(os.environ["TEST_HOLD_FILE"])
    nas.study._worker_process(config, worker, verbosity, fingerprint, ctrl_c)


def _search_args(url: str, n_jobs: int) -> list[str]:
    """A Cora search of 3 trials of 5 epochs; a trial left RUNNING would wait 600 s to be retried."""
    return ["search", "--dataset", "cora", "--convs", "gcn", "--trials", "3", "--epochs", "5",
            "--strategy", "random", "--n-jobs", str(n_jobs), "--heartbeat", "1", "--grace-period", "600",
            "--storage", url, "--study", "t", "--quiet"]


def _start_held_search(tmp_path: Path, url: str, n_jobs: int, stderr) -> tuple[subprocess.Popen, Path]:
    """A held search (:data:`_HELD_SEARCH`) in a session of its own, and its hold file."""
    hold = tmp_path / "hold"
    hold.write_text("")
    here = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here.parents[1]), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-c", _HELD_SEARCH, str(hold), str(here), *_search_args(url, n_jobs)]
    process = subprocess.Popen(command, env=env, cwd=here.parents[1], stdout=subprocess.DEVNULL,
                               stderr=stderr, start_new_session=True)
    return process, hold


def _trial_states(url: str) -> list[str]:
    import optuna

    try:
        return [t.state.name for t in optuna.load_study(study_name="t", storage=url).trials]
    except KeyError:  # not created yet
        return []


def _wait_for(condition, process: subprocess.Popen, limit: float = 90) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert process.poll() is None, f"the search exited {process.returncode}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _search_worker_pid(parent: int) -> int:
    """The pid of the search's worker process (Linux: /proc lists a process's children)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    workers_ = [int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
    assert len(workers_) == 1, children
    return workers_[0]


@pytest.mark.skipif(sys.platform != "linux", reason="finds the worker through /proc")
@pytest.mark.parametrize("n_jobs, to", [(1, "command"), (2, "command"), (2, "group")])
def test_sigterm_fails_the_running_trials_at_once_and_the_same_command_resumes(
    n_jobs: int, to: str, cora_available, tmp_path: Path, sqlite_url: str,
) -> None:
    """SIGTERM while trials run: to the command alone (`timeout`, `kill PID`) or to its whole
    process group (SLURM at its time limit, systemd, Kubernetes). Before: with --n-jobs 2 the
    worker's trial was left RUNNING until its heartbeat had been silent for the grace period
    (the next run waited that long for it), and a 'stopped worker' line preceded the
    command's, which said neither that it was terminated nor how to resume."""
    process, hold = _start_held_search(tmp_path, sqlite_url, n_jobs, subprocess.PIPE)
    try:
        _wait_for(lambda: _trial_states(sqlite_url).count("RUNNING") == n_jobs, process)
        if to == "group":
            os.killpg(process.pid, signal.SIGTERM)
        else:
            process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:  # never leave a held search behind
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert _trial_states(sqlite_url) == ["FAIL"] * n_jobs
    assert process.returncode == 143
    assert stderr.decode().splitlines() == [f"metanas: terminated (SIGTERM); {SEARCH_KEPT}"]
    from nas.cli import main

    assert main(_search_args(sqlite_url, n_jobs)) == 0  # the same command, not held: it runs the rest
    assert sorted(_trial_states(sqlite_url)) == ["COMPLETE"] * 3 + ["FAIL"] * n_jobs


@pytest.mark.skipif(sys.platform != "linux", reason="finds the worker through /proc")
def test_a_worker_sent_sigterm_fails_its_trial_at_once_and_is_said_as_a_dead_worker(
    cora_available, tmp_path: Path, sqlite_url: str,
) -> None:
    """Before: SIGTERM's default ended the worker, its trial left RUNNING until its heartbeat
    had been silent for the grace period (600 s here) and only then retried."""
    err = tmp_path / "stderr"
    with err.open("w") as stderr:
        process, hold = _start_held_search(tmp_path, sqlite_url, 2, stderr)
    try:
        _wait_for(lambda: _trial_states(sqlite_url).count("RUNNING") == 2, process)
        worker = _search_worker_pid(process.pid)
        os.kill(worker, signal.SIGTERM)
        _wait_for(lambda: sorted(_trial_states(sqlite_url)) == ["FAIL", "RUNNING"], process, limit=15)
        said = (f"worker 1 (pid {worker}) exited on SIGTERM (code 143); its running trial, if any, was "
                f"failed at once and does not count against the budget")
        _wait_for(lambda: said in err.read_text().splitlines(), process, limit=15)
        hold.unlink()  # the parent's trial trains, and the parent runs the rest of the budget
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert process.returncode == 1
    assert err.read_text().splitlines()[-1] == (
        f"metanas search: error: worker 1 (pid {worker}) exited on SIGTERM (code 143); the other "
        f"workers finished the study: its 3 trials are stored")
    assert sorted(_trial_states(sqlite_url)) == ["COMPLETE"] * 3 + ["FAIL"]
