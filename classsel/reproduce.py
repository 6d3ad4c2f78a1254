"""``python -m classsel reproduce``: the plans of the book's sections, united and fulfilled.

Each section of the paper declares the runs and analyses it needs (:func:`classsel.sections.plan`);
this command unites them for a preset and does what is missing, so that the notebooks then only
read the run store: here in one pool of worker processes with one progress bar (``--executor local``),
or as jobs of a SLURM cluster (``--executor slurm``, :mod:`classsel.cluster`). Interrupted, the same
command goes on where it stopped; ``--status`` shows where the grid stands.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .plan import Plan

# The command line is parsed, and its mistakes reported, without importing torch (seconds on a slow
# machine): the sections, the cluster and the plan are imported where they are used, and the names
# the options accept are listed here (tests/test_plan.py keeps them equal to the modules' own).
#: The book's sections, in order (:data:`classsel.sections.SECTIONS`), and their notebooks.
NOTEBOOKS = {"emergence": "01_emergence", "ablation": "02_ablation", "cka": "03_cka", "regularize": "04_regularize",
             "promote": "05_promote", "class_representation": "06_class_representation",
             "architectures": "07_architectures"}
#: :data:`classsel.cluster.EXECUTORS`.
EXECUTORS = ("local", "slurm", "submitit-local", "debug")


def request(preset: str | None = None, names=None, **common) -> Plan:
    """The union of the plans of sections ``names`` (default: all) at their notebooks' defaults,
    ``common`` changed (``seeds``, ``epochs``, ``data_root``, ``overrides``)."""
    chosen = section_names(names)
    from . import sections
    from .plan import Plan

    found = Plan()
    for name in chosen:
        found.update(sections.plan(name, sections.defaults(name, preset, **common)))
    return found


def section_names(names=None) -> list[str]:
    """Section names from names or notebook names (``regularize`` or ``04_regularize``); an error names
    what is accepted."""
    if not names:
        return list(NOTEBOOKS)
    by_notebook = {v: k for k, v in NOTEBOOKS.items()}
    found = []
    for name in names:
        section = by_notebook.get(name, name)
        if section not in NOTEBOOKS:
            raise ValueError(f"section {name!r} is not valid: expected some of {list(NOTEBOOKS)} "
                             f"(or their notebooks {list(by_notebook)})")
        found.append(section)
    return list(dict.fromkeys(found))


def describe(plan: Plan) -> str:
    """One line per task: what it is, its run, whether it is done."""
    from .plan import Training

    lines = []
    for task in plan.linked():
        state = "pending" if task.pending() else "done"
        if isinstance(task, Training):
            c = task.run.config
            what = f"train    {task.run.hash}/seed{task.run.seed:<3} alpha={c.alpha:g} reg={c.reg_start}-{c.reg_stop}"
            if task.parent is not None:
                what += f" (from {task.parent[0].hash}/seed{task.parent[0].seed} at epoch {task.parent[1]})"
            if task.along:
                what += f", measuring {' and '.join(dict.fromkeys(kind for kind, _, _ in task.along))} as it trains"
        else:
            what = f"{task.kind:<8} {task.run.hash}/seed{task.run.seed:<3} epochs={list(task.epochs or []) or 'all kept'}"
        lines.append(f"{state:<8} {what}")
    return "\n".join(lines)


def add_parser(sub) -> None:
    r = sub.add_parser("reproduce", help="train the runs and compute the analyses the book's sections need "
                       "(what is missing), with one progress bar")
    r.add_argument("--preset", help="smoke, mnist, cifar10 or imagenet (default: $CLASSSEL_PRESET or mnist)")
    r.add_argument("--sections", nargs="+", metavar="SECTION",
                   help=f"some of {', '.join(NOTEBOOKS)} (default: all)")
    r.add_argument("--jobs", type=int, help="tasks at once (default: one per CPU core, or one per GPU)")
    r.add_argument("--seeds", type=int, nargs="+", metavar="S",
                   help="these seeds for every section's runs, as `train --seeds` (default: each section's, the "
                   "paper's counts; a notebook run later trains the seeds it is missing itself)")
    r.add_argument("--data-root", help="the dataset folder, for cifar10 and imagenet")
    r.add_argument("--dry-run", action="store_true", help="list the tasks and whether each is done; do nothing")
    r.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    r.add_argument("--traceback", action="store_true", help="on an error, show the whole traceback")
    r.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local: this machine's worker pool (default); slurm: a job per task, in job arrays "
                   "(submitit); submitit-local: the same jobs as processes here; debug: the jobs in this process")
    r.add_argument("--status", action="store_true",
                   help="show each run and analysis as done, running, queued, failed (with its log) or missing")
    c = r.add_argument_group("jobs (--executor slurm, submitit-local, debug)")
    c.add_argument("--jobs-folder", help="submitit's files and the ledger of submissions (default: <run store>/jobs)")
    c.add_argument("--cluster-config", metavar="FILE.yaml",
                   help="the resources below as a YAML mapping (gpus_per_run: 8, partition: gpu, ...); "
                   "options given here win")
    c.add_argument("--gpus-per-run", type=int, help="GPUs of a training run, over --nodes (one process each; default 0)")
    c.add_argument("--nodes", type=int, help="nodes of a training run (default 1)")
    c.add_argument("--cpus-per-task", type=int, help="CPUs of each process (its torch threads)")
    c.add_argument("--mem-gb", type=float, help="memory per node, GB")
    c.add_argument("--time-min", type=int, help="time limit of a job, minutes (requeued and resumed past it; "
                   "default 1440)")
    c.add_argument("--partition")
    c.add_argument("--account")
    c.add_argument("--qos")
    c.add_argument("--constraint")
    c.add_argument("--array-parallelism", type=int, help="jobs of an array running at once (default 256)")


def resources(args):
    """The jobs' resources (:class:`classsel.cluster.Resources`) from ``--cluster-config`` and the options."""
    from .cluster import Resources

    return Resources.read(args.cluster_config, **{f.name: getattr(args, f.name) for f in dataclasses.fields(Resources)})


