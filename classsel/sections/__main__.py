"""``python -m classsel.sections``: write each notebook's parameters cell from its section's
declaration, and sync the .ipynb of each pair (after a default or a parameter changed)."""

import subprocess
import sys
from pathlib import Path

from . import SECTIONS
from .declaration import write_cell

ROOT = Path(__file__).resolve().parents[2]

if __name__ == "__main__":
    for d in [None, *SECTIONS.values()]:
        path = ROOT / "notebooks" / f"{d.notebook if d else '00_what_reproduces'}.py"
        if write_cell(path, d):
            subprocess.run([sys.executable, "-m", "jupytext", "--quiet", "--sync", str(path)], check=True)
            print(f"updated {path.relative_to(ROOT)} and its .ipynb")
