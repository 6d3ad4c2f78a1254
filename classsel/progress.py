"""Progress bars: one way to show them, none when they are off, and one bar for many tasks.

Inside a request's task (:mod:`classsel.parallel`), the bars that training and analyses draw
report to the request's one bar instead of drawing their own (:func:`reporting_to`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterable

#: Where bars report while a task of a request runs (see :func:`reporting_to`); None: they draw.
_reporter = None


@contextlib.contextmanager
def reporting_to(reporter):
    """Within the block, a task's own bar (``progress_bar(..., task=True)``) reports to ``reporter``:
    ``reporter.total(units)`` with the work it expects, ``reporter.advance(units)`` as it goes; the
    other bars (the passes over a data set inside it) stay silent."""
    global _reporter
    before, _reporter = _reporter, reporter
    try:
        yield reporter
    finally:
        _reporter = before


def progress_bar(
    iterable: Iterable | None = None, desc: str = "", total: int | None = None, enabled: bool = True,
    task: bool = False, **options
):
    """``tqdm.auto.tqdm`` over ``iterable``, or a manual bar of ``total`` steps; off unless ``enabled``.

    ``options`` go to tqdm as they are (``leave``, ``unit``, ``initial``, ...). A disabled bar
    still has tqdm's methods (``update``, ``set_postfix``, ``close``), which then do nothing.
    ``task``: the bar of a whole task (a run's training, an analysis over checkpoints), which
    reports to the request's bar where there is one (:func:`reporting_to`).
    """
    if _reporter is not None:
        if task:
            return _Reported(_reporter, iterable, total, options.get("initial", 0))
        enabled = False
    from tqdm.auto import tqdm  # imported on use: tqdm.auto probes for Jupyter

    if options.get("dynamic_ncols") and _zero_width(options.get("file")):
        # a terminal that reports no size (a pseudo-terminal nobody sized: some CI runners, script(1)
        # without a terminal): tqdm would take its 0 columns and 0 rows and draw nothing at all
        size = shutil.get_terminal_size()
        options = {**options, "dynamic_ncols": False, "ncols": size.columns or 100, "nrows": size.lines or 24}
    return tqdm(iterable, desc=desc, total=total, disable=not enabled, **options)


def _zero_width(file) -> bool:
    """Whether ``file`` (default: stderr, tqdm's) is a terminal that says it is 0 columns wide."""
    try:
        return os.get_terminal_size((file or sys.stderr).fileno()).columns == 0
    except (AttributeError, OSError, ValueError):  # not a terminal, or no file descriptor
        return False


class _Reported:
    """A bar that tells a reporter its total and its steps (tqdm's methods that the project uses)."""

    def __init__(self, reporter, iterable, total, initial):
        self.reporter, self.iterable = reporter, iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        reporter.total((total or 0) - initial)

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)

    def update(self, n: int = 1) -> None:
        self.reporter.advance(n)

    def set_postfix(self, *_, **__) -> None:
        pass

    def close(self) -> None:
        self.reporter.flush()
