# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The early network is close to linear
#
# Paper section 4.3 and appendix A.4, Figs. 5 and 10 {cite:p}`ranadive2023`. We compare
# what the modules represent with minibatch linear CKA ({eq}`eq-hsic`, {eq}`eq-cka`)
# {cite:p}`kornblith2019similarity,nguyen2021wide` on the validation set, at every
# evaluation point of the baseline runs. The paper finds that the representation of
# module 4 is very similar to those of module 7 and of the logits (FC) during the first
# epochs and much less so later: early in training the network behaves almost like a
# linear map, so that later layers can build on the class-selective features of early
# layers.

# %% tags=["remove-cell"]
# On Colab, or wherever classsel is missing, install it from the book's repository; elsewhere nothing.
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("classsel") is None:
    url = "https://github.com/classsel/classsel"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", f"classsel @ git+{url}"], check=True)
    importlib.invalidate_caches()

# %% tags=["parameters"]
import os

preset = os.environ.get("CLASSSEL_PRESET", "mnist")  # smoke | mnist | cifar10 | imagenet
seeds = None  # None: the preset's default (mnist: 3, imagenet: 6), a count, or a list
epochs = None  # None: the preset's
data_root = None  # the dataset folder, for cifar10 and imagenet
overrides = None  # configuration fields changed in every run, e.g. {"image_size": 128, "batch_size": 64}
out_dir = None  # None: runs/results/03_cka
cka_epochs = None  # None: every evaluation point; or a list of epochs (fractions allowed)
# Layers compared: at least two of the module outputs layer1..layer4 (modules 4-7) and
# the logits fc. Fig. 5 pairs the earliest of them with the two latest.
layers = ["layer1", "layer2", "layer3", "layer4", "fc"]

# %% tags=["remove-cell"]
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from classsel import cka
from classsel import experiments as ex
from classsel import params
from classsel import figures, runs

p = params.check("cka", globals())
seeds, epochs, setting, out = p.seeds, p.epochs, p.setting, p.out
cka_epochs, layers = p.cka_epochs, p.layers
figures.setup()
LABELS = {**figures.MODULE_LABELS, "fc": "FC"}

# %% [markdown]
# ## Runs
#
# The baseline runs are shared with the emergence, ablation and class-representation
# chapters: the run store trains them once and reuses them. Each CKA matrix is stored
# with its run, so re-executing this notebook does not recompute it.

# %% tags=["remove-output"]
base = ex.baseline(setting, seeds)

# %% tags=["remove-output"]
# Every matrix covers all the layers (one forward pass computes them all); the chosen
# ones are selected afterwards.
matrices = ex.cka_over_training(base, cka_epochs)

# %%
glue("prov-03", Markdown(ex.provenance(base)), display=False)
missing = sorted(set(layers) - set(matrices.a))
if missing:
    raise RuntimeError(f"the stored CKA tables lack layers {missing}: delete the runs' derived/cka_step*.csv files "
                       "to recompute them")
matrices = matrices[matrices.a.isin(layers) & matrices.b.isin(layers)]
matrices.to_csv(out / "cka.csv", index=False)
pairs = matrices[matrices.a.map(layers.index) < matrices.b.map(layers.index)].copy()
pairs["pair"] = pairs.a.map(LABELS) + " – " + pairs.b.map(LABELS)
(pairs.groupby(["epoch", "pair"])["cka"].mean().unstack("pair").round(3)
 .rename_axis(columns=None).rename_axis(index="epoch (CKA, mean over seeds)"))

# %% [markdown]
# ## Module 4 against the last layers (Fig. 5)
#
# {numref}`fig-03-cka` shows the CKA between the earliest layer compared (module 4 by
# default) and the two latest (module 7 and the logits).

# %% tags=["remove-output"]
first, latest = layers[0], layers[-2:] if len(layers) > 2 else layers[-1:]
fig5 = pairs[(pairs.a == first) & pairs.b.isin(latest)]
fig, ax = plt.subplots(figsize=(7, 4))
figures.sns.lineplot(data=fig5, x="epoch", y="cka", hue="pair", errorbar=figures.CI, marker="o", markersize=4,
                     ax=ax)
