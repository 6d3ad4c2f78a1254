"""Ablation curves as tables (:mod:`classsel.ablation` computes them): the orders in which units are
zeroed, and the area under a curve. Without torch: the claims and the figures read them in notebook
kernels that never load a network.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

ORDERS = ("selective", "random")


def auc(curves: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """Area under each ablation curve: ``AUC = sum_k normalized(k)`` per (module, order, draw).

    ``by``: further columns that tell curves apart, e.g. ``("seed", "epoch")`` of a sweep.
    """
    by = [by] if isinstance(by, str) else list(by)
    keys = [*by, "module", "number", "order", "draw"]
    missing = [c for c in [*keys, "normalized"] if c not in curves.columns]
    if missing:
        raise ValueError(f"curves lack column(s) {missing}; pass ablation_curve's frame and existing `by` columns")
    return curves.groupby(keys, sort=False, dropna=False)["normalized"].sum().rename("auc").reset_index()


def images_text(curves: pd.DataFrame) -> str:
    """What a caption says of the images behind every point of ``curves``: "500 validation images"
    (their ``samples``), or the range where the points differ."""
    if "samples" not in curves.columns or curves.empty:
        raise ValueError("curves lack a samples column; pass ablation_curve's frame")
    counts = sorted({int(n) for n in curves.samples})
    span = f"{counts[0]:,}" if len(counts) == 1 else f"{counts[0]:,} to {counts[-1]:,}"
    return f"{span} validation images"
