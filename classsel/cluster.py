"""A plan's tasks as cluster jobs: the paper's grid submitted to SLURM through submitit.

Every task of a plan (:mod:`classsel.plan`) that is not done becomes a job: a run's training
runs DDP over the job's GPUs and nodes, an analysis runs in one process. Jobs that wait for the
same jobs go into one job array (:func:`arrays`): the runs that start from scratch are one array;
a run that branches from another (:meth:`classsel.plan.Plan.linked`) waits for its parent's job
(``afterany``: if the parent failed, the run trains from scratch, to the same bits); an analysis
waits for its run's job (``afterok``). Jobs write into the run store with its locks, manifests
and resumption, so a job that is preempted or runs out of time is requeued by submitit and resumes
from its newest checkpoint (:class:`Job` is :class:`submitit.helpers.Checkpointable`).

The job folder keeps submitit's files and a ledger of which job does which task
(:data:`LEDGER`): submitting again skips what is done, queued or running and resubmits what
failed; :func:`status` shows every task as done, running, queued, failed (with its log) or missing.

Executors: ``slurm``; ``submitit-local``, submitit's jobs as processes of this machine, at most
``array_parallelism`` at once, each task once the tasks it comes after ended (for trying the cluster
path here); ``debug``, submitit's executor that runs each job in this process. ``local``, this
machine's worker pool with one progress bar, is :func:`classsel.plan.fulfil`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

import submitit

from . import layout, runs
from .parallel import RunFailure, RunsFailed, cores
from .plan import Analysis, Plan, Training

#: The executors that submit jobs through submitit (``local`` is the worker pool of :mod:`classsel.parallel`).
SUBMITIT = {"slurm": "slurm", "submitit-local": "local", "debug": "debug"}
EXECUTORS = ("local", *SUBMITIT)
#: The job folder's record of submissions, one JSON object a line: task key, job id, executor.
LEDGER = "ledger.jsonl"
#: How often the executors of this machine look at their jobs (seconds).
POLL = 0.2
#: SLURM job states (sacct) of a job that has not ended.
QUEUED = {"PENDING", "REQUEUED", "CONFIGURING", "RESIZING", "SUSPENDED", "REQUEUE_HOLD", "REQUEUE_FED"}
RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}


def jobs_folder() -> Path:
    """Where submitit's files and the ledger go by default: ``<store>/jobs`` (shared with the jobs,
    as the run store is)."""
    return layout.store() / "jobs"


# ----------------------------------------------------------------------------- resources


@dataclass(frozen=True)
class Resources:
    """What each job asks the cluster for. ``gpus_per_run``: the GPUs of one training run, over
    ``nodes`` nodes (one process per GPU); an analysis gets one GPU (none if runs get none)."""

    gpus_per_run: int = 0
    nodes: int = 1
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    time_min: int = 24 * 60
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    array_parallelism: int = 256

    def __post_init__(self):
        for name in ("gpus_per_run", "nodes", "cpus_per_task", "time_min", "array_parallelism"):
            value, least = getattr(self, name), 0 if name == "gpus_per_run" else 1
            if value is None and name == "cpus_per_task":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name}={value!r} is not valid: expected an integer >= {least}")
        if self.mem_gb is not None and (isinstance(self.mem_gb, bool) or not isinstance(self.mem_gb, (int, float))
                                        or self.mem_gb <= 0):
            raise ValueError(f"mem_gb={self.mem_gb!r} is not valid: expected a number > 0 (GB per node)")
        if self.gpus_per_run and self.gpus_per_run % self.nodes:
            raise ValueError(f"gpus_per_run={self.gpus_per_run} is not valid over nodes={self.nodes}: expected a "
                             "multiple of the nodes (the same GPUs on each node)")
        for name in ("partition", "account", "qos", "constraint"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise ValueError(f"{name}={getattr(self, name)!r} is not valid: expected a string")

    @classmethod
    def read(cls, path=None, **options) -> Resources:
        """The resources of the YAML file ``path`` (a mapping of this class's fields), with the
        ``options`` that are not None on top."""
        found = {}
        if path is not None:
            import yaml

            found = yaml.safe_load(Path(path).read_text()) or {}
            fields = {f.name for f in dataclasses.fields(cls)}
            if not isinstance(found, dict) or set(found) - fields:
                wrong = sorted(set(found) - fields) if isinstance(found, dict) else found
                raise ValueError(f"{path}: {wrong!r} is not valid: expected a mapping of some of {sorted(fields)}")
        return cls(**{**found, **{k: v for k, v in options.items() if v is not None}})

    def of(self, role: str) -> dict:
        """submitit's parameters of a job of ``role`` ("train" or "analysis")."""
        training = role == "train"
        nodes = self.nodes if training else 1
        gpus = self.gpus_per_run // self.nodes if training else min(1, self.gpus_per_run)
        found = dict(name=f"classsel-{role}", nodes=nodes, tasks_per_node=max(1, gpus), gpus_per_node=gpus,
                     cpus_per_task=self.cpus_per_task, mem_gb=self.mem_gb, timeout_min=self.time_min,
                     slurm_partition=self.partition, slurm_account=self.account, slurm_qos=self.qos,
                     slurm_constraint=self.constraint, slurm_array_parallelism=self.array_parallelism)
        return {k: v for k, v in found.items() if v is not None}

    def describe(self, role: str) -> str:
        p = self.of(role)
        words = [f"{p['nodes']} node{'s' * (p['nodes'] > 1)} x {p['tasks_per_node']} process"
                 f"{'es' * (p['tasks_per_node'] > 1)}", f"{p['gpus_per_node']} GPU{'s' * (p['gpus_per_node'] != 1)}"
                 " per node"]
        words += [f"{p['cpus_per_task']} CPUs per process"] if "cpus_per_task" in p else []
        words += [f"{p['mem_gb']:g} GB per node"] if "mem_gb" in p else []
        words += [f"{p['timeout_min']} min"]
        words += [f"{k[6:]} {p[k]}" for k in ("slurm_partition", "slurm_account", "slurm_qos", "slurm_constraint")
                  if k in p]
        return ", ".join(words)


# ----------------------------------------------------------------------------- a job


class Job(submitit.helpers.Checkpointable):
    """A task of a plan as a submitit job. Preempted or out of time, submitit requeues the same job
    (:meth:`checkpoint`, inherited), and the run store resumes the run from its newest checkpoint.
    ``threads``: torch threads of each process (None: torch's default, or SLURM's CPUs per task)."""

    def __init__(self, task, threads: int | None = None):
        self.task, self.threads = task, threads

    def __call__(self) -> str:
        import torch

        env = _environment()
        world = env.num_tasks if env is not None else 1
        rank = env.global_rank if env is not None else 0
        threads = self.threads or int(os.environ.get("SLURM_CPUS_PER_TASK", "0")) or None
        if threads:
            torch.set_num_threads(threads)
        threads = torch.get_num_threads()
        with _run_log(self.task, rank == 0) as log:
            if rank == 0:
                log(f"{time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}, job {env.job_id if env else '-'}, "
                    f"{world} process{'es' * (world > 1)}, {threads} thread{'s' * (threads > 1)}: {self.task} "
                    f"in {self.task.run.path}")
            if world > 1 and isinstance(self.task, Training):
                _train_in_group(self.task, log)
            elif rank == 0:
                self.task(log)
        return "done"

    def __repr__(self) -> str:
        return f"Job({self.task})"


def _environment():
    """submitit's description of the job this process runs in; None outside of one (the debug
    executor's exception path runs the job without it)."""
    try:
        return submitit.JobEnvironment()
    except RuntimeError:
        return None


@contextlib.contextmanager
def _run_log(task, writes: bool):
    """A log that prints (into submitit's log of the job) and, on rank 0, appends to the run's log
    beside its folder, where the worker pool writes too."""
    path = task.run.files.log
    if writes:
        path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") if writes else contextlib.nullcontext() as out:
        def log(message) -> None:
            print(message, flush=True)
            if out is not None:
                print(message, file=out, flush=True)

        yield log


def _train_in_group(task: Training, log) -> None:
    """Every process of a job trains the run together (DDP): rank 0 holds the run's lock and does what
    the run store does before training (:func:`classsel.runs.before_training`: a finished run checked and
    mended, a new one branched from its parent), then tells the others whether to train and resume."""
    import torch.distributed as dist

    from submitit.helpers import TorchDistributedEnvironment

    from .train import run_lock, train

    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)  # train picks cuda:LOCAL_RANK
    import torch

    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        run, rank = task.run, dist.get_rank()
        with run_lock(run.path, wait=True, log=log) if rank == 0 else contextlib.nullcontext():
            decision = [runs.before_training(run, log, task.parent) if rank == 0 else None]
            dist.broadcast_object_list(decision, src=0)
            if decision[0] is not None:
                train(run.config, run.path, resume=decision[0], log=log if rank == 0 else (lambda *a: None),
                      lock=False)
    finally:
        dist.destroy_process_group()


