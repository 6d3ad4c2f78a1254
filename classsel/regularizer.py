"""The class selectivity regulariser (paper eq. 2, after Leavitt & Morcos 2020).

On a training batch, each regularised block's units get an SI from the class
statistics of the classes present in the batch; ``mu_SI`` is the mean over units, then
over the blocks of a module, then over the regularised modules, and the training loss
is ``cross_entropy - alpha * mu_SI``. Negative ``alpha`` suppresses selectivity.

``class_stat="mean"`` (default) follows the paper's definition with class means.
``class_stat="sum"`` reproduces the authors' reference implementation, which summed
the activations of each class within a batch instead of averaging them.
"""

from __future__ import annotations


import torch
from torch import nn

from .config import check_field
from .models import describe, forward_hooks
from .selectivity import EPS, selectivity_index



def batch_class_stats(
    acts: torch.Tensor, labels: torch.Tensor, num_classes: int, class_stat: str = "mean"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class means (or sums) of ``[N, units]`` activations and the present classes."""
    onehot = torch.nn.functional.one_hot(labels, num_classes).to(acts.dtype)
    sums = onehot.T @ acts
    counts = onehot.sum(dim=0)
    present = counts > 0
    if class_stat == "sum":
        return sums, present
    return sums / counts.clamp(min=1)[:, None], present


def batch_selectivity(
    acts: torch.Tensor, labels: torch.Tensor, num_classes: int, class_stat: str = "mean", eps: float = EPS
) -> torch.Tensor:
    """SI per unit over the classes present in one batch (differentiable)."""
    stats, present = batch_class_stats(acts, labels, num_classes, class_stat)
    return selectivity_index(stats, eps=eps, present=present)


def mu_si(per_block: dict[str, torch.Tensor], module_of: dict[str, str]) -> torch.Tensor:
    """Eq. 2: mean SI over units, then over blocks of a module, then over modules."""
    by_module: dict[str, list[torch.Tensor]] = {}
    for name, si in per_block.items():
        by_module.setdefault(module_of[name], []).append(si.mean())
    return torch.stack([torch.stack(v).mean() for v in by_module.values()]).mean()


class SelectivityRegularizer:
    """Records the regularised blocks' unit activations during a forward pass.

    >>> reg = SelectivityRegularizer(model, num_classes=10)
    >>> with reg:
    ...     logits = model(images)
    >>> loss = F.cross_entropy(logits, labels) - alpha * reg.mu_si(labels)
    """

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        modules=None,
        class_stat: str = "mean",
        eps: float = EPS,
    ):
        """``modules``: default the model family's regularised modules (the paper's 4-6)."""
        class_stat = check_field("class_stat", class_stat)
        description = describe(model)
        self.blocks = description.blocks(model, description.layout.regularized if modules is None else modules)
        self.num_classes = num_classes
        self.class_stat = class_stat
        self.eps = eps
        self.module_of = {b.name: b.module for b in self.blocks}
        self._activations = {b.name: b.activations for b in self.blocks}
        self.acts: dict[str, torch.Tensor] = {}
        self._hooks = forward_hooks({b.name: b.block for b in self.blocks}, self._record)

    def _record(self, name: str, output: torch.Tensor) -> None:
        # float32 statistics also under bf16 autocast: SI divides nearly equal numbers.
        acts = self._activations[name](output)
        self.acts[name] = acts.to(torch.promote_types(acts.dtype, torch.float32))

    def __enter__(self):
        self.acts.clear()
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        return self._hooks.__exit__(*exc)

    def per_block(self, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """SI per unit of every regularised block, from the last recorded batch."""
        if len(self.acts) != len(self.blocks):
            raise RuntimeError("no batch recorded: run the model's forward inside `with regularizer:`")
        return {
            name: batch_selectivity(a, labels, self.num_classes, self.class_stat, self.eps)
            for name, a in self.acts.items()
        }

    def mu_si(self, labels: torch.Tensor) -> torch.Tensor:
        """The regularisation term mu_SI (eq. 2) of the last recorded batch."""
        return mu_si(self.per_block(labels), self.module_of)


def regularized_loss(cross_entropy: torch.Tensor, mu_si: torch.Tensor, alpha: float) -> torch.Tensor:
    """Eq. 2: ``loss = CE - alpha * mu_SI``; alpha < 0 suppresses selectivity, alpha > 0 promotes it."""
    return cross_entropy - alpha * mu_si
