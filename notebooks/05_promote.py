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
out_dir = None  # None: runs/results/05_promote
alphas = None  # positive strengths; None: the preset's (mnist: [5.0], imagenet: [1.0, 5.0] as in Fig. 14)
schedules = None  # [start, stop] epochs of regularisation; None: the preset's (mnist: [[0, 2]], imagenet: [[0, 4], [0, 1]])
modules = ["layer1", "layer2", "layer3", "layer4"]  # Fig. 14: all modules (Fig. 13: modules 4-6)

# %% tags=["remove-cell"]
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from classsel import experiments as ex
from classsel import params
from classsel import figures, runs

p = params.check("promote", globals())
seeds, epochs, setting, out = p.seeds, p.epochs, p.setting, p.out
alphas, schedules, modules = p.alphas, p.schedules, p.modules
figures.setup()

# %% [markdown]
# ## Runs
#
# The unregularised baseline is the one notebooks 04 and 06 use (same seeds and
# epochs); one set of runs per strength and schedule. Re-executing this notebook reuses
# finished runs and resumes interrupted ones.

# %% tags=["remove-output"]
def label(alpha, start, stop):
    return f"α=+{alpha:g}, " + (f"from epoch {start}" if stop is None else f"epochs {start}-{stop}")


conditions = {"unregularised": ex.baseline(setting, seeds)}
windows = {}
for alpha in alphas:
    for start, stop in schedules:
        name = label(alpha, start, stop)
        conditions[name] = ex.regularized(setting, seeds, alpha, start, stop, modules)
        windows[name] = (start, epochs if stop is None else stop)

# %%
metrics = pd.concat([runs.load_metrics(rs).assign(condition=name) for name, rs in conditions.items()],
                    ignore_index=True)
metrics.to_csv(out / "metrics.csv", index=False)
all_runs = [r for rs in conditions.values() for r in rs]
glue("prov-05", Markdown(ex.provenance(all_runs)), display=False)
final = metrics[metrics.step == metrics.step.max()]
final.pivot_table(index="condition", values=["val_acc1", "train_acc1", *(f"si_{m}" for m in figures.MODULE_LABELS)],
                  aggfunc="mean", sort=False).round(3)


# %% [markdown]
# ## Selectivity under the regulariser (Figs. 13 and 14, SI panels)

# %%
def shade(ax):
    """Grey bands: the epochs during which a schedule regularises."""
    for start, stop in sorted(set(windows.values())):
        ax.axvspan(start, stop, color="grey", alpha=0.1, lw=0)


# %% tags=["remove-output"]
g = figures.si_grid(metrics, hue="condition", title="Mean class selectivity per module")
for ax in g.axes.flat:
    shade(ax)
figures.save(g, out, "fig13_14_si_by_condition")
glue("fig-05-si", g.figure, display=False)
plt.show()

# %% [markdown]
# ```{glue:figure} fig-05-si
# :name: fig-05-si
#
# Mean selectivity index per module for unregularised networks and for networks
# regularised in favour of selectivity (positive $\alpha$) during the grey band of
# epochs, the SI panels of the paper's Figs. 13 and 14. Shades: 95% CI of the mean
# over seeds (the paper's shades are over the bottleneck blocks of a module).
# Provenance: {glue:md}`prov-05`.
# ```
#
# ## Accuracy (Figs. 13 and 14, accuracy panels)

# %% tags=["remove-output"]
fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
figures.by_condition(metrics[metrics.step > 0], "train_acc1", "condition", ax=axes[0],
                     title="Training accuracy", ylabel="top-1 accuracy")
figures.by_condition(metrics, "val_acc1", "condition", ax=axes[1], title="Validation accuracy",
                     ylabel="top-1 accuracy")
axes[0].get_legend().remove()
for ax in axes:
    shade(ax)
figures.save(fig, out, "fig13_14_accuracy_by_condition")
glue("fig-05-acc", fig, display=False)
plt.show()

# %% [markdown]
# ```{glue:figure} fig-05-acc
# :name: fig-05-acc
#
# Training accuracy (running, over the batches since the previous evaluation point)
# and validation accuracy of the same networks, the accuracy panels of the paper's
# Figs. 13 and 14; grey band: the regularised epochs. Shades: 95% CI of the mean over
# seeds. Provenance: {glue:md}`prov-05`.
# ```
#
# {numref}`fig-05-si` shows whether the regulariser did raise selectivity, and
# {numref}`fig-05-acc` what it did to accuracy. The numbers below are computed from
# these runs, per condition and seed, then compared with the unregularised networks
# (differences of means with bootstrap 95% CIs over seeds): the mean SI of the
# regularised modules and the validation accuracy at the epoch when the regulariser
# is switched off, and both again at the end of training.