# ----------------------------------------------------------------------------- arrays


@dataclass
class Array:
    """Jobs of one role that wait for the same jobs: one job array. ``after``: (kind, reference) with
    kind "afterany" or "afterok" and reference (array index, element) of this submission or a job id
    queued or running from an earlier one."""

    role: str
    after: tuple
    tasks: list = dataclasses.field(default_factory=list)


def _ordered(tasks: list) -> list:
    """``tasks`` with every task after those of ``tasks`` it comes after (stable otherwise)."""
    keys, placed, out = {t.key for t in tasks}, set(), []
    waiting = list(tasks)
    while waiting:
        ready = [t for t in waiting if all(k in placed or k not in keys for k in t.after)]
        if not ready:
            raise ValueError(f"the tasks {[str(t) for t in waiting]} wait for each other")
        for t in ready:
            placed.add(t.key)
            out.append(t)
            waiting.remove(t)
    return out


def arrays(todo: list, in_flight: dict | None = None) -> list[Array]:
    """The job arrays of the tasks ``todo``: grouped by role and by the jobs they wait for, in an order
    in which every array comes after those it waits for. ``in_flight``: task key -> job id of tasks
    queued or running from an earlier submission (waited for, not submitted again)."""
    in_flight = in_flight or {}
    where: dict[tuple, tuple[int, int]] = {}
    found: dict[tuple, int] = {}
    out: list[Array] = []
    for task in _ordered(todo):
        role = "train" if isinstance(task, Training) else "analysis"
        kind = "afterany" if role == "train" else "afterok"
        after = tuple(sorted((kind, where[k] if k in where else in_flight[k]) for k in task.after
                             if k in where or k in in_flight))
        index = found.setdefault((role, after), len(out))
        if index == len(out):
            out.append(Array(role, after))
        where[task.key] = (index, len(out[index].tasks))
        out[index].tasks.append(task)
    return out


