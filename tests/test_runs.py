"""The run store: reuse finished runs, resume partial ones, train missing ones."""

import os

import pytest
import torch

from classsel import layout, runs
from classsel.config import config_hash, resolve


@pytest.fixture()
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("CLASSSEL_RUNS", str(tmp_path / "store"))
    return tmp_path / "store"


def test_root_follows_the_environment(store, monkeypatch):
    assert layout.store() == store
    monkeypatch.delenv("CLASSSEL_RUNS")
    assert layout.store().name == "runs" and (layout.store().parent / "pyproject.toml").exists()


def test_identity_ignores_execution_details():
    a = resolve("smoke")
    assert config_hash(a) == config_hash(resolve("smoke", device="cpu", workers=3, progress=False, seed=7))
    assert config_hash(a) != config_hash(resolve("smoke", alpha=-20.0))
    assert config_hash(a) != config_hash(resolve("smoke", reg_modules=("layer1",), alpha=1.0)) != config_hash(
        resolve("smoke", alpha=1.0))


def test_ensure_trains_reuses_and_resumes(store):
    cfg = resolve("smoke", epochs=1, progress=False)
    log = []
    # jobs=1: trained here, with this process's torch threads, as the resumed run below will be
    # (a run's last bits depend on the thread count; test_parallel covers the pool)
    first = runs.ensure(cfg, seeds=[0, 1], log=log.append, jobs=1)
    assert [r.seed for r in first] == [0, 1] and all(r.done for r in first)
    assert sum("training run" in m for m in log) == 2
    assert first[0].path == store / config_hash(cfg) / "seed0"

    # Finished: reused as is.
    stamp = os.path.getmtime(first[0].path / "metrics.csv")
    log.clear()
    again = runs.ensure(cfg, seeds=[0], log=log.append)
    assert log == [] and os.path.getmtime(again[0].path / "metrics.csv") == stamp

    # Partial (the newest checkpoint and DONE gone): resumed, same result.
    before = first[1].metrics()
    (first[1].path / "DONE").unlink()
    first[1].files.checkpoints()[-1][1].unlink()
    log.clear()
    runs.ensure(cfg, seeds=[1], log=log.append)
    assert any("resuming" in m for m in log)
    cols = [c for c in before.columns if not c.endswith("seconds")]
    assert first[1].metrics()[cols].equals(before[cols])

    # Tables of many runs, with seed and configuration columns.
    table = runs.load_metrics(first)
    assert set(table.seed) == {0, 1} and set(table.config) == {config_hash(cfg)}
    assert {"alpha", "reg_start", "reg_modules"} <= set(table.columns)
    units = runs.load_units(first)
    assert {"module", "block", "unit", "si", "step", "seed"} <= set(units.columns)
    preds = runs.load_predictions(first)
    assert preds.groupby(["seed", "step"])["count"].sum().eq(100).all()

    # A checkpointed network comes back as it was.
    model = first[0].model(step=first[0].checkpoint_steps()[-1])
    assert not model.training and model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="no checkpoint at step 999"):
        first[0].model(step=999)


@pytest.mark.parametrize("fmt", ["on", "off"])
def test_checkpoints_are_analysed_in_the_memory_format_their_run_trained_in(store, fmt):
    """A channels_last run (the mnist preset's format) gives channels_last networks to the analyses,
    and a table measured again from its checkpoint is the one its training wrote, to the byte."""
    cfg = resolve("smoke", epochs=1, channels_last=fmt, progress=False)
    assert cfg.uses_channels_last("cpu") == cfg.uses_channels_last("cuda") == (fmt == "on")
    auto = resolve("smoke", channels_last="auto")
    assert not auto.uses_channels_last("cpu") and auto.uses_channels_last("cuda")
    assert resolve("mnist").uses_channels_last("cpu")
    (run,) = runs.ensure(cfg, [0], log=lambda *a: None)
    step = run.steps()[-1]
    model = run.model(step)
    weight = model.layer1[0].conv2.weight  # 3x3, 8 channels in: the two formats differ
    assert weight.is_contiguous(memory_format=torch.channels_last) == (fmt == "on") != weight.is_contiguous()
    assert not model.training
    target = run.files.si(step)
    original = target.read_bytes()
    target.unlink()
    log = []
    runs.ensure(cfg, [0], log=log.append)
    assert any("measuring step" in m for m in log) and not any("arithmetic" in m for m in log), log
    assert target.read_bytes() == original
