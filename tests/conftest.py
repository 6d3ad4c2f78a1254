"""Shared test fixtures."""

import os
import time

# OpenMP threads that wait by sleeping, not spinning: on a machine whose cores other work keeps busy, a
# spinning thread burns the time slice its partner needs to reach the barrier (a test's two-thread
# training step took 2.4x its idle time next to two busy processes, 1.4x with passive waits; the same
# on an idle machine, and the same arithmetic). Set before torch loads its OpenMP runtime; the
# processes the tests start (kernels, workers, the command line) inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def share_the_cores() -> None:
    """Under `make test`'s processes (pytest-xdist), each runs on its own share of the cores, and so does
    everything it starts (kernels, training workers, the command line): the project sizes its worker
    pools and torch threads by the cores a process may use (:func:`classsel.parallel.cores`), so two
    test processes never run four or more compute threads on two cores (on a busy 2-core machine a
    training step waited for a descheduled partner thread several times its own work)."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker or count < 2 or not hasattr(os, "sched_setaffinity"):
        return
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= count:
        os.sched_setaffinity(0, cpus[int(worker.removeprefix("gw")) % count::count])


share_the_cores()  # before torch sizes its thread pool

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402


def write_imagefolder(root, splits=("train", "val"), classes=("cat", "dog", "fish"), per_class=4):
    """A small ImageFolder tree of random images with varying sizes, aspect ratios and formats.

    ``per_class`` is a count for every split or a dict of counts per split."""
    rng = np.random.default_rng(0)
    for split in splits:
        count = per_class[split] if isinstance(per_class, dict) else per_class
        for c in classes:
            folder = root / split / c
            folder.mkdir(parents=True)
            for i in range(count):
                h, w = 40 + 7 * (i % 5), 50 - 3 * (i % 5)
                pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                ext = "JPEG" if i % 2 else "png"
                Image.fromarray(pixels).save(folder / f"{c}_{i}.{ext}")
    return root


@pytest.fixture(scope="session")
def imagefolder_tree():
    """The function that writes an ImageFolder tree (see :func:`write_imagefolder`)."""
    return write_imagefolder


def wait_until(condition, process=None, poll: float = 0.02) -> bool:
    """Wait until ``condition()`` holds or ``process`` (a Popen, a Thread) has ended; whether it held.

    No deadline: a slow or busy machine may take as long as its honest work takes (pytest-timeout's
    limit in pyproject.toml catches a hang)."""
    def ended():
        return process is not None and (process.poll() is not None if hasattr(process, "poll")
                                        else not process.is_alive())

    while not condition():
        if ended():
            return condition()
        time.sleep(poll)
    return True


def pytest_configure(config):
    # registered here so the marker lives with the tests that use it (tests/test_cuda.py)
    config.addinivalue_line("markers", "cuda: needs a CUDA device; skipped where torch.cuda.is_available() is False")


ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
#: The book's notebooks, in order.
CHAPTERS = ["00_what_reproduces", "01_emergence", "02_ablation", "03_cka", "04_regularize", "05_promote",
            "06_class_representation", "07_architectures"]


def executed(log: str) -> list[str]:
    """The notebooks a book build's log says it executed (not taken from the execution cache)."""
    import re

    return sorted(set(re.findall(r"notebooks/(\d\d_\w+)\.ipynb: Executing notebook", log)))


def build_book(out, env, *options, strict=True):
    """``jupyter-book build book -W -n --keep-going`` into ``out`` with the project's configuration
    (no limit per cell: the execution waits for kernel replies in short polls instead, so a lost reply
    cannot stall it, and a slow machine may take as long as its honest work takes); ``options``: more of
    jupyter-book's, such as ``--toc`` and ``--config``; not ``strict``: without -W (a book of some
    chapters refers to figures of others)."""
    import subprocess
    import sys
    from pathlib import Path

    jb = Path(sys.executable).with_name("jupyter-book")
    strictness = ["-W", "-n", "--keep-going"] if strict else ["-n"]
    return subprocess.run([str(jb), "build", "book", "--path-output", str(out), *strictness, *map(str, options)],
                          cwd=ROOT, env=env, capture_output=True, text=True)


