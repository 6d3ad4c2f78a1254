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
seeds = None  # None: the preset's default (mnist: 3, imagenet: 10), a count, or a list
epochs = None  # None: the preset's
data_root = None  # the dataset folder, for cifar10 and imagenet
overrides = None  # configuration fields changed in every run, e.g. {"image_size": 128, "batch_size": 64}
out_dir = None  # None: runs/results/02_ablation
# Checkpoints to ablate, in epochs (fractions allowed: the nearest evaluation point is
# used), e.g. [0, 0.13, 0.26, 0.52, 1, 2, 5]. None: 0, 1/8, 1/4 and 1/2 epoch, epochs 1
# and 2, every 10th epoch and the last; imagenet: epochs 0-10, every 10th and the last;
# mnist: 0.65, 0.8, 1, 2 and the last (its networks stay near chance for the first half
# epoch, where ablation measures nothing); smoke: 0.2 and the last.
ablation_epochs = None
levels = 6  # counts k per curve, evenly spaced from 0 to all units of a block
draws = 2  # random-order draws per curve (the control)

# %% tags=["remove-cell"]
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from classsel import ablation
from classsel import experiments as ex
from classsel import params
from classsel import figures, runs

p = params.check("ablation", globals())
seeds, epochs, setting, out = p.seeds, p.epochs, p.setting, p.out
ablation_epochs, levels, draws = p.ablation_epochs, p.levels, p.draws
figures.setup()

# %% [markdown]
# ## Runs
#
# The ablations use the baseline runs of the emergence chapter: the run store trains
# them once and every chapter reuses them. Each ablation curve is also stored with its
# run, so re-executing this notebook does not recompute it.

# %% tags=["remove-output"]
base = ex.baseline(setting, seeds)

# %% tags=["remove-output"]
curves = ex.ablation_over_training(base, ablation_epochs, levels=levels, draws=draws)

# %% [markdown]
# The checkpoints ablated (the evaluation point nearest to each requested epoch) and
# the unablated validation accuracy there, mean over seeds:

# %%
glue("prov-02", Markdown(f"{ex.provenance(base)}; {levels} counts per curve, {draws} random draws"),
     display=False)
curves.to_csv(out / "ablation_curves.csv", index=False)
# One curve per seed, order and checkpoint: the random draws are averaged first, so the
# error shades are the 95% CI of the mean over seeds, as in the paper.
keys = ["seed", "epoch", "step", "module", "order"]
per_seed = curves.groupby([*keys, "k", "fraction"], as_index=False)["normalized"].mean()
per_seed["module"] = per_seed["module"].map(figures.MODULE_LABELS)
# Checkpoints as labels, so that each gets its own colour however unevenly they are spaced.
labels = {e: f"{e:.2f}".rstrip("0").rstrip(".") for e in sorted(per_seed.epoch.unique())}
per_seed["checkpoint"] = per_seed["epoch"].map(labels)
areas = (ablation.auc(curves, by=("seed", "epoch", "step"))
         .groupby(keys, as_index=False)["auc"].mean())
areas["module"] = areas["module"].map(figures.MODULE_LABELS)
areas.to_csv(out / "auc.csv", index=False)
checkpoints = (curves[curves.k == 0].groupby(["step", "epoch"], as_index=False)["accuracy"].mean()
               .rename(columns={"accuracy": "unablated accuracy"}))
checkpoints.round(3)

# %% [markdown]
# ## Ablation over training (Fig. 3)
#
# {numref}`fig-02-curves` shows the ablation curves of every module at every checkpoint:
# the validation accuracy, relative to the unablated network, as more units of each
# block are zeroed, in selectivity order (top) and in random order (bottom).
# {numref}`fig-02-auc` summarises each curve by its area ({eq}`eq-auc`, the sum of the
# normalised accuracies over the grid of counts, at most the number of counts): a
# smaller area means the ablation costs more accuracy. A network still at chance (such as
# at initialisation) has nothing to lose: its normalised accuracies compare chance with
# chance.

# %% tags=["remove-output"]
modules = list(figures.MODULE_LABELS.values())
g = figures.sns.relplot(data=per_seed, x="fraction", y="normalized", hue="checkpoint", row="order", col="module",
                        kind="line", errorbar=figures.CI, height=2.8, aspect=1.05,
                        hue_order=list(labels.values()), palette=figures.sns.color_palette("crest", len(labels)),
                        row_order=list(ablation.ORDERS), col_order=modules, facet_kws={"margin_titles": True})
g.legend.set_title("epoch")
g.set_titles(row_template="{row_name} order", col_template="{col_name}")
g.set_axis_labels("fraction ablated per block", "normalised accuracy")
g.figure.suptitle("Ablation curves throughout training", y=1.03)
figures.save(g, out, "fig3_ablation_curves")
glue("fig-02-curves", g.figure, display=False)
plt.show()

