"""The runs each paper section needs, and analyses measured over them (ablation and CKA
over checkpoints, cached in the run store). Statistics are in :mod:`classsel.stats`."""

from __future__ import annotations

import io

import pandas as pd

from . import runs
from .config import CKA_LAYERS, keep_epochs, layout
from .layout import atomic_write
from .manifest import sha256
from .params import Setting
from .progress import progress_bar


# ----------------------------------------------------------------------------- runs


def baseline(setting: Setting, seeds, jobs: int | None = None) -> list[runs.Run]:
    """The unregularised runs; every section that needs a baseline shares them."""
    return runs.ensure(setting.config(), seeds, jobs=jobs)


def conditions(setting: Setting, seeds, fields: dict[str, dict],
               jobs: int | None = None) -> dict[str, list[runs.Run]]:
    """The runs of many conditions at once, their missing runs trained in one pool of ``jobs``
    processes: ``fields`` maps each condition's name to its configuration fields (``{}`` for the
    baseline; e.g. ``dict(alpha=-20.0, reg_start=0, reg_stop=None)``); ``seeds`` is one list for
    every condition or a dict of lists by name."""
    if isinstance(seeds, dict):
        missing = sorted(set(fields) - set(seeds))
        if missing:
            raise ValueError(f"seeds has no entry for the condition(s) {missing}: expected a list of seeds "
                             f"for each of {list(fields)}, or one list for all")
    requests = [(setting.config(**f), seeds[name] if isinstance(seeds, dict) else seeds)
                for name, f in fields.items()]
    return dict(zip(fields, runs.ensure_all(requests, jobs=jobs)))


def provenance(all_runs: list[runs.Run]) -> str:
    """One line for a caption: preset, seeds, epochs and configuration hashes."""
    cfgs = {r.hash: r.config for r in all_runs}
    first = next(iter(cfgs.values()))
    seeds = sorted({r.seed for r in all_runs})
    return (f"preset {first.preset}, seeds {seeds}, {first.epochs} epochs, "
            f"run configurations {', '.join(sorted(cfgs))}")


def val_loader(run: runs.Run, batch_size: int | None = None, per_class: int | None = None):
    """The run's validation images in order, or the first ``per_class`` of each class."""
    from . import data  # torch: only where a network is evaluated

    cfg = run.config
    ds = data.per_class(data.for_config(cfg, "val"), per_class)
    return data.loader(ds, batch_size or cfg.eval_batch_size, train=False, workers=cfg.workers), ds.num_classes


def kept_steps(run: runs.Run) -> list[int]:
    """The evaluation points whose checkpoint the run keeps (its ``keep_checkpoints``)."""
    m = run.metrics()
    steps, last = m["step"].tolist(), int(m["step"].iloc[-1])
    per_epoch = round(last / m["epoch"].iloc[-1])
    return [s for s in steps if keeps(run.config, s, per_epoch, last)]


