"""Minibatch linear CKA with the unbiased HSIC estimator (Nguyen et al. 2020, eq. 3).

:func:`hsic1` and :func:`gram` are the math; :func:`cka_matrix` runs a loader once,
records one Gram matrix per layer per batch through forward hooks and accumulates
:func:`hsic1` of every pair of layers in float64. A layer whose features are not finite,
or the same for every image of each batch, leaves CKA undefined (0/0): a ValueError
names it.
"""

from __future__ import annotations

import math
from contextlib import ExitStack

import pandas as pd
import torch
from torch import nn
from .models import describe, device_of, evaluating, forward_hooks, named_layers
from .progress import progress_bar



def hsic1(K: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC of Gram matrices (Nguyen et al. 2020, eq. 3), for every pair of two stacks.

    ``HSIC_1(K, L) = 1/(n(n-3)) [tr(K~ L~) + (1'K~1)(1'L~1)/((n-1)(n-2))
    - 2/(n-2) 1'K~L~1]`` with ``K~, L~`` the Grams with zeroed diagonals; n >= 4.
    ``K`` ``[p, n, n]`` and ``L`` ``[q, n, n]`` give ``[p, q]``; two ``[n, n]`` matrices give
    a scalar. Assumes symmetric Grams, which makes each pair O(n^2).
    """
    n = _batch_size(K)
    if L.shape[-2:] != K.shape[-2:] or L.dim() != K.dim():
        shapes = f"{tuple(K.shape)} and {tuple(L.shape)}"
        raise ValueError(f"Gram matrices must have the same shape, got {shapes}")
    A, B = _zero_diagonal(K.reshape(-1, n, n)), _zero_diagonal(L.reshape(-1, n, n))
    a1, b1 = A.sum(2), B.sum(2)  # K~ 1 per matrix
    trace = A.flatten(1) @ B.flatten(1).T  # tr(K~ L~) for symmetric K~
    middle = a1.sum(1)[:, None] * b1.sum(1)[None, :] / ((n - 1) * (n - 2))
    hsic = (trace + middle - 2 / (n - 2) * (a1 @ b1.T)) / (n * (n - 3))
    return hsic[0, 0] if K.dim() == 2 else hsic


def gram(features: torch.Tensor) -> torch.Tensor:
    """Linear-kernel Gram matrix ``X X^T`` of features flattened to ``[n, d]``, in float64.

    The features are centred over the batch first, which leaves HSIC_1 unchanged.
    """
    x = features.flatten(1)
    if x.dtype not in (torch.float32, torch.float64):
        # float16/bfloat16 Grams would be far too coarse for HSIC_1.
        x = x.float()
    # HSIC_1 with linear kernels is invariant to shifting any feature (measured in
    # float64: equal to 1e-11 relative or better, the rounding of the uncentred sums).
    # Raw ReLU features have a large mean, so their Gram is dominated by a near-constant
    # term that the estimator's three terms then cancel; in float32 that gave torch-cka
    # NaNs, entries above 1 and errors of ~0.4 on ResNet-50. After centring, K 1 = 0,
    # no large terms cancel, and a float32 Gram widened to float64 for the HSIC
    # arithmetic gives CKA within ~2e-6 of a float64 reference.
    x = x - x.mean(0, keepdim=True)
    return (x @ x.T).to(torch.float64)


def cka_matrix(
    model: nn.Module,
    loader,
    layers=None,
    device=None,
    model_b: nn.Module | None = None,
    layers_b=None,
    progress: bool = False,
) -> pd.DataFrame:
    """Minibatch CKA between every pair of ``layers`` (rows) and ``layers_b`` (columns).

    ``CKA = sum_i HSIC_1(K_i, L_i) / sqrt(sum_i HSIC_1(K_i, K_i) sum_i HSIC_1(L_i, L_i))``
    over the loader's batches i, each run through the model once in eval mode. The
    columns come from ``model_b`` fed the same images when given, else from ``model``;
    ``layers`` defaults to the model family's four modules and logits, ``layers_b`` to ``layers``. ``loader`` yields images or (images, labels)
    with at least 4 images per batch; they go to ``device`` (default: the model's).
    """
    rows = describe(model).layout.cka_layers if layers is None else _names(layers)
    cols = rows if layers_b is None else _names(layers_b)
    if not rows or not cols:
        raise ValueError(f"need at least one layer on each side, got {rows!r} and {cols!r}")
    single = model_b is None or model_b is model
    if single:
        # One set of Grams serves both sides; every pair comes from one HSIC matrix.
        union = tuple(dict.fromkeys(rows + cols))
        specs = [(model, named_layers(model, union))]
    else:
        specs = [(model, named_layers(model, rows)), (model_b, named_layers(model_b, cols))]
    device = device_of(model, device)

    stores: list[dict[str, torch.Tensor]] = [{} for _ in specs]
    varies: list[dict[str, bool]] = [{} for _ in specs]  # layer -> its features differ within a batch
    names = [union] if single else [rows, cols]
    sums = None  # float64 HSIC_1 sums, kept on the device until the end
    batches = 0
    with ExitStack() as stack, torch.no_grad():
        for (m, modules), store, var in zip(specs, stores, varies):
            stack.enter_context(evaluating(m))
            stack.enter_context(forward_hooks(modules, _recorder(store, var)))
        for batch in progress_bar(loader, "CKA", enabled=progress):
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            if x.shape[0] < 4:
                raise ValueError(
                    f"batch of {x.shape[0]} images; unbiased HSIC needs at least 4 per batch"
                )
            x = x.to(device, non_blocking=True)
            for (m, _), store in zip(specs, stores):
                store.clear()
                m(x)
            grams = [_stacked(s, ns) for s, ns in zip(stores, names)]
            if single:
                terms = (hsic1(grams[0], grams[0]),)
            else:
                terms = (hsic1(*grams), *(hsic1(g, g).diagonal() for g in grams))
            sums = terms if sums is None else tuple(s + t for s, t in zip(sums, terms))
            batches += 1
    if batches == 0:
        raise ValueError("loader yielded no batches; CKA needs at least one batch of >= 4 images")

    if single:
        return _one_network(sums[0], union, varies[0], rows, cols)
    hsic, self_a, self_b = sums
    _check_self_terms(self_a, rows, varies[0], "model's ")
    _check_self_terms(self_b, cols, varies[1], "model_b's ")
    cka = hsic / torch.sqrt(self_a[:, None] * self_b[None, :])
    return pd.DataFrame(cka.cpu().numpy(), index=list(rows), columns=list(cols))


def _stacked(store: dict[str, torch.Tensor], names) -> torch.Tensor:
    """The Gram matrices a batch left in ``store``, stacked in the order of ``names`` (each must be there)."""
    missing = [name for name in names if name not in store]
    if missing:
        raise ValueError(f"layer(s) {missing} gave no output in the forward pass")
    return torch.stack([store[name] for name in names])


def _one_network(sums: torch.Tensor, union, varies: dict[str, bool], rows, cols) -> pd.DataFrame:
    """CKA of one network's layers from the summed HSIC_1 of every pair of ``union``."""
    hsic = (sums + sums.T) / 2  # exact symmetry for a single model
    diag = hsic.diagonal()
    _check_self_terms(diag, union, varies, "")
    index = {name: i for i, name in enumerate(union)}
    r = torch.tensor([index[n] for n in rows], device=hsic.device)
    c = torch.tensor([index[n] for n in cols], device=hsic.device)
    cka = hsic[r][:, c] / torch.sqrt(diag[r][:, None] * diag[c][None, :])
    return pd.DataFrame(cka.cpu().numpy(), index=list(rows), columns=list(cols))


class Alongside:
    """The CKA of :func:`cka_matrix` (one network, every pair of ``layers``), measured alongside a pass
    over a loader that other code drives, such as a training run's evaluation
    (:func:`classsel.selectivity.measure`), instead of a pass of its own.

    Inside :meth:`hooks`, the layers' outputs are kept as the images go through, in pieces of a loader
    batch or whole; :meth:`end_batch`, called after each loader batch, adds that batch's HSIC_1 terms;
    :meth:`matrix` gives the table. Equal to :func:`cka_matrix` over the same loader up to the rounding
    of the forward passes (a batch run in pieces may take other kernels than the whole batch).
    """

    def __init__(self, model: nn.Module, layers=None):
        self.names = tuple(dict.fromkeys(describe(model).layout.cka_layers if layers is None else _names(layers)))
        if not self.names:
            raise ValueError(f"need at least one layer, got {layers!r}")
        self.modules = named_layers(model, self.names)
        self.parts: dict[str, list[torch.Tensor]] = {name: [] for name in self.names}
        self.varies: dict[str, bool] = {}
        self.sums: torch.Tensor | None = None

    def hooks(self) -> forward_hooks:
        def keep(name: str, output: torch.Tensor) -> None:
            self.parts[name].append(output.detach().flatten(1).clone())  # a copy: later layers may not touch it

        return forward_hooks(self.modules, keep)

    def end_batch(self) -> None:
        store: dict[str, torch.Tensor] = {}
        record = _recorder(store, self.varies)
        for name, parts in self.parts.items():
            if parts:
                record(name, torch.cat(parts))
                parts.clear()
        grams = _stacked(store, self.names)
        term = hsic1(grams, grams)
        self.sums = term if self.sums is None else self.sums + term

    def matrix(self) -> pd.DataFrame:
        if self.sums is None:
            raise ValueError("no batch ended; CKA needs at least one batch of >= 4 images")
        return _one_network(self.sums, self.names, self.varies, self.names, self.names)


def _names(layers) -> tuple[str, ...]:
    return (layers,) if isinstance(layers, str) else tuple(layers)


def _batch_size(K: torch.Tensor) -> int:
    if K.dim() < 2 or K.shape[-1] != K.shape[-2]:
        raise ValueError(f"expected square [n, n] Gram matrices, got shape {tuple(K.shape)}")
    n = K.shape[-1]
    if n < 4:
        raise ValueError(f"the unbiased HSIC needs a batch of at least 4, got n={n}")
    return n


def _zero_diagonal(K: torch.Tensor) -> torch.Tensor:
    K = K.clone()
    K.diagonal(dim1=-2, dim2=-1).zero_()
    return K


def _recorder(store: dict[str, torch.Tensor], varies: dict[str, bool]):
    # Reduce each output to its Gram at once, so no feature map outlives its layer.
    def record(name: str, output: torch.Tensor) -> None:
        store[name] = gram(output)
        # Exact, on the raw features: a constant layer's centred features may keep rounding
        # residue, which would give a tiny HSIC_1(K, K) and a meaningless CKA, not NaN.
        # Checked until a layer varies once (in the first batch, as a rule): ~5% of the
        # time of the matrix when checked on every batch.
        if not varies.get(name, False):
            flat = output.flatten(1)
            varies[name] = bool((flat != flat[:1]).any())

    return record


def _check_self_terms(self_hsic: torch.Tensor, names, varies: dict[str, bool], side: str) -> None:
    """Raise, naming the layer, where ``sum_i HSIC_1(K_i, K_i)`` leaves CKA undefined (NaN).

    That is where a layer's features are not finite in some batch, or the same for every
    image of each batch (a dead or saturated layer), so that the sum is 0.
    """
    values = self_hsic.tolist()
    for name, value in zip(names, values):
        if not math.isfinite(value):
            raise ValueError(f"{side}layer {name!r} gives features that are not finite (NaN or inf): no CKA")
    for name, value in zip(names, values):
        if value <= 0 or not varies[name]:
            raise ValueError(
                f"{side}layer {name!r} gives the same features for every image of each batch "
                f"(sum of HSIC_1(K, K) = {value:.3g}): CKA with it is undefined"
            )
