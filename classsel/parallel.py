"""Many tasks at once: the runs and analyses of a request (:mod:`classsel.plan`) done by a pool of
processes.

``jobs`` worker processes, forked from a server process that imported the training code once
(``forkserver``, preloaded: a worker starts at once instead of importing torch and classsel,
seconds each; ``spawn`` where there is no forkserver; both work from a Jupyter kernel), each do
tasks one after another as they are handed out, a task once those it comes after have ended. On a
CPU each gets its share of the cores (``torch.set_num_threads(cores // jobs)``); with GPUs each
gets one device. A task does in its process exactly what it does in-process (a run: its lock,
repair, resume or branch, :func:`classsel.runs.ensure_run`), writes what it prints to the run's
log beside the run's folder, and reports to the request's one progress bar. A task that fails
(an error, or its process killed) does not stop the others; when they end, :class:`RunsFailed`
names every failed one. The processes end when the one that started them does, leaving their
runs to be resumed.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import multiprocessing.connection
import os
import queue as queues
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .progress import progress_bar, reporting_to

if TYPE_CHECKING:
    from . import runs

#: How often a training process sends its step count (seconds), and the parent looks for news.
REPORT_EVERY = 0.2


def cores() -> int:
    """CPU cores this process may run on (its affinity where the OS says, else all)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_job(jobs: int) -> int:
    """Torch threads of each of ``jobs`` training processes: an equal share of the cores."""
    return max(1, cores() // jobs)


def gpus(todo: list[runs.Run]) -> int:
    """GPUs to spread the runs over: all visible ones when every run may use CUDA, else none."""
    if not todo:  # nothing to train: torch is not loaded (a notebook reading the store)
        return 0
    import torch  # here, not on import: a command line checks its --jobs before it loads torch

    if not torch.cuda.is_available() or any(r.config.device not in ("auto", "cuda") for r in todo):
        return 0
    return torch.cuda.device_count()


def check_jobs(jobs, todo: list[runs.Run], label: str = "jobs") -> int:
    """``jobs`` checked, or the default: one process per GPU where the runs use GPUs, else one per core."""
    if jobs is None:
        return gpus(todo) or cores()
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"{label}={jobs!r} is not valid: expected an integer >= 1 (by default one process "
                         f"per CPU core, {cores()} here, or per GPU)")
    return jobs


@dataclass(frozen=True)
class RunFailure:
    task: object  # a classsel.plan task: a Training or an Analysis
    error: str
    log: Path

    @property
    def run(self) -> runs.Run:
        return self.task.run

    def __str__(self) -> str:
        what = "run" if self.task.kind == "train" else f"{self.task.kind} of run"
        return f"{what} {self.run.hash}/seed{self.run.seed} ({self.error}; log: {self.log})"


class RunsFailed(RuntimeError):
    """Tasks of a request that failed, after every other task of it ended."""

    def __init__(self, failures: list[RunFailure], total: int, noun: str = "tasks"):
        self.failures = failures
        super().__init__(f"{len(failures)} of {total} {noun} failed (the others finished): "
                         + "; ".join(map(str, failures)))


def steps_left(run: runs.Run) -> int:
    """Training steps ``run`` still needs, as far as known before it starts (its process reports
    the exact count): 0 for a finished run or a dataset whose size is read only when loaded."""
    from .plan import Training

    return 0 if run.done else Training(run).cost()


class _Bar:
    """The request's one progress bar: work units (training steps; an analysed checkpoint counts as
    the steps it costs, :data:`classsel.plan.ANALYSIS_COST`), with runs and analyses done of total."""

    def __init__(self, tasks, enabled: bool):
        self.expected = {t.key: t.cost() for t in tasks}
        self.counted = dict.fromkeys(self.expected, 0)
        self.kinds = {t.key: t.kind == "train" for t in tasks}
        self.finished = {True: 0, False: 0}
        self.total = {k: sum(v == k for v in self.kinds.values()) for k in (True, False)}
        # smoothing 0: the time left from the average rate since the start, not tqdm's moving average of
        # the last updates, which swings with every run that starts or ends and every analysis that
        # reports a checkpoint at once (replayed on a cold default build: its predicted end ranged from
        # -16% to +64% of the real one; the average's from +9% to +12%)
        self.bar = progress_bar(desc="reproduce", total=sum(self.expected.values()), unit="step",
                                enabled=enabled, dynamic_ncols=True, smoothing=0)
        self._postfix()

    def _postfix(self) -> None:
        parts = [f"runs {self.finished[True]}/{self.total[True]}"] if self.total[True] else []
        parts += [f"analyses {self.finished[False]}/{self.total[False]}"] if self.total[False] else []
        self.bar.set_postfix_str(", ".join(parts), refresh=True)

    def set_total(self, key, units: int) -> None:
        self.expected[key] = units
        self.bar.total = sum(self.expected.values())
        self.bar.refresh()

    def update(self, key, units: int) -> None:
        self.counted[key] += units
        self.bar.update(units)

    def ended(self, key) -> None:
        self.set_total(key, self.counted[key])  # all it did, or none if it only checked files
        self.finished[self.kinds[key]] += 1
        self._postfix()

    def close(self) -> None:
        self.bar.close()


