"""The checks of notebook parameters (each section's declaration, :mod:`classsel.sections`, uses them).

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

from . import config as C


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


def parse_text(value):
    """A list or dict that papermill's ``-p`` passed as its text, parsed; anything else as is."""
    if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        for parse in (ast.literal_eval, json.loads):
            try:
                return parse(value)
            except (ValueError, SyntaxError):
                pass
    return value


def bad(name: str, value, accepted: str) -> ValueError:
    return ValueError(f"parameter {name}={value!r} is not valid: expected {accepted}")


def number(name: str, value, low: float | None = None, high: float | None = None, sign: int = 0) -> float:
    """A finite number; ``sign`` -1 or +1 asks for a negative or positive one (a regulariser strength:
    negative suppresses selectivity, notebook 04; positive promotes it, notebook 05)."""
    value = C.check_field("alpha", value, f"parameter {name}")
    if sign and value * sign <= 0:
        raise bad(name, value, f"a {'negative' if sign < 0 else 'positive'} number here (a negative strength "
                                "suppresses selectivity: notebook 04_regularize; a positive one promotes it: "
                                "notebook 05_promote)")
    if (low is not None and value <= low) or (high is not None and value >= high):
        raise bad(name, value, f"a number between {low} and {high} (exclusive)")
    return value


def integer(name: str, value, low: int = 0, high: int | None = None, allow_none: bool = False):
    ok = value is None and allow_none
    ok = ok or (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low
                and (high is None or value <= high))
    if not ok:
        upper = f"..{high}" if high is not None else " or more"
        raise bad(name, value, f"{'None or ' if allow_none else ''}an integer {low}{upper}")
    return None if value is None else int(value)


def per_class(name: str, value) -> int | None:
    """A count of images per class (an int >= 1), or "all" (returned as None: every image)."""
    if value == "all":
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise bad(name, value, '"all" or a count of images per class, an integer 1 or more')
    return int(value)


def as_list(name: str, values, accepted: str) -> list:
    """``values`` (or its papermill text) as a non-empty list, else an error naming ``name``."""
    values = parse_text(values)
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__") or not list(values):
        raise bad(name, values, accepted)
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
        raise bad(name, values, f"epochs from 0 to epochs={epochs}")
    return values


def pair(name: str, value, epochs: int) -> tuple[int, int | None]:
    """A regularisation schedule [start, stop] with 0 <= start < stop <= epochs (stop None: to the end)."""
    value = parse_text(value)
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise bad(name, value, f"a pair [start, stop] with 0 <= start < stop <= epochs={epochs} "
                                f"(papermill: -y '{name}: [0, 1]')")
    start = integer(f"{name}[0]", value[0], 0, epochs - 1)
    return start, integer(f"{name}[1]", value[1], start + 1, epochs, allow_none=True)


def pairs(name: str, values, epochs: int) -> list[tuple[int, int | None]]:
    values = as_list(name, values, f"a non-empty list of [start, stop] pairs with 0 <= start < stop <= "
                                   f"epochs={epochs} (papermill: -y '{name}: [[0, 2]]')")
    return list(dict.fromkeys(pair(f"{name}[{i}]", p, epochs) for i, p in enumerate(values)))


def seeds(value, default: int) -> list[int]:
    """Seeds from ``value``: None (the first ``default``), a count, or a list of seeds."""
    value = parse_text(value)
    if value is None:
        return list(range(default))
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return list(range(integer("seeds", value, 1, 10_000)))
    value = as_list("seeds", value, "None, a count, or a list of seeds")
    return list(dict.fromkeys(integer(f"seeds[{i}]", s, 0, C.MAX_SEED) for i, s in enumerate(value)))


def is_zero(value) -> bool:
    """Whether ``value`` is the number 0 (a strength that turns a condition off), False not included."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value == 0


def overrides(value) -> dict:
    """Configuration fields to change in every run, e.g. ``{"image_size": 128}``, each checked."""
    value = parse_text(value)
    if value is None:
        return {}
    accepted = [f for f in C.FIELDS if f not in C.NOTEBOOK_FIELDS]
    if not isinstance(value, dict):
        raise bad("overrides", value, f"None or a dict of configuration fields from {accepted} "
                                       "(papermill: -y 'overrides: {image_size: 128}')")
    for key, v in value.items():
        if key in C.NOTEBOOK_FIELDS or key not in C.FIELDS:
            why = "is set by the notebook's own parameters" if key in C.NOTEBOOK_FIELDS else "is not a field"
            raise ValueError(f"parameter overrides={value!r} is not valid: {key!r} {why}; overrides accepts "
                             f"{accepted}")
        C.check_field(key, parse_text(v), f"parameter overrides[{key!r}]")
    return {k: parse_text(v) for k, v in value.items()}


def data_folder(preset: str, data_root, dataset: str | None = None, label: str = "parameter data_root") -> None:
    """Refuse no folder, or one that is not there, for a dataset read from files (``dataset``: the
    preset's where None); the error names ``label``."""
    dataset = dataset or C.PRESETS[preset].get("dataset", C.Config.dataset)
    if dataset != "mnist5k" and (data_root is None or not os.path.isdir(str(data_root))):
        raise ValueError(f"{label}={data_root!r} is not valid: expected the folder of the {dataset} data of "
                         f"preset {preset!r}")


def setting(preset, epochs, data_root, overrides_) -> Setting:
    preset = C.check_field("preset", preset, "parameter preset")
    data_root = C.check_field("data_root", data_root, "parameter data_root")
    fields = overrides(overrides_)
    data_folder(preset, data_root, fields.get("dataset"))
    result = Setting(preset, integer("epochs", epochs, 1, C.MAX_EPOCHS),
                     None if data_root is None else str(data_root), fields)
    try:
        result.config()
    except ValueError as e:
        field = str(e).split("=")[0]  # the notebook's own parameter, where it is one
        label = f"parameter {field}" if field in ("data_root", "epochs") else f"parameter overrides={fields!r}"
        raise ValueError(f"{label} is not valid here: {e}") from None
    return result
