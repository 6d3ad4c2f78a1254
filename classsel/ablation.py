"""Ablation: zero units and measure how accuracy falls (paper section 3.3, Figs. 3 and 8).

A unit is its architecture family's (a ResNet's: one output channel of a residual block,
after the residual add and the final ReLU; :mod:`classsel.architectures`). For a module, the same number ``k`` of units is zeroed in every block of it, in
each block's SI order (most selective first) or in a random order (the control);
top-1 accuracy on the evaluation set divided by the unablated accuracy gives a curve
over ``k``, and its area (AUC) is the sum of the normalised accuracies.

The reference, :func:`classsel.ablation_reference.ablation_curve_naive`, runs one full
forward pass of the loader per level with :func:`ablate`'s hooks. :func:`ablation_curve`
returns the same numbers from one pass over the loader: the network before the ablated
module, and the module's first block where its units are its output (which is then only
masked), run once per batch,
the unablated pass is shared by every module and ``k = 0`` level, levels that zero the
same units (every level with ``k`` = all units) run once, and on the CPU several levels
run stacked into one larger batch. The numbers are equal because each sample meets the same operations
on the same values; stacking relies on the CPU kernels giving a sample the same result
in any batch of two or more (a batch of one takes other kernels), which the tests check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from . import ablation_curves
from .models import Block, check_chunk, describe, device_of, evaluating, forward_hooks, pieces
from .progress import progress_bar

#: The orders units are zeroed in, and the area under a curve (torch-free, :mod:`classsel.ablation_curves`).
ORDERS, auc = ablation_curves.ORDERS, ablation_curves.auc

#: Default grid: this many evenly spaced counts from 0 to all units of a block.
DEFAULT_LEVELS = 11
#: Stacked levels on the CPU: at most this many elements in one block output. On the mnist
#: preset's networks (one thread, pieces of 200 images) this stacks nothing: one call stacked to
#: 2**22 elements was 1.12x slower for a ResNet and 1.5-1.75x for a ViT, on AVX-512 and AVX2 code
#: paths alike (``python -m classsel.bench --only ablation``), though a whole build's analyses took
#: the same time either way (634 s, AVX2, two workers); tinier outputs still stack.
STACK_ELEMENTS = 2**18

COLUMNS = ["module", "number", "order", "draw", "k", "units", "fraction", "correct", "samples", "accuracy", "normalized"]


# --- zeroing units ----------------------------------------------------------------


def _check_units(model: nn.Module, units: Mapping) -> dict[str, tuple[Block, torch.Tensor]]:
    """Validate ``{block name: channel indices}``; returns the blocks and index tensors."""
    if not isinstance(units, Mapping):
        raise ValueError(f"units must map block names to channel indices, got {type(units).__name__}")
    blocks = {b.name: b for b in describe(model).blocks(model)}
    checked = {}
    for name, index in units.items():
        if name not in blocks:
            raise ValueError(f"unknown block {name!r}; choose from {', '.join(blocks)}")
        block = blocks[name]
        idx = torch.as_tensor(index)
        if idx.numel() == 0:
            idx = idx.long()
        if idx.dtype in (torch.bool, torch.uint8) or idx.is_floating_point() or idx.is_complex():
            raise ValueError(f"units of block {name!r} must be integer channel indices, got dtype {idx.dtype}")
        if idx.dim() > 1:
            raise ValueError(f"units of block {name!r} must be a 1-d sequence, got shape {tuple(idx.shape)}")
        idx = idx.reshape(-1).long()
        bad = idx[(idx < 0) | (idx >= block.channels)]
        if bad.numel():
            raise ValueError(
                f"unit {int(bad[0])} out of range for block {name!r}: it has {block.channels} channels "
                f"(0..{block.channels - 1})"
            )
        checked[name] = (block, idx)
    return checked


@contextmanager
def ablate(model: nn.Module, units: Mapping[str, Sequence[int] | torch.Tensor]):
    """Zero the units ``units[name]`` of each named block, e.g. ``{"layer2.1": [0, 5]}``.

    Forward hooks return a copy of the tensor that holds the block's units with those set
    to 0, so gradients still flow through the other units. The hooks go when the block exits.
    """
    checked = _check_units(model, units)
    index = {}
    for name, (block, idx) in checked.items():
        if idx.numel():
            param = next(block.block.parameters(), None)
            index[name] = idx.to(param.device) if param is not None else idx

    def zero(name, output):
        idx = index[name]
        if idx.device != output.device:
            idx = idx.to(output.device)
        return output.index_fill(checked[name][0].unit_dim, idx, 0.0)

    with forward_hooks({name: checked[name][0].block for name in index}, zero):
        yield model


# --- which units, in which order ------------------------------------------------------


def check_order(order: str) -> str:
    if order not in ORDERS:
        raise ValueError(f"unknown ablation order {order!r}; choose from {', '.join(ORDERS)}")
    return order


def unit_order(
    si: Mapping[str, torch.Tensor], order: str = "selective", generator: torch.Generator | None = None
) -> dict[str, torch.Tensor]:
    """Per block, its units in the order they are ablated: ``{name: LongTensor [units]}``.

    ``selective``: SI descending, ties in unit order (a stable sort); ``random``: one
    permutation per block, drawn from ``generator`` in the order of ``si``'s keys.
    """
    check_order(order)
    out = {}
    for name, values in si.items():
        values = torch.as_tensor(values).detach().cpu()
        if values.dim() != 1:
            raise ValueError(f"SI of block {name!r} must be 1-d [units], got shape {tuple(values.shape)}")
        if order == "selective":
            if torch.isnan(values).any():
                raise ValueError(f"SI of block {name!r} contains NaN; selective order needs finite SI")
            out[name] = torch.sort(values, descending=True, stable=True).indices
        else:
            out[name] = torch.randperm(values.numel(), generator=generator)
    return out


def draw_generator(seed: int, number: int, draw: int) -> torch.Generator:
    """Generator of random draw ``draw`` for the module of paper number ``number``: independent
    streams per (seed, module, draw)."""
    state = np.random.SeedSequence([int(seed), int(number), int(draw)]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & (2**63 - 1))


def default_ks(units: int, levels: int = DEFAULT_LEVELS) -> list[int]:
    """``levels`` evenly spaced counts from 0 to ``units`` (rounded, duplicates dropped)."""
    return sorted({int(round(v)) for v in np.linspace(0, units, min(levels, units + 1))})


@dataclass(frozen=True)
class Level:
    """One point of a curve: ablate the first ``k`` units of ``order`` in every block of ``module``."""

    module: str
    order: str
    draw: int
    k: int
    units: int  # units per block
    number: int  # the paper's number of the module


@dataclass
class Plan:
    """Every level of a set of curves, and the unit order of each (module, order, draw)."""

    blocks: dict[str, list[Block]]  # module -> its blocks
    levels: list[Level]
    orders: dict[tuple[str, str, int], dict[str, torch.Tensor]]  # (module, order, draw) -> unit_order

    def units(self, level: Level) -> dict[str, torch.Tensor]:
        """``{block name: channels to zero}`` for ``level`` (what :func:`ablate` takes)."""
        order = self.orders[(level.module, level.order, level.draw)]
        return {b.name: order[b.name][: level.k] for b in self.blocks[level.module]}


def _check_ks(ks, module: str, units: int) -> list[int]:
    if ks is None:
        return default_ks(units)
    if isinstance(ks, Mapping):
        if module not in ks:
            raise ValueError(f"ks has no entry for module {module!r}; it has {', '.join(map(str, ks))}")
        ks = ks[module]
    if isinstance(ks, torch.Tensor):
        ks = ks.tolist()
    values = []
    for k in np.atleast_1d(np.asarray(ks, dtype=object)).tolist():
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= units:
            raise ValueError(f"k={k!r} is not a count of units 0..{units} for module {module!r}")
        values.append(int(k))
    if not values:
        raise ValueError(f"ks is empty for module {module!r}; give counts 0..{units}")
    return sorted(set(values))


def plan(
    model: nn.Module,
    module,
    si: Mapping[str, torch.Tensor],
    ks=None,
    orders: Sequence[str] = ORDERS,
    draws: int = 3,
    seed: int = 0,
) -> Plan:
    """The levels of :func:`ablation_curve` and the unit orders behind them.

    ``module``: one name (a ResNet's ``layer1``..``layer4``) or several; ``ks``: counts per block,
    one list for every module or ``{module: counts}``, default :func:`default_ks`.
    ``selective`` has one draw (0); ``random`` has ``draws`` draws from ``seed``.
    """
    description = describe(model)
    modules = description.check_modules(module, "module")
    if isinstance(orders, str):
        orders = (orders,)
    orders = tuple(dict.fromkeys(check_order(o) for o in orders))
    if not orders:
        raise ValueError(f"orders is empty; choose from {', '.join(ORDERS)}")
    if isinstance(draws, bool) or not isinstance(draws, (int, np.integer)) or draws < 1:
        raise ValueError(f"draws must be a positive integer, got {draws!r}")
    if not isinstance(si, Mapping):
        raise ValueError(f"si must map block names to SI tensors (SelectivityResult.si), got {type(si).__name__}")
    blocks = {m: description.blocks(model, m) for m in modules}
    levels, unit_orders = [], {}
    for m in modules:
        channels = {b.channels for b in blocks[m]}
        if len(channels) != 1:
            raise ValueError(f"blocks of module {m!r} differ in width {sorted(channels)}; ablation needs one width")
        units = channels.pop()
        module_si = {}
        for b in blocks[m]:
            if b.name not in si:
                raise ValueError(f"si has no entry for block {b.name!r}; measure SI of module {m} first")
            values = torch.as_tensor(si[b.name])
            if values.shape != (units,):
                raise ValueError(f"SI of block {b.name!r} has shape {tuple(values.shape)}, expected ({units},)")
            module_si[b.name] = values
        ks_m = _check_ks(ks, m, units)
        for order in orders:
            for draw in range(1 if order == "selective" else int(draws)):
                gen = draw_generator(seed, blocks[m][0].number, draw) if order == "random" else None
                unit_orders[(m, order, draw)] = unit_order(module_si, order, gen)
                levels.extend(Level(m, order, draw, k, units, blocks[m][0].number) for k in ks_m)
    return Plan(blocks=blocks, levels=levels, orders=unit_orders)


def curve_frame(levels: list[Level], correct: list[int], samples: int, base_correct: int) -> pd.DataFrame:
    """The tidy frame of :data:`COLUMNS` from the correct predictions counted at each level."""
    if samples == 0:
        raise ValueError("the loader yielded no samples")
    df = pd.DataFrame(
        {
            "module": [lv.module for lv in levels],
            "number": [lv.number for lv in levels],
            "order": [lv.order for lv in levels],
            "draw": [lv.draw for lv in levels],
            "k": [lv.k for lv in levels],
            "units": [lv.units for lv in levels],
            "fraction": [lv.k / lv.units for lv in levels],
            "correct": correct,
            "samples": samples,
        }
    )
    df["accuracy"] = df["correct"] / samples
    # An unablated accuracy of 0 leaves the ratio undefined: NaN, not an error, so one
    # bad checkpoint does not stop a sweep.
    base = base_correct / samples
    df["normalized"] = df["accuracy"] / base if base > 0 else np.nan
    return df[COLUMNS]


# --- fast: one pass over the loader ---------------------------------------------------


@dataclass
class _ModuleWork:
    """What one ablated module computes per batch."""

    pieces: list[nn.Module]  # its blocks as they run
    blocks: list[Block]  # their units
    later: list[nn.Module]  # every block after it
    masks: torch.Tensor  # [levels, blocks, units] bool: True = zeroed; unique, k > 0, not constant
    slots: torch.Tensor  # [levels] counter slot of each row of masks
    constant_slot: int | None  # slot of the levels that zero the whole output of the last block


def ablation_curve(
    model: nn.Module,
    loader: DataLoader,
    module,
    si: Mapping[str, torch.Tensor],
    ks=None,
    orders: Sequence[str] = ORDERS,
    draws: int = 3,
    seed: int = 0,
    device=None,
    progress: bool = False,
    stack: int | None = None,
    chunk: int | None = None,
) -> pd.DataFrame:
    """Accuracy as units of ``module`` are ablated, as a tidy frame (paper Fig. 3).

    One row per (module, order, draw, k): ``k`` units zeroed in every block of the
    module, in SI order (``selective``, draw 0) or in random order (``random``, draws
    ``0..draws-1`` seeded from ``seed``); ``fraction = k / units``; ``normalized =
    accuracy / unablated accuracy``. ``module`` may name several modules; the loader is
    read once. Equal, number for number, to the reference
    :func:`classsel.ablation_reference.ablation_curve_naive`.

    ``stack``: levels run together in one batch. Default: on the CPU as many as fit
    :data:`STACK_ELEMENTS` elements per block output (a batch's result does not depend on
    its size there, except for a batch of one); elsewhere 1, since a GPU may pick
    another convolution algorithm for another batch size. ``chunk``: at most this many images
    per pass, each batch of the loader cut into pieces of two or more (:func:`classsel.models.pieces`;
    default :data:`classsel.models.CPU_CHUNK` on the CPU, where smaller passes stay in the cache; elsewhere
    the loader's batches).
    """
    p = plan(model, module, si, ks, orders, draws, seed)
    description = describe(model)
    device = device_of(model, device)
    if stack is not None and (isinstance(stack, bool) or not isinstance(stack, int) or stack < 1):
        raise ValueError(f"stack must be a positive integer or None, got {stack!r}")
    chunk = check_chunk(chunk, device)
    parts = {m: description.pieces(model, m) for m in description.layout.modules}

    # Counter slots: 0 = unablated (every k = 0 level); then one per distinct ablation.
    slot_of_level = []
    work: dict[str, _ModuleWork] = {}
    n_slots = 1
    for m, blocks in p.blocks.items():
        keys: dict[bytes, int] = {}
        masks, slots, constant_slot = [], [], None
        for level in (lv for lv in p.levels if lv.module == m):
            if level.k == 0:
                slot_of_level.append(0)
                continue
            if level.k == level.units and description.units_are_outputs:
                # The module's output is all zeros, whatever the earlier blocks did.
                if constant_slot is None:
                    constant_slot, n_slots = n_slots, n_slots + 1
                slot_of_level.append(constant_slot)
                continue
            mask = torch.zeros(len(blocks), level.units, dtype=torch.bool)
            for j, idx in enumerate(p.units(level).values()):
                mask[j, idx] = True
            key = mask.numpy().tobytes()
            if key not in keys:
                keys[key], n_slots = n_slots, n_slots + 1
                masks.append(mask)
                slots.append(keys[key])
            slot_of_level.append(keys[key])
        units = blocks[0].channels
        later = description.layout.modules[description.layout.modules.index(m) + 1:]
        work[m] = _ModuleWork(
            pieces=parts[m],
            blocks=blocks,
            later=[piece for n in later for piece in parts[n]],
            masks=(torch.stack(masks) if masks else torch.zeros(0, len(blocks), units, dtype=torch.bool)).to(device),
            slots=torch.tensor(slots, dtype=torch.long, device=device),
            constant_slot=constant_slot,
        )

    correct = torch.zeros(n_slots, dtype=torch.long, device=device)
    samples = 0
    constant_pred: dict[tuple, torch.Tensor] = {}
    shared_first = description.units_are_outputs
    with evaluating(model), torch.inference_mode():
        batches = progress_bar(loader, "ablation", enabled=progress, leave=False)
        for x, y in ((images[p], labels[p]) for images, labels in batches for p in pieces(len(labels), chunk)):
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            samples += len(y)
            h = description.stem(model, x)
            for name, module_pieces in parts.items():
                rest = module_pieces
                if name in work:
                    if shared_first:
                        h, rest = module_pieces[0](h), module_pieces[1:]
                    _ablated_levels(description, model, name, work[name], h, shared_first, y, correct,
                                    constant_pred, stack)
                for piece in rest:
                    h = piece(h)
            correct[0] += (description.head(model, h).argmax(dim=1) == y).sum()

    counts = correct.cpu().tolist()  # the one sync
    return curve_frame(p.levels, [counts[s] for s in slot_of_level], samples, counts[0])


def _ablated_levels(
    description,
    model: nn.Module,
    name: str,
    w: _ModuleWork,
    start: torch.Tensor,
    shared_first: bool,
    y: torch.Tensor,
    correct: torch.Tensor,
    constant_pred: dict,
    stack: int | None,
) -> None:
    """Count correct predictions of every ablation of one module for one batch.

    ``start`` is the unmasked output of the module's block 0, shared by all levels, when
    ``shared_first`` (the block's units are its output); else the module's input.
    """
    n = start.shape[0]
    if w.constant_slot is not None:
        # The rest of the network sees zeros; its prediction is computed once per batch
        # shape, on a zero batch of that shape, as the reference computes it.
        key = (name, tuple(start.shape))
        if key not in constant_pred:
            z = torch.zeros_like(start)
            for later in w.later:
                z = later(z)
            constant_pred[key] = description.head(model, z).argmax(dim=1)
        correct[w.constant_slot] += (constant_pred[key] == y).sum()

    levels = w.masks.shape[0]
    if levels == 0:
        return
    if stack is None:
        stack = max(1, STACK_ELEMENTS // start.numel()) if start.device.type == "cpu" else 1
    if n < 2:
        stack = 1  # a batch of one takes other kernels than a larger batch
    first = 1 if shared_first else 0
    index = {b.name: j for j, b in enumerate(w.blocks)}
    unit_dim = w.blocks[0].unit_dim
    group: list[torch.Tensor] = []

    def zero(block: str, output: torch.Tensor) -> None:
        # In place, under inference mode: the output of each of g stacked levels loses its units.
        g = group[0].shape[0]
        output.view(g, n, *output.shape[1:]).masked_fill_(_per_level(group[0][:, index[block]], output, unit_dim), 0.0)

    for begin in range(0, levels, stack):
        masks = w.masks[begin : begin + stack]  # [g, blocks, units]
        g = masks.shape[0]
        group[:] = [masks]
        if shared_first:
            zeros = torch.zeros((), dtype=start.dtype, device=start.device)
            z = torch.where(_per_level(masks[:, 0], start, unit_dim), zeros, start.unsqueeze(0))
        else:
            z = start.unsqueeze(0).expand(g, *start.shape)
        z = z.reshape(g * n, *start.shape[1:])
        with forward_hooks({b.name: b.block for b in w.blocks[first:]}, zero):
            for piece in w.pieces[first:]:
                z = piece(z)
        for later in w.later:
            z = later(z)
        hits = (description.head(model, z).argmax(dim=1).view(g, n) == y).sum(dim=1)
        correct.index_add_(0, w.slots[begin : begin + g], hits)


def _per_level(mask: torch.Tensor, output: torch.Tensor, unit_dim: int) -> torch.Tensor:
    """``[g, units]`` masks shaped to broadcast over ``[g, n, ...]`` views of a unit tensor
    ``output`` ``[n, ...]`` whose units lie on axis ``unit_dim``."""
    shape = [mask.shape[0]] + [1] * output.dim()
    shape[1 + unit_dim] = mask.shape[1]
    return mask.view(shape)
