"""Worker processes supervised by the process that started them (``--n-jobs`` of ``metanas
search`` and ``metanas zoo build``).

:func:`supervise` starts the worker processes, runs the parent's own share of the work, and
says on one line, as it happens, when a worker exits abnormally (killed by the OOM killer or
``kill -9``, or ended by an exception) while the others carry on. If the parent's own work fails
or is interrupted (Ctrl-C, or SIGTERM, which it turns into an interrupt), the workers still
running are terminated and joined rather than left running unsupervised. Each worker calls
:func:`stop_with_parent` first: a parent killed without a chance to stop them (the OOM killer,
``kill -9``) takes them with it. A worker that turns SIGTERM into an interrupt too
(:func:`sigterm_interrupts`) stops its own running trial at once and exits :data:`TERMINATED`.
Every worker handles SIGTERM so, or ignores it, before it takes any work: one that SIGTERM's
default action ended was still starting, and left no trial.
"""
from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from multiprocessing.connection import wait
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

#: exit code of a worker ended by Ctrl-C (its own KeyboardInterrupt, see nas.study)
INTERRUPTED = 130
#: exit code of a command ended by SIGTERM: 128 + the signal's number, as Ctrl-C's 130 is
TERMINATED = 128 + signal.SIGTERM
#: seconds workers get to stop by themselves after a Ctrl-C (a terminal sends it to all of them)
STOP_WAIT = 5.0
#: seconds a terminated worker gets to exit before it is killed
TERMINATE_WAIT = 10.0
#: prctl option of Linux: the signal this process gets when its parent dies
_PR_SET_PDEATHSIG = 1
#: a worker that SIGTERM's default action ended: it had not yet installed its handler (every
#: worker handles or ignores SIGTERM before it takes any work), so it was still starting and ran
#: no trial, as when its parent stops it while it imports torch
_ENDED_STARTING = -signal.SIGTERM
#: exits of a worker that left no trial running: it stopped itself on Ctrl-C or SIGTERM (its
#: running trial failed at once), or SIGTERM ended it as it started
_CLEAN_STOP_EXITS = {0, INTERRUPTED, TERMINATED, _ENDED_STARTING}
#: exits that a Ctrl-C or SIGTERM sent to the whole process group gives the workers
_GROUP_STOP_EXITS = {INTERRUPTED, TERMINATED, -signal.SIGINT, -signal.SIGTERM}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where it arrives as Ctrl-C's interrupt is (so that what stops and says
    what it kept on Ctrl-C does on SIGTERM too); the command exits :data:`TERMINATED`."""


@dataclasses.dataclass(frozen=True)
class WorkerExit:
    """How a worker process ended."""

    worker: int    # the worker's number (1.., as in the search's "[trial 3 w1]" lines)
    pid: int       # its process id
    exitcode: int  # its exit code; minus the signal's number when a signal killed it

    @property
    def stopped_itself(self) -> bool:
        """Whether it left no trial RUNNING for the heartbeat to fail: it stopped on Ctrl-C or
        SIGTERM, its running trial failed at once, or SIGTERM ended it before it ran one."""
        return self.exitcode in _CLEAN_STOP_EXITS

    def __str__(self) -> str:
        if self.exitcode in (INTERRUPTED, TERMINATED):
            name = "SIGINT" if self.exitcode == INTERRUPTED else "SIGTERM"
            how = f"exited on {name} (code {self.exitcode})"
        elif self.exitcode < 0:
            try:
                how = f"was killed by {signal.Signals(-self.exitcode).name}"
            except ValueError:
                how = f"was killed by signal {-self.exitcode}"
        else:
            how = f"exited with code {self.exitcode}"
        return f"worker {self.worker} (pid {self.pid}) {how}"


def supervise(workers: Mapping[int, BaseProcess], own_work: Callable[[], None], grace: float) -> list[WorkerExit]:
    """Start ``workers`` (by number), run ``own_work`` here, wait for the workers; returns the
    abnormal exits, each said on stderr as it happened. ``grace``: seconds without a heartbeat
    after which a dead worker's running trial is failed and retried.

    If ``own_work`` raises (an error, Ctrl-C, or SIGTERM, raised here as :class:`Terminated`),
    the workers still running are stopped, said on one line, and the error is raised.
    """
    died: list[WorkerExit] = []
    stopping = threading.Event()
    watcher = threading.Thread(target=_watch, args=(workers, stopping, died, grace), daemon=True)
    try:
        with sigterm_interrupts():
            for process in workers.values():
                with _ctrl_c_ignored():
                    process.start()
            watcher.start()
            own_work()
            watcher.join()  # interruptible: a lock wait, on POSIX
    except BaseException as error:
        stopping.set()
        if watcher.is_alive():
            watcher.join()
        # Ctrl-C reached the workers too (a terminal sends it to them all); SIGTERM may not have
        ctrl_c = isinstance(error, KeyboardInterrupt) and not isinstance(error, Terminated)
        _stop(workers, grace, wait_first=ctrl_c)
        raise
    return died


@contextlib.contextmanager
def _ctrl_c_ignored() -> Iterator[None]:
    """SIGINT ignored here, and so in a worker started here, which keeps it across exec (Python
    leaves an inherited SIG_IGN in place): a Ctrl-C, which a terminal sends to every process of
    the command, reached a worker still starting (importing torch as it unpickled its work) and
    ended it with a KeyboardInterrupt's traceback, before its own code could catch it. Each
    worker takes Ctrl-C back when it starts (:func:`take_ctrl_c`); this parent, which gets it
    too, stops one still starting. A Ctrl-C to this parent while it starts one is lost (one
    process start, or until the worker has read its work)."""
    if threading.current_thread() is not threading.main_thread():  # only it can set handlers
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)


def ctrl_c_ignored() -> bool:
    """Whether this process ignores SIGINT, as one started by ``cmd &`` in a script does: its
    workers, which :func:`supervise` starts with SIGINT ignored whatever this says, keep it
    ignored then (they did before supervise ignored it), rather than :func:`take_ctrl_c`."""
    return signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def take_ctrl_c() -> None:
    """Have Ctrl-C raise KeyboardInterrupt in this worker, which :func:`supervise` started with
    SIGINT ignored; a worker entry point calls it where it catches KeyboardInterrupt, unless its
    parent ignored Ctrl-C (:func:`ctrl_c_ignored`, which the parent passes it)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _watch(workers: Mapping[int, BaseProcess], stopping: threading.Event, died: list[WorkerExit],
           grace: float) -> None:
    """Say each abnormal exit as it happens, until every worker has exited or ``stopping``.

    An exit of the kind a Ctrl-C or SIGTERM to the whole process group gives is said only if
    the parent is not stopping because of the same signal within a moment."""
    pending = {process.sentinel: (number, process) for number, process in workers.items()}
    while pending and not stopping.is_set():
        for sentinel in wait(list(pending), timeout=0.5):
            number, process = pending.pop(sentinel)
            process.join()
            code = process.exitcode
            if not code or (code in _GROUP_STOP_EXITS and stopping.wait(2.0)):
                continue
            exit_ = WorkerExit(number, process.pid or 0, code)
            died.append(exit_)
            print(f"{exit_}; {_left_trial(exit_, grace)}", file=sys.stderr, flush=True)


