"""A notebook's parameters, checked in one call where they enter: :func:`check`.

papermill passes ``-p seeds "[0, 1]"`` as text: lists and dicts given as text are
parsed first. Every error names the parameter, its value and what is accepted. Fields
that a notebook shares with a run's configuration are checked by
:func:`classsel.config.check_field`, the one check of each configuration field.
"""

from __future__ import annotations

import ast
import json
import numbers
import os
from dataclasses import dataclass, field
from types import SimpleNamespace

from . import config as C
from . import layout


@dataclass(frozen=True)
class Setting:
    """What all runs of a notebook share: the preset, epochs, data folder and overrides."""

    preset: str
    epochs: int
    data_root: str | None = None
    overrides: dict = field(default_factory=dict, hash=False)

    def config(self, **fields) -> C.Config:
        return C.resolve(self.preset, **{**self.overrides, "epochs": self.epochs, "data_root": self.data_root,
                                         **fields})


NOTEBOOKS = {"emergence": "01_emergence", "ablation": "02_ablation", "cka": "03_cka",
             "regularize": "04_regularize", "promote": "05_promote",
             "class_representation": "06_class_representation"}


def parse_text(value):
    """A list or dict that papermill's ``-p`` passed as its text, parsed; anything else as is."""
    if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        for parse in (ast.literal_eval, json.loads):
            try:
                return parse(value)
            except (ValueError, SyntaxError):
                pass
    return value


def _bad(name: str, value, accepted: str) -> ValueError:
    return ValueError(f"parameter {name}={value!r} is not valid: expected {accepted}")


def number(name: str, value, low: float | None = None, high: float | None = None, sign: int = 0) -> float:
    """A finite number; ``sign`` -1 or +1 asks for a negative or positive one (a regulariser strength:
    negative suppresses selectivity, notebook 04; positive promotes it, notebook 05)."""
    value = C.check_field("alpha", value, f"parameter {name}")
    if sign and value * sign <= 0:
        raise _bad(name, value, f"a {'negative' if sign < 0 else 'positive'} number here (a negative strength "
                                "suppresses selectivity: notebook 04_regularize; a positive one promotes it: "
                                "notebook 05_promote)")
    if (low is not None and value <= low) or (high is not None and value >= high):
        raise _bad(name, value, f"a number between {low} and {high} (exclusive)")
    return value


def integer(name: str, value, low: int = 0, high: int | None = None, allow_none: bool = False):
    ok = value is None and allow_none
    ok = ok or (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low
                and (high is None or value <= high))
    if not ok:
        upper = f"..{high}" if high is not None else " or more"
        raise _bad(name, value, f"{'None or ' if allow_none else ''}an integer {low}{upper}")
    return None if value is None else int(value)


def as_list(name: str, values, accepted: str) -> list:
    """``values`` (or its papermill text) as a non-empty list, else an error naming ``name``."""
    values = parse_text(values)
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__") or not list(values):
        raise _bad(name, values, accepted)
    return list(values)


def numbers_(name: str, values, **kw) -> list[float]:
    values = as_list(name, values, "a non-empty list of numbers")
    return list(dict.fromkeys(number(f"{name}[{i}]", v, **kw) for i, v in enumerate(values)))


def integers(name: str, values, low: int = 0, high: int | None = None) -> list[int]:
    upper = f"..{high}" if high is not None else " or more"
    values = as_list(name, values, f"a non-empty list of integers {low}{upper}")
    return sorted({integer(f"{name}[{i}]", v, low, high) for i, v in enumerate(values)})


def modules(name: str, values) -> tuple[str, ...]:
    return C.check_modules(as_list(name, values, f"a list from {list(C.MODULES)}"), f"parameter {name}")


def epochs_list(name: str, values, epochs: int) -> list[float]:
    """Epochs (fractions allowed) within the run."""
    values = numbers_(name, values)
    if not all(0 <= e <= epochs for e in values):
        raise _bad(name, values, f"epochs from 0 to epochs={epochs}")
    return values