@dataclass
class _Worker:
    """A worker process and the task it is on (None: waiting for one)."""

    process: mp.Process
    tasks: object  # the process's queue of tasks; None tells it to end
    task: object = None


def run_tasks(todo: list, jobs: int, log=print, progress: bool = True) -> None:
    """Do every task of ``todo`` (:mod:`classsel.plan`), each once the tasks it comes after have ended,
    with at most ``jobs`` worker processes at once (``jobs=1`` or one task: here, in turn); raise
    :class:`RunsFailed` after all ended if any failed. A task whose predecessor failed fails too."""
    bar = _Bar(todo, progress)
    try:
        if jobs == 1 or len(todo) == 1:
            _in_turn(todo, log, bar)
        else:
            _in_pool(todo, jobs, log, bar)
    finally:
        bar.close()


def _blocked(task, failed: set) -> str | None:
    gone = [k for k in task.after if k in failed]
    return f"it comes after {gone[0][0]} {gone[0][1]}/seed{gone[0][2]}, which failed" if gone else None


class _Report:
    """Reports a task's bars to the request's bar here (``bar``) or in the parent (``news``), in work
    units (an analysis's ``point_cost`` per analysed checkpoint, a run's steps), at most every REPORT_EVERY s."""

    def __init__(self, task, bar: _Bar | None = None, news=None, slot: int = 0):
        self.key, self.bar, self.news, self.slot = task.key, bar, news, slot
        self.scale = task.point_cost() if hasattr(task, "point_cost") else 1
        self.count, self.sent = 0, time.monotonic()

    def total(self, units: int) -> None:
        if self.bar is not None:
            self.bar.set_total(self.key, units * self.scale)
        else:
            self.news.put(("total", self.slot, units * self.scale))

    def advance(self, units: int) -> None:
        self.count += units * self.scale
        if time.monotonic() - self.sent >= REPORT_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.count and self.bar is not None:
            self.bar.update(self.key, self.count)
        elif self.count:
            self.news.put(("steps", self.slot, self.count))
        self.count, self.sent = 0, time.monotonic()


def _in_turn(todo: list, log, bar: _Bar) -> None:
    failures, failed = [], set()
    for task in todo:
        why = _blocked(task, failed)
        try:
            if why is not None:
                raise RuntimeError(why)
            with reporting_to(_Report(task, bar=bar)) as report:
                task(log)
                report.flush()
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:
            if len(todo) == 1:
                raise
            failures.append(RunFailure(task, f"{type(e).__name__}: {e}", task.run.files.log))
            failed.add(task.key)
        bar.ended(task.key)
    if failures:
        raise RunsFailed(failures, len(todo), _noun(todo))


