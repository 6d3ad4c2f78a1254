"""What a request needs, as tasks: the runs to train and the analyses to compute from them.

A paper section declares its plan from its parameters (:mod:`classsel.sections`); the plans of
several sections are united (:meth:`Plan.update`), so a run or an analysis that two sections
share is one task. :func:`fulfil` does what is not done yet, training and analyses alike in
the worker processes of :mod:`classsel.parallel`, with one progress bar for the whole request.
A task is done when its files are in the run store: running the same request again, after an
interruption or not, does what is left.

A run that trains exactly as another run of the plan for its first epochs (the same
configuration but for a regulariser switched on later, or released earlier) starts from that
run's state at the last shared epoch instead of from scratch (:func:`shared_epochs`,
:func:`classsel.runs.branch`): the result is the same to the bit.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from . import runs
from .config import Config, identity, train_size

#: The fields in which two runs may differ and still train alike for their first epochs.
SCHEDULE = ("alpha", "reg_start", "reg_stop", "reg_modules", "class_stat")
#: Rough cost of analysing one checkpoint, in training steps of the same run (for the progress bar's
#: estimate of the time left). Measured in the cold default build of ``python -m classsel.bench --only
#: book`` (AVX2 code paths; the analyses two at a time after the training): the median time between an
#: analysis's tables over the median training step of its architecture.
#: ResNet: ablation 20.5 s = 112 steps of 0.183 s, CKA 1.3 s = 7 steps; VGG 88 and 8; ViT 135 and 5.
ANALYSIS_COST = {"ablation": 110, "cka": 7}
#: The images per class those ablations read (mnist's whole validation set); an ablation of fewer or more
#: (its ``per_class`` option) costs in proportion.
COST_PER_CLASS = 100


def shared_epochs(a: Config, b: Config) -> int:
    """The number of first epochs in which runs ``a`` and ``b`` (of one seed) compute the same thing:
    the same configuration but for the regulariser's schedule, regularised alike epoch by epoch."""
    ia, ib = identity(a), identity(b)
    if any(ia[k] != ib[k] for k in ia if k not in SCHEDULE) or a.seed != b.seed:
        return 0
    for epoch in range(min(a.epochs, b.epochs)):
        on = a.regularizes(epoch)
        if on != b.regularizes(epoch) or (on and (a.alpha, a.reg_modules, a.class_stat)
                                          != (b.alpha, b.reg_modules, b.class_stat)):
            return epoch
    return min(a.epochs, b.epochs)


def _merge_keep(a: str, b: str) -> str:
    """The union of two keep-lists ("all", "last"/"resume" or epochs)."""
    if "all" in (a, b):
        return "all"
    epochs = {e for v in (a, b) if v not in ("last", "resume") for e in v.split(",")}
    if not epochs:
        return a
    return ",".join(str(e) for e in sorted({int(e) for e in epochs}))


#: The analyses a run's training measures as it goes, in its own evaluation pass, where the plan asks for
#: them (:func:`classsel.experiments.during_training`).
DURING_TRAINING = ("cka",)


@dataclass(frozen=True)
class Training:
    """Train a run (or resume it, or mend it), optionally from a parent's state at an epoch; ``along``:
    the plan's analyses of the run that its training measures (``(kind, epochs, options)`` each)."""

    run: runs.Run
    parent: tuple[runs.Run, int] | None = None
    along: tuple = ()

    kind = "train"

    @property
    def key(self) -> tuple:
        return ("train", self.run.hash, self.run.seed)

    @property
    def after(self) -> tuple:
        return () if self.parent is None else (("train", self.parent[0].hash, self.parent[0].seed),)

    def pending(self) -> bool:
        return not (self.run.done and runs.intact(self.run))

    def cost(self) -> int:
        """Training steps still to run, where known before the run starts."""
        size = train_size(self.run.config)
        if size is None:
            return 0
        per_epoch = size // self.run.config.batch_size
        start = self.parent[1] * per_epoch if self.parent and not self.run.files.checkpoints() else 0
        done = max((s for s, _ in self.run.files.checkpoints()), default=start)
        return max(0, self.run.config.epochs * per_epoch - done)

    def __call__(self, log=print) -> None:
        runs.ensure_run(self.run, log, self.parent, self.along)

    def __str__(self) -> str:
        return f"run {self.run.hash}/seed{self.run.seed}"