def describe(groups: list[Array], resources: Resources) -> str:
    """The jobs of ``groups`` as a dry run lists them: the resources of each role, then each array with
    what it waits for and one line per job."""
    roles = dict.fromkeys(g.role for g in groups)
    lines = [f"each {role} job: {resources.describe(role)}" for role in roles]
    for i, group in enumerate(groups):
        waits = ", ".join(f"{kind} {_name(ref)}" for kind, ref in group.after) or "nothing"
        lines.append(f"array {i}: {len(group.tasks)} {group.role} job{'s' * (len(group.tasks) > 1)}, "
                     f"waiting for {waits}")
        for j, task in enumerate(group.tasks):
            lines.append(f"  {i}_{j:<4} {_task_line(task)}")
    return "\n".join(lines)


def _name(ref) -> str:
    return f"job {ref[0]}_{ref[1]}" if isinstance(ref, tuple) else f"job {ref}"


def _task_line(task) -> str:
    run = f"{task.run.hash}/seed{task.run.seed}"
    if isinstance(task, Training):
        c = task.run.config
        text = f"train    {run:<18} {c.arch} {c.epochs} epochs, alpha={c.alpha:g} reg={c.reg_start}-{c.reg_stop}"
        if task.parent is not None:
            text += f" (from {task.parent[0].hash}/seed{task.parent[0].seed} at epoch {task.parent[1]})"
        return text
    return f"{task.kind:<8} {run:<18} epochs={list(task.epochs or []) or 'all kept'}"


# ----------------------------------------------------------------------------- the ledger


def _key(task) -> str:
    return repr(task.key)


def ledger(folder: Path) -> dict[str, dict]:
    """The latest submission of every task key recorded in ``folder``."""
    path = Path(folder) / LEDGER
    if not path.exists():
        return {}
    found = {}
    for line in path.read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            found[entry["key"]] = entry
    return found


def _record(folder: Path, entries: list[dict]) -> None:
    with open(Path(folder) / LEDGER, "a") as out:
        for entry in entries:
            out.write(json.dumps(entry) + "\n")


