"""Atomic files and checkpoints that survive a kill at any moment.

Every file is written to a temporary name in the same folder, flushed to disk, and
renamed over the target; a reader sees the old file or the new one, never half of
one. Checkpoints hold plain tensors and containers only, so
``torch.load(path, weights_only=True)`` loads them.
"""

from __future__ import annotations

import io
import os
import random
import re
import warnings
from pathlib import Path

import numpy as np
import torch

CHECKPOINT = re.compile(r"step(\d{8})\.pt$")


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    # The rename itself is durable once the folder entry is on disk.
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_save(obj, path: str | os.PathLike) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write(path, buf.getvalue())


def rng_state() -> dict:
    """Every random state a training step can draw from, as tensors and plain types."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": _python_state_to_tensor(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(_python_state_from_tensor(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _python_state_to_tensor(state) -> dict:
    version, internal, gauss = state
    return {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss}


def _python_state_from_tensor(d) -> tuple:
    return (d["version"], tuple(int(v) for v in d["internal"].tolist()), d["gauss"])


def checkpoint_path(folder: str | os.PathLike, step: int) -> Path:
    return Path(folder) / f"step{step:08d}.pt"


def list_checkpoints(folder: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(step, path)`` of every checkpoint file in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CHECKPOINT.match(p.name))]
    return sorted(found)


def load(path: str | os.PathLike, map_location="cpu") -> dict:
    return torch.load(path, map_location=map_location, weights_only=True)


def newest_valid(folder: str | os.PathLike, map_location="cpu", log=print) -> dict | None:
    """The newest checkpoint that loads; truncated or corrupt ones are reported and skipped."""
    for step, path in reversed(list_checkpoints(folder)):
        try:
            state = load(path, map_location)
            if state.get("step") != step:
                raise ValueError(f"holds step {state.get('step')}, not {step}")
            return state
        except Exception as e:  # any unreadable file is skipped, whatever the reason
            msg = f"skipping unreadable checkpoint {path}: {type(e).__name__}: {e}"
            log(msg) if log else warnings.warn(msg)
    return None
