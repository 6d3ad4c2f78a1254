"""What the section notebooks share: parameter checks, the runs each section needs,
derived measurements over checkpoints (cached in the run store), and effect sizes
with bootstrap confidence intervals.
"""

from __future__ import annotations

import ast
import io
import json
import math
import numbers
import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import ablation, cka, data, runs
from .checkpoint import atomic_write
from .config import FIELDS, PRESETS, Config, resolve
from .models import MODULES, PAPER_NUMBER

# Seeds per section when a notebook's `seeds` is None (paper: 10 networks for the
# ablations, 6 for CKA, 2 for class representation).
DEFAULT_SEEDS = {
    "smoke": {"default": 2},
    "mnist": {"default": 3, "regularize": 2, "promote": 2, "class_representation": 2},
    "cifar10": {"default": 3},
    "imagenet": {"default": 10, "cka": 6, "regularize": 1, "promote": 1, "class_representation": 2},
}
# Epochs of the regularisation experiments (paper: to epoch 20).
REGULARIZE_EPOCHS = {"imagenet": 20}
# Regularisation start epochs compared in notebook 04 (paper, Fig. 7: epochs 0 to 5).
REGULARIZE_STARTS = {"imagenet": [0, 1, 2, 3, 4, 5], "default": [0, 2]}
# Notebook 05's strengths and [start, stop] schedules in favour of selectivity (paper,
# Fig. 14: alpha 1 and 5, to epoch 4 or 1); notebook 06 reuses the first of each.
PROMOTE = {"smoke": ([5.0], [[0, 1]]), "mnist": ([5.0], [[0, 2]]),
           "cifar10": ([5.0], [[0, 4], [0, 1]]), "imagenet": ([1.0, 5.0], [[0, 4], [0, 1]])}
# Configuration fields a notebook sets through its own parameters, not `overrides`.
NOTEBOOK_FIELDS = ("preset", "epochs", "data_root", "seed", "alpha", "reg_start", "reg_stop", "reg_modules")


# ----------------------------------------------------------------------------- checks


def parse_text(value):
    """A list or dict that papermill's ``-p`` passed as its text, parsed; anything else as is.

    The check that follows names the parameter when the text was not a literal."""
    if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        for parse in (ast.literal_eval, json.loads):
            try:
                return parse(value)
            except (ValueError, SyntaxError):
                pass
    return value


def check_preset(preset) -> str:
    if preset not in PRESETS:
        raise ValueError(f"parameter preset={preset!r} is not valid: expected one of {', '.join(PRESETS)}")
    return preset


def check_number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"parameter {name}={value!r} is not valid: expected a finite number, e.g. -20")
    return float(value)


def check_strength(name: str, value, sign: int) -> float:
    """A regulariser strength of the given sign: -1 against selectivity, +1 in favour of it."""
    value = check_number(name, value)
    if value * sign <= 0:
        raise ValueError(f"parameter {name}={value!r} is not valid: expected a {'negative' if sign < 0 else 'positive'} "
                         "number here (a negative strength suppresses selectivity: notebook 04_regularize; a "
                         "positive one promotes it: notebook 05_promote)")
    return value


def as_list(name: str, values, accepted: str) -> list:
    """``values`` (or its papermill text) as a non-empty list, else an error naming ``name``."""
    values = parse_text(values)
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__") or not list(values):
        raise ValueError(f"parameter {name}={values!r} is not valid: expected {accepted}")
    return list(values)


def check_numbers(name: str, values) -> list[float]:
    values = as_list(name, values, "a non-empty list of numbers")
    return [check_number(f"{name}[{i}]", v) for i, v in enumerate(values)]


def check_int(name: str, value, low: int = 0, high: int | None = None, allow_none: bool = False):
    if value is None and allow_none:
        return None
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low
    ok = ok and (high is None or value <= high)
    if not ok:
        upper = f"..{high}" if high is not None else " or more"
        none = "None or " if allow_none else ""
        raise ValueError(f"parameter {name}={value!r} is not valid: expected {none}an integer {low}{upper}")
    return int(value)


