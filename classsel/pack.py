"""Results packs: what the notebooks read from a run store, without checkpoints, in one archive.

A pack is a gzip-compressed tar archive. Its first member, ``PACK.json``, lists every other
member with its size and SHA-256 and names the runs it holds; the members are, by their path
in the store (:mod:`classsel.layout`):

    <hash>/config.json                      the configuration's identity
    <hash>/seed<S>/...                      a finished run: every file of its manifest but the
                                            checkpoints, the manifest, DONE, and the cached
                                            derived analyses with their checksums
    results/<section>/...                   the notebooks' figures and tables

Members are sorted and carry fixed times, owners and modes, so one store always gives the same
bytes. Importing checks every checksum and every run's configuration against its hash before
anything is written, refuses a path that would leave the store or the pack's layout, a run the
store holds with other content and a file where a folder must go; it writes all or nothing
(staged, then renamed into place, moved back on a failure), and marks each imported run
(``IMPORTED``): the run store then treats it as intact without its checkpoints, and a request
for one (:meth:`classsel.runs.Run.model`) says how to train the run.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import zlib
from pathlib import Path, PurePosixPath

from . import layout, manifest
from .config import config_hash
from .layout import RunFiles, atomic_write

#: The pack's table of contents, its first member.
INDEX = "PACK.json"
FORMAT = 1
RESULTS = layout.RESULTS
#: A run's path in the store and in a pack: ``<config hash>/seed<S>``.
RUN = re.compile(r"^[0-9a-f]+/seed\d+$")
HASH = re.compile(r"^[0-9a-f]+$")


# ----------------------------------------------------------------------------- export


def finished_runs(root: Path, configs=None) -> list[RunFiles]:
    """The finished runs (with DONE) of the store ``root``, sorted; only those of the
    configuration hashes ``configs`` when given (an error names one the store lacks)."""
    found = [f for f in layout.runs_in(root) if f.done.is_file()]
    if configs is not None:
        have = {f.root.parent.name for f in found}
        unknown = sorted(set(configs) - have)
        if unknown:
            raise ValueError(f"configuration(s) {unknown} have no finished run in {root}; "
                             f"those that have: {sorted(have) or 'none'}")
        found = [f for f in found if f.root.parent.name in configs]
    if not found:
        raise ValueError(f"no finished run in the run store {root}: nothing to pack")
    return found


def _run_members(files: RunFiles) -> tuple[list[Path], list[str]]:
    """The files of a finished run that go into a pack, checked, and the checkpoints left out."""
    if not files.manifest.is_file():
        raise ValueError(f"run {files.root} has no manifest (it finished before runs had one): use it once "
                         "through the run store (classsel.runs.ensure, or the notebooks), which records it, "
                         "then export again")
    entries = manifest.read(files)
    kept = files.without_checkpoints(entries)
    problems = manifest.check(files, kept)
    if problems:
        raise ValueError(f"run {files.root} differs from its manifest ({'; '.join(map(str, problems))}); "
                         "execute its notebook once so that the run store mends it, then export again")
    derived = []
    for table in sorted(files.derived_dir.glob("*.csv")) if files.derived_dir.is_dir() else []:
        checksum = table.with_name(table.name + ".sha256")
        if not checksum.is_file() or checksum.read_text().strip() != manifest.sha256(table):
            raise ValueError(f"the cached analysis {table} does not match its checksum {checksum.name}: "
                             "remove both (the notebook computes them again from the checkpoints), "
                             "then export again")
        derived += [table, checksum]
    members = [files.root / rel for rel in kept] + [files.manifest, files.done] + derived
    return members, sorted(set(entries) - set(kept))


def contents(root: Path, configs=None) -> tuple[dict[str, Path], dict[str, list[str]]]:
    """``{path in the pack: file}`` of everything a pack of ``root`` holds, and the checkpoints
    left out of each run (``{"<hash>/seed<S>": [...]}``)."""
    members, left_out = {}, {}
    for files in finished_runs(root, configs):
        run_files, checkpoints = _run_members(files)
        members.update({p.relative_to(root).as_posix(): p for p in run_files})
        shared = files.shared_config
        if shared.is_file():
            members[shared.relative_to(root).as_posix()] = shared
        left_out[files.root.relative_to(root).as_posix()] = checkpoints
    results = root / RESULTS
    if results.is_dir():
        members.update({p.relative_to(root).as_posix(): p for p in results.rglob("*")
                        if p.is_file() and not layout.TEMPORARY.match(p.name)})
    return dict(sorted(members.items())), left_out


def _member(name: str, size: int) -> tarfile.TarInfo:
    """A tar header that depends on nothing but the name and size (no times, owners or umask)."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o644
    info.uid, info.gid, info.uname, info.gname = 0, 0, "", ""
    return info


