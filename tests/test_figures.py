"""Every paper figure draws on small tables: a Figure with the paper's panels, module labels
4-7, and a title that names the paper's figure."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import seaborn as sns  # noqa: E402

from classsel import figures  # noqa: E402
from classsel.models import MODULES  # noqa: E402

SEEDS, TIMES = range(3), (0.0, 0.5, 1.0, 2.0)
MODULE_TITLES = ["module 4", "module 5", "module 6", "module 7"]
RNG = np.random.default_rng(0)


def metrics_table(conditions=("unregularised", "α=-20 from epoch 0", "α=-20 from epoch 2")):
    rows = [{"condition": c, "seed": s, "epoch": e, "step": int(10 * e), "val_acc1": RNG.uniform(),
             "train_acc1": RNG.uniform() if e else np.nan, "top5_count": RNG.uniform(50, 100),
             **{f"si_{m}": RNG.uniform(0, 0.3) for m in MODULES}}
            for c in conditions for s in SEEDS for e in TIMES]
    return pd.DataFrame(rows)


def ablation_table():
    rows = [{"seed": s, "epoch": e, "module": m, "number": n, "order": o, "draw": d, "k": k,
             "fraction": k / 2, "accuracy": 0.5, "normalized": 1 - k * RNG.uniform(0, 0.5)}
            for s in SEEDS for e in TIMES for n, m in enumerate(MODULES, 4)
            for o, draws in (("selective", 1), ("random", 2)) for d in range(draws) for k in range(3)]
    return pd.DataFrame(rows)


def cka_table():
    layers = [*MODULES, "fc"]
    return pd.DataFrame([{"seed": s, "epoch": e, "a": a, "b": b, "cka": 1.0 if a == b else RNG.uniform()}
                         for s in SEEDS for e in TIMES for a in layers for b in layers])


def units_table():
    return pd.DataFrame([{"seed": s, "epoch": e, "module": m, "block": b, "unit": u, "si": RNG.uniform()}
                         for s in SEEDS for e in TIMES for m in MODULES for b in range(2) for u in range(3)])


@pytest.fixture(autouse=True)
def close_figures(monkeypatch):
    monkeypatch.setattr(figures, "N_BOOT", 20)  # the shades' resamples: what is drawn, not how well
    yield
    plt.close("all")


def titles(fig):
    return [ax.get_title() for ax in fig.axes]


def check(fig, number, panels):
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(fig.axes) == panels
    suptitle = fig._suptitle.get_text()
    assert suptitle.startswith(f"paper Fig. {number}:"), suptitle


def test_fig2_one_panel_with_the_paper_module_numbers():
    fig = figures.fig2(metrics_table(["unregularised"]))
    check(fig, "2", 1)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == MODULE_TITLES
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("epoch", figures.SI_LABEL)
    assert len(ax.collections) == 4  # one CI shade per module


def test_fig3_areas_and_curves_per_module():
    fig = figures.fig3(ablation_table())
    check(fig, "3", 12)
    assert titles(fig)[:4] == MODULE_TITLES and titles(fig)[4] == "module 4, selective order"
    assert titles(fig)[8] == "module 4, random order"
    legend = fig.axes[7].get_legend()
    assert legend.get_title().get_text() == "epoch"
    assert [t.get_text() for t in legend.get_texts()] == ["0", "0.5", "1", "2"]
    assert len(figures.fig3(ablation_table(), modules=MODULES[:3]).axes) == 9


def test_fig5_and_fig10_cka():
    fig = figures.fig5(cka_table())
    check(fig, "5", 1)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["module 7", "FC"]
    fig = figures.fig10(cka_table())
    check(fig, "10", 4)
    assert titles(fig) == MODULE_TITLES
    assert [t.get_text() for t in fig.axes[-1].get_legend().get_texts()] == [*MODULE_TITLES, "FC"]
    assert len(figures.fig10(cka_table(), layers=["layer1", "layer3", "fc"]).axes) == 2


@pytest.mark.parametrize("draw,number,panels", [
    (figures.fig6a, "6a", 4), (figures.fig6b, "6b", 2), (figures.fig6, "6", 6), (figures.fig7, "7", 2),
    (figures.fig11, "11", 2), (figures.fig12, "12", 4), (figures.fig15, "15", 2), (figures.fig16, "16", 2),
])
def test_figures_by_condition(draw, number, panels):
    fig = draw(metrics_table())
    check(fig, number, panels)
    labelled = [ax for ax in fig.axes if ax.get_legend() is not None]
    assert len(labelled) == 1  # one legend, naming the conditions in table order
    texts = [t.get_text() for t in labelled[0].get_legend().get_texts()]
    assert texts[:3] == ["unregularised", "α=-20 from epoch 0", "α=-20 from epoch 2"]
    if panels >= 4:
        assert titles(fig)[:4] == MODULE_TITLES


def test_figures_choose_conditions_and_name_unknown_ones():
    fig = figures.fig6b(metrics_table(), conditions=["α=-20 from epoch 2", "unregularised"])
    legend = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert legend == ["α=-20 from epoch 2", "unregularised"]
    with pytest.raises(ValueError, match=r"conditions \['α=-5'\] are not in the metrics table"):
        figures.fig7(metrics_table(), conditions=["α=-5"])


def test_fig13_fig14_shade_the_regularised_epochs():
    table = metrics_table(["unregularised", "α=+5, epochs 0-1"])
    fig = figures.fig13(table, windows={"α=+5, epochs 0-1": (0, 1)})
    check(fig, "13", 6)
    assert all(len(ax.patches) == 1 for ax in fig.axes)  # one grey band per panel
    check(figures.fig14(table, windows=[(0, 1), (0, 2)]), "14", 6)


def test_fig16_reference_lines():
    fig = figures.fig16(metrics_table(), uniform=50.0, all_in_five=200.0, early_until=0.5)
    check(fig, "16", 2)
    assert fig.axes[1].get_title() == "up to epoch 0.5"
    levels = [line.get_ydata()[0] for line in fig.axes[0].lines if line.get_linestyle() in ("--", ":")]
    assert sorted(levels) == [50.0, 200.0]


def test_fig8_fig9_per_module():
    fig = figures.fig8(ablation_table())
    check(fig, "8", 4)
    assert titles(fig) == MODULE_TITLES and "epoch 2" in fig._suptitle.get_text()
    fig = figures.fig9(units_table())
    check(fig, "9", 4)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["0", "1"]


def test_the_layout_with_subfigures_renders_and_saves(tmp_path):
    fig = figures.fig6(metrics_table())
    fig.canvas.draw()
    assert fig.axes[0].get_window_extent().y0 > fig.axes[-1].get_window_extent().y1  # SI above accuracy
    png = figures.save(figures.fig5(cka_table()), tmp_path, "fig5")
    assert png.stat().st_size > 10_000 and (tmp_path / "fig5.svg").exists()


def test_the_notebook_helpers_still_draw():
    table = metrics_table()
    assert figures.si_over_training(table).get_title() == "Mean class selectivity per module"
    assert figures.by_condition(table, "val_acc1", "condition").get_xlabel() == "epoch"
    assert len(figures.si_grid(table, "condition", "t").axes.flat) == 4


def test_a_shade_is_the_claims_bootstrap_interval_of_the_mean_over_seeds():
    """The shades are the percentile bootstrap CI of the mean, seeded as the claims' (a figure is the same
    in every build) and of the values in ascending order (whatever the order of the rows): checked against
    resamples drawn and averaged one by one."""
    values = {0: [0.1, 0.4, 0.35, 0.8], 1: [0.5, 0.52, 0.9, 0.2], 2: [0.3, 0.3, 0.3, 0.31]}
    data = pd.DataFrame([{"epoch": e, "seed": s, "si": v} for e, vs in values.items() for s, v in enumerate(vs)])
    ax = plt.subplots()[1]
    sns.lineplot(data=data, x="epoch", y="si", **figures.ci_shades(), ax=ax)
    (shade,) = ax.collections
    drawn = shade.get_paths()[0].vertices
    for epoch, vs in values.items():
        x = np.sort(vs)
        rng = np.random.default_rng(0)
        draws = rng.integers(0, len(x), size=(figures.N_BOOT, len(x)))
        means = [sum(x[i] for i in row) / len(row) for row in draws]
        expected = np.quantile(means, [0.025, 0.975])
        edges = np.sort(np.unique(drawn[np.isclose(drawn[:, 0], epoch), 1]))
        assert edges == pytest.approx(expected, abs=1e-12), epoch
    # one seed: no interval, so no shade (never a band that would look certain)
    assert np.isnan(figures.mean_ci_bounds([0.3])).all()
    assert figures.mean_ci_bounds(values[0]) == figures.mean_ci_bounds(values[0][::-1])


def test_a_published_figure_is_glued_as_its_png_file_at_its_size_on_screen(tmp_path, monkeypatch):
    """The book shows the PNG file the chapter wrote (not a third drawing of the figure), at the width
    the figure has on screen; the SVG is written beside it."""
    import myst_nb
    from PIL import Image as PILImage

    from classsel import book

    glued = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, obj, display: glued.update({name: (obj, display)}))
    fig, ax = plt.subplots(figsize=(4, 3), dpi=100)
    ax.plot([0, 1], [1, 0])
    book.publish(fig, tmp_path, "fig-test")
    image, display = glued["fig-test"]
    png = tmp_path / "fig-test.png"
    assert image.data == png.read_bytes() and not display and (tmp_path / "fig-test.svg").exists()
    with PILImage.open(png) as file:
        assert file.info["dpi"][0] == pytest.approx(figures.PNG_DPI, abs=0.1)  # stored in pixels per metre
        assert image.width == round(file.width * 100 / figures.PNG_DPI)
    assert image._repr_png_()[1] == {"width": image.width}  # what the notebook stores with the image