def job_states(entries: dict[str, dict]) -> dict[str, str]:
    """"queued", "running" or "ended" for the job of each ledger entry (by task key); SLURM's states
    from one call to sacct."""
    slurm = [e["job"] for e in entries.values() if e["executor"] == "slurm"]
    if slurm:
        watcher = submitit.SlurmJob.watcher
        for job in slurm:
            watcher.register_job(job)
        watcher.update()
    found = {}
    for key, entry in entries.items():
        if entry["executor"] == "slurm":
            # UNKNOWN: sacct does not know the job yet (just submitted), or does not answer
            state = watcher.get_state(entry["job"], mode="cache").split()[0].upper()
            found[key] = "queued" if state in QUEUED else "running" if state in RUNNING | {"UNKNOWN"} else "ended"
        elif entry["executor"] == "submitit-local":  # the job id is the pid of submitit's controller of the job
            try:
                command = Path(f"/proc/{entry['job']}/cmdline").read_bytes()
            except OSError:
                command = b""
            found[key] = "running" if b"submitit.local._local" in command else "ended"
        else:
            found[key] = "ended"
    return found


def job_log(entry: dict, folder: Path) -> Path:
    """submitit's log of the job's errors (rank 0)."""
    return submitit.core.utils.JobPaths(folder, entry["job"], 0).stderr


# ----------------------------------------------------------------------------- submitting


@dataclass
class Submitted:
    """What :func:`submit` did: the arrays it submitted (or would), and the tasks left alone because a
    job of an earlier submission still does them."""

    groups: list[Array]
    ids: list[list[str]]
    in_flight: dict


def submit(plan: Plan, executor: str, resources: Resources = Resources(), folder=None, dry_run: bool = False,
           log=print) -> Submitted:
    """Submit a job for every task of ``plan`` not done and not queued or running, in job arrays
    (:func:`arrays`). ``slurm``: returns once submitted. ``submitit-local``, ``debug``: returns once
    every job ended, raising :class:`classsel.parallel.RunsFailed` if some failed."""
    if executor not in SUBMITIT:
        raise ValueError(f"executor={executor!r} is not valid here: expected one of {list(SUBMITIT)} "
                         "(local: classsel.plan.fulfil)")
    folder = Path(folder) if folder is not None else jobs_folder()
    plan = plan.linked()
    todo = plan.pending()
    seen = ledger(folder)
    states = job_states({_key(t): seen[_key(t)] for t in todo if _key(t) in seen})
    in_flight = {t.key: seen[_key(t)]["job"] for t in todo if states.get(_key(t), "ended") != "ended"}
    groups = arrays([t for t in todo if t.key not in in_flight], in_flight)
    if dry_run or not groups:
        return Submitted(groups, [], in_flight)
    if executor == "slurm" and not _has_slurm():
        raise ValueError("executor='slurm' needs SLURM's srun and sbatch on PATH, which this machine lacks: "
                         "submit from a login node of the cluster, or use --executor local here")
    folder.mkdir(parents=True, exist_ok=True)
    for run in {r.hash: r for r in plan.runs()}.values():
        runs.record_configuration(run)
    if executor == "slurm":
        ids = _to_slurm(groups, resources, folder, log)
        return Submitted(groups, ids, in_flight)
    _here(groups, executor, resources, folder, log)
    return Submitted(groups, [], in_flight)


def _why(error: BaseException) -> str:
    """One line for a job's error: the exception a job raised, or that its process ended without a result."""
    if isinstance(error, submitit.core.utils.FailedJobError):  # the job's traceback between two rules
        trace = str(error).split("-" * 22)[1].strip().splitlines()
        return trace[-1] if trace else "failed"
    if isinstance(error, submitit.core.utils.UncompletedJobError):
        return "its process ended without a result (killed, or out of memory)"
    return f"{type(error).__name__}: {error}"


def _has_slurm() -> bool:
    import shutil

    return shutil.which("srun") is not None and shutil.which("sbatch") is not None


def _to_slurm(groups: list[Array], resources: Resources, folder: Path, log) -> list[list[str]]:
    ids: list[list[str]] = []
    for group in groups:
        executor = submitit.AutoExecutor(folder, cluster="slurm")  # new each time: a dependency cannot be unset
        extra = {"kill-on-invalid-dep": "yes"} if group.role == "analysis" else {}
        waits: dict[str, list[str]] = {}
        for kind, ref in group.after:
            waits.setdefault(kind, []).append(ids[ref[0]][ref[1]] if isinstance(ref, tuple) else ref)
        if waits:  # SLURM: "afterany:1_0:1_3,afterok:2_0" waits for all of them
            extra["dependency"] = ",".join(f"{kind}:{':'.join(jobs)}" for kind, jobs in waits.items())
        executor.update_parameters(**resources.of(group.role), slurm_additional_parameters=extra)
        jobs = executor.submit_array([Job(task, resources.cpus_per_task) for task in group.tasks])
        ids.append([job.job_id for job in jobs])
        _record(folder, [{"key": _key(t), "job": j.job_id, "executor": "slurm", "task": str(t),
                          "time": time.strftime("%Y-%m-%d %H:%M:%S")} for t, j in zip(group.tasks, jobs)])
        log(f"submitted {len(jobs)} {group.role} job{'s' * (len(jobs) > 1)} as array "
            f"{jobs[0].job_id.split('_')[0]}" + (f", after {extra['dependency']}" if waits else ""))
    return ids


