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
# # Selective units matter most early in training
#
# Paper section 4.2 and appendix A.2, Figs. 3 and 8 {cite:p}`ranadive2023`. At
# checkpoints from initialisation to the end of training we zero the output channels
# of every bottleneck block of one module, most selective first or in a random order
# (the control), and follow how the validation accuracy falls. The area under each
# ablation curve ({eq}`eq-auc`) summarises how much accuracy the network keeps: the
# paper finds that ablating the most selective units costs more accuracy early in
# training than late, and that in the fully trained network it costs less than a
# random ablation in modules 4-6 but more in module 7.

# %% tags=["remove-cell"]
# On Colab, where classsel is missing, install it from the book's repository.
import importlib.util, subprocess, sys  # noqa: E401
url = "https://github.com/classsel/classsel"
importlib.util.find_spec("classsel") or subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"classsel @ git+{url}"], check=True)  # noqa: E501

# %% tags=["parameters", "hide-input"]
# Chapter 02's parameters: papermill -p NAME VALUE; a list also as text
preset = None  # None: $CLASSSEL_PRESET, else mnist; smoke, mnist, cifar10, imagenet
# None: the preset's (smoke: 2, mnist: 10, cifar10: 3, imagenet: 10); a count, or a list
# of seeds
seeds = None
epochs = None  # None: the preset's (smoke: 3, mnist: 5, cifar10: 30, imagenet: 90)
data_root = None  # the dataset folder, for cifar10 and imagenet
overrides = None  # configuration fields for every run, e.g. {"image_size": 128}
out_dir = None  # None: runs/results/02_ablation
# checkpoints to ablate, in epochs (fractions allowed: the nearest evaluation point is
# used); None: the preset's (smoke: [0.2], mnist: [0.65, 0.8, 1, 2], cifar10: [0, 0.125,
# 0.25, 0.5, 1, 2], imagenet: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), then every 10th epoch
# and the last (mnist's networks stay near chance for the first half epoch, where
# ablation measures nothing)
ablation_epochs = None
levels = 6  # counts k per curve, evenly spaced from 0 to all units of a block
draws = 2  # random-order draws per curve (the control)
# validation images per class whose accuracy the ablation measures (the units are ranked
# by the SI of all of them); "all": every one; None: the preset's (smoke: "all", mnist:
# 50, cifar10: "all", imagenet: "all")
ablation_per_class = None

# %% tags=["remove-cell"]
from classsel import book, figures, sections
from classsel.ablation_curves import images_text

p, r = sections.notebook("ablation", globals())
curves = r.tables["ablation"]
book.glue_text("images", images_text(curves))

# %% [markdown]
# ## Ablation over training (paper Fig. 3)
#
# The ablations use the baseline runs of the emergence chapter; each ablation curve is
# stored with its run, so re-executing this chapter does not recompute it. At every
# checkpoint the units of each module are zeroed, most selective first or in a random
# order (the control), and the validation accuracy relative to the unablated network is
# followed. The area under each curve ({eq}`eq-auc`) summarises it: a smaller area means
# a costlier ablation.

# %% tags=["hide-input"]
book.publish(figures.fig3(curves), p.out, "fig-02-auc")

# %% [markdown]
# ```{glue:figure} fig-02-auc
# :name: fig-02-auc
#
# Reproduces paper Fig. 3: the area under the ablation curves over training, selective
# against random order, and the curves themselves, one line per checkpoint. Accuracy on
# {glue:md}`images` at every point; shades: 95% CI of the mean over seeds. Runs:
# {glue:md}`prov`.
# ```

# %% [markdown]
# The effect is the selective-minus-random area of each seed (negative: ablating the
# selective units costs more), averaged over the checkpoints of the first epoch where the
# network is at least twice as accurate as chance (a network at chance has nothing to
# lose), against the same difference at the last checkpoint. If selective units matter
# most early, the difference rises from early to late.


# %% tags=["hide-input"]
book.show(r.claim("fig-02-auc"))

# %% [markdown]
# ## The trained network (paper Fig. 8)
#
# The paper's appendix A.2 looks at the last checkpoint alone: there, ablating the most
# selective units of modules 4-6 costs less than ablating random ones, and in module 7
# it costs more.

# %% tags=["hide-input"]
book.publish(figures.fig8(curves), p.out, "fig-02-final")

# %% [markdown]
# ```{glue:figure} fig-02-final
# :name: fig-02-final
#
# Reproduces paper Fig. 8: ablation curves of the network at the last checkpoint, most
# selective units first against random order, one panel per module, on
# {glue:md}`images`; shades: 95% CI of the mean over seeds. Runs: {glue:md}`prov`.
# ```


# %% tags=["hide-input"]
book.show(r.claim("fig-02-final"))

# %% [markdown]
# ## Explore
#
# The ablation curves at one checkpoint. The HTML shows the first; in a live kernel the
# menu redraws it.

# %% tags=["hide-input"]
figures.explorer(
    lambda epoch: figures.fig8(curves[curves.epoch <= epoch]),
    epoch=sorted(curves.epoch.unique()),
)