# %% [markdown]
# ```{glue:figure} fig-02-curves
# :name: fig-02-curves
#
# Normalised validation accuracy as the units of each module are ablated, most
# selective first (top) or in random order (bottom), one line per checkpoint (colour:
# epoch), as in the right-hand side of the paper's Fig. 3 (which shows modules 4-6);
# shades: 95% CI of the mean over seeds. Provenance: {glue:md}`prov-02`.
# ```

# %% tags=["remove-output"]
g = figures.sns.relplot(data=areas, x="epoch", y="auc", hue="order", col="module", kind="line",
                        errorbar=figures.CI, marker="o", markersize=4, height=3, aspect=1.1,
                        col_order=modules, hue_order=list(ablation.ORDERS))
g.set_titles("{col_name}")
g.set_axis_labels("epoch", "AUC (sum of normalised accuracy)")
g.figure.suptitle("Area under the ablation curves over training", y=1.04)
figures.save(g, out, "fig3_auc_over_training")
glue("fig-02-auc", g.figure, display=False)
plt.show()

# %% [markdown]
# ```{glue:figure} fig-02-auc
# :name: fig-02-auc
#
# Area under the ablation curves of {numref}`fig-02-curves` over training, selective
# against random order, as in the left-hand side of the paper's Fig. 3; shades: 95% CI
# of the mean over seeds (each seed's random area is the mean of its draws).
# Provenance: {glue:md}`prov-02`.
# ```
#
# The effect size below is the selective-minus-random area of each seed (negative:
# ablating the selective units costs more accuracy than ablating random ones), early
# (the checkpoints of the first epoch where the network is clearly above chance, at
# least twice the chance accuracy, averaged per seed; or else the first such checkpoint,
# or the first trained one) and at the last checkpoint. If selective units
# matter more early in training, the difference rises from early to late: the change is
# positive. The random control tells the selective effect apart from a network that
# simply becomes more robust to any ablation.

# %%
wide = areas.pivot_table(index=["seed", "epoch", "step", "module"], columns="order", values="auc").reset_index()
wide["delta"] = wide["selective"] - wide["random"]
# Early: checkpoints of the first epoch where the network is clearly above chance (a
# network at chance has nothing to lose), or else the first such checkpoint, or else the
# first trained one.
chance = 1 / ex.val_loader(base[0])[1]
accuracy = checkpoints.set_index("epoch")["unablated accuracy"]
trained = sorted(e for e in wide.epoch.unique() if e > 0)
last = max(trained) if trained else None
learned = [e for e in trained if accuracy[e] >= 2 * chance and e != last]
early_epochs = [e for e in learned if e <= 1] or learned[:1] or [e for e in trained[:1] if e != last]
rows = []
for module, g_ in wide.groupby("module"):
    early = g_[g_.epoch.isin(early_epochs)].groupby("seed")[["selective", "random", "delta"]].mean()
    late = g_[g_.epoch == last].set_index("seed")[["selective", "random", "delta"]]
    change = (late - early).dropna()
    for name, values in [("early", early.delta), ("late", late.delta), ("change", change.delta),
                         ("selective change", change.selective), ("random change", change.random)]:
        rows.append({"module": module, "quantity": name, **dict(zip(("mean", "low", "high"), ex.mean_ci(values)))})
effects = pd.DataFrame(rows)
effects.to_csv(out / "auc_effects.csv", index=False)


def ci(module, quantity):
    r = effects[(effects.module == module) & (effects.quantity == quantity)].iloc[0]
    return r["mean"], r["low"], r["high"]


def sign(module, quantity):
    """+1 / -1 when the CI lies above / below zero, 0 when it includes zero (or is undefined)."""
    _, lo, hi = ci(module, quantity)
    return 1 if lo > 0 else -1 if hi < 0 else 0


# Caveats the numbers call for: networks near chance, few seeds.
def caveats(compared):
    low = [e for e in compared if e is not None and accuracy[e] < 2 * chance]
    text = ""
    if low:
        where = ", ".join(f"{accuracy[e]:.1%} at epoch {e:.2f}" for e in low)
        text += (f" The networks are near chance ({chance:.0%}) at checkpoints compared here ({where}): there "
                 "the ablation curves measure noise rather than the role of the units.")
    if len(seeds) < 5:
        text += (f" The intervals are bootstrap CIs over {len(seeds)} seeds (the paper used 10), so they are "
                 "only indicative.")
    return text


caveat = caveats([*early_epochs, last])
if not early_epochs:
    display(Markdown("The comparison of early and late needs at least two trained checkpoints; choose more "
                     "`ablation_epochs`." + caveat))
