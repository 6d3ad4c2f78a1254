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
# # Suppressing selectivity early impairs learning; later it does not
#
# Paper sections 4.4, 4.5, A.5.1 and A.5.3, Figs. 6, 7, 11, 12 and 15
# {cite:p}`ranadive2023`. We train with the selectivity regulariser ({eq}`eq-loss`)
# at a negative strength, switched on from different epochs, and compare the
# selectivity and the accuracy of these networks with unregularised ones. Only the
# early and intermediate modules (4-6) are regularised, as in the paper.

# %% tags=["remove-cell"]
# On Colab, where classsel is missing, install it from the book's repository.
import importlib.util, subprocess, sys  # noqa: E401
url = "https://github.com/classsel/classsel"
importlib.util.find_spec("classsel") or subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"classsel @ git+{url}"], check=True)  # noqa: E501

# %% tags=["parameters", "hide-input"]
# Chapter 04's parameters: papermill -p NAME VALUE; a list also as text
preset = None  # None: $CLASSSEL_PRESET, else mnist; smoke, mnist, cifar10, imagenet
# None: the preset's (smoke: 2, mnist: 5, cifar10: 3, imagenet: 5); a count, or a list
# of seeds
seeds = None
# None: the preset's (smoke: 3, mnist: 5, cifar10: 30, imagenet: 20); imagenet: the
# paper's
epochs = None
data_root = None  # the dataset folder, for cifar10 and imagenet
overrides = None  # configuration fields for every run, e.g. {"image_size": 128}
out_dir = None  # None: runs/results/04_regularize
alpha = -20.0  # regulariser strength; negative suppresses selectivity
# epochs from which to regularise (Fig. 7), within the epochs; None: the preset's
# (smoke: [0, 2], mnist: [0, 2], cifar10: [0, 2], imagenet: [0, 1, 2, 3, 4, 5])
reg_starts = None
reg_stop = None  # first epoch no longer regularised (None: to the end)
modules = ["layer1", "layer2", "layer3"]  # the paper's modules 4-6
# other strengths from epoch 0 (Figs. 11, 12); [] for none; None: the preset's (smoke:
# [-5.0], mnist: [-5.0], cifar10: [-5.0], imagenet: [-1.0, -5.0, -10.0])
alphas = None
# Fig. 15: also regularise epochs 0..recover_stop-1 only, then release; 0: none; None:
# the preset's (smoke: 2, mnist: 2, cifar10: 2, imagenet: 4)
recover_stop = None

# %% tags=["remove-cell"]
from classsel import book, figures, sections

p, r = sections.notebook("regularize", globals())
metrics, sets = r.tables["metrics"], r.sets

# %% [markdown]
# ## Suppressing selectivity from the start (paper Fig. 6)
#
# One unregularised baseline (shared with chapters 05 and 06) and one set of runs per
# condition; modules 4-6 are regularised, as in the paper. Re-executing this chapter
# reuses finished runs and resumes interrupted ones.

# %% tags=["hide-input"]
book.publish(figures.fig6(metrics, sets["fig6"]), p.out, "fig-04-acc")

# %% [markdown]
# ```{glue:figure} fig-04-acc
# :name: fig-04-acc
#
# Reproduces paper Fig. 6: (a) the mean selectivity index per module and (b) training
# and validation accuracy of unregularised networks and of networks regularised against
# selectivity from the first and from a later epoch. Shades: 95% CI over seeds. Runs: {glue:md}`prov`.
# ```

# %% [markdown]
# The regulariser must first do what it is for: lower the selectivity of the
# regularised modules in the first epoch. The test is then the final validation
# accuracy of each later start minus that of the start at epoch 0.


# %% tags=["hide-input"]
book.show(r.claim("fig-04-acc"))

# %% [markdown]
# ## Starting at different epochs (paper Fig. 7)

# %% tags=["hide-input"]
book.publish(figures.fig7(metrics, sets["starts"]), p.out, "fig-04-starts")

# %% [markdown]
# ```{glue:figure} fig-04-starts
# :name: fig-04-starts
#
# Reproduces paper Fig. 7: accuracy of networks regularised against selectivity from
# each start epoch. Shades: 95% CI over seeds. Runs: {glue:md}`prov`.
# ```

# %% [markdown]
# ## Other strengths (paper Figs. 11 and 12)

# %% tags=["hide-input"]
book.publish(figures.fig11(metrics, sets["strengths"]), p.out, "fig-04-alphas")

# %% [markdown]
# ```{glue:figure} fig-04-alphas
# :name: fig-04-alphas
#
# Reproduces paper Fig. 11: accuracy of networks regularised against selectivity from
# epoch 0 at several strengths. Shades: 95% CI over seeds. Runs: {glue:md}`prov`.
# ```


# %% tags=["hide-input"]
book.show(r.claim("fig-04-alphas"))

# %% tags=["hide-input"]
book.publish(figures.fig12(metrics, sets["strengths"]), p.out, "fig-04-alphas-si")

# %% [markdown]
# ```{glue:figure} fig-04-alphas-si
# :name: fig-04-alphas-si
#
# Reproduces paper Fig. 12: mean selectivity index per module under each strength.
# Shades: 95% CI over seeds. Runs: {glue:md}`prov`.
# ```


# %% tags=["hide-input"]
book.show(r.claim("fig-04-alphas-si"))

# %% [markdown]
# ## Released after the first epochs (paper Fig. 15)
#
# Networks regularised only during the first epochs (grey band), then trained without
# the regulariser, against networks regularised throughout.

# %% tags=["hide-input"]
book.publish(
    figures.fig15(metrics, sets.get("recovery"), r.windows), p.out, "fig-04-recovery"
)

# %% [markdown]
# ```{glue:figure} fig-04-recovery
# :name: fig-04-recovery
#
# Reproduces paper Fig. 15: accuracy of networks regularised against selectivity
# throughout and of networks released after the first epochs (grey band). Shades: 95% CI
# over seeds. Runs: {glue:md}`prov`.
# ```


# %% tags=["hide-input"]
book.show(r.claim("fig-04-recovery"))

# %% [markdown]
# ## Explore
#
# Any evaluation column of the runs, by condition.

# %% tags=["hide-input"]
figures.column_explorer(
    metrics, ["si_layer3", "si_layer1", "si_layer2", "si_layer4", "val_acc1", "mu_si"]
)
