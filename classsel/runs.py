"""The run store: runs kept by configuration, checked, reused, repaired, resumed or trained on demand.

A run lives in ``<store>/<config hash>/seed<S>/`` (:mod:`classsel.layout`). Before a
finished run is used its files are checked against its manifest: a per-unit SI or
prediction table that was removed or changed is measured again from its checkpoint,
``metrics.csv`` is written again from the final checkpoint, and a run whose
checkpoints are damaged is set aside and trained again. Nothing partial is returned.
The missing runs of a request, or of many (:func:`ensure_all`), are trained several at once
(:mod:`classsel.parallel`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from . import layout, manifest
from .config import Config, config_hash, identity
from .layout import RunFiles

if TYPE_CHECKING:
    import torch

# torch (and the modules that build, load or train networks) is imported where a network is: a notebook
# that reads the store's tables never loads it (1.2 s of its kernel's start; 2.6 s where torch has no bytecode)


@dataclass(frozen=True)
class Run:
    config: Config
    seed: int

    @property
    def hash(self) -> str:
        return config_hash(self.config)

    @property
    def files(self) -> RunFiles:
        return layout.run(self.hash, self.seed)

    @property
    def path(self) -> Path:
        return self.files.root

    @property
    def done(self) -> bool:
        return self.files.done.exists()

    def metrics(self) -> pd.DataFrame:
        return pd.read_csv(self.files.metrics, float_precision="round_trip").assign(seed=self.seed, config=self.hash)

    def steps(self) -> list[int]:
        """The run's evaluation points (global steps)."""
        return pd.read_csv(self.files.metrics, usecols=["step"])["step"].tolist()

    def classes(self) -> int:
        """The number of classes of its data: its predicted-class counts have a row for every class."""
        return len(pd.read_csv(self.files.predictions(self.steps()[0]), usecols=["class"]))

    def units(self) -> pd.DataFrame:
        """SI of every unit at every evaluation point."""
        tables = [pd.read_csv(self.files.si(s)) for s in self.steps()]
        return pd.concat(tables, ignore_index=True).assign(seed=self.seed, config=self.hash)

    def si(self, step: int) -> dict[str, torch.Tensor]:
        """SI per unit of every block at evaluation point ``step``: {"layer3.2": [units]}."""
        import torch

        units = pd.read_csv(self.files.si(step)).sort_values(["block", "unit"], kind="stable")
        return {f"{m}.{b}": torch.tensor(g.si.to_numpy()) for (m, b), g in units.groupby(["module", "block"], sort=False)}

    def predictions(self) -> pd.DataFrame:
        tables = [pd.read_csv(self.files.predictions(s)) for s in self.steps()]
        return pd.concat(tables, ignore_index=True).assign(seed=self.seed, config=self.hash)

    def checkpoint_steps(self) -> list[int]:
        return [s for s, _ in self.files.checkpoints()]

    @property
    def imported(self) -> bool:
        """Whether the run came from a results pack (:mod:`classsel.pack`), which holds no checkpoints."""
        return self.files.imported.exists()

    def model(self, step: int, device="cpu") -> torch.nn.Module:
        """The network as it was at evaluation point ``step``, in eval mode (its file checked
        against the manifest first)."""
        path = self.files.checkpoint(step)
        if not path.exists() and self.imported:
            from .__main__ import train_command

            raise ValueError(
                f"run {self.hash}/seed{self.seed} has no checkpoint at step {step} "
                f"({self.files.relative(path)}), which this needs: the run was imported from a results pack, "
                f"which holds no checkpoints. To get it, train the run: remove the folder {self.path}, then "
                "execute the notebook again (the run store trains the missing run) or run "
                f"`{train_command(self.config, self.seed, self.path)}`")
        if not path.exists():
            raise ValueError(f"no checkpoint at step {step} in {self.path}; available: {self.checkpoint_steps()}")
        from . import checkpoint as ckpt

        manifest.check_file(self.files, path)
        return _model(self.config, ckpt.load(path, device)["model"], device)


def _model(cfg: Config, weights: dict, device="cpu") -> torch.nn.Module:
    """The network of ``weights`` on ``device``, in eval mode and in the memory format its run was
    trained and evaluated in (the last bits of an analysis depend on it)."""
    import torch

    from .models import build, describe

    shape = describe(cfg.arch).shape_of(weights)
    model = build(cfg.arch, shape.pop("num_classes"), width=cfg.width, **shape)
    model.load_state_dict(weights)
    model = model.to(device).eval()
    if cfg.uses_channels_last(torch.device(device).type):
        model = model.to(memory_format=torch.channels_last)
    return model


