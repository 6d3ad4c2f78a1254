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
# # What reproduces
#
# The paper {cite:p}`ranadive2023` makes six claims about class-selective units in early
# training, and its appendix adds findings that refine them. Each chapter of this book
# tests some of them on its own runs; this page collects every verdict in one table.
# The table is computed from the same runs and analyses as the chapters, when the book
# is built, so it changes when the numbers do.
#
# Each row gives the effect that sums up a claim, its estimate with a 95% bootstrap
# confidence interval over seeds, and how many of the effects the claim predicts agree
# with the paper. A claim **holds** when every tested effect goes the paper's way with a
# CI that excludes zero, holds **in part** when some do, and is **not supported** when
# none does or when the intervention it rests on did not take place (for example, a
# regulariser that did not lower selectivity). Where a CI includes zero, the chapter
# also says how large an effect the data still allow. The verdicts are those of this
# scale (see the methods chapter for the presets): a claim that does not hold here may
# hold at the paper's scale, and the number of seeds says how much weight a verdict
# can carry.

# %% tags=["remove-cell"]
# On Colab, where classsel is missing, install it from the book's repository.
import importlib.util, subprocess, sys  # noqa: E401
url = "https://github.com/classsel/classsel"
importlib.util.find_spec("classsel") or subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"classsel @ git+{url}"], check=True)  # noqa: E501

# %% tags=["parameters", "hide-input"]
# Chapter 00's parameters: papermill -p NAME VALUE; a list also as text
preset = None  # None: $CLASSSEL_PRESET, else mnist; smoke, mnist, cifar10, imagenet
seeds = None  # None: each chapter's seeds; a count, or a list of seeds
epochs = None  # None: each chapter's epochs
data_root = None  # the dataset folder, for cifar10 and imagenet
overrides = None  # configuration fields for every run, e.g. {"image_size": 128}
out_dir = None  # None: runs/results/00_what_reproduces

# %% tags=["remove-cell"]
from classsel import book, sections

table, out = sections.notebook(None, globals())
table.to_csv(out / "what_reproduces.csv", index=False)

# %% tags=["hide-input"]
book.show(book.provenance())

# %% [markdown]
# ## The claims and the appendix findings

# %% tags=["hide-input"]
book.show(sections.markdown_table(table))
