"""The manifest of a finished run: the size and SHA-256 of every file it wrote.

Written when the run ends; checked before the run is used, so a file that was removed,
cut short or edited afterwards is found instead of read. Every file is checked by its
content; a checkpoint found intact is remembered with its size, times and inode
(``VERIFIED.json``), and hashed again only once one of them changes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from .layout import RunFiles, atomic_write


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


def _stat(path: Path) -> list[int]:
    # ctime and the inode change with any write or copy, and neither can be set back by hand
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class _Verified:
    """The stamps of ``VERIFIED.json``: ``{file: [stat, sha256]}`` of checkpoints hashed and found intact."""

    def __init__(self, files: RunFiles):
        self.files, self.changed = files, False
        try:
            self.stamps = json.loads(files.verified.read_text())
        except (OSError, ValueError):
            self.stamps = {}
        if not isinstance(self.stamps, dict):
            self.stamps = {}

    def matches(self, rel: str, path: Path, entry: dict) -> bool:
        """Whether ``path`` holds the content of ``entry``: by its stamp, else by hashing it."""
        stat = _stat(path)
        if stat[0] != entry["size"]:
            return False
        if self.stamps.get(rel) == [stat, entry["sha256"]]:
            return True
        if sha256(path) != entry["sha256"]:
            return False
        if path.parent == self.files.checkpoints_dir:  # the large files: the rest are cheap to hash
            self.stamps[rel], self.changed = [stat, entry["sha256"]], True
        return True

    def save(self) -> None:
        if not self.changed:
            return
        try:
            atomic_write(self.files.verified, json.dumps(self.stamps, sort_keys=True).encode())
        except OSError:
            pass  # a read-only store: checked again next time, nothing else lost


def check(files: RunFiles, entries: dict[str, dict]) -> list[Problem]:
    """Files of ``entries`` that are missing or whose content differs."""
    problems, verified = [], _Verified(files)
    for rel, entry in entries.items():
        path = files.root / rel
        if not path.is_file():
            problems.append(Problem(path, "missing"))
        elif not verified.matches(rel, path, entry):
            problems.append(Problem(path, "changed"))
    verified.save()
    return problems


def check_file(files: RunFiles, path: Path) -> None:
    """Raise if ``path`` differs from the run's manifest (no manifest: nothing to check)."""
    if not files.manifest.exists():
        return
    rel = files.relative(path)
    entry = read(files).get(rel)
    if entry is not None and check(files, {rel: entry}):
        raise ValueError(f"{path} differs from the run's manifest (removed or changed after the run ended); "
                         f"remove the folder {files.root} to train the run again")
