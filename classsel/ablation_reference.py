"""The reference for ablation curves: one full forward pass of the loader per level.

Slow and plain on purpose: :func:`classsel.ablation.ablation_curve` must equal it number
for number, and the benchmarks measure the fast engine against it.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from .ablation import ablate, curve_frame, plan
from .models import device_of, evaluating
from .progress import progress_bar


@torch.no_grad()
def _count_correct(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[int, int]:
    correct = torch.zeros((), dtype=torch.long, device=device)
    samples = 0
    for images, labels in loader:
        labels = labels.to(device, non_blocking=True)
        logits = model(images.to(device, non_blocking=True))
        correct += (logits.argmax(dim=1) == labels).sum()
        samples += len(labels)
    return int(correct.item()), samples


def ablation_curve_naive(
    model: nn.Module, loader: DataLoader, module, si: Mapping[str, torch.Tensor], device=None, progress: bool = False,
    **levels,
) -> pd.DataFrame:
    """:func:`~classsel.ablation.ablation_curve`'s frame from one full pass of ``loader`` per level.

    ``levels``: ``ks``, ``orders``, ``draws``, ``seed``, as :func:`~classsel.ablation.plan`
    takes them. The unablated pass is run once and stands for every ``k = 0`` level (it
    is the same computation); every other level is a pass with :func:`~classsel.ablation.ablate`.
    """
    p = plan(model, module, si, **levels)
    device = device_of(model, device)
    with evaluating(model):
        base, samples = _count_correct(model, loader, device)
        correct = []
        for level in progress_bar(p.levels, "ablation (naive)", enabled=progress, leave=False):
            if level.k == 0:
                correct.append(base)
                continue
            with ablate(model, p.units(level)):
                correct.append(_count_correct(model, loader, device)[0])
    return curve_frame(p.levels, correct, samples, base)
