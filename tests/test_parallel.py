"""Many runs at once: the same results as one after the other, a failed run named without
losing the others, a killed request resumed."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from classsel import experiments as ex
from classsel import parallel, params, runs
from classsel.config import config_hash, resolve
from classsel.layout import RunFiles
from conftest import wait_until

CLI = [sys.executable, "-m", "classsel", "train"]
QUIET = dict(progress=False)


def use_store(monkeypatch, folder):
    monkeypatch.setenv("CLASSSEL_RUNS", str(folder))  # inherited by the training processes
    return folder


def one_after_the_other(cfg, seeds, jobs: int) -> list[Path]:
    """The folders of the runs trained here, in turn, with the torch threads each of ``jobs``
    processes gets."""
    threads = torch.get_num_threads()
    torch.set_num_threads(parallel.threads_per_job(jobs))
    try:
        return [r.path for r in runs.ensure(cfg, seeds, jobs=1, log=lambda *a: None)]
    finally:
        torch.set_num_threads(threads)


def assert_same_results(a: Path, b: Path):
    """The runs in folders ``a`` and ``b``: metrics (but the timings), and every SI and prediction
    table, equal to the last bit."""
    a, b = RunFiles(a), RunFiles(b)
    ma, mb = (pd.read_csv(f.metrics, float_precision="round_trip") for f in (a, b))
    cols = [c for c in ma.columns if not c.endswith("_seconds")]
    pd.testing.assert_frame_equal(ma[cols], mb[cols], check_exact=True)
    assert a.si_steps() == b.si_steps() == ma.step.tolist() and a.prediction_steps() == b.prediction_steps()
    for step in a.si_steps():
        assert a.si(step).read_bytes() == b.si(step).read_bytes(), step
        assert a.predictions(step).read_bytes() == b.predictions(step).read_bytes(), step


def pid_of(log_path) -> int:
    return int(re.search(r"pid (\d+)", log_path.read_text()).group(1))


def test_two_runs_at_once_give_what_one_after_the_other_gives(tmp_path, monkeypatch):
    cfg = resolve("smoke", epochs=2, **QUIET)
    use_store(monkeypatch, tmp_path / "together")
    log = []
    together = runs.ensure(cfg, [0, 1], jobs=2, log=log.append)
    assert all(r.done for r in together) and sum("training run" in m for m in log) == 2, log
    pids = {pid_of(r.files.log) for r in together}
    assert len(pids) == 2 and os.getpid() not in pids  # each in a process of its own

    log.clear()
    assert runs.ensure(cfg, [0, 1], jobs=2, log=log.append) == together and log == []  # reused, not retrained

    use_store(monkeypatch, tmp_path / "apart")
    for a, b in zip([tmp_path / "together" / r.hash / f"seed{r.seed}" for r in together],
                    one_after_the_other(cfg, [0, 1], jobs=2)):
        assert a != b
        assert_same_results(a, b)


def test_a_failed_run_is_named_and_the_others_finish(tmp_path, monkeypatch):
    use_store(monkeypatch, tmp_path / "store")
    empty = tmp_path / "no-tree"  # a folder, so the configuration resolves, but no ImageFolder tree in it
    empty.mkdir()
    setting = params.Setting("smoke", epochs=1, overrides=QUIET)
    fields = {"unregularised": {}, "suppressed": dict(alpha=-1.0),
              "no data": dict(dataset="imagefolder", data_root=str(empty))}
    with pytest.raises(parallel.RunsFailed) as caught:
        ex.conditions(setting, {"unregularised": [0, 1], "suppressed": [0], "no data": [3]}, fields, jobs=2)
    (failure,) = caught.value.failures
    bad = setting.config(**fields["no data"])
    assert (failure.run.hash, failure.run.seed) == (config_hash(bad), 3)
    assert f"run {config_hash(bad)}/seed3 (FileNotFoundError: no 'train' or 'val' folder" in str(caught.value)
    assert str(failure.log) in str(caught.value) and "Traceback" in failure.log.read_text()
    assert str(caught.value).startswith("1 of 4 runs failed")

    # the others finished, and a new request reuses them
    log = []
    again = runs.ensure_all([(setting.config(), [0, 1]), (setting.config(alpha=-1.0), [0])], log=log.append)
    assert [[r.done for r in rs] for rs in again] == [[True, True], [True]] and log == []
    with pytest.raises(ValueError, match=r"seeds has no entry for the condition\(s\) \['no data'\]"):
        ex.conditions(setting, {"unregularised": [0]}, {"unregularised": {}, "no data": {}})
    for jobs in (0, 1.5, True):
        with pytest.raises(ValueError, match=rf"jobs={jobs!r} is not valid: expected an integer >= 1"):
            runs.ensure(setting.config(), [0], jobs=jobs)


def test_a_killed_request_resumes_and_ends_as_an_uninterrupted_one(tmp_path, monkeypatch):
    cfg = resolve("smoke", epochs=2, per_class=60, **QUIET)  # 40 steps a run
    store = use_store(monkeypatch, tmp_path / "killed")
    code = ("import classsel.runs as r, classsel.config as c; "
            "r.ensure(c.resolve('smoke', epochs=2, per_class=60, progress=False), [0, 1], jobs=2)")
    request = subprocess.Popen([sys.executable, "-c", code], start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wanted = [runs.Run(resolve("smoke", epochs=2, per_class=60, seed=s, **QUIET), s) for s in (0, 1)]
    wait_until(lambda: all(any(s > 0 for s in r.checkpoint_steps()) for r in wanted), request)
    os.killpg(request.pid, signal.SIGKILL)  # the request and its training processes, mid-training
    request.wait()
    assert not any(r.done for r in wanted) and all(r.checkpoint_steps() for r in wanted)

    log = []
    resumed = runs.ensure(cfg, [0, 1], jobs=2, log=log.append)
    assert sorted(m.split()[2] for m in log if m.startswith("resuming run")) == [
        f"{config_hash(cfg)}/seed0", f"{config_hash(cfg)}/seed1"], log
    folders = [r.path for r in resumed]
    assert folders[0].parent.parent == store

    use_store(monkeypatch, tmp_path / "uninterrupted")
    for a, b in zip(folders, one_after_the_other(cfg, [0, 1], jobs=2)):
        assert_same_results(a, b)


# ----------------------------------------------------------------------------- the command line


def one_line_error(r, message):
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr and len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert message in lines[0], lines[0]


@pytest.mark.parametrize("command,args,message", [
    ("train", ["--seeds", "0", "1", "--jobs", "0"], "--jobs=0 is not valid: expected an integer >= 1"),
    ("train", ["--seeds", "0", "1", "--out", "run"], "--out names one run's folder: expected one seed with it"),
    ("train", ["--seeds", "0", "-1"], "seed=-1 is not valid"),
    ("train", ["--out", "file"], "--out 'file' is a file: expected a folder for the run"),
    ("train", ["--out", "mine"], "--out 'mine' holds 'notes.txt', which a run does not write"),
    ("train", ["--resume", "--out", "missing"], "--out 'missing' does not exist: nothing to resume"),
    ("reproduce", ["--jobs", "0"], "jobs=0 is not valid: expected an integer >= 1"),
    ("reproduce", ["--seeds", "0", "-1"], "--seeds=-1 is not valid"),
    ("reproduce", ["--data-root", "mine"], "data_root='mine' does not apply to preset 'smoke'"),
])
def test_bad_options_are_one_line_errors_before_torch_loads(command, args, message, tmp_path):
    """A mistake in the options is named at once: the command stops before it imports torch (seconds),
    which here is a module that fails on import."""
    (tmp_path / "file").write_text("the user's\n")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("the user's\n")
    no_torch = tmp_path / "no_torch"
    no_torch.mkdir()
    (no_torch / "torch.py").write_text("raise ImportError('torch was imported')\n")
    path = os.pathsep.join(filter(None, [str(no_torch), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "CLASSSEL_RUNS": str(tmp_path / "store"), "PYTHONPATH": path}
    one_line_error(subprocess.run([sys.executable, "-m", "classsel", command, "--preset", "smoke", *args],
                                  capture_output=True, text=True, cwd=tmp_path, env=env), message)
    assert not (tmp_path / "store").exists() and not (tmp_path / "run").exists() and not (tmp_path / "missing").exists()
    assert (tmp_path / "file").read_text() == "the user's\n" and os.listdir(tmp_path / "mine") == ["notes.txt"]


def test_the_command_line_trains_several_seeds_at_once(tmp_path):
    env = {**os.environ, "CLASSSEL_RUNS": str(tmp_path / "store")}
    r = subprocess.run([*CLI, "--preset", "smoke", "--epochs", "1", "--no-progress", "--seeds", "0", "1",
                        "--jobs", "2"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    cfg = resolve("smoke", epochs=1)
    folder = tmp_path / "store" / config_hash(cfg)
    assert f"2 runs of configuration {config_hash(cfg)} in {folder}" in r.stdout
    assert (folder / "seed0" / "DONE").exists() and (folder / "seed1" / "DONE").exists()
    assert (folder / "seed0.log").exists() and "training 2 runs, 2 at once" in r.stdout


def test_a_killed_worker_fails_only_its_run_and_the_others_finish(tmp_path, monkeypatch):
    """Why the pool is hand-written: concurrent.futures.ProcessPoolExecutor fails every task, and takes
    no more, once one of its workers is killed (BrokenProcessPool)."""
    import threading

    use_store(monkeypatch, tmp_path / "store")
    cfg = resolve("smoke", epochs=2, per_class=60, **QUIET)  # 40 steps a run
    victim = runs.Run(resolve("smoke", epochs=2, per_class=60, seed=0, **QUIET), 0)
    caught = []

    def request():
        try:
            runs.ensure(cfg, [0, 1, 2], jobs=2, log=lambda *a: None)
        except parallel.RunsFailed as e:
            caught.append(e)

    thread = threading.Thread(target=request)
    thread.start()
    assert wait_until(lambda: any(s > 0 for s in victim.checkpoint_steps()) and victim.files.log.exists()
                      and "pid " in victim.files.log.read_text(), thread)
    os.kill(pid_of(victim.files.log), signal.SIGKILL)
    thread.join()
    (error,) = caught
    (failure,) = error.failures
    assert (failure.run.seed, failure.error) == (0, "its process was killed by SIGKILL")
    others = [runs.Run(resolve("smoke", epochs=2, per_class=60, seed=s, **QUIET), s) for s in (1, 2)]
    assert not victim.done and all(r.done for r in others)


def test_a_worker_that_cannot_start_raises_its_own_error(tmp_path, monkeypatch):
    # e.g. a script without `if __name__ == "__main__":` under forkserver: the error multiprocessing
    # raises reaches the caller, not an AttributeError from stopping a process that never started
    use_store(monkeypatch, tmp_path)
    cfg = resolve("smoke")

    class Refused(RuntimeError):
        pass

    class Unstartable:
        def __init__(self, ctx):
            self.ctx = ctx

        def __getattr__(self, name):
            return getattr(self.ctx, name)

        def Process(self, *args, **kwargs):
            process = self.ctx.Process(*args, **kwargs)

            def start():
                raise Refused("this process cannot start")

            process.start = start
            return process

    real = parallel._context
    monkeypatch.setattr(parallel, "_context", lambda: Unstartable(real()))
    with pytest.raises(Refused, match="cannot start"):
        runs.ensure(cfg, [0, 1], log=lambda *a: None, jobs=2)
