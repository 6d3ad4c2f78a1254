"""The section notebooks: paired with their .py, runnable under papermill on smoke,
and strict about their parameters."""

import json
import os
from pathlib import Path

import jupytext
import nbformat
import pandas as pd
import papermill
import pytest
from conftest import run_files

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
NAMES = [p.stem for p in NOTEBOOKS]
# Figures each notebook must write to its results folder.
FIGURES = {
    "01_emergence": ["fig-01-si.png", "fig-01-blocks.png"],
    "02_ablation": ["fig-02-auc.png", "fig-02-final.png"],
    "03_cka": ["fig-03-cka.png", "fig-03-all.png"],
    "04_regularize": ["fig-04-acc.png", "fig-04-starts.png", "fig-04-alphas.png", "fig-04-alphas-si.png",
                      "fig-04-recovery.png"],
    "05_promote": ["fig-05-small.png", "fig-05-strong.png"],
    "06_class_representation": ["fig-06-top5.png"],
    "07_architectures": [f"fig-07-{i}-{f}.png" for i in "ab" for f in ("si", "ablation", "cka", "acc")],
}


def cells(nb):
    return [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", []))) for c in nb.cells]


def test_all_six_sections_exist():
    assert NAMES == ["00_what_reproduces", "01_emergence", "02_ablation", "03_cka", "04_regularize",
                     "05_promote", "06_class_representation", "07_architectures"]


@pytest.mark.parametrize("name", NAMES)
def test_py_and_ipynb_are_in_sync(name):
    py = jupytext.read(ROOT / "notebooks" / f"{name}.py")
    ipynb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    assert cells(py) == cells(ipynb), f"{name}.ipynb is out of sync: run jupytext --sync notebooks/{name}.py"
    assert all(not c.get("outputs") for c in ipynb.cells if c.cell_type == "code"), f"{name}.ipynb has outputs"
    params = next(c for c in ipynb.cells if "parameters" in c.metadata.get("tags", []))
    assert "hide-input" in params.metadata["tags"]  # one click away, not in the reader's path
    names = {}
    exec(params.source, names)
    shared = ("preset", "seeds", "epochs", "data_root", "overrides", "out_dir")
    assert all(names[k] is None for k in shared)
    assert all(f"\n{k} = " in "\n" + params.source for k in shared)  # one per line: papermill sees each


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_thin_and_shows_no_code_without_a_click(name):
    nb = jupytext.read(ROOT / "notebooks" / f"{name}.py")
    code = [c for c in nb.cells if c.cell_type == "code"]
    tags = [set(c.metadata.get("tags", [])) for c in code]
    assert all(t & {"hide-input", "remove-cell", "remove-input"} for t in tags), "a code cell shown as it is"
    lines = [line for c, t in zip(code, tags) if "parameters" not in t for line in c.source.splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert len(lines) <= 40, f"{name} has {len(lines)} lines of code outside its parameters cell"
    shown = [line for c, t in zip(code, tags) if "remove-cell" not in t for line in c.source.splitlines()]
    assert all(len(line) <= 88 for line in shown), [line for line in shown if len(line) > 88]
    assert not any(word in line for line in lines for word in ("holds", "in part", "not supported")), \
        "verdicts are decided in classsel.claims, not in the notebook"


def check_results(name, out, nb=None):
    """The results folder ``out`` of notebook ``name`` holds its figures and tables; the executed
    notebook ``nb``, where given, drew figures."""
    if name == "00_what_reproduces":
        table = pd.read_csv(out / "what_reproduces.csv")
        assert (table.claim_number > 0).sum() == 6 and table.seeds.notna().all()
        return
    if nb is not None:  # shown, or glued for the book's captions (papermill records those under its own mime prefix)
        images = [o for c in nb.cells for o in c.get("outputs", [])
                  if any(k.endswith("image/png") for k in o.get("data", {}))]
        assert images, f"{name} drew no figure"
    pngs = sorted(p.name for p in out.glob("*.png"))
    for fig in FIGURES[name]:
        assert fig in pngs, (fig, pngs)
    assert (out / "claims.csv").exists() and any(p.suffix == ".csv" for p in out.iterdir()), f"{name} wrote no table"


def execute_and_check(name, tmp_path, **parameters):
    """Run a notebook under papermill; check it drew figures and wrote figures and tables."""
    out = tmp_path / "results"
    nb = papermill.execute_notebook(
        str(ROOT / "notebooks" / f"{name}.ipynb"), str(tmp_path / f"{name}.ipynb"),
        parameters={**parameters, "out_dir": str(out)}, kernel_name="python3",
        cwd=str(ROOT / "notebooks"), progress_bar=False,
    )
    check_results(name, out, nb)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_the_books_notebooks_wrote_their_figures_and_tables(name, smoke_book, smoke_store):
    """The session's book build executed every notebook on the smoke store (as `make book` does): each
    wrote its figures and tables into the store's results folder (what the book shows is checked by
    tests/test_book.py)."""
    check_results(name, smoke_store / "results" / name)


def test_a_chapter_reading_a_fulfilled_store_never_loads_torch(smoke_store, tmp_path, monkeypatch):
    """What every chapter computes on the session's smoke store (its plan fulfilled, as after `make book`'s
    first step), in a fresh process as a kernel would: tables and claims read from the store, torch (about
    2.5 s of each kernel's start) never imported. Chance accuracy comes from the runs' own tables."""
    import subprocess
    import sys

    from classsel import experiments, sections

    script = (f"import sys\nfrom classsel import sections\n"
              f"for s in [None, *sections.SECTIONS]:\n"
              f"    sections.notebook(s, {{**sections.parameters(s), 'preset': 'smoke', 'out_dir': f'{tmp_path}/{{s}}'}})\n"
              f"print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, "CLASSSEL_RUNS": str(smoke_store)})
    assert r.returncode == 0 and r.stdout.split() == ["False"], r.stdout + r.stderr[-3000:]
    assert all((tmp_path / s / "claims.csv").exists() for s in sections.SECTIONS)
    monkeypatch.setenv("CLASSSEL_RUNS", str(smoke_store))
    run = next(iter(sections.plan("emergence", sections.defaults("emergence", "smoke")).runs()))
    assert run.done and run.classes() == experiments.val_loader(run)[1] == 10


# papermill as the README writes it, for the chapter whose last cell is the explorer (the widget cell
# of the stall, issue 18) and for the README's own example; the book build runs all of them.
@pytest.mark.parametrize("name,parameters", [("01_emergence", {}), ("04_regularize", {"alpha": -20})])
def test_runs_on_smoke(name, parameters, smoke_store, tmp_path, monkeypatch):
    """papermill as the README writes it, on the session's smoke store: the notebook reads it (its plan
    is fulfilled) and writes its figures and tables."""
    monkeypatch.setenv("CLASSSEL_RUNS", str(smoke_store))
    before = run_files(smoke_store)
    execute_and_check(name, tmp_path, preset="smoke", **parameters)
    assert run_files(smoke_store) == before, "it trained or analysed again"


# The imagenet preset's design (an ImageFolder tree, regularisation starts and schedules cut to the
# epochs run) at a size that runs on a CPU: 28-pixel crops (a multiple of the small transformer's
# patch) of a generated 6-class tree, 2 epochs, one seed (the smoke book covers several: intervals
# over seeds, the claims' tests), torchvision's ResNet-18 in place of ResNet-50 (the same code path at
# a sixth of the cost) and a learning rate at which no CPU's arithmetic makes it diverge.
TINY_IMAGENET = {"image_size": 28, "batch_size": 16, "eval_batch_size": 24, "workers": 0, "arch": "resnet18",
                 "lr": 0.01}
IMAGENET_CONDITIONS = {
    "04_regularize": ["unregularised", "α=-20 from epoch 0", "α=-20 from epoch 1", "α=-1 from epoch 0",
                      "α=-5 from epoch 0", "α=-10 from epoch 0", "α=-20 epoch 0 only"],
    "05_promote": ["unregularised", "α=+1, epochs 0-1 only", "α=+1, epoch 0 only", "α=+5, epochs 0-1 only",
                   "α=+5, epoch 0 only", "α=+20, epochs 0-1 only, modules 4-6"],
}


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory, imagefolder_tree):
    tree = imagefolder_tree(tmp_path_factory.mktemp("imagenet") / "tree", classes=[f"n0{i}" for i in range(6)],
                            per_class={"train": 8, "val": 4})
    return tree, tmp_path_factory.mktemp("imagenet_store")


@pytest.mark.parametrize("name", NAMES)
def test_runs_on_a_tiny_imagenet_tree(name, imagenet, tmp_path, monkeypatch):
    tree, store = imagenet
    monkeypatch.setenv("CLASSSEL_RUNS", str(store))
    out = execute_and_check(name, tmp_path, preset="imagenet", data_root=str(tree), epochs=2, seeds=1,
                            overrides=TINY_IMAGENET)
    configs = [json.loads(p.read_text()) for p in store.glob("*/seed*/config.json")]
    archs = {c["config"]["arch"] for c in configs}
    assert "resnet18" in archs and archs <= {"resnet18", "vgg16_narrow", "vit_tiny"}, archs  # 07: the others
    assert configs and all(c["config"]["dataset"] == "imagefolder"
                           and c["config"]["image_size"] == 28 for c in configs)
    if name in IMAGENET_CONDITIONS:
        conditions = pd.read_csv(out / "metrics.csv").condition.unique().tolist()
        assert conditions == IMAGENET_CONDITIONS[name]


BAD_PARAMETERS = [
    ("04_regularize", "alpha", "twenty", "parameter alpha='twenty' is not valid"),
    ("04_regularize", "alpha", 5, "expected a negative number"),
    ("04_regularize", "modules", ["layer9"], "parameter modules="),
    ("01_emergence", "preset", "tiny", "parameter preset='tiny' is not valid"),
    ("01_emergence", "seeds", "three", "parameter seeds='three' is not valid"),
    ("01_emergence", "preset", "imagenet", "parameter data_root=None is not valid"),
    ("03_cka", "overrides", {"alpha": 5}, "'alpha' is set by the notebook's own parameters"),
    ("05_promote", "schedules", "[[0, 2], [2, 1]]", "parameter schedules[1][1]=1 is not valid"),
    ("06_class_representation", "promote_schedule", [0, 9], "parameter promote_schedule[1]=9 is not valid"),
]


@pytest.mark.parametrize("name,param,value,message", BAD_PARAMETERS)
def test_bad_parameter_fails_before_training(name, param, value, message, tmp_path, monkeypatch):
    """What a chapter's first code cell does with a bad parameter, in this process (the kernel's own
    path is the next test's): a ParameterError naming it, before any run is trained."""
    from classsel import sections

    monkeypatch.setenv("CLASSSEL_RUNS", str(tmp_path / "store"))
    section = {notebook: s for s, notebook in sections.NOTEBOOKS.items()}[name]
    namespace = {**sections.parameters(section), "preset": "smoke", param: value}
    with pytest.raises(sections.ParameterError, match="parameter|set by the notebook") as err:
        sections.notebook(section, namespace)
    assert message in str(err.value)
    assert not (tmp_path / "store").exists(), "it trained first"


# under papermill as the README writes it: the parameter papermill injects reaches the check, which
# fails the notebook with the one-line message before training (a kernel each: one per kind of check)
@pytest.mark.parametrize("name,param,value,message", [BAD_PARAMETERS[i] for i in (0, 5, 8)])
def test_bad_parameter_fails_the_notebook_under_papermill(name, param, value, message, tmp_path, monkeypatch):
    monkeypatch.setenv("CLASSSEL_RUNS", str(tmp_path / "store"))
    with pytest.raises(papermill.PapermillExecutionError, match="ParameterError") as err:
        papermill.execute_notebook(
            str(ROOT / "notebooks" / f"{name}.ipynb"), str(tmp_path / "out.ipynb"),
            parameters={"preset": "smoke", param: value}, kernel_name="python3", progress_bar=False,
        )
    assert message in str(err.value)
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir()), "it trained first"
