"""What a chapter notebook shows in the book: figures glued under their labels (shown by a
``{glue:figure}`` with its caption), text glued for captions, and computed markdown."""

from __future__ import annotations

from pathlib import Path


def publish(fig, folder: str | Path, label: str) -> None:
    """Save ``fig`` as ``label``.png/.svg in ``folder`` and glue it for the book under ``label``
    (shown where a ``{glue:figure}`` names it, not where the code runs). Returns nothing, so the
    cell shows no output of its own.

    The glued image is the PNG file itself, at the size the figure has on screen (its width in
    pixels at the figure's own dpi): gluing the figure would draw it a third time."""
    import matplotlib.pyplot as plt
    from IPython.display import Image
    from myst_nb import glue

    from .figures import PNG_DPI, save

    fig = getattr(fig, "figure", fig)
    png = save(fig, folder, label).read_bytes()
    width = int.from_bytes(png[16:20], "big")  # the PNG header's IHDR: width, then height
    glue(label, Image(data=png, format="png", width=round(width * fig.dpi / PNG_DPI)), display=False)
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


# ----------------------------------------------------------------------------- what a build shows


def digest(paths) -> str:
    """A short hash of the names and contents of ``paths``."""
    import hashlib

    h = hashlib.sha256()
    for path in paths:
        h.update(str(path).encode() + b"\0" + Path(path).read_bytes() + b"\0")
    return h.hexdigest()[:12]


def inputs() -> dict[str, str]:
    """What the book's computed pages depend on besides their code cells: the preset the notebooks
    default to, the run store (its folder and the state of its runs and analyses), the library's
    source and the locked environment. A build executes its notebooks again when any of these changed
    (:mod:`classsel.sphinx_execution`)."""
    from . import layout
    from .config import default_preset
    from .lockfile import lock_hash

    package = Path(__file__).resolve().parent
    store = layout.store().resolve()
    # a run's manifest changes with every file it finishes with; an analysis carries its checksum
    state = sorted([*store.glob("*/seed*/MANIFEST.json"), *store.glob("*/seed*/derived/*.sha256")])
    return {"preset": default_preset(), "store": str(store),
            "runs": f"{len({p.parent for p in store.glob('*/seed*/MANIFEST.json')})} finished runs (store state "
                    f"{digest(state)})",
            "library": digest(sorted(package.rglob("*.py"))), "lock": (lock_hash() or "none")[:12]}


def inputs_digest() -> str:
    """One short hash of :func:`inputs`."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(inputs(), sort_keys=True).encode()).hexdigest()[:12]


def provenance() -> str:
    """One sentence for the book's first pages: the preset, commit and runs it shows."""
    from .train import _git_commit

    i = inputs()
    commit = (_git_commit() or "unknown")[:10]
    return (f"This build shows the **{i['preset']}** preset, computed by classsel at commit `{commit}` "
            f"(library digest `{i['library']}`, lock `{i['lock']}`) from {i['runs']}.")
