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
seeds = None  # None: the preset's default (2, as in the paper's Fig. 16), a count, or a list
epochs = None  # None: the preset's (imagenet: 20, as in the paper)
data_root = None  # the dataset folder, for cifar10 and imagenet
overrides = None  # configuration fields changed in every run, e.g. {"image_size": 128, "batch_size": 64}
out_dir = None  # None: runs/results/06_class_representation
suppress_alpha = -20.0  # against selectivity, modules 4-6 from epoch 0: notebook 04's runs
promote_alpha = 5.0  # in favour of selectivity: notebook 05's runs (its first default alpha)
promote_schedule = None  # [start, stop]; None: notebook 05's first default (mnist: [0, 2], imagenet: [0, 4])
promote_modules = ["layer1", "layer2", "layer3", "layer4"]  # notebook 05's default
early_until = 1.0  # "early": the evaluation points after initialisation up to this epoch

# %% tags=["remove-cell"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display
from myst_nb import glue

from classsel import experiments as ex
from classsel import params
from classsel import figures, representation, runs

p = params.check("class_representation", globals())
seeds, epochs, setting, out = p.seeds, p.epochs, p.setting, p.out
suppress_alpha, promote_alpha, promote_modules = p.suppress_alpha, p.promote_alpha, p.promote_modules
promote_start, promote_stop, early_until = p.promote_start, p.promote_stop, p.early_until
figures.setup()

# %% [markdown]
# ## Runs
#
# No new training with the default parameters: the unregularised networks, the
# networks regularised against selectivity from epoch 0 (notebook 04) and those
# regularised in favour of it (notebook 05) come from the run store.

# %% tags=["remove-output"]
span = f"from epoch {promote_start}" if promote_stop is None else f"epochs {promote_start}-{promote_stop}"
conditions = {
    "unregularised": ex.baseline(setting, seeds),
    f"α={suppress_alpha:g} from epoch 0": ex.regularized(setting, seeds, suppress_alpha, 0, None),
    f"α=+{promote_alpha:g}, {span}": ex.regularized(setting, seeds, promote_alpha, promote_start, promote_stop,
                                                    promote_modules),
}

# %%
metrics = pd.concat([runs.load_metrics(rs).assign(condition=name) for name, rs in conditions.items()],
                    ignore_index=True)
counts = pd.concat([runs.load_predictions(rs).assign(condition=name) for name, rs in conditions.items()],
                   ignore_index=True)
all_runs = [r for rs in conditions.values() for r in rs]
glue("prov-06", Markdown(ex.provenance(all_runs)), display=False)

# An independent check of the metrics' top5_count: recompute it from the saved class counts.
recount = (counts.sort_values("class").groupby(["condition", "seed", "step"])["count"]
           .apply(lambda c: representation.top_k_mean(torch.tensor(c.to_numpy()), 5)).rename("recount"))
check = metrics.join(recount, on=["condition", "seed", "step"])
mismatch = float((check.top5_count - check.recount).abs().max())
if not mismatch < 1e-9:
    raise AssertionError(f"top5_count in metrics.csv differs from the recount of the predictions by {mismatch}")
val_size = int(counts.groupby(["condition", "seed", "step"])["count"].sum().max())
classes = counts["class"].nunique()
uniform = val_size / classes
table = metrics[["condition", "seed", "epoch", "step", "top5_count", "val_acc1"]]
table.to_csv(out / "top5_count.csv", index=False)
counts.to_csv(out / "class_counts.csv", index=False)
display(Markdown(f"{val_size} validation images, {classes} classes: with "
                 f"evenly spread predictions the mean of the top-5 counts would be {uniform:g}. The recount "
                 f"from the saved class counts agrees with the runs' `top5_count` (largest difference "
                 f"{mismatch:g})."))

# %% [markdown]
# ## Class representation over training (Fig. 16)

# %% tags=["remove-output"]
fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
figures.by_condition(metrics, "top5_count", "condition", ax=axes[0], title="Class representation",
                     ylabel="mean of the top-5 class counts")
figures.by_condition(metrics[metrics.epoch <= early_until], "top5_count", "condition", ax=axes[1],
                     title=f"Class representation, up to epoch {early_until:g}",
                     ylabel="mean of the top-5 class counts")
for ax in axes:
    ax.axhline(uniform, color="grey", ls="--", lw=1, label="evenly spread predictions")
    ax.axhline(val_size / 5, color="grey", ls=":", lw=1, label="all predictions in 5 classes")
axes[1].legend(fontsize="small")
axes[0].get_legend().remove()
figures.save(fig, out, "fig16_class_representation")
glue("fig-06-top5", fig, display=False)
plt.show()

# %% [markdown]
# ```{glue:figure} fig-06-top5
# :name: fig-06-top5
#
# Mean of the five largest class counts of the predictions on the validation set
# ({eq}`eq-representation`) for unregularised networks, networks regularised against
# selectivity from epoch 0 and networks regularised in favour of it early in training,
# the paper's Fig. 16; right: the first evaluation points enlarged. Dashed: the value
# for predictions spread evenly over the classes; dotted: the largest possible value,
# every prediction in five classes or fewer. Shades: 95% CI of the mean over
# seeds. Provenance: {glue:md}`prov-06`.
# ```
#
# {numref}`fig-06-top5` compares the conditions. The numbers below are computed from
# these runs: per seed, the mean top-5 count over the early evaluation points (after
# initialisation, where every condition starts from the same network, up to epoch
# `early_until`) and at the last evaluation point, each compared with the
# unregularised networks (differences of means with bootstrap 95% CIs over seeds).