else:
    span = ", ".join(f"{e:.2f}" for e in early_epochs)
    lines = [f"Early: epoch {span}; late: epoch {last:.2f}. Areas are sums over {levels} counts (at most "
             f"{levels})."]
    for module in modules:
        lines.append(
            f"- **{module}**: selective minus random area {ex.fmt_ci(*ci(module, 'early'))} early and "
            f"{ex.fmt_ci(*ci(module, 'late'))} late; change late minus early {ex.fmt_ci(*ci(module, 'change'))} "
            f"(selective area alone {ex.fmt_ci(*ci(module, 'selective change'))}, random "
            f"{ex.fmt_ci(*ci(module, 'random change'))}).")
    paper = modules[:3]  # the paper's claim is about the early and intermediate modules
    holds = [m for m in paper if sign(m, "change") > 0]
    against = [m for m in paper if sign(m, "change") < 0]
    if len(holds) == len(paper):
        verdict = ("The paper's claim holds at this scale: in modules 4, 5 and 6, ablating the selective units "
                   "costs more accuracy, relative to random ablation, early in training than at the end (every CI "
                   "of the change lies above zero).")
    elif holds:
        rest = ", ".join(m for m in paper if m not in holds)
        verdict = (f"The paper's claim holds only in part at this scale: the CI of the change lies above zero in "
                   f"{', '.join(holds)}, but includes zero or lies below it in {rest}.")
    else:
        verdict = ("At this scale the data do not support the paper's claim that selective ablation is more "
                   "damaging early than late: in none of modules 4-6 does the CI of the change lie above zero.")
    if against:
        verdict += f" In {', '.join(against)} the CI of the change lies below zero: the opposite of the paper's finding."
    display(Markdown("\n".join(lines) + "\n\n" + verdict + caveat))

# %% [markdown]
# ## The fully trained network (Fig. 8)
#
# Appendix A.2 of the paper looks at the last checkpoint alone: there, ablating the most
# selective units of modules 4-6 costs *less* accuracy than ablating random units, while
# in module 7 it costs more. {numref}`fig-02-final` shows the curves of the last
# checkpoint.

# %% tags=["remove-output"]
final = per_seed[per_seed.epoch == per_seed.epoch.max()]
g = figures.sns.relplot(data=final, x="fraction", y="normalized", hue="order", col="module", kind="line",
                        errorbar=figures.CI, marker="o", markersize=4, height=3, aspect=1.1,
                        col_order=modules, hue_order=list(ablation.ORDERS))
g.set_titles("{col_name}")
g.set_axis_labels("fraction ablated per block", "normalised accuracy")
g.figure.suptitle(f"Ablation of the trained network (epoch {final.epoch.max():g})", y=1.04)
figures.save(g, out, "fig8_final_ablation")
glue("fig-02-final", g.figure, display=False)
plt.show()

# %% [markdown]
# ```{glue:figure} fig-02-final
# :name: fig-02-final
#
# Ablation curves of the network at the last checkpoint, most selective units first
# against random order, one panel per module, as in the paper's Fig. 8; shades: 95% CI
# of the mean over seeds. Provenance: {glue:md}`prov-02`.
# ```

# %%
expected = {m: (1 if m != modules[-1] else -1) for m in modules}  # A.2: +, +, +, -
words = {1: "less damaging than random ablation", -1: "more damaging than random ablation",
         0: "not distinguishable from random ablation (CI includes zero)"}
lines, agree = [], []
if last is None:
    display(Markdown("No trained checkpoint was ablated; choose `ablation_epochs` that include the last epoch."))
else:
    for module in modules:
        s = sign(module, "late")
        agree.append(s == expected[module])
        lines.append(f"- **{module}**: selective ablation is {words[s]}; selective minus random area "
                     f"{ex.fmt_ci(*ci(module, 'late'))}.")
    paper = "the paper finds selective ablation less damaging than random in modules 4-6 and more in module 7"
    same = [m for m, a in zip(modules, agree) if a]
    differ = [m for m, a in zip(modules, agree) if not a]
    if not differ:
        verdict = ("The appendix's finding holds at this scale: at the last checkpoint, selective ablation is less "
                   "damaging than random ablation in modules 4-6 and more damaging in module 7.")
    elif not same:
        verdict = f"The appendix's finding does not hold at this scale in any module ({paper})."
    else:
        verdict = (f"The appendix's finding holds at this scale only in part: as in the paper in {', '.join(same)}, "
                   f"but not in {', '.join(differ)} ({paper}).")
    display(Markdown(f"At epoch {last:g}:\n\n" + "\n".join(lines) + "\n\n" + verdict + caveats([last])))

# %% [markdown]
# ## Explore the curves
#
# The ablation curves of one module at one checkpoint, selective against random
# order. The figure shown first is the default choice; in a live kernel the menus
# redraw it.

# %%
def draw(module, epoch):
    sel = per_seed[(per_seed.module == figures.MODULE_LABELS[module]) & (per_seed.epoch == epoch)]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    figures.sns.lineplot(data=sel, x="fraction", y="normalized", hue="order", errorbar=figures.CI,
                         marker="o", hue_order=list(ablation.ORDERS), ax=ax)
    ax.set(title=f"{figures.MODULE_LABELS[module]}, epoch {epoch:.2f}",
           xlabel="fraction of units ablated per block", ylabel="normalised accuracy")


epochs_seen = [float(e) for e in sorted(per_seed.epoch.unique())]
start = early_epochs[0] if early_epochs else epochs_seen[-1]
figures.explorer(draw, module=["layer3", "layer1", "layer2", "layer4"],
                 epoch=[start] + [e for e in epochs_seen if e != start])
