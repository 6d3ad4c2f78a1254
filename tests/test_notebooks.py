"""The section notebooks: paired with their .py, runnable under papermill on smoke,
and strict about their parameters."""

from pathlib import Path

import jupytext
import nbformat
import papermill
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
NAMES = [p.stem for p in NOTEBOOKS]
# Figures each notebook must write to its results folder.
FIGURES = {
    "01_emergence": ["fig2_si_over_training.png", "fig9_si_per_block.png"],
    "04_regularize": ["fig6a_si_by_condition.png", "fig6b_accuracy_by_condition.png"],
}


def cells(nb):
    return [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", []))) for c in nb.cells]


def test_all_six_sections_exist():
    assert NAMES == ["01_emergence", "02_ablation", "03_cka", "04_regularize", "05_promote",
                     "06_class_representation"]


@pytest.mark.parametrize("name", NAMES)
def test_py_and_ipynb_are_in_sync(name):
    py = jupytext.read(ROOT / "notebooks" / f"{name}.py")
    ipynb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    assert cells(py) == cells(ipynb), f"{name}.ipynb is out of sync: run jupytext --sync notebooks/{name}.py"
    assert all(not c.get("outputs") for c in ipynb.cells if c.cell_type == "code"), f"{name}.ipynb has outputs"
    first_code = next(c for c in ipynb.cells if c.cell_type == "code")
    assert "parameters" in first_code.metadata.get("tags", [])
    for param in ("preset", "seeds", "epochs", "data_root", "out_dir"):
        assert f"\n{param} = " in "\n" + first_code.source


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("store")


@pytest.mark.parametrize("name", NAMES)
def test_runs_on_smoke(name, store, tmp_path, monkeypatch):
    monkeypatch.setenv("CLASSSEL_RUNS", str(store))
    out = tmp_path / "results"
    nb = papermill.execute_notebook(
        str(ROOT / "notebooks" / f"{name}.ipynb"), str(tmp_path / f"{name}.ipynb"),
        parameters={"preset": "smoke", "out_dir": str(out)}, kernel_name="python3",
        cwd=str(ROOT / "notebooks"), progress_bar=False,
    )
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, f"{name} drew no figure"
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs, f"{name} wrote no figure to its output folder"
    for fig in FIGURES.get(name, []):
        assert fig in pngs
    assert any(p.suffix == ".csv" for p in out.iterdir()), f"{name} wrote no table"


@pytest.mark.parametrize("name,param,value,message", [
    ("04_regularize", "alpha", "twenty", "parameter alpha='twenty' is not valid"),
    ("04_regularize", "alpha", 5, "expected a negative number"),
    ("04_regularize", "modules", ["layer9"], "parameter modules="),
    ("01_emergence", "preset", "tiny", "parameter preset='tiny' is not valid"),
    ("01_emergence", "seeds", "three", "parameter seeds='three' is not valid"),
])
def test_bad_parameter_fails_before_training(name, param, value, message, tmp_path, monkeypatch):
    monkeypatch.setenv("CLASSSEL_RUNS", str(tmp_path / "store"))
    with pytest.raises(papermill.PapermillExecutionError, match="ValueError") as err:
        papermill.execute_notebook(
            str(ROOT / "notebooks" / f"{name}.ipynb"), str(tmp_path / "out.ipynb"),
            parameters={"preset": "smoke", param: value}, kernel_name="python3", progress_bar=False,
        )
    assert message in str(err.value)
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir()), "it trained first"
