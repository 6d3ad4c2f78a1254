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
# On Colab, or wherever classsel is missing, install it from the book's repository.
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("classsel") is None:
    url = "https://github.com/classsel/classsel"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", f"classsel @ git+{url}"],
        check=True,
    )
    importlib.invalidate_caches()

# %% tags=["parameters", "hide-input"]
import os

preset = os.environ.get("CLASSSEL_PRESET", "mnist")  # smoke, mnist, cifar10, imagenet
data_root = None  # the dataset folder, for cifar10 and imagenet
# configuration fields changed in every run, e.g. {"image_size": 128, "batch_size": 64}
overrides = None
out_dir = None  # None: runs/results/00_what_reproduces

# %% tags=["remove-cell"]
from IPython.display import Markdown, display

from classsel import layout, sections

table = sections.what_reproduces(preset, data_root=data_root, overrides=overrides)
table.to_csv(
    layout.results("00_what_reproduces", out_dir) / "what_reproduces.csv", index=False
)

# %% [markdown]
# ## The claims and the appendix findings

# %% tags=["hide-input"]
display(Markdown(sections.markdown_table(table)))