def command(args) -> int:
    section_names(args.sections)  # a mistake in the names, before anything is imported
    check_values(args)
    from .parallel import RunsFailed, check_jobs

    if args.jobs is not None:
        check_jobs(args.jobs, [])  # before torch loads
    from .plan import fulfil

    plan = request(args.preset, args.sections, data_root=args.data_root, seeds=args.seeds)
    if args.status:
        from . import cluster  # submitit

        print(cluster.describe_status(cluster.status(plan, args.jobs_folder)))
        return 0
    if args.executor != "local":
        return _submit(args, plan)
    if args.dry_run:
        print(describe(plan))
        todo = plan.linked().pending()
        print(f"{plan.summary()}; {len(todo)} to do")
        return 0
    print(f"reproduce: {plan.summary()} for {', '.join(section_names(args.sections))}", file=sys.stderr)
    try:
        fulfil(plan, jobs=args.jobs, progress=args.progress, log=lambda m: print(m, file=sys.stderr))
    except RunsFailed as e:
        if args.traceback:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"reproduce: done ({plan.summary()})", file=sys.stderr)
    return 0


def check_values(args) -> None:
    """The preset, the seeds and the data folder, named as the options that gave them, checked before
    torch loads (a mistake is named at once, not after seconds of imports); the sections check them
    again."""
    from . import config
    from .params import data_folder

    preset = config.default_preset() if args.preset is None else config.check_field("preset", args.preset, "--preset")
    for seed in args.seeds or ():
        config.check_field("seed", seed, "--seeds")
    data_folder(preset, args.data_root, label="--data-root")
    if args.data_root is not None:
        config.resolve(preset, data_root=config.check_field("data_root", args.data_root, "--data-root"))


def _submit(args, plan: Plan) -> int:
    from . import cluster
    from .parallel import RunsFailed

    wanted = resources(args)
    done = cluster.submit(plan, args.executor, wanted, args.jobs_folder, dry_run=True)
    jobs = sum(len(g.tasks) for g in done.groups)
    if args.dry_run:
        print(cluster.describe(done.groups, wanted))
        print(f"{plan.summary()}; {jobs} jobs in {len(done.groups)} arrays to submit"
              + (f"; {len(done.in_flight)} queued or running already" if done.in_flight else ""))
        return 0
    print(f"reproduce: {plan.summary()} for {', '.join(section_names(args.sections))}: {jobs} jobs to submit "
          f"({args.executor})" + (f", {len(done.in_flight)} queued or running already" if done.in_flight else ""),
          file=sys.stderr)
    try:
        cluster.submit(plan, args.executor, wanted, args.jobs_folder, log=lambda m: print(m, file=sys.stderr))
    except RunsFailed as e:
        if args.traceback:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("reproduce: " + ("submitted; `reproduce --status` shows where they are" if args.executor == "slurm"
                           else f"done ({plan.summary()})"), file=sys.stderr)
    return 0
