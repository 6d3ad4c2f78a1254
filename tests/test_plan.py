"""Plans: sections' runs and analyses as tasks, united, linked to the runs they branch from, and
fulfilled; a branched run equals the same run trained from scratch, to the bit."""

import dataclasses

import pandas as pd
import pytest
import torch

from classsel import plan as P
from classsel import runs
from classsel.config import resolve
from classsel.layout import RunFiles

QUIET = dict(progress=False, epochs=3)
TIMING = ["train_seconds", "eval_seconds"]


def run(seed=0, **fields):
    cfg = resolve("smoke", **QUIET, **fields)
    return runs.Run(dataclasses.replace(cfg, seed=seed), seed)


def test_shared_epochs_follow_the_regulariser_schedule():
    base, later = run().config, run(alpha=-5.0, reg_start=2).config
    assert P.shared_epochs(base, later) == P.shared_epochs(later, base) == 2
    assert P.shared_epochs(base, base) == 3
    full, released = run(alpha=-5.0).config, run(alpha=-5.0, reg_stop=1).config
    assert P.shared_epochs(full, released) == 1
    assert P.shared_epochs(full, run(alpha=-1.0).config) == 0  # another strength from the first step
    assert P.shared_epochs(full, run(alpha=-5.0, reg_modules=("layer1",)).config) == 0
    assert P.shared_epochs(base, run(seed=1).config) == 0  # another seed
    assert P.shared_epochs(base, run(lr=0.05).config) == 0  # another recipe
    assert P.shared_epochs(base, run(alpha=-5.0, reg_start=2, keep_checkpoints="last").config) == 2


def test_plans_unite_and_link_runs_to_their_parents():
    base, later, full, released = run(), run(alpha=-5.0, reg_start=2), run(alpha=-5.0), run(alpha=-5.0, reg_stop=1)
    plan = P.Plan([P.Training(r) for r in (base, later)])
    plan.update(P.Plan([P.Training(r) for r in (base, full, released)]))  # the baseline asked twice: one task
    plan.analyse("cka", base)
    assert len(plan) == 5 and plan.summary() == "4 runs and 1 analysis"
    linked = {t.key: t for t in plan.linked()}
    child = linked[P.Training(later).key]
    assert child.parent[0].hash == base.hash and child.parent[1] == 2
    assert linked[P.Training(released).key].parent[1] == 1
    assert linked[P.Training(full).key].parent is None and linked[P.Training(base).key].parent is None
    # a parent keeps its checkpoint and training state where a child starts, and nothing of its identity changes
    assert linked[P.Training(base).key].run.config.keep_state == "2"
    assert linked[P.Training(full).key].run.config.keep_state == "1"
    last = P.Plan([P.Training(run(alpha=-5.0, keep_checkpoints="last")), P.Training(released)]).linked()
    assert next(iter(last)).run.config.keep_checkpoints == "1"  # not only the last checkpoint
    assert linked[P.Training(base).key].run.hash == base.hash


def test_a_run_asked_twice_keeps_what_either_keeps():
    plan = P.Plan([P.Training(run(keep_checkpoints="last")), P.Training(run(keep_checkpoints="1"))])
    assert next(iter(plan)).run.config.keep_checkpoints == "1"
    plan.add(P.Training(run()))
    assert next(iter(plan)).run.config.keep_checkpoints == "all"


def read(folder):
    files = RunFiles(folder)
    metrics = pd.read_csv(files.metrics, float_precision="round_trip").drop(columns=TIMING)
    tables = {s: (files.si(s).read_bytes(), files.predictions(s).read_bytes()) for s in metrics.step}
    weights = torch.load(files.checkpoints()[-1][1], weights_only=True)["model"]
    return metrics, tables, weights


@pytest.mark.parametrize("fields", [dict(alpha=-5.0, reg_start=2), dict(alpha=-5.0, reg_stop=1)],
                         ids=["regularised-later", "released-early"])