def check_ints(name: str, values, low: int = 0, high: int | None = None) -> list[int]:
    upper = f"..{high}" if high is not None else " or more"
    values = as_list(name, values, f"a non-empty list of integers {low}{upper}")
    return [check_int(f"{name}[{i}]", v, low, high) for i, v in enumerate(values)]


def check_seeds(seeds, preset: str, section: str) -> list[int]:
    seeds = parse_text(seeds)
    if seeds is None:
        table = DEFAULT_SEEDS.get(preset, {"default": 3})
        return list(range(table.get(section, table["default"])))
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        seeds = list(range(check_int("seeds", seeds, 1)))
    seeds = as_list("seeds", seeds, "None, a count, or a list of seeds")
    return [check_int(f"seeds[{i}]", s) for i, s in enumerate(seeds)]


def check_modules(name: str, modules) -> tuple[str, ...]:
    modules = as_list(name, modules, f"a list from {list(MODULES)}")
    bad = [m for m in modules if m not in MODULES]
    if bad:
        raise ValueError(f"parameter {name}={list(modules)!r} is not valid: {bad} not in {list(MODULES)}")
    return tuple(m for m in MODULES if m in modules)


def check_data_root(preset: str, data_root, overrides: dict | None = None) -> str | None:
    dataset = (overrides or {}).get("dataset", PRESETS[preset].get("dataset", "mnist5k"))
    if dataset != "mnist5k" and (data_root is None or not os.path.isdir(str(data_root))):
        raise ValueError(
            f"parameter data_root={data_root!r} is not valid: preset {preset!r} needs the folder of its "
            f"{dataset} data"
        )
    return None if data_root is None else str(data_root)


def check_overrides(overrides) -> dict:
    """Configuration fields to change in every run, e.g. ``{"image_size": 128}``."""
    overrides = parse_text(overrides)
    if overrides is None:
        return {}
    accepted = [f for f in FIELDS if f not in NOTEBOOK_FIELDS]
    if not isinstance(overrides, dict):
        raise ValueError(f"parameter overrides={overrides!r} is not valid: expected None or a dict of "
                         f"configuration fields from {accepted} (papermill: -y 'overrides: {{image_size: 128}}')")
    for key in overrides:
        if key in NOTEBOOK_FIELDS:
            raise ValueError(f"parameter overrides={overrides!r} is not valid: {key!r} is set by the notebook's "
                             f"own parameters; overrides accepts {accepted}")
        if key not in FIELDS:
            raise ValueError(f"parameter overrides={overrides!r} is not valid: {key!r} is not a configuration "
                             f"field; overrides accepts {accepted}")
    return dict(overrides)


def check_pair(name: str, pair, epochs: int) -> tuple[int, int | None]:
    """A regularisation schedule [start, stop] with 0 <= start < stop <= epochs (stop None: to the end)."""
    pair = parse_text(pair)
    if isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2:
        raise ValueError(f"parameter {name}={pair!r} is not valid: expected a pair [start, stop] with "
                         f"0 <= start < stop <= epochs={epochs} (papermill: -y '{name}: [0, 1]')")
    start = check_int(f"{name}[0]", pair[0], 0, epochs - 1)
    return start, check_int(f"{name}[1]", pair[1], start + 1, epochs, allow_none=True)


def check_pairs(name: str, pairs, epochs: int) -> list[tuple[int, int | None]]:
    """A non-empty list of schedules (see :func:`check_pair`), without repeats."""
    pairs = as_list(name, pairs, f"a non-empty list of [start, stop] pairs with 0 <= start < stop <= "
                                 f"epochs={epochs} (papermill: -y '{name}: [[0, 2]]')")
    return list(dict.fromkeys(check_pair(f"{name}[{i}]", p, epochs) for i, p in enumerate(pairs)))