ax.set(title=f"Representational similarity of {LABELS[first]} to later layers", xlabel="epoch",
       ylabel="CKA", ylim=(0, 1.02))
figures.save(fig, out, "fig5_cka_module4")
glue("fig-03-cka", fig, display=False)
plt.show()

# %% [markdown]
# ```{glue:figure} fig-03-cka
# :name: fig-03-cka
#
# Minibatch linear CKA between module 4 and the later layers (module 7, FC) over
# training, as in the paper's Fig. 5; shades: 95% CI of the mean over seeds.
# Provenance: {glue:md}`prov-03`.
# ```
#
# The effect size is, per seed, the CKA at its early peak (the highest value among the
# trained evaluation points of the first epoch, or the first trained point if none
# falls within it) minus the CKA at the last evaluation point, with a 95% bootstrap CI
# over seeds. A "close to linear" early network predicts a positive difference.

# %%
trained = sorted(e for e in pairs.epoch.unique() if e > 0)
last = max(trained) if trained else None
early_epochs = [e for e in trained if e <= 1 and e != last] or [e for e in trained[:1] if e != last]
rows = []
for (a, b, label, seed), g in pairs.groupby(["a", "b", "pair", "seed"]):
    early = g[g.epoch.isin(early_epochs)]
    if early.empty or last is None:
        continue
    peak = early.loc[early.cka.idxmax()]
    rows.append({"a": a, "b": b, "pair": label, "seed": seed, "initial": g[g.epoch == 0].cka.mean(),
                 "peak": peak.cka, "peak_epoch": peak.epoch, "final": g[g.epoch == last].cka.mean()})
summary = pd.DataFrame(rows, columns=["a", "b", "pair", "seed", "initial", "peak", "peak_epoch", "final"])
summary["fall"] = summary.peak - summary.final
summary.to_csv(out / "cka_peak_and_final.csv", index=False)
caveat = (f" The intervals are bootstrap CIs over {len(seeds)} seeds (the paper used 6), so they are only "
          "indicative." if len(seeds) < 5 else "")


def describe(g):
    return (f"CKA {ex.fmt_ci(*ex.mean_ci(g.peak))} at its early peak (epoch {g.peak_epoch.mean():.2f} on "
            f"average; {g.initial.mean():.3f} at initialisation) and {ex.fmt_ci(*ex.mean_ci(g.final))} at epoch "
            f"{last:g}; peak minus final {ex.fmt_ci(*ex.mean_ci(g.fall))}")


if summary.empty:
    display(Markdown("The comparison of early and late needs at least two trained evaluation points; choose more "
                     "`cka_epochs`."))
else:
    main = summary[(summary.a == first) & summary.b.isin(latest)]
    lines = [f"- **{label}**: {describe(g)}." for label, g in main.groupby("pair", sort=False)]
    drops = {label: ex.mean_ci(g.fall) for label, g in main.groupby("pair", sort=False)}
    higher = [p for p, (_, lo, _) in drops.items() if lo > 0]
    lower = [p for p, (_, _, hi) in drops.items() if hi < 0]
    if len(higher) == len(drops):
        verdict = ("The paper's claim holds at this scale: the similarity of the early and the latest layers is "
                   "higher early in training than at the end (every CI of the difference lies above zero).")
    elif higher:
        verdict = (f"The paper's claim holds only in part at this scale: the early similarity is higher than the "
                   f"final one for {', '.join(higher)}, but not clearly for the other pair.")
    else:
        verdict = ("At this scale the data do not support the paper's claim: for no pair does the CI of the "
                   "difference between the early peak and the final CKA lie above zero.")
    if lower:
        verdict += f" For {', '.join(lower)} the CI lies below zero: the CKA is higher at the end than early."
    display(Markdown("\n".join(lines) + "\n\n" + verdict + caveat))

