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
# On Colab, where classsel is missing, install it from the book's repository.
import importlib.util, subprocess, sys  # noqa: E401
url = "https://github.com/classsel/classsel"
importlib.util.find_spec("classsel") or subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"classsel @ git+{url}"], check=True)  # noqa: E501

# %% tags=["parameters", "hide-input"]
# Chapter 01's parameters: papermill -p NAME VALUE; a list also as text
preset = None  # None: $CLASSSEL_PRESET, else mnist; smoke, mnist, cifar10, imagenet
# None: the preset's (smoke: 2, mnist: 10, cifar10: 3, imagenet: 10); a count, or a list
# of seeds
seeds = None
epochs = None  # None: the preset's (smoke: 3, mnist: 5, cifar10: 30, imagenet: 90)
data_root = None  # the dataset folder, for cifar10 and imagenet
overrides = None  # configuration fields for every run, e.g. {"image_size": 128}
out_dir = None  # None: runs/results/01_emergence

# %% tags=["remove-cell"]
from classsel import book, figures, sections

p, r = sections.notebook("emergence", globals())
metrics, blocks = r.tables["metrics"], r.tables["si_per_block"]

# %% [markdown]
# ## Selectivity per module (paper Fig. 2)
#
# The baseline runs are shared with the ablation, CKA and class-representation
# chapters: the run store trains them once and reuses them.

# %% tags=["hide-input"]
book.publish(figures.fig2(metrics), p.out, "fig-01-si")

# %% [markdown]
# ```{glue:figure} fig-01-si
# :name: fig-01-si
#
# Reproduces paper Fig. 2: the mean selectivity index of each module's units over
# training; shades: 95% CI of the mean over seeds. Runs: {glue:md}`prov`.
# ```

# %% [markdown]
# For each module and seed we compare the selectivity at its early peak with the value
# at initialisation (the rise) and at the end of training (the recession). The time of
# the peak is chosen on the other half of the seeds, so that the noise of one curve
# cannot both pick its maximum and measure it.


# %% tags=["hide-input"]
book.show(r.claim("fig-01-si"))

# %% [markdown]
# ## Selectivity per bottleneck block (paper Fig. 9)

# %% tags=["hide-input"]
book.publish(figures.fig9(blocks), p.out, "fig-01-blocks")

# %% [markdown]
# ```{glue:figure} fig-01-blocks
# :name: fig-01-blocks
#
# Reproduces paper Fig. 9: the mean selectivity of the units of each bottleneck block,
# one line per block within a module; shades: 95% CI over seeds. Runs: {glue:md}`prov`.
# ```


# %% tags=["hide-input"]
book.show(r.claim("fig-01-blocks"))

# %% [markdown]
# ## Explore
#
# Any evaluation column of the runs over training. The HTML shows the first choice; in
# a live kernel the menu redraws it.

# %% tags=["hide-input"]
figures.column_explorer(
    metrics,
    ["si_layer3", "si_layer1", "si_layer2", "si_layer4", "val_acc1", "train_loss"],
)
