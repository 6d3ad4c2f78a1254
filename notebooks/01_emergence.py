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
# # Class selectivity rises early, then recedes
#
# Paper section 4.1, Figs. 2 and 9 {cite:p}`ranadive2023`. We train unregularised
# networks, measure the selectivity index ({eq}`eq-si`) of every unit on the
# validation set at initialisation, at several points inside the first epoch and after
# every epoch, and follow the mean of each module.

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
seeds = None  # None: the preset's default (mnist: 3, imagenet: 10), a count, or a list
epochs = None  # None: the preset's
data_root = None  # the dataset folder, for cifar10 and imagenet
overrides = None  # configuration fields changed in every run, e.g. {"image_size": 128, "batch_size": 64}
out_dir = None  # None: runs/results/01_emergence

# %% tags=["remove-cell"]
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from classsel import experiments as ex
from classsel import params
from classsel import figures, runs

p = params.check("emergence", globals())
seeds, epochs, setting, out = p.seeds, p.epochs, p.setting, p.out
figures.setup()

# %% [markdown]
# ## Runs
#
# The baseline runs are shared with the ablation, CKA and class-representation
# chapters: the run store trains them once and reuses them.

# %% tags=["remove-output"]
base = ex.baseline(setting, seeds)

# %%
metrics = runs.load_metrics(base)
metrics.to_csv(out / "metrics.csv", index=False)
glue("prov-01", Markdown(ex.provenance(base)), display=False)
# Mean over seeds at each evaluation point (every seed's row is in metrics.csv); long
# runs (over 16 points) show the first ten, every tenth epoch and the last.
table = metrics.assign(epoch=metrics.epoch.round(2)).groupby(["epoch", "step"])[["val_acc1", *(f"si_{m}" for m in figures.MODULE_LABELS)]].mean()
table = table.rename(columns={f"si_{m}": f"SI {label}" for m, label in figures.MODULE_LABELS.items()})
table = table.rename(columns={"val_acc1": "val top-1"})
epoch_index = table.index.get_level_values("epoch")
shown = (pd.RangeIndex(len(table)) < 10) | (epoch_index % 10 == 0) | (epoch_index == epoch_index.max())
(table[shown] if len(table) > 16 else table).round(3)

# %% tags=["remove-output"]
ax = figures.si_over_training(metrics)
figures.save(ax, out, "fig2_si_over_training")
glue("fig-01-si", ax.figure, display=False)
plt.show()

# %% [markdown]
# ```{glue:figure} fig-01-si
# :name: fig-01-si
#
# Mean selectivity index of each module's units during training, as in the paper's
# Fig. 2; shades: 95% CI of the mean over seeds. Provenance: {glue:md}`prov-01`.
# ```
#
# {numref}`fig-01-si` shows the mean selectivity of every module. The summary below
# is computed from these runs: for each module and seed, the peak after
# initialisation, when it happens, and how much of it is gone by the last epoch.

# %%
summary = ex.peak_and_final(metrics)
summary.to_csv(out / "peak_and_final.csv", index=False)
lines = []
for module, g in summary.groupby("module"):
    rise = ex.mean_ci(g.rise)
    recede = ex.mean_ci(g.recede)
    when = g.peak_epoch.mean()
    shape = ("rises and then recedes" if rise[1] > 0 and recede[1] > 0 else
             "rises and stays" if rise[1] > 0 else "shows no clear rise")
    lines.append(f"- **{figures.MODULE_LABELS[module]}** {shape}: peak minus initial SI "
                 f"{ex.fmt_ci(*rise)}, reached at epoch {when:.2f} on average; "
                 f"peak minus final {ex.fmt_ci(*recede)}.")
early = summary[summary.module.isin(["layer2", "layer3"])]
holds = (ex.mean_ci(early.rise)[1] > 0) and (ex.mean_ci(early.recede)[1] > 0)
verdict = ("The paper's claim holds at this scale: selectivity in the intermediate modules rises "
           "early and then recedes (both CIs exclude zero)." if holds else
           "At this scale the data do not support the paper's claim with confidence: for the "
           "intermediate modules, the rise or the recession has a CI that includes zero.")
display(Markdown("\n".join(lines) + "\n\n" + verdict))

# %% [markdown]
# ## Per bottleneck block (Fig. 9)

# %% tags=["remove-output"]
units = runs.load_units(base)
blocks = (units.groupby(["seed", "step", "epoch", "module", "block"], as_index=False)["si"].mean())
blocks["module"] = blocks["module"].map(figures.MODULE_LABELS)
blocks.to_csv(out / "si_per_block.csv", index=False)
g = figures.sns.relplot(data=blocks, x="epoch", y="si", hue="block", col="module", kind="line",
                        errorbar=figures.CI, height=3, aspect=1.1, palette="crest",
                        col_order=list(figures.MODULE_LABELS.values()))
g.set_titles("{col_name}")
g.set_axis_labels("epoch", "mean class selectivity index")
figures.save(g, out, "fig9_si_per_block")
glue("fig-01-blocks", g.figure, display=False)
plt.show()

# %% [markdown]
# ```{glue:figure} fig-01-blocks
# :name: fig-01-blocks
#
# Mean selectivity of the units of each bottleneck block (the paper's Fig. 9), one
# line per block within a module; shades: 95% CI over seeds. Provenance:
# {glue:md}`prov-01`.
# ```
#
# ## Explore the units
#
# The distribution of the selectivity index over the units of a module at one
# evaluation point. The figure shown first is the default choice; in a live kernel the
# menus redraw it.

# %%
def draw(module, epoch):
    sel = units[(units.module == module) & (units.epoch == epoch)]
    fig, ax = plt.subplots(figsize=(6, 3))
    figures.sns.histplot(sel.si, bins=40, ax=ax)
    ax.set(title=f"{figures.MODULE_LABELS[module]}, epoch {epoch:.2f}: {len(sel)} units",
           xlabel="class selectivity index", ylabel="units")


peak = float(summary.query("module == 'layer3'").peak_epoch.median())
epochs_seen = sorted(units.epoch.unique())
start = min(epochs_seen, key=lambda e: abs(e - peak))
figures.explorer(draw, module=["layer3", "layer1", "layer2", "layer4"],
                 epoch=[start] + [e for e in epochs_seen if e != start])
