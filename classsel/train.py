"""A training run: the paper's recipe, measured at every evaluation point, resumable.

One loop for every scale: CPU or CUDA, one process or many under ``torchrun``
(DDP: gloo on CPU, NCCL on GPU). At epoch 0 (the initialised network), at every
``eval_steps`` point and after every epoch, the validation set is measured once
(:func:`classsel.selectivity.measure`: SI of every unit, accuracy, prediction counts)
and a checkpoint is written. :mod:`classsel.layout` names the files a run writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from . import checkpoint as ckpt
from . import data, manifest, pipeline, recipe
from .config import DATASETS, Config, config_hash, identity, input_side, keep_epochs, layout, state_epochs
from .layout import RunFiles, check_out
from .lockfile import lock_hash
from .models import build
from .progress import progress_bar
from .regularizer import SelectivityRegularizer, regularized_loss
from .representation import top_k_mean
from .selectivity import measure


class RunLocked(RuntimeError):
    pass


@contextlib.contextmanager
def run_lock(folder: str | os.PathLike, wait: bool = False, log=print):
    """Hold an exclusive lock on the run in ``folder`` (released by the OS if the process dies).

    Held by another process: wait for it (``wait=True``, saying so) or raise :class:`RunLocked`."""
    files = RunFiles(folder)
    files.root.mkdir(parents=True, exist_ok=True)
    f = open(files.lock, "a+")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            if not wait:
                raise RunLocked(f"{files.root} is being trained by another process (pid {holder}); "
                                "wait for it or stop it") from None
            log(f"waiting for process {holder}, which is training the run in {files.root}")
            fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        yield
    finally:
        f.close()


def train(cfg: Config, out: str | os.PathLike, resume: bool = False, log=print, lock: bool = True,
          along=None) -> pd.DataFrame:
    """Train one run into ``out``; returns its metrics table. ``lock=False``: the caller holds
    :func:`run_lock`. Everything is checked before the first file is written. ``along``: what else to
    measure in the evaluation pass at each point, in one process
    (:func:`classsel.experiments.during_training`; under torchrun the analyses do it afterwards)."""
    rank, world, owns_group = _dist()
    try:
        check_out(cfg, out, resume)
        setup = set_up(cfg, world)
        held = run_lock(out) if rank == 0 and lock else contextlib.nullcontext()
        try:
            with held:
                return _run(cfg, setup, RunFiles(out), resume, rank, log if rank == 0 else (lambda *a: None),
                            along if world == 1 else None)
        finally:  # the loaders' worker processes, now (see data.close)
            data.close(setup.train_loader)
            data.close(setup.val_loader)
    finally:
        if owns_group:
            torch.distributed.destroy_process_group()


# ----------------------------------------------------------------------------- set-up


@dataclass
class Setup:
    """Everything a run trains with, built from its configuration."""

    device: torch.device
    amp: bool
    channels_last: bool
    world: int
    model: torch.nn.Module
    net: torch.nn.Module  # the model, wrapped in DDP under torchrun
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    per_step: bool  # the schedule steps after every training step, not at the end of each epoch
    reg: SelectivityRegularizer
    train_loader: torch.utils.data.DataLoader
    val_loader: torch.utils.data.DataLoader
    classes: int
    per_epoch: int
    evals: set[int]

    @property
    def total(self) -> int:
        return max(self.evals)


def set_up(cfg: Config, world: int = 1) -> Setup:
    device = _device(cfg)
    cuda = device.type == "cuda"
    if cfg.batch_size % world:
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by the {world} processes")
    train_ds, val_ds = data.for_config(cfg, "train"), data.for_config(cfg, "val")
    if cfg.batch_size > len(train_ds):
        raise ValueError(f"batch_size={cfg.batch_size} is not valid: expected at most the {len(train_ds)} "
                         f"training images of {cfg.dataset}")
    classes = train_ds.num_classes
    check_memory(cfg, classes, device)
    torch.manual_seed(cfg.seed)
    model = build(cfg.arch, classes, width=cfg.width, in_channels=DATASETS[cfg.dataset],
                  image_size=input_side(cfg)).to(device)
    channels_last = cfg.uses_channels_last(device.type)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = recipe.optimizer(cfg, model.parameters())
    train_loader = pipeline.train_loader(train_ds, cfg.batch_size // world, seed=cfg.seed, workers=cfg.workers,
                                         distributed=world > 1, pipeline=cfg.pipeline, device=device,
                                         image_size=cfg.image_size, bad_images=cfg.bad_images)
    per_epoch = len(train_loader)
    total = cfg.epochs * per_epoch
    beyond = [s for s in cfg.eval_steps if s >= total]
    if beyond:
        raise ValueError(f"eval_steps={list(cfg.eval_steps)} is not valid: {beyond} at or past the run's "
                         f"last step {total} ({cfg.epochs} epochs of {per_epoch} steps)")
    return Setup(
        device=device, amp=cfg.amp == "bf16" or (cfg.amp == "auto" and cuda), channels_last=channels_last,
        world=world, model=model,
        net=torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model,
        opt=opt, sched=recipe.schedule(cfg, opt, per_epoch), per_step=recipe.per_step(cfg),
        reg=SelectivityRegularizer(model, classes, cfg.reg_modules, cfg.class_stat),
        train_loader=train_loader,
        val_loader=data.loader(val_ds, cfg.eval_batch_size, train=False, workers=cfg.workers,
                               distributed=world > 1),
        classes=classes, per_epoch=per_epoch,
        evals={e * per_epoch for e in range(cfg.epochs + 1)} | set(cfg.eval_steps),
    )


def check_memory(cfg: Config, classes: int, device: torch.device) -> None:
    """Refuse a network whose weights, gradients and momentum alone exceed the device's memory
    (else the allocator fails with a traceback, or the machine swaps)."""
    with torch.device("meta"):  # shapes only: nothing allocated
        params = sum(p.numel() for p in build(cfg.arch, classes, width=cfg.width, in_channels=DATASETS[cfg.dataset],
                                               image_size=input_side(cfg)).parameters())
    need = 3 * 4 * params
    if device.type == "cuda":
        have = torch.cuda.get_device_properties(device).total_memory
    else:
        have = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if need > have:
        raise ValueError(f"width={cfg.width} is not valid here: {cfg.arch} at this width has {params:,} parameters, "
                         f"whose weights, gradients and momentum need {need / 2**30:.1f} GiB, more than the "
                         f"{have / 2**30:.1f} GiB of memory of {device}; expected a smaller width")


def restore(cfg: Config, s: Setup, files: RunFiles, resume: bool, log) -> tuple[int, list[dict]]:
    """The step to start from and the metrics rows so far: a fresh run, or its newest valid checkpoint."""
    found = files.checkpoints()
    state = ckpt.newest_valid(found, s.device, log, resumable=True) if resume else None
    if state is None and found and not resume:
        raise FileExistsError(f"{files.root} already holds a run; pass resume=True (--resume) to continue it")
    if state is None:
        if found:
            log(f"{files.root} has no checkpoint with its training state to resume from: training from the start")
        return 0, []
    saved = state["identity"]
    if saved != identity(cfg):
        diff = sorted(k for k in set(saved) | set(identity(cfg)) if saved.get(k) != identity(cfg).get(k))
        raise ValueError(f"{files.root} holds a run with another configuration (differs in {diff})")
    s.model.load_state_dict(state["model"])
    s.opt.load_state_dict(state["optimizer"])
    s.sched.load_state_dict(state["scheduler"])
    ckpt.set_rng_state(state["rng"])
    log(f"resuming {files.root} at step {state['step']} (epoch {state['step'] / s.per_epoch:.2f})")
    return state["step"], list(state["rows"])


def prepare(cfg: Config, s: Setup, files: RunFiles, rows: list[dict]) -> None:
    """Rank 0, under the lock: clear what an interrupted run left, write config.json, and
    write metrics.csv again from the checkpoint's rows (so it lists no point without one)."""
    for leftover in [*files.temporaries(), files.done, files.manifest]:
        leftover.unlink(missing_ok=True)
    for folder in files.folders():
        folder.mkdir(parents=True, exist_ok=True)
    ckpt.atomic_write(files.config, json.dumps(describe(cfg, s.device, s.world), indent=2).encode())
    if rows:
        ckpt.write_table(pd.DataFrame(rows), files.metrics)


