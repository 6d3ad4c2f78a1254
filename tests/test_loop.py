"""The training loop against a plain loop written here from the paper's recipe: the same data
order, initial weights, SGD steps (eq. 2's loss while regularised) and measurements must give
the same per-unit SI tables and metrics, to the bit. This keeps the restructured loop of
classsel.train equal to the one it replaced, on whatever machine the test runs."""

import contextlib

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from classsel import data, models
from classsel.config import resolve
from classsel.layout import RunFiles
from classsel.regularizer import SelectivityRegularizer
from classsel.selectivity import measure
from classsel.train import train


def plain_loop(cfg) -> dict[int, object]:
    """The run written out flat: {step: measurement} at every evaluation point."""
    train_ds, val_ds = data.for_config(cfg, "train"), data.for_config(cfg, "val")
    torch.manual_seed(cfg.seed)
    model = models.build(cfg.arch, 10, width=cfg.width, in_channels=1)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step or 10**9, gamma=0.1)
    reg = SelectivityRegularizer(model, 10, cfg.reg_modules, cfg.class_stat)
    loader = data.loader(train_ds, cfg.batch_size, train=True, seed=cfg.seed)
    val = data.loader(val_ds, cfg.eval_batch_size, train=False)
    per_epoch = len(loader)
    evals = {e * per_epoch for e in range(cfg.epochs + 1)} | set(cfg.eval_steps)
    found, step = {0: measure(model, val, 10)}, 0
    for epoch in range(cfg.epochs):
        data.set_epoch(loader, epoch)
        model.train()
        on = cfg.alpha != 0 and cfg.reg_start <= epoch and (cfg.reg_stop is None or epoch < cfg.reg_stop)
        for images, labels in loader:
            with reg if on else contextlib.nullcontext():
                logits = model(images)
                loss = F.cross_entropy(logits, labels)
                if on:
                    loss = loss - cfg.alpha * reg.mu_si(labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step in evals:
                if step % per_epoch == 0:
                    sched.step()
                found[step] = measure(model, val, 10)
                model.train()
    return found


@pytest.mark.parametrize("fields", [dict(), dict(alpha=-20.0, reg_stop=2)])
def test_the_training_loop_equals_a_plain_loop(fields, tmp_path):
    cfg = resolve("smoke", epochs=3, progress=False, **fields)
    metrics = train(cfg, tmp_path / "run", log=lambda *a: None)
    reference = plain_loop(cfg)
    files = RunFiles(tmp_path / "run")
    assert sorted(reference) == metrics.step.tolist()
    for step, result in reference.items():
        written = pd.read_csv(files.si(step), float_precision="round_trip")
        expected = result.to_frame()
        pd.testing.assert_frame_equal(written[expected.columns], expected, check_exact=True, check_dtype=False)
        row = metrics.set_index("step").loc[step]
        assert row.val_acc1 == result.acc1
        for module, mean in result.module_means().items():
            assert row[f"si_{module}"] == mean
