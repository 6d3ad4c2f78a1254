"""Networks: built, and their blocks found, by their family's description
(:mod:`classsel.architectures`); hooks and modes shared by every quantity."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Callable

import torch
from torch import nn

from .architectures import arch as _arch
from .architectures import describe
from .architectures.base import Block
from .config import ARCHS, MODULES

__all__ = ["ARCHS", "MODULES", "Block", "bottlenecks", "build", "describe", "device_of", "evaluating",
           "forward_hooks", "named_layers"]


def build(
    arch: str,
    num_classes: int,
    *,
    width: int = 16,
    in_channels: int = 3,
    image_size: int | None = None,
    **options,
) -> nn.Module:
    """Build ``arch`` (one of :data:`ARCHS`) with randomly initialised weights.

    ``width`` and ``in_channels`` apply to the narrow builders (``resnet50_narrow``,
    ``vgg16_narrow``) and ``vit_tiny``; ``image_size`` to the transformers (default 224);
    the torchvision ImageNet architectures take 3-channel input.
    """
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    spec = _arch(arch)
    if spec.width and (not isinstance(width, int) or width < 1):
        raise ValueError(f"width must be a positive integer, got {width!r}")
    return describe(arch).build(arch, num_classes, width=width, in_channels=in_channels,
                                image_size=image_size, **options)


def bottlenecks(model: nn.Module, modules=None) -> list[Block]:
    """Every block of ``modules`` (default: all four of the model's family) in forward order."""
    return describe(model).blocks(model, modules)


def named_layers(model: nn.Module, layers) -> dict[str, nn.Module]:
    """``{name: module}`` for CKA: module names such as ``layer1``, the logits layer, or any
    submodule's name; unknown names raise."""
    return describe(model).layers(model, layers)


class forward_hooks:
    """Context manager: ``fn(key, output)`` on the output of each ``{key: module}``.

    If ``fn`` returns a tensor, it replaces the module's output (used for ablation).
    """

    def __init__(self, modules: dict[str, nn.Module], fn: Callable[[str, torch.Tensor], object]):
        self.modules = modules
        self.fn = fn
        self.handles: list = []

    def __enter__(self):
        for key, module in self.modules.items():
            self.handles.append(module.register_forward_hook(self._hook(key)))
        return self

    def _hook(self, key):
        def hook(_module, _inputs, output):
            return self.fn(key, output)

        return hook

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        self.handles.clear()
        return False


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Context: ``model`` and all its submodules in eval mode; each module's own mode after.

    Restores every module's flag, not one flag for all, so a model with some parts in
    train mode and some in eval mode comes back as it was.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


def device_of(model: nn.Module, device=None) -> torch.device:
    """``device`` if given, else the device of the model's first parameter (CPU without any)."""
    if device is not None:
        return torch.device(device)
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


#: Images per forward pass on the CPU: each loader batch is run in pieces of at most this many, which
#: stay in the cache (``python -m classsel.bench --only measure ablation`` measures it against whole
#: batches). On the CPU an image's outputs do not depend on how many others share its pass, except in
#: a pass of one image, which takes other kernels: the pieces give the numbers whole batches give.
CPU_CHUNK = 200


def check_chunk(chunk, device: torch.device) -> int | None:
    """The piece size for ``device``: ``chunk`` checked (an integer >= 2, or None for the default:
    :data:`CPU_CHUNK` on the CPU; elsewhere whole batches, since a GPU may pick another convolution
    algorithm for another batch size)."""
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 2):
        raise ValueError(f"chunk must be an integer >= 2 or None, got {chunk!r}")
    return CPU_CHUNK if chunk is None and device.type == "cpu" else chunk


def pieces(n: int, chunk: int | None) -> list[slice]:
    """A batch of ``n`` as slices of at most ``chunk`` images, none of one image unless the batch is
    one (the last piece absorbs a remainder of one); one slice when ``chunk`` is None or >= ``n``."""
    if chunk is None or n <= chunk:
        return [slice(0, n)]
    starts = list(range(0, n, chunk))
    if n - starts[-1] == 1:
        starts.pop()
    return [slice(begin, end) for begin, end in zip(starts, [*starts[1:], n])]