def pair(name: str, value, epochs: int) -> tuple[int, int | None]:
    """A regularisation schedule [start, stop] with 0 <= start < stop <= epochs (stop None: to the end)."""
    value = parse_text(value)
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise _bad(name, value, f"a pair [start, stop] with 0 <= start < stop <= epochs={epochs} "
                                f"(papermill: -y '{name}: [0, 1]')")
    start = integer(f"{name}[0]", value[0], 0, epochs - 1)
    return start, integer(f"{name}[1]", value[1], start + 1, epochs, allow_none=True)


def pairs(name: str, values, epochs: int) -> list[tuple[int, int | None]]:
    values = as_list(name, values, f"a non-empty list of [start, stop] pairs with 0 <= start < stop <= "
                                   f"epochs={epochs} (papermill: -y '{name}: [[0, 2]]')")
    return list(dict.fromkeys(pair(f"{name}[{i}]", p, epochs) for i, p in enumerate(values)))


def seeds(value, preset: str, section: str) -> list[int]:
    value = parse_text(value)
    if value is None:
        return list(range(C.default_seeds(preset, section)))
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return list(range(integer("seeds", value, 1, 10_000)))
    value = as_list("seeds", value, "None, a count, or a list of seeds")
    return list(dict.fromkeys(integer(f"seeds[{i}]", s, 0, C.MAX_SEED) for i, s in enumerate(value)))


def overrides(value) -> dict:
    """Configuration fields to change in every run, e.g. ``{"image_size": 128}``, each checked."""
    value = parse_text(value)
    if value is None:
        return {}
    accepted = [f for f in C.FIELDS if f not in C.NOTEBOOK_FIELDS]
    if not isinstance(value, dict):
        raise _bad("overrides", value, f"None or a dict of configuration fields from {accepted} "
                                       "(papermill: -y 'overrides: {image_size: 128}')")
    for key, v in value.items():
        if key in C.NOTEBOOK_FIELDS or key not in C.FIELDS:
            why = "is set by the notebook's own parameters" if key in C.NOTEBOOK_FIELDS else "is not a field"
            raise ValueError(f"parameter overrides={value!r} is not valid: {key!r} {why}; overrides accepts "
                             f"{accepted}")
        C.check_field(key, parse_text(v), f"parameter overrides[{key!r}]")
    return {k: parse_text(v) for k, v in value.items()}


def setting(preset, epochs, data_root, overrides_) -> Setting:
    preset = C.check_field("preset", preset, "parameter preset")
    epochs = C.default_epochs(preset, "default") if epochs is None else epochs
    data_root = C.check_field("data_root", data_root, "parameter data_root")
    fields = overrides(overrides_)
    dataset = fields.get("dataset", C.PRESETS[preset].get("dataset", C.Config.dataset))
    if dataset != "mnist5k" and (data_root is None or not os.path.isdir(str(data_root))):
        raise _bad("data_root", data_root, f"the folder of the {dataset} data of preset {preset!r}")
    result = Setting(preset, integer("epochs", epochs, 1, C.MAX_EPOCHS),
                     None if data_root is None else str(data_root), fields)
    try:
        result.config()
    except ValueError as e:
        raise ValueError(f"parameter overrides={fields!r} is not valid: {e}") from None
    return result


def _defaults_for(preset: str, epochs: int) -> SimpleNamespace:
    """The preset's per-section defaults, fitted to the run's epochs."""
    starts = C.REGULARIZE_STARTS.get(preset, C.REGULARIZE_STARTS["default"])
    alphas, schedules = C.PROMOTE[preset]
    fitted = [(start, min(stop, epochs)) for start, stop in schedules if start < epochs]
    def pick(table):
        return table.get(preset, table["default"])

    return SimpleNamespace(reg_starts=sorted({min(s, epochs - 1) for s in starts}),
                           reg_alphas=list(pick(C.REGULARIZE_ALPHAS)),
                           recover_stop=min(pick(C.RECOVER_STOP), epochs - 1) if epochs > 1 else None,
                           promote_alphas=list(alphas), promote_schedules=list(dict.fromkeys(fitted)),
                           promote_strong=pick(C.PROMOTE_STRONG))


def ablation_epochs(preset: str, epochs: int) -> list[float]:
    """Notebook 02's default checkpoints: early points, every 10th epoch and the last."""
    grid = {"imagenet": list(range(11)), "mnist": [0.65, 0.8, 1, 2], "smoke": [0.2]}.get(
        preset, [0, 0.125, 0.25, 0.5, 1, 2])
    return sorted({e for e in grid + list(range(10, epochs, 10)) if e < epochs} | {epochs})


