"""Progress bars: one way to show them, and none when they are off."""

from __future__ import annotations

from collections.abc import Iterable


def progress_bar(
    iterable: Iterable | None = None, desc: str = "", total: int | None = None, enabled: bool = True, **options
):
    """``tqdm.auto.tqdm`` over ``iterable``, or a manual bar of ``total`` steps; off unless ``enabled``.

    ``options`` go to tqdm as they are (``leave``, ``unit``, ``initial``, ...). A disabled bar
    still has tqdm's methods (``update``, ``set_postfix``, ``close``), which then do nothing.
    """
    from tqdm.auto import tqdm  # imported on use: tqdm.auto probes for Jupyter

    return tqdm(iterable, desc=desc, total=total, disable=not enabled, **options)
