"""Many runs at once: the missing runs of a request trained by a pool of processes.

Each run is trained in a process of its own, started with ``spawn`` (so it works from a
Jupyter kernel, and a crash loses only that run), at most ``jobs`` at a time. On a CPU
each process gets its share of the cores (``torch.set_num_threads(cores // jobs)``); with
GPUs each gets one device in turn. A process does for its run exactly what the run store
does in-process (:func:`classsel.runs.ensure_run`: the run's lock, repair, resume), writes
what it says to a log beside the run folder, and sends its steps to the request's one
progress bar. It stops when the process that asked for it ends, leaving the run to be
resumed. A run that fails does not stop the others; when they end, :class:`RunsFailed`
names every failed run.
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


def log_file(run: runs.Run) -> Path:
    """Where the process training ``run`` writes its log: beside the run's folder, outside what
    the run's manifest records."""
    return run.path.with_name(f"{run.path.name}.log")


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


def train_all(todo: list[runs.Run], jobs: int, log=print) -> None:
    """Train (or resume, or repair) every run of ``todo`` with at most ``jobs`` processes at once;
    raise :class:`RunsFailed` after all ended if any failed."""
    devices = gpus(todo)
    threads = threads_per_job(jobs)
    jobs = min(jobs, len(todo))
    ctx = mp.get_context("spawn")
    news = ctx.Queue()
    waiting, active = deque(todo), {}
    free = list(range(jobs))
    expected = {(r.hash, r.seed): steps_left(r) for r in todo}
    counted = dict.fromkeys(expected, 0)
    finished, errors, failures = set(), {}, []
    where = f"{devices} GPUs" if devices else f"{threads} CPU thread{'s' * (threads > 1)} each"
    log(f"training {len(todo)} runs, {jobs} at once ({where}); each one's log is beside its folder")
    bar = progress_bar(desc=f"train {len(todo)} runs", total=sum(expected.values()), unit="step",
                       enabled=any(r.config.progress for r in todo), dynamic_ncols=True)

    def read(message) -> None:
        kind, key, *rest = message
        if kind == "log":
            log(rest[0])
        elif kind == "total":
            expected[key] = rest[0]
            bar.total = sum(expected.values())
            bar.refresh()
        elif kind == "steps":
            counted[key] += rest[0]
            bar.update(rest[0])
        elif kind == "done":
            finished.add(key)
        elif kind == "failed":
            errors[key] = rest[0]

    try:
        while waiting or active:
            while waiting and free:
                run, slot = waiting.popleft(), free.pop(0)
                if devices:
                    run = runs.Run(dataclasses.replace(run.config, device=f"cuda:{slot % devices}"), run.seed)
                process = ctx.Process(target=_train_one, args=(run, threads, log_file(run), news),
                                      name=f"classsel {run.hash}/seed{run.seed}")
                process.start()
                active[(run.hash, run.seed)] = (process, run, slot)
            try:
                read(news.get(timeout=REPORT_EVERY))
            except queues.Empty:
                pass
            for key, (process, run, slot) in list(active.items()):
                if process.exitcode is None:
                    continue
                _drain(news, read)  # what it sent before it ended
                process.join()
                del active[key]
                free.append(slot)
                expected[key] = counted[key]  # a failed run's steps, or none for a run only repaired
                bar.total = sum(expected.values())
                bar.refresh()
                if process.exitcode != 0 or key not in finished:
                    error = errors.get(key) or _ended(process.exitcode)
                    failures.append(RunFailure(run, error, log_file(run)))
    finally:
        for process, _, _ in active.values():  # interrupted (KeyboardInterrupt): stop them, resumable
            process.terminate()
        for process, _, _ in active.values():
            process.join(timeout=30)
            if process.exitcode is None:
                process.kill()
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


# ----------------------------------------------------------------------------- in the training process


class _Steps:
    """Stands in for the run's own progress bar in a training process: sends its steps to the
    request's bar, at most every REPORT_EVERY seconds."""

    def __init__(self, news, key, total: int, initial: int = 0):
        self.news, self.key, self.count, self.sent = news, key, 0, time.monotonic()
        news.put(("total", key, total - initial))

    def update(self, n: int = 1) -> None:
        self.count += n
        if time.monotonic() - self.sent >= REPORT_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.count:
            self.news.put(("steps", self.key, self.count))
        self.count, self.sent = 0, time.monotonic()

    def set_postfix(self, **_) -> None:
        pass

    def close(self) -> None:
        self.flush()


def _train_one(run: runs.Run, threads: int, log_path: Path, news) -> None:
    """The body of a training process (spawned: it starts from a fresh interpreter)."""
    from . import train as training

    key = (run.hash, run.seed)
    _stop_with_parent()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    out = open(log_path, "a", buffering=1)
    for fd in (1, 2):  # everything the process prints, torch's warnings included, goes to the log
        os.dup2(out.fileno(), fd)
    torch.set_num_threads(threads)
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}, {threads} threads, "
          f"device {run.config.device}: run {run.hash}/seed{run.seed} in {run.path}", flush=True)

    def log(message) -> None:
        print(message, flush=True)
        news.put(("log", key, str(message)))

    # train() draws its bar from its module's progress_bar: here it reports to the parent instead
    training.progress_bar = lambda desc="", total=None, initial=0, **_: _Steps(news, key, total, initial)
    try:
        runs.ensure_run(run, log)
    except BaseException as e:
        traceback.print_exc()
        news.put(("failed", key, f"{type(e).__name__}: {e}"))
        sys.stdout.flush()
        raise SystemExit(1) from None
    news.put(("done", key))


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
