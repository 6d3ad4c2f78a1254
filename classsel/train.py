"""A training run: the paper's recipe, measured at every evaluation point, resumable.

One loop for every scale: CPU or CUDA, one process or many under ``torchrun``
(DDP: gloo on CPU, NCCL on GPU). At epoch 0 (the initialised network), at every
``eval_steps`` point and after every epoch, the validation set is measured once
(:func:`classsel.selectivity.measure`: SI of every unit, accuracy, prediction counts)
and a checkpoint is written. What a run writes in its folder:

- ``config.json``: the resolved configuration, library versions, git commit, device;
- ``metrics.csv``: one row per evaluation point;
- ``si/stepNNNNNNNN.csv.gz``: SI of every unit; ``predictions/stepNNNNNNNN.csv``:
  predicted-class counts;
- ``checkpoints/stepNNNNNNNN.pt``: model, optimiser, scheduler, RNG states, metrics.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import io
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from . import checkpoint as ckpt
from . import data
from .config import Config, config_hash, identity, keep_epochs
from .models import MODULES, build
from .regularizer import Schedule, SelectivityRegularizer
from .representation import top_k_mean
from .selectivity import measure

METRICS = "metrics.csv"


class RunLocked(RuntimeError):
    pass


@contextlib.contextmanager
def run_lock(folder: Path):
    """Hold an exclusive lock on ``folder`` (released by the OS if the process dies)."""
    folder.mkdir(parents=True, exist_ok=True)
    f = open(folder / ".lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        raise RunLocked(f"{folder} is being trained by another process (pid {holder}); wait for it or stop it") from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    try:
        yield
    finally:
        f.close()


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
    if cfg.device == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    else:
        name = cfg.device
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
    """config.json: what ran, with what, where."""
    import torchvision

    return {
        "config": dataclasses.asdict(cfg),
        "hash": config_hash(cfg),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "torchvision": torchvision.__version__, "classsel": _version()},
        "git_commit": _git_commit(),
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "world_size": world,
        "host": platform.node(),
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("classsel")
    except PackageNotFoundError:
        return "unknown"


def _write_table(df: pd.DataFrame, path: Path) -> None:
    buf = io.BytesIO()
    df.to_csv(buf, index=False, compression={"method": "gzip", "mtime": 0} if path.suffix == ".gz" else None)
    ckpt.atomic_write(path, buf.getvalue())


def _prune(folder: Path, keep, steps_per_epoch: int) -> None:
    found = ckpt.list_checkpoints(folder)
    if keep == "all" or not found:
        return
    newest = found[-1][0]
    for step, path in found:
        if step == newest:
            continue
        if keep == "last" or step % steps_per_epoch or step // steps_per_epoch not in keep:
            path.unlink(missing_ok=True)


def train(cfg: Config, out: str | os.PathLike, resume: bool = False, log=print) -> pd.DataFrame:
    """Train one run into ``out``; returns its metrics table. See the module docstring."""
    rank, world, owns_group = _dist()
    try:
        lock = run_lock(Path(out)) if rank == 0 else contextlib.nullcontext()
        with lock:
            return _train(cfg, Path(out), resume, rank, world, log if rank == 0 else (lambda *a: None))
    finally:
        if owns_group:
            torch.distributed.destroy_process_group()


def _train(cfg: Config, out: Path, resume: bool, rank: int, world: int, log) -> pd.DataFrame:
    device = _device(cfg)
    cuda = device.type == "cuda"
    amp = cfg.amp == "bf16" or (cfg.amp == "auto" and cuda)
    channels_last = cfg.channels_last == "on" or (cfg.channels_last == "auto" and cuda)
    if cfg.batch_size % world:
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by the {world} processes")

    # Data and model.
    kw = {"image_size": cfg.image_size} if cfg.dataset == "imagefolder" else {}
    train_ds = data.load(cfg.dataset, "train", cfg.data_root, **kw, **_per_class(cfg, cfg.per_class))
    val_ds = data.load(cfg.dataset, "val", cfg.data_root, **kw, **_per_class(cfg, cfg.val_per_class))
    classes = train_ds.num_classes
    in_channels = train_ds[0][0].shape[0]
    torch.manual_seed(cfg.seed)
    model = build(cfg.arch, classes, width=cfg.width, in_channels=in_channels).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step or 10**9, gamma=0.1)
    schedule = Schedule(cfg.alpha, cfg.reg_start, cfg.reg_stop, cfg.reg_modules, cfg.class_stat)
    reg = SelectivityRegularizer(model, classes, cfg.reg_modules, cfg.class_stat)
    train_loader = data.loader(train_ds, cfg.batch_size // world, train=True, seed=cfg.seed,
                               workers=cfg.workers, distributed=world > 1)
    val_loader = data.loader(val_ds, cfg.eval_batch_size, train=False, workers=cfg.workers, distributed=world > 1)
    per_epoch = len(train_loader)
    total = cfg.epochs * per_epoch
    evals = sorted({e * per_epoch for e in range(cfg.epochs + 1)} | {s for s in cfg.eval_steps if s < total})

    # Start or resume.
    folders = {name: out / name for name in ("checkpoints", "si", "predictions")}
    if rank == 0:
        for f in folders.values():
            f.mkdir(parents=True, exist_ok=True)
    state = ckpt.newest_valid(folders["checkpoints"], device, log) if resume else None
    if state is None and ckpt.list_checkpoints(folders["checkpoints"]) and not resume:
        raise FileExistsError(f"{out} already holds a run; pass resume=True (--resume) to continue it")
    if state is not None:
        saved = state["identity"]
        if saved != identity(cfg):
            diff = sorted(k for k in set(saved) | set(identity(cfg)) if saved.get(k) != identity(cfg).get(k))
            raise ValueError(f"{out} holds a run with another configuration (differs in {diff})")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        ckpt.set_rng_state(state["rng"])
        step, rows = state["step"], list(state["rows"])
        log(f"resuming {out} at step {step} (epoch {step / per_epoch:.2f})")
    else:
        step, rows = 0, []
    if rank == 0:
        ckpt.atomic_write(out / "config.json", json.dumps(describe(cfg, device, world), indent=2).encode())
        if rows:
            _write_table(pd.DataFrame(rows), out / METRICS)

    def evaluate(running):
        """Measure the validation set, write the tables, then the checkpoint."""
        t0 = time.perf_counter()
        result = measure(model, val_loader, classes, device)
        means = result.module_means()
        n = max(running["batches"], 1)
        row = {
            "epoch": step / per_epoch, "step": step,
            "train_loss": running["loss"].item() / n if running["batches"] else float("nan"),
            "train_acc1": running["correct"].item() / max(running["samples"], 1) if running["batches"] else float("nan"),
            "mu_si": running["mu_si"].item() / running["reg_batches"] if running["reg_batches"] else float("nan"),
            "lr": running["lr"],
            "val_acc1": result.acc1, "val_acc5": result.acc5,
            **{f"si_{m}": means.get(m, float("nan")) for m in MODULES},
            "top5_count": top_k_mean(result.prediction_counts, min(5, classes)),
            "train_seconds": running["seconds"], "eval_seconds": time.perf_counter() - t0,
        }
        rows.append(row)
        if rank == 0:
            tag = f"step{step:08d}"
            units = result.to_frame().assign(step=step, epoch=row["epoch"])
            _write_table(units, folders["si"] / f"{tag}.csv.gz")
            counts = pd.DataFrame({"step": step, "epoch": row["epoch"], "class": range(classes),
                                   "count": result.prediction_counts.numpy()})
            _write_table(counts, folders["predictions"] / f"{tag}.csv")
            _write_table(pd.DataFrame(rows), out / METRICS)
            ckpt.atomic_save(
                {"step": step, "model": model.state_dict(), "optimizer": opt.state_dict(),
                 "scheduler": sched.state_dict(), "rng": ckpt.rng_state(), "rows": rows,
                 "identity": identity(cfg)},
                ckpt.checkpoint_path(folders["checkpoints"], step),
            )
            _prune(folders["checkpoints"], keep_epochs(cfg), per_epoch)
        return row

    def fresh():
        zero = lambda: torch.zeros((), device=device, dtype=torch.float64)  # noqa: E731
        return {"loss": zero(), "correct": zero(), "mu_si": zero(), "bad": torch.full((), -1, device=device),
                "batches": 0, "samples": 0, "reg_batches": 0, "seconds": 0.0, "lr": opt.param_groups[0]["lr"]}

    running = fresh()
    if step == 0 and not rows:
        evaluate(running)
    bar = _progress(cfg, rank, total, step)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)
    while step < total:
        epoch, start = divmod(step, per_epoch)
        data.set_epoch(train_loader, epoch, start)
        active = schedule.active(epoch)
        net.train()
        t0 = time.perf_counter()
        for images, labels in train_loader:
            images = images.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            labels = labels.to(device, non_blocking=True)
            with autocast, (reg if active else contextlib.nullcontext()):
                logits = net(images)
                loss = F.cross_entropy(logits, labels)
                term = reg.mu_si(labels) if active else None
            objective = loss - cfg.alpha * term if active else loss
            opt.zero_grad(set_to_none=True)
            objective.backward()
            opt.step()
            step += 1
            # Accumulate on the device; read back only at evaluation points.
            running["loss"] += loss.detach()
            running["correct"] += (logits.detach().argmax(1) == labels).sum()
            running["bad"] = torch.where((running["bad"] < 0) & ~torch.isfinite(objective.detach()),
                                         step, running["bad"])
            running["batches"] += 1
            running["samples"] += len(labels)
            if active:
                running["mu_si"] += term.detach()
                running["reg_batches"] += 1
            bar.update(1)
            if step in evals or step % 50 == 0:
                _check_finite(running["bad"], out)
            if step in evals:
                if step % per_epoch == 0:
                    sched.step()
                running["seconds"] += time.perf_counter() - t0
                row = evaluate(running)
                bar.set_postfix(loss=f"{row['train_loss']:.3f}", acc=f"{row['val_acc1']:.3f}")
                running, t0 = fresh(), time.perf_counter()
                net.train()
    bar.close()
    if rank == 0:
        ckpt.atomic_write(out / "DONE", json.dumps({"step": step, "epochs": cfg.epochs}).encode())
    return pd.DataFrame(rows)


def _per_class(cfg: Config, n):
    return {"per_class": n} if cfg.dataset == "mnist5k" and n else {}


def _check_finite(bad: torch.Tensor, out: Path) -> None:
    first = int(bad.item())
    if first >= 0:
        raise FloatingPointError(
            f"the loss became NaN or infinite at step {first}; the run in {out} stopped there. "
            "Its files up to the last checkpoint are intact (resume continues from it)."
        )


def _progress(cfg: Config, rank: int, total: int, step: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=step, desc=f"train {cfg.preset} seed {cfg.seed}", unit="step",
                disable=not cfg.progress or rank != 0, dynamic_ncols=True)
