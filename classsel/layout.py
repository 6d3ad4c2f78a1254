"""Where every file of a run and of the run store lives. No other code joins a run path.

The run store (``runs/`` at the project root, or ``$CLASSSEL_RUNS``)::

    <hash>/config.json            the configuration's identity (classsel.config.identity)
    <hash>/seed<S>/               one run (:class:`RunFiles`)
    results/<section>/            a notebook's figures and tables

A run's folder::

    config.json                   resolved configuration, versions, device
    metrics.csv                   one row per evaluation point
    si/stepNNNNNNNN.csv.gz        SI of every unit at that point
    predictions/stepNNNNNNNN.csv  predicted-class counts at that point
    checkpoints/stepNNNNNNNN.pt   model, optimiser, scheduler, RNG states, metrics rows
    derived/<name>.csv            analyses computed from the run (ablation, CKA), cached,
    derived/<name>.csv.sha256     with its checksum
    MANIFEST.json                 size and SHA-256 of every file, written when the run ends
    VERIFIED.json                 the files found to match it, by size, times and inode (not hashed again)
    DONE                          the run finished
    IMPORTED                      the run came from a results pack (classsel.pack): it has no checkpoints
    .lock                         held by the process training the run
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

STEP = re.compile(r"step(\d{8})\.")
#: A run's folder name in the store: ``seed<S>``.
SEED_FOLDER = re.compile(r"^seed(\d+)$")
CONFIG = "config.json"
RESULTS = "results"
#: Temporary files of interrupted atomic writes: ``.<name>.tmp<pid>``.
TEMPORARY = re.compile(r"^\..+\.tmp\d+$")
#: The names a run writes, by folder (``""``: the run's folder itself); nothing else belongs in a run.
RUN_NAMES = {
    "": re.compile(r"^(config\.json|metrics\.csv|DONE|MANIFEST\.json|IMPORTED|VERIFIED\.json|\.lock)$"),
    "checkpoints": re.compile(r"^step\d{8}\.pt$"),
    "si": re.compile(r"^step\d{8}\.csv\.gz$"),
    "predictions": re.compile(r"^step\d{8}\.csv$"),
    "derived": re.compile(r"^[^/.][^/]*\.csv(\.sha256)?$"),
}
#: The files of a run its manifest records (the rest are marks, the lock, or carry their own checksums).
RECORDED = {"": re.compile(r"^(config\.json|metrics\.csv)$"),
            **{k: v for k, v in RUN_NAMES.items() if k in ("checkpoints", "si", "predictions")}}


def step_name(step: int) -> str:
    return f"step{step:08d}"


def temporary(path: Path) -> Path:
    """The name an atomic write of ``path`` writes first (see :func:`atomic_write`)."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all: into :func:`temporary`, synced, then renamed."""
    path = Path(path)
    tmp = temporary(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OSError(e.errno, f"could not write {path}: {e.strerror or e}") from e
    # The rename itself is durable once the folder entry is on disk.
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class RunFiles:
    """The files of the run in folder ``root``."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    config = property(lambda self: self.root / CONFIG)
    metrics = property(lambda self: self.root / "metrics.csv")
    done = property(lambda self: self.root / "DONE")
    manifest = property(lambda self: self.root / "MANIFEST.json")
    lock = property(lambda self: self.root / ".lock")
    # beside the run's folder: outside what its manifest records
    log = property(lambda self: self.root.with_name(f"{self.root.name}.log"))
    # the identity shared by every seed of the configuration
    shared_config = property(lambda self: self.root.parent / CONFIG)
    imported = property(lambda self: self.root / "IMPORTED")
    # which files were hashed and found as the manifest says, by their stat (classsel.manifest)
    verified = property(lambda self: self.root / "VERIFIED.json")
    checkpoints_dir = property(lambda self: self.root / "checkpoints")
    si_dir = property(lambda self: self.root / "si")
    predictions_dir = property(lambda self: self.root / "predictions")
    derived_dir = property(lambda self: self.root / "derived")

    def si(self, step: int) -> Path:
        return self.si_dir / f"{step_name(step)}.csv.gz"

    def predictions(self, step: int) -> Path:
        return self.predictions_dir / f"{step_name(step)}.csv"

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints_dir / f"{step_name(step)}.pt"

    def derived(self, name: str) -> Path:
        return self.derived_dir / f"{name}.csv"

    def derived_checksum(self, name: str) -> Path:
        return self.derived_dir / f"{name}.csv.sha256"

    def folders(self) -> tuple[Path, ...]:
        """The folders a run writes into."""
        return (self.checkpoints_dir, self.si_dir, self.predictions_dir)

    def checkpoints(self) -> list[tuple[int, Path]]:
        """``(step, path)`` of every checkpoint file, oldest first."""
        return _steps(self.checkpoints_dir, ".pt")

    def si_steps(self) -> list[int]:
        return [s for s, _ in _steps(self.si_dir, ".csv.gz")]

    def prediction_steps(self) -> list[int]:
        return [s for s, _ in _steps(self.predictions_dir, ".csv")]

    def recorded(self) -> list[Path]:
        """The files the manifest records: config.json, metrics.csv and the tables and
        checkpoints of the evaluation points (not the lock, the manifest itself, DONE, the
        mark of an imported run, derived analyses, which carry their own checksums, nor a
        file the run did not write)."""
        return sorted(p for p in self.root.rglob("*") if p.is_file() and _named(self.relative(p), RECORDED))

    def temporaries(self) -> list[Path]:
        """Leftovers of the run's own writes that were interrupted (``.<run file>.tmp<pid>``)."""
        return sorted(p for p in self.root.rglob(".*.tmp*") if TEMPORARY.match(p.name)
                      and _named(self.relative(p.with_name(p.name[1:p.name.rindex(".tmp")])), RUN_NAMES))

    def foreign(self) -> list[Path]:
        """What the run's folder holds that a run does not write (a user's files, another tool's)."""
        if not self.root.is_dir():
            return []
        found, temporaries = [], set(self.temporaries())
        for p in sorted(self.root.rglob("*")):
            rel = self.relative(p)
            if p.is_dir() and not p.is_symlink() and rel in RUN_NAMES:
                continue
            if p.is_symlink() or not p.is_file() or not (_named(rel, RUN_NAMES) or p in temporaries):
                if not any(q in found for q in p.parents):
                    found.append(p)
        return found

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def without_checkpoints(self, entries: dict[str, dict]) -> dict[str, dict]:
        """Manifest entries but the checkpoints: the files a results pack holds (classsel.pack)."""
        return {rel: e for rel, e in entries.items() if (self.root / rel).parent != self.checkpoints_dir}


def run_file(rel: str) -> bool:
    """Whether ``rel`` (a path relative to a run's folder) names a file a run writes."""
    return _named(rel, RUN_NAMES)


def _named(rel: str, names: dict[str, re.Pattern]) -> bool:
    """Whether the path ``rel`` (relative to a run's folder) is one of ``names``."""
    folder, _, name = rel.rpartition("/")
    return folder in names and bool(names[folder].match(name))


def _steps(folder: Path, suffix: str) -> list[tuple[int, Path]]:
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir()
             if (m := STEP.match(p.name)) and p.name == f"{step_name(int(m.group(1)))}{suffix}"]
    return sorted(found)


