"""A book build shows what it was asked for: the notebooks execute again when the preset, the run
store or the library changed, not only their code, and the first chapter says what it shows."""

import os

from conftest import CHAPTERS, build_book, executed

from classsel import book


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


def test_a_rebuild_with_the_same_inputs_executes_nothing(smoke_book, smoke_store):
    """The session's book executed every chapter; built again with the same inputs, it executes none
    (another store's runs execute them all again: tests/test_pack.py, the book built from a pack)."""
    assert executed((smoke_book / "build.log").read_text()) == CHAPTERS
    first = (smoke_book / "_build" / "html" / "notebooks" / "00_what_reproduces.html").read_text()
    assert "This build shows the <strong>smoke</strong> preset" in first
    env = {**os.environ, "CLASSSEL_PRESET": "smoke", "CLASSSEL_RUNS": str(smoke_store)}
    again = build_book(smoke_book, env)
    assert again.returncode == 0 and executed(again.stdout + again.stderr) == [], again.stdout[-3000:]


def test_the_scales_table_states_each_presets_configuration():
    """The reproducibility page's table of presets is the configuration the presets train with."""
    import dataclasses
    from pathlib import Path

    from classsel.config import PRESETS, Config

    page = (Path(__file__).resolve().parents[1] / "book" / "reproducibility.md").read_text()
    rows = {line.split("|")[1].strip().split()[0].strip("`"): [c.strip() for c in line.split("|")[2:-1]]
            for line in page.split("## Scales")[1].split("\n\n")[2].splitlines() if line.startswith("| `")}
    assert set(rows) == set(PRESETS)
    for preset, (data_, network, epochs, batch, lr, steps) in rows.items():
        c = dataclasses.replace(Config(), **PRESETS[preset])
        assert (int(epochs), int(batch), float(lr.split(",")[0])) == (c.epochs, c.batch_size, c.lr), preset
        assert (steps == "none" and not c.eval_steps) or [int(s) for s in steps.split(", ")] == list(c.eval_steps)
        if "narrow" in network:
            assert network == f"narrow, width {c.width}", preset
        if c.per_class is not None:
            assert f"{c.per_class} + {c.val_per_class} images per class" in data_, preset
        if c.lr_step is not None:
            assert f"÷10 every {c.lr_step} epochs" in lr, preset