# ----------------------------------------------------------------------------- the loop


class Tally:
    """Training statistics since the last evaluation point, accumulated on the device
    (read back only at evaluation points)."""

    def __init__(self, device: torch.device, lr: float):
        self.loss, self.correct, self.mu_si = (torch.zeros((), device=device, dtype=torch.float64)
                                               for _ in range(3))
        self.first_bad_step = torch.full((), -1, device=device)  # -1: every loss so far finite
        self.batches = self.samples = self.reg_batches = 0
        self.seconds = 0.0
        self.lr = lr

    def add(self, step: int, loss, logits, labels, objective, term) -> None:
        self.loss += loss.detach()
        self.correct += (logits.detach().argmax(1) == labels).sum()
        self.first_bad_step = torch.where((self.first_bad_step < 0) & ~torch.isfinite(objective.detach()),
                                          step, self.first_bad_step)
        self.batches += 1
        self.samples += len(labels)
        if term is not None:
            self.mu_si += term.detach()
            self.reg_batches += 1

    def row(self) -> dict:
        nan = float("nan")
        return {
            "train_loss": self.loss.item() / self.batches if self.batches else nan,
            "train_acc1": self.correct.item() / self.samples if self.batches else nan,
            "mu_si": self.mu_si.item() / self.reg_batches if self.reg_batches else nan,
            "lr": self.lr,
        }


