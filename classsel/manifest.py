"""The manifest of a finished run: the size and SHA-256 of every file it wrote.

Written when the run ends; checked before the run is used, so a file that was removed,
cut short or edited afterwards is found instead of read.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from .checkpoint import atomic_write
from .layout import RunFiles


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def write(files: RunFiles) -> dict:
    entries = {files.relative(p): {"size": p.stat().st_size, "sha256": sha256(p)} for p in files.recorded()}
    atomic_write(files.manifest, json.dumps({"files": entries}, indent=1, sort_keys=True).encode())
    return entries


def read(files: RunFiles) -> dict[str, dict]:
    return json.loads(files.manifest.read_text())["files"]


@dataclass(frozen=True)
class Problem:
    path: Path
    what: str  # "missing" or "changed"

    def __str__(self) -> str:
        return f"{self.path} is {self.what}"


def check(files: RunFiles, entries: dict[str, dict], full: bool = True) -> list[Problem]:
    """Files of ``entries`` that are missing or differ. ``full=False`` compares checkpoint
    sizes only (they are hashed when loaded: :func:`check_file`)."""
    problems = []
    for rel, entry in entries.items():
        path = files.root / rel
        if not path.is_file():
            problems.append(Problem(path, "missing"))
        elif path.stat().st_size != entry["size"] or (
                (full or path.parent != files.checkpoints_dir) and sha256(path) != entry["sha256"]):
            problems.append(Problem(path, "changed"))
    return problems


def check_file(files: RunFiles, path: Path) -> None:
    """Raise if ``path`` differs from the run's manifest (no manifest: nothing to check)."""
    if not files.manifest.exists():
        return
    entry = read(files).get(files.relative(path))
    if entry is not None and (not path.is_file() or sha256(path) != entry["sha256"]):
        raise ValueError(f"{path} differs from the run's manifest (removed or changed after the run ended); "
                         f"remove the folder {files.root} to train the run again")
