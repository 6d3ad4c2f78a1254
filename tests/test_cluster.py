"""The paper's grid as jobs (classsel.cluster): job arrays that wait for the right jobs, the batch
scripts submitit writes for SLURM (with a stand-in sbatch), the imagenet grid's dry run, and the
smoke grid run end to end as submitit jobs on this machine with one job killed and one preempted."""

import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from classsel import cluster, runs
from classsel.cluster import Resources
from classsel.plan import Analysis, Training
from classsel.reproduce import request

from test_parallel import assert_same_results, pid_of
from conftest import wait_until

CLI = [sys.executable, "-m", "classsel", "reproduce"]


def env_with(store, **more):
    return {**os.environ, "CLASSSEL_RUNS": str(store), "OMP_NUM_THREADS": "1", **more}


# ----------------------------------------------------------------------------- arrays


def test_jobs_wait_for_their_parents_and_runs_and_share_arrays_only_with_alike_jobs(tmp_path, monkeypatch):
    monkeypatch.setenv("CLASSSEL_RUNS", str(tmp_path))
    plan = request("smoke").linked()
    todo = plan.pending()
    groups = cluster.arrays(todo)
    where = {t.key: (i, j) for i, g in enumerate(groups) for j, t in enumerate(g.tasks)}
    assert sorted(where) == sorted(t.key for t in todo)  # every task once
    for i, group in enumerate(groups):
        for j, task in enumerate(group.tasks):
            # brute force: what the task must wait for, from the task itself
            if isinstance(task, Training):
                wanted = () if task.parent is None else (("afterany", where[("train", task.parent[0].hash,
                                                                             task.parent[0].seed)]),)
            else:
                wanted = (("afterok", where[("train", task.run.hash, task.run.seed)]),)
            assert group.after == wanted, (str(task), group.after)
            assert all(ref[0] < i for _, ref in group.after)  # submitted after what it waits for
        assert group.role == ("train" if isinstance(group.tasks[0], Training) else "analysis")
        assert all(isinstance(t, Training) == (group.role == "train") for t in group.tasks)
    keys = [(g.role, g.after) for g in groups]
    assert len(keys) == len(set(keys))  # alike jobs are one array
    assert groups[0].after == () and all(t.parent is None for t in groups[0].tasks if isinstance(t, Training))

    # a parent queued from an earlier submission: its children wait for that job
    parent = next(t for t in todo if isinstance(t, Training) and any(
        isinstance(c, Training) and c.parent and c.parent[0] == t.run for c in todo))
    again = cluster.arrays([t for t in todo if t.key != parent.key], {parent.key: "4242_7"})
    waiting = [g for g in again if any(ref == "4242_7" for _, ref in g.after)]
    assert waiting and all(g.tasks for g in waiting)
    assert {t.key for g in waiting for t in g.tasks} == {
        t.key for t in todo if t.key != parent.key and parent.key in t.after}


