"""A book build shows what it was asked for: the notebooks execute again when the preset, the run
store or the library changed, not only their code, and the first chapter says what it shows."""

import os
import re
import shutil

from conftest import build_book

from classsel import book

EXECUTED = re.compile(r"notebooks/(\d\d_\w+)\.ipynb: Executing notebook")


def executed(log: str) -> list[str]:
    return sorted(set(EXECUTED.findall(log)))


def test_the_inputs_digest_follows_preset_store_and_library(tmp_path, monkeypatch):
    monkeypatch.setenv("CLASSSEL_RUNS", str(tmp_path / "a"))
    monkeypatch.setenv("CLASSSEL_PRESET", "smoke")
    first = book.inputs_digest()
    assert book.inputs_digest() == first
    monkeypatch.setenv("CLASSSEL_PRESET", "mnist")
    assert book.inputs_digest() != first
    monkeypatch.setenv("CLASSSEL_PRESET", "smoke")
    monkeypatch.setenv("CLASSSEL_RUNS", str(tmp_path / "b"))
    assert book.inputs_digest() != first
    monkeypatch.setenv("CLASSSEL_RUNS", str(tmp_path / "a"))
    run = tmp_path / "a" / "0123456789" / "seed0"
    run.mkdir(parents=True)
    (run / "MANIFEST.json").write_text("{}")  # a run finished in the store
    assert book.inputs_digest() != first
    source = tmp_path / "module.py"
    source.write_text("x = 1\n")
    before = book.digest([source])
    source.write_text("x = 2\n")  # the library's digest is that of its sources
    assert book.digest([source]) != before


def test_a_rebuild_executes_again_only_what_changed(smoke_book, smoke_store, tmp_path):
    chapters = ["00_what_reproduces", "01_emergence", "02_ablation", "03_cka", "04_regularize", "05_promote",
                "06_class_representation", "07_architectures"]
    assert executed((smoke_book / "build.log").read_text()) == chapters
    env = {**os.environ, "CLASSSEL_PRESET": "smoke", "CLASSSEL_RUNS": str(smoke_store)}
    again = build_book(smoke_book, env)
    assert again.returncode == 0 and executed(again.stdout + again.stderr) == [], again.stdout[-3000:]
    # the same runs in another store: another input, so every chapter runs again and says so
    moved = tmp_path / "runs"
    shutil.copytree(smoke_store, moved)
    rebuilt = build_book(smoke_book, {**env, "CLASSSEL_RUNS": str(moved)})
    assert rebuilt.returncode == 0, (rebuilt.stdout + rebuilt.stderr)[-3000:]
    assert executed(rebuilt.stdout + rebuilt.stderr) == chapters
    first = (smoke_book / "_build" / "html" / "notebooks" / "00_what_reproduces.html").read_text()
    assert "This build shows the <strong>smoke</strong> preset" in first
    # back to the first inputs: their executions are still cached, and the session's book is as it was
    back = build_book(smoke_book, env)
    assert back.returncode == 0 and executed(back.stdout + back.stderr) == [], back.stdout[-3000:]
