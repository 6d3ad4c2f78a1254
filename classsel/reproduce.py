"""``python -m classsel reproduce``: the plans of the book's sections, united and fulfilled.

Each section of the paper declares the runs and analyses it needs (:func:`classsel.sections.plan`);
this command unites them for a preset and does what is missing in one pool of worker processes,
with one progress bar, so that the notebooks then only read the run store. Interrupted, the same
command goes on where it stopped.
"""

from __future__ import annotations

import sys

from . import sections
from .sections import NOTEBOOKS
from .plan import Plan, Training, fulfil


def request(preset: str | None = None, names=None, **common) -> Plan:
    """The union of the plans of sections ``names`` (default: all) at their notebooks' defaults,
    ``common`` changed (``seeds``, ``epochs``, ``data_root``, ``overrides``)."""
    found = Plan()
    for name in section_names(names):
        found.update(sections.plan(name, sections.defaults(name, preset, **common)))
    return found


def section_names(names=None) -> list[str]:
    """Section names from names or notebook names (``regularize`` or ``04_regularize``); an error names
    what is accepted."""
    if not names:
        return list(sections.SECTIONS)
    by_notebook = {v: k for k, v in NOTEBOOKS.items()}
    found = []
    for name in names:
        section = by_notebook.get(name, name)
        if section not in sections.SECTIONS:
            raise ValueError(f"section {name!r} is not valid: expected some of {list(sections.SECTIONS)} "
                             f"(or their notebooks {list(by_notebook)})")
        found.append(section)
    return list(dict.fromkeys(found))


def describe(plan: Plan) -> str:
    """One line per task: what it is, its run, whether it is done."""
    lines = []
    for task in plan.linked():
        state = "pending" if task.pending() else "done"
        if isinstance(task, Training):
            c = task.run.config
            what = f"train    {task.run.hash}/seed{task.run.seed:<3} alpha={c.alpha:g} reg={c.reg_start}-{c.reg_stop}"
            if task.parent is not None:
                what += f" (from {task.parent[0].hash}/seed{task.parent[0].seed} at epoch {task.parent[1]})"
        else:
            what = f"{task.kind:<8} {task.run.hash}/seed{task.run.seed:<3} epochs={list(task.epochs or []) or 'all kept'}"
        lines.append(f"{state:<8} {what}")
    return "\n".join(lines)


def add_parser(sub) -> None:
    r = sub.add_parser("reproduce", help="train the runs and compute the analyses the book's sections need "
                       "(what is missing), with one progress bar")
    r.add_argument("--preset", help="smoke, mnist, cifar10 or imagenet (default: $CLASSSEL_PRESET or mnist)")
    r.add_argument("--sections", nargs="+", metavar="SECTION",
                   help=f"some of {', '.join(sections.SECTIONS)} (default: all)")
    r.add_argument("--jobs", type=int, help="tasks at once (default: one per CPU core, or one per GPU)")
    r.add_argument("--data-root", help="the dataset folder, for cifar10 and imagenet")
    r.add_argument("--dry-run", action="store_true", help="list the tasks and whether each is done; do nothing")
    r.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    r.add_argument("--traceback", action="store_true", help="on an error, show the whole traceback")


def command(args) -> int:
    from .parallel import RunsFailed

    plan = request(args.preset, args.sections, data_root=args.data_root)
    if args.dry_run:
        print(describe(plan))
        todo = plan.linked().pending()
        print(f"{plan.summary()}; {len(todo)} to do")
        return 0
    print(f"reproduce: {plan.summary()} for {', '.join(section_names(args.sections))}", file=sys.stderr)
    try:
        fulfil(plan, jobs=args.jobs, progress=args.progress, log=lambda m: print(m, file=sys.stderr))
    except RunsFailed as e:
        if args.traceback:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"reproduce: done ({plan.summary()})", file=sys.stderr)
    return 0
