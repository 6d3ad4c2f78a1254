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
# # Promoting selectivity early does not improve learning
#
# Paper section 4.6 and appendix A.5.2, Figs. 13 and 14 {cite:p}`ranadive2023`. If
# class-selective units matter in the first epochs, would more of them help? We train
# with the selectivity regulariser ({eq}`eq-musi`, {eq}`eq-loss`) at a *positive*
# strength, which rewards selectivity, during the first epochs only, and compare the
# selectivity and the accuracy of these networks with unregularised ones. The paper
# rewarded selectivity with $\alpha = +10, +20$ in modules 4-6 for the first four
# epochs (Fig. 13), and with $\alpha = +1, +5$ in all four modules for the first four
# epochs or for the first epoch only (Fig. 14); in every case accuracy was worse than
# without the regulariser.

# %% tags=["remove-cell"]
# On Colab, where classsel is missing, install it from the book's repository.
import importlib.util, subprocess, sys  # noqa: E401
url = "https://github.com/classsel/classsel"
importlib.util.find_spec("classsel") or subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"classsel @ git+{url}"], check=True)  # noqa: E501

# %% tags=["parameters", "hide-input"]
# Chapter 05's parameters: papermill -p NAME VALUE; a list also as text
preset = None  # None: $CLASSSEL_PRESET, else mnist; smoke, mnist, cifar10, imagenet
# None: the preset's (smoke: 2, mnist: 5, cifar10: 3, imagenet: 5); a count, or a list
# of seeds
seeds = None
# None: the preset's (smoke: 3, mnist: 5, cifar10: 30, imagenet: 20); imagenet: the
# paper's
epochs = None
data_root = None  # the dataset folder, for cifar10 and imagenet
overrides = None  # configuration fields for every run, e.g. {"image_size": 128}
out_dir = None  # None: runs/results/05_promote
# positive strengths (Fig. 14); None: the preset's (smoke: [5.0], mnist: [5.0], cifar10:
# [5.0], imagenet: [1.0, 5.0])
alphas = None
# [start, stop] epochs of regularisation, fitted to the epochs; None: the preset's
# (smoke: [[0, 1]], mnist: [[0, 2]], cifar10: [[0, 4], [0, 1]], imagenet: [[0, 4], [0,
# 1]])
schedules = None
modules = ["layer1", "layer2", "layer3", "layer4"]  # Fig. 14: all modules
# Fig. 13: a large strength in modules 4-6 over the first schedule; 0: none; None: the
# preset's (smoke: 20.0, mnist: 20.0, cifar10: 20.0, imagenet: 20.0)
strong_alpha = None

# %% tags=["remove-cell"]
from classsel import book, figures, sections

p, r = sections.notebook("promote", globals())
metrics, sets = r.tables["metrics"], r.sets

# %% [markdown]
# ## Small strengths in every module (paper Fig. 14)
#
# The unregularised baseline is the one chapters 04 and 06 use; one set of runs per
# strength and schedule.

# %% tags=["hide-input"]
book.publish(figures.fig14(metrics, r.windows, sets["small"]), p.out, "fig-05-small")

# %% [markdown]
# ```{glue:figure} fig-05-small
# :name: fig-05-small
#
# Reproduces paper Fig. 14: mean selectivity per module and accuracy of networks
# regularised in favour of selectivity in all modules during the grey band of epochs.
# Shades: 95% CI over seeds. Runs: {glue:md}`prov`.
# ```

# %% [markdown]
# The regulariser must first raise selectivity; the test is then whether accuracy,
# when the regulariser is switched off and at the end, is no better than without it.


# %% tags=["hide-input"]
book.show(r.claim("fig-05-small"))

# %% [markdown]
# ## A large strength in modules 4-6 (paper Fig. 13)

# %% tags=["hide-input"]
book.publish(
    figures.fig13(metrics, r.windows, sets["strong"]), p.out, "fig-05-strong"
)

# %% [markdown]
# ```{glue:figure} fig-05-strong
# :name: fig-05-strong
#
# Reproduces paper Fig. 13: as above, with a large strength in modules 4-6 only.
# Shades: 95% CI over seeds. Runs: {glue:md}`prov`.
# ```


# %% tags=["hide-input"]
book.show(r.claim("fig-05-strong"))

# %% [markdown]
# ## Explore
#
# Any evaluation column of the runs, by condition.

# %% tags=["hide-input"]
figures.column_explorer(
    metrics, ["val_acc1", "si_layer3", "si_layer1", "si_layer2", "si_layer4", "mu_si"]
)
