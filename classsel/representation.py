"""Class representation in the predictions (paper Fig. 16).

Per epoch, count how often each class is predicted over the validation set; a network
that over-represents a few classes has large top counts.
"""

from __future__ import annotations

import torch


def prediction_counts(predictions: torch.Tensor, num_classes: int) -> torch.Tensor:
    """How many times each class is predicted: ``[num_classes]`` int64."""
    predictions = torch.as_tensor(predictions).flatten()
    if predictions.numel() and (int(predictions.min()) < 0 or int(predictions.max()) >= num_classes):
        raise ValueError(f"predictions must lie in 0..{num_classes - 1}, got {predictions.min()}..{predictions.max()}")
    return torch.bincount(predictions.long(), minlength=num_classes)


def top_k_mean(counts: torch.Tensor, k: int = 5) -> float:
    """Mean of the ``k`` largest class counts (Fig. 16 uses k = 5)."""
    counts = torch.as_tensor(counts).flatten()
    if not 1 <= k <= counts.numel():
        raise ValueError(f"k must lie in 1..{counts.numel()} (the number of classes), got {k}")
    return counts.double().topk(k).values.mean().item()