def export_pack(file, store=None, configs=None) -> dict:
    """Write the pack of the run store ``store`` (default: :func:`classsel.layout.store`) to
    ``file``: every finished run (or those of the configuration hashes ``configs``) and the
    results folder. Returns the pack's index."""
    root = Path(store) if store is not None else layout.store()
    members, left_out = contents(root, configs)
    files = {}
    for name, path in members.items():
        data = path.read_bytes()
        files[name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    index = {"format": FORMAT, "runs": sorted(left_out), "checkpoints_left_out": left_out, "files": files}
    file = Path(file)
    tmp = layout.temporary(file)
    try:
        # mtime=0 and no file name in the gzip header: the same store gives the same bytes.
        with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            blob = json.dumps(index, indent=1, sort_keys=True).encode()
            tar.addfile(_member(INDEX, len(blob)), io.BytesIO(blob))
            for name, path in members.items():
                data = path.read_bytes()
                if hashlib.sha256(data).hexdigest() != files[name]["sha256"]:
                    raise ValueError(f"{path} changed while the pack was written; export again")
                tar.addfile(_member(name, len(data)), io.BytesIO(data))
        os.replace(tmp, file)
    finally:
        tmp.unlink(missing_ok=True)
    return index


# ----------------------------------------------------------------------------- import


class _Pack:
    """The members of a pack file, read as a stream; every error names the file."""

    def __init__(self, file: Path):
        self.file = file

    def damaged(self, what: str) -> ValueError:
        return ValueError(f"the results pack {self.file} {what}; nothing was imported")

    def members(self):
        """``(name, bytes)`` of every member after the index, the index first as ``(INDEX, dict)``."""
        try:
            with tarfile.open(self.file, "r:gz") as tar:
                for info in tar:
                    if not info.isfile():
                        raise self.damaged(f"holds {info.name!r}, which is not a plain file")
                    data = tar.extractfile(info).read()
                    yield info.name, data
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
            raise self.damaged(f"is damaged or not a pack ({type(e).__name__}: {e})") from None

    def checked(self, root: Path):
        """The index, then ``(name, bytes)`` of each member, each checked against the index."""
        stream = self.members()
        name, blob = next(stream, (None, None))
        if name != INDEX:
            raise self.damaged(f"does not begin with its index {INDEX}")
        try:
            index = json.loads(blob)
            files = index["files"]
            shapes = [(files, dict), (index["runs"], list), (index["checkpoints_left_out"], dict)]
        except (ValueError, KeyError, TypeError) as e:
            raise self.damaged(f"has an unreadable index {INDEX} ({e})") from None
        if not all(isinstance(value, kind) for value, kind in shapes):
            raise self.damaged(f"has an index {INDEX} without the files, runs and checkpoints of format "
                               f"{FORMAT}")
        if index.get("format") != FORMAT:
            raise self.damaged(f"has format {index.get('format')!r}; this version reads format {FORMAT}")
        for run in index["runs"]:
            if not RUN.match(str(run)) or f"{run}/DONE" not in files or f"{run}/{layout.CONFIG}" not in files:
                raise self.damaged(f"names the run {run!r}, which is not <config hash>/seed<S> with a DONE "
                                   f"file and a {layout.CONFIG}")
        for member in files:
            _inside(self, root, member, index["runs"])
        folders = {"/".join(PurePosixPath(m).parts[:i]) for m in files for i in range(1, len(PurePosixPath(m).parts))}
        clash = sorted(folders & set(files))
        if clash:
            raise self.damaged(f"holds {clash[0]!r} both as a file and as a folder of other files")
        yield index
        seen = set()
        for name, data in stream:
            entry = files.get(name)
            if entry is None or name in seen:
                raise self.damaged(f"holds {name!r}, which its index does not list (or lists once)")
            if len(data) != entry["size"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
                raise self.damaged(f"holds {name}, which does not match its checksum")
            if PurePosixPath(name).name == layout.CONFIG:
                self.check_config(name, data)
            seen.add(name)
            yield name, data
        missing = sorted(set(files) - seen)
        if missing:
            raise self.damaged(f"lacks {missing[0]}, which its index lists" +
                               (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))

    def check_config(self, name: str, data: bytes) -> None:
        """A configuration's identity, or a run's config.json, must be what its folder's hash (and
        seed) say: else the run store would give this run for another configuration."""
        parts = PurePosixPath(name).parts
        try:
            saved = json.loads(data)
            config = saved if len(parts) == 2 else saved["config"]
            found = config_hash(config)
            seed = None if len(parts) == 2 else config["seed"]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise self.damaged(f"holds {name}, which is not a configuration ({type(e).__name__}: {e})") from None
        if found != parts[0]:
            raise self.damaged(f"holds {name}, whose configuration has the hash {found}, not {parts[0]}: the "
                               "run would stand for another configuration")
        if seed is not None and f"seed{seed}" != parts[1]:
            raise self.damaged(f"holds {name}, a run of seed {seed!r}, in the folder {parts[1]}")


#: What a run's folder in a pack may hold: its files, but the checkpoints and the marks the
#: store itself writes.
NOT_PACKED = ("checkpoints", ".lock", "IMPORTED", "VERIFIED.json")


def _inside(pack: _Pack, root: Path, name: str, runs: list[str]) -> Path:
    """Where the member ``name`` goes in the store; an error for a path outside the store or
    outside the pack's layout (a run's files, a configuration's identity, the results)."""
    parts = PurePosixPath(name).parts
    escapes = (not parts or PurePosixPath(name).is_absolute() or ".." in parts or "\\" in name
               or not (root / name).resolve().is_relative_to(root.resolve()))
    if escapes:
        raise pack.damaged(f"holds {name!r}, a path that leaves the run store {root}")
    in_run = len(parts) > 2 and "/".join(parts[:2]) in runs
    known = ((parts[0] == RESULTS and len(parts) > 2)  # results/<section>/<file>
             or (len(parts) == 2 and parts[1] == layout.CONFIG and HASH.match(parts[0]))
             or (in_run and parts[2] not in NOT_PACKED and layout.run_file("/".join(parts[2:]))))
    if not known or layout.TEMPORARY.match(parts[-1]):
        raise pack.damaged(f"holds {name!r}, which is not a file of a results pack")
    return root / name


def import_pack(file, store=None) -> tuple[list[str], list[str]]:
    """Check the pack ``file`` and load it into the run store ``store`` (default:
    :func:`classsel.layout.store`). Returns the runs imported and those the store already held
    with the same content. Nothing is written when the pack is damaged or when the store holds a
    run, or another file, with different content."""
    file, root = Path(file), Path(store) if store is not None else layout.store()
    pack = _Pack(file)
    stream = pack.checked(root)
    index = next(stream)
    for _ in stream:  # every checksum, before anything is written
        pass
    files, runs = index["files"], index["runs"]
    present, conflicts = [], []
    for run in runs:
        folder = root / run
        if not folder.exists():
            continue
        own = [n for n in files if n.startswith(run + "/")]
        differ = [n for n in own if not _same(root / n, files[n])]
        if differ:
            conflicts.append(f"run {run} exists in {root} with different content ({differ[0]} "
                             f"{'differs' if (root / differ[0]).exists() else 'is missing there'})")
        else:
            present.append(run)
    for name in files:
        target = root / name
        in_run = "/".join(PurePosixPath(name).parts[:2]) in runs
        if not in_run and target.exists() and not _same(target, files[name]):
            conflicts.append(f"{target} exists with different content")
    for name in files:
        parent = next((p for p in reversed((root / name).parents) if p.is_relative_to(root) and p.exists()
                       and not p.is_dir()), None)
        if parent is not None:
            conflicts.append(f"{parent} is a file where the pack needs a folder")
    if conflicts:
        raise ValueError(f"cannot import {file}: {'; '.join(dict.fromkeys(conflicts))}. Nothing was imported; "
                         "remove what differs, or import into another store (--store)")
    added = [r for r in runs if r not in present]
    _write(pack, root, index, added, present)
    return added, present


def _same(path: Path, entry: dict) -> bool:
    """Whether the file ``path`` is the pack's file of index entry ``entry``."""
    return (path.is_file() and path.stat().st_size == entry["size"]
            and manifest.sha256(path) == entry["sha256"])


def _write(pack: _Pack, root: Path, index: dict, added: list[str], present: list[str]) -> None:
    """Write the members all at once or not at all: into a staging folder in the store (the pack
    read a second time and checked again on the way), then each new run and file renamed into
    place; a failure moves back what was moved and removes the folders it made."""
    made = [p for p in [root, *root.parents] if not p.exists()][::-1]  # the store's own folders, made here
    root.mkdir(parents=True, exist_ok=True)
    staging = layout.temporary(root / "import")
    moved: list[tuple[Path, Path]] = []
    try:
        stream = pack.checked(root)
        next(stream)
        places = []
        for name, data in stream:
            run = "/".join(PurePosixPath(name).parts[:2])
            if run in present or (run not in added and (root / name).exists()):
                continue  # the same content is there (checked before)
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(data)
            places.append(run if run in added else name)
        pack_sha256 = manifest.sha256(pack.file)
        for run in added:
            mark = {"pack": pack.file.name, "pack_sha256": pack_sha256,
                    "checkpoints_left_out": index["checkpoints_left_out"].get(run, [])}
            atomic_write(RunFiles(staging / run).imported, json.dumps(mark, indent=1).encode())
        for place in dict.fromkeys(places):
            target = root / place
            missing = [p for p in target.parents if p.is_relative_to(root) and not p.exists()][::-1]
            for folder in missing:
                folder.mkdir()
                made.append(folder)
            os.rename(staging / place, target)
            moved.append((target, staging / place))
    except BaseException:
        for target, staged in reversed(moved):
            os.rename(target, staged)
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty: never what was there before
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
