"""Many runs at once: the missing runs of a request trained by a pool of processes.

``jobs`` training processes, started with ``spawn`` (so it works from a Jupyter kernel),
each train runs one after another as they are handed out. On a CPU each gets its share of
the cores (``torch.set_num_threads(cores // jobs)``); with GPUs each gets one device. For
each run a process does exactly what the run store does in-process
(:func:`classsel.runs.ensure_run`: the run's lock, repair, resume), writes what it prints
to the run's log beside the run's folder, and sends its steps to the request's one
progress bar. A run that fails (an error, or its process killed) does not stop the others;
when they end, :class:`RunsFailed` names every failed run. The processes end when the one
that started them does, leaving their runs to be resumed.
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
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import torch

from . import runs
from .config import train_size
from .progress import progress_bar

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
    if not todo or not torch.cuda.is_available() or any(r.config.device not in ("auto", "cuda")
                                                        for r in todo):
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
    run: runs.Run
    error: str
    log: Path

    def __str__(self) -> str:
        return f"run {self.run.hash}/seed{self.run.seed} ({self.error}; log: {self.log})"


class RunsFailed(RuntimeError):
    """Runs of a request that failed, after every other run of it ended."""

    def __init__(self, failures: list[RunFailure], total: int):
        self.failures = failures
        super().__init__(f"{len(failures)} of {total} runs failed (the others finished): "
                         + "; ".join(map(str, failures)))


def steps_left(run: runs.Run) -> int:
    """Training steps ``run`` still needs, as far as known before it starts (its process reports
    the exact count): 0 for a finished run or a dataset whose size is read only when loaded."""
    size = train_size(run.config)
    if run.done or size is None:
        return 0
    done = max((s for s, _ in run.files.checkpoints()), default=0)
    return max(0, run.config.epochs * (size // run.config.batch_size) - done)


@dataclass
class _Worker:
    """A training process and the run it is on (None: waiting for one)."""

    process: mp.Process
    tasks: object  # the process's queue of runs; None tells it to end
    run: runs.Run | None = None


def train_all(todo: list[runs.Run], jobs: int, log=print) -> None:
    """Train (or resume, or repair) every run of ``todo`` with at most ``jobs`` processes at once;
    raise :class:`RunsFailed` after all ended if any failed."""
    devices = gpus(todo)
    threads = threads_per_job(jobs)
    jobs = min(jobs, len(todo))
    ctx = mp.get_context("spawn")
    news = ctx.Queue()
    waiting, workers, failures = deque(todo), {}, []
    expected = {(r.hash, r.seed): steps_left(r) for r in todo}
    counted = dict.fromkeys(expected, 0)
    where = f"{devices} GPUs" if devices else f"{threads} CPU thread{'s' * (threads > 1)} each"
    log(f"training {len(todo)} runs, {jobs} at once ({where}); each one's log is beside its folder")
    bar = progress_bar(desc=f"train {len(todo)} runs", total=sum(expected.values()), unit="step",
                       enabled=any(r.config.progress for r in todo), dynamic_ncols=True)

    def set_total(key, steps) -> None:
        expected[key] = steps
        bar.total = sum(expected.values())
        bar.refresh()

    def ended(slot: int, error: str | None) -> None:
        run = workers[slot].run
        workers[slot].run = None
        set_total((run.hash, run.seed), counted[(run.hash, run.seed)])  # all it did, or none if only repaired
        if error is not None:
            failures.append(RunFailure(run, error, run.files.log))

    def read(message) -> None:
        kind, slot, *rest = message
        key = (workers[slot].run.hash, workers[slot].run.seed)
        if kind == "log":
            log(rest[0])
        elif kind == "total":
            set_total(key, rest[0])
        elif kind == "steps":
            counted[key] += rest[0]
            bar.update(rest[0])
        else:  # "done" or "failed"
            ended(slot, rest[0] if kind == "failed" else None)

    def hand_out(slot: int) -> None:
        if slot not in workers:
            tasks = ctx.SimpleQueue()
            process = ctx.Process(target=_work, args=(slot, threads, tasks, news),
                                  name=f"classsel training {slot}")
            workers[slot] = _Worker(process, tasks)
            process.start()
        run = waiting.popleft()
        if devices:  # a GPU for each process
            run = runs.Run(dataclasses.replace(run.config, device=f"cuda:{slot % devices}"), run.seed)
        workers[slot].run = run
        workers[slot].tasks.put(run)

    try:
        while waiting or any(w.run for w in workers.values()):
            for slot in range(jobs):
                if waiting and (slot not in workers or workers[slot].run is None):
                    hand_out(slot)
            try:
                read(news.get(timeout=REPORT_EVERY))
            except queues.Empty:
                pass
            for slot, worker in list(workers.items()):
                if worker.process.exitcode is not None:  # died (killed, out of memory): its run failed
                    _drain(news, read)
                    if worker.run is not None:
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
        bar.close()
    if failures:
        raise RunsFailed(failures, len(todo))


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


# ----------------------------------------------------------------------------- in a training process


class _Steps:
    """Stands in for the run's own progress bar in a training process: sends its steps to the
    request's bar, at most every REPORT_EVERY seconds."""

    def __init__(self, news, slot: int, total: int, initial: int = 0):
        self.news, self.slot, self.count, self.sent = news, slot, 0, time.monotonic()
        news.put(("total", slot, total - initial))

    def update(self, n: int = 1) -> None:
        self.count += n
        if time.monotonic() - self.sent >= REPORT_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.count:
            self.news.put(("steps", self.slot, self.count))
        self.count, self.sent = 0, time.monotonic()

    def set_postfix(self, **_) -> None:
        pass

    def close(self) -> None:
        self.flush()


def _work(slot: int, threads: int, tasks, news) -> None:
    """The body of a training process (spawned: a fresh interpreter): train the runs it is sent,
    one at a time, until it is sent None."""
    from . import train as training

    _stop_with_parent()
    torch.set_num_threads(threads)
    # train() draws its bar from its module's progress_bar: here it reports to the parent instead
    training.progress_bar = lambda desc="", total=None, initial=0, **_: _Steps(news, slot, total, initial)
    saved = os.dup(1), os.dup(2)

    def log(message) -> None:
        print(message, flush=True)
        news.put(("log", slot, str(message)))

    while (run := tasks.get()) is not None:
        path = run.files.log
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as out:
            for fd in (1, 2):  # all the run's process prints, torch's warnings included, goes to its log
                os.dup2(out.fileno(), fd)
            print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}, {threads} threads, device "
                  f"{run.config.device}: run {run.hash}/seed{run.seed} in {run.path}", flush=True)
            try:
                runs.ensure_run(run, log)
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