def _left_trial(exit_: WorkerExit, grace: float) -> str:
    """What became of the trial a worker that exited abnormally was running."""
    if exit_.exitcode == _ENDED_STARTING:
        return "it was still starting: it had run no trial"
    if exit_.stopped_itself:
        return "its running trial, if any, was failed at once and does not count against the budget"
    return f"its running trial, if any, will be retried once its heartbeat has been silent for {grace:g} s"


def _stop(workers: Mapping[int, BaseProcess], grace: float, wait_first: bool) -> None:
    """Terminate the workers still running (after ``STOP_WAIT`` s for them to stop by
    themselves when ``wait_first``) and join them, killing any that outlive the wait. Those
    that did not stop themselves on SIGTERM (failing their running trials), nor were ended by
    it as they started, are said on one line: a trial they ran is left RUNNING until its
    heartbeat has been silent for ``grace`` s."""
    started = {n: p for n, p in workers.items() if p.pid is not None}
    try:
        if wait_first:
            _join_all(started.values(), STOP_WAIT)
    finally:
        running = {n: p for n, p in started.items() if p.is_alive()}
        for process in running.values():
            process.terminate()
        _join_all(running.values(), TERMINATE_WAIT)
        for process in running.values():
            if process.is_alive():
                process.kill()
                process.join()
        unclean = {n: p for n, p in running.items() if p.exitcode not in _CLEAN_STOP_EXITS}
        if unclean:
            names = ", ".join(f"{n} (pid {p.pid})" for n, p in unclean.items())
            print(f"stopped worker{'s' if len(unclean) > 1 else ''} {names}; the next run retries a trial "
                  f"left running once its heartbeat has been silent for {grace:g} s", file=sys.stderr, flush=True)