# ----------------------------------------------------------------------------- the store


def store() -> Path:
    """The run store's root: ``$CLASSSEL_RUNS``, else ``runs/`` at the project root (or here)."""
    env = os.environ.get("CLASSSEL_RUNS")
    if env:
        return Path(env)
    project = Path(__file__).resolve().parents[1]
    return (project if (project / "pyproject.toml").exists() else Path.cwd()) / "runs"


def configuration(config_hash: str) -> Path:
    """The identity file shared by every seed of a configuration."""
    return store() / config_hash / CONFIG


def runs_in(root: Path) -> list[RunFiles]:
    """Every run folder of the store ``root`` (finished or not), sorted."""
    return [RunFiles(p) for p in sorted(Path(root).glob("*/seed*"))
            if p.is_dir() and SEED_FOLDER.match(p.name) and p.parent.name != RESULTS]


def run(config_hash: str, seed: int) -> RunFiles:
    return RunFiles(store() / config_hash / f"seed{seed}")


def results(section: str, out_dir=None) -> Path:
    """Where a section notebook writes its figures and tables (``<store>/results/<section>``), created."""
    folder = Path(out_dir) if out_dir is not None else store() / RESULTS / section
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _ours(files: RunFiles) -> bool:
    """Whether the folder's config.json is one that :func:`classsel.train.describe` wrote."""
    try:
        info = json.loads(files.config.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and isinstance(info.get("config"), dict) and isinstance(info.get("hash"), str)


def check_out(cfg, out: str | os.PathLike, resume: bool) -> None:
    """Refuse a folder that a run of the configuration ``cfg`` must not be written into: a file, the run
    store's root or another place in the store than the run's own, a folder holding anything a run does
    not write, and (``resume``) a folder holding no run. Reads files only (the command line calls it
    before torch loads)."""
    from .config import config_hash

    files = RunFiles(out)
    root, where = files.root.resolve(), f"--out {str(files.root)!r}"
    if files.root.exists() and not files.root.is_dir():
        raise ValueError(f"{where} is a file: expected a folder for the run")
    top = store().resolve()
    own = run(config_hash(cfg), cfg.seed).root.resolve()
    inside = root.relative_to(top).parts if root.is_relative_to(top) else None
    # the store reads <hash>/seed<S> as a run of <hash>, and results/ as the notebooks'
    if inside is not None and root != own and (
            not inside or inside[0] == RESULTS
            or (len(inside) == 2 and SEED_FOLDER.match(inside[1]))):
        raise ValueError(f"{where} is {'the root of' if not inside else 'a folder of'} the run store {top}, "
                         f"where a run's folder is <config hash>/seed<S> (this one's: {own}): leave out --out, "
                         "or name a folder outside the store")
    foreign = files.foreign()
    if not foreign and files.config.exists() and not _ours(files):
        foreign = [files.config]
    if foreign:
        shown = ", ".join(repr(files.relative(p)) for p in foreign[:3]) + (" ..." if len(foreign) > 3 else "")
        raise ValueError(f"{where} holds {shown}, which a run does not write: expected a new or empty folder, or "
                         "a run's own folder (nothing of it was changed)")
    # a run writes config.json before these: without it they are someone else's
    finals = [p for p in (files.metrics, files.done, files.manifest, files.imported) if p.exists()]
    if not foreign and finals and not _ours(files):
        raise ValueError(f"{where} holds {', '.join(repr(p.name) for p in finals)} but no config.json of a run: "
                         "expected a new or empty folder, or a run's own folder (nothing of it was changed)")
    if resume and not (_ours(files) or files.checkpoints()):
        state = "does not exist" if not files.root.exists() else "holds no run"
        raise ValueError(f"{where} {state}: nothing to resume (leave out --resume to start a new run there)")
