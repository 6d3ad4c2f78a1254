"""Sphinx extension: the book loads MathJax from the installed ``mathjax`` package
(PyPI: django-static-mathjax) instead of a CDN, so equations render offline."""

from __future__ import annotations

from pathlib import Path


def _use_local_mathjax(app, config) -> None:
    import mathjax

    static = Path(mathjax.__file__).parent / "static"
    # Copy only the browser build (es5), not MathJax's sources.
    config.html_static_path.append(str(static / "mathjax" / "es5"))
    config.mathjax_path = "tex-chtml.js"


def setup(app):
    app.connect("config-inited", _use_local_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
