"""What a chapter notebook shows in the book: figures glued under their labels (shown by a
``{glue:figure}`` with its caption), text glued for captions, and computed markdown."""

from __future__ import annotations

from pathlib import Path


def publish(fig, folder: str | Path, label: str) -> None:
    """Save ``fig`` as ``label``.png/.svg in ``folder`` and glue it for the book under ``label``
    (shown where a ``{glue:figure}`` names it, not where the code runs). Returns nothing, so the
    cell shows no output of its own."""
    import matplotlib.pyplot as plt
    from myst_nb import glue

    from .figures import save

    fig = getattr(fig, "figure", fig)
    save(fig, folder, label)
    glue(label, fig, display=False)
    plt.close(fig)


def glue_text(key: str, markdown: str) -> None:
    """Markdown for ``{glue:md}`key``` in a caption or sentence."""
    from IPython.display import Markdown
    from myst_nb import glue

    glue(key, Markdown(markdown), display=False)


def show(markdown: str) -> None:
    """Computed markdown (a verdict, a table) as the cell's output."""
    from IPython.display import Markdown, display

    display(Markdown(markdown))