def _join_all(processes: Iterable[BaseProcess], timeout: float) -> None:
    """Join ``processes`` within ``timeout`` seconds in all."""
    deadline = time.monotonic() + timeout
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))


def stop_with_parent() -> None:
    """Have this worker process sent SIGTERM, as a failing parent's :func:`supervise` terminates
    it, when its parent dies (the OOM killer, ``kill -9``): it ran on unsupervised, with nobody
    to say its death or print the results. Every worker entry point calls it first.

    On Linux the kernel sends it (``PR_SET_PDEATHSIG``, which follows the parent's thread that
    started the worker: :func:`supervise` outlives its workers); elsewhere a daemon thread waits
    on the parent's sentinel (:func:`multiprocessing.parent_process`), which becomes ready when
    the parent exits on every platform (``os.getppid()`` does not change on Windows). A parent
    that died before this call is caught too: its pid is no longer this process's parent's, or
    its sentinel is ready at once.
    """
    parent = multiprocessing.parent_process()
    if parent is None:  # not started by multiprocessing: no worker of ours
        return
    if not _signal_on_parent_death(signal.SIGTERM):
        threading.Thread(target=_watch_parent, args=(parent.sentinel,), name="parent-watch",
                         daemon=True).start()
    elif os.getppid() != parent.pid:
        os.kill(os.getpid(), signal.SIGTERM)


def _signal_on_parent_death(signum: int) -> bool:
    """Ask Linux to send ``signum`` to this process when its parent dies; False where it cannot."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0
    except (OSError, AttributeError):  # no libc, or no prctl in it
        return False


def _watch_parent(sentinel: int) -> None:
    """SIGTERM this process once the parent's ``sentinel`` is ready (the parent exited)."""
    wait([sentinel])
    os.kill(os.getpid(), signal.SIGTERM)


@contextlib.contextmanager
def sigterm_interrupts(keep_ignoring: bool = False) -> Iterator[None]:
    """SIGTERM raises :class:`Terminated`, a KeyboardInterrupt, here (its default ended the
    process at once: a search's workers went unsupervised, their trials were left RUNNING, and
    no command kept or said what a Ctrl-C keeps); only the main thread can catch signals.

    The first SIGTERM raises; a repeat (a job scheduler's second one, or a parent's terminate
    after the process group got one) is ignored until the context exits, so that it cannot cut
    short the failing of the running trial and the stopping of the workers it started.
    ``keep_ignoring``: a process that ends when the context exits (the console script) keeps
    ignoring it after that too, once one fired."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    try:  # a SIGTERM as soon as the handler is in place raises here, and the finally restores
        signal.signal(signal.SIGTERM, _raise_terminated)
        yield
    finally:
        # Within an enclosing sigterm_interrupts() the handler is its own, or SIG_IGN once a
        # SIGTERM fired, which it keeps ignoring too. Otherwise the restore is this block's first
        # call: nothing before it can run a handler that raises and skips it (after the check of
        # keep_ignoring, only one that leaves SIG_IGN, as wanted).
        kept = keep_ignoring and signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
        if previous is not _raise_terminated and not kept:
            signal.signal(signal.SIGTERM, previous)


def _raise_terminated(signum: int, frame: object) -> None:
    signal.signal(signum, signal.SIG_IGN)  # once: see sigterm_interrupts
    raise Terminated(f"terminated by {signal.Signals(signum).name}")