def first_chapter_book(folder, cache) -> list:
    """jupyter-book options for a book of chapter 00 alone (the table of every claim, computed from every
    section) whose executions are cached in ``cache``, another build's execution cache: its table of
    contents and configuration, written into ``folder``."""
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["cache"] = str(cache)
    (folder / "_config.yml").write_text(yaml.safe_dump(config))
    (folder / "_toc.yml").write_text("format: jb-book\nroot: notebooks/00_what_reproduces\n")
    return ["--toc", folder / "_toc.yml", "--config", folder / "_config.yml"]


def reproduce(store, *args, env=None):
    """``python -m classsel reproduce --preset smoke`` into the run store ``store``."""
    import os
    import subprocess
    import sys

    env = {**os.environ, **(env or {}), "CLASSSEL_RUNS": str(store)}
    return subprocess.run([sys.executable, "-m", "classsel", "reproduce", "--preset", "smoke", "--no-progress",
                           *args], cwd=ROOT, env=env, capture_output=True, text=True)


def run_files(store) -> list:
    """The files of a run store that training and analyses write: not the notebooks' ``results/``, nor
    ``VERIFIED.json`` (which only remembers which checkpoints were found intact). Equal before and after
    something means it trained and analysed nothing."""
    return sorted(p for p in store.rglob("*") if "results" not in p.parts and p.name != "VERIFIED.json")


@pytest.fixture(scope="session")
def smoke_store(tmp_path_factory):
    """The run store of the smoke book's plan, fulfilled once per test session, as `make book` does
    first. Tests read it and never change it (one that must, copies it)."""
    store = tmp_path_factory.mktemp("smoke") / "runs"
    r = reproduce(store)
    assert r.returncode == 0, r.stderr[-5000:]
    return store


@pytest.fixture(scope="session")
def smoke_book(smoke_store, tmp_path_factory):
    """The smoke-preset book, built once per session from :func:`smoke_store` (whose ``results/`` its
    notebooks write): the build's output folder (``_build/html`` in it)."""
    import os

    out = tmp_path_factory.mktemp("book")
    env = {**os.environ, "CLASSSEL_PRESET": "smoke", "CLASSSEL_RUNS": str(smoke_store)}
    r = build_book(out, env)  # -W: a warning fails the build
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    (out / "build.log").write_text(r.stdout + r.stderr)
    return out


# --- the suite in two processes (pytest-xdist, `make test`: -n 2 --dist loadgroup) ---------------------
#: What a unit of scheduling is: the tests that read the session's smoke store or book run in one process,
#: in their order (the book tests build on each other, and the store and book are built once); the others
#: go by module, so a module's fixtures are made once.
SMOKE = {"smoke_store", "smoke_book"}


#: The modules whose tests take longest, longest first (`--durations` of the suite on a busy 2-core
#: machine: 270, 230, 230, 110, 110, 70 s ...): `make test` hands out the groups in the order of the
#: collection (--no-loadscope-reorder), so that the last groups to start are short ones and neither process
#: is left alone with a long one at the end.
LONGEST_FIRST = ("test_parallel", "test_cluster", "test_notebooks", "test_train", "test_cuda", "test_faults",
                 "test_plan", "test_architectures", "test_distributed", "test_pipeline")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the marks
def pytest_collection_modifyitems(config, items):
    smoke = {id(item) for item in items if SMOKE & set(getattr(item, "fixturenames", ()))}
    for item in items:
        item.add_marker(pytest.mark.xdist_group("smoke" if id(item) in smoke else item.module.__name__))

    def rank(item):
        # the smoke tests first: theirs is the suite's longest chain (the store, the book, the builds after
        # it); then the longest modules
        name = item.module.__name__
        if id(item) in smoke:
            return (0,)
        return (1, LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST))

    items.sort(key=rank)  # stable: each group's tests in their order