def regularize_starts(preset: str, epochs: int) -> list[int]:
    """Notebook 04's default start epochs: the preset's, within the run's epochs."""
    starts = REGULARIZE_STARTS.get(preset, REGULARIZE_STARTS["default"])
    return sorted({min(s, epochs - 1) for s in starts})


def promote_defaults(preset: str, epochs: int) -> tuple[list[float], list[list[int]]]:
    """Notebook 05's default strengths and schedules, with stops within the run's epochs."""
    alphas, schedules = PROMOTE[preset]
    fitted = [[start, min(stop, epochs)] for start, stop in schedules if start < epochs]
    return list(alphas), [list(p) for p in dict.fromkeys(map(tuple, fitted))]


def check_epochs(epochs, preset: str, section: str = "default") -> int:
    if epochs is None:
        epochs = PRESETS[preset].get("epochs", Config.epochs)
        return REGULARIZE_EPOCHS.get(preset, epochs) if section in ("regularize", "promote") else epochs
    return check_int("epochs", epochs, 1)


# ----------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class Setting:
    """What all runs of a notebook share: the preset, epochs, data folder and overrides."""

    preset: str
    epochs: int
    data_root: str | None = None
    overrides: dict = field(default_factory=dict, hash=False)

    def config(self, **fields) -> Config:
        return resolve(self.preset, **{**self.overrides, "epochs": self.epochs, "data_root": self.data_root,
                                       **fields})


def setting(preset, epochs: int, data_root=None, overrides=None) -> Setting:
    """The checked setting of a notebook; errors name the parameter at fault."""
    preset = check_preset(preset)
    overrides = check_overrides(overrides)
    data_root = check_data_root(preset, data_root, overrides)
    result = Setting(preset, epochs, data_root, overrides)
    try:
        result.config()
    except ValueError as e:
        raise ValueError(f"parameter overrides={overrides!r} is not valid: {e}") from None
    return result


def baseline(setting: Setting, seeds) -> list[runs.Run]:
    """The unregularised runs; every section that needs a baseline shares them."""
    return runs.ensure(setting.config(), seeds)


def regularized(setting: Setting, seeds, alpha: float, start: int = 0, stop=None,
                modules=("layer1", "layer2", "layer3")) -> list[runs.Run]:
    cfg = setting.config(alpha=alpha, reg_start=start, reg_stop=stop, reg_modules=tuple(modules))
    return runs.ensure(cfg, seeds)


def provenance(all_runs: list[runs.Run]) -> str:
    """One line for a caption: preset, seeds, epochs and configuration hashes."""
    cfgs = {r.hash: r.config for r in all_runs}
    first = next(iter(cfgs.values()))
    seeds = sorted({r.seed for r in all_runs})
    return (f"preset {first.preset}, seeds {seeds}, {first.epochs} epochs, "
            f"run configurations {', '.join(sorted(cfgs))}")


def val_loader(run: runs.Run, batch_size: int | None = None):
    cfg = run.config
    kw = {"image_size": cfg.image_size} if cfg.dataset == "imagefolder" else {}
    if cfg.dataset == "mnist5k" and cfg.val_per_class:
        kw["per_class"] = cfg.val_per_class
    ds = data.load(cfg.dataset, "val", cfg.data_root, **kw)
    return data.loader(ds, batch_size or cfg.eval_batch_size, train=False, workers=cfg.workers), ds.num_classes


def epoch_steps(run: runs.Run, epochs=None) -> list[int]:
    """The checkpointed steps of ``run`` at the given (possibly fractional) epochs."""
    m = run.metrics()
    steps = m["step"].tolist() if epochs is None else [int(m.loc[(m.epoch - e).abs().idxmin(), "step"]) for e in epochs]
    available = set(run.checkpoint_steps())
    return [s for s in dict.fromkeys(steps) if s in available]


def derived(run: runs.Run, name: str, compute) -> pd.DataFrame:
    """A table computed from a run, cached in the run's folder (recomputed if absent)."""
    path = run.path / "derived" / f"{name}.csv"
    if path.exists():
        return pd.read_csv(path)
    table = compute()
    path.parent.mkdir(exist_ok=True)
    buf = io.StringIO()
    table.to_csv(buf, index=False)
    atomic_write(path, buf.getvalue().encode())
    return table