def test_a_branched_run_equals_the_run_trained_from_scratch(fields, tmp_path, monkeypatch):
    # the released run's parent keeps only its last checkpoint, as the sections' regularised runs do
    parent_fields = {} if "reg_start" in fields else dict(alpha=-5.0, keep_checkpoints="last")
    monkeypatch.setenv("CLASSSEL_RUNS", str(tmp_path / "scratch"))
    (alone,) = runs.ensure(run(**fields).config, [0], jobs=1, log=lambda *a: None)
    monkeypatch.setenv("CLASSSEL_RUNS", str(tmp_path / "branched"))
    log = []
    plan = P.Plan([P.Training(run(**parent_fields)), P.Training(run(**fields))])
    P.fulfil(plan, jobs=1, log=log.append, progress=False)
    assert any("starting from its checkpoint" in m for m in log), log
    branched = runs.Run(run(**fields).config, 0)
    assert branched.done and runs.intact(branched)
    (ma, ta, wa), (mb, tb, wb) = read(alone.path), read(branched.path)
    pd.testing.assert_frame_equal(ma, mb, check_exact=True)
    assert ta == tb
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert sorted(RunFiles(alone.path).checkpoints()) != [] and [s for s, _ in RunFiles(alone.path).checkpoints()] \
        == [s for s, _ in RunFiles(branched.path).checkpoints()]


def test_without_the_parents_state_the_run_trains_from_the_start(tmp_path, monkeypatch):
    monkeypatch.setenv("CLASSSEL_RUNS", str(tmp_path))
    (parent,) = runs.ensure(run().config, [0], jobs=1, log=lambda *a: None)  # keeps no training state
    log = []
    child = run(alpha=-5.0, reg_start=2)
    runs.ensure_run(child, log.append, parent=(parent, 2))
    assert any("kept no training state at epoch 2" in m for m in log) and child.done


def test_fulfil_does_only_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("CLASSSEL_RUNS", str(tmp_path))
    plan = P.Plan([P.Training(run())])
    plan.analyse("cka", run(), epochs=[0, 3])
    assert len(plan.pending()) == 2
    P.fulfil(plan, jobs=1, log=lambda *a: None, progress=False)
    assert plan.pending() == []
    analysed = sorted(p.name for p in (RunFiles(run().path).derived_dir).glob("cka_*.csv"))
    assert analysed == ["cka_step0.csv", "cka_step30.csv"]
    log = []
    P.fulfil(plan, jobs=1, log=log.append, progress=False)
    assert log == []


def test_a_run_measures_its_cka_as_it_trains_and_the_analysis_finds_it_done(tmp_path, monkeypatch):
    """The plan's CKA analyses of a run ride on its training's evaluation pass: the tables are those
    the analysis reads (every kept point; the points nearest given epochs, with other layers), equal
    to CKA computed afterwards from the checkpoints, and the analysis has nothing left to do."""
    from classsel import cka, experiments
    from classsel.config import CKA_LAYERS

    monkeypatch.setenv("CLASSSEL_RUNS", str(tmp_path))
    base = run()
    plan = P.Plan([P.Training(base)])
    plan.analyse("cka", base)
    plan.analyse("cka", base, epochs=[0.9, 2], layers=("layer2", "fc"))
    linked = plan.linked()
    (training,) = [t for t in linked if isinstance(t, P.Training)]
    assert [kind for kind, _, _ in training.along] == ["cka", "cka"]
    assert P.Plan(list(linked)).linked().tasks[training.key].along == training.along  # linking again keeps it
    P.fulfil(P.Plan([training]), jobs=1, log=lambda *a: None, progress=False)  # training alone
    assert plan.pending() == []
    wanted = {experiments.cka_name(CKA_LAYERS)(s) for s in experiments.epoch_steps(base)}
    wanted |= {experiments.cka_name(("layer2", "fc"))(s) for s in experiments.epoch_steps(base, [0.9, 2])}
    assert {p.stem for p in base.files.derived_dir.glob("*.csv")} == wanted and len(wanted) == 5 + 2
    loader = experiments.val_loader(base)[0]
    for name in wanted:
        step, layers = int(name.split("_")[1][4:]), ("layer2", "fc") if name.endswith("fc") else CKA_LAYERS
        afterwards = cka.cka_matrix(base.model(step), loader, list(layers)).values.ravel(order="F")
        measured = pd.read_csv(base.files.derived(name)).cka.to_numpy()
        assert abs(measured - afterwards).max() < 1e-6, name