def check(section: str, ns: dict) -> SimpleNamespace:
    """A notebook's parameters, read by name from its namespace ``ns``, checked.

    Returns them in canonical form with ``setting`` (the runs' shared configuration),
    ``out`` (the results folder) and the section's defaults filled in."""
    if section not in NOTEBOOKS:
        raise ValueError(f"section={section!r} is not valid: expected one of {list(NOTEBOOKS)}")
    preset = C.check_field("preset", ns["preset"] or C.default_preset(), "parameter preset")
    long = section in ("regularize", "promote", "class_representation")
    epochs = ns["epochs"] if ns["epochs"] is not None else C.default_epochs(preset, "regularize" if long else section)
    s = setting(preset, epochs, ns["data_root"], ns["overrides"])
    p = SimpleNamespace(preset=preset, seeds=seeds(ns["seeds"], preset, section), epochs=s.epochs, setting=s)
    d = _defaults_for(preset, s.epochs)
    if section == "ablation":
        p.ablation_epochs = (ablation_epochs(preset, s.epochs) if ns["ablation_epochs"] is None
                             else epochs_list("ablation_epochs", ns["ablation_epochs"], s.epochs))
        p.levels = integer("levels", ns["levels"], 2)
        p.draws = integer("draws", ns["draws"], 1)
    elif section == "cka":
        p.cka_epochs = None if ns["cka_epochs"] is None else epochs_list("cka_epochs", ns["cka_epochs"], s.epochs)
        layers = as_list("layers", ns["layers"], f"a list of at least two of {list(C.CKA_LAYERS)}")
        if len(set(layers)) < 2 or not set(layers) <= set(C.CKA_LAYERS):
            raise _bad("layers", layers, f"a list of at least two of {list(C.CKA_LAYERS)}")
        p.layers = [name for name in C.CKA_LAYERS if name in layers]
    elif section == "regularize":
        p.alpha = number("alpha", ns["alpha"], sign=-1)
        p.reg_starts = integers("reg_starts", d.reg_starts if ns["reg_starts"] is None else ns["reg_starts"],
                                0, s.epochs - 1)
        p.reg_stop = integer("reg_stop", ns["reg_stop"], 1, s.epochs, allow_none=True)
        p.modules = modules("modules", ns["modules"])
        alphas = d.reg_alphas if ns["alphas"] is None else parse_text(ns["alphas"])
        p.alphas = [] if alphas == [] else numbers_("alphas", alphas, sign=-1)
        # recover_stop: None is the preset's (Fig. 15); 0 runs no released networks
        stop = d.recover_stop if ns["recover_stop"] is None else ns["recover_stop"]
        p.recover_stop = integer("recover_stop", stop, 0, s.epochs - 1, allow_none=True) or None
    elif section == "promote":
        p.alphas = numbers_("alphas", d.promote_alphas if ns["alphas"] is None else ns["alphas"], sign=+1)
        p.schedules = pairs("schedules", d.promote_schedules if ns["schedules"] is None else ns["schedules"],
                            s.epochs)
        p.modules = modules("modules", ns["modules"])
        strong = d.promote_strong if ns["strong_alpha"] is None else ns["strong_alpha"]
        p.strong_alpha = None if strong == 0 else number("strong_alpha", strong, sign=+1)
    elif section == "class_representation":
        p.suppress_alpha = number("suppress_alpha", ns["suppress_alpha"], sign=-1)
        p.promote_alpha = number("promote_alpha", ns["promote_alpha"], sign=+1)
        # notebook 05's first default schedule, so that its runs are reused
        schedule = d.promote_schedules[0] if ns["promote_schedule"] is None else ns["promote_schedule"]
        p.promote_start, p.promote_stop = pair("promote_schedule", schedule, s.epochs)
        p.promote_modules = modules("promote_modules", ns["promote_modules"])
        p.early_until = number("early_until", ns["early_until"], low=0, high=s.epochs)
    p.out = layout.results(NOTEBOOKS[section], ns["out_dir"])  # created once every parameter is good
    return p
