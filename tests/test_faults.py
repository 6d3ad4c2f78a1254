"""Nothing lost, nothing silent: bad input is refused before anything is written, a damaged
run in the store is mended or named, concurrent requests wait, interrupted writes leave
nothing behind."""

import errno
import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from classsel import checkpoint as ckpt
from classsel import layout, manifest, runs
from classsel.config import config_hash, resolve
from classsel.layout import RunFiles
from classsel.train import train
from conftest import wait_until

CLI = [sys.executable, "-m", "classsel", "train"]
QUIET = dict(progress=False)


def cli(*args, **kw):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, **kw)


def one_line_error(r, message):
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr and len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert message in lines[0], lines[0]


@pytest.fixture()
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("CLASSSEL_RUNS", str(tmp_path / "store"))
    return tmp_path / "store"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished smoke run in a store of its own, kept as a reference to copy from."""
    root = tmp_path_factory.mktemp("store")
    os.environ["CLASSSEL_RUNS"] = str(root)
    try:
        (run,) = runs.ensure(resolve("smoke", epochs=2, **QUIET), [0], log=lambda *a: None)
    finally:
        del os.environ["CLASSSEL_RUNS"]
    return root, run


def copy_store(finished, store):
    subprocess.run(["cp", "-r", str(finished[0]), str(store)], check=True)
    return runs.Run(finished[1].config, 0)


# ----------------------------------------------------------------------------- bad input, refused


@pytest.mark.parametrize("args,message", [
    (["--epochs", "1000000000"], "epochs=1000000000 is not valid: expected an integer 1..10000"),
    (["--batch-size", "1000"], "batch_size=1000 is not valid: expected at most the 300 training images"),
    (["--seed", "100000000000000000000"], "seed=100000000000000000000 is not valid"),
    (["--seed", "-1"], "seed=-1 is not valid"),
    (["--seed", "1e20"], "'1e20' is not an integer"),
    (["--arch", "resnet18"], "arch='resnet18' is not valid: expected resnet50_narrow for the 1-channel images"),
    (["--keep-checkpoints=-5"], "keep_checkpoints='-5' is not valid"),
    (["--keep-checkpoints="], "keep_checkpoints='' is not valid"),
    (["--keep-checkpoints", "0,9"], "keep_checkpoints='0,9' is not valid: expected all, last, or epochs in 0..3"),
    (["--per-class", "401"], "per_class=401 is not valid"),
    (["--device", "gpu"], "device='gpu' is not valid"),
])
def test_bad_values_are_one_line_errors_and_write_nothing(args, message, tmp_path):
    if args[0] == "--seed" and args[1] == "1e20":
        r = cli("--preset", "smoke", *args, "--out", str(tmp_path / "run"))
        assert r.returncode == 2 and message in r.stderr  # argparse's own message
    else:
        one_line_error(cli("--preset", "smoke", *args, "--out", str(tmp_path / "run")), message)
    assert not (tmp_path / "run").exists()


def test_resume_with_a_bad_keep_list_keeps_every_checkpoint(tmp_path):
    out = tmp_path / "run"
    train(resolve("smoke", epochs=1, **QUIET), out, log=lambda *a: None)
    before = RunFiles(out).checkpoints()
    for keep in ("-5", ""):
        one_line_error(cli("--preset", "smoke", "--epochs", "1", "--out", str(out), "--resume",
                           f"--keep-checkpoints={keep}"), "keep_checkpoints=")
    assert RunFiles(out).checkpoints() == before and len(before) == 3


def test_out_that_is_a_file_and_a_folder_that_cannot_be_made(tmp_path):
    (tmp_path / "file").write_text("x")
    one_line_error(cli("--preset", "smoke", "--out", str(tmp_path / "file")), "is a file: expected a folder")
    one_line_error(cli("--preset", "smoke", "--out", "/proc/classsel-run"), "/proc/classsel-run")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_cuda_where_there_is_none(tmp_path):
    one_line_error(cli("--preset", "smoke", "--device", "cuda", "--out", str(tmp_path / "run")),
                   "CUDA is not available here")
    assert not (tmp_path / "run").exists()
    r = cli("--traceback", "--preset", "smoke", "--device", "cuda", "--out", str(tmp_path / "run"))
    assert r.returncode != 0 and "Traceback" in r.stderr  # asked for


def test_eval_step_past_an_imagefolder_run_is_refused_before_writing(tmp_path, imagefolder_tree):
    imagefolder_tree(tmp_path / "tree", classes=["a", "b"], per_class={"train": 4, "val": 2})
    cfg = resolve("imagenet", data_root=str(tmp_path / "tree"), epochs=1, batch_size=4, eval_batch_size=4,
                  image_size=32, eval_steps=(5,), **QUIET)
    with pytest.raises(ValueError, match=r"eval_steps=\[5\] is not valid: \[5\] at or past the run's last step 2"):
        train(cfg, tmp_path / "run")
    cfg.batch_size = 16
    with pytest.raises(ValueError, match="batch_size=16 is not valid: expected at most the 8 training images"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- options that change nothing


@pytest.mark.parametrize("fields", [
    dict(reg_stop=3),  # the run ends at epoch 3 anyway
    dict(reg_stop=7),
    dict(reg_start=2),  # alpha 0: no regulariser
    dict(reg_modules=("layer4",), class_stat="sum"),
    dict(eval_steps=(2, 10, 45, 1000)),  # 10 is an epoch's end; 45 and 1000 are past the run
    dict(width=8, lr_step=3),  # the learning rate would first fall after the last epoch
])
def test_options_that_cannot_change_a_run_do_not_change_its_identity(fields):
    plain = resolve("smoke")
    alpha = {"alpha": -1.0} if "reg_stop" in fields else {}
    assert config_hash(resolve("smoke", **alpha, **fields)) == config_hash(resolve("smoke", **alpha))
    assert config_hash(resolve("smoke", reg_stop=2, alpha=-1.0)) != config_hash(resolve("smoke", alpha=-1.0))
    assert config_hash(plain) != config_hash(resolve("smoke", eval_steps=(3,)))


@pytest.mark.parametrize("preset,fields", [
    ("smoke", dict(data_root="/somewhere")),  # MNIST is embedded
    ("smoke", dict(image_size=64)),  # MNIST images are 28x28
    ("smoke", dict(per_class=3, dataset="imagefolder", arch="resnet50", data_root=".")),
    ("imagenet", dict(width=32, data_root=".")),  # torchvision's ResNet-50 has its own widths
])
def test_an_option_the_preset_does_not_read_is_refused_not_dropped(preset, fields):
    name = next(iter(fields))
    with pytest.raises(ValueError, match=f"{name}=.* does not apply to preset {preset!r}"):
        resolve(preset, **fields)
    rest = {k: v for k, v in fields.items() if k != name}
    default = getattr(resolve(preset, **rest), name)
    assert config_hash(resolve(preset, **rest, **{name: default})) == config_hash(resolve(preset, **rest))


def main_error(args, capsys):
    """``python -m classsel ARGS`` in this process: its exit status and its stderr."""
    from classsel.__main__ import main

    try:
        code = main(args)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    return code, capsys.readouterr().err


def test_traceback_before_the_command_shows_the_traceback(tmp_path, capsys):
    from classsel.__main__ import main

    args = ["train", "--preset", "smoke", "--out", "", "--no-progress"]
    for before, after in ((["--traceback"], []), ([], ["--traceback"]), (["--traceback"], ["--traceback"])):
        with pytest.raises(ValueError, match="--out '' is not valid"):
            main([*before, *args, *after])
    code, err = main_error(args, capsys)
    assert code == 2 and err.startswith("error: --out '' is not valid") and "Traceback" not in err
    with pytest.raises(ValueError, match="nothing to pack"):
        main(["--traceback", "pack", "export", str(tmp_path / "p.tar.gz"), "--store", str(tmp_path)])


@pytest.mark.parametrize("args,message", [
    (["--seed", "0", "--seeds", "1"], "not allowed with argument --seed"),
    (["--seeds", "1", "--seed", "0"], "not allowed with argument --seeds"),
    (["--out", ""], "--out '' is not valid: expected a folder"),
    (["--out", "{tmp}/none", "--resume"], "does not exist: nothing to resume"),
    (["--out", "{tmp}/empty", "--resume"], "holds no run: nothing to resume"),
    (["--seeds", "0", "1", "--resume"], "--resume applies to one run's folder"),
    (["--jobs", "2"], "--jobs 2 applies to several runs"),
    (["--data-root", "{tmp}"], "data_root='{tmp}' does not apply to preset 'smoke'"),
    (["--image-size", "64"], "image_size=64 does not apply"),
    (["--out", "{store}"], "is the root of the run store"),
    (["--out", "{store}/abc/seed0"], "is a folder of the run store"),
    (["--out", "{store}/results/x"], "is a folder of the run store"),
])
def test_a_request_that_cannot_mean_what_it_says_is_refused(args, message, tmp_path, store, capsys):
    (tmp_path / "empty").mkdir()
    fill = lambda a: a.format(tmp=tmp_path, store=store)  # noqa: E731
    code, err = main_error(["train", "--preset", "smoke", "--no-progress", *map(fill, args)], capsys)
    assert code == 2 and fill(message) in err, err
    assert not store.exists() and not (tmp_path / "none").exists()
    assert list((tmp_path / "empty").iterdir()) == []


# ----------------------------------------------------------------------------- never write over others' files


def test_a_folder_with_files_a_run_does_not_write_is_refused_and_left_as_it_was(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    mine = {"config.json": '{"mine": 1}', "metrics.csv": "a,b\n1,2\n", "DONE": "x", ".notes.tmp12": "draft",
            "notes.txt": "keep"}
    for name, text in mine.items():
        (out / name).write_text(text)
    for extra in ([], ["--resume"]):
        code, err = main_error(["train", "--preset", "smoke", "--no-progress", "--out", str(out), *extra], capsys)
        assert code == 2 and "which a run does not write" in err and "'notes.txt'" in err, err
    assert {p.name: p.read_text() for p in out.iterdir()} == mine
    # only run files, but a config.json that no run wrote: still the user's
    (out / "notes.txt").unlink()
    (out / ".notes.tmp12").unlink()
    code, err = main_error(["train", "--preset", "smoke", "--no-progress", "--out", str(out)], capsys)
    assert code == 2 and "'config.json'" in err, err
    assert (out / "config.json").read_text() == '{"mine": 1}'


def test_a_run_folder_holds_only_run_files_and_its_manifest_lists_only_them(tmp_path):
    out = tmp_path / "run"
    cfg = resolve("smoke", epochs=1, keep_state="all", **QUIET)  # its checkpoints can be resumed from
    train(cfg, out, log=lambda *a: None)
    files = RunFiles(out)
    assert files.foreign() == [] and {files.relative(p) for p in files.recorded()} == set(manifest.read(files))
    (out / "si" / "notes.txt").write_text("mine")
    (out / ".notes.tmp3").write_text("mine")
    assert set(files.foreign()) == {out / "si" / "notes.txt", out / ".notes.tmp3"}
    assert files.temporaries() == [] and out / "si" / "notes.txt" not in files.recorded()
    with pytest.raises(ValueError, match="which a run does not write"):
        train(cfg, out, resume=True, log=lambda *a: None)
    assert (out / ".notes.tmp3").read_text() == "mine" and (out / "DONE").exists()
    # checkpoints and tables without config.json: laid out by the run store (a branch), resumed from
    for p in (out / "si" / "notes.txt", out / ".notes.tmp3", files.config, files.done, files.manifest):
        p.unlink()
    with pytest.raises(ValueError, match="holds 'metrics.csv' but no config.json of a run"):
        train(cfg, out, resume=True, log=lambda *a: None)
    files.metrics.unlink()
    log = []
    train(cfg, out, resume=True, log=log.append)
    assert any("resuming" in m for m in log) and files.done.exists()


# ----------------------------------------------------------------------------- a damaged run


def test_a_finished_run_has_a_manifest_of_every_file(finished, monkeypatch):
    root, run = finished
    monkeypatch.setenv("CLASSSEL_RUNS", str(root))
    entries = manifest.read(run.files)
    names = set(entries)
    steps = run.steps()
    assert {"metrics.csv", "config.json"} <= names
    assert {f"si/{layout.step_name(s)}.csv.gz" for s in steps} <= names
    assert {f"checkpoints/{layout.step_name(s)}.pt" for s in steps} <= names
    assert not manifest.check(run.files, entries)
    assert entries["metrics.csv"]["sha256"] == manifest.sha256(run.files.metrics)


@pytest.mark.parametrize("damage", ["remove", "edit"])
def test_a_damaged_si_table_is_measured_again(finished, store, damage):
    run = copy_store(finished, store)
    step = run.steps()[2]
    target = run.files.si(step)
    original = target.read_bytes()
    if damage == "remove":
        target.unlink()
    else:
        table = pd.read_csv(target)
        table.loc[0, "si"] = 0.999
        table.to_csv(target, index=False, compression="gzip")
    log = []
    (again,) = runs.ensure(run.config, [0], log=log.append)
    assert any("measuring step" in m for m in log) and not any("training run" in m for m in log)
    assert target.read_bytes() == original
    assert len(again.units()) == len(pd.read_csv(target)) * len(again.steps())


def test_a_removed_prediction_table_is_measured_again(finished, store):
    run = copy_store(finished, store)
    target = run.files.predictions(run.steps()[-1])
    original = target.read_bytes()
    target.unlink()
    runs.ensure(run.config, [0], log=lambda *a: None)
    assert target.read_bytes() == original


def test_an_edited_metrics_table_is_written_again_from_the_checkpoint(finished, store):
    run = copy_store(finished, store)
    original = run.files.metrics.read_bytes()
    table = pd.read_csv(run.files.metrics)
    table.loc[len(table) - 1, "val_acc1"] = 0.99
    table.to_csv(run.files.metrics, index=False)
    log = []
    (again,) = runs.ensure(run.config, [0], log=log.append)
    assert any("metrics.csv again" in m for m in log)
    assert run.files.metrics.read_bytes() == original and again.metrics().val_acc1.iloc[-1] != 0.99


def test_a_run_with_a_missing_checkpoint_is_set_aside_and_trained_again(finished, store):
    run = copy_store(finished, store)
    run.files.checkpoint(run.steps()[1]).unlink()
    log = []
    (again,) = runs.ensure(run.config, [0], log=log.append)
    assert any("training run" in m for m in log)
    aside = [p for p in run.path.parent.iterdir() if p.name.startswith("seed0.damaged-")]
    assert len(aside) == 1 and (aside[0] / "metrics.csv").exists()  # nothing deleted
    assert again.done and not manifest.check(again.files, manifest.read(again.files))
    cols = [c for c in again.metrics().columns if not c.endswith("seconds")]
    before = pd.read_csv(aside[0] / "metrics.csv", float_precision="round_trip").assign(seed=0, config=again.hash)
    pd.testing.assert_frame_equal(again.metrics()[cols], before[cols], check_exact=True)


def test_a_checkpoint_with_one_byte_changed_is_found_by_its_content(finished, store):
    run = copy_store(finished, store)
    path = run.files.checkpoint(run.steps()[1])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    stat = path.stat()
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same modification time
    assert not runs.intact(run)
    log = []
    (again,) = runs.ensure(run.config, [0], log=log.append)
    assert any(f"{path} is changed" in m for m in log) and any("training run" in m for m in log), log
    assert runs.intact(again)


def test_an_unchanged_checkpoint_is_hashed_once(finished, store, monkeypatch):
    run = copy_store(finished, store)
    checkpoints = {p for _, p in run.files.checkpoints()}
    hashed = []
    real = manifest.sha256
    monkeypatch.setattr(manifest, "sha256", lambda p: hashed.append(p) or real(p))
    assert runs.intact(run) and checkpoints <= set(hashed)  # a copy: new inodes, hashed
    hashed.clear()
    assert runs.intact(run) and not checkpoints & set(hashed) and hashed  # the tables are still hashed
    last = max(checkpoints)
    os.utime(last)  # touched: hashed again, still intact
    hashed.clear()
    assert runs.intact(run) and set(hashed) & checkpoints == {last}


def test_a_changed_checkpoint_is_refused_when_loaded(finished, store):
    run = copy_store(finished, store)
    path = run.files.checkpoint(run.steps()[-1])
    state = ckpt.load(path)
    state["model"]["fc.bias"] += 1
    ckpt.atomic_save(state, path)
    with pytest.raises(ValueError, match="differs from the run's manifest"):
        run.model(run.steps()[-1])


def test_a_table_missing_outside_the_store_check_is_an_error_not_fewer_rows(finished, store):
    run = copy_store(finished, store)
    run.files.si(run.steps()[1]).unlink()
    with pytest.raises(FileNotFoundError):
        run.units()


def test_a_requested_epoch_without_a_checkpoint_is_named(store):
    from classsel import experiments as ex

    (run,) = runs.ensure(resolve("smoke", epochs=2, keep_checkpoints="last", **QUIET), [0], log=lambda *a: None)
    with pytest.raises(ValueError, match=r"no checkpoint at step\(s\) \[10\]"):
        ex.epoch_steps(run, [1, 2])
    assert ex.epoch_steps(run, [2]) == [20]


# ----------------------------------------------------------------------------- two requests, one run


def test_a_second_request_waits_for_the_first_and_reuses_its_run(store):
    cfg = resolve("smoke", epochs=2, **QUIET)
    files = layout.run(config_hash(cfg), 0)
    code = ("import os, classsel.runs as r, classsel.config as c; "
            "r.ensure(c.resolve('smoke', epochs=2, progress=False), [0], log=lambda *a: None)")
    first = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "CLASSSEL_RUNS": str(store)})
    wait_until(lambda: files.lock.exists() and files.lock.read_text().strip(), first)
    log = []
    (run,) = runs.ensure(cfg, [0], log=log.append)
    assert first.wait() == 0
    assert any(f"waiting for process {first.pid}" in m for m in log), log
    assert not any("training run" in m or "resuming" in m for m in log), log
    assert run.done and len(run.metrics()) == 4


# ----------------------------------------------------------------------------- interrupted writes


def test_leftover_temporary_files_are_removed_on_the_next_start(tmp_path):
    out = tmp_path / "run"
    train(resolve("smoke", epochs=1, **QUIET), out, log=lambda *a: None)
    files = RunFiles(out)
    leftovers = [files.checkpoints_dir / ".step00000010.pt.tmp4242", files.si_dir / ".step00000002.csv.gz.tmp7",
                 out / ".metrics.csv.tmp99"]
    for p in leftovers:
        p.write_bytes(b"half")
    assert set(files.temporaries()) == set(leftovers) and not set(leftovers) & set(files.recorded())
    train(resolve("smoke", epochs=1, **QUIET), out, resume=True, log=lambda *a: None)
    assert files.temporaries() == []


def test_a_failed_write_names_its_file_and_leaves_nothing(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=r"could not write .*metrics\.csv: No space left on device"):
        ckpt.atomic_write(tmp_path / "metrics.csv", b"x")
    assert list(tmp_path.iterdir()) == []


def test_metrics_never_list_a_point_whose_checkpoint_was_not_written(tmp_path, monkeypatch):
    saves = []
    real = ckpt.atomic_save

    def failing(obj, path):
        saves.append(path)
        if len(saves) == 3:
            raise OSError(errno.ENOSPC, f"could not write {path}: No space left on device")
        real(obj, path)

    monkeypatch.setattr(ckpt, "atomic_save", failing)
    out = tmp_path / "run"
    with pytest.raises(OSError, match="step00000010.pt"):
        train(resolve("smoke", epochs=1, **QUIET), out, log=lambda *a: None)
    listed = pd.read_csv(out / "metrics.csv").step.tolist()
    assert listed == [0, 2] and [s for s, _ in RunFiles(out).checkpoints()] == [0, 2]
    monkeypatch.setattr(ckpt, "atomic_save", real)
    metrics = train(resolve("smoke", epochs=1, **QUIET), out, resume=True, log=lambda *a: None)
    assert metrics.step.tolist() == [0, 2, 10] and json.loads((out / "DONE").read_text())["step"] == 10


# ----------------------------------------------------------------------------- bad data, named


def test_an_unreadable_training_image_stops_naming_it_or_is_left_out(tmp_path, imagefolder_tree, capsys):
    imagefolder_tree(tmp_path / "tree", classes=["a", "b"], per_class={"train": 6, "val": 2})
    bad = tmp_path / "tree" / "train" / "b" / "b_3.JPEG"
    bad.write_bytes(bad.read_bytes()[:200])
    args = ["train", "--preset", "imagenet", "--data-root", str(tmp_path / "tree"), "--epochs", "1",
            "--batch-size", "4", "--image-size", "32", "--workers", "0", "--no-progress",
            "--arch", "resnet18", "--lr", "0.001"]  # a small, slow step: no CPU's arithmetic diverges
    code, err = main_error([*args, "--out", str(tmp_path / "stop")], capsys)
    assert code == 2 and err.startswith(f"error: unreadable image {bad} in the train data (OSError: ") \
        and len(err.strip().splitlines()) == 1, err
    assert (tmp_path / "stop" / "checkpoints" / "step00000000.pt").is_file()  # what came before is kept
    code, err = main_error([*args, "--out", str(tmp_path / "stop"), "--resume", "--bad-images", "skip"], capsys)
    assert code == 0 and f"left out unreadable image {bad} in the train data" in err, err
    assert (tmp_path / "stop" / "DONE").is_file()


def test_a_network_too_large_for_the_machine_is_refused_before_it_is_built(tmp_path, capsys):
    code, err = main_error(["train", "--preset", "smoke", "--width", "4096", "--no-progress", "--out",
                            str(tmp_path / "run")], capsys)
    assert code == 2 and err.startswith("error: width=4096 is not valid here: resnet50_narrow at this width has "), err
    assert "GiB of memory of cpu; expected a smaller width" in err and not (tmp_path / "run").exists()


def test_features_that_are_not_finite_name_the_run_and_the_step(tmp_path, monkeypatch):
    from classsel import train as T

    def diverged(*args, **kw):
        raise FloatingPointError("the units of block layer4.2 gave activations that are NaN or infinite")

    monkeypatch.setattr(T, "measure", diverged)
    with pytest.raises(FloatingPointError, match=f"measuring step 0 of the run in {tmp_path / 'run'}: the units "
                                                 "of block layer4.2"):
        train(resolve("smoke", **QUIET), tmp_path / "run", log=lambda *a: None)
