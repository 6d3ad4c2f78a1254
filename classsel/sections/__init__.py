"""The paper's sections: for each, one declaration (:class:`Declaration`) of its notebook parameters
with their defaults per preset and their checks, its plan and its computation, in a module of its
own. A chapter notebook calls :func:`notebook`; ``python -m classsel reproduce`` unites the plans;
the "What reproduces" page computes them all (:func:`what_reproduces`).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd

from .. import runs
from ..claims import BASELINE
from ..config import default_preset
from ..plan import Plan, fulfil
from . import ablation, architectures, class_representation, cka, emergence, promote, regularize
from .base import Section, against, favour
from .declaration import Declaration, Param, check as _check, common, parameters_cell, unknown

__all__ = ["SECTIONS", "Declaration", "Param", "Section", "against", "favour", "check", "compute", "defaults",
           "notebook", "parameters", "parameters_cell", "plan", "what_reproduces", "markdown_table", "common"]

#: The paper's six sections, in its order, and the chapter that asks their questions of other architectures.
SECTIONS: dict[str, Declaration] = {d.name: d for d in (
    emergence.DECLARATION, ablation.DECLARATION, cka.DECLARATION, regularize.DECLARATION,
    promote.DECLARATION, class_representation.DECLARATION, architectures.DECLARATION)}
NOTEBOOKS = {name: d.notebook for name, d in SECTIONS.items()}


def _declared(section: str) -> Declaration:
    if section not in SECTIONS:
        raise ValueError(f"section={section!r} is not valid: expected one of {list(SECTIONS)}")
    return SECTIONS[section]


def parameters(section: str | None) -> dict:
    """A notebook's parameters at its cell's values (``None``: the "What reproduces" page's)."""
    params = common(None) if section is None else _declared(section).all_params()
    return {p.name: p.default for p in params}


def check(section: str, ns: dict) -> SimpleNamespace:
    """The checked parameters of ``section``'s notebook, read from its namespace ``ns``."""
    return _check(_declared(section), ns)


def defaults(section: str, preset: str | None = None, **values) -> SimpleNamespace:
    """The checked parameters of ``section``'s notebook at its defaults (``values`` changed)."""
    return check(section, {**parameters(section), "preset": default_preset() if preset is None else preset, **values})


def _planned(section: str, p) -> tuple[Plan, dict[str, list[runs.Run]]]:
    d = SECTIONS[section]
    found = Plan()
    groups = {name: found.train(p.setting.config(**fields), p.seeds) for name, fields in d.conditions(p).items()}
    wanted = d.analyses(p)  # [(kind, epochs, options)] of the baseline, or such lists by condition
    for name, items in (wanted if isinstance(wanted, dict) else {BASELINE: wanted}).items():
        for kind, epochs, options in items:
            for run in groups[name]:
                found.analyse(kind, run, epochs, **options)
    return found, groups


def plan(section: str, p) -> Plan:
    """The runs and analyses section ``section`` needs with the checked parameters ``p``."""
    return _planned(section, p)[0]


def compute(section: str, p, jobs: int | None = None) -> Section:
    """The section's tables and claims: its plan fulfilled first (nothing to do when it was, by
    ``python -m classsel reproduce`` or an earlier run), then read from the run store."""
    needed, groups = _planned(section, p)
    fulfil(needed, jobs=jobs)
    return SECTIONS[section].compute(p, groups)


class ParameterError(ValueError):
    """A bad notebook parameter: shown in the notebook as its one-line message, not a traceback."""

    def _render_traceback_(self):  # IPython shows this instead of the traceback
        return [f"ParameterError: {self}"]


def notebook(section: str | None, ns: dict):
    """What a chapter notebook does before its figures: check its parameters (read from its namespace
    ``ns``; a name papermill set that is not one of them is refused), compute the section (its plan
    fulfilled first), save its tables and claims to the results folder, and glue the runs' provenance
    for the captions (``{glue:md}`prov```). ``section`` None: the "What reproduces" page, whose
    table it returns with its results folder."""
    from .. import book, figures, layout

    stray = unknown(None if section is None else SECTIONS[section], ns.get("In"))
    try:
        if stray:
            import difflib

            known = list(parameters(section))
            hints = [m for name in stray for m in difflib.get_close_matches(name, known, 1)]
            raise ValueError(f"parameter {stray[0]!r} is not a parameter of this notebook"
                             + (f" (did you mean {hints[0]!r}?)" if hints else "") + f": its parameters are {known}")
        if section is None:
            common_values = {k: ns[k] for k in ("seeds", "epochs", "data_root", "overrides")}
            table = what_reproduces(ns["preset"], **common_values)
            out = ns["out_dir"]
            if out is not None and (not isinstance(out, str) or not out.strip()):
                raise ValueError(f"parameter out_dir={out!r} is not valid: expected None or a folder's path")
            return table, layout.results("00_what_reproduces", out)
        p = check(section, ns)
    except ValueError as e:
        raise ParameterError(str(e)) from None
    figures.setup()
    result = compute(section, p)
    result.save(p.out)
    book.glue_text("prov", result.provenance())
    return p, result


#: The figure label of each of the paper's six claims (DESIGN: "The paper's claims"); the rest
#: of a section's claims are the appendix findings.
MAIN_CLAIMS = {"fig-01-si": 1, "fig-02-auc": 2, "fig-03-cka": 3, "fig-04-acc": 4, "fig-05-small": 5,
               "fig-06-top5": 6}


def what_reproduces(preset: str | None = None, **common_values) -> pd.DataFrame:
    """The "What reproduces" table: every claim of every section at the notebooks' defaults, the
    six main claims first (column ``claim_number``; 0 for an appendix finding)."""
    table = pd.concat([compute(s, defaults(s, preset, **common_values)).summary() for s in SECTIONS],
                      ignore_index=True)
    table["claim_number"] = table.target.map(MAIN_CLAIMS).fillna(0).astype(int)
    return table.sort_values(["claim_number"], key=lambda n: n.where(n > 0, 99), kind="stable", ignore_index=True)


def markdown_table(table: pd.DataFrame, digits: int = 3) -> str:
    """:func:`what_reproduces` as a MyST markdown table: each claim with a link to its figure, then
    the verdict and the numbers behind it, the effect's wording last (on a narrow page the columns
    a reader needs first stay in view)."""
    lines = ["| | Claim | Verdict | Estimate (95% CI) | Seeds | Tested effects agreeing | Effect |",
             "|---|---|---|---|---|---|---|"]
    for r in table.to_dict("records"):
        number = f"{r['claim_number']}" if r["claim_number"] else (
            "other architectures" if r["section"] == "07_architectures" else "appendix")
        link = f"{{ref}}`paper {r['figure']} <{r['target']}>`"  # MyST: the book links to the figure
        estimate = ("— (no seed with a defined effect)" if math.isnan(r["estimate"])
                    else f"{r['estimate']:.{digits}f} ({r['95% CI']})")
        lines.append(f"| {number} | {r['claim']} ({link}) | **{r['verdict']}** | {estimate} | {r['seeds']} "
                     f"| {r['agreeing']} | {r['effect']} |")
    return "\n".join(lines)
