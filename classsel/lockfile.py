"""The committed lock: exact versions of every package, its hash, and the Binder pins made from it.

``requirements/lock.txt`` is written by ``make lock`` (``uv pip compile --universal``): one
``name==version`` line per package, with an environment marker where the version depends on the
platform or Python, each followed by uv's ``# via`` comments. ``make setup`` installs exactly it.
This module imports nothing outside the standard library: ``make lock`` runs it from the source tree.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
LOCK = PROJECT / "requirements" / "lock.txt"
BINDER = PROJECT / "binder" / "requirements.txt"
# PyTorch's own index of CPU wheels: Binder reaches it, and its torch needs none of the CUDA packages.
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
CPU_BUILDS = ("torch", "torchvision")

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)\s*(?:;\s*(.+?))?\s*$")


@dataclass(frozen=True)
class Pin:
    name: str  # normalised (PEP 503)
    version: str
    marker: str  # "" when the pin holds everywhere
    via: tuple[str, ...]  # the packages (or "classsel (pyproject.toml)") that require it

    def line(self, version: str | None = None) -> str:
        text = f"{self.name}=={version or self.version}"
        return f"{text} ; {self.marker}" if self.marker else text


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_hash(path: Path = LOCK) -> str | None:
    """sha256 (hex) of the lock file's bytes; None when the installed project has no lock
    (classsel installed from a wheel or from git, as on Colab)."""
    path = Path(path)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def pins(text: str) -> list[Pin]:
    """The pins of a lock in uv's requirements format, with the packages that pull each in."""
    found: list[tuple[str, str, str, list[str]]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            # uv writes "# via a" or "# via" followed by "#   a", "#   b" under the pin they explain
            via = line.lstrip("#").strip()
            via = via[len("via"):].strip() if via.startswith("via") else via
            if found and raw.startswith(" ") and via:
                found[-1][3].append(via)
            continue
        match = _PIN.match(line)
        if not match:
            raise ValueError(f"lock line {number} {line!r} is not an exact pin: expected 'name==version' "
                             "with an optional '; marker'")
        found.append((normalise(match[1]), match[2], match[3] or "", []))
    return [Pin(name, version, marker, tuple(via)) for name, version, marker, via in found]


def cuda_only(locked: list[Pin]) -> set[str]:
    """Packages that only PyPI's CUDA build of torch needs: the NVIDIA and CUDA libraries, triton,
    and whatever nothing else pulls in."""
    drop = {p.name for p in locked if p.name.startswith(("nvidia-", "cuda-")) or p.name == "triton"}
    while True:
        more = {p.name for p in locked if p.via and all(normalise(v) in drop for v in p.via)} - drop
        if not more:
            return drop
        drop |= more


def binder_requirements(text: str) -> str:
    """binder/requirements.txt for the lock ``text``: the same pins, CPU builds of torch and
    torchvision from PyTorch's index (local version ``+cpu``), no CUDA packages, then classsel."""
    locked = pins(text)
    drop = cuda_only(locked)
    lines = [
        "# Binder (repo2docker) environment: the lock's versions, with PyTorch's CPU wheels instead of",
        "# PyPI's CUDA build. Written by `make lock` from requirements/lock.txt; do not edit.",
        f"--extra-index-url {CPU_INDEX}",
    ]
    for p in locked:
        if p.name not in drop:
            lines.append(p.line(f"{p.version}+cpu" if p.name in CPU_BUILDS else None))
    lines.append("-e .")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m classsel.lockfile", description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["hash", "binder"],
                   help="hash: print the lock's sha256; binder: write binder/requirements.txt from the lock")
    args = p.parse_args(argv)
    if args.command == "hash":
        print(lock_hash() or f"no lock at {LOCK}")
    else:
        BINDER.parent.mkdir(exist_ok=True)
        BINDER.write_text(binder_requirements(LOCK.read_text()))
        print(f"wrote {BINDER}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
