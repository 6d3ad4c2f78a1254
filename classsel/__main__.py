"""Command line: ``python -m classsel train --preset NAME --seed S --out DIR ...``.

Runs unchanged under ``torchrun --standalone --nproc_per_node K -m classsel train ...``.
"""

from __future__ import annotations

import argparse
import sys

from .config import PRESETS, default_preset, resolve


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m classsel", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train one run, measuring SI at every evaluation point")
    t.add_argument("--preset", default=default_preset(), choices=list(PRESETS),
                   help="named configuration (default: $CLASSSEL_PRESET or mnist)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", help="run folder (default: the run store's folder for this configuration)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its newest valid checkpoint")
    o = t.add_argument_group("overrides of the preset")
    o.add_argument("--epochs", type=int)
    o.add_argument("--batch-size", type=int)
    o.add_argument("--lr", type=_number)
    o.add_argument("--lr-step", type=int, help="divide the learning rate by 10 every N epochs")
    o.add_argument("--alpha", type=_number, help="regulariser strength; < 0 suppresses selectivity")
    o.add_argument("--reg-start", type=int, help="first regularised epoch (0 = from the start)")
    o.add_argument("--reg-stop", type=int, help="first epoch no longer regularised")
    o.add_argument("--reg-modules", nargs="+", metavar="MODULE", help="e.g. layer1 layer2 layer3")
    o.add_argument("--class-stat", choices=["mean", "sum"], help="per-class means (paper) or sums (reference code)")
    o.add_argument("--eval-steps", nargs="*", type=int, metavar="STEP", help="extra evaluation points (global steps)")
    o.add_argument("--arch")
    o.add_argument("--width", type=int)
    o.add_argument("--data-root")
    o.add_argument("--image-size", type=int)
    o.add_argument("--per-class", type=int)
    o.add_argument("--device", help="auto, cpu or cuda")
    o.add_argument("--amp", choices=["auto", "bf16", "off"], help="bf16 autocast (default on CUDA)")
    o.add_argument("--channels-last", choices=["auto", "on", "off"])
    o.add_argument("--workers", type=int)
    o.add_argument("--keep-checkpoints", help="all, last, or epochs to keep such as 0,1,2,5,10,90")
    o.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items()
                 if v is not None and k not in ("command", "preset", "out", "resume")}
    if "reg_modules" in overrides:
        overrides["reg_modules"] = tuple(overrides["reg_modules"])
    if "eval_steps" in overrides:
        overrides["eval_steps"] = tuple(overrides["eval_steps"])
    try:
        cfg = resolve(args.preset, **overrides)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from . import runs
    from .train import train

    out = args.out or runs.Run(cfg, cfg.seed).path
    train(cfg, out, resume=args.resume)
    return 0


if __name__ == "__main__":
    sys.exit(main())
