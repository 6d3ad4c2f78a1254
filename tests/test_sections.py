"""The sections as computations: the notebooks' defaults, the claims each section tests, and
the "What reproduces" table."""

from pathlib import Path

import jupytext
import pytest

from classsel import params, sections

ROOT = Path(__file__).resolve().parents[1]


def parameters(name: str) -> dict:
    nb = jupytext.read(ROOT / "notebooks" / f"{name}.py")
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    ns = {}
    exec(cell.source, ns)
    return {k: v for k, v in ns.items() if not k.startswith("__") and k not in ("os", "preset")}


@pytest.mark.parametrize("section", list(sections.SECTIONS))
def test_the_library_defaults_are_the_notebooks_parameters(section):
    assert parameters(params.NOTEBOOKS[section]) == {**sections.COMMON, **sections.DEFAULTS[section]}


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as m:
        m.setenv("CLASSSEL_RUNS", str(store))
        yield sections.what_reproduces("smoke", overrides={"progress": False})


def test_what_reproduces_has_the_six_claims_first_then_the_appendix(table):
    assert table.claim_number.tolist()[:6] == [1, 2, 3, 4, 5, 6]
    assert (table.claim_number[6:] == 0).all() and len(table) > 6
    assert set(table.verdict) <= {"holds", "in part", "not supported"}
    assert table.figure.str.startswith("Fig").all()
    text = sections.markdown_table(table)
    assert text.count("\n") == len(table) + 1
    assert "{ref}`paper Fig. 2 <fig-01-si>`" in text


def test_each_section_names_its_conditions_and_figure_sets(tmp_path, monkeypatch):
    monkeypatch.setenv("CLASSSEL_RUNS", str(tmp_path))
    r = sections.regularize(sections.defaults("regularize", "smoke", seeds=1, overrides={"progress": False}))
    assert list(r.groups) == ["unregularised", "α=-20 from epoch 0", "α=-20 from epoch 2", "α=-5 from epoch 0",
                              "α=-20 epochs 0-1 only"]
    assert r.sets["starts"] == ["unregularised", "α=-20 from epoch 0", "α=-20 from epoch 2"]
    assert r.windows == {"α=-20 epochs 0-1 only": (0, 2)}
    assert {c.target for c in r.claims} == {"fig-04-acc", "fig-04-alphas", "fig-04-alphas-si", "fig-04-recovery"}
    assert "Not tested" in r.claim("fig-04-nothing") and r.claim("fig-04-acc").count("\n") >= 2
    assert set(r.tables["metrics"].condition) == set(r.groups)
    # chapter 06 asks for no run that chapters 04 and 05 did not train
    p = sections.defaults("class_representation", "smoke", seeds=1, overrides={"progress": False})
    before = sorted(tmp_path.glob("*/seed0"))
    sections.promote(sections.defaults("promote", "smoke", seeds=1, overrides={"progress": False}))
    trained = sorted(tmp_path.glob("*/seed0"))
    sections.class_representation(p)
    assert sorted(tmp_path.glob("*/seed0")) == trained and len(trained) > len(before)