# %%
metrics["si_regularised"] = metrics[[f"si_{m}" for m in modules]].mean(axis=1)


def at_epoch(e):
    return lambda m: (m.epoch - e).abs() == (m.epoch - e).abs().min()


def effect(name, column, when):
    def per_seed(condition):
        m = metrics[metrics.condition == condition]
        return m[when(m)].groupby("seed")[column].mean()
    return ex.difference_ci(per_seed(name), per_seed("unregularised"))


def compare(ci, more, less, same):
    return more if ci[1] > 0 else less if ci[2] < 0 else same


rows, lines = [], []
for name, (start, stop) in windows.items():
    found = {(column, when): effect(name, column, at_epoch(e))
             for column in ("si_regularised", "val_acc1") for when, e in (("at_stop", stop), ("final", epochs))}
    rows += [{"condition": name, "effect": f"{column}_{when}", "difference": d, "ci_low": lo, "ci_high": hi}
             for (column, when), (d, lo, hi) in found.items()]
    si, si_end = found["si_regularised", "at_stop"], found["si_regularised", "final"]
    off, acc = found["val_acc1", "at_stop"], found["val_acc1", "final"]
    lines.append(
        f"- **{name}**: at epoch {stop}, when the regulariser is switched off, the mean SI of the regularised "
        f"modules minus unregularised is {ex.fmt_ci(*si)}, "
        f"{compare(si, 'raised', 'lowered', 'not changed with confidence')}, and the validation accuracy minus "
        f"unregularised {ex.fmt_ci(*off)}, {compare(off, 'better', 'worse', 'no difference with confidence')}. "
        f"At the end (epoch {epochs}): SI {ex.fmt_ci(*si_end)}; validation accuracy {ex.fmt_ci(*acc)}, "
        f"{compare(acc, 'better', 'worse', 'no difference with confidence')}.")
effects = pd.DataFrame(rows)
effects.to_csv(out / "effects.csv", index=False)


def conditions_where(effect_name, test):
    e = effects[effects.effect == effect_name]
    return e[test(e)].condition.tolist()


tests = conditions_where("si_regularised_at_stop", lambda e: e.ci_low > 0)
better = [c for c in conditions_where("val_acc1_final", lambda e: e.ci_low > 0) if c in tests]
worse = [c for c in conditions_where("val_acc1_final", lambda e: e.ci_high < 0) if c in tests]
slowed = [c for c in conditions_where("val_acc1_at_stop", lambda e: e.ci_high < 0) if c in tests and c not in worse]
if not tests:
    verdict = ("None of these conditions raised selectivity with confidence, so at this scale they do not test "
               "the paper's claim that promoting selectivity does not improve learning.")
elif better:
    verdict = (f"The paper's claim does not hold at this scale: promoting selectivity improved the final "
               f"validation accuracy ({', '.join(better)}; the CI lies above zero).")
else:
    verdict = ("The paper's claim holds at this scale: raising selectivity early did not improve the final "
               "validation accuracy (no CI lies above zero).")
    if worse:
        verdict += (f" As in the paper, it made it worse ({', '.join(worse)}: the CI lies below zero).")
    if slowed:
        verdict += (f" For {', '.join(slowed)} it slowed learning while it was on (accuracy at the switch-off "
                    "epoch below the unregularised networks', CI below zero), but the networks caught up by the "
                    "end: the lasting harm the paper reports is not seen here.")
    rest = [c for c in tests if c not in worse and c not in slowed]
    if rest:
        verdict += (f" For {', '.join(rest)} no harm is shown with confidence.")
summary = "\n".join(lines) + f"\n\n{verdict} ({len(seeds)} seeds per condition.)"
(out / "summary.md").write_text(summary)
display(Markdown(summary))


# %% [markdown]
# ## Explore
#
# Any evaluation column of the runs, one line per seed, for one condition against the
# unregularised networks. The figure shown first is the default choice; in a live
# kernel the menus redraw it.

# %%
def draw(condition, column):
    sel = metrics[metrics.condition.isin(["unregularised", condition])]
    fig, ax = plt.subplots(figsize=(7, 4))
    figures.sns.lineplot(data=sel, x="epoch", y=column, hue="condition", units="seed", estimator=None,
                         marker="o", markersize=3, ax=ax)
    shade(ax)
    ax.set(title=f"{column}: one line per seed", xlabel="epoch", ylabel=column)


figures.explorer(draw, condition=list(windows),
                 column=["si_regularised", "val_acc1", "train_acc1", "train_loss", "mu_si",
                         *(f"si_{m}" for m in figures.MODULE_LABELS), "top5_count"])