# %% [markdown]
# ## All pairs of layers (Fig. 10)
#
# {numref}`fig-03-all` shows every pair, one panel per reference layer: the paper
# reports that all pairs follow the same course.

# %% tags=["remove-output"]
both = pd.concat([pairs, pairs.rename(columns={"a": "b", "b": "a"})], ignore_index=True)
both["reference"] = both.a.map(LABELS)
both["other"] = both.b.map(LABELS)
references = [LABELS[name] for name in layers if name != "fc"]
g = figures.sns.relplot(data=both[both.reference.isin(references)], x="epoch", y="cka", hue="other",
                        col="reference", kind="line", errorbar=figures.CI, marker="o", markersize=3, height=3,
                        aspect=1.1, col_order=references, hue_order=[LABELS[name] for name in layers],
                        palette=dict(zip([LABELS[n] for n in cka.LAYERS],
                                         figures.sns.color_palette("viridis", 4) + ["0.3"])))
g.set_titles("{col_name}")
g.set_axis_labels("epoch", "CKA")
g.set(ylim=(0, 1.02))
g.legend.set_title("compared with")
g.figure.suptitle("Representational similarity between all pairs of layers", y=1.04)
figures.save(g, out, "fig10_cka_all_pairs")
glue("fig-03-all", g.figure, display=False)
plt.show()

# %% [markdown]
# ```{glue:figure} fig-03-all
# :name: fig-03-all
#
# Minibatch linear CKA between every pair of layers over training, one panel per
# reference module, as in the paper's Fig. 10; shades: 95% CI of the mean over seeds.
# Provenance: {glue:md}`prov-03`.
# ```

# %%
if not summary.empty:
    drops = {label: ex.mean_ci(g.fall) for label, g in summary.groupby("pair", sort=False)}
    higher = [p for p, (_, lo, _) in drops.items() if lo > 0]
    lower = [p for p, (_, _, hi) in drops.items() if hi < 0]
    lines = [f"- **{p}**: peak minus final {ex.fmt_ci(*d)}." for p, d in drops.items()]
    n = len(drops)
    verdict = (f"For {len(higher)} of {n} pairs the early peak lies above the final CKA (CI above zero)"
               + (f"; for {len(lower)} it lies below ({', '.join(lower)})" if lower else "")
               + (f"; for the remaining {n - len(higher) - len(lower)} the CI includes zero"
                  if n - len(higher) - len(lower) else "") + ". ")
    verdict += ("As in the paper's appendix A.4, all pairs follow the same course." if len(higher) == n else
                "Unlike the paper's appendix A.4, not all pairs follow this course." if len(higher) < n / 2 else
                "Most pairs follow the course the paper's appendix A.4 reports, but not all.")
    display(Markdown("\n".join(lines) + "\n\n" + verdict + caveat))

# %% [markdown]
# ## Explore the CKA matrices
#
# The CKA matrix of all the layers compared at one evaluation point, mean over seeds.
# The figure shown first is the evaluation point where the CKA between the earliest and
# the latest layer peaks; in a live kernel the menu redraws it.

# %%
def draw(epoch):
    mean = matrices[matrices.epoch == epoch].groupby(["a", "b"])["cka"].mean().unstack("b")
    mean = mean.loc[layers, layers].rename(index=LABELS, columns=LABELS)
    fig, ax = plt.subplots(figsize=(5, 4))
    figures.sns.heatmap(mean, vmin=0, vmax=1, annot=True, fmt=".2f", cmap="viridis", square=True, ax=ax,
                        cbar_kws={"label": "CKA"})
    ax.set(title=f"CKA at epoch {epoch:.2f}", xlabel="", ylabel="")


epochs_seen = [float(e) for e in sorted(matrices.epoch.unique())]
corner = pairs[(pairs.a == first) & (pairs.b == layers[-1])].groupby("epoch")["cka"].mean()
start = float(corner[corner.index > 0].idxmax()) if (corner.index > 0).any() else epochs_seen[0]
figures.explorer(draw, epoch=[start] + [e for e in epochs_seen if e != start])
