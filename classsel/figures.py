"""The paper's figures with seaborn: modules labelled 4-7, 95% CI of the mean as shades."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .models import MODULES, PAPER_NUMBER

MODULE_LABELS = {m: f"module {PAPER_NUMBER[m]}" for m in MODULES}
PALETTE = dict(zip(MODULE_LABELS.values(), sns.color_palette("viridis", 4)))
CI = ("ci", 95)


def setup() -> None:
    sns.set_theme(context="notebook", style="whitegrid")
    plt.rcParams["figure.dpi"] = 100


def si_long(metrics: pd.DataFrame, id_vars=("epoch", "step", "seed")) -> pd.DataFrame:
    """metrics' si_layerN columns as rows with a ``module`` label ("module 6")."""
    cols = [f"si_{m}" for m in MODULES]
    keep = [c for c in metrics.columns if c not in cols]
    long = metrics.melt(id_vars=keep, value_vars=cols, var_name="module", value_name="mean SI")
    long["module"] = long["module"].str.removeprefix("si_").map(MODULE_LABELS)
    return long


def si_over_training(metrics: pd.DataFrame, ax=None, title="Mean class selectivity per module"):
    """Fig. 2: mean SI of each module's units against epoch, mean and 95% CI over seeds."""
    ax = ax or plt.subplots(figsize=(7, 4))[1]
    sns.lineplot(data=si_long(metrics), x="epoch", y="mean SI", hue="module", palette=PALETTE,
                 errorbar=CI, marker="o", markersize=4, ax=ax)
    ax.set(title=title, xlabel="epoch", ylabel="mean class selectivity index")
    return ax


def by_condition(metrics: pd.DataFrame, y: str, hue: str, ax=None, title=None, ylabel=None, palette=None):
    """One line per condition (``hue``) over epochs, 95% CI over seeds."""
    ax = ax or plt.subplots(figsize=(7, 4))[1]
    sns.lineplot(data=metrics, x="epoch", y=y, hue=hue, errorbar=CI, marker="o", markersize=4, ax=ax,
                 palette=palette)
    ax.set(title=title, xlabel="epoch", ylabel=ylabel or y)
    return ax


def si_grid(metrics: pd.DataFrame, hue: str, title: str):
    """Figs. 6a/12/13/14: one panel per module, one line per condition."""
    long = si_long(metrics)
    g = sns.relplot(data=long, x="epoch", y="mean SI", hue=hue, col="module", kind="line", errorbar=CI,
                    marker="o", markersize=3, height=3, aspect=1.1, col_order=list(MODULE_LABELS.values()))
    g.set_titles("{col_name}")
    g.set_axis_labels("epoch", "mean class selectivity index")
    g.figure.suptitle(title, y=1.04)
    return g


def save(fig, folder: str | Path, name: str) -> Path:
    """Write ``name``.png (and .svg) into ``folder``; returns the PNG path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fig = getattr(fig, "figure", fig)
    fig.savefig(folder / f"{name}.png", dpi=150, bbox_inches="tight")
    fig.savefig(folder / f"{name}.svg", bbox_inches="tight")
    return folder / f"{name}.png"


def explorer(draw, **choices):
    """An ipywidgets explorer over ``choices`` that also leaves a static view.

    The first value of every choice is drawn as an ordinary figure, so the HTML book
    (which has no live kernel) shows it; a live kernel gets the controls below it.
    """
    import ipywidgets as widgets
    from IPython.display import display

    first = {k: v[0] for k, v in choices.items()}
    draw(**first)
    plt.show()
    controls = {k: widgets.Dropdown(options=v, value=v[0], description=k) for k, v in choices.items()}
    out = widgets.interactive_output(lambda **kw: (draw(**kw), plt.show()), controls)
    display(widgets.VBox([widgets.HBox(list(controls.values())), out]))