@dataclass(frozen=True)
class Analysis:
    """An analysis of a run's checkpoints (:data:`classsel.experiments.ANALYSES`), cached in the run's
    folder; ``epochs`` None: every checkpoint the run keeps."""

    kind: str
    run: runs.Run
    epochs: tuple[float, ...] | None = None
    options: tuple[tuple[str, object], ...] = ()

    @property
    def key(self) -> tuple:
        return (self.kind, self.run.hash, self.run.seed, self.epochs, self.options)

    @property
    def after(self) -> tuple:
        return (("train", self.run.hash, self.run.seed),)

    def pending(self) -> bool:
        from . import experiments

        return not self.run.done or experiments.analysis_pending(self)

    def points(self) -> int:
        from . import experiments

        if self.run.done:
            return len(experiments.epoch_steps(self.run, self.epochs))
        size = train_size(self.run.config)
        evals = self.run.config.epochs + 1 + len(self.run.config.eval_steps) if size else 1
        return evals if self.epochs is None else len(self.epochs)

    def point_cost(self) -> int:
        """The cost of one checkpoint, in training steps (:data:`ANALYSIS_COST`)."""
        per_class = dict(self.options).get("per_class") if self.kind == "ablation" else None
        cost = ANALYSIS_COST[self.kind]
        return cost if per_class is None else max(1, round(cost * per_class / COST_PER_CLASS))

    def cost(self) -> int:
        """Its cost in training steps; none for an analysis that the run's training will measure
        (:data:`DURING_TRAINING`; in a plan, a run is trained with the analyses of it)."""
        if self.kind in DURING_TRAINING and not self.run.done:
            return 0
        return self.point_cost() * self.points()

    def __call__(self, log=print) -> None:
        from . import experiments

        experiments.analyse(self)

    def __str__(self) -> str:
        return f"{self.kind} of run {self.run.hash}/seed{self.run.seed}"


Task = Training | Analysis


