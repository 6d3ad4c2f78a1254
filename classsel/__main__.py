"""Command line: ``python -m classsel train --preset NAME --seed S --out DIR ...``;
``python -m classsel pack export FILE`` / ``pack import FILE`` (results packs, :mod:`classsel.pack`).

Runs unchanged under ``torchrun --standalone --nproc_per_node K -m classsel train ...``.
An error in what was asked (a bad value, a folder that cannot be written, a run that
another process holds) is one line on stderr and exit status 2; ``--traceback`` shows
where it arose.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import PRESETS, default_preset, resolve


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m classsel", description=__doc__.splitlines()[0])
    # its own name: a subcommand's --traceback (given after the command) cannot reset it
    p.add_argument("--traceback", dest="traceback_first", action="store_true",
                   help="on an error, show the whole traceback")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a run, or several seeds (--seeds), measuring SI at every evaluation "
                       "point")
    t.add_argument("--preset", default=default_preset(), choices=list(PRESETS),
                   help="named configuration (default: $CLASSSEL_PRESET or mnist)")
    seeds = t.add_mutually_exclusive_group()
    # default None, not 0: argparse lets a value equal to the default past the exclusive group
    seeds.add_argument("--seed", type=_integer, help="0 .. 2**63-1 (default 0)")
    seeds.add_argument("--seeds", type=_integer, nargs="+", metavar="S",
                       help="train these seeds into the run store (finished runs reused, partial resumed)")
    t.add_argument("--jobs", type=_integer,
                   help="runs trained at once with --seeds (default: one per CPU core, or one per GPU)")
    t.add_argument("--out", help="run folder (default: the run store's folder for this configuration): a new or "
                   "empty folder, or a run's own folder")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its newest valid checkpoint")
    _traceback(t)
    o = t.add_argument_group("overrides of the preset")
    o.add_argument("--epochs", type=_integer)
    o.add_argument("--batch-size", type=_integer)
    o.add_argument("--lr", type=_number)
    o.add_argument("--lr-step", type=_integer, help="divide the learning rate by 10 every N epochs")
    o.add_argument("--optimizer", choices=["sgd", "adamw"],
                   help="sgd with momentum (the paper's) or adamw (a transformer's; the ViTs' default)")
    o.add_argument("--warmup-epochs", type=_number, help="raise the learning rate linearly from 0 over these epochs")
    o.add_argument("--weight-decay", type=_number)
    o.add_argument("--alpha", type=_number, help="regulariser strength; < 0 suppresses selectivity")
    o.add_argument("--reg-start", type=_integer, help="first regularised epoch (0 = from the start)")
    o.add_argument("--reg-stop", type=_integer, help="first epoch no longer regularised")
    o.add_argument("--reg-modules", nargs="+", metavar="MODULE", help="e.g. layer1 layer2 layer3")
    o.add_argument("--class-stat", choices=["mean", "sum"], help="per-class means (paper) or sums (reference code)")
    o.add_argument("--eval-steps", nargs="*", type=_integer, metavar="STEP", help="extra evaluation points (global steps)")
    o.add_argument("--arch")
    o.add_argument("--width", type=_integer)
    o.add_argument("--data-root")
    o.add_argument("--image-size", type=_integer)
    o.add_argument("--per-class", type=_integer)
    o.add_argument("--device", help="auto, cpu or cuda")
    o.add_argument("--amp", choices=["auto", "bf16", "off"], help="bf16 autocast (default on CUDA)")
    o.add_argument("--channels-last", choices=["auto", "on", "off"])
    o.add_argument("--workers", type=_integer)
    o.add_argument("--pipeline", choices=["pil", "tensor"],
                   help="training input: pil (CPU workers, default) or tensor (JPEGs decoded on the GPU)")
    o.add_argument("--keep-checkpoints", help="all, last, or epochs to keep such as 0,1,2,5,10,90")
    o.add_argument("--bad-images", choices=["stop", "skip"],
                   help="an unreadable training image: stop the run naming it (default), or leave it out and count it")
    o.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    _pack_parser(sub)
    from .reproduce import add_parser

    add_parser(sub)
    return p


def _pack_parser(sub) -> None:
    k = sub.add_parser("pack", help="results packs: the files the notebooks read, without checkpoints")
    actions = k.add_subparsers(dest="action", required=True)
    e = actions.add_parser("export", help="write the finished runs of the store (and its results) to FILE")
    e.add_argument("file", metavar="FILE", help="the pack to write (.tar.gz)")
    e.add_argument("--config", nargs="+", metavar="HASH", dest="configs",
                   help="only the runs of these configuration hashes (default: every finished run)")
    i = actions.add_parser("import", help="check the pack FILE and load it into the store")
    i.add_argument("file", metavar="FILE", help="a pack written by `pack export`")
    for a in (e, i):
        a.add_argument("--store", help="the run store (default: $CLASSSEL_RUNS or runs/)")
        _traceback(a)


def _traceback(p: argparse.ArgumentParser) -> None:
    p.add_argument("--traceback", action="store_true", help="on an error, show the whole traceback")


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    args.traceback = args.traceback_first or getattr(args, "traceback", False)
    del args.traceback_first
    try:
        if args.command == "reproduce":
            from .reproduce import command

            return command(args)
        return _pack(args) if args.command == "pack" else _train(args)
    except Exception as e:
        # torch is imported only past the checks of the command line (a mistake is reported at once);
        # a run another process holds is known only once training was imported
        train = sys.modules.get(f"{__package__}.train")
        if args.traceback or not isinstance(e, (ValueError, OSError, FloatingPointError,
                                                *((train.RunLocked,) if train else ()))):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2


def _train(args) -> int:
    from . import layout
    from .config import check_field, config_hash

    if args.out == "":
        raise ValueError("--out '' is not valid: expected a folder for the run (leave out --out to train into the "
                         "run store)")
    if args.seeds and len(args.seeds) == 1 and args.out:
        args.seed, args.seeds = args.seeds[0], None  # one run into --out
    if args.seeds and args.resume:
        raise ValueError("--resume applies to one run's folder (--out): the run store resumes the runs of --seeds "
                         "by itself; leave out --resume")
    if args.jobs is not None and not args.seeds:
        raise ValueError(f"--jobs {args.jobs} applies to several runs (--seeds S S ...): one run trains in this "
                         "process; leave out --jobs")
    if args.seed is None:
        args.seed = 0
    skip = ("command", "preset", "out", "resume", "traceback", "seeds", "jobs")
    overrides = {k: v for k, v in vars(args).items() if v is not None and k not in skip}
    for k in ("reg_modules", "eval_steps"):
        if k in overrides:
            overrides[k] = tuple(overrides[k])
    cfg = resolve(args.preset, **overrides)
    from .parallel import RunsFailed, check_jobs

    if args.jobs is not None:
        check_jobs(args.jobs, [], label="--jobs")
    if args.seeds:
        if args.out:
            raise ValueError(f"--out names one run's folder: expected one seed with it, not --seeds "
                             f"{' '.join(map(str, args.seeds))} (leave out --out to train them into the "
                             "run store)")
        seeds = [check_field("seed", s) for s in dict.fromkeys(args.seeds)]
    else:
        out = Path(args.out) if args.out else layout.run(config_hash(cfg), cfg.seed).root
        layout.check_out(cfg, out, args.resume)  # a file, a foreign folder, nothing to resume: before torch
    from . import runs  # torch, past the checks of the options
    from .train import train

    if args.seeds:
        try:
            done = runs.ensure(cfg, seeds, jobs=args.jobs)
        except RunsFailed as e:
            if args.traceback:
                raise
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"{len(done)} run{'s' * (len(done) > 1)} of configuration {config_hash(cfg)} "
              f"in {done[0].path.parent}")
        return 0
    train(cfg, out, resume=args.resume)
    return 0


def _pack(args) -> int:
    from . import pack

    if args.action == "export":
        index = pack.export_pack(args.file, args.store, args.configs)
        size = sum(e["size"] for e in index["files"].values())
        print(f"wrote {args.file}: {len(index['runs'])} runs, {len(index['files'])} files "
              f"({size} bytes before compression, {Path(args.file).stat().st_size} after)")
    else:
        added, present = pack.import_pack(args.file, args.store)
        print(f"imported {len(added)} runs from {args.file}" + (f"; {len(present)} were already in the store"
                                                                if present else ""))
    return 0


def train_command(cfg, seed: int, out=None) -> str:
    """The command line that trains the run of ``cfg`` and ``seed`` (into ``out``): its preset and
    every option in which the configuration differs from that preset (a field without an option is
    named after the command)."""
    import dataclasses
    import shlex

    from .config import Config, config_hash, identity

    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    options = {a.dest: a.option_strings[0] for a in sub.choices["train"]._actions if a.option_strings}
    preset = {**dataclasses.asdict(Config()), **PRESETS[cfg.preset]}
    words, unsettable = ["python", "-m", "classsel", "train", "--preset", cfg.preset, "--seed", str(seed)], []
    overrides, unset = {}, []
    for name in sorted({*identity(cfg), "keep_checkpoints", "data_root"}):
        value = getattr(cfg, name)
        if value == preset[name]:
            continue
        if value is None:  # no option says None: usually what normalisation makes of the preset's value
            unset.append(f"{name}=None")
        elif name not in options:
            unsettable.append(f"{name}={value!r}")
        else:
            overrides[name] = value
            words += [options[name], *(map(str, value) if isinstance(value, tuple) else [str(value)])]
    try:
        same = config_hash(resolve(cfg.preset, **overrides)) == config_hash(cfg)
    except ValueError:  # e.g. a data folder that is not here: cannot check
        same = True
    unsettable += [] if same else unset
    if out is not None:
        words += ["--out", str(out)]
    command = shlex.join(words)
    if unsettable:
        command += (f" (with {', '.join(unsettable)}, which the command line cannot set: "
                    "use classsel.runs.ensure)")
    return command


if __name__ == "__main__":
    sys.exit(main())