def test_resources_are_checked_and_read_from_a_file(tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text("gpus_per_run: 16\nnodes: 2\npartition: gpu\nmem_gb: 480\n")
    r = Resources.read(path, partition="long", cpus_per_task=None)
    assert (r.gpus_per_run, r.nodes, r.partition, r.mem_gb) == (16, 2, "long", 480)
    assert r.of("train")["tasks_per_node"] == r.of("train")["gpus_per_node"] == 8
    assert (r.of("analysis")["nodes"], r.of("analysis")["gpus_per_node"]) == (1, 1)
    path.write_text("gpus: 8\n")
    with pytest.raises(ValueError, match=r"\['gpus'\] is not valid: expected a mapping of some of"):
        Resources.read(path)
    with pytest.raises(ValueError, match="gpus_per_run=6 is not valid over nodes=4"):
        Resources(gpus_per_run=6, nodes=4)
    with pytest.raises(ValueError, match=r"nodes=0 is not valid: expected an integer >= 1"):
        Resources(nodes=0)
    with pytest.raises(ValueError, match=r"mem_gb='lots' is not valid"):
        Resources(mem_gb="lots")


# ----------------------------------------------------------------------------- SLURM, with a stand-in


def fake_slurm(folder: Path) -> Path:
    """srun, sbatch and sacct stand-ins: sbatch keeps each script as ``scripts/<id>.sh`` and answers
    with the next job id; sacct answers with the state in ``states/<id>`` of every job that has one."""
    bin_ = folder / "bin"
    for d in (bin_, folder / "scripts", folder / "states"):
        d.mkdir(parents=True)
    scripts = {
        "srun": "#!/bin/sh\nexit 0\n",
        "sbatch": f"""#!/bin/sh
n=$(cat {folder}/next 2>/dev/null || echo 1000)
echo $((n + 1)) > {folder}/next
cp "$1" {folder}/scripts/$n.sh
echo "Submitted batch job $n"
""",
        "sacct": f"""#!/bin/sh
echo "JobID|State|NodeList"
while [ $# -gt 0 ]; do
  if [ "$1" = -j ]; then
    for f in {folder}/states/$2_* {folder}/states/$2; do [ -f "$f" ] && echo "$(basename $f)|$(cat $f)|node1"; done
    shift
  fi
  shift
done
""",
    }
    for name, text in scripts.items():
        (bin_ / name).write_text(text)
        (bin_ / name).chmod(stat.S_IRWXU)
    return bin_


def sbatch_flags(script: Path) -> dict:
    return dict(re.findall(r"^#SBATCH --([\w-]+)(?:=(.*))?$", script.read_text(), re.M))


def test_slurm_scripts_carry_the_resources_and_dependencies_and_a_second_submission_resubmits_the_failed(
        tmp_path, monkeypatch):
    monkeypatch.setenv("CLASSSEL_RUNS", str(tmp_path / "store"))
    slurm = tmp_path / "slurm"
    monkeypatch.setenv("PATH", f"{fake_slurm(slurm)}{os.pathsep}{os.environ['PATH']}")
    jobs = tmp_path / "jobs"
    wanted = Resources(gpus_per_run=16, nodes=2, cpus_per_task=10, mem_gb=480, time_min=2880, partition="gpu",
                       account="lab", qos="high", constraint="h100", array_parallelism=32)
    plan = request("smoke", ["regularize", "ablation"])
    done = cluster.submit(plan, "slurm", wanted, jobs, log=lambda m: None)
    ids = done.ids
    for job in (j for i in ids for j in i):
        (slurm / "states" / job).write_text("PENDING")
    assert [len(i) for i in ids] == [len(g.tasks) for g in done.groups]
    scripts = sorted(slurm.glob("scripts/*.sh"), key=lambda p: int(p.stem))
    assert len(scripts) == len(done.groups)  # one sbatch per array
    for group, script, found in zip(done.groups, scripts, ids):
        flags = sbatch_flags(script)
        n = len(group.tasks)
        if n > 1:
            assert found == [f"{script.stem}_{i}" for i in range(n)] and flags["array"] == f"0-{n - 1}%{min(n, 32)}"
        else:  # submitit submits an array of one as a plain job
            assert found == [script.stem] and "array" not in flags
        training = group.role == "train"
        assert (flags["nodes"], flags["ntasks-per-node"], flags["gpus-per-node"]) == (
            ("2", "8", "8") if training else ("1", "1", "1"))
        assert (flags["cpus-per-task"], flags["mem"], flags["time"], flags["partition"], flags["account"],
                flags["qos"], flags["constraint"]) == ("10", "480GB", "2880", "gpu", "lab", "high", "h100")
        assert flags["signal"].startswith("USR2@")  # submitit's warning before the time limit: requeue
        assert ("kill-on-invalid-dep" in flags) == (not training)
        expected = {}
        for kind, ref in group.after:  # the job ids the array must wait for, from the submitted ids
            expected.setdefault(kind, []).append(ids[ref[0]][ref[1]])
        assert flags.get("dependency") == (",".join(f"{k}:{':'.join(v)}" for k, v in expected.items())
                                           if expected else None)
        assert "srun" in script.read_text() and "submitit.core._submit" in script.read_text()
    assert any(g.after for g in done.groups) and any(g.role == "analysis" for g in done.groups)

    # every job queued: nothing to submit again
    before = len(scripts)
    again = cluster.submit(plan, "slurm", wanted, jobs, log=lambda m: None)
    assert again.groups == [] and len(again.in_flight) == sum(len(i) for i in ids)
    # one job failed, one finished without finishing its task (cancelled): both submitted again, alone
    failed, cancelled = ids[0][1], ids[0][0]
    (slurm / "states" / failed).write_text("FAILED")
    (slurm / "states" / cancelled).write_text("CANCELLED by 0")
    rows = {str(t): (state, job, log) for t, state, job, log in cluster.status(plan, jobs)}
    first = [str(t) for t in done.groups[0].tasks]
    assert rows[first[1]] == ("failed", failed, jobs / f"{failed}_0_log.err")
    assert rows[first[0]][:2] == ("failed", cancelled)
    assert {s for k, (s, _, _) in rows.items() if k not in first[:2]} == {"queued"}
    third = cluster.submit(plan, "slurm", wanted, jobs, log=lambda m: None)
    assert [str(t) for g in third.groups for t in g.tasks] == first[:2] and third.groups[0].after == ()
    assert len(list(slurm.glob("scripts/*.sh"))) == before + 1


def test_the_imagenet_dry_run_lists_the_papers_grid_with_its_resources(tmp_path):
    (tmp_path / "imagenet").mkdir()
    r = subprocess.run([*CLI, "--preset", "imagenet", "--data-root", str(tmp_path / "imagenet"), "--executor", "slurm",
                        "--dry-run", "--gpus-per-run", "8", "--cpus-per-task", "10", "--mem-gb", "480", "--time-min",
                        "2880", "--partition", "gpu", "--account", "lab"],
                       capture_output=True, text=True, env=env_with(tmp_path / "store"))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    resources = "8 GPUs per node, 10 CPUs per process, 480 GB per node, 2880 min, partition gpu, account lab"
    assert f"each train job: 1 node x 8 processes, {resources}" in lines
    assert f"each analysis job: 1 node x 1 process, 1 GPU per node, {resources[17:]}" in lines
    jobs = [line.split() for line in lines if line.startswith("  ")]
    arch = {w[2].split("/")[0]: w[3] for w in jobs if w[1] == "train"}  # config hash -> architecture
    trained: dict = {}
    for words in jobs:
        if words[1] == "train" and words[3] == "resnet50":
            condition = (int(words[4]), words[6], words[7])  # epochs, alpha=, reg=start-stop
            trained.setdefault(condition, []).append(int(words[2].split("seed")[1]))
    analysed = sorted((w[1], int(w[2].split("seed")[1])) for w in jobs
                      if w[1] != "train" and arch[w[2].split("/")[0]] == "resnet50")
    # the paper's design: 10 seeds of the 90-epoch baseline (ablation), 6 of them for CKA;
    # 5 seeds of every regularised condition, to epoch 20
    seeds5, seeds10 = list(range(5)), list(range(10))
    paper = {(90, "alpha=0", "reg=0-None"): seeds10, (20, "alpha=0", "reg=0-None"): seeds5}
    paper |= {(20, "alpha=-20", f"reg={s}-None"): seeds5 for s in range(6)}            # Fig. 7: from epoch 0..5
    paper |= {(20, f"alpha={a}", "reg=0-None"): seeds5 for a in (-1, -5, -10)}         # Figs. 11, 12
    paper |= {(20, "alpha=-20", "reg=0-4"): seeds5}                                    # Fig. 15: released
    paper |= {(20, f"alpha={a}", f"reg=0-{stop}"): seeds5 for a in (1, 5) for stop in (4, 1)}  # Figs. 13, 14
    paper |= {(20, "alpha=20", "reg=0-4"): seeds5}                                     # strongly promoted early
    assert {k: sorted(v) for k, v in trained.items()} == paper
    assert analysed == sorted([("ablation", s) for s in seeds10] + [("cka", s) for s in range(6)])
    # the book's other architectures (chapter 07) besides; the summary counts every job listed
    runs_, analyses = sum(w[1] == "train" for w in jobs), sum(w[1] != "train" for w in jobs)
    assert runs_ >= 90 and analyses >= 16
    arrays_ = sum(line.startswith("array ") for line in lines)
    assert lines[-1] == f"{runs_} runs and {analyses} analyses; {runs_ + analyses} jobs in {arrays_} arrays to submit"


# ----------------------------------------------------------------------------- jobs here


def test_a_training_job_of_two_processes_trains_the_run_with_ddp_once(tmp_path, monkeypatch):
    import json

    import submitit

    from classsel.config import resolve

    monkeypatch.setenv("CLASSSEL_RUNS", str(tmp_path / "store"))  # inherited by the job's processes
    run = runs.Run(resolve("smoke", epochs=1, progress=False), 0)
    executor = submitit.AutoExecutor(tmp_path / "jobs", cluster="local")
    executor.update_parameters(tasks_per_node=2, timeout_min=60)  # two processes, as two GPUs would be
    job = executor.submit(cluster.Job(Training(run), threads=1))
    assert job.results() == ["done", "done"]
    assert run.done and json.loads(run.files.config.read_text())["world_size"] == 2
    log = run.files.log.read_text()
    assert log.count("pid ") == 1 and "2 processes" in log and log.count(f"training run {run.hash}/seed0") == 1

    again = executor.submit(cluster.Job(Training(run), threads=1))  # finished: both processes end at once
    assert again.results() == ["done", "done"]
    assert run.files.log.read_text().count(f"training run {run.hash}/seed0") == 1


def test_the_debug_executor_runs_the_jobs_in_this_process_and_a_second_submission_finds_them_done(
        tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("CLASSSEL_RUNS", str(tmp_path / "store"))
    plan = request("smoke", ["ablation"])
    threads = torch.get_num_threads()
    try:
        done = cluster.submit(plan, "debug", Resources(cpus_per_task=1), tmp_path / "jobs", log=lambda m: None)
    finally:
        torch.set_num_threads(threads)
    assert sorted(t.key for g in done.groups for t in g.tasks) == sorted(t.key for t in plan.linked())
    assert [r[1] for r in cluster.status(plan, tmp_path / "jobs")] == ["done"] * len(plan)
    assert len(cluster.ledger(tmp_path / "jobs")) == len(plan)
    assert cluster.submit(plan, "debug", Resources(), tmp_path / "jobs").groups == []


# ----------------------------------------------------------------------------- the smoke grid as jobs here


def wait_for(predicate, what: str, process=None):
    assert wait_until(predicate, process), f"the command ended before {what}"


def training(run: runs.Run) -> bool:
    """The run has a checkpoint past its start and has not finished, and its log names its process."""
    return (any(s > 0 for s in run.checkpoint_steps()) and not run.done and run.files.log.exists()
            and "pid " in run.files.log.read_text())


def test_smoke_sections_as_local_jobs_one_killed_one_preempted_equals_uninterrupted_runs(tmp_path, monkeypatch):
    store, jobs = tmp_path / "store", tmp_path / "jobs"
    monkeypatch.setenv("CLASSSEL_RUNS", str(store))
    # two sections whose plan has what the test needs (a run with analyses and a child; a run with no
    # parent), at one seed: an eighth of the whole smoke grid's cost
    sections = ["ablation", "regularize"]
    plan = request("smoke", sections, seeds=[0]).linked()
    trainings = [t for t in plan if isinstance(t, Training)]
    # killed: a run with analyses and a child; preempted: a run with no parent, trained next to it
    killed = next(t for t in trainings if any(isinstance(a, Analysis) and t.key in a.after for a in plan)
                  and any(t.key in c.after for c in trainings))
    preempted = next(t for t in trainings if t.parent is None and t.run.config.alpha != 0)
    command = [*CLI, "--preset", "smoke", "--sections", *sections, "--seeds", "0", "--executor", "submitit-local",
               "--array-parallelism", "2",
               "--cpus-per-task", "1", "--jobs-folder", str(jobs), "--no-progress"]
    first = subprocess.Popen(command, env=env_with(store), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        wait_for(lambda: training(killed.run), f"checkpoint of {killed}", first)
        os.kill(pid_of(killed.run.files.log), signal.SIGKILL)
        wait_for(lambda: training(preempted.run), f"checkpoint of {preempted}", first)
        os.kill(pid_of(preempted.run.files.log), signal.SIGUSR2)  # as SLURM warns a job before preempting it
        out, err = first.communicate()
    finally:
        if first.poll() is None:  # the command and the jobs it started
            os.killpg(first.pid, signal.SIGKILL)
    assert first.returncode == 1, err
    assert f"run {killed.run.hash}/seed0 (its process ended without a result" in err, err
    states = {str(t): (s, log) for t, s, _, log in cluster.status(plan, jobs)}
    assert states[str(killed)][0] == "failed" and states[str(killed)][1].exists()
    for task in plan:  # its analyses were never submitted; every other task is done, the preempted run too
        expected = ("failed" if task.key == killed.key else "missing" if killed.key in task.after
                    and isinstance(task, Analysis) else "done")
        assert states[str(task)][0] == expected, (str(task), states[str(task)])
    assert "resuming" in preempted.run.files.log.read_text()  # requeued by submitit, resumed from its checkpoint

    again = subprocess.run(command, env=env_with(store), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    n = 1 + sum(isinstance(t, Analysis) and killed.key in t.after for t in plan)
    assert f"{n} jobs to submit" in again.stderr, again.stderr
    assert f"resuming run {killed.run.hash}/seed0" in killed.run.files.log.read_text()
    assert {s for _, s, _, _ in cluster.status(plan, jobs)} == {"done"}

    # the same runs, uninterrupted, in this process (one thread, as the jobs had)
    import torch

    monkeypatch.setenv("CLASSSEL_RUNS", str(tmp_path / "uninterrupted"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for task in (killed, preempted):
            (reference,) = runs.ensure(task.run.config, [task.run.seed], jobs=1, log=lambda *a: None)
            assert_same_results(store / task.run.hash / f"seed{task.run.seed}", reference.path)
    finally:
        torch.set_num_threads(threads)