class Plan:
    """The tasks of a request, in the order they were declared, one per key."""

    def __init__(self, tasks=()):
        self.tasks: dict[tuple, Task] = {}
        for task in tasks:
            self.add(task)

    def add(self, task: Task) -> None:
        old = self.tasks.get(task.key)
        if isinstance(task, Training) and old is not None:  # one run asked for twice: keep what either keeps
            a, b = old.run.config, task.run.config
            task = Training(runs.Run(dataclasses.replace(
                a, keep_checkpoints=_merge_keep(a.keep_checkpoints, b.keep_checkpoints),
                keep_state=_merge_keep(a.keep_state, b.keep_state)), task.run.seed))
        self.tasks[task.key] = task

    def train(self, config: Config, seeds) -> list[runs.Run]:
        """Add the runs of ``config`` for ``seeds``; returns them."""
        found = [runs.Run(dataclasses.replace(config, seed=int(s)), int(s)) for s in seeds]
        for run in found:
            self.add(Training(run))
        return found

    def analyse(self, kind: str, run: runs.Run, epochs=None, **options) -> None:
        self.add(Analysis(kind, run, None if epochs is None else tuple(epochs), tuple(sorted(options.items()))))

    def update(self, other: Plan) -> Plan:
        for task in other.tasks.values():
            self.add(task)
        return self

    def __iter__(self):
        return iter(self.tasks.values())

    def __len__(self) -> int:
        return len(self.tasks)

    def runs(self) -> list[runs.Run]:
        return [t.run for t in self if isinstance(t, Training)]

    def linked(self) -> Plan:
        """The plan with each run started from an earlier run of the plan that trains alike for its
        first epochs (the one that shares most; the parent keeps its training state there), and
        measuring as it trains the analyses of it that can be (:data:`DURING_TRAINING`)."""
        trainings = [t for t in self if isinstance(t, Training)]
        along = {t.key: list(t.along) for t in trainings}
        for task in self:
            if isinstance(task, Analysis) and task.kind in DURING_TRAINING and task.after[0] in along:
                spec = (task.kind, task.epochs, task.options)
                if spec not in along[task.after[0]]:
                    along[task.after[0]].append(spec)
        parents: dict[tuple, tuple[runs.Run, int]] = {}
        keep: dict[tuple, set[int]] = {}
        for i, child in enumerate(trainings):
            best = max(((shared_epochs(child.run.config, p.run.config), p) for p in trainings[:i]),
                       key=lambda x: x[0], default=(0, None))
            if best[0] >= 1 and best[0] < child.run.config.epochs:
                parents[child.key] = (best[1].run, best[0])
                keep.setdefault(best[1].key, set()).add(best[0])
        out = Plan()
        for task in self:
            if isinstance(task, Training):
                cfg = task.run.config
                if task.key in keep:  # the checkpoint a child starts from, and its training state
                    extra = ",".join(map(str, sorted(keep[task.key])))
                    cfg = dataclasses.replace(cfg, keep_state=_merge_keep(cfg.keep_state, extra),
                                              keep_checkpoints=_merge_keep(cfg.keep_checkpoints, extra))
                task = Training(runs.Run(cfg, task.run.seed), None, tuple(along[task.key]))
            out.tasks[task.key] = task
        for key, (parent, epoch) in parents.items():
            child = out.tasks[key]
            out.tasks[key] = Training(child.run, (out.tasks[("train", parent.hash, parent.seed)].run, epoch),
                                      child.along)
        return out

    def pending(self) -> list[Task]:
        """The tasks not done yet, in order."""
        return [t for t in self if t.pending()]

    def summary(self) -> str:
        trainings = [t for t in self if isinstance(t, Training)]
        analyses = [t for t in self if isinstance(t, Analysis)]
        return (f"{len(trainings)} run{'s' * (len(trainings) != 1)} and "
                f"{len(analyses)} {'analysis' if len(analyses) == 1 else 'analyses'}")


def in_order(tasks: list[Task]) -> list[Task]:
    """The order the workers take ``tasks`` in: the runs as declared (a run's branches come after it),
    then the analyses, the costliest first. A worker takes the first task whose runs have ended, so
    analyses fill the gaps training leaves; and with the long ones first, the last to end are short
    ones, and no worker idles long while the other finishes (the analyses of the default book: 344 s
    in the order the sections declare them, 335 s costliest first, in a simulation with their
    measured times on two workers)."""
    trainings = [t for t in tasks if isinstance(t, Training)]
    analyses = sorted((t for t in tasks if not isinstance(t, Training)), key=lambda t: -t.cost())
    return trainings + analyses


def fulfil(plan: Plan, jobs: int | None = None, log=print, progress: bool = True) -> None:
    """Do every task of ``plan`` that is not done: missing runs trained (branched where they can be),
    analyses computed, ``jobs`` processes at once (default: one per core share or GPU; ``jobs=1``:
    here, one after the other). Raises :class:`classsel.parallel.RunsFailed` after the others ended
    if any task failed."""
    from . import parallel

    plan = plan.linked()
    todo = in_order(plan.pending())
    jobs = parallel.check_jobs(jobs, [t.run for t in todo])  # a bad value is refused even with nothing to do
    for run in {r.hash: r for r in plan.runs()}.values():
        runs.record_configuration(run)
    if todo:
        parallel.run_tasks(todo, jobs, log, progress=progress)