def ensure(config: Config, seeds, log=print, jobs: int | None = None) -> list[Run]:
    """The runs of ``config`` for ``seeds``: finished ones checked and reused (repaired where
    damaged), partial ones resumed, missing ones trained, ``jobs`` at once (see :func:`ensure_all`).
    A run another process is training is waited for, then reused."""
    return ensure_all([(config, seeds)], jobs=jobs, log=log)[0]


def ensure_all(requests: list[tuple[Config, list[int]]], jobs: int | None = None,
               log=print) -> list[list[Run]]:
    """The runs of every ``(config, seeds)`` request, as :func:`ensure` gives them, with the missing
    runs of all requests trained in one pool of ``jobs`` processes (default: one per share of the
    CPU cores, or one per GPU; :mod:`classsel.parallel`). ``jobs=1``, or a single run to train:
    trained here, one after the other. A failed run does not stop the others; once they end,
    :class:`classsel.parallel.RunsFailed` names every failed run, its seed, hash and log."""
    from .plan import Plan, fulfil

    plan = Plan()
    wanted = [plan.train(config, seeds) for config, seeds in requests]
    fulfil(plan, jobs=jobs, log=log, progress=any(r.config.progress for rs in wanted for r in rs))
    return wanted


def record_configuration(run: Run) -> None:
    """The identity file shared by every seed of the run's configuration, written once."""
    shared = layout.configuration(run.hash)
    if not shared.exists():
        shared.parent.mkdir(parents=True, exist_ok=True)
        layout.atomic_write(shared, json.dumps(identity(run.config), indent=2, default=str).encode())


def ensure_run(run: Run, log=print, parent: tuple[Run, int] | None = None, along=()) -> None:
    """Make ``run`` finished and intact, under its lock (waiting for another process that holds
    it): repaired from its checkpoints where it can be, else resumed or trained. ``parent``, a
    finished run and an epoch up to which the two train alike (:func:`classsel.plan.shared_epochs`):
    a new run starts from the parent's state there instead of from scratch. ``along``: analyses
    measured as it trains (:func:`classsel.experiments.during_training`)."""
    from .train import run_lock, train

    with run_lock(run.files.root, wait=True, log=log):
        resume = before_training(run, log, parent)
        if resume is not None:
            from .experiments import during_training

            train(run.config, run.files.root, resume=resume, log=log, lock=False,
                  along=during_training(run, along) if along else None)


def before_training(run: Run, log=print, parent: tuple[Run, int] | None = None) -> bool | None:
    """What :func:`ensure_run` does before it trains (call under ``run``'s lock): None when the run is
    finished (and intact, or mended), else whether training resumes, after the new run was laid out
    from ``parent`` where it can be."""
    if run.done and repair(run, log):
        return None
    if parent is not None and not run.files.checkpoints() and parent[0].done:
        branch(run, *parent, log=log)
    partial = bool(run.files.checkpoints())
    log(f"{'resuming' if partial else 'training'} run {run.hash}/seed{run.seed} in {run.path}")
    return partial


def branch(run: Run, parent: Run, epoch: int, log=print) -> bool:
    """Lay ``parent``'s first ``epoch`` epochs into the new run's folder, as if ``run`` had trained
    them: its checkpoints and tables up to that point, the last one with the parent's training
    state and ``run``'s identity. Training on from there gives what training from scratch would,
    to the bit, when the two runs train alike until then. False (nothing written) when the parent
    kept no training state at that epoch. Call under ``run``'s lock."""
    from . import checkpoint as ckpt

    metrics = parent.metrics()
    at = metrics.loc[metrics.epoch == epoch, "step"]
    path = parent.files.checkpoint(int(at.iloc[0])) if len(at) else None
    state = ckpt.load(path) if path is not None and path.exists() else None
    if state is None or not ckpt.has_training_state(state):
        log(f"run {parent.hash}/seed{parent.seed} kept no training state at epoch {epoch}: training "
            f"{run.hash}/seed{run.seed} from the start")
        return False
    step, files = state["step"], run.files
    for folder in files.folders():
        folder.mkdir(parents=True, exist_ok=True)
    for earlier in [r["step"] for r in state["rows"]]:
        for source, target in ((parent.files.si(earlier), files.si(earlier)),
                               (parent.files.predictions(earlier), files.predictions(earlier))):
            ckpt.atomic_write(target, source.read_bytes())
    for earlier, source in parent.files.checkpoints():  # the weights of earlier points (the run's pruning keeps its own)
        if earlier < step:
            weights = {k: v for k, v in ckpt.load(source).items() if k not in ckpt.TRAINING_STATE}
            ckpt.atomic_save({**weights, "identity": identity(run.config)}, files.checkpoint(earlier))
    ckpt.atomic_save({**state, "identity": identity(run.config)}, files.checkpoint(step))
    log(f"run {run.hash}/seed{run.seed} trains as run {parent.hash}/seed{parent.seed} until epoch {epoch}: "
        f"starting from its checkpoint at step {step}")
    return True


