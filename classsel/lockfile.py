"""The committed lock: exact versions of every package, and its hash.

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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m classsel.lockfile", description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["hash"], help="hash: print the lock's sha256")
    p.parse_args(argv)
    print(lock_hash() or f"no lock at {LOCK}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
