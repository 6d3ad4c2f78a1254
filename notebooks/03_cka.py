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
# On Colab, where classsel is missing, install it from the book's repository.
import importlib.util, subprocess, sys  # noqa: E401
url = "https://github.com/classsel/classsel"
importlib.util.find_spec("classsel") or subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"classsel @ git+{url}"], check=True)  # noqa: E501

# %% tags=["parameters", "hide-input"]
# Chapter 03's parameters: papermill -p NAME VALUE; a list also as text
preset = None  # None: $CLASSSEL_PRESET, else mnist; smoke, mnist, cifar10, imagenet
# None: the preset's (smoke: 2, mnist: 6, cifar10: 3, imagenet: 6); a count, or a list
# of seeds
seeds = None
epochs = None  # None: the preset's (smoke: 3, mnist: 5, cifar10: 30, imagenet: 90)
data_root = None  # the dataset folder, for cifar10 and imagenet
overrides = None  # configuration fields for every run, e.g. {"image_size": 128}
out_dir = None  # None: runs/results/03_cka
# None: every kept checkpoint; or a list of epochs (fractions allowed)
cka_epochs = None
# layers compared: at least two of the module outputs layer1..layer4 (modules 4-7) and
# the logits fc; Fig. 5 pairs the earliest of them with the two latest
layers = ["layer1", "layer2", "layer3", "layer4", "fc"]

# %% tags=["remove-cell"]
from classsel import book, figures, sections

p, r = sections.notebook("cka", globals())
matrices = r.tables["cka"]

# %% [markdown]
# ## Module 4 against the last layers (paper Fig. 5)
#
# The baseline runs are shared with the other chapters; each CKA matrix is stored with
# its run, so re-executing this chapter does not recompute it.

# %% tags=["hide-input"]
book.publish(figures.fig5(matrices, p.layers[0], p.layers[-2:]), p.out, "fig-03-cka")

# %% [markdown]
# ```{glue:figure} fig-03-cka
# :name: fig-03-cka
#
# Reproduces paper Fig. 5: minibatch linear CKA between module 4 and the later layers
# (module 7, FC) over training; shades: 95% CI of the mean over seeds. Runs: {glue:md}`prov`.
# ```

# %% [markdown]
# The effect is, per seed, the CKA at the early peak (its time chosen on the other half
# of the seeds, within the first epoch) minus the CKA at the end of training. A network
# that starts close to linear and then departs from it gives a positive difference.


# %% tags=["hide-input"]
book.show(r.claim("fig-03-cka"))

# %% [markdown]
# ## All pairs of layers (paper Fig. 10)

# %% tags=["hide-input"]
book.publish(figures.fig10(matrices, p.layers), p.out, "fig-03-all")

# %% [markdown]
# ```{glue:figure} fig-03-all
# :name: fig-03-all
#
# Reproduces paper Fig. 10: minibatch linear CKA between every pair of layers over
# training, one panel per reference layer; shades: 95% CI of the mean over seeds.
# Runs: {glue:md}`prov`.
# ```


# %% tags=["hide-input"]
book.show(r.claim("fig-03-all"))

# %% [markdown]
# ## Explore
#
# The CKA of one reference layer against the last two. The HTML shows the first choice;
# in a live kernel the menu redraws it.

# %% tags=["hide-input"]
figures.explorer(
    lambda first: figures.fig5(matrices, first, p.layers[-2:]), first=p.layers[:-2]
)