# %%
def per_seed(name, when):
    m = metrics[metrics.condition == name]
    return m[when(m)].groupby("seed")["top5_count"].mean()


early = lambda m: (m.step > 0) & (m.epoch <= early_until)  # noqa: E731
last = lambda m: m.step == m.step.max()  # noqa: E731
rows, lines, verdicts = [], [], {}
for name in list(conditions)[1:]:
    e = ex.difference_ci(per_seed(name, early), per_seed("unregularised", early))
    f = ex.difference_ci(per_seed(name, last), per_seed("unregularised", last))
    rows += [{"condition": name, "window": w, "difference": d, "ci_low": lo, "ci_high": hi}
             for w, (d, lo, hi) in [("early", e), ("final", f)]]
    early_word = ("over-represents a few classes" if e[1] > 0 else "represents the classes more evenly" if e[2] < 0
                  else "does not differ with confidence")
    late_word = ("still over-represents a few classes" if f[1] > 0 and e[1] > 0 else
                 "over-represents a few classes" if f[1] > 0 else
                 "represents the classes more evenly" if f[2] < 0 else
                 "no longer differs with confidence" if e[1] > 0 else "does not differ with confidence")
    verdicts[name] = (e, f)
    lines.append(f"- **{name}**: up to epoch {early_until:g} it {early_word}: top-5 count minus unregularised "
                 f"{ex.fmt_ci(*e, digits=1)}; at the end (epoch {epochs}) it {late_word}: "
                 f"{ex.fmt_ci(*f, digits=1)}.")
effects = pd.DataFrame(rows)
effects.to_csv(out / "effects.csv", index=False)

early_yes = [n for n, (e, f) in verdicts.items() if e[1] > 0]
gone = [n for n in early_yes if not verdicts[n][1][1] > 0]
persist = [n for n in early_yes if verdicts[n][1][1] > 0]
absent = [n for n in verdicts if n not in early_yes]
if len(gone) == len(verdicts):
    verdict = ("The paper's claim holds at this scale: both regularising against and in favour of selectivity "
               "over-represent a few classes early in training (CIs above zero), and the effect is no longer "
               "visible at the end.")
elif not early_yes:
    verdict = ("At this scale the data do not support the paper's claim: no condition over-represents a few "
               "classes early with confidence (every CI includes zero or lies below it).")
else:
    parts = [f"{', '.join(early_yes)} over-represents a few classes early (CI above zero)"]
    if gone:
        parts.append(f"for {', '.join(gone)} the effect is gone at the end, as in the paper")
    for n in persist:
        (e, _, _), (f, _, _) = verdicts[n]
        parts.append(f"for {n} it is still there at the end ({f:.1f} against {e:.1f} early), whereas in the "
                     "paper it was no longer visible after the first epochs")
    if absent:
        parts.append(f"{', '.join(absent)} does not over-represent classes early with confidence (the CI "
                     "does not lie above zero)")
    verdict = "The paper's claim holds only in part at this scale: " + "; ".join(parts) + "."
summary = "\n".join(lines) + f"\n\n{verdict} ({len(seeds)} seeds per condition.)"
(out / "summary.md").write_text(summary)
display(Markdown(summary))


# %% [markdown]
# ## Explore the class counts
#
# How the predictions of one evaluation point spread over the classes, classes sorted
# by count (mean over seeds), against the unregularised networks. The figure shown
# first is the early evaluation point where the conditions differ most; in a live
# kernel the menus redraw it.

# %%
def draw(condition, epoch):
    sel = counts[counts.condition.isin(["unregularised", condition]) & np.isclose(counts.epoch, epoch)]
    ranked = sel.assign(rank=sel.groupby(["condition", "seed"])["count"].rank(ascending=False, method="first"))
    ranked = ranked[ranked["rank"] <= shown].astype({"rank": int})
    fig, ax = plt.subplots(figsize=(7, 3.5))
    figures.sns.barplot(data=ranked, x="rank", y="count", hue="condition", errorbar=figures.CI, ax=ax,
                        hue_order=["unregularised", condition])
    ax.axhline(uniform, color="grey", ls="--", lw=1)
    ax.set(title=f"Class counts at epoch {epoch:.2f}", xlabel="class rank (most predicted first)",
           ylabel="predicted images")


shown = min(classes, 20)  # the most predicted classes only, for data sets with many classes
spread = metrics[early(metrics)].pivot_table(index="epoch", columns="condition", values="top5_count")
gap = (spread.drop(columns="unregularised").max(axis=1) - spread["unregularised"]).idxmax()
epochs_seen = sorted(metrics.epoch.unique())
figures.explorer(draw, condition=list(conditions)[1:], epoch=[gap] + [e for e in epochs_seen if e != gap])