def ablation_over_training(all_runs, epochs, modules=MODULES, levels: int = 6, draws: int = 2,
                           progress: bool = True) -> pd.DataFrame:
    """Ablation curves of every module at every chosen checkpoint of every run."""
    from tqdm.auto import tqdm

    tables = []
    work = [(r, s) for r in all_runs for s in epoch_steps(r, epochs)]
    for run, step in tqdm(work, desc="ablation", disable=not progress):
        def compute(run=run, step=step):
            model = run.model(step)
            loader, _ = val_loader(run)
            si = run.si(step)
            ks = {m: ablation.default_ks(len(si[f"{m}.0"]), levels) for m in modules}
            return ablation.ablation_curve(model, loader, list(modules), si, ks=ks, draws=draws, seed=run.seed)
        table = derived(run, f"ablation_step{step}_l{levels}_d{draws}", compute)
        epoch = float(run.metrics().set_index("step").loc[step, "epoch"])
        tables.append(table.assign(seed=run.seed, step=step, epoch=epoch, config=run.hash))
    return pd.concat(tables, ignore_index=True)


def cka_over_training(all_runs, epochs=None, layers=(*MODULES, "fc"), progress: bool = True) -> pd.DataFrame:
    """CKA between every pair of ``layers`` at every chosen checkpoint, long format."""
    from tqdm.auto import tqdm

    tables = []
    work = [(r, s) for r in all_runs for s in epoch_steps(r, epochs)]
    for run, step in tqdm(work, desc="CKA", disable=not progress):
        def compute(run=run, step=step):
            loader, _ = val_loader(run)
            matrix = cka.cka_matrix(run.model(step), loader, list(layers))
            long = matrix.rename_axis("a").reset_index().melt(id_vars="a", var_name="b", value_name="cka")
            return long
        table = derived(run, f"cka_step{step}", compute)
        epoch = float(run.metrics().set_index("step").loc[step, "epoch"])
        tables.append(table.assign(seed=run.seed, step=step, epoch=epoch, config=run.hash))
    return pd.concat(tables, ignore_index=True)


# ----------------------------------------------------------------------------- statistics


def mean_ci(values, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and the percentile bootstrap CI of the mean (seaborn's default error bars)."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return (math.nan, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    boots = rng.choice(x, size=(n_boot, len(x)), replace=True).mean(axis=1)
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return float(x.mean()), float(lo), float(hi)


def difference_ci(a, b, n_boot: int = 2000, seed: int = 0, level: float = 0.95):
    """mean(a) - mean(b) with a bootstrap CI, resampling each group independently."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    boots = (rng.choice(a, (n_boot, len(a))).mean(1) - rng.choice(b, (n_boot, len(b))).mean(1))
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return float(a.mean() - b.mean()), float(lo), float(hi)


def fmt_ci(mean: float, lo: float, hi: float, digits: int = 3) -> str:
    return f"{mean:.{digits}f} (95% CI {lo:.{digits}f} to {hi:.{digits}f})"


def peak_and_final(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per seed and module: the peak mean SI after initialisation, when, and the final value."""
    rows = []
    for (config_hash, seed), m in metrics.groupby(["config", "seed"]):
        m = m.sort_values("step")
        for module in MODULES:
            col = m[f"si_{module}"]
            trained = m[m.step > 0]
            peak_at = trained[f"si_{module}"].idxmax()
            rows.append({"config": config_hash, "seed": seed, "module": module, "number": PAPER_NUMBER[module],
                         "initial": col.iloc[0], "peak": m.loc[peak_at, f"si_{module}"],
                         "peak_epoch": m.loc[peak_at, "epoch"], "final": col.iloc[-1]})
    out = pd.DataFrame(rows)
    return out.assign(rise=out.peak - out.initial, recede=out.peak - out.final)
