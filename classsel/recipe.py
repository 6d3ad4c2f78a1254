"""The training recipe: the optimiser and the learning-rate schedule of a configuration.

The paper's: SGD with momentum, the rate divided by 10 every ``lr_step`` epochs (stepped at
each epoch's end). A transformer's (:mod:`classsel.architectures`): AdamW, and a linear
warm-up over ``warmup_epochs`` (stepped after every training step) before the same decay.
"""

from __future__ import annotations

import math

import torch

from .config import Config


def optimizer(cfg: Config, parameters) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's) or AdamW, with the configuration's rate and weight decay."""
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(parameters, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def per_step(cfg: Config) -> bool:
    """Whether :func:`schedule` steps after every training step (with a warm-up) or once per epoch."""
    return cfg.warmup_epochs > 0


def schedule(cfg: Config, opt: torch.optim.Optimizer, steps_per_epoch: int):
    """The learning-rate schedule; see :func:`per_step` for when it steps."""
    if not per_step(cfg):
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step or 10**9, gamma=0.1)
    return torch.optim.lr_scheduler.LambdaLR(opt, warmup_factor(cfg.warmup_epochs, cfg.lr_step, steps_per_epoch))


def warmup_factor(warmup_epochs: float, lr_step: int | None, steps_per_epoch: int):
    """The factor of the learning rate for the optimiser step that follows ``step`` steps: rising
    linearly to 1 over the warm-up's steps, then divided by 10 every ``lr_step`` epochs."""
    warmup = max(1, math.ceil(warmup_epochs * steps_per_epoch))
    decay = (lr_step or 10**9) * steps_per_epoch

    def factor(step: int) -> float:
        return min(1.0, (step + 1) / warmup) * 0.1 ** (step // decay)

    return factor