def _in_pool(todo: list, jobs: int, log, bar: _Bar) -> None:
    devices = gpus([t.run for t in todo])
    threads = threads_per_job(jobs)
    jobs = min(jobs, len(todo))
    ctx = _context()
    news = ctx.Queue()
    waiting, workers, failures, failed, ended_keys = list(todo), {}, [], set(), set()
    pending_keys = {t.key for t in todo}
    where = f"{devices} GPUs" if devices else f"{threads} CPU thread{'s' * (threads > 1)} each"
    log(f"{'training ' if _noun(todo) == 'runs' else ''}{len(todo)} {_noun(todo)}, {jobs} at once ({where}); "
        "each run's log is beside its folder")

    def ended(slot: int, error: str | None) -> None:
        task = workers[slot].task
        workers[slot].task = None
        ended_keys.add(task.key)
        if error is not None:
            failures.append(RunFailure(task, error, task.run.files.log))
            failed.add(task.key)
        bar.ended(task.key)

    def read(message) -> None:
        kind, slot, *rest = message
        key = workers[slot].task.key
        if kind == "log":
            log(rest[0])
        elif kind == "total":
            bar.set_total(key, rest[0])
        elif kind == "steps":
            bar.update(key, rest[0])
        else:  # "done" or "failed"
            ended(slot, rest[0] if kind == "failed" else None)

    def ready():
        """The first waiting task whose predecessors have all ended (failed ones fail it at once)."""
        for i, task in enumerate(waiting):
            if all(k in ended_keys or k not in pending_keys for k in task.after):
                return waiting.pop(i)
        return None

    def hand_out(slot: int, task) -> None:
        if slot not in workers:
            tasks = ctx.SimpleQueue()
            process = ctx.Process(target=_work, args=(slot, threads, tasks, news, dict(os.environ)),
                                  name=f"classsel worker {slot}")
            process.start()  # a process that failed to start is not stopped below: its error is the one raised
            workers[slot] = _Worker(process, tasks)
        if devices:  # a GPU for each process
            from .runs import Run

            run = Run(dataclasses.replace(task.run.config, device=f"cuda:{slot % devices}"), task.run.seed)
            task = dataclasses.replace(task, run=run)
        workers[slot].task = task
        workers[slot].tasks.put(task)

    try:
        while waiting or any(w.task for w in workers.values()):
            for slot in range(jobs):
                if slot not in workers or workers[slot].task is None:
                    task = ready()
                    while task is not None and _blocked(task, failed):
                        failures.append(RunFailure(task, _blocked(task, failed), task.run.files.log))
                        failed.add(task.key)
                        ended_keys.add(task.key)
                        bar.ended(task.key)
                        task = ready()
                    if task is not None:
                        hand_out(slot, task)
            try:
                read(news.get(timeout=REPORT_EVERY))
            except queues.Empty:
                pass
            for slot, worker in list(workers.items()):
                if worker.process.exitcode is not None:  # died (killed, out of memory): its task failed
                    _drain(news, read)
                    if worker.task is not None:
                        ended(slot, _ended(worker.process.exitcode))
                    del workers[slot]
        for worker in workers.values():
            worker.tasks.put(None)
            worker.process.join()
        workers.clear()
    finally:
        for worker in workers.values():  # interrupted (KeyboardInterrupt): stop them; their runs resume
            worker.process.terminate()
        for worker in workers.values():
            worker.process.join(timeout=30)
            if worker.process.exitcode is None:
                worker.process.kill()
    if failures:
        raise RunsFailed(failures, len(todo), _noun(todo))


# ----------------------------------------------------------------------------- in a training process


def _noun(todo: list) -> str:
    """What a request's tasks are called in messages: runs, when it trains runs only."""
    return "runs" if all(t.kind == "train" for t in todo) else "tasks"


def _drain(news, read) -> None:
    while True:
        try:
            read(news.get_nowait())
        except queues.Empty:
            return


def _ended(code: int | None) -> str:
    if code is not None and code < 0:
        return f"its process was killed by {signal.Signals(-code).name}"
    return f"its process ended with exit code {code}"


#: What the server process of the workers imports once (:func:`_context`): the tasks' code, the
#: architectures', and torch._dynamo, which torch imports (with sympy: 1 s from bytecode, 3.5 s from source) on a
#: process's first optimizer.
PRELOAD = ["classsel.experiments", "classsel.train", "classsel.architectures.resnet", "classsel.architectures.vgg",
           "classsel.architectures.vit", "torch._dynamo"]


def _context():
    """Worker processes forked from a server that imported :data:`PRELOAD` (started on the first pool
    of this process, kept for the next ones); spawned from scratch where there is no forkserver."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def _work(slot: int, threads: int, tasks, news, environ: dict) -> None:
    """The body of a worker process: do the tasks it is sent, one at a time, until it is sent None;
    its bars report to the parent's. ``environ``: the parent's environment when it started the
    worker (a forked worker has its server's, from when that started)."""
    import torch

    os.environ.clear()
    os.environ.update(environ)
    _stop_with_parent()
    torch.set_num_threads(threads)
    saved = os.dup(1), os.dup(2)

    def log(message) -> None:
        print(message, flush=True)
        news.put(("log", slot, str(message)))

    while (task := tasks.get()) is not None:
        run = task.run
        path = run.files.log
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as out:
            for fd in (1, 2):  # all the run's process prints, torch's warnings included, goes to its log
                os.dup2(out.fileno(), fd)
            print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}, {threads} threads, device "
                  f"{run.config.device}: {task} in {run.path}", flush=True)
            try:
                with reporting_to(_Report(task, news=news, slot=slot)) as report:
                    task(log)
                    report.flush()
                news.put(("done", slot))
            except Exception as e:
                traceback.print_exc()
                news.put(("failed", slot, f"{type(e).__name__}: {e}"))
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                for fd, original in zip((1, 2), saved):
                    os.dup2(original, fd)


def _stop_with_parent() -> None:
    """End this process when the one that started it ends (killed, say): the run's lock is
    released and the run resumes on the next request, instead of training on unasked."""
    parent = mp.parent_process()
    if parent is None:
        return

    def watch():
        mp.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="stop with parent").start()
