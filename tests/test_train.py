"""Training runs on the smoke preset: what they write, never lost, errors, torchrun."""

import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from classsel import checkpoint as ckpt
from classsel.config import resolve
from classsel.layout import RunFiles
from classsel.train import RunLocked, run_lock, train
from conftest import wait_until

TIMING = ["train_seconds", "eval_seconds"]
CLI = [sys.executable, "-m", "classsel", "train"]


def cli(*args, **kw):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke") / "run"
    # every checkpoint keeps its training state, so that a damaged newest one can be resumed past
    metrics = train(resolve("smoke", epochs=3, progress=False, keep_state="all"), out, log=lambda *a: None)
    return out, metrics


def test_run_writes_everything(smoke_run):
    out, metrics = smoke_run
    per_epoch = 10  # 300 training images, batch 30
    assert list(metrics["step"]) == [0, 2, 10, 20, 30]
    assert list(metrics["epoch"]) == [0, 0.2, 1, 2, 3]
    for col in ["train_loss", "val_acc1", "val_acc5", "mu_si", *[f"si_layer{i}" for i in range(1, 5)], "top5_count"]:
        assert col in metrics
    assert metrics["si_layer3"].between(0, 1).all() and metrics.loc[1:, "train_loss"].gt(0).all()
    on_disk = pd.read_csv(out / "metrics.csv")
    pd.testing.assert_frame_equal(on_disk, metrics, check_dtype=False)
    info = json.loads((out / "config.json").read_text())
    assert info["config"]["preset"] == "smoke" and info["versions"]["torch"] == torch.__version__
    assert info["versions"]["torchvision"] == importlib.metadata.version("torchvision")  # not imported for it
    assert "device" in info and "git_commit" in info and len(info["hash"]) == 10
    for step in metrics["step"]:
        state = torch.load(RunFiles(out).checkpoint(step), weights_only=True)
        assert {"model", "optimizer", "scheduler", "rng", "rows"} <= set(state)
        units = pd.read_csv(out / "si" / f"step{step:08d}.csv.gz")
        assert {"module", "block", "unit", "si", "step"} <= set(units.columns)
        assert len(units) == 3 * 32 + 4 * 64 + 6 * 128 + 3 * 256  # width 8: every unit of every block
        layer3 = units[units.module == "layer3"]
        assert layer3.si.mean() == pytest.approx(metrics.set_index("step").loc[step, "si_layer3"])
        counts = pd.read_csv(out / "predictions" / f"step{step:08d}.csv")
        assert counts["count"].sum() == 100 and len(counts) == 10
    assert per_epoch * 3 == metrics["step"].iloc[-1]
    assert (out / "DONE").exists()


