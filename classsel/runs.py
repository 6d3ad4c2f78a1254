"""The run store: runs kept by configuration, reused, resumed or trained on demand.

A run lives in ``ROOT/<config hash>/seed<S>/`` (see :mod:`classsel.train` for its
files). ``ROOT`` is ``runs/`` at the project root, or ``$CLASSSEL_RUNS``. This module
is the only code that decides where run files go.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from . import checkpoint as ckpt
from .config import Config, config_hash, from_dict, identity
from .models import build
from .train import METRICS, train


def root() -> Path:
    env = os.environ.get("CLASSSEL_RUNS")
    if env:
        return Path(env)
    project = Path(__file__).resolve().parents[1]
    return (project if (project / "pyproject.toml").exists() else Path.cwd()) / "runs"


def results_dir(section: str, out_dir=None) -> Path:
    """Where a section notebook writes its figures and tables (``ROOT/results/SECTION``)."""
    folder = Path(out_dir) if out_dir is not None else root() / "results" / section
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass(frozen=True)
class Run:
    config: Config
    seed: int

    @property
    def hash(self) -> str:
        return config_hash(self.config)

    @property
    def path(self) -> Path:
        return root() / self.hash / f"seed{self.seed}"

    @property
    def done(self) -> bool:
        return (self.path / "DONE").exists()

    def metrics(self) -> pd.DataFrame:
        return pd.read_csv(self.path / METRICS, float_precision="round_trip").assign(seed=self.seed, config=self.hash)

    def units(self) -> pd.DataFrame:
        """SI of every unit at every evaluation point."""
        files = sorted((self.path / "si").glob("step*.csv.gz"))
        return pd.concat([pd.read_csv(f) for f in files], ignore_index=True).assign(seed=self.seed, config=self.hash)

    def si(self, step: int) -> dict[str, torch.Tensor]:
        """SI per unit of every block at evaluation point ``step``: {"layer3.2": [units]}."""
        units = pd.read_csv(self.path / "si" / f"step{step:08d}.csv.gz").sort_values(["block", "unit"], kind="stable")
        return {f"{m}.{b}": torch.tensor(g.si.to_numpy()) for (m, b), g in units.groupby(["module", "block"], sort=False)}

    def predictions(self) -> pd.DataFrame:
        files = sorted((self.path / "predictions").glob("step*.csv"))
        return pd.concat([pd.read_csv(f) for f in files], ignore_index=True).assign(seed=self.seed, config=self.hash)

    def checkpoint_steps(self) -> list[int]:
        return [s for s, _ in ckpt.list_checkpoints(self.path / "checkpoints")]

    def model(self, step: int, device="cpu") -> torch.nn.Module:
        """The network as it was at evaluation point ``step``, in eval mode."""
        path = ckpt.checkpoint_path(self.path / "checkpoints", step)
        if not path.exists():
            raise ValueError(f"no checkpoint at step {step} in {self.path}; available: {self.checkpoint_steps()}")
        state = ckpt.load(path, device)
        cfg = self.config
        in_channels = state["model"]["conv1.weight"].shape[1]
        classes = state["model"]["fc.weight"].shape[0]
        model = build(cfg.arch, classes, width=cfg.width, in_channels=in_channels)
        model.load_state_dict(state["model"])
        return model.to(device).eval()


def ensure(config: Config, seeds, log=print) -> list[Run]:
    """The runs of ``config`` for ``seeds``: finished ones reused, partial ones resumed,
    missing ones trained."""
    runs = []
    for seed in seeds:
        cfg = from_dict({**config.__dict__, "seed": int(seed)})
        run = Run(cfg, int(seed))
        if not run.done:
            partial = bool(ckpt.list_checkpoints(run.path / "checkpoints"))
            log(f"{'resuming' if partial else 'training'} run {run.hash}/seed{seed} in {run.path}")
            (run.path.parent).mkdir(parents=True, exist_ok=True)
            (run.path.parent / "config.json").write_text(json.dumps(identity(cfg), indent=2, default=str))
            train(cfg, run.path, resume=partial, log=log)
        runs.append(run)
    return runs


def _label(run: Run, columns) -> dict:
    return {c: (",".join(v) if isinstance(v := getattr(run.config, c), tuple) else v) for c in columns}


LABELS = ("alpha", "reg_start", "reg_stop", "reg_modules", "class_stat", "preset")


def load_metrics(runs: list[Run], labels=LABELS) -> pd.DataFrame:
    """Metrics of many runs in one tidy table, with seed, config hash and label columns."""
    return pd.concat([r.metrics().assign(**_label(r, labels)) for r in runs], ignore_index=True)


def load_units(runs: list[Run], labels=LABELS) -> pd.DataFrame:
    """Per-unit SI of many runs in one tidy table."""
    return pd.concat([r.units().assign(**_label(r, labels)) for r in runs], ignore_index=True)


def load_predictions(runs: list[Run], labels=LABELS) -> pd.DataFrame:
    return pd.concat([r.predictions().assign(**_label(r, labels)) for r in runs], ignore_index=True)
