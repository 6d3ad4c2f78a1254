"""The paper's figures with seaborn: one function per figure that rests on data (``fig2`` ...
``fig16``), each taking the tidy tables (see :mod:`classsel.claims`) and returning a
matplotlib Figure with the paper's axes, modules labelled by the paper's numbers 4-7, 95%
CI of the mean over seeds as shades, and a title naming the paper's figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from . import claims, stats
from .ablation_curves import ORDERS

#: Every family's modules as the paper's "module 4".."module 7", and the logits as "FC".
MODULE_LABELS = {m: label for m, label in claims.LAYER_LABELS.items() if m in claims.LAYER_NUMBER}
LAYER_LABELS = claims.LAYER_LABELS
PALETTE = dict(zip([f"module {n}" for n in (4, 5, 6, 7)], sns.color_palette("viridis", 4)))
LAYER_PALETTE = {**PALETTE, "FC": "0.3"}
#: Bootstrap resamples per shade: the claims' (:data:`classsel.stats.N_BOOT`), with their fixed seed.
N_BOOT = stats.N_BOOT


def mean_ci_bounds(values) -> tuple[float, float]:
    """A shade's bounds: the percentile bootstrap 95% CI of the mean over seeds, computed as the claims
    compute theirs (:func:`classsel.stats.mean_ci`: seeded, resampled all at once; seaborn's own
    bootstrap resamples one at a time in Python, a fifth of a chapter's time), of the values in
    ascending order, so that a shade does not depend on the order of the table's rows. No shade where
    one seed is left."""
    interval = stats.mean_ci(np.sort(np.asarray(values, dtype=np.float64)), n_boot=N_BOOT)
    return interval.low, interval.high


def ci_shades() -> dict:
    """seaborn's arguments for the shades: the 95% CI of the mean over seeds (:func:`mean_ci_bounds`)."""
    return {"errorbar": mean_ci_bounds}
ACCURACY = "top-1 accuracy"
SI_LABEL = "mean class selectivity index"


def setup() -> None:
    sns.set_theme(context="notebook", style="whitegrid")
    plt.rcParams["figure.dpi"] = 100


def si_long(metrics: pd.DataFrame, id_vars=("epoch", "step", "seed")) -> pd.DataFrame:
    """metrics' si_<module> columns as rows with a ``module`` label ("module 6")."""
    cols = [f"si_{m}" for m in _modules(metrics)]
    keep = [c for c in metrics.columns if c not in cols]
    long = metrics.melt(id_vars=keep, value_vars=cols, var_name="module", value_name="mean SI")
    long["module"] = long["module"].str.removeprefix("si_").map(MODULE_LABELS)
    return long


def _modules(metrics: pd.DataFrame) -> list[str]:
    """The modules whose mean SI ``metrics`` holds (``si_<module>`` columns with values), in order 4-7."""
    return claims.modules_in(c.removeprefix("si_") for c in metrics.columns
                             if c.startswith("si_") and metrics[c].notna().any())


def si_over_training(metrics: pd.DataFrame, ax=None, title="Mean class selectivity per module"):
    """Fig. 2: mean SI of each module's units against epoch, mean and 95% CI over seeds."""
    ax = ax or plt.subplots(figsize=(7, 4))[1]
    sns.lineplot(data=si_long(metrics), x="epoch", y="mean SI", hue="module", palette=PALETTE,
                 **ci_shades(), marker="o", markersize=4, ax=ax)
    ax.set(title=title, xlabel="epoch", ylabel=SI_LABEL)
    return ax


def by_condition(metrics: pd.DataFrame, y: str, hue: str, ax=None, title=None, ylabel=None, palette=None,
                 hue_order=None):
    """One line per condition (``hue``) over epochs, 95% CI over seeds."""
    ax = ax or plt.subplots(figsize=(7, 4))[1]
    sns.lineplot(data=metrics, x="epoch", y=y, hue=hue, **ci_shades(), marker="o", markersize=4, ax=ax,
                 palette=palette, hue_order=hue_order)
    ax.set(title=title, xlabel="epoch", ylabel=ylabel or y)
    return ax


def si_grid(metrics: pd.DataFrame, hue: str, title: str):
    """One panel per module, one line per condition (a seaborn FacetGrid)."""
    long = si_long(metrics)
    g = sns.relplot(data=long, x="epoch", y="mean SI", hue=hue, col="module", kind="line", **ci_shades(),
                    marker="o", markersize=3, height=3, aspect=1.1, col_order=[MODULE_LABELS[m] for m in _modules(metrics)])
    g.set_titles("{col_name}")
    g.set_axis_labels("epoch", SI_LABEL)
    g.figure.suptitle(title, y=1.04)
    return g


#: The resolution of a figure's PNG file.
PNG_DPI = 150


def save(fig, folder: str | Path, name: str) -> Path:
    """Write ``name``.png (at :data:`PNG_DPI`) and .svg into ``folder``; returns the PNG path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fig = getattr(fig, "figure", fig)
    fig.savefig(folder / f"{name}.png", dpi=PNG_DPI, bbox_inches="tight")
    fig.savefig(folder / f"{name}.svg", bbox_inches="tight")
    return folder / f"{name}.png"


def representation_bounds(counts: pd.DataFrame) -> dict[str, float]:
    """Fig. 16's reference lines from a prediction-count table (seed, step, class, count): the
    top-5 mean of predictions spread evenly over the classes, and of all in five classes."""
    images = counts.groupby(["seed", "step"])["count"].sum().iloc[0]
    return {"uniform": images / counts["class"].nunique(), "all_in_five": images / 5}


def column_explorer(metrics: pd.DataFrame, columns: Sequence[str]):
    """An explorer of any evaluation column of ``metrics`` over training, one line per condition."""
    def draw(column):
        by_condition(metrics, column, "condition", ax=plt.subplots(figsize=(7, 4))[1], title=column, ylabel=column)

    explorer(draw, column=list(columns))


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


# ----------------------------------------------------------------------------- building blocks


def _titled(fig, number: str, text: str):
    """Name the paper's figure in the suptitle: 'paper Fig. 6b: ...'."""
    fig.suptitle(f"paper Fig. {number}: {text}")
    return fig


def _panels(count: int, width: float = 3.4, height: float = 3.0, fig=None, sharey: bool = True):
    """A row of ``count`` panels, in a new figure or in a (sub)figure."""
    if fig is None:
        fig = plt.figure(figsize=(width * count, height + 0.6), layout="constrained")
    axes = fig.subplots(1, count, sharey=sharey, squeeze=False)[0]
    return fig, list(axes)


def _keep_one_legend(axes, title: str | None = None) -> None:
    """Only the last panel keeps its legend (the lines are the same in every panel)."""
    for ax in axes[:-1]:
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    legend = axes[-1].get_legend()
    if legend is not None and title is not None:
        legend.set_title(title)


def _conditions(metrics: pd.DataFrame, conditions: Sequence[str] | None) -> tuple[pd.DataFrame, list[str]]:
    """The rows of ``conditions`` (None: all, in table order) and their order for the legend."""
    order = list(pd.unique(metrics["condition"])) if conditions is None else list(conditions)
    missing = [c for c in order if c not in set(metrics["condition"])]
    if missing:
        raise ValueError(f"conditions {missing} are not in the metrics table; it has "
                         f"{list(pd.unique(metrics['condition']))}")
    return metrics[metrics["condition"].isin(order)], order


def _si_panels(metrics: pd.DataFrame, order: list[str], fig=None, shade=None):
    """One panel per module (4-7): mean SI over epochs, one line per condition."""
    labels = [MODULE_LABELS[m] for m in _modules(metrics)]
    fig, axes = _panels(len(labels), fig=fig)
    long = si_long(metrics)
    for ax, label in zip(axes, labels):
        sns.lineplot(data=long[long.module == label], x="epoch", y="mean SI", hue="condition",
                     hue_order=order,
                     **ci_shades(), marker="o", markersize=3, ax=ax)
        ax.set(title=label, xlabel="epoch", ylabel=SI_LABEL)
        _shade(ax, shade)
    _keep_one_legend(axes)
    return fig, axes


def _accuracy_panels(metrics: pd.DataFrame, order: list[str], fig=None, shade=None):
    """Training (running, over the batches since the last evaluation) and validation accuracy."""
    fig, axes = _panels(2, width=4.6, fig=fig)
    trained = metrics[metrics.epoch > 0]  # no training accuracy before the first step
    for ax, data, column, title in ((axes[0], trained, "train_acc1", "training accuracy"),
                                    (axes[1], metrics, "val_acc1", "validation accuracy")):
        by_condition(data, column, "condition", ax=ax, title=title, ylabel=ACCURACY, hue_order=order)
        _shade(ax, shade)
    _keep_one_legend(axes)
    return fig, axes


def _shade(ax, windows) -> None:
    """Grey bands over the epochs during which a regulariser is on."""
    for start, stop in sorted(set(windows or ())):
        ax.axvspan(start, stop, color="grey", alpha=0.1, lw=0)


def _si_and_accuracy(metrics: pd.DataFrame, number: str, text: str, conditions=None, windows=None):
    """SI per module on top, accuracy below: the layout of the paper's Figs. 6, 13 and 14."""
    data, order = _conditions(metrics, conditions)
    fig = plt.figure(figsize=(13.6, 7.4), layout="constrained")
    top, bottom = fig.subfigures(2, 1)
    _, si_axes = _si_panels(data, order, fig=top, shade=windows)
    si_axes[-1].get_legend().remove()  # the accuracy panels below name the same conditions
    _accuracy_panels(data, order, fig=bottom, shade=windows)
    return _titled(fig, number, text)


def _windows(windows) -> list[tuple[float, float]]:
    return list(windows.values()) if isinstance(windows, Mapping) else list(windows or ())


# ----------------------------------------------------------------------------- the paper's figures


def fig2(metrics: pd.DataFrame):
    """Mean SI of each module (4-7) over training. Reads metrics: epoch, seed, si_layer1..4."""
    fig, ax = plt.subplots(figsize=(7, 4.4), layout="constrained")
    si_over_training(metrics, ax=ax, title="")
    return _titled(fig, "2", "class selectivity over training")


def ablation_curves(ablation: pd.DataFrame) -> pd.DataFrame:
    """Ablation curves per seed, random draws averaged, with the paper's module labels and the
    checkpoint's epoch as a label ("0.5")."""
    keys = ["seed", "epoch", "module", "order", "k", "fraction"]
    curves = ablation.groupby(keys, as_index=False)["normalized"].mean()
    curves["module"] = curves["module"].map(MODULE_LABELS)
    curves["checkpoint"] = curves["epoch"].map(lambda e: f"{e:.2f}".rstrip("0").rstrip("."))
    return curves


def fig3(ablation: pd.DataFrame, modules: Sequence[str] | None = None):
    """Left: the area under the ablation curves over training, selective against random
    order; right: the curves themselves, one line per checkpoint. One column per module
    here (the paper shows modules 4-6). Reads ablation: seed, epoch, module, number, order,
    draw, k, fraction, normalized."""
    labels = [MODULE_LABELS[m] for m in (claims.modules_in(ablation.module.unique()) if modules is None else modules)]
    areas = claims.auc_difference(ablation).melt(id_vars=["seed", "epoch", "module"], value_vars=list(ORDERS),
                                                 var_name="order", value_name="auc")
    areas["module"] = areas["module"].map(MODULE_LABELS)
    curves = ablation_curves(ablation)
    checkpoints = list(dict.fromkeys(curves.sort_values("epoch").checkpoint))
    palette = sns.color_palette("crest", len(checkpoints))
    fig, axes = plt.subplots(3, len(labels), figsize=(3.4 * len(labels), 9.6), sharey="row", squeeze=False,
                             layout="constrained")
    for col, label in enumerate(labels):
        sns.lineplot(data=areas[areas.module == label], x="epoch", y="auc", hue="order",
                     hue_order=list(ORDERS),
                     **ci_shades(), marker="o", markersize=4, ax=axes[0, col])
        axes[0, col].set(title=label, xlabel="epoch", ylabel="AUC (sum of normalised accuracy)")
        for row, order in enumerate(ORDERS, start=1):
            sel = curves[(curves.module == label) & (curves.order == order)]
            sns.lineplot(data=sel, x="fraction", y="normalized", hue="checkpoint", hue_order=checkpoints,
                         palette=palette, **ci_shades(), ax=axes[row, col])
            axes[row, col].set(title=f"{label}, {order} order", xlabel="fraction ablated per block",
                               ylabel="normalised accuracy")
    for row in range(3):
        _keep_one_legend(list(axes[row]), None if row == 0 else "epoch")
    return _titled(fig, "3", "selective against random ablation over training")


def _pairs(cka: pd.DataFrame) -> pd.DataFrame:
    """CKA rows of distinct layers with the paper's labels."""
    pairs = cka[cka.a != cka.b].copy()
    pairs["reference"], pairs["other"] = pairs.a.map(LAYER_LABELS), pairs.b.map(LAYER_LABELS)
    return pairs


def fig5(cka: pd.DataFrame, first: str = "layer1", later: Sequence[str] = claims.LATE_LAYERS):
    """CKA between module 4 and the late layers (module 7, FC) over training.
    Reads cka: seed, epoch, a, b, cka."""
    pairs = _pairs(cka)
    sel = pairs[(pairs.a == first) & pairs.b.isin(later)]
    fig, ax = plt.subplots(figsize=(7, 4.4), layout="constrained")
    sns.lineplot(data=sel, x="epoch", y="cka", hue="other", hue_order=[LAYER_LABELS[b] for b in later],
                 palette=LAYER_PALETTE, **ci_shades(), marker="o", markersize=4, ax=ax)
    ax.set(title=f"{LAYER_LABELS[first]} against later layers", xlabel="epoch", ylabel="CKA", ylim=(0, 1.02))
    ax.get_legend().set_title("compared with")
    return _titled(fig, "5", "representational similarity over training")


def fig6a(metrics: pd.DataFrame, conditions: Sequence[str] | None = None):
    """Mean SI per module, one line per condition (unregularised; regularised against
    selectivity from different epochs). Reads metrics: condition, epoch, seed, si_layer1..4."""
    data, order = _conditions(metrics, conditions)
    fig, _ = _si_panels(data, order)
    return _titled(fig, "6a", "selectivity under regularisation against it")


def fig6b(metrics: pd.DataFrame, conditions: Sequence[str] | None = None):
    """Training and validation accuracy, one line per condition. Reads metrics: condition, epoch,
    seed, train_acc1, val_acc1."""
    data, order = _conditions(metrics, conditions)
    fig, _ = _accuracy_panels(data, order)
    return _titled(fig, "6b", "accuracy under regularisation against selectivity")


def fig6(metrics: pd.DataFrame, conditions: Sequence[str] | None = None):
    """Figs. 6a (SI per module, top) and 6b (accuracy, bottom) in one figure."""
    return _si_and_accuracy(metrics, "6", "regularisation against selectivity", conditions)


def fig7(metrics: pd.DataFrame, conditions: Sequence[str] | None = None):
    """Accuracy of networks regularised against selectivity from different start epochs."""
    data, order = _conditions(metrics, conditions)
    fig, _ = _accuracy_panels(data, order)
    return _titled(fig, "7", "regularisation against selectivity from different epochs")


def fig8(ablation: pd.DataFrame):
    """Ablation curves of the network at the last checkpoint, selective against random order,
    one panel per module."""
    curves = ablation_curves(ablation)
    final = curves[curves.epoch == curves.epoch.max()]
    labels = [MODULE_LABELS[m] for m in claims.modules_in(ablation.module.unique())]
    fig, axes = _panels(len(labels))
    for ax, label in zip(axes, labels):
        sns.lineplot(data=final[final.module == label], x="fraction", y="normalized", hue="order",
                     hue_order=list(ORDERS), **ci_shades(), marker="o", markersize=4, ax=ax)
        ax.set(title=label, xlabel="fraction ablated per block", ylabel="normalised accuracy")
    _keep_one_legend(axes, "order")
    return _titled(fig, "8", f"ablation of the trained network (epoch {final.epoch.max():g})")


def fig9(units: pd.DataFrame):
    """Mean SI of every bottleneck block over training, one panel per module, one line per block.
    Reads units: seed, epoch, module, block, si."""
    blocks = units.groupby(["seed", "epoch", "module", "block"], as_index=False)["si"].mean()
    modules = claims.modules_in(blocks.module.unique())
    fig, axes = _panels(len(modules))
    for ax, (module, label) in zip(axes, ((m, MODULE_LABELS[m]) for m in modules)):
        sel = blocks[blocks.module == module]
        sns.lineplot(data=sel, x="epoch", y="si", hue="block", palette="crest", **ci_shades(), ax=ax,
                     legend="full")
        ax.set(title=label, xlabel="epoch", ylabel=SI_LABEL)
        ax.legend(title="block", fontsize="small")
    return _titled(fig, "9", "class selectivity of each bottleneck block")


def fig10(cka: pd.DataFrame, layers: Sequence[str] | None = None):
    """CKA between every pair of layers over training, one panel per reference module.
    ``layers``: None, every layer of the table in network order."""
    names = [x for x in LAYER_LABELS if x in set(cka.a)] if layers is None else list(layers)
    pairs = _pairs(cka[cka.a.isin(names) & cka.b.isin(names)])
    references = [LAYER_LABELS[x] for x in names if x in MODULE_LABELS]
    fig, axes = _panels(len(references))
    for ax, reference in zip(axes, references):
        sns.lineplot(data=pairs[pairs.reference == reference], x="epoch", y="cka", hue="other",
                     hue_order=[LAYER_LABELS[x] for x in names], palette=LAYER_PALETTE, **ci_shades(),
                     marker="o", markersize=3, ax=ax)
        ax.set(title=reference, xlabel="epoch", ylabel="CKA", ylim=(0, 1.02))
    _keep_one_legend(axes, "compared with")
    return _titled(fig, "10", "representational similarity between all pairs of layers")


def fig11(metrics: pd.DataFrame, conditions: Sequence[str] | None = None):
    """Accuracy of networks regularised against selectivity from epoch 0 at several strengths."""
    data, order = _conditions(metrics, conditions)
    fig, _ = _accuracy_panels(data, order)
    return _titled(fig, "11", "regularisation against selectivity at several strengths")


def fig12(metrics: pd.DataFrame, conditions: Sequence[str] | None = None):
    """Mean SI per module of networks regularised against selectivity at several strengths."""
    data, order = _conditions(metrics, conditions)
    fig, _ = _si_panels(data, order)
    return _titled(fig, "12", "selectivity at several regularisation strengths")


def fig13(metrics: pd.DataFrame, windows=None, conditions: Sequence[str] | None = None):
    """SI per module and accuracy of networks regularised in favour of selectivity (large
    alpha, modules 4-6, first epochs); grey bands: ``windows``, the (start, stop) epochs of
    regularisation ({condition: (start, stop)} or a list of pairs)."""
    return _si_and_accuracy(metrics, "13", "regularisation in favour of selectivity", conditions,
                            _windows(windows))


def fig14(metrics: pd.DataFrame, windows=None, conditions: Sequence[str] | None = None):
    """As :func:`fig13` for small alpha in all modules, for the first epochs or the first only."""
    return _si_and_accuracy(metrics, "14", "regularisation in favour of selectivity, small strengths",
                            conditions, _windows(windows))


def fig15(metrics: pd.DataFrame, conditions: Sequence[str] | None = None, windows=None):
    """Accuracy of networks regularised against selectivity throughout and of networks
    regularised for the first epochs only, then released (grey bands: ``windows``)."""
    data, order = _conditions(metrics, conditions)
    fig, _ = _accuracy_panels(data, order, shade=_windows(windows))
    return _titled(fig, "15", "recovery after regularisation against selectivity")


def fig16(metrics: pd.DataFrame, conditions: Sequence[str] | None = None, early_until: float = 1.0,
          uniform: float | None = None, all_in_five: float | None = None):
    """The mean of the five largest class counts of the predictions over training (left) and up to
    ``early_until`` (right); dashed: evenly spread predictions (``uniform``), dotted: every
    prediction in five classes (``all_in_five``). Reads metrics: condition, epoch, seed,
    top5_count."""
    data, order = _conditions(metrics, conditions)
    fig, axes = _panels(2, width=4.8, sharey=False)
    for ax, sel, title in ((axes[0], data, "over training"),
                           (axes[1], data[data.epoch <= early_until], f"up to epoch {early_until:g}")):
        by_condition(sel, "top5_count", "condition", ax=ax, title=title,
                     ylabel="mean of the top-5 class counts", hue_order=order)
        if uniform is not None:
            ax.axhline(uniform, color="grey", ls="--", lw=1, label="evenly spread predictions")
        if all_in_five is not None:
            ax.axhline(all_in_five, color="grey", ls=":", lw=1, label="all predictions in 5 classes")
    axes[1].legend(fontsize="small")
    _keep_one_legend(axes)
    return _titled(fig, "16", "class representation")
