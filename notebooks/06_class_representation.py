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
# # Tampering with selectivity over-represents a few classes early in training
#
# Paper section 4.7 and appendix A.5.4, Fig. 16 {cite:p}`ranadive2023`. At every
# evaluation point we count how often each class is predicted on the validation set
# and take the mean of the five largest counts ({eq}`eq-representation`): the more a
# network favours a few classes, the larger it is. The paper found that networks
# regularised against selectivity from epoch 0, and networks regularised in favour of
# it, over-represent a few classes during the first epochs of training, and that the
# effect is gone later.

# %% tags=["remove-cell"]
# On Colab, where classsel is missing, install it from the book's repository.
import importlib.util, subprocess, sys  # noqa: E401
url = "https://github.com/classsel/classsel"
importlib.util.find_spec("classsel") or subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"classsel @ git+{url}"], check=True)  # noqa: E501

# %% tags=["parameters", "hide-input"]
# Chapter 06's parameters: papermill -p NAME VALUE; a list also as text
preset = None  # None: $CLASSSEL_PRESET, else mnist; smoke, mnist, cifar10, imagenet
# None: the preset's (smoke: 2, mnist: 5, cifar10: 3, imagenet: 5); a count, or a list
# of seeds
seeds = None
# None: the preset's (smoke: 3, mnist: 5, cifar10: 30, imagenet: 20); imagenet: the
# paper's
epochs = None
data_root = None  # the dataset folder, for cifar10 and imagenet
overrides = None  # configuration fields for every run, e.g. {"image_size": 128}
out_dir = None  # None: runs/results/06_class_representation
suppress_alpha = -20.0  # against selectivity, modules 4-6 from epoch 0 (chapter 04)
promote_alpha = 5.0  # in favour of selectivity (chapter 05's first default)
# [start, stop]; None: chapter 05's first default (smoke: [0, 1], mnist: [0, 2],
# cifar10: [0, 4], imagenet: [0, 4])
promote_schedule = None
promote_modules = ["layer1", "layer2", "layer3", "layer4"]  # chapter 05's default
early_until = 1.0  # "early": evaluation points after initialisation up to this epoch

# %% tags=["remove-cell"]
from classsel import book, figures, sections

p, r = sections.notebook("class_representation", globals())
metrics = r.tables["metrics"]

# %% [markdown]
# ## Class representation over training (paper Fig. 16)
#
# No new training with the default parameters: the unregularised networks and those
# regularised against (chapter 04) and in favour of selectivity (chapter 05) come from
# the run store.

# %% tags=["hide-input"]
book.publish(
    figures.fig16(
        metrics,
        early_until=p.early_until,
        **figures.representation_bounds(r.tables["prediction_counts"]),
    ),
    p.out,
    "fig-06-top5",
)

# %% [markdown]
# ```{glue:figure} fig-06-top5
# :name: fig-06-top5
#
# Reproduces paper Fig. 16: the mean of the five largest class counts of the predictions
# on the validation set ({eq}`eq-representation`); right: the first epoch enlarged.
# Dashed: predictions spread evenly over the classes; dotted: every prediction in five
# classes. Shades: 95% CI of the mean over seeds. Runs: {glue:md}`prov`.
# ```

# %% [markdown]
# Per seed, the mean top-5 count over the first epoch (after initialisation, where every
# condition starts from the same network) and at the last evaluation point, each
# compared with the unregularised networks at the same seeds.


# %% tags=["hide-input"]
book.show(r.claim("fig-06-top5"))

# %% [markdown]
# ## Explore
#
# Any evaluation column of the runs, by condition.

# %% tags=["hide-input"]
figures.column_explorer(metrics, ["top5_count", "val_acc1", "si_layer3"])
