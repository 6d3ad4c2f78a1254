"""Results packs: a store's results without checkpoints, exported byte for byte the same,
imported only when intact, enough to build the book without training, and explicit about
what they lack."""

import gzip
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pandas as pd
import papermill
import pytest

from classsel import layout, pack, runs
from conftest import CHAPTERS, build_book, executed, first_chapter_book
from classsel.config import config_hash, from_dict

ROOT = Path(__file__).resolve().parents[1]
# Every notebook of the book, in order.
# The figures' source tables and the numbers the notebooks state.
TABLES = (".csv", ".md")


def cli(*args, store):
    return subprocess.run([sys.executable, "-m", "classsel", "pack", *map(str, args), "--store", str(store)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def execute(name, store, **parameters):
    """Run a section notebook on the smoke preset with ``store`` as its run store (results into
    ``<store>/results``)."""
    env = os.environ.get("CLASSSEL_RUNS")
    os.environ["CLASSSEL_RUNS"] = str(store)
    try:
        papermill.execute_notebook(
            str(ROOT / "notebooks" / f"{name}.ipynb"), str(store.parent / f"{name}.{store.name}.ipynb"),
            parameters={"preset": "smoke", **parameters}, kernel_name="python3", cwd=str(ROOT / "notebooks"),
            progress_bar=False)
    finally:
        if env is None:
            del os.environ["CLASSSEL_RUNS"]
        else:
            os.environ["CLASSSEL_RUNS"] = env


def snapshot(root: Path, skip=("results",)) -> dict[str, str]:
    """SHA-256 of every file under ``root`` but those in the top-level folders ``skip``."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.relative_to(root).parts[0] not in skip}


def tables(results: Path) -> dict[str, bytes]:
    return {p.relative_to(results).as_posix(): p.read_bytes() for p in sorted(results.rglob("*"))
            if p.suffix in TABLES}


@pytest.fixture(scope="module")
def source(smoke_book, smoke_store, tmp_path_factory):
    """The session's smoke store, its results written by the book's notebooks, and its pack."""
    store = smoke_store
    file = tmp_path_factory.mktemp("pack") / "results.tar.gz"
    r = cli("export", file, store=store)
    assert r.returncode == 0, r.stderr
    return store, file


def test_the_pack_holds_everything_but_checkpoints_and_is_reproducible(source, tmp_path):
    store, file = source
    again = tmp_path / "again.tar.gz"
    assert cli("export", again, store=store).returncode == 0
    assert again.read_bytes() == file.read_bytes()
    with tarfile.open(file, "r:gz") as tar:
        names = tar.getnames()
        index = json.loads(tar.extractfile(pack.INDEX).read())
    assert names[0] == pack.INDEX and names[1:] == sorted(names[1:]) == sorted(index["files"])
    assert not any("/checkpoints/" in n for n in names)
    finished = sorted(p.relative_to(store).as_posix() for p in store.glob("*/seed*") if (p / "DONE").exists())
    assert index["runs"] == finished and len(finished) >= 6
    for run in finished:
        files = layout.RunFiles(store / run)
        on_disk = {f"{run}/{files.relative(p)}" for p in files.root.rglob("*")
                   if p.is_file() and p.parent != files.checkpoints_dir and p not in (files.lock, files.verified)}
        assert {n for n in names if n.startswith(run + "/")} == on_disk
        assert index["checkpoints_left_out"][run] == [files.relative(p) for _, p in files.checkpoints()]
    derived = [n for n in names if "/derived/" in n]
    assert any("ablation_step" in n for n in derived) and any("cka_step" in n for n in derived)
    assert {n for n in names if n.startswith("results/")} == {
        p.relative_to(store).as_posix() for p in (store / "results").rglob("*") if p.is_file()}
    for name in names[1:]:
        assert index["files"][name]["sha256"] == hashlib.sha256((store / name).read_bytes()).hexdigest()
    sizes = {"store": sum(p.stat().st_size for p in store.rglob("*") if p.is_file()),
             "pack": file.stat().st_size}
    print(f"\nsmoke store {sizes['store']} bytes, its pack {sizes['pack']} bytes "
          f"({sizes['pack'] / sizes['store']:.1%})")


def test_selected_configurations_only(source, tmp_path):
    store, _ = source
    chosen = sorted({p.parent.parent.name for p in store.glob("*/seed*/DONE")})[0]
    r = cli("export", tmp_path / "one.tar.gz", "--config", chosen, store=store)
    assert r.returncode == 0, r.stderr
    with tarfile.open(tmp_path / "one.tar.gz", "r:gz") as tar:
        index = json.loads(tar.extractfile(pack.INDEX).read())
    assert index["runs"] and all(run.startswith(chosen + "/") for run in index["runs"])
    r = cli("export", tmp_path / "none.tar.gz", "--config", "0123456789", store=store)
    assert r.returncode == 2 and "configuration(s) ['0123456789'] have no finished run" in r.stderr
    assert not (tmp_path / "none.tar.gz").exists()


def test_a_book_built_from_the_pack_trains_nothing_and_gives_the_same_tables(source, smoke_book, tmp_path):
    """The pack's store builds the book without training: shown on its first chapter, whose table of
    every claim is computed from every section's runs and analyses (the session's book showed the other
    chapters built from the same runs); the execution cache follows the store."""
    store, file = source
    imported = tmp_path / "store"
    r = cli("import", file, store=imported)
    assert r.returncode == 0, r.stderr
    assert "imported" in r.stdout
    assert not list(imported.rglob("checkpoints"))
    assert tables(imported / "results") == tables(store / "results")  # the pack carried them
    shutil.rmtree(imported / "results")  # the book writes them again, from the imported runs alone
    before = snapshot(imported)
    # Chapter 00 alone, with the session's book's execution cache: the same notebook on another store's
    # runs is another input, so it executes again (its cached execution is not shown for these runs).
    (tmp_path / "book").mkdir()
    options = first_chapter_book(tmp_path / "book", smoke_book / "_build" / ".jupyter_cache")
    env = {**os.environ, "CLASSSEL_PRESET": "smoke", "CLASSSEL_RUNS": str(imported), "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    r = build_book(tmp_path / "html", env, *options, strict=False)
    print(f"\nchapter 00 built from the pack in {time.perf_counter() - start:.0f} s")
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    assert executed(r.stdout + r.stderr) == CHAPTERS[:1]
    # Nothing trained, measured, computed again or even locked: the store is as imported.
    assert snapshot(imported) == before
    assert sorted(p.parent.name for p in imported.rglob("IMPORTED")) == sorted(
        p.parent.name for p in store.glob("*/seed*/DONE"))
    built, original = tables(imported / "results"), tables(store / "results" / CHAPTERS[0])
    assert built == {f"{CHAPTERS[0]}/{name}": table for name, table in original.items()} and built
    # Back to the session's store: the session's execution is still cached, and shown.
    back = build_book(tmp_path / "html", {**env, "CLASSSEL_RUNS": str(store)}, *options, strict=False)
    assert back.returncode == 0 and executed(back.stdout + back.stderr) == [], back.stdout[-3000:]


@pytest.fixture()
def imported(source, tmp_path):
    store = tmp_path / "store"
    assert cli("import", source[1], store=store).returncode == 0
    return store


def test_a_notebook_needing_a_checkpoint_says_which_and_how_to_get_it(imported):
    # Ablation at 4 counts per curve was never computed: it needs the checkpoints.
    with pytest.raises(papermill.PapermillExecutionError) as err:
        execute("02_ablation", imported, levels=4)
    message = str(err.value)
    assert re.search(r"run [0-9a-f]{10}/seed0 has no checkpoint at step \d+ \(checkpoints/step\d{8}\.pt\)",
                     message)
    assert "imported from a results pack, which holds no checkpoints" in message
    assert "python -m classsel train --preset smoke --seed 0" in message
    assert not list(imported.rglob("checkpoints")) and not list(imported.rglob(".lock"))


def test_the_command_in_the_message_trains_the_same_run(imported, monkeypatch):
    monkeypatch.setenv("CLASSSEL_RUNS", str(imported))
    folder = next(p.parent for p in sorted(imported.glob("*/seed*/IMPORTED")))
    saved = json.loads((folder / "config.json").read_text())
    run = runs.Run(from_dict(saved["config"]), saved["config"]["seed"])
    assert run.hash == folder.parent.name and run.imported
    last = run.steps()[-1]
    with pytest.raises(ValueError, match=f"has no checkpoint at step {last}") as err:
        run.model(last)
    command = shlex.split(re.search(r"`(python -m classsel train [^`]*)`", str(err.value)).group(1))
    assert command[command.index("--out") + 1] == str(folder)
    metrics = run.metrics()
    shutil.rmtree(folder)
    # the source runs were trained by the run store's workers, one thread each (results depend on
    # the thread count): train this one with one thread too
    r = subprocess.run([sys.executable, *command[1:], "--no-progress"], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    assert config_hash(run.config) == json.loads((folder / "config.json").read_text())["hash"]
    assert not run.imported and run.model(last) is not None
    cols = [c for c in metrics.columns if not c.endswith("seconds")]
    pd.testing.assert_frame_equal(run.metrics()[cols], metrics[cols], check_exact=True)


def test_a_damaged_imported_run_is_set_aside_and_trained_again(imported, monkeypatch):
    monkeypatch.setenv("CLASSSEL_RUNS", str(imported))
    folder = next(p.parent for p in sorted(imported.glob("*/seed*/IMPORTED")))
    saved = json.loads((folder / "config.json").read_text())
    cfg = from_dict({**saved["config"], "progress": False})
    run = runs.Run(cfg, cfg.seed)
    assert runs.intact(run)  # without checkpoints
    run.files.si(run.steps()[1]).unlink()
    log = []
    (again,) = runs.ensure(cfg, [cfg.seed], log=log.append)
    assert any("imported from a results pack: no checkpoints to mend it from" in m for m in log), log
    assert any("training run" in m for m in log) and again.files.checkpoints() and not again.imported
    assert len(list(folder.parent.glob(f"{folder.name}.damaged-*"))) == 1


def test_importing_twice_changes_nothing_and_a_different_run_is_refused(source, imported):
    before = snapshot(imported, skip=())
    r = cli("import", source[1], store=imported)
    assert r.returncode == 0 and "were already in the store" in r.stdout, r.stderr
    assert snapshot(imported, skip=()) == before
    metrics = sorted(imported.glob("*/seed*/metrics.csv"))[0]
    metrics.write_text(metrics.read_text().replace("0.", "1.", 1))
    run = metrics.parent.relative_to(imported).as_posix()
    r = cli("import", source[1], store=imported)
    assert r.returncode == 2
    assert f"run {run} exists in {imported} with different content ({run}/metrics.csv differs)" in r.stderr
    # Another file, results included, is not overwritten either.
    (imported / run / "metrics.csv").unlink()
    shutil.rmtree(imported / run)
    table = sorted((imported / "results").rglob("*.csv"))[0]
    table.write_text("changed\n")
    r = cli("import", source[1], store=imported)
    assert r.returncode == 2 and f"{table} exists with different content" in r.stderr
    assert not (imported / run).exists(), "wrote part of the pack after refusing it"


def rewrite(file: Path, out: Path, change) -> Path:
    """A copy of the pack with ``change(name, data, index) -> (name, data)`` applied to each member
    (the index itself kept unless changed)."""
    with tarfile.open(file, "r:gz") as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar]
    index = json.loads(members[0][1])
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w") as tar:
        for name, data in [members[0], *(change(n, d, index) for n, d in members[1:])]:
            if name == pack.INDEX:
                data = json.dumps(index).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


def test_a_damaged_pack_is_refused_naming_the_file(source, tmp_path):
    store, file = source
    target = sorted(n for n in json.loads(tarfile.open(file).extractfile(pack.INDEX).read())["files"]
                    if n.endswith("metrics.csv") and "/seed" in n)[0]
    edited = rewrite(file, tmp_path / "edited.tar.gz",
                     lambda n, d, _: (n, d.replace(b"0.", b"1.", 1) if n == target else d))
    r = cli("import", edited, store=tmp_path / "a")
    assert r.returncode == 2
    assert f"the results pack {edited} holds {target}, which does not match its checksum" in r.stderr
    assert not (tmp_path / "a").exists()

    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    flipped = tmp_path / "flipped.tar.gz"
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    for bad in (cut, flipped, tmp_path / "edited.tar.gz"):
        r = cli("import", bad, store=tmp_path / "b")
        assert r.returncode == 2 and f"the results pack {bad} " in r.stderr and "Traceback" not in r.stderr
        assert "nothing was imported" in r.stderr
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("escape", ["../outside.csv", "/tmp/outside.csv", "results/../../outside.csv"])
def test_a_path_that_leaves_the_store_is_refused(source, tmp_path, escape):
    _, file = source

    def add(name, data, index):
        if name.startswith("results/") and name.endswith(".csv") and escape not in index["files"]:
            index["files"][escape] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            return escape, data
        return name, data

    bad = rewrite(file, tmp_path / "escape.tar.gz", add)
    r = cli("import", bad, store=tmp_path / "store")
    assert r.returncode == 2 and f"holds {escape!r}, a path that leaves the run store" in r.stderr, r.stderr
    assert not (tmp_path / "store").exists() and not (tmp_path / "outside.csv").exists()


# ----------------------------------------------------------------------------- all or nothing, checked


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A store of one smoke run and one results table, and its pack (no notebooks executed)."""
    store = tmp_path_factory.mktemp("small") / "store"
    env = os.environ.get("CLASSSEL_RUNS")
    os.environ["CLASSSEL_RUNS"] = str(store)
    try:
        from classsel.config import resolve

        runs.ensure(resolve("smoke", epochs=1, progress=False), [0], log=lambda *a: None)
    finally:
        if env is None:
            del os.environ["CLASSSEL_RUNS"]
        else:
            os.environ["CLASSSEL_RUNS"] = env
    (store / "results" / "01_emergence").mkdir(parents=True)
    (store / "results" / "01_emergence" / "si.csv").write_text("epoch,si\n0,0.1\n")
    file = store.parent / "small.tar.gz"
    pack.export_pack(file, store)
    return store, file


def add_member(name, data):
    """A ``rewrite`` change that adds the member ``name`` (listed in the index) after the first one."""
    def change(n, d, index):
        if name not in index["files"]:
            index["files"][name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            return [(n, d), (name, data)]
        return [(n, d)]
    return change


def rewrite_many(file: Path, out: Path, change) -> Path:
    """``rewrite`` where ``change`` returns a list of members for each one."""
    with tarfile.open(file, "r:gz") as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar]
    index = json.loads(members[0][1])
    rest = [m for n, d in members[1:] for m in change(n, d, index)]
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w") as tar:
        for name, data in [(pack.INDEX, json.dumps(index).encode()), *rest]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


def edit_config(run_config: bool):
    """A change that edits the learning rate in a configuration file, its checksum updated."""
    def change(n, d, index):
        parts = n.split("/")
        if parts[-1] == "config.json" and (len(parts) == 3) == run_config:
            saved = json.loads(d)
            (saved["config"] if run_config else saved)["lr"] = 0.5
            d = json.dumps(saved).encode()
            index["files"][n] = {"size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
        return [(n, d)]
    return change


@pytest.mark.parametrize("case,message", [
    ("results file", "holds 'results', which is not a file of a results pack"),
    ("results section file", "holds 'results/notes', which is not a file of a results pack"),
    ("foreign file in a run", "/seed0/notes.txt', which is not a file of a results pack"),
    ("lock in a run", "/seed0/.lock', which is not a file of a results pack"),
    ("file and folder", "holds 'results/01_emergence/si.csv' both as a file and as a folder"),
    ("run config", "whose configuration has the hash"),
    ("identity", "whose configuration has the hash"),
])
def test_a_pack_that_is_not_what_it_says_is_refused(small, tmp_path, case, message):
    _, file = small
    run = json.loads(tarfile.open(file).extractfile(pack.INDEX).read())["runs"][0]
    change = {"results file": add_member("results", b"x"),
              "results section file": add_member("results/notes", b"x"),
              "foreign file in a run": add_member(f"{run}/notes.txt", b"x"),
              "lock in a run": add_member(f"{run}/.lock", b"123"),
              "file and folder": add_member("results/01_emergence/si.csv/x.csv", b"x"),
              "run config": edit_config(True), "identity": edit_config(False)}[case]
    bad = rewrite_many(file, tmp_path / "bad.tar.gz", change)
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        pack.import_pack(bad, tmp_path / "store")
    assert "nothing was imported" in str(err.value)
    assert not (tmp_path / "store").exists()


def test_a_file_where_the_pack_needs_a_folder_is_refused_before_writing(small, tmp_path):
    _, file = small
    store = tmp_path / "store"
    store.mkdir()
    (store / "results").write_text("mine")
    with pytest.raises(ValueError, match=f"{store / 'results'} is a file where the pack needs a folder"):
        pack.import_pack(file, store)
    assert snapshot(store, skip=()) == {"results": hashlib.sha256(b"mine").hexdigest()}


@pytest.mark.parametrize("where", ["staging", "moving"])
def test_an_import_that_fails_half_way_leaves_the_store_as_it_was(small, tmp_path, monkeypatch, where):
    import errno

    _, file = small
    store = tmp_path / "store"
    (store / "results" / "other").mkdir(parents=True)
    (store / "results" / "other" / "mine.csv").write_text("mine")
    before = snapshot(store, skip=())
    calls = []
    if where == "staging":
        real = Path.write_bytes

        def write_bytes(self, data):
            calls.append(self)
            if len(calls) == 5:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(self, data)
        monkeypatch.setattr(Path, "write_bytes", write_bytes)
    else:
        real = os.rename

        def rename(a, b):
            calls.append(b)
            if len(calls) == 2 and Path(b).is_relative_to(store) and ".import.tmp" not in str(b):
                raise OSError(errno.EIO, "Input/output error")
            return real(a, b)
        monkeypatch.setattr(pack.os, "rename", rename)
    with pytest.raises(OSError):
        pack.import_pack(file, store)
    assert len(calls) >= 2
    monkeypatch.undo()
    assert snapshot(store, skip=()) == before
    assert sorted(p.relative_to(store).as_posix() for p in store.rglob("*")) == [
        "results", "results/other", "results/other/mine.csv"]
    added, present = pack.import_pack(file, store)  # and it imports whole afterwards
    assert len(added) == 1 and not present
    assert (store / added[0] / "IMPORTED").is_file() and (store / "results" / "01_emergence" / "si.csv").is_file()