def test_killed_and_resumed_equals_uninterrupted(smoke_run, tmp_path):
    """SIGKILL mid-run, resume, SIGKILL again just after start-up, resume to the end."""
    ref_dir, ref = smoke_run
    out = tmp_path / "run"
    args = [*CLI, "--preset", "smoke", "--epochs", "3", "--no-progress", "--out", str(out)]

    def start_and_kill(extra, wait_for_checkpoints, delay):
        proc = subprocess.Popen([*args, *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: len(RunFiles(out).checkpoints()) >= wait_for_checkpoints, proc)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    # inside the second epoch, or inside a write: within 0.05 s of the third checkpoint (step 10), with 20
    # steps and 2 evaluation points left, so that even a fast machine cannot finish first
    start_and_kill([], 3, 0.05)
    assert not (out / "DONE").exists(), "the run finished before it could be killed"
    start_and_kill(["--resume"], 0, 1.0)  # during start-up or the first resumed steps
    done = cli(*args[len(CLI):], "--resume")
    assert done.returncode == 0, done.stderr
    read = lambda folder: pd.read_csv(folder / "metrics.csv", float_precision="round_trip").drop(columns=TIMING)  # noqa: E731
    pd.testing.assert_frame_equal(read(out), read(ref_dir), check_exact=True)
    for step in ref["step"]:  # and every unit's SI
        name = f"si/step{step:08d}.csv.gz"
        pd.testing.assert_frame_equal(pd.read_csv(out / name), pd.read_csv(ref_dir / name), check_exact=True)


def test_corrupt_newest_checkpoint_is_reported_and_skipped(smoke_run, tmp_path):
    ref_dir, ref = smoke_run
    out = tmp_path / "run"
    subprocess.run(["cp", "-r", str(ref_dir), str(out)], check=True)
    (out / "DONE").unlink()
    newest = RunFiles(out).checkpoints()[-1][1]
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated
    messages = []
    metrics = train(resolve("smoke", epochs=3, progress=False, keep_state="all"), out, resume=True,
                    log=messages.append)
    assert any("skipping unreadable checkpoint" in m and newest.name in m for m in messages)
    assert any("resuming" in m and "step 20" in m for m in messages)
    pd.testing.assert_frame_equal(metrics.drop(columns=TIMING), ref.drop(columns=TIMING), check_exact=True)


def test_training_state_is_kept_only_where_a_run_goes_on_from(tmp_path):
    """By default a finished run keeps the weights of every evaluation point and the optimiser and RNG
    state of none; ``keep_state`` epochs keep theirs (a branch starts there)."""
    for keep, with_state in (("resume", []), ("1,3", [10, 30])):
        out = tmp_path / keep
        metrics = train(resolve("smoke", epochs=3, progress=False, keep_state=keep), out, log=lambda *a: None)
        states = {s: torch.load(p, weights_only=True) for s, p in RunFiles(out).checkpoints()}
        assert sorted(states) == metrics["step"].tolist()
        assert [s for s, st in states.items() if ckpt.has_training_state(st)] == with_state
        assert all({"model", "rows", "step", "identity"} <= set(st) for st in states.values())


def test_existing_run_needs_resume(smoke_run):
    out, _ = smoke_run
    with pytest.raises(FileExistsError, match="--resume"):
        train(resolve("smoke", epochs=3, progress=False), out)


def test_two_processes_cannot_train_one_folder(tmp_path):
    with run_lock(tmp_path):
        with pytest.raises(RunLocked, match=f"pid {os.getpid()}"):
            train(resolve("smoke", progress=False), tmp_path)
        r = cli("--preset", "smoke", "--out", str(tmp_path))
        assert r.returncode != 0 and "being trained by another process" in r.stderr


def test_nan_loss_stops_with_the_step(tmp_path):
    cfg = resolve("smoke", lr=1e12, progress=False)
    with pytest.raises(FloatingPointError, match=r"at step \d+"):
        train(cfg, tmp_path, log=lambda *a: None)
    # what was written before is intact
    state = ckpt.newest_valid(RunFiles(tmp_path).checkpoints())
    assert state is not None and torch.isfinite(torch.cat([p.flatten() for p in state["model"].values()
                                                          if p.is_floating_point()])).all()
    assert len(pd.read_csv(tmp_path / "metrics.csv")) == len(state["rows"])


@pytest.mark.parametrize(
    "args,message",
    [
        (["--preset", "tiny"], "invalid choice: 'tiny'"),
        (["--alpha", "twenty"], "'twenty' is not a number"),
        (["--reg-modules", "layer1", "layer9"], "'layer9'"),
        (["--reg-start", "7", "--epochs", "3"], "reg_start=7"),
        (["--preset", "imagenet", "--data-root", "/nonexistent/imagenet"], "data_root='/nonexistent/imagenet'"),
    ],
)
def test_bad_input_is_named(args, message, tmp_path, capsys):
    from classsel.__main__ import main

    try:
        code = main(["train", *args, "--out", str(tmp_path / "x")])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert not (tmp_path / "x").exists()


def test_data_root_that_is_not_an_imagefolder_tree(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(Exception, match=str(tmp_path)):
        train(resolve("imagenet", data_root=str(tmp_path), progress=False), tmp_path / "run")


def test_imagenet_path_on_a_generated_imagefolder_tree(tmp_path, imagefolder_tree):
    imagefolder_tree(tmp_path / "tree", classes=["n00", "n01", "n02"], per_class={"train": 6, "val": 2})
    cfg = resolve("imagenet", data_root=str(tmp_path / "tree"), epochs=1, batch_size=6, eval_batch_size=6,
                  image_size=32, workers=0, progress=False)
    paper = resolve("imagenet", data_root=str(tmp_path / "tree"))
    assert paper.arch == "resnet50" and paper.lr_step == 30 and paper.momentum == 0.9 and paper.weight_decay == 1e-4
    assert (paper.epochs, paper.batch_size, paper.lr) == (90, 256, 0.1)
    assert cfg.lr_step is None  # a one-epoch run never reaches epoch 30: normalised away
    metrics = train(cfg, tmp_path / "run", log=lambda *a: None)
    assert list(metrics["step"]) == [0, 3]
    units = pd.read_csv(tmp_path / "run" / "si" / "step00000003.csv.gz")
    assert units.groupby("module").unit.count().to_dict() == {
        "layer1": 3 * 256, "layer2": 4 * 512, "layer3": 6 * 1024, "layer4": 3 * 2048}


def test_torchrun_two_cpu_processes(smoke_run, tmp_path):
    ref_dir, ref = smoke_run
    out = tmp_path / "ddp"
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "classsel", "train", "--preset", "smoke", "--epochs", "1", "--no-progress", "--out", str(out)],
        capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    got = pd.read_csv(out / "metrics.csv")
    assert list(got["step"]) == [0, 2, 10]
    si = [f"si_layer{i}" for i in range(1, 5)]
    # Epoch 0: the same initialised network measured on the same images.
    pd.testing.assert_series_equal(got.loc[0, si], ref.loc[0, si], rtol=1e-5, check_names=False)
    assert got.loc[0, "val_acc1"] == pytest.approx(ref.loc[0, "val_acc1"], abs=1e-12)
    units = pd.read_csv(out / "si" / "step00000000.csv.gz")
    ref_units = pd.read_csv(ref_dir / "si" / "step00000000.csv.gz")
    pd.testing.assert_series_equal(units.si, ref_units.si, rtol=1e-4, atol=1e-6)


def test_alpha_moves_selectivity_in_its_sign(tmp_path):
    """alpha=-20 from epoch 0 ends with lower mean SI in layer1-3 than alpha=0; +20 higher."""
    final = {}
    for alpha in (-20.0, 0.0, 20.0):
        m = train(resolve("smoke", alpha=alpha, progress=False), tmp_path / f"a{alpha}", log=lambda *a: None)
        final[alpha] = m[["si_layer1", "si_layer2", "si_layer3"]].iloc[-1].mean()
    assert final[-20.0] < final[0.0] < final[20.0], final
