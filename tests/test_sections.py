"""The sections: each notebook's parameters cell is its section's declaration, the claims each
section tests, and the "What reproduces" table."""

from pathlib import Path

import jupytext
import pytest
from conftest import run_files

from classsel import sections
from classsel.sections import declaration

ROOT = Path(__file__).resolve().parents[1]


def cell(notebook: str) -> str:
    nb = jupytext.read(ROOT / "notebooks" / f"{notebook}.ipynb")
    return next(c for c in nb.cells if "parameters" in c.metadata.get("tags", [])).source


@pytest.mark.parametrize("section", [None, *sections.SECTIONS])
def test_each_notebooks_parameters_cell_is_its_sections_declaration(section):
    """Values and comments alike (``python -m classsel.sections`` writes them)."""
    d = sections.SECTIONS.get(section)
    notebook = d.notebook if d else "00_what_reproduces"
    assert cell(notebook) == sections.parameters_cell(d), "run `python -m classsel.sections`"
    ns = {}
    exec(cell(notebook), ns)
    assert {k: v for k, v in ns.items() if not k.startswith("__")} == sections.parameters(section)


def test_every_default_in_a_comment_is_the_preset_default():
    """The seeds a comment states are the ones a notebook left at None trains."""
    for name, d in sections.SECTIONS.items():
        text = sections.parameters_cell(d)
        for preset in ("smoke", "mnist"):
            seeds = sections.defaults(name, preset, data_root=None).seeds
            assert f"{preset}: {len(seeds)}" in text.split("seeds = None")[0], (name, preset)


def test_a_misspelt_parameter_is_named(tmp_path):
    history = ['import x', '# Parameters\nepoch = 1\npreset = "smoke"\n']
    assert declaration.unknown(sections.SECTIONS["emergence"], history) == ["epoch"]
    ns = {**sections.parameters("emergence"), "preset": "smoke", "out_dir": str(tmp_path), "In": history}
    with pytest.raises(ValueError, match=r"'epoch' is not a parameter of this notebook \(did you mean 'epochs'\?\)"):
        sections.notebook("emergence", ns)
    err = pytest.raises(sections.ParameterError, sections.notebook, "emergence", ns).value
    assert err._render_traceback_() == [f"ParameterError: {err}"]  # one line in the notebook, not a traceback


@pytest.mark.parametrize("section,name,value", [
    ("emergence", "preset", 0), ("promote", "strong_alpha", False), ("emergence", "out_dir", ""),
    ("emergence", "out_dir", 3), ("cka", "layers", ["layer1", {"a": "b"}]),
])
def test_a_value_that_looks_like_none_is_not_taken_as_the_default(section, name, value, tmp_path):
    ns = {**sections.parameters(section), "preset": "smoke", "out_dir": str(tmp_path / "out"), name: value}
    with pytest.raises(ValueError, match=f"parameter {name}="):
        sections.check(section, ns)


@pytest.mark.parametrize("section,preset_default", [("ablation", 50), ("architectures", None)])
def test_the_ablations_images_per_class_are_the_presets_all_or_a_count(section, preset_default):
    plan = lambda **values: sections.plan(section, sections.defaults(section, "mnist", **values))  # noqa: E731
    options = lambda p: {dict(a.options)["per_class"] for a in p if a.kind == "ablation"}  # noqa: E731
    assert options(plan()) == {preset_default} and options(plan(ablation_per_class="all")) == {None}
    assert options(plan(ablation_per_class=7)) == {7}
    assert sections.defaults(section, "smoke").ablation_per_class is None
    for bad in (0, 2.5, "half", True):
        with pytest.raises(ValueError, match=f"parameter ablation_per_class={bad!r} is not valid: expected \"all\" "
                                             "or a count of images per class, an integer 1 or more"):
            sections.defaults(section, "mnist", ablation_per_class=bad)


@pytest.fixture(scope="module")
def table(smoke_store):
    with pytest.MonkeyPatch.context() as m:
        m.setenv("CLASSSEL_RUNS", str(smoke_store))
        yield sections.what_reproduces("smoke", overrides={"progress": False})


def test_what_reproduces_has_the_six_claims_first_then_the_appendix(table):
    assert table.claim_number.tolist()[:6] == [1, 2, 3, 4, 5, 6]
    assert (table.claim_number[6:] == 0).all() and len(table) > 6
    assert set(table.verdict) <= {"holds", "in part", "not supported"}
    assert table.figure.str.startswith("Fig").all()
    text = sections.markdown_table(table)
    assert text.count("\n") == len(table) + 1
    assert "{ref}`paper Fig. 2 <fig-01-si>`" in text


def test_each_section_names_its_conditions_and_figure_sets(smoke_store, monkeypatch):
    """On the session's smoke store, which holds these runs: computing the section trains nothing."""
    monkeypatch.setenv("CLASSSEL_RUNS", str(smoke_store))
    before = run_files(smoke_store)
    quiet = dict(seeds=1, overrides={"progress": False})
    r = sections.compute("regularize", sections.defaults("regularize", "smoke", **quiet))
    assert run_files(smoke_store) == before, "it trained or analysed"
    assert list(r.groups) == ["unregularised", "α=-20 from epoch 0", "α=-20 from epoch 2", "α=-5 from epoch 0",
                              "α=-20 epochs 0-1 only"]
    assert r.sets["starts"] == ["unregularised", "α=-20 from epoch 0", "α=-20 from epoch 2"]
    assert r.windows == {"α=-20 epochs 0-1 only": (0, 2)}
    assert {c.target for c in r.claims} == {"fig-04-acc", "fig-04-alphas", "fig-04-alphas-si", "fig-04-recovery"}
    assert "Not tested" in r.claim("fig-04-nothing") and r.claim("fig-04-acc").count("\n") >= 2
    assert set(r.tables["metrics"].condition) == set(r.groups)
    # chapter 06 asks for no run that chapters 04 and 05 did not train: its plan is in theirs
    plans = {s: sections.plan(s, sections.defaults(s, "smoke", **quiet))
             for s in ("regularize", "promote", "class_representation")}
    assert {t.key for t in plans["class_representation"]} <= {t.key for t in plans["regularize"]} | {
        t.key for t in plans["promote"]}
