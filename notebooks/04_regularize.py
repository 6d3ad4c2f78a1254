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
seeds = None  # None: the preset's default (mnist: 2, imagenet: 1), a count, or a list
epochs = None  # None: the preset's (imagenet: 20, as in the paper)
data_root = None  # the dataset folder, for cifar10 and imagenet
overrides = None  # configuration fields changed in every run, e.g. {"image_size": 128, "batch_size": 64}
out_dir = None  # None: runs/results/04_regularize
alpha = -20.0  # regulariser strength; negative suppresses selectivity
reg_starts = None  # epochs from which to regularise; None: [0, 2] (imagenet: 0..5), within the epochs
reg_stop = None  # first epoch no longer regularised (None: to the end)
modules = ["layer1", "layer2", "layer3"]  # the paper's modules 4-6
alphas = None  # more negative strengths to compare (Figs. 11, 12), e.g. [-1, -5, -10, -20]
recover_stop = None  # Fig. 15: also regularise from epoch 0 only until this epoch

# %% tags=["remove-cell"]
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from classsel import experiments as ex
from classsel import params
from classsel import figures, runs

p = params.check("regularize", globals())
seeds, epochs, setting, out = p.seeds, p.epochs, p.setting, p.out
alpha, reg_starts, reg_stop, modules = p.alpha, p.reg_starts, p.reg_stop, p.modules
alphas, recover_stop = p.alphas, p.recover_stop
figures.setup()

# %% [markdown]
# ## Runs
#
# One unregularised baseline (shared with notebooks 05 and 06) and one set of runs per
# regularisation start. Re-executing this notebook reuses finished runs and resumes
# interrupted ones.

# %% tags=["remove-output"]
def regularized(a, start, stop=reg_stop):
    return ex.regularized(setting, seeds, a, start, stop, modules)


conditions = {"unregularised": ex.baseline(setting, seeds)}
for start in reg_starts:
    conditions[f"α={alpha:g} from epoch {start}"] = regularized(alpha, start)
by_alpha = {f"α={a:g} from epoch 0": regularized(a, 0) for a in alphas if a != alpha}
if recover_stop is not None:
    recover = {f"α={alpha:g} epochs 0-{recover_stop - 1} only": regularized(alpha, 0, recover_stop)}
else:
    recover = {}


# %%
def table(groups):
    return pd.concat([runs.load_metrics(rs).assign(condition=name) for name, rs in groups.items()],
                     ignore_index=True)


metrics = table(conditions)
metrics.to_csv(out / "metrics.csv", index=False)
all_runs = [r for rs in (conditions | by_alpha | recover).values() for r in rs]
glue("prov-04", Markdown(ex.provenance(all_runs)), display=False)
final = metrics[metrics.step == metrics.step.max()]
final.pivot_table(index="condition", values=["val_acc1", "train_acc1", "si_layer1", "si_layer2", "si_layer3"],
                  aggfunc="mean", sort=False).round(3)

# %% [markdown]
# ## Selectivity under the regulariser (Fig. 6a)

# %% tags=["remove-output"]
g = figures.si_grid(metrics, hue="condition", title="Mean class selectivity per module")
figures.save(g, out, "fig6a_si_by_condition")
glue("fig-04-si", g.figure, display=False)
plt.show()

# %% [markdown]
# ```{glue:figure} fig-04-si
# :name: fig-04-si
#
# Mean selectivity index per module for unregularised networks and for networks
# regularised against selectivity from different epochs (the paper's Figs. 6a and 7);
# modules 4-6 are regularised. Shades: 95% CI over seeds. Provenance:
# {glue:md}`prov-04`.
# ```
#
# ## Accuracy (Figs. 6b and 7)

# %% tags=["remove-output"]
fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
trained = metrics[metrics.step > 0]
figures.by_condition(trained, "train_acc1", "condition", ax=axes[0], title="Training accuracy",
                     ylabel="top-1 accuracy")
figures.by_condition(metrics, "val_acc1", "condition", ax=axes[1], title="Validation accuracy",
                     ylabel="top-1 accuracy")
axes[0].get_legend().remove()
figures.save(fig, out, "fig6b_accuracy_by_condition")
glue("fig-04-acc", fig, display=False)
plt.show()