def _run(cfg: Config, s: Setup, files: RunFiles, resume: bool, rank: int, log, along=None) -> pd.DataFrame:
    step, rows = restore(cfg, s, files, resume, log)
    if rank == 0:
        prepare(cfg, s, files, rows)
    tally = Tally(s.device, s.opt.param_groups[0]["lr"])
    if step == 0 and not rows:
        rows.append(evaluate_and_save(cfg, s, files, step, tally, rows, rank, along))
    bar = _progress(cfg, rank, s.total, step)
    autocast = torch.autocast(s.device.type, dtype=torch.bfloat16, enabled=s.amp)
    while step < s.total:
        epoch, start = divmod(step, s.per_epoch)
        data.set_epoch(s.train_loader, epoch, start)
        active = cfg.regularizes(epoch)
        s.net.train()
        t0 = time.perf_counter()
        for images, labels in s.train_loader:
            images = images.to(s.device, non_blocking=True)
            if s.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            labels = labels.to(s.device, non_blocking=True)
            with autocast, (s.reg if active else contextlib.nullcontext()):
                logits = s.net(images)
                loss = F.cross_entropy(logits, labels)
                term = s.reg.mu_si(labels) if active else None
            objective = regularized_loss(loss, term, cfg.alpha) if active else loss
            s.opt.zero_grad(set_to_none=True)
            objective.backward()
            s.opt.step()
            if s.per_step:
                s.sched.step()
            step += 1
            tally.add(step, loss, logits, labels, objective, term)
            bar.update(1)
            if step in s.evals or step % 50 == 0:
                _check_finite(tally.first_bad_step, files.root)
            if step in s.evals:
                if step % s.per_epoch == 0 and not s.per_step:
                    s.sched.step()
                tally.seconds += time.perf_counter() - t0
                rows.append(evaluate_and_save(cfg, s, files, step, tally, rows, rank, along))
                bar.set_postfix(loss=f"{rows[-1]['train_loss']:.3f}", acc=f"{rows[-1]['val_acc1']:.3f}")
                tally, t0 = Tally(s.device, s.opt.param_groups[0]["lr"]), time.perf_counter()
                s.net.train()
    bar.close()
    skipped = getattr(s.train_loader, "skipped", [])
    if skipped:
        log(f"left out {len(skipped)} unreadable training image{'s' * (len(skipped) > 1)} in this session "
            f"(bad_images='skip'), the first {skipped[0].path}")
    if rank == 0:
        _prune(files, keep_epochs(cfg), state_epochs(cfg), s.per_epoch, finished=True)
        manifest.write(files)
        ckpt.atomic_write(files.done, json.dumps({"step": step, "epochs": cfg.epochs}).encode())
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- evaluation points


