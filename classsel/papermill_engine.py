"""papermill's engine with the stall guard: loaded by papermill itself when it starts.

papermill imports every engine registered under the ``papermill.engine`` entry point as it starts
(classsel registers this module in ``pyproject.toml``), so importing it is how the guard of
:mod:`classsel.sphinx_execution` (kernel replies awaited in polls of at most a second) reaches
every papermill run in this environment, the README's ``papermill notebooks/04_regularize.ipynb
out.ipynb -p alpha -20`` included, without an option. ``--engine classsel`` names the same engine.
"""

from __future__ import annotations

import os

from papermill.engines import NBClientEngine

from .sphinx_execution import install

if os.environ.get("CLASSSEL_STALL_GUARD", "on") != "off":  # off: only to measure the stall without it
    install()


class Engine(NBClientEngine):
    """papermill's nbclient engine; the guard is installed when this module loads."""