# %% [markdown]
# ```{glue:figure} fig-04-acc
# :name: fig-04-acc
#
# Training accuracy (running, over the batches since the previous evaluation point)
# and validation accuracy of the same networks (the paper's Figs. 6b and 7). Shades:
# 95% CI over seeds. Provenance: {glue:md}`prov-04`.
# ```
#
# {numref}`fig-04-si` and {numref}`fig-04-acc` compare the conditions. The
# numbers below are computed from these runs: the effect of the regulariser on
# selectivity during the first epoch, and on the final validation accuracy.

# %%
def per_seed(name, column, when):
    m = metrics[metrics.condition == name]
    return m[when(m)].groupby("seed")[column].mean()


first_epoch = lambda m: (m.step > 0) & (m.epoch <= 1)  # noqa: E731
last = lambda m: m.step == m.step.max()  # noqa: E731
metrics["si_regularised"] = metrics[[f"si_{m}" for m in modules]].mean(axis=1)
names = list(conditions)
lines = []
for name in names[1:]:
    si = ex.difference_ci(per_seed(name, "si_regularised", first_epoch),
                          per_seed("unregularised", "si_regularised", first_epoch))
    acc = ex.difference_ci(per_seed(name, "val_acc1", last), per_seed("unregularised", "val_acc1", last))
    lines.append(f"- **{name}**: mean SI of the regularised modules in the first epoch minus the "
                 f"unregularised networks' {ex.fmt_ci(*si)}; final validation accuracy minus "
                 f"unregularised {ex.fmt_ci(*acc)}.")
verdict = ""
if len(names) > 2:
    early, late = names[1], names[-1]
    gap = ex.difference_ci(per_seed(late, "val_acc1", last), per_seed(early, "val_acc1", last))
    holds = gap[1] > 0
    verdict = (f"\n\nFinal validation accuracy, {late} minus {early}: {ex.fmt_ci(*gap)}. "
               + ("The paper's claim holds here: suppressing selectivity from the start costs more "
                  "accuracy than suppressing it later (the CI excludes zero)." if holds else
                  "Here the data do not show with confidence that suppressing selectivity from the start "
                  "costs more accuracy than suppressing it later (the CI includes zero)."))
summary = "\n".join(lines) + verdict
(out / "summary.md").write_text(summary)
display(Markdown(summary))

# %% [markdown]
# ## Other strengths (Figs. 11, 12) and recovery (Fig. 15)
#
# With `alphas` (for example `-p alphas "[-1, -5, -10]"`) the notebook also trains
# networks regularised from epoch 0 at other strengths; with `recover_stop` it trains
# networks regularised only during the first epochs, to see whether they recover.

# %% tags=["remove-output"]
extra = by_alpha | recover
if extra:
    more = table({"unregularised": conditions["unregularised"],
                  f"α={alpha:g} from epoch 0": conditions[f"α={alpha:g} from epoch 0"]} | extra)
    more.to_csv(out / "metrics_alphas_recovery.csv", index=False)
    fig, ax = plt.subplots(figsize=(7, 4))
    figures.by_condition(more, "val_acc1", "condition", ax=ax, title="Validation accuracy",
                         ylabel="top-1 accuracy")
    figures.save(fig, out, "fig11_15_accuracy")
    glue("fig-04-extra", fig, display=False)
    plt.show()
    display(Markdown("\n".join(
        f"- **{name}**: final validation accuracy "
        f"{ex.fmt_ci(*ex.mean_ci(more[(more.condition == name) & (more.step == more.step.max())].val_acc1))}"
        for name in more.condition.unique())))
else:
    display(Markdown("Not run with the default parameters."))

# %% [markdown]
# ## Explore
#
# Any evaluation column of the runs, by condition.

# %%
def draw(column):
    fig, ax = plt.subplots(figsize=(7, 4))
    figures.by_condition(metrics, column, "condition", ax=ax, title=column, ylabel=column)


figures.explorer(draw, column=["si_layer3", "si_layer1", "si_layer2", "si_layer4", "val_acc1", "train_loss",
                               "mu_si", "top5_count"])