def keeps(cfg, step: int, per_epoch: int, last: int) -> bool:
    """Whether a run of ``cfg`` keeps the checkpoint of its evaluation point ``step`` (``last``: its
    final step)."""
    keep = keep_epochs(cfg)
    return keep == "all" or step == last or (keep != "last" and step % per_epoch == 0 and step // per_epoch in keep)


def nearest_steps(steps, epochs_of_steps, epochs) -> list[int]:
    """The step nearest each of ``epochs`` (the earlier one on a tie), each once, in the order of
    ``epochs``; ``steps`` ascending, with their epochs."""
    out = []
    for e in epochs:
        distances = [abs(x - e) for x in epochs_of_steps]
        out.append(int(steps[distances.index(min(distances))]))
    return list(dict.fromkeys(out))


def epoch_steps(run: runs.Run, epochs=None) -> list[int]:
    """The evaluation points of ``run`` nearest the given (possibly fractional) epochs, each one
    that the run keeps a checkpoint of (an error names any other); None: every kept one."""
    kept = kept_steps(run)
    if epochs is None:
        return kept
    m = run.metrics()
    steps = nearest_steps(m["step"].tolist(), m["epoch"].tolist(), epochs)
    missing = sorted(set(steps) - set(kept))
    if missing:
        raise ValueError(
            f"run {run.path} has no checkpoint at step(s) {missing} (keep_checkpoints="
            f"{run.config.keep_checkpoints!r}); choose epochs it kept (steps {kept}) or train it again "
            "with keep_checkpoints='all'")
    return steps


def derived(run: runs.Run, name: str, compute) -> pd.DataFrame:
    """A table computed from a run, cached in the run's folder with its checksum (computed
    again when absent or when it no longer matches its checksum)."""
    path, checksum = run.files.derived(name), run.files.derived_checksum(name)
    if not derived_valid(run, name):
        table = compute()
        path.parent.mkdir(exist_ok=True)
        buf = io.StringIO()
        table.to_csv(buf, index=False)
        atomic_write(path, buf.getvalue().encode())
        atomic_write(checksum, sha256(path).encode())
    # read back exactly in both cases, so a cached table gives the same numbers as a fresh one
    return pd.read_csv(path, float_precision="round_trip")


def derived_valid(run: runs.Run, name: str) -> bool:
    """Whether the derived table ``name`` of ``run`` is cached and matches its checksum."""
    path, checksum = run.files.derived(name), run.files.derived_checksum(name)
    return path.exists() and checksum.exists() and checksum.read_text().strip() == sha256(path)


def over_training(all_runs, epochs, name, compute, desc: str, progress: bool = True) -> pd.DataFrame:
    """``compute(run, step)`` at every chosen checkpoint of every run, cached as the derived table
    ``name(step)``, in one long table with seed, step, epoch and config columns."""
    tables = []
    work = [(r, s) for r in all_runs for s in epoch_steps(r, epochs)]
    for run, step in progress_bar(work, desc=desc, enabled=progress, task=True):
        table = derived(run, name(step), lambda: compute(run, step))
        epoch = float(run.metrics().set_index("step").loc[step, "epoch"])
        tables.append(table.assign(seed=run.seed, step=step, epoch=epoch, config=run.hash))
    return pd.concat(tables, ignore_index=True)


def ablation_over_training(all_runs, epochs, modules=None, levels: int = 6, draws: int = 2,
                           per_class: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Ablation curves of ``modules`` (None: every module of the run's architecture) at every chosen
    checkpoint of every run (Fig. 3), on the first ``per_class`` validation images of each class (None:
    all); the units are ranked by the SI measured on all of them."""
    def compute(run, step):
        from . import ablation

        si = run.si(step)
        chosen = layout(run.config.arch).modules if modules is None else modules
        ks = {m: ablation.default_ks(len(si[f"{m}.0"]), levels) for m in chosen}
        loader = val_loader(run, per_class=per_class)[0]
        return ablation.ablation_curve(run.model(step), loader, list(chosen), si, ks=ks, draws=draws, seed=run.seed)

    return over_training(all_runs, epochs, ablation_name(levels, draws, per_class), compute, "ablation", progress)


def ablation_name(levels: int, draws: int, per_class: int | None = None):
    # all images: the name the tables had before per_class, so stores written then stay valid
    tag = "" if per_class is None else f"_pc{per_class}"
    return lambda step: f"ablation_step{step}_l{levels}_d{draws}{tag}"


def cka_over_training(all_runs, epochs=None, layers=CKA_LAYERS, progress: bool = True) -> pd.DataFrame:
    """CKA between every pair of ``layers`` at every chosen checkpoint, long format (Fig. 5)."""
    def compute(run, step):
        from . import cka

        return _cka_long(cka.cka_matrix(run.model(step), val_loader(run)[0], list(layers)))

    return over_training(all_runs, epochs, cka_name(layers), compute, "CKA", progress)


def _cka_long(matrix: pd.DataFrame) -> pd.DataFrame:
    return matrix.rename_axis("a").reset_index().melt(id_vars="a", var_name="b", value_name="cka")


def cka_name(layers):
    # the paper's layers keep their old name, so stores written before other layer sets stay valid
    tag = "" if tuple(layers) == tuple(CKA_LAYERS) else "_" + "-".join(layers)
    return lambda step: f"cka_step{step}{tag}"


# ----------------------------------------------------------------------------- analyses during training


def during_training(run: runs.Run, analyses):
    """What ``run``'s training measures at its evaluation points besides its own tables: the CKA
    ``analyses`` of a plan (``(kind, epochs, options)`` each, :class:`classsel.plan.Training`'s ``along``),
    at the points each reads, from the evaluation's own pass over the validation set, written as the
    derived tables the analysis writes from the checkpoints (which then finds them done).

    Returns ``at(model, step, evals, per_epoch)`` for :func:`classsel.train.train`: the measurements
    to take at evaluation point ``step`` (each with ``hooks()``, ``end_batch()`` and ``save()``).
    The evaluation already runs the images through the network; the analysis would run them again
    from the checkpoint (the default book: 84 ResNet points, about 1.1 s each against about 0.3 s for
    the Gram matrices alone)."""
    for kind, _, _ in analyses:
        if kind != "cka":
            raise ValueError(f"analysis {kind!r} cannot be measured during training; only 'cka'")

    def at(model, step: int, evals, per_epoch: int) -> list:
        ordered = sorted(evals)
        taken = []
        for _, epochs, options in analyses:
            if epochs is None:
                wanted = keeps(run.config, step, per_epoch, ordered[-1])
            else:
                wanted = step in nearest_steps(ordered, [s / per_epoch for s in ordered], epochs)
            layers = dict(options).get("layers", CKA_LAYERS)
            name = cka_name(layers)(step)
            if wanted and not derived_valid(run, name):  # a resumed run may have measured it already
                taken.append(_CKAAlongside(run, name, model, layers))
        return taken

    return at


class _CKAAlongside:
    """One CKA table measured in a training run's evaluation pass."""

    def __init__(self, run: runs.Run, name: str, model, layers):
        from .cka import Alongside

        self.run, self.name, self.measure = run, name, Alongside(model, list(layers))
        self.hooks, self.end_batch = self.measure.hooks, self.measure.end_batch

    def save(self) -> None:
        derived(self.run, self.name, lambda: _cka_long(self.measure.matrix()))


# ----------------------------------------------------------------------------- analyses as plan tasks

#: Each analysis of :mod:`classsel.plan`: (its function over runs, its cache name from its options).
ANALYSES = {
    "ablation": (lambda rs, epochs, o: ablation_over_training(rs, epochs, **o),
                 lambda o: ablation_name(o.get("levels", 6), o.get("draws", 2), o.get("per_class"))),
    "cka": (lambda rs, epochs, o: cka_over_training(rs, epochs, **o),
            lambda o: cka_name(o.get("layers", CKA_LAYERS))),
}


def analyse(task) -> pd.DataFrame:
    """Compute (or read from the cache) the analysis ``task`` (:class:`classsel.plan.Analysis`)."""
    compute, _ = ANALYSES[task.kind]
    return compute([task.run], None if task.epochs is None else list(task.epochs), dict(task.options))


def analysis_pending(task) -> bool:
    """Whether some table of the analysis ``task`` of a finished run is not cached (or is damaged)."""
    _, name = ANALYSES[task.kind]
    name = name(dict(task.options))
    return not all(derived_valid(task.run, name(step))
                   for step in epoch_steps(task.run, None if task.epochs is None else list(task.epochs)))
