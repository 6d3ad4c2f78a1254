"""Run configuration: a plain dataclass, named presets, validation.

A run is identified by the fields that change what it computes (see
:data:`EXECUTION_FIELDS` for those that do not), so the same experiment run on
another device or with another number of loader workers is the same run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
import os
from dataclasses import dataclass

from .data import NAMES as DATASETS
from .models import ARCHS, check_modules
from .regularizer import CLASS_STATS


@dataclass
class Config:
    preset: str = "mnist"
    # data
    dataset: str = "mnist5k"
    data_root: str | None = None
    per_class: int | None = None  # mnist5k: keep this many training images per class
    val_per_class: int | None = None  # mnist5k: and this many validation images per class
    image_size: int = 224  # imagefolder crops
    # model
    arch: str = "resnet50_narrow"
    width: int = 16  # resnet50_narrow only
    # optimisation (paper: SGD, lr 0.1 / 10 every 30 epochs, momentum 0.9, wd 1e-4)
    epochs: int = 6
    batch_size: int = 128  # global: split across processes under torchrun
    eval_batch_size: int = 500
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_step: int | None = None  # divide the learning rate by 10 every lr_step epochs
    # the selectivity regulariser (off while alpha == 0)
    alpha: float = 0.0
    reg_start: int = 0
    reg_stop: int | None = None
    reg_modules: tuple[str, ...] = ("layer1", "layer2", "layer3")
    class_stat: str = "mean"
    # evaluation points besides epoch 0 and every epoch end (global step numbers)
    eval_steps: tuple[int, ...] = ()
    seed: int = 0
    # execution: these do not change the run's identity
    device: str = "auto"  # auto | cpu | cuda
    amp: str = "auto"  # auto (bf16 on CUDA) | bf16 | off
    channels_last: str = "auto"  # auto (on CUDA) | on | off
    workers: int = 0
    keep_checkpoints: str = "all"  # all | last | comma-separated epochs to keep
    progress: bool = True


EXECUTION_FIELDS = ("preset", "data_root", "device", "amp", "channels_last", "workers", "keep_checkpoints", "progress", "seed")

PRESETS: dict[str, dict] = {
    # seconds: tests and CI (enough steps for BatchNorm's running statistics to settle)
    "smoke": dict(per_class=30, val_per_class=10, width=8, epochs=3, batch_size=30, eval_batch_size=100,
                  lr=0.02, eval_steps=(2,)),
    # minutes on a laptop CPU: embedded MNIST-5k, ResNet-50 layout at width 16; SI peaks
    # within the first ~30 steps, so the first epoch is measured densely
    "mnist": dict(epochs=5, batch_size=64, lr=0.02, eval_steps=(4, 8, 12, 16, 24, 32, 40, 48)),
    # a GPU: CIFAR-10 from torchvision
    "cifar10": dict(dataset="cifar10", width=64, epochs=30, batch_size=128, lr=0.1, lr_step=10,
                    eval_steps=(25, 50, 100, 200), workers=4),
    # the paper's recipe: torchvision ResNet-50 on an ImageFolder tree
    "imagenet": dict(dataset="imagefolder", arch="resnet50", epochs=90, batch_size=256, lr=0.1, lr_step=30,
                     eval_batch_size=250, workers=8),
}

FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def default_preset() -> str:
    return os.environ.get("CLASSSEL_PRESET", "mnist")


def resolve(preset: str | None = None, **overrides) -> Config:
    """The preset's configuration with ``overrides`` applied, validated."""
    preset = preset or default_preset()
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    unknown = sorted(set(overrides) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown configuration field(s) {unknown}; fields are {', '.join(FIELDS)}")
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items()}, "preset": preset}
    cfg = Config(**values)
    validate(cfg)
    return cfg


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def validate(cfg: Config) -> None:
    """Raise ValueError naming the first bad field and what it accepts."""
    def need(ok, name, accepted):
        if not ok:
            raise ValueError(f"{name}={getattr(cfg, name)!r} is not valid: expected {accepted}")

    need(cfg.dataset in DATASETS, "dataset", f"one of {DATASETS}")
    need(cfg.arch in ARCHS, "arch", f"one of {ARCHS}")
    for name in ("epochs", "batch_size", "eval_batch_size", "width", "image_size"):
        need(_is_int(getattr(cfg, name)) and getattr(cfg, name) >= 1, name, "an integer >= 1")
    for name in ("per_class", "val_per_class", "lr_step"):
        v = getattr(cfg, name)
        need(v is None or (_is_int(v) and v >= 1), name, "None or an integer >= 1")
    for name in ("lr", "momentum", "weight_decay"):
        v = getattr(cfg, name)
        need(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and v >= 0, name,
             "a finite number >= 0")
    need(isinstance(cfg.alpha, numbers.Real) and not isinstance(cfg.alpha, bool) and math.isfinite(cfg.alpha),
         "alpha", "a finite number (negative suppresses selectivity, positive promotes it)")
    need(_is_int(cfg.reg_start) and 0 <= cfg.reg_start < cfg.epochs, "reg_start",
         f"an epoch in 0..{cfg.epochs - 1} (the run has epochs={cfg.epochs})")
    need(cfg.reg_stop is None or (_is_int(cfg.reg_stop) and cfg.reg_start < cfg.reg_stop), "reg_stop",
         f"None or an epoch > reg_start={cfg.reg_start}")
    try:
        cfg.reg_modules = check_modules(cfg.reg_modules)
    except ValueError as e:
        raise ValueError(f"reg_modules: {e}") from None
    need(cfg.class_stat in CLASS_STATS, "class_stat", f"one of {CLASS_STATS}")
    cfg.eval_steps = tuple(sorted(set(cfg.eval_steps)))
    need(all(_is_int(s) and s >= 1 for s in cfg.eval_steps), "eval_steps", "step numbers >= 1")
    need(_is_int(cfg.seed) and cfg.seed >= 0, "seed", "an integer >= 0")
    need(cfg.device in ("auto", "cpu", "cuda") or cfg.device.startswith("cuda:"), "device", "auto, cpu or cuda")
    need(cfg.amp in ("auto", "bf16", "off"), "amp", "auto, bf16 or off")
    need(cfg.channels_last in ("auto", "on", "off"), "channels_last", "auto, on or off")
    need(_is_int(cfg.workers) and cfg.workers >= 0, "workers", "an integer >= 0")
    keep_epochs(cfg)  # raises on a bad keep list
    if cfg.dataset != "mnist5k":
        need(cfg.data_root is not None and os.path.isdir(cfg.data_root), "data_root",
             f"an existing folder holding the {cfg.dataset} data")


def keep_epochs(cfg: Config) -> set[int] | str:
    """The keep-list as a set of epochs, or "all" / "last"."""
    if cfg.keep_checkpoints in ("all", "last"):
        return cfg.keep_checkpoints
    try:
        return {int(e) for e in str(cfg.keep_checkpoints).split(",") if e.strip()}
    except ValueError:
        raise ValueError(
            f"keep_checkpoints={cfg.keep_checkpoints!r} is not valid: expected all, last or epochs like 0,1,5,90"
        ) from None


def identity(cfg: Config) -> dict:
    """The fields that define what a run computes (the seed is kept apart)."""
    d = dataclasses.asdict(cfg)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items() if k not in EXECUTION_FIELDS}


def config_hash(cfg: Config) -> str:
    """A short stable hash of :func:`identity`."""
    blob = json.dumps(identity(cfg), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:10]


def from_dict(d: dict) -> Config:
    d = {k: v for k, v in d.items() if k in FIELDS}
    for k in ("reg_modules", "eval_steps"):
        if k in d and d[k] is not None:
            d[k] = tuple(d[k])
    cfg = Config(**d)
    validate(cfg)
    return cfg