def evaluate_and_save(cfg: Config, s: Setup, files: RunFiles, step: int, tally: Tally, rows: list[dict],
                      rank: int, along=None) -> dict:
    """Measure the validation set (and what ``along`` adds at this point); write the tables, the
    checkpoint, then metrics.csv. Returns the row."""
    t0 = time.perf_counter()
    extra = along(s.model, step, s.evals, s.per_epoch) if along is not None else []
    try:
        with contextlib.ExitStack() as hooked:
            for m in extra:
                hooked.enter_context(m.hooks())
            result = measure(s.model, s.val_loader, s.classes, s.device,
                             after_batch=(lambda: [m.end_batch() for m in extra]) if extra else None)
    except FloatingPointError as e:
        raise FloatingPointError(f"measuring step {step} of the run in {files.root}: {e}") from None
    means = result.module_means()
    row = {
        "epoch": step / s.per_epoch, "step": step, **tally.row(),
        "val_acc1": result.acc1, "val_acc5": result.acc5,
        **{f"si_{m}": means.get(m, float("nan")) for m in layout(cfg.arch).modules},
        "top5_count": top_k_mean(result.prediction_counts, min(5, s.classes)),
        "train_seconds": tally.seconds, "eval_seconds": time.perf_counter() - t0,
    }
    if rank == 0:
        write_measurement(files, step, row["epoch"], result)
        for m in extra:
            m.save()
        ckpt.atomic_save(
            {"step": step, "model": s.model.state_dict(), "optimizer": s.opt.state_dict(),
             "scheduler": s.sched.state_dict(), "rng": ckpt.rng_state(), "rows": [*rows, row],
             "identity": identity(cfg)},
            files.checkpoint(step),
        )
        ckpt.write_table(pd.DataFrame([*rows, row]), files.metrics)
        _prune(files, keep_epochs(cfg), state_epochs(cfg), s.per_epoch)
    return row


def write_measurement(files: RunFiles, step: int, epoch: float, result) -> None:
    """The per-unit SI and predicted-class counts of one evaluation point."""
    ckpt.write_table(result.to_frame().assign(step=step, epoch=epoch), files.si(step))
    counts = result.prediction_counts
    ckpt.write_table(pd.DataFrame({"step": step, "epoch": epoch, "class": range(len(counts)),
                                   "count": counts.numpy()}), files.predictions(step))


#: Checkpoints that keep their training state while the run trains: the newest, and the one before
#: it (resumed from when the newest is damaged).
RESUMABLE = 2


def _prune(files: RunFiles, keep, state, steps_per_epoch: int, finished: bool = False) -> None:
    """Remove the checkpoints the run does not keep (``keep``), and drop the training state of those
    it keeps but no longer needs to train on from (``state``: "all" or epochs; see
    :func:`classsel.config.state_epochs`): the weights of every analysed point, the optimiser only
    where a resume or a branch starts."""
    found = files.checkpoints()
    if not found:
        return
    newest = found[-1][0]
    for step, path in found:
        if step != newest and keep != "all" and (keep == "last" or step % steps_per_epoch
                                                 or step // steps_per_epoch not in keep):
            path.unlink(missing_ok=True)
    if state == "all":
        return
    found = files.checkpoints()
    # each evaluation point moves one checkpoint out of the resumable window; the end, all of them
    leaving = found[-RESUMABLE:] if finished else found[-RESUMABLE - 1:-RESUMABLE]
    for step, path in leaving:
        if step % steps_per_epoch or step // steps_per_epoch not in state:
            ckpt.drop_training_state(path)


def _check_finite(first_bad_step: torch.Tensor, out: Path) -> None:
    first = int(first_bad_step.item())
    if first >= 0:
        raise FloatingPointError(
            f"the loss became NaN or infinite at step {first}; the run in {out} stopped there. "
            "Its files up to the last checkpoint are intact (resume continues from it)."
        )


def _progress(cfg: Config, rank: int, total: int, step: int):
    return progress_bar(desc=f"train {cfg.preset} seed {cfg.seed}", total=total, initial=step, unit="step",
                        enabled=cfg.progress and rank == 0, task=True, dynamic_ncols=True)


# ----------------------------------------------------------------------------- where it runs


def _dist():
    """(rank, world size, whether we initialised the process group)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, False
    if not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
        return torch.distributed.get_rank(), world, True
    return torch.distributed.get_rank(), world, False


def _device(cfg: Config) -> torch.device:
    name = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device={cfg.device!r} but CUDA is not available here; use --device cpu")
        if name == "cuda":
            name = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(name)
    return torch.device(name)


def _git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def describe(cfg: Config, device: torch.device, world: int) -> dict:
    """config.json: what ran, with what, where (torchvision's version from its installed metadata:
    importing it costs seconds, and a network of the mnist presets never needs it)."""
    return {
        "config": dataclasses.asdict(cfg),
        "hash": config_hash(cfg),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "torchvision": _version("torchvision"), "classsel": _version()},
        "git_commit": _git_commit(),
        "lock_sha256": lock_hash(),  # requirements/lock.txt, the exact versions `make setup` installs
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "world_size": world,
        "host": platform.node(),
    }


def _version(distribution: str = "classsel") -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"
