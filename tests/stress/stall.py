"""Stress test of the notebook stall (not collected by pytest; minutes to hours):

    python tests/stress/stall.py --runs 10 [--tool jupyter-book] [--guard off] [--busy 2]

Executes chapter 01 on the smoke preset ``--runs`` times, each in a fresh run store (so it trains two
runs through the worker pool) and ending in the explorer widget cell, while ``--busy`` processes spin
on the CPU: with papermill as the README writes it (``--tool papermill``, the default), or as
jupyter-book builds it (``--tool jupyter-book``: the book's configuration, a table of contents of
chapter 01 alone, a fresh execution cache). A run that takes more than ``--hang-after`` seconds longer
than the slowest finished one is counted as a hang and stopped. ``--guard off`` measures the stall
without the project's guard: papermill with CLASSSEL_STALL_GUARD=off (no classsel/papermill_engine.py),
jupyter-book without the extension classsel.sphinx_execution. Prints one line per run and a summary.
"""

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def spin():
    while True:
        pass


def command(args, folder: Path) -> list[str]:
    """The command of one run, its files in ``folder``."""
    if args.tool == "papermill":
        return [str(Path(sys.executable).with_name("papermill")), str(ROOT / "notebooks" / "01_emergence.ipynb"),
                str(folder / "out.ipynb"), "-p", "preset", "smoke", "--cwd", str(ROOT / "notebooks")]
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["cache"] = str(folder / "cache")
    if args.guard == "off":
        extensions = config["sphinx"]["extra_extensions"]
        extensions.remove("classsel.sphinx_execution")
    (folder / "_config.yml").write_text(yaml.safe_dump(config))
    (folder / "_toc.yml").write_text("format: jb-book\nroot: notebooks/01_emergence\n")
    return [str(Path(sys.executable).with_name("jupyter-book")), "build", "book", "--path-output", str(folder / "out"),
            "--toc", str(folder / "_toc.yml"), "--config", str(folder / "_config.yml")]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--tool", choices=["papermill", "jupyter-book"], default="papermill")
    p.add_argument("--guard", choices=["on", "off"], default="on")
    p.add_argument("--busy", type=int, default=os.cpu_count())
    p.add_argument("--hang-after", type=float, default=300, help="seconds past the slowest finished run")
    args = p.parse_args()
    busy = [mp.Process(target=spin, daemon=True) for _ in range(args.busy)]
    for b in busy:
        b.start()
    times, hangs = [], 0
    try:
        for i in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="classsel-stall-") as folder:
                env = {**os.environ, "CLASSSEL_RUNS": f"{folder}/runs", "CLASSSEL_STALL_GUARD": args.guard,
                       "CLASSSEL_PRESET": "smoke"}
                t0 = time.monotonic()
                proc = subprocess.Popen(command(args, Path(folder)), env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)
                limit = (max(times) if times else 600) + args.hang_after
                try:
                    proc.wait(timeout=limit)
                    seconds = time.monotonic() - t0
                    ok = proc.returncode == 0
                    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
                    print(f"run {i + 1}: {'ok' if ok else 'failed'} in {seconds:.0f} s (load average {load})",
                          flush=True)
                    if ok:
                        times.append(seconds)
                    else:
                        print(proc.stderr.read().decode()[-2000:])
                except subprocess.TimeoutExpired:
                    hangs += 1
                    proc.kill()
                    proc.wait()
                    print(f"run {i + 1}: HANG (no end after {limit:.0f} s)", flush=True)
    finally:
        for b in busy:
            b.terminate()
    print(f"{args.tool}, guard {args.guard}: {args.runs} runs, {hangs} hangs, {len(times)} finished "
          f"(median {sorted(times)[len(times) // 2] if times else float('nan'):.0f} s, slowest "
          f"{max(times, default=float('nan')):.0f} s), busy processes {args.busy}")


if __name__ == "__main__":
    main()
