"""The book as a PDF: the executed book as one HTML page, printed by headless Chromium.

``python -m classsel.pdf`` (``make pdf``) runs after ``jupyter-book build book``. It builds the
single-page HTML (``--builder singlehtml``) in the same build folder, where Sphinx reuses the
environment of the HTML build, so no notebook is read, let alone executed, again; then Chromium
prints that page to ``_build/pdf/classsel.pdf``, with the print rules of ``book/_static``.

Loaded as a Sphinx extension (``_config.yml``), this module does nothing unless
``classsel_pdf`` is set, which only the PDF build does: then it refuses to read a notebook (it
would execute it) and puts the book's title and authors at the top of the page.
"""

from __future__ import annotations

import argparse
import html
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PDF_NAME = "classsel.pdf"
#: Milliseconds of the page's own time (Chromium's virtual time) before it prints: MathJax
#: typesets every equation in it. Virtual time runs ahead when the page is idle, so this is not
#: a wall-clock wait.
SCRIPT_TIME_MS = 30_000
#: Seconds before a Chromium that neither prints nor exits is stopped.
CHROMIUM_TIMEOUT = 900
#: The guard's message starts with this, so that :func:`build` shows it alone.
REFUSAL = "classsel.pdf: refusing to execute"


class PdfError(RuntimeError):
    """The PDF could not be made; the message says why and what to do."""


def chromium(explicit: str | None = None) -> str:
    """The Chromium to print with: ``explicit``, else ``$CHROMIUM``, else ``chromium`` or
    ``chromium-browser`` on the PATH. Never downloads one."""
    name = explicit or os.environ.get("CHROMIUM")
    found = shutil.which(name) if name else shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise PdfError(f"no Chromium to print with ({name!r} is not an executable)" if name else
                       "chromium is not installed: `make browser` installs Debian's chromium (as root), "
                       "or set CHROMIUM to a Chromium or Chrome executable")
    return found


def print_to_pdf(page: Path, pdf: Path, browser: str) -> Path:
    """Print the HTML file ``page`` to ``pdf`` with headless ``browser``, after its scripts ran."""
    pdf.parent.mkdir(parents=True, exist_ok=True)
    pdf.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="classsel-chromium-") as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", "--no-pdf-header-footer", "--generate-pdf-document-outline",
               f"--virtual-time-budget={SCRIPT_TIME_MS}", f"--print-to-pdf={pdf}", page.resolve().as_uri()]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise PdfError(f"{browser} did not print {page} within {CHROMIUM_TIMEOUT} s") from None
    if r.returncode != 0 or not pdf.is_file() or pdf.read_bytes()[:5] != b"%PDF-":
        raise PdfError(f"{browser} did not print {page} (exit status {r.returncode}): {r.stderr.strip()[-500:]}")
    return pdf


def singlehtml(book: Path, config: Path, path_output: Path) -> Path:
    """Build the book as one HTML page in ``path_output``/_build/singlehtml, from the executed
    notebooks of the HTML build there; returns the page."""
    import yaml

    if not config.is_file():
        raise PdfError(f"no Jupyter Book configuration at {config}: expected the _config.yml the book was built with")
    settings = yaml.safe_load(config.read_text()) or {}
    settings.setdefault("sphinx", {}).setdefault("config", {})["classsel_pdf"] = True
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    with tempfile.TemporaryDirectory(prefix="classsel-pdf-") as tmp:
        pdf_config = Path(tmp) / "_config.yml"
        pdf_config.write_text(yaml.safe_dump(settings, sort_keys=False, allow_unicode=True))
        r = subprocess.run([str(jupyter_book), "build", str(book), "--builder", "singlehtml", "--config",
                            str(pdf_config), "--path-output", str(path_output)],
                           capture_output=True, text=True)
    log = r.stdout + r.stderr
    refusal = next((line[line.index(REFUSAL):] for line in log.splitlines() if REFUSAL in line), None)
    if refusal:
        raise PdfError(refusal)
    if r.returncode != 0:
        raise PdfError(f"the single-page build of {book} failed (exit status {r.returncode}):\n{log[-3000:]}")
    root = yaml.safe_load((book / "_toc.yml").read_text())["root"]
    page = path_output / "_build" / "singlehtml" / f"{root}.html"
    if not page.is_file():
        raise PdfError(f"the single-page build wrote no {page}")
    return page


def build(book: Path = Path("book"), config: Path = Path("_config.yml"), path_output: Path = Path("."),
          browser: str | None = None) -> Path:
    """``path_output``/_build/pdf/classsel.pdf from the book built there by ``jupyter-book build``."""
    browser = chromium(browser)  # before the build: say at once when there is nothing to print with
    if not (path_output / "_build" / ".doctrees").is_dir():
        raise PdfError(f"no built book in {path_output / '_build'}: run `make book` (jupyter-book build book) first")
    page = singlehtml(book, config, path_output)
    return print_to_pdf(page, path_output / "_build" / "pdf" / PDF_NAME, browser)


# --- Sphinx extension -------------------------------------------------------------------------

def _refuse_to_execute(app, env, docnames) -> None:
    """Stop the PDF build before it reads a notebook: myst-nb would execute it."""
    if not app.config.classsel_pdf:
        return
    notebooks = sorted(d for d in docnames if Path(env.doc2path(d)).suffix == ".ipynb")
    if notebooks:
        from sphinx.errors import ExtensionError

        raise ExtensionError(
            f"{REFUSAL} {', '.join(notebooks)}: the PDF prints the executed book, and these notebooks, or "
            "what they read (preset, run store, library), are new or changed since the book in "
            f"{app.outdir.parent} was built, or it was built with another configuration; run `make book` "
            "(jupyter-book build book) with the same CLASSSEL_PRESET and CLASSSEL_RUNS first")


def _title_page(app, pagename, templatename, context, doctree) -> None:
    """The book's title and authors above the first chapter of the printed page."""
    if not app.config.classsel_pdf or app.builder.name != "singlehtml" or "body" not in context:
        return
    from sphinx.util.i18n import format_date

    when = format_date("%Y-%m-%d", language=app.config.language)
    context["body"] = (
        '<header class="classsel-title-page">'
        f'<p class="classsel-title">{html.escape(app.config.html_title or app.config.project)}</p>'
        f'<p class="classsel-authors">{html.escape(app.config.author)}</p>'
        f'<p class="classsel-imprint">Printed {when} from the executed book; the code of every '
        "result is in the book's notebooks.</p></header>" + context["body"])


def setup(app):
    # rebuild "": switching it on for the PDF must not make Sphinx read the book again
    app.add_config_value("classsel_pdf", False, "")
    app.connect("env-before-read-docs", _refuse_to_execute)
    app.connect("html-page-context", _title_page)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m classsel.pdf", description=__doc__.splitlines()[0])
    p.add_argument("--book", default="book", help="the book's source folder (default: book)")
    p.add_argument("--config", default="_config.yml", help="the configuration the book was built with")
    p.add_argument("--path-output", default=".", help="the folder whose _build holds the built book (default: .)")
    p.add_argument("--chromium", help="the Chromium to print with (default: $CHROMIUM, else chromium on the PATH)")
    args = p.parse_args(argv)
    try:
        pdf = build(Path(args.book), Path(args.config), Path(args.path_output), args.chromium)
    except PdfError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {pdf} ({pdf.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