def intact(run: Run) -> bool:
    """Whether a finished run's files match its manifest, by their content (:func:`classsel.manifest.check`)."""
    return run.files.manifest.exists() and not manifest.check(run.files, _expected(run))


def _expected(run: Run) -> dict[str, dict]:
    """The manifest's entries the run must have: all of them, but the checkpoints of a run
    imported from a results pack (which leaves them out)."""
    entries = manifest.read(run.files)
    return run.files.without_checkpoints(entries) if run.imported else entries


def repair(run: Run, log=print) -> bool:
    """Check a finished run against its manifest and mend what can be mended: tables measured
    again from their checkpoints, metrics.csv from the final checkpoint. False when the run must
    be trained again (its damaged folder is set aside first). Call under the run's lock."""
    files = run.files
    if not files.manifest.exists():  # finished before runs had manifests: record them as they are
        log(f"recording the manifest of {run.path}")
        manifest.write(files)
        return True
    entries = _expected(run)
    problems = manifest.check(files, entries)
    if not problems:
        return True
    origin = " (imported from a results pack: no checkpoints to mend it from)" if run.imported else ""
    log(f"run {run.path} is damaged{origin}: {'; '.join(map(str, problems))}")
    mendable = all(p.path == files.metrics or p.path.parent in (files.si_dir, files.predictions_dir)
                   for p in problems)
    checkpoints = dict(files.checkpoints())
    final = max(checkpoints, default=None)
    needed = {final} | {_step_of(p.path) for p in problems if p.path != files.metrics}
    if mendable and needed <= set(checkpoints) and not manifest.check(
            files, {files.relative(checkpoints[s]): entries[files.relative(checkpoints[s])] for s in needed}):
        _measure_again(run, problems, checkpoints, final, log)
        left = manifest.check(files, entries)
        if not left:
            return True
        log(f"measured again, but {'; '.join(map(str, left))} (another machine's arithmetic): recording the new files")
        manifest.write(files)
        return True
    aside = files.root.with_name(f"{files.root.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    log(f"cannot mend it from its checkpoints: moving it to {aside} and training the run again")
    files.root.rename(aside)
    files.root.mkdir()
    return False


def _step_of(path: Path) -> int | None:
    m = layout.STEP.match(path.name)
    return int(m.group(1)) if m else None


def _measure_again(run: Run, problems, checkpoints: dict, final: int, log) -> None:
    from . import checkpoint as ckpt
    from . import data
    from .models import describe
    from .selectivity import measure
    from .train import write_measurement

    files = run.files
    state = ckpt.load(checkpoints[final])
    rows = pd.DataFrame(state["rows"])
    if any(p.path == files.metrics for p in problems):
        log(f"writing {files.metrics} again from {checkpoints[final]}")
        ckpt.write_table(rows, files.metrics)
    val = data.loader(data.for_config(run.config, "val"), run.config.eval_batch_size, train=False)
    for step in sorted({s for p in problems if (s := _step_of(p.path)) is not None}):
        log(f"measuring step {step} of {run.path} again from its checkpoint")
        model = _model(run.config, ckpt.load(checkpoints[step])["model"])
        result = measure(model, val, describe(model).num_classes(model))
        write_measurement(files, step, float(rows.set_index("step").loc[step, "epoch"]), result)


def _label(run: Run, columns) -> dict:
    return {c: (",".join(v) if isinstance(v := getattr(run.config, c), tuple) else v) for c in columns}


LABELS = ("alpha", "reg_start", "reg_stop", "reg_modules", "class_stat", "preset")


def load_metrics(runs: list[Run], labels=LABELS) -> pd.DataFrame:
    """Metrics of many runs in one tidy table, with seed, config hash and label columns."""
    return pd.concat([r.metrics().assign(**_label(r, labels)) for r in runs], ignore_index=True)


def load_units(runs: list[Run], labels=LABELS) -> pd.DataFrame:
    """Per-unit SI of many runs in one tidy table."""
    return pd.concat([r.units().assign(**_label(r, labels)) for r in runs], ignore_index=True)


def load_predictions(runs: list[Run], labels=LABELS) -> pd.DataFrame:
    return pd.concat([r.predictions().assign(**_label(r, labels)) for r in runs], ignore_index=True)
