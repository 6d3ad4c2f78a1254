"""Sphinx extension: the book's notebooks are executed again when what they read changed, several
at once, and their execution waits for kernel messages in short polls.

Jupyter Book's execution cache keys on a notebook's code cells only: a build with another preset,
run store or library version would show the cached results of the previous one.
:func:`key_by_inputs` makes those inputs part of the key.

A book build now and then stalled: every cell of a notebook had run, the kernel was idle, and
nbclient (in the jupyter-book process) was still waiting on the shell channel for the reply to
the last cell, in one ``get_msg`` call whose timeout is the cell timeout (an hour). A py-spy dump
of both processes showed exactly that (2026-11-22, notebook 02, ipykernel 6.31, pyzmq 27.3,
jupyter_client's asyncio channels), and it was seen with ipykernel 7.4 too. A poll that misses
its wake-up waits out its whole timeout; one renewed every :data:`SLICE` seconds looks at the
socket again. This extension makes every wait of jupyter_client's asyncio channels a sequence
of polls of at most :data:`SLICE` seconds, with the same result and the same overall timeout.
"""

from __future__ import annotations

import functools
import time
from queue import Empty

#: Longest single poll, in seconds.
SLICE = 1.0


def sliced(get_msg):
    """``get_msg(self, timeout)`` as polls of at most :data:`SLICE` seconds until ``timeout``
    (None: no limit); raises :class:`queue.Empty` when the whole timeout has passed."""

    @functools.wraps(get_msg)
    async def get_msg_in_slices(self, timeout: float | None = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return await get_msg(self, SLICE if left is None else min(SLICE, left))
            except Empty:
                if left is not None and left <= SLICE:
                    raise

    get_msg_in_slices.sliced = True
    return get_msg_in_slices


def install() -> None:
    """Wrap :meth:`jupyter_client.channels.AsyncZMQSocketChannel.get_msg` (once)."""
    from jupyter_client.channels import AsyncZMQSocketChannel

    if not getattr(AsyncZMQSocketChannel.get_msg, "sliced", False):
        AsyncZMQSocketChannel.get_msg = sliced(AsyncZMQSocketChannel.get_msg)


def key_by_inputs(app, config) -> None:
    """Re-execute the notebooks whenever what they read changed, not only their code
    (:func:`classsel.book.inputs`): the digest is a configuration value that rebuilds the
    environment when it changes, and names the execution cache's folder."""
    from pathlib import Path

    from .book import inputs_digest

    digest = inputs_digest()
    config.classsel_inputs = digest
    base = config.nb_execution_cache_path or str(Path(app.outdir).parent / ".jupyter_cache")
    config.nb_execution_cache_path = str(Path(base) / digest)


def read_in_parallel(app) -> None:
    """Read (and so execute) the pages in ``$CLASSSEL_BOOK_JOBS`` processes at once, by default one per
    core, where the build was not given its own number (``sphinx-build -j``): Jupyter Book's ``build``
    command reads one page at a time."""
    import os

    if app.parallel > 1:
        return
    text = os.environ.get("CLASSSEL_BOOK_JOBS", "").strip()
    if text and not (text.isdigit() and int(text) >= 1):
        raise ValueError(f"CLASSSEL_BOOK_JOBS={text!r} is not valid: expected a number of processes, 1 or more")
    app.parallel = int(text) if text else os.cpu_count() or 1


#: Extensions of Jupyter Book that do not say whether pages can be read in parallel, which makes Sphinx
#: warn and read one page at a time, though they can: sphinx_multitoc_numbering only replaces how the
#: main process numbers the sections once every page is read; sphinx_jupyterbook_latex's transforms
#: change only the page being read.
READ_SAFE = ("sphinx_multitoc_numbering", "sphinx_jupyterbook_latex")


def declare_read_safe(app, config) -> None:
    for name in READ_SAFE:
        extension = app.extensions.get(name)
        if extension is not None and extension.parallel_read_safe is None:
            extension.parallel_read_safe = True


def setup(app):
    install()
    read_in_parallel(app)
    app.add_config_value("classsel_inputs", "", "env")
    app.connect("config-inited", key_by_inputs, priority=100)
    app.connect("config-inited", declare_read_safe)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
