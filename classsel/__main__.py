"""Command line: ``python -m classsel train --preset NAME --seed S --out DIR ...``.

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
    p.add_argument("--traceback", action="store_true", help="on an error, show the whole traceback")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a run, or several seeds (--seeds), measuring SI at every evaluation "
                       "point")
    t.add_argument("--preset", default=default_preset(), choices=list(PRESETS),
                   help="named configuration (default: $CLASSSEL_PRESET or mnist)")
    seeds = t.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=_integer, default=0, help="0 .. 2**63-1")
    seeds.add_argument("--seeds", type=_integer, nargs="+", metavar="S",
                       help="train these seeds into the run store (finished runs reused, partial resumed)")
    t.add_argument("--jobs", type=_integer,
                   help="runs trained at once with --seeds (default: one per CPU core, or one per GPU)")
    t.add_argument("--out", help="run folder (default: the run store's folder for this configuration)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its newest valid checkpoint")
    t.add_argument("--traceback", action="store_true", help="on an error, show the whole traceback")
    o = t.add_argument_group("overrides of the preset")
    o.add_argument("--epochs", type=_integer)
    o.add_argument("--batch-size", type=_integer)
    o.add_argument("--lr", type=_number)
    o.add_argument("--lr-step", type=_integer, help="divide the learning rate by 10 every N epochs")
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
    o.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    from .train import RunLocked

    try:
        return _train(args)
    except (ValueError, OSError, FloatingPointError, RunLocked) as e:
        if args.traceback:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2


def _train(args) -> int:
    from . import layout, runs
    from .config import check_field, config_hash
    from .parallel import RunsFailed, check_jobs
    from .train import train

    if args.seeds and len(args.seeds) == 1 and args.out:
        args.seed, args.seeds = args.seeds[0], None  # one run into --out
    skip = ("command", "preset", "out", "resume", "traceback", "seeds", "jobs")
    overrides = {k: v for k, v in vars(args).items() if v is not None and k not in skip}
    for k in ("reg_modules", "eval_steps"):
        if k in overrides:
            overrides[k] = tuple(overrides[k])
    cfg = resolve(args.preset, **overrides)
    if args.jobs is not None:
        check_jobs(args.jobs, [], label="--jobs")
    if args.seeds:
        if args.out:
            raise ValueError(f"--out names one run's folder: expected one seed with it, not --seeds "
                             f"{' '.join(map(str, args.seeds))} (leave out --out to train them into the "
                             "run store)")
        seeds = [check_field("seed", s) for s in dict.fromkeys(args.seeds)]
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
    out = Path(args.out) if args.out else layout.run(config_hash(cfg), cfg.seed).root
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file: expected a folder for the run")
    train(cfg, out, resume=args.resume)
    return 0


if __name__ == "__main__":
    sys.exit(main())