def test_runs_train_first_then_the_costliest_analyses():
    """Workers take the runs as declared, then the analyses by their cost, largest first."""
    a, b = run(), run(seed=1)
    plan = P.Plan([P.Training(a)])
    plan.analyse("cka", a, epochs=[1])  # measured as the run trains: nothing left to cost
    plan.analyse("ablation", a, epochs=[1])
    plan.add(P.Training(b))
    plan.analyse("ablation", b, epochs=[1], per_class=2)
    plan.analyse("ablation", a, epochs=[1, 2])
    order = P.in_order(list(plan))
    assert [str(t) for t in order[:2]] == [str(P.Training(a)), str(P.Training(b))]
    costs = [t.cost() for t in order[2:]]
    assert costs == sorted(costs, reverse=True) and len(set(costs)) == 4 and costs[-1] == 0


def test_the_commands_names_are_the_modules_own_and_its_mistakes_need_no_torch():
    """reproduce lists the sections and executors without importing them (tests keep the lists equal);
    a mistake on the command line is reported before torch is imported (seconds on a slow machine)."""
    import subprocess
    import sys

    from classsel import cluster, reproduce, sections

    assert reproduce.NOTEBOOKS == sections.NOTEBOOKS and list(reproduce.NOTEBOOKS) == list(sections.SECTIONS)
    assert reproduce.EXECUTORS == cluster.EXECUTORS
    script = ("import sys\nfrom classsel.__main__ import main\n"
              "codes = [main(a) for a in (['train', '--epochs', '0'], ['train', '--device', 'gpu'], "
              "['reproduce', '--sections', 'nope'], ['pack', 'import', 'missing.tar.gz'])]\n"
              "print(codes, 'torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert r.stdout.strip() == "[2, 2, 2, 2] False", r.stdout + r.stderr
    assert "epochs=0 is not valid" in r.stderr and "section 'nope' is not valid" in r.stderr


def test_the_plan_and_its_jobs_are_listed_without_torch(tmp_path):
    """`reproduce --dry-run` lists the sections' tasks, and `--status` where their jobs are, from files alone:
    torch (seconds) is loaded where something is trained or analysed, not to say what is to do."""
    import os
    import subprocess
    import sys

    script = ("import sys\nfrom classsel.__main__ import main\n"
              "status = main(['reproduce', '--preset', 'smoke', '--status'])\n"
              "code = main(['reproduce', '--preset', 'smoke', '--dry-run'])\nprint(status, code, 'torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       env={**os.environ, "CLASSSEL_RUNS": str(tmp_path / "store")})
    assert r.stdout.strip().splitlines()[-1] == "0 0 False", r.stdout + r.stderr
    assert "0 done, 0 running, 0 queued, 0 failed" in r.stdout
    todo = int(r.stdout.strip().splitlines()[-2].split("; ")[1].split()[0])  # "... analyses; 19 to do"
    assert "pending  train" in r.stdout and r.stdout.count("pending") == todo > 0
    assert "measuring cka as it trains" in r.stdout  # the CKA chapter's runs


@pytest.mark.parametrize("seeds,expected", [(["0"], [0]), (["5", "2"], [5, 2])])
def test_reproduce_trains_the_seeds_it_is_given(seeds, expected, tmp_path, monkeypatch, capsys):
    """`reproduce --seeds S ...` trains those seeds (as `train --seeds`) for every section's runs; a bad
    value is named."""
    from classsel.__main__ import main
    from classsel.reproduce import request

    monkeypatch.setenv("CLASSSEL_RUNS", str(tmp_path))
    assert main(["reproduce", "--preset", "smoke", "--sections", "ablation", "regularize", "--dry-run",
                 "--seeds", *seeds]) == 0
    listed = capsys.readouterr().out
    chosen = request("smoke", ["ablation", "regularize"], seeds=expected)
    default = request("smoke", ["ablation", "regularize"])
    trainings = [t for t in chosen if isinstance(t, P.Training)]
    assert sorted({t.run.seed for t in trainings}) == sorted(expected)
    conditions = {t.run.hash for t in default if isinstance(t, P.Training)}
    assert {t.run.hash for t in trainings} == conditions and len(trainings) == len(conditions) * len(expected)
    assert listed.count("train ") == len(trainings)
    assert all(f"/seed{s} " in listed or f"/seed{s}  " in listed for s in expected)
    assert main(["reproduce", "--preset", "smoke", "--seeds", "-1", "--dry-run"]) == 2
    assert "--seeds=-1 is not valid" in capsys.readouterr().err


def test_an_ablation_on_some_images_per_class_reads_exactly_those(tmp_path, monkeypatch):
    from torch.utils.data import DataLoader, TensorDataset

    from classsel import data, experiments
    from classsel.ablation import default_ks
    from classsel.ablation_reference import ablation_curve_naive
    from classsel.config import layout

    monkeypatch.setenv("CLASSSEL_RUNS", str(tmp_path))
    plan = P.Plan([P.Training(run())])
    plan.analyse("ablation", run(), epochs=[3], levels=3, draws=1, per_class=4)
    P.fulfil(plan, jobs=1, log=lambda *a: None, progress=False)
    assert plan.pending() == []
    derived = sorted(p.name for p in RunFiles(run().path).derived_dir.glob("ablation_*.csv"))
    assert derived == ["ablation_step30_l3_d1_pc4.csv"]
    table = experiments.ablation_over_training([run()], [3], levels=3, draws=1, per_class=4, progress=False)
    # the reference: the first 4 validation images of each class, picked by hand
    val = data.for_config(run().config, "val")
    seen, keep = {}, []
    for i in range(len(val)):
        label = int(val[i][1])
        if seen.get(label, 0) < 4:
            seen[label] = seen.get(label, 0) + 1
            keep.append(i)
    assert sorted(seen.values()) == [4] * val.num_classes
    x = torch.stack([val[i][0] for i in keep])
    y = torch.tensor([int(val[i][1]) for i in keep])
    model, si = run().model(30), run().si(30)
    modules = list(layout(run().config.arch).modules)
    ks = {m: default_ks(len(si[f"{m}.0"]), 3) for m in modules}
    naive = ablation_curve_naive(model, DataLoader(TensorDataset(x, y), batch_size=7), modules, si, ks=ks,
                                 draws=1, seed=0)
    got = table.drop(columns=["seed", "step", "epoch", "config"])
    assert (got.samples == len(keep)).all()
    pd.testing.assert_frame_equal(got.reset_index(drop=True), naive.reset_index(drop=True), check_exact=True)


def test_an_ablations_cost_is_in_proportion_to_its_images():
    whole = P.Analysis("ablation", run(), (1.0, 2.0), (("levels", 6),))
    half = P.Analysis("ablation", run(), (1.0, 2.0), (("levels", 6), ("per_class", P.COST_PER_CLASS // 2)))
    assert whole.point_cost() == P.ANALYSIS_COST["ablation"] and whole.cost() == 2 * P.ANALYSIS_COST["ablation"]
    assert half.point_cost() == round(P.ANALYSIS_COST["ablation"] / 2)
    assert P.Analysis("cka", run(), (1.0,), (("per_class", 1),)).point_cost() == P.ANALYSIS_COST["cka"]
