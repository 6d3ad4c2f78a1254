"""Atomic files and checkpoints that survive a kill at any moment.

Every file is written to a temporary name in the same folder, flushed to disk, and
renamed over the target; a reader sees the old file or the new one, never half of
one. A write that fails (a full disk, say) removes its temporary file and says which
file it was writing; one killed outright leaves it, and the next start of the run
removes it (:func:`classsel.layout.RunFiles.temporaries`). Checkpoints hold plain
tensors and containers only, so ``torch.load(path, weights_only=True)`` loads them.
"""

from __future__ import annotations

import io
import os
import random
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .layout import atomic_write


def atomic_save(obj, path: str | os.PathLike) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write(path, buf.getvalue())


def write_table(df: pd.DataFrame, path: Path) -> None:
    """A CSV table, gzipped (reproducibly: no timestamp) when the name ends in .gz."""
    buf = io.BytesIO()
    df.to_csv(buf, index=False, compression={"method": "gzip", "mtime": 0} if path.suffix == ".gz" else None)
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


#: What a checkpoint holds besides the weights, only for training on from it (resume, a branch).
TRAINING_STATE = ("optimizer", "scheduler", "rng")


def load(path: str | os.PathLike, map_location="cpu") -> dict:
    return torch.load(path, map_location=map_location, weights_only=True)


def has_training_state(state: dict) -> bool:
    return all(k in state for k in TRAINING_STATE)


def drop_training_state(path: Path) -> None:
    """Rewrite the checkpoint ``path`` without its optimiser and RNG state (weights, step and
    metrics rows stay: every analysis reads those only). Nothing to do if it has none."""
    state = load(path)
    if any(k in state for k in TRAINING_STATE):
        atomic_save({k: v for k, v in state.items() if k not in TRAINING_STATE}, path)


def newest_valid(found: list[tuple[int, Path]], map_location="cpu", log=print,
                 resumable: bool = False) -> dict | None:
    """The newest of ``(step, path)`` checkpoints that loads (``resumable``: and still holds its
    training state); unreadable ones are reported and skipped."""
    for step, path in reversed(found):
        try:
            state = load(path, map_location)
            if state.get("step") != step:
                raise ValueError(f"holds step {state.get('step')}, not {step}")
            if resumable and not has_training_state(state):
                continue  # weights only: an analysis point, not a place to train on from
            return state
        except Exception as e:  # any unreadable file is skipped, whatever the reason
            msg = f"skipping unreadable checkpoint {path}: {type(e).__name__}: {e}"
            log(msg) if log else warnings.warn(msg)
    return None
