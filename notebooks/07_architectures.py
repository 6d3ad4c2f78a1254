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
# # Beyond ResNet-50: VGG and a vision transformer
#
# The paper names its own limitation: every result in it comes from ResNet-50
# {cite:p}`ranadive2023`. Its authors' code went a little further, training VGG-16 and
# measuring selectivity in a pretrained vision transformer once, but never followed a
# transformer through training. This chapter asks four of the paper's questions of two
# other families, trained from scratch on the same data as the rest of the book: does
# selectivity rise early and recede (chapter 01), do selective units matter most early
# (chapter 02), are the first and the last layers alike early in training (chapter 03),
# and does suppressing selectivity hurt only when it starts at the first epoch
# (chapter 04)? The methods chapter describes which layers play the paper's modules 4-7
# in each family and which units are measured. The claims are tested by the same
# functions as for ResNet-50, on fewer networks per condition.

# %% tags=["remove-cell"]
# On Colab, where classsel is missing, install it from the book's repository.
import importlib.util, subprocess, sys  # noqa: E401
url = "https://github.com/classsel/classsel"
importlib.util.find_spec("classsel") or subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"classsel @ git+{url}"], check=True)  # noqa: E501

# %% tags=["parameters", "hide-input"]
# Chapter 07's parameters: papermill -p NAME VALUE; a list also as text
preset = None  # None: $CLASSSEL_PRESET, else mnist; smoke, mnist, cifar10, imagenet
# None: the preset's (smoke: 2, mnist: 3, cifar10: 3, imagenet: 5); a count, or a list
# of seeds
seeds = None
epochs = None  # None: the preset's (smoke: 3, mnist: 5, cifar10: 30, imagenet: 20)
data_root = None  # the dataset folder, for cifar10 and imagenet
overrides = None  # configuration fields for every run, e.g. {"image_size": 128}
out_dir = None  # None: runs/results/07_architectures
# architectures asked the paper's questions (classsel.architectures)
archs = ["vgg16_narrow", "vit_tiny"]
# strength of the regulariser against selectivity, in each family's modules 4-6
alpha = -20.0
# the later start of the regulariser; None: the preset's (smoke: 2, mnist: 2, cifar10:
# 2, imagenet: 5)
reg_start = None
# checkpoints ablated, besides the last; None: the preset's (smoke: [0.2], mnist: [0.65,
# 1], cifar10: [0.5, 1], imagenet: [1, 2, 3, 5, 10])
ablation_epochs = None
# validation images per class whose accuracy the ablation measures (the units are ranked
# by the SI of all of them); "all": every one; None: the preset's (smoke: "all", mnist:
# "all", cifar10: "all", imagenet: "all")
ablation_per_class = None
# checkpoints compared by CKA, besides the last (a transformer's head starts at zero, so
# not epoch 0); None: the preset's (smoke: [0.2, 1], mnist: [0.26, 0.52, 1, 2], cifar10:
# [0.5, 1, 2], imagenet: [1, 2, 3, 5, 10])
cka_epochs = None

# %% tags=["remove-cell"]
from classsel import book, sections
from classsel.sections import architectures

p, r = sections.notebook("architectures", globals())
for i, arch in enumerate(p.archs):
    book.glue_text(f"arch-{'ab'[i] if i < 2 else arch}", architectures.NAMES.get(arch, arch))
    for label, fig in architectures.figures(p, r, i).items():
        book.publish(fig, p.out, label)

# %% [markdown]
# ## The first architecture: {glue:md}`arch-a`
#
# ```{glue:figure} fig-07-a-si
# :name: fig-07-a-si
#
# The experiment of paper Fig. 2 on {glue:md}`arch-a`: the mean selectivity index of
# each module's units over training, unregularised networks. Shades: 95% CI over seeds.
# Runs: {glue:md}`prov`.
# ```

# %% tags=["hide-input"]
book.show(r.claim("fig-07-a-si"))

# %% [markdown]
# ```{glue:figure} fig-07-a-ablation
# :name: fig-07-a-ablation
#
# The experiment of paper Fig. 3 on {glue:md}`arch-a`: the area under the ablation
# curves over training, the most selective units first against a random order, and the
# curves themselves. Shades: 95% CI over seeds. Runs: {glue:md}`prov`.
# ```

# %% tags=["hide-input"]
book.show(r.claim("fig-07-a-ablation"))

# %% [markdown]
# ```{glue:figure} fig-07-a-cka
# :name: fig-07-a-cka
#
# The experiment of paper Fig. 5 on {glue:md}`arch-a`: CKA between module 4 and the
# last module and the logits over training. Shades: 95% CI over seeds. Runs: {glue:md}`prov`.
# ```

# %% tags=["hide-input"]
book.show(r.claim("fig-07-a-cka"))

# %% [markdown]
# ```{glue:figure} fig-07-a-acc
# :name: fig-07-a-acc
#
# The experiment of paper Fig. 6 on {glue:md}`arch-a`: selectivity per module and
# accuracy of unregularised networks and of networks regularised against selectivity in
# modules 4-6 from the first and from a later epoch. Shades: 95% CI over seeds. Runs:
# {glue:md}`prov`.
# ```

# %% tags=["hide-input"]
book.show(r.claim("fig-07-a-acc"))

# %% [markdown]
# ## The second architecture: {glue:md}`arch-b`
#
# ```{glue:figure} fig-07-b-si
# :name: fig-07-b-si
#
# The experiment of paper Fig. 2 on {glue:md}`arch-b`: the mean selectivity index of
# each module's units over training, unregularised networks. Shades: 95% CI over seeds.
# Runs: {glue:md}`prov`.
# ```

# %% tags=["hide-input"]
book.show(r.claim("fig-07-b-si"))

# %% [markdown]
# ```{glue:figure} fig-07-b-ablation
# :name: fig-07-b-ablation
#
# The experiment of paper Fig. 3 on {glue:md}`arch-b`: the area under the ablation
# curves over training, the most selective units first against a random order, and the
# curves themselves. Shades: 95% CI over seeds. Runs: {glue:md}`prov`.
# ```

# %% tags=["hide-input"]
book.show(r.claim("fig-07-b-ablation"))

# %% [markdown]
# ```{glue:figure} fig-07-b-cka
# :name: fig-07-b-cka
#
# The experiment of paper Fig. 5 on {glue:md}`arch-b`: CKA between module 4 and the
# last module and the logits over training. Shades: 95% CI over seeds. Runs: {glue:md}`prov`.
# ```

# %% tags=["hide-input"]
book.show(r.claim("fig-07-b-cka"))

# %% [markdown]
# ```{glue:figure} fig-07-b-acc
# :name: fig-07-b-acc
#
# The experiment of paper Fig. 6 on {glue:md}`arch-b`: selectivity per module and
# accuracy of unregularised networks and of networks regularised against selectivity in
# modules 4-6 from the first and from a later epoch. Shades: 95% CI over seeds. Runs:
# {glue:md}`prov`.
# ```

# %% tags=["hide-input"]
book.show(r.claim("fig-07-b-acc"))
