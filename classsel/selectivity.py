"""Class selectivity index (paper eq. 1) and its exact streaming measurement.

A unit and its activation for an image are its architecture family's (a ResNet's: one
output channel of a residual block, its spatial mean; :mod:`classsel.architectures`). :func:`measure` runs a labelled loader once and
accumulates per-class sums and counts in float64, so the class means are exact (no
running averages), and reduces them across ranks under ``torch.distributed``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from .models import Block, check_chunk, describe, device_of, evaluating, forward_hooks, pieces
from .progress import progress_bar

EPS = 1e-6


def selectivity_index(
    class_means: torch.Tensor, eps: float = EPS, present: torch.Tensor | None = None
) -> torch.Tensor:
    """SI per unit from class-conditional means shaped ``[classes, units]`` (eq. 1).

    ``SI = (mu_max - mu_rest) / (mu_max + mu_rest + eps)`` where ``mu_max`` is the
    largest class mean and ``mu_rest`` the mean of the other classes' means.
    ``present`` (bool ``[classes]``) restricts both to the classes it marks, without a
    host sync; with fewer than two such classes SI is 0.
    """
    if not isinstance(class_means, torch.Tensor) or class_means.dim() != 2:
        shape = tuple(class_means.shape) if isinstance(class_means, torch.Tensor) else type(class_means)
        raise ValueError(f"class_means must be a 2-d tensor [classes, units], got {shape}")
    n_classes = class_means.shape[0]
    if present is None:
        if n_classes < 2:
            raise ValueError(f"class_means needs at least 2 classes (rows), got {n_classes}")
        mu_max = class_means.max(dim=0).values
        mu_rest = (class_means.sum(dim=0) - mu_max) / (n_classes - 1)
        return (mu_max - mu_rest) / (mu_max + mu_rest + eps)
    if present.shape != (n_classes,):
        raise ValueError(f"present must have shape ({n_classes},), got {tuple(present.shape)}")
    absent = ~present[:, None]
    mu_max = class_means.masked_fill(absent, float("-inf")).max(dim=0).values
    n = present.sum()
    total = class_means.masked_fill(absent, 0.0).sum(dim=0)
    mu_rest = (total - mu_max) / (n - 1).clamp(min=1)
    si = (mu_max - mu_rest) / (mu_max + mu_rest + eps)
    return torch.where(n >= 2, si, torch.zeros_like(si))


def check_labels(labels: torch.Tensor, num_classes: int) -> None:
    """Raise if a label lies outside ``0..num_classes-1`` (checked on the host copy)."""
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)][0].item()
        raise ValueError(f"label {bad} out of range: num_classes={num_classes} accepts 0..{num_classes - 1}")


def class_means(sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """``[classes, units]`` means from per-class sums and counts; every class must occur."""
    if (counts == 0).any():
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"no samples of class(es) {missing[:10]} in the loader; SI needs every class")
    return sums / counts[:, None]


@dataclass
class SelectivityResult:
    """What one pass over a labelled set measured."""

    blocks: list[Block]
    class_means: dict[str, torch.Tensor]  # block name -> [classes, units] float64
    prediction_counts: torch.Tensor  # [classes], predicted class counts
    correct1: int
    correct5: int
    samples: int
    si: dict[str, torch.Tensor] = field(init=False)  # block name -> [units]

    def __post_init__(self):
        self.si = {name: selectivity_index(m) for name, m in self.class_means.items()}

    @property
    def acc1(self) -> float:
        return self.correct1 / self.samples

    @property
    def acc5(self) -> float:
        return self.correct5 / self.samples

    def to_frame(self) -> pd.DataFrame:
        """One row per unit: module, paper number, block, unit, si, preferred class."""
        frames = []
        for b in self.blocks:
            means = self.class_means[b.name]
            frames.append(
                pd.DataFrame(
                    {
                        "module": b.module,
                        "number": b.number,
                        "block": b.index,
                        "unit": range(b.channels),
                        "si": self.si[b.name].cpu().numpy(),
                        "preferred_class": means.argmax(dim=0).cpu().numpy(),
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)

    def module_means(self) -> dict[str, float]:
        """Mean SI over all units of each module (the curves of the paper's Fig. 2)."""
        df = self.to_frame()
        return df.groupby("module", sort=False)["si"].mean().to_dict()


def _padding_mask(loader: DataLoader, seen: int, batch: int) -> torch.Tensor | None:
    """Mask of the samples of this batch that are real, not DistributedSampler padding.

    DistributedSampler pads its index list at the end to a multiple of the world size;
    local sample ``j`` of rank ``r`` is global position ``r + j * world``.
    """
    sampler = loader.sampler
    if not isinstance(sampler, DistributedSampler):
        return None
    if sampler.drop_last:
        raise ValueError("a DistributedSampler with drop_last=True drops samples; use drop_last=False to measure")
    positions = sampler.rank + (seen + torch.arange(batch)) * sampler.num_replicas
    return positions < len(sampler.dataset)


def _all_reduce(*tensors: torch.Tensor) -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        for t in tensors:
            torch.distributed.all_reduce(t)


@torch.no_grad()
def measure(
    model: nn.Module,
    loader: DataLoader,
    num_classes: int,
    device=None,
    modules=None,
    progress: bool = False,
    chunk: int | None = None,
    after_batch: Callable[[], None] | None = None,
) -> SelectivityResult:
    """Class means of every block's units, SI, accuracy and prediction counts, in one pass.

    ``num_classes`` must be the model's number of outputs. Exact under ``torch.distributed``:
    sums and counts are all-reduced and the samples a ``DistributedSampler`` repeats to pad
    its shards are left out. ``modules``: default all four of the model's family. ``chunk``: at
    most this many images per forward pass (:func:`classsel.models.check_chunk`: on the CPU, by
    default, pieces of :data:`classsel.models.CPU_CHUNK`, about a fifth faster than batches of
    500 and the same numbers; the sums add the images in the loader's order either way).
    ``after_batch``: called after each batch of the loader has gone through, e.g. by a measurement
    that hooks the same pass (:class:`classsel.cka.Alongside`; it sees a ``DistributedSampler``'s padding).
    """
    device = device_of(model, device)
    chunk = check_chunk(chunk, device)
    blocks = describe(model).blocks(model, modules)
    by_name = {b.name: b for b in blocks}
    sums = {b.name: torch.zeros(num_classes, b.channels, dtype=torch.float64, device=device) for b in blocks}
    counts = torch.zeros(num_classes, dtype=torch.float64, device=device)
    pred_counts = torch.zeros(num_classes, dtype=torch.float64, device=device)
    correct = torch.zeros(2, dtype=torch.float64, device=device)
    keep: torch.Tensor | None = None
    labels_dev: torch.Tensor | None = None

    def record(name, output):
        acts = by_name[name].activations(output)
        if keep is not None:
            acts = acts[keep]
        sums[name].index_add_(0, labels_dev, acts.to(torch.float64))

    seen = batches = 0
    with evaluating(model), forward_hooks({b.name: b.block for b in blocks}, record):
        for images, labels in progress_bar(loader, "measure SI", enabled=progress, leave=False):
            check_labels(labels, num_classes)
            mask = _padding_mask(loader, seen, len(labels))
            seen += len(labels)
            batch_keep = mask.to(device) if mask is not None and not mask.all() else None
            if not torch.isfinite(images).all():
                raise FloatingPointError(
                    f"batch {batches} of the loader holds {int((~torch.isfinite(images)).sum())} values that "
                    "are NaN or infinite in its images: no SI from it (check the data and its normalisation)")
            batches += 1
            for piece in pieces(len(labels), chunk):
                keep = None if batch_keep is None else batch_keep[piece]
                labels_dev = labels[piece].to(device, non_blocking=True)
                if keep is not None:
                    labels_dev = labels_dev[keep]
                counts.index_add_(0, labels_dev, torch.ones_like(labels_dev, dtype=torch.float64))
                logits = model(images[piece].to(device, non_blocking=True))
                if logits.shape[1] != num_classes:
                    raise ValueError(
                        f"num_classes={num_classes} but the model outputs {logits.shape[1]} classes; "
                        f"pass the model's number of classes"
                    )
                if keep is not None:
                    logits = logits[keep]
                top = logits.topk(min(5, num_classes), dim=1).indices
                hits = top == labels_dev[:, None]
                correct[0] += hits[:, 0].sum()
                correct[1] += hits.any(dim=1).sum()
                pred_counts.index_add_(0, top[:, 0], torch.ones_like(labels_dev, dtype=torch.float64))
            if after_batch is not None:
                after_batch()

    _all_reduce(correct, pred_counts, counts, *sums.values())
    bad = [name for name, s in sums.items() if not torch.isfinite(s).all()]
    if bad:
        raise FloatingPointError(
            f"the units of block {bad[0]}{f' (and {len(bad) - 1} more blocks)' if len(bad) > 1 else ''} gave "
            "activations that are NaN or infinite: no SI (the network's weights or features diverged)")
    samples = int(pred_counts.sum().item())
    if samples == 0:
        raise ValueError("the loader yielded no samples")
    return SelectivityResult(
        blocks=blocks,
        class_means={name: class_means(s, counts) for name, s in sums.items()},
        prediction_counts=pred_counts.long().cpu(),
        correct1=int(correct[0].item()),
        correct5=int(correct[1].item()),
        samples=samples,
    )