def _here(groups: list[Array], executor: str, resources: Resources, folder: Path, log) -> None:
    """The jobs on this machine, each once those it waits for ended, at most ``array_parallelism`` at once;
    an analysis whose run failed fails without running."""
    tasks = [t for g in groups for t in g.tasks]
    parallel = 1 if executor == "debug" else min(resources.array_parallelism, len(tasks))
    threads = resources.cpus_per_task or max(1, cores() // parallel)
    submitter = submitit.AutoExecutor(folder, cluster=SUBMITIT[executor])
    if executor == "submitit-local":
        submitter.update_parameters(timeout_min=resources.time_min, tasks_per_node=1, name="classsel")
    keys = {t.key for t in tasks}
    waiting, running, ended, failures = list(tasks), [], set(), []
    while waiting or running:
        for task in list(waiting):
            if len(running) >= parallel:
                break
            if not all(k in ended or k not in keys for k in task.after):
                continue
            waiting.remove(task)
            gone = [f for f in failures if f.task.key in task.after]
            if gone and isinstance(task, Analysis):
                failures.append(RunFailure(task, f"its run's job failed ({gone[0].error})", gone[0].log))
                ended.add(task.key)
                continue
            job = submitter.submit(Job(task, threads))
            _record(folder, [{"key": _key(task), "job": job.job_id, "executor": executor, "task": str(task),
                              "time": time.strftime("%Y-%m-%d %H:%M:%S")}])
            running.append((task, job))
        for task, job in list(running):
            if executor == "submitit-local" and not job.done():
                continue
            error = job.exception()  # the debug executor runs the job here, now
            running.remove((task, job))
            ended.add(task.key)
            if error is not None:
                why = _why(error)
                failures.append(RunFailure(task, why, job.paths.stderr))
                log(f"job {job.job_id} failed: {task} ({why})")
            else:
                log(f"job {job.job_id} done: {task}")
        if running:
            time.sleep(POLL)
    if failures:
        raise RunsFailed(failures, len(tasks))


# ----------------------------------------------------------------------------- the grid's state


def status(plan: Plan, folder=None) -> list[tuple]:
    """Every task of ``plan`` with its state: (task, state, job id or None, log or None); state is "done",
    "running", "queued", "failed" or "missing" (never submitted, or its job ended without finishing it
    and left no error: failed too). A run whose lock another process holds is "running"."""
    folder = Path(folder) if folder is not None else jobs_folder()
    seen = ledger(folder)
    tasks = list(plan.linked())
    pending = {t.key for t in tasks if t.pending()}
    states = job_states({_key(t): seen[_key(t)] for t in tasks if t.key in pending and _key(t) in seen})
    out = []
    for task in tasks:
        entry = seen.get(_key(task))
        if task.key not in pending:
            out.append((task, "done", entry and entry["job"], None))
        elif entry is not None and (state := states[_key(task)]) != "ended":
            out.append((task, state, entry["job"], None))
        elif isinstance(task, Training) and _locked(task.run):
            out.append((task, "running", entry and entry["job"], None))
        elif entry is not None:
            out.append((task, "failed", entry["job"], job_log(entry, folder)))
        else:
            out.append((task, "missing", None, None))
    return out


def _locked(run: runs.Run) -> bool:
    import fcntl

    path = run.files.lock
    if not path.exists():
        return False
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def describe_status(rows: list[tuple]) -> str:
    lines = []
    for task, state, job, log in rows:
        line = f"{state:<8} {_task_line(task)}"
        line += f"  job {job}" if job else ""
        line += f"  log: {shlex.quote(str(log))}" if log else ""
        lines.append(line)
    counts = {s: sum(r[1] == s for r in rows) for s in ("done", "running", "queued", "failed", "missing")}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(lines)
