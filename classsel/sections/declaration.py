"""A section's declaration: its notebook parameters with their defaults per preset and their
checks, its plan (the conditions it trains and the analyses it reads) and its computation, in one
place. The notebook's parameters cell is rendered from it (:func:`parameters_cell`; a test keeps
the two equal), so a default and the comment that states it cannot drift apart."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace

from .. import config as C
from .. import layout
from .. import params as P

PRESET_ORDER = ("smoke", "mnist", "cifar10", "imagenet")


@dataclass(frozen=True)
class Param:
    """A notebook parameter: its cell's value and comment (``{presets}`` in the comment becomes each
    preset's default, from the section's ``presets``)."""

    name: str
    default: object
    doc: str


@dataclass(frozen=True)
class Declaration:
    """One paper section. ``presets``: per-preset defaults of the parameters whose cell value is None
    (and ``seeds``/``epochs``), with a ``"default"`` entry for presets not named; ``check(p, ns, d)``
    sets the section's own checked parameters on ``p`` from the namespace ``ns`` (``d(name)``: the
    preset's default); ``conditions(p)``: {condition name: configuration fields}; ``analyses(p)``:
    [(kind, epochs, options)] of each baseline run; ``compute(p, groups)``: the section's result."""

    name: str
    notebook: str
    params: tuple[Param, ...]
    presets: dict[str, dict]
    check: Callable
    conditions: Callable
    compute: Callable
    analyses: Callable = lambda p: []
    # what the comment of `seeds` and `epochs` shows besides each preset's value
    notes: dict[str, str] = field(default_factory=dict)

    def default(self, preset: str, name: str):
        """The preset's default for ``name``."""
        table = self.presets.get(preset, {})
        if name in table:
            return table[name]
        if name == "epochs":
            return C.PRESETS[preset].get("epochs", C.Config.epochs)
        return self.presets["default"][name]

    def all_params(self) -> tuple[Param, ...]:
        return (*common(self), *self.params)


def common(d: Declaration | None) -> tuple[Param, ...]:
    """The parameters every chapter notebook has (``d`` None: the "What reproduces" page)."""
    each = lambda what: f"None: each chapter's {what}"  # noqa: E731
    out = d.notebook if d else "00_what_reproduces"
    return (
        Param("preset", None, "None: $CLASSSEL_PRESET, else mnist; " + ", ".join(PRESET_ORDER)),
        Param("seeds", None, (f"None: the preset's ({{presets}}){d.notes.get('seeds', '')}" if d else each("seeds"))
              + "; a count, or a list of seeds"),
        Param("epochs", None, f"None: the preset's ({{presets}}){d.notes.get('epochs', '')}" if d else each("epochs")),
        Param("data_root", None, "the dataset folder, for cifar10 and imagenet"),
        Param("overrides", None, 'configuration fields for every run, e.g. {"image_size": 128}'),
        Param("out_dir", None, f"None: runs/results/{out}"),
    )


def literal(value) -> str:
    """A value as the cell writes it (lists and strings as JSON, which papermill's -p text also is)."""
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    return json.dumps(value)


def presets_text(d: Declaration, name: str) -> str:
    return ", ".join(f"{preset}: {literal(d.default(preset, name))}" for preset in PRESET_ORDER)


def parameters_cell(d: Declaration | None) -> str:
    """The source of the notebook's parameters cell, as the declaration renders it."""
    number = (d.notebook if d else "00")[:2]
    lines = [f"# Chapter {number}'s parameters: papermill -p NAME VALUE; a list also as text"]
    for p in (common(d) if d is None else d.all_params()):
        comment = p.doc.format(presets=presets_text(d, p.name)) if "{presets}" in p.doc else p.doc
        code = f"{p.name} = {literal(p.default)}"
        if len(code) + 4 + len(comment) <= 88:  # the width a reader sees without scrolling
            lines.append(f"{code}  # {comment}")
        else:
            lines += textwrap.wrap(comment, 88, initial_indent="# ", subsequent_indent="# ", break_on_hyphens=False)
            lines.append(code)
    return "\n".join(lines)


def check(d: Declaration, ns: dict) -> SimpleNamespace:
    """A notebook's parameters, read by name from its namespace ``ns``, checked: the common ones here,
    the section's by its declaration. Returns them in canonical form with ``setting`` (the runs' shared
    configuration), ``out`` (the results folder) and the preset's defaults filled in."""
    preset = ns["preset"]
    preset = C.default_preset() if preset is None else C.check_field("preset", preset, "parameter preset")
    epochs = ns["epochs"] if ns["epochs"] is not None else d.default(preset, "epochs")
    s = P.setting(preset, epochs, ns["data_root"], ns["overrides"])
    p = SimpleNamespace(preset=preset, seeds=P.seeds(ns["seeds"], d.default(preset, "seeds")), epochs=s.epochs,
                        setting=s)
    d.check(p, ns, lambda name: d.default(preset, name))
    out = ns["out_dir"]
    if out is not None and (not isinstance(out, str) or not out.strip()):
        raise P.bad("out_dir", out, "None (the run store's results folder) or a folder's path")
    p.out = layout.results(d.notebook, out)  # created once every parameter is good
    return p


def unknown(d: Declaration | None, history) -> list[str]:
    """Names that papermill's injected-parameters cell set which are not parameters of the notebook
    (a misspelt ``-p epoch 1`` would otherwise be ignored): from the kernel's input history ``In``."""
    import ast

    known = {p.name for p in (common(d) if d is None else d.all_params())}
    found = []
    for source in history or []:
        if isinstance(source, str) and source.startswith("# Parameters"):
            try:
                tree = ast.parse(source)
            except SyntaxError:
                continue
            found += [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                      if isinstance(t, ast.Name) and t.id not in known]
    return found


def write_cell(path, d: Declaration | None) -> bool:
    """Write the declaration's parameters cell into the jupytext notebook ``path`` (the .py of a pair;
    ``jupytext --sync`` then updates its .ipynb). True if it changed."""
    from pathlib import Path

    path = Path(path)
    text = path.read_text()
    marker = '# %% tags=["parameters", "hide-input"]\n'
    start = text.index(marker) + len(marker)
    end = text.index("\n\n# %%", start)
    new = text[:start] + parameters_cell(d) + text[end:]
    path.write_text(new)
    return new != text
